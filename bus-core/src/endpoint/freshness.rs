//! Freshness that survives restarts: a packet sealed under a sender's multicast epoch is acted
//! on only once we know it was sent after we started.
//!
//! Replay windows live in memory, so a peer that restarted (or started after traffic was
//! recorded) cannot tell a replay from a first copy by the window alone. What it can trust is
//! an answer to a challenge of its own: a pong that echoes one of the ping ids this life of ours
//! issued (they start at a random number each life) was sent after we started, and it says
//! which life of the sender answers, when its current epoch started and the counter of its next
//! packet in it. From then on, that epoch's packets with that counter or later are fresh
//! (counters only grow within an epoch), and so is every packet of a later epoch: a sender
//! stamps each new epoch later than the one before, so an epoch stamped later than one known
//! fresh began after it. This assumes a peer's wall clock does not step back across its own
//! restart by more than its epochs' age (NTP-synchronised clocks do not).
//!
//! A packet not known fresh is dropped (`unproven`), except that its pings are answered (so the
//! sender can prove us in turn) and its sender is challenged, each rate-limited per sender
//! ([`ANSWER_EVERY`], [`PROBE_EVERY`]): a replayer gets a few small replies per sender a
//! second, none larger than what it sent. An answer from another life of the sender replaces what was known of
//! the earlier one, so that life's packets are refused from then on. Sessions need none of
//! this: each is new in each life.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::packet::Opened;
use super::{Endpoint, FastHash};
use crate::PeerId;
use crate::metrics::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::Frame;

/// How often at most a sender whose packets are not known fresh is challenged.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// How often at most its pings are answered meanwhile (a pong is no larger than a ping, and the
/// other side needs the answer to know us fresh: a budget of its own, not the challenge's).
const ANSWER_EVERY: Duration = Duration::from_millis(50);

/// Senders tracked at once (bounded: in PSK mode any key holder can claim any id).
const MAX_SENDERS: usize = 4096;

/// Where a sender's multicast is known fresh from: its life, and the epoch (by when it
/// started) and counter from which its packets were sent after we started.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FreshFrom {
    incarnation: u64,
    epoch_ms: u64,
    counter: u64,
    since: Instant,
}

#[derive(Debug)]
pub(super) struct Freshness {
    senders: HashMap<PeerId, FreshFrom, FastHash>,
    /// When each sender whose packets were not known fresh was last challenged, and last had a
    /// ping answered.
    probed: HashMap<PeerId, Instant, FastHash>,
    answered: HashMap<PeerId, Instant, FastHash>,
}

impl Freshness {
    pub(super) fn new(senders: FastHash, probed: FastHash, answered: FastHash) -> Freshness {
        Freshness {
            senders: HashMap::with_hasher(senders),
            probed: HashMap::with_hasher(probed),
            answered: HashMap::with_hasher(answered),
        }
    }

    /// Whether `sender`'s entry in `log` is older than `every` (and if so, makes it `now`).
    fn due(
        log: &mut HashMap<PeerId, Instant, FastHash>,
        sender: PeerId,
        now: Instant,
        every: Duration,
    ) -> bool {
        let due = log
            .get(&sender)
            .is_none_or(|at| now.saturating_duration_since(*at) >= every);
        if due {
            log.insert(sender, now);
        }
        due
    }

    /// Whether `sender`'s packet at `counter` of its epoch stamped `epoch_ms` is known fresh.
    fn knows(&self, sender: PeerId, epoch_ms: u64, counter: u64) -> bool {
        self.senders
            .get(&sender)
            .is_some_and(|f| (epoch_ms, counter) >= (f.epoch_ms, f.counter))
    }

    /// `sender`'s life `incarnation` answered us at counter `counter` of its epoch stamped
    /// `epoch_ms`. Within one life the earliest such point admits the most and every one is
    /// safe; an answer from another life replaces the earlier life's. Returns whether nothing
    /// was known fresh of that life before.
    fn prove(
        &mut self,
        now: Instant,
        sender: PeerId,
        incarnation: u64,
        epoch_ms: u64,
        counter: u64,
    ) -> bool {
        if epoch_ms == 0 {
            return false;
        }
        if self.senders.len() >= MAX_SENDERS
            && !self.senders.contains_key(&sender)
            && let Some(evicted) = self.senders.keys().next().copied()
        {
            self.senders.remove(&evicted);
        }
        let proof = FreshFrom {
            incarnation,
            epoch_ms,
            counter,
            since: now,
        };
        match self.senders.get_mut(&sender) {
            Some(known) if known.incarnation == incarnation => {
                if (epoch_ms, counter) < (known.epoch_ms, known.counter) {
                    known.epoch_ms = epoch_ms;
                    known.counter = counter;
                }
                known.since = now;
                false
            }
            _ => {
                self.senders.insert(sender, proof);
                true
            }
        }
    }

    /// A fresh packet (at `at` of an epoch, if it came under one) carries a beacon of
    /// `sender`'s life `incarnation`. If that is a life other than the one known fresh, the
    /// sender restarted since: its earlier life's packets are refused from here on (they lie in
    /// earlier epochs), so a replay of them cannot pass for it.
    fn new_life(&mut self, sender: PeerId, incarnation: u64, at: Option<(u64, u64)>) {
        if let Some(known) = self.senders.get_mut(&sender)
            && known.incarnation != incarnation
        {
            let (epoch_ms, counter) = at.unwrap_or((known.epoch_ms + 1, 0));
            known.incarnation = incarnation;
            known.epoch_ms = epoch_ms;
            known.counter = counter;
        }
    }

    /// Forgets senders not heard answering for longer than `retention` (their epochs are
    /// refused as stale by then anyway) and replies older than a second.
    pub(super) fn prune(&mut self, now: Instant, retention: Duration) {
        self.senders
            .retain(|_, f| now.saturating_duration_since(f.since) < retention);
        for log in [&mut self.probed, &mut self.answered] {
            log.retain(|_, at| now.saturating_duration_since(*at) < Duration::from_secs(1));
        }
    }
}

impl Endpoint {
    /// Whether `opened` is known to have been sent after we started: plaintext (nothing can be
    /// known of it) and session packets are; epoch packets once proven.
    pub(super) fn is_fresh(&self, opened: &Opened) -> bool {
        match opened.epoch {
            None => true,
            Some((epoch_ms, counter)) => self.freshness.knows(opened.sender, epoch_ms, counter),
        }
    }

    /// `sender` answered our challenge (a pong echoing our ping) from `addr`, saying it is in
    /// life `incarnation` at counter `counter` of its epoch stamped `epoch_ms`. The first such
    /// answer from a life also gets our beacon, asking for its in return: we likely refused its
    /// earlier ones as not known fresh, as it may have refused ours.
    pub(super) fn on_answer(
        &mut self,
        now: Instant,
        sender: PeerId,
        addr: SocketAddr,
        (incarnation, epoch_ms, counter): (u64, u64, u64),
    ) {
        if self
            .freshness
            .prove(now, sender, incarnation, epoch_ms, counter)
        {
            let to = self.table.get(&sender).map_or(addr, |p| p.addr);
            self.send_beacon_asking(to);
        }
    }

    /// Whether we know `sender`'s multicast packets fresh from some point on (always, when
    /// insecure: nothing can be known of plaintext).
    pub(super) fn knows_fresh(&self, sender: PeerId) -> bool {
        self.config.security.is_insecure() || self.freshness.senders.contains_key(&sender)
    }

    /// The answer to a challenge of ours among `frames`, if any: the responder's life, epoch
    /// start and next counter.
    pub(super) fn answer_in(&self, frames: &[Frame<'_>]) -> Option<(u64, u64, u64)> {
        frames.iter().find_map(|frame| match frame {
            Frame::Pong {
                ping_id,
                incarnation,
                epoch_ms,
                epoch_counter,
                ..
            } if self.pings.issued(*ping_id) => Some((*incarnation, *epoch_ms, *epoch_counter)),
            _ => None,
        })
    }

    /// `frames` came from `sender` (at `from`) in a packet not known to be fresh, answering no
    /// challenge of ours: dropped, its pings answered and its sender challenged
    /// (rate-limited).
    pub(super) fn refuse_unproven(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: PeerId,
        frames: &[Frame<'_>],
    ) {
        self.metrics.dropped(DropReason::Unproven);
        for frame in frames {
            if let Frame::SessionUnknown { index } = frame {
                self.on_session_unknown(now, sender, *index);
            }
        }
        // Where it is, if we know it: a replay from elsewhere draws nothing there.
        let to = self.table.get(&sender).map_or(from, |p| p.addr);
        let ping = frames.iter().find_map(|frame| match frame {
            Frame::Ping {
                ping_id,
                sent_at_us,
            } => Some((*ping_id, *sent_at_us)),
            _ => None,
        });
        let freshness = &mut self.freshness;
        if let Some((ping_id, sent_at_us)) = ping
            && Freshness::due(&mut freshness.answered, sender, now, ANSWER_EVERY)
        {
            self.answer_ping(now, sender, to, ping_id, sent_at_us);
        }
        if Freshness::due(&mut self.freshness.probed, sender, now, PROBE_EVERY) {
            self.send_ping(now, to);
        }
    }

    /// A fresh packet `opened` carries `sender`'s beacon of life `incarnation`: see
    /// [`Freshness::new_life`].
    pub(super) fn beacon_life(&mut self, opened: &Opened, incarnation: u64) {
        self.freshness
            .new_life(opened.sender, incarnation, opened.epoch);
    }
}
