//! The sending side of reliable messages: one [`ReliableSend`] per message in flight, and a
//! [`SendWindow`] that numbers messages and bounds how many are in flight, per peer and overall.

use std::collections::{BTreeMap, BTreeSet};

use crate::PeerId;
use crate::time::{Duration, Instant};

/// Why an event could not enter the window now.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum Busy {
    /// The peer already has its window's worth of events in flight.
    #[error("peer {peer} has {in_flight} events ({bytes} bytes) in flight, the window's limit")]
    PeerWindowFull {
        /// The peer.
        peer: PeerId,
        /// Its events in flight.
        in_flight: usize,
        /// Their bytes.
        bytes: usize,
    },
    /// The bus has its limit of events in flight.
    #[error("{0} events in flight, the bus's limit")]
    TooManyInFlight(usize),
}

/// Limits on reliable events in flight (a reliable message carries one or more).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct WindowLimits {
    /// Events in flight to one peer.
    pub per_peer_events: usize,
    /// Payload bytes in flight to one peer.
    pub per_peer_bytes: usize,
    /// Events in flight overall.
    pub total_events: usize,
}

impl Default for WindowLimits {
    fn default() -> WindowLimits {
        WindowLimits {
            per_peer_events: 16_384,
            // Two messages of the largest size (16 MiB by default), as many as a receiver
            // reassembles at once from one sender: with one, every large message waited for
            // the one before to be decoded and acknowledged (0.56 GB/s for 16 MiB messages on
            // loopback; 0.92 with two).
            per_peer_bytes: 32 << 20,
            total_events: 65_536,
        }
    }
}

/// Numbers reliable messages and keeps the events and bytes they carry in flight within
/// limits.
#[derive(Clone, Debug)]
pub struct SendWindow {
    limits: WindowLimits,
    next_id: u64,
    unfinished: BTreeSet<u64>,
    /// Events in flight, all messages together.
    events: usize,
    /// Events and bytes in flight to each peer.
    per_peer: BTreeMap<PeerId, (usize, usize)>,
}

impl SendWindow {
    /// A window whose first message id is `first_id` (random per start, so that a restarted
    /// peer's ids do not collide with its previous life's).
    pub fn new(limits: WindowLimits, first_id: u64) -> SendWindow {
        SendWindow {
            limits,
            next_id: first_id,
            unfinished: BTreeSet::new(),
            events: 0,
            per_peer: BTreeMap::new(),
        }
    }

    /// Whether one more event of `bytes` to `peers` fits now.
    ///
    /// # Errors
    /// [`Busy`] names the limit that is reached.
    pub fn check(&self, peers: &[PeerId], bytes: usize) -> Result<(), Busy> {
        if self.events >= self.limits.total_events {
            return Err(Busy::TooManyInFlight(self.events));
        }
        for peer in peers {
            let (in_flight, in_bytes) = self.per_peer.get(peer).copied().unwrap_or((0, 0));
            if !self.fits(in_flight, in_bytes, bytes) {
                return Err(Busy::PeerWindowFull {
                    peer: *peer,
                    in_flight,
                    bytes: in_bytes,
                });
            }
        }
        Ok(())
    }

    fn fits(&self, in_flight: usize, in_bytes: usize, bytes: usize) -> bool {
        // One event always fits an empty window, however large.
        let over_bytes = in_flight > 0 && in_bytes + bytes > self.limits.per_peer_bytes;
        in_flight < self.limits.per_peer_events && !over_bytes
    }

    /// Takes room for the first event (of `bytes`) of a new message to `peers` and returns
    /// the message's id.
    ///
    /// # Errors
    /// As [`SendWindow::check`]; nothing is taken.
    pub fn open(&mut self, peers: &[PeerId], bytes: usize) -> Result<u64, Busy> {
        self.add(peers, bytes)?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.unfinished.insert(id);
        Ok(id)
    }

    /// Takes room for one more event (of `bytes`) of an open message to `peers`.
    ///
    /// # Errors
    /// As [`SendWindow::check`]; nothing is taken.
    pub fn add(&mut self, peers: &[PeerId], bytes: usize) -> Result<(), Busy> {
        self.check(peers, bytes)?;
        self.events += 1;
        for peer in peers {
            let entry = self.per_peer.entry(*peer).or_default();
            entry.0 += 1;
            entry.1 += bytes;
        }
        Ok(())
    }

    /// `peer` is done with a message of `events` events and `bytes` (acknowledged, left, or
    /// expired): their room is free.
    pub fn release_peer(&mut self, peer: PeerId, events: usize, bytes: usize) {
        if let Some(entry) = self.per_peer.get_mut(&peer) {
            entry.0 = entry.0.saturating_sub(events);
            entry.1 = entry.1.saturating_sub(bytes);
            if entry.0 == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// Message `id`, of `events` events, is finished for everyone.
    pub fn close(&mut self, id: u64, events: usize) {
        self.unfinished.remove(&id);
        self.events = self.events.saturating_sub(events);
    }

    /// The lowest id still unfinished (or the next id if none): nothing below it will be sent
    /// again. Reliable frames carry `id - floor` so receivers can forget what lies below.
    pub fn floor(&self) -> u64 {
        self.unfinished.first().copied().unwrap_or(self.next_id)
    }

    /// Whether `peer`'s window has room for a message of `events` events and `bytes` (the
    /// bus's limit aside: a held copy of a message already open counts there already).
    pub fn has_room_for(&self, peer: &PeerId, events: usize, bytes: usize) -> bool {
        let (in_flight, in_bytes) = self.in_flight_to(peer);
        // A message goes whole or not at all; one always fits an empty window.
        in_flight == 0
            || (in_flight + events <= self.limits.per_peer_events
                && in_bytes + bytes <= self.limits.per_peer_bytes)
    }

    /// Counts a message of `events` events and `bytes` in `peer`'s window: a held copy now
    /// sent.
    pub fn take_peer(&mut self, peer: PeerId, events: usize, bytes: usize) {
        let entry = self.per_peer.entry(peer).or_default();
        entry.0 += events;
        entry.1 += bytes;
    }

    /// Events in flight.
    pub fn in_flight(&self) -> usize {
        self.events
    }

    /// Events and bytes in flight to `peer`.
    pub fn in_flight_to(&self, peer: &PeerId) -> (usize, usize) {
        self.per_peer.get(peer).copied().unwrap_or((0, 0))
    }
}

#[derive(Clone, Debug)]
struct Waiting {
    peer: PeerId,
    rto: Duration,
    attempts: u32,
    next: Instant,
}

/// How a reliable message ended.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DeliveryReport {
    /// The message's id.
    pub message_id: u64,
    /// The peers that acknowledged it.
    pub acked: Vec<PeerId>,
    /// The peers that left (or stopped subscribing) before acknowledging; not owed it any more.
    pub left: Vec<PeerId>,
    /// The peers that did not acknowledge before the deadline; empty on success.
    pub missing: Vec<PeerId>,
    /// Copies sent after the first.
    pub retransmissions: u32,
}

impl DeliveryReport {
    /// Whether every peer owed the message acknowledged it (or left).
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// One reliable message's acknowledgement set and retransmission schedule.
///
/// The subscribers known when it is sent are owed it; one that appears later is not. Each
/// missing peer is retransmitted to after its RTO, doubling each time (capped at `max_rto`),
/// until it acknowledges, leaves, or the deadline passes.
#[derive(Clone, Debug)]
pub struct ReliableSend {
    id: u64,
    waiting: Vec<Waiting>,
    acked: Vec<PeerId>,
    left: Vec<PeerId>,
    /// Peers given up on: still owed, reported missing, but sent nothing more.
    given_up: Vec<PeerId>,
    deadline: Instant,
    max_rto: Duration,
    retransmissions: u32,
}

impl ReliableSend {
    /// A message sent (first copy) at `now` to `owed`, each with its peer's current RTO.
    pub fn new(
        now: Instant,
        id: u64,
        owed: impl IntoIterator<Item = (PeerId, Duration)>,
        deadline: Instant,
        max_rto: Duration,
    ) -> ReliableSend {
        ReliableSend {
            id,
            waiting: owed
                .into_iter()
                .map(|(peer, rto)| Waiting {
                    peer,
                    rto,
                    attempts: 0,
                    next: now + rto,
                })
                .collect(),
            acked: Vec::new(),
            left: Vec::new(),
            given_up: Vec::new(),
            deadline,
            max_rto,
            retransmissions: 0,
        }
    }

    /// Holds `peer`'s copy back: it is owed the message, but nothing is sent to it until
    /// [`ReliableSend::unhold`] (its window is full).
    pub fn hold(&mut self, peer: PeerId) {
        if let Some(w) = self.waiting.iter_mut().find(|w| w.peer == peer) {
            w.next = Instant::MAX;
        }
    }

    /// Sends `peer`'s held copy now: its retransmissions count from `now`. Returns whether it
    /// is still owed the message.
    pub fn unhold(&mut self, peer: PeerId, now: Instant) -> bool {
        match self.waiting.iter_mut().find(|w| w.peer == peer) {
            Some(w) => {
                w.next = now + w.rto;
                true
            }
            None => false,
        }
    }

    /// The message's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `peer` acknowledged. Returns whether it was still owed the message.
    pub fn on_ack(&mut self, peer: PeerId) -> bool {
        match self.waiting.iter().position(|w| w.peer == peer) {
            Some(i) => {
                self.waiting.swap_remove(i);
                self.acked.push(peer);
                true
            }
            None => {
                // Given up on, yet it got a copy (through the group): the report says so.
                if let Some(i) = self.given_up.iter().position(|p| *p == peer) {
                    self.given_up.swap_remove(i);
                    self.acked.push(peer);
                }
                false
            }
        }
    }

    /// `peer` left. Returns whether it was still owed the message.
    pub fn on_peer_left(&mut self, peer: PeerId) -> bool {
        match self.waiting.iter().position(|w| w.peer == peer) {
            Some(i) => {
                self.waiting.swap_remove(i);
                self.left.push(peer);
                true
            }
            None => false,
        }
    }

    /// Gives up on `peer`: nothing more is sent to it, and it is reported missing whatever
    /// happens. Returns whether it was still owed the message.
    pub fn give_up(&mut self, peer: PeerId) -> bool {
        match self.waiting.iter().position(|w| w.peer == peer) {
            Some(i) => {
                self.waiting.swap_remove(i);
                self.given_up.push(peer);
                true
            }
            None => false,
        }
    }

    /// `peer` showed progress short of an acknowledgement (it holds more of a large message):
    /// its retransmission timer restarts from `now`, without backoff. Returns its next attempt
    /// if that is now earlier than it was.
    pub fn progressed(&mut self, peer: PeerId, now: Instant) -> Option<Instant> {
        let w = self.waiting.iter_mut().find(|w| w.peer == peer)?;
        if w.next == Instant::MAX {
            // Held back: nothing of it was sent.
            return None;
        }
        let earlier = now + w.rto < w.next;
        w.attempts = 0;
        w.next = now + w.rto;
        earlier.then_some(w.next)
    }

    /// The retransmission to `peer` that [`ReliableSend::poll_retransmits`] just made due was
    /// not made (nothing of its copy was sent yet): it is not counted, and the timer restarts
    /// from `now` without backoff. Returns the next attempt.
    pub fn deferred(&mut self, peer: PeerId, now: Instant) -> Option<Instant> {
        let w = self.waiting.iter_mut().find(|w| w.peer == peer)?;
        w.attempts = w.attempts.saturating_sub(1);
        w.next = now + w.rto;
        self.retransmissions = self.retransmissions.saturating_sub(1);
        Some(w.next)
    }

    /// The peers to retransmit to at `now`; their next attempt is scheduled with backoff.
    pub fn poll_retransmits(&mut self, now: Instant) -> Vec<PeerId> {
        if now >= self.deadline {
            return Vec::new();
        }
        let max_rto = self.max_rto;
        let mut due = Vec::new();
        for w in self.waiting.iter_mut().filter(|w| w.next <= now) {
            w.attempts += 1;
            let backoff = w
                .rto
                .checked_mul(1 << w.attempts.min(16))
                .unwrap_or(max_rto)
                .min(max_rto);
            w.next = now + backoff;
            due.push(w.peer);
        }
        self.retransmissions += u32::try_from(due.len()).unwrap_or(u32::MAX);
        due
    }

    /// When something next needs doing: a retransmission or the deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        let next = self.waiting.iter().map(|w| w.next).min()?;
        Some(next.min(self.deadline))
    }

    /// The peers still waited for (not given up on).
    pub fn waiting(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.waiting.iter().map(|w| w.peer)
    }

    /// The outcome once there is one: every owed peer acknowledged or left, or the deadline
    /// passed (then `missing` names who did not acknowledge).
    pub fn outcome(&self, now: Instant) -> Option<DeliveryReport> {
        if !self.waiting.is_empty() && now < self.deadline {
            return None;
        }
        let mut report = DeliveryReport {
            message_id: self.id,
            acked: self.acked.clone(),
            left: self.left.clone(),
            missing: self
                .waiting()
                .chain(self.given_up.iter().copied())
                .collect(),
            retransmissions: self.retransmissions,
        };
        report.acked.sort();
        report.left.sort();
        report.missing.sort();
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 16])
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn acks_complete_the_message() {
        let t0 = Instant::ZERO;
        let mut m = ReliableSend::new(
            t0,
            5,
            [(peer(1), MS), (peer(2), MS)],
            t0 + 100 * MS,
            50 * MS,
        );
        assert_eq!(m.outcome(t0), None);
        assert!(m.on_ack(peer(1)));
        assert!(!m.on_ack(peer(1)), "a duplicate ack changes nothing");
        assert!(m.on_ack(peer(2)));
        let report = m.outcome(t0).unwrap();
        assert!(report.is_complete());
        assert_eq!(report.acked, [peer(1), peer(2)]);
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn retransmissions_back_off_and_stop_at_the_deadline() {
        let t0 = Instant::ZERO;
        let mut m = ReliableSend::new(t0, 1, [(peer(1), 10 * MS)], t0 + 100 * MS, 40 * MS);
        assert_eq!(m.poll_timeout(), Some(t0 + 10 * MS));
        assert!(m.poll_retransmits(t0 + 9 * MS).is_empty());
        let mut sent_at = Vec::new();
        let mut now = t0;
        while let Some(next) = m.poll_timeout() {
            now = next;
            if !m.poll_retransmits(now).is_empty() {
                sent_at.push(now.as_micros() / 1000);
            }
            if m.outcome(now).is_some() {
                break;
            }
        }
        // 10, then +20, +40 (cap), +40...
        assert_eq!(sent_at, [10, 30, 70]);
        let report = m.outcome(now).unwrap();
        assert_eq!(report.missing, [peer(1)]);
        assert_eq!(report.retransmissions, 3);
    }

    #[test]
    fn a_peer_that_leaves_is_named_and_not_waited_for() {
        let t0 = Instant::ZERO;
        let mut m = ReliableSend::new(t0, 1, [(peer(1), MS), (peer(2), MS)], t0 + 100 * MS, MS);
        m.on_ack(peer(1));
        assert!(m.on_peer_left(peer(2)));
        let report = m.outcome(t0).unwrap();
        assert!(report.is_complete());
        assert_eq!(report.left, [peer(2)]);
    }

    #[test]
    fn the_window_bounds_messages_and_bytes_per_peer() {
        let limits = WindowLimits {
            per_peer_events: 2,
            per_peer_bytes: 100,
            total_events: 10,
        };
        let mut w = SendWindow::new(limits, 1000);
        let a = [peer(1)];
        assert_eq!(w.open(&a, 10), Ok(1000));
        assert_eq!(
            w.open(&a, 95),
            Err(Busy::PeerWindowFull {
                peer: peer(1),
                in_flight: 1,
                bytes: 10
            })
        );
        assert_eq!(w.open(&a, 10), Ok(1001));
        assert!(matches!(
            w.open(&a, 1),
            Err(Busy::PeerWindowFull { in_flight: 2, .. })
        ));
        // Another peer is not held up.
        assert_eq!(w.open(&[peer(2)], 500), Ok(1002));
        assert_eq!(w.floor(), 1000);
        w.release_peer(peer(1), 1, 10);
        w.close(1000, 1);
        assert_eq!(w.floor(), 1001);
        assert_eq!(w.open(&a, 10), Ok(1003));
        assert_eq!(w.in_flight(), 3);
    }

    #[test]
    fn the_window_counts_every_event_of_a_message() {
        let limits = WindowLimits {
            per_peer_events: 3,
            per_peer_bytes: 100,
            total_events: 4,
        };
        let mut w = SendWindow::new(limits, 0);
        let (a, b) = ([peer(1)], [peer(2)]);
        assert_eq!(w.open(&a, 10), Ok(0));
        assert_eq!(w.add(&a, 10), Ok(()));
        assert_eq!(w.add(&a, 10), Ok(()));
        assert!(matches!(
            w.add(&a, 10),
            Err(Busy::PeerWindowFull {
                in_flight: 3,
                bytes: 30,
                ..
            })
        ));
        assert_eq!(w.in_flight_to(&a[0]), (3, 30));
        assert_eq!(w.open(&b, 90), Ok(1));
        assert_eq!(w.add(&b, 20), Err(Busy::TooManyInFlight(4)));
        // A held copy of a three-event message goes only into room for all three.
        w.release_peer(peer(1), 3, 30);
        assert!(w.has_room_for(&a[0], 3, 30));
        w.take_peer(peer(1), 1, 80);
        assert!(!w.has_room_for(&a[0], 3, 30));
        w.close(0, 3);
        assert_eq!(w.in_flight(), 1);
    }
}
