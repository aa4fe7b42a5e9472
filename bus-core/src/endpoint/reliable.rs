//! Reliable messages: the sender's table of messages in flight (acknowledgement sets,
//! retransmission schedules, the window), and the receiver's dedup windows and
//! acknowledgements owed.

use std::cmp::Reverse;
use std::collections::VecDeque;

use bytes::Bytes;

use super::transfers::Large;
use super::{Endpoint, Event, PublishError, Target};
use crate::FrameTooLarge;
use crate::metrics::{DropReason, ReliableCounters};
use crate::reliability::{Arrival, Busy, ReliableSend, SenderWindows};
use crate::time::{Duration, Instant};
use crate::wire::{AckRanges, Frame, FrameType, Payloads};
use crate::{PeerId, TopicId};

/// A reliable message in flight.
#[derive(Debug)]
pub(super) struct Pending {
    topic: TopicId,
    /// The one peer it is for, if sent to a peer rather than published to the topic's
    /// subscribers: it stays owed to that peer whether or not the peer subscribes.
    to: Option<PeerId>,
    /// Subscribers behind whose copy is held back (not counted in their window yet).
    held: Vec<PeerId>,
    pub(super) send: ReliableSend,
    /// The encoded frame, sent again as it is.
    pub(super) frame: Bytes,
    /// For a frame larger than a datagram: its fragments' id (the same in every copy, so the
    /// pieces sent again complete what the receiver holds) and each peer's progress.
    pub(super) large: Option<Box<Large>>,
    /// The events it carries, and their payload bytes.
    events: usize,
    bytes: usize,
}

/// Events a reliable message carries at most.
pub const MAX_EVENTS_PER_MESSAGE: usize = 1024;

/// Which open message an event joins: its topic's, or one for the one peer it is sent to.
pub(super) type OpenKey = (TopicId, Option<PeerId>);

/// A reliable message still taking events. It is closed, and sent, when the driver next asks
/// for datagrams (so an event published alone waits for nothing: the driver asks as soon as it
/// is idle), when the next event would not fit in one datagram with it or pass
/// [`MAX_EVENTS_PER_MESSAGE`], or when the next event of its topic goes to other subscribers,
/// under another fingerprint or with another deadline.
#[derive(Debug)]
pub(super) struct OpenMessage {
    message_id: u64,
    fingerprint: u64,
    deadline: Duration,
    /// The topic's subscribers when it opened: owed every event it carries.
    subscribers: std::sync::Arc<[PeerId]>,
    owed: Vec<(PeerId, Duration)>,
    /// Owed and counted in the window (neither held back nor given up on).
    counted: Vec<PeerId>,
    held: Vec<PeerId>,
    given_up: Vec<PeerId>,
    /// The events, encoded as the frame carries them.
    payloads: Vec<u8>,
    events: usize,
    bytes: usize,
}

/// What one sender's reliable messages we have received.
#[derive(Debug)]
pub(super) struct Sender {
    /// The life of the sender the window is of, once its beacon told us.
    incarnation: Option<u64>,
    windows: SenderWindows,
    last_heard: Instant,
    /// Whether it was a confirmed peer when last heard (its bitmaps count as such).
    confirmed: bool,
}

/// Bytes of the senders' dedup bitmaps: all of them, and those of senders that are not
/// confirmed peers. In plaintext anyone can claim to be a sender; those we have not confirmed
/// may hold half the bound at most, so that a flood of them leaves room for the peers we know.
#[derive(Debug, Default)]
pub(super) struct DedupUse {
    all: usize,
    unconfirmed: usize,
}

impl DedupUse {
    /// How many more bytes a sender may take.
    fn room(&self, confirmed: bool, max: usize) -> usize {
        let room = max.saturating_sub(self.all);
        if confirmed {
            room
        } else {
            room.min((max / 2).saturating_sub(self.unconfirmed))
        }
    }

    fn add(&mut self, confirmed: bool, bytes: usize) {
        self.all += bytes;
        if !confirmed {
            self.unconfirmed += bytes;
        }
    }

    fn remove(&mut self, confirmed: bool, bytes: usize) {
        self.all -= bytes;
        if !confirmed {
            self.unconfirmed -= bytes;
        }
    }
}

/// How long a subscriber's window must stay full, with no acknowledgement from it, before it
/// is reported behind.
const BEHIND_AFTER: Duration = Duration::from_secs(1);

/// Ranges per ack frame: a few hundred bytes at worst (the ids of one sender lie within its
/// window, so gaps and lengths take a few bytes each), well inside a datagram.
const RANGES_PER_ACK: usize = 64;

impl Endpoint {
    /// Publishes a reliable event of `topic` to every remote subscriber known now. It joins the
    /// topic's open reliable message if it can (one not yet sent), or opens one; the message
    /// is sent when closed, retransmitted to each subscriber until it acknowledges, and
    /// finished by [`Event::Finished`] when all have (or left), or at `deadline` with those
    /// missing named. Returns the id of the message that carries the event, or `None` if
    /// nobody remote subscribes (nothing is sent).
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] if it is over the largest message (whether or not anyone
    /// listens); [`PublishError::Busy`] if the window toward a subscriber is full (retry after
    /// [`Event::WindowRoom`]).
    pub fn publish_reliable(
        &mut self,
        now: Instant,
        topic: TopicId,
        fingerprint: u64,
        payload: &[u8],
        deadline: Duration,
    ) -> Result<Option<u64>, PublishError> {
        self.check_reliable_fits(payload)?;
        let Some(subscribers) = self.routes.get(&topic).map(|r| r.subscribers.clone()) else {
            return Ok(None);
        };
        self.open_reliable(
            now,
            (topic, None),
            subscribers,
            fingerprint,
            payload,
            deadline,
        )
        .map(Some)
    }

    /// Sends a reliable event of `topic` to `peer` alone, whether or not it subscribes: as
    /// [`Endpoint::publish_reliable`], except that the message is owed to that peer only (its
    /// copies go by unicast) and is not settled if the peer stops subscribing. A peer with no
    /// local subscription to the topic does not acknowledge it, so its report names the peer as
    /// missing. Returns the id of the message that carries the event.
    ///
    /// # Errors
    /// [`PublishError::UnknownPeer`] if `peer` is not in the peer table; otherwise as
    /// [`Endpoint::publish_reliable`].
    pub fn send_reliable_to(
        &mut self,
        now: Instant,
        peer: PeerId,
        (topic, fingerprint): (TopicId, u64),
        payload: &[u8],
        deadline: Duration,
    ) -> Result<u64, PublishError> {
        self.check_reliable_fits(payload)?;
        if self.table.get(&peer).is_none() {
            return Err(PublishError::UnknownPeer(peer));
        }
        let to: std::sync::Arc<[PeerId]> = std::sync::Arc::from([peer]);
        self.open_reliable(now, (topic, Some(peer)), to, fingerprint, payload, deadline)
    }

    fn check_reliable_fits(&self, payload: &[u8]) -> Result<(), PublishError> {
        let len = reliable_frame_len(payload.len(), 0);
        let max = self.config.reassembly.max_message;
        if len > max {
            return Err(PublishError::TooLarge(FrameTooLarge { len, max }));
        }
        Ok(())
    }

    /// Adds a reliable event for `subscribers` to the open message of `key`, or opens one.
    fn open_reliable(
        &mut self,
        now: Instant,
        key: OpenKey,
        subscribers: std::sync::Arc<[PeerId]>,
        fingerprint: u64,
        payload: &[u8],
        deadline: Duration,
    ) -> Result<u64, PublishError> {
        let max_body = self.outbox.max_body();
        let joins = self.open.get(&key).map(|open| {
            open.fingerprint == fingerprint
                && open.deadline == deadline
                && open.subscribers == subscribers
                && open.events < MAX_EVENTS_PER_MESSAGE
                && reliable_frame_len(payload.len(), open.payloads.len()) <= max_body
        });
        match (joins, self.open.get_mut(&key)) {
            (Some(true), Some(open)) => match self.window.add(&open.counted, payload.len()) {
                Ok(()) => {
                    Payloads::push(&mut open.payloads, payload);
                    open.events += 1;
                    open.bytes += payload.len();
                    return Ok(open.message_id);
                }
                Err(busy) => {
                    self.report_behind(now, &busy);
                    return Err(PublishError::Busy(busy));
                }
            },
            (Some(false), _) => self.close_message(now, key),
            _ => {}
        }
        let owed: Vec<(PeerId, Duration)> = subscribers
            .iter()
            .filter(|id| self.table.get(id).is_some())
            .map(|id| (*id, self.timing(*id).rto))
            .collect();
        // A subscriber given up on is owed the message but sent nothing: it is missing at once.
        let (given_up, owed_now): (Vec<PeerId>, Vec<PeerId>) = if self.given_up.is_empty() {
            (Vec::new(), owed.iter().map(|(id, _)| *id).collect())
        } else {
            owed.iter()
                .map(|(id, _)| *id)
                .partition(|id| self.given_up.contains_key(id))
        };
        // A subscriber reported behind holds back only itself: it is still owed the message, but
        // its copy waits for room in its window instead of everyone waiting for it.
        let (held, counted): (Vec<PeerId>, Vec<PeerId>) = if self.behind.is_empty() {
            (Vec::new(), owed_now)
        } else {
            owed_now
                .into_iter()
                .partition(|id| self.behind.get(id).is_some_and(|(_, reported)| *reported))
        };
        let message_id = match self.window.open(&counted, payload.len()) {
            Ok(id) => id,
            Err(busy) => {
                self.report_behind(now, &busy);
                return Err(PublishError::Busy(busy));
            }
        };
        let mut payloads = Vec::with_capacity(Payloads::cost(payload.len()));
        Payloads::push(&mut payloads, payload);
        self.open.insert(
            key,
            OpenMessage {
                message_id,
                fingerprint,
                deadline,
                subscribers,
                owed,
                counted,
                held,
                given_up,
                payloads,
                events: 1,
                bytes: payload.len(),
            },
        );
        // Closed when the driver next asks for datagrams.
        self.mark_busy();
        Ok(message_id)
    }

    /// Closes every open reliable message and queues it: the driver asks for datagrams.
    pub(super) fn close_messages(&mut self, now: Instant) {
        while let Some(key) = self.open.keys().next().copied() {
            self.close_message(now, key);
        }
    }

    /// Closes the open reliable message of `key`, if any: its frame is made, it goes to its
    /// subscribers, and its retransmission schedule starts.
    fn close_message(&mut self, now: Instant, key: OpenKey) {
        let Some(open) = self.open.remove(&key) else {
            return;
        };
        let (topic, to) = key;
        let message_id = open.message_id;
        let frame = Frame::ReliablePublish {
            topic,
            fingerprint: open.fingerprint,
            message_id,
            window: message_id.saturating_sub(self.window.floor()),
            payloads: Payloads::encoded(open.events as u64, &open.payloads),
        };
        let mut bytes = Vec::with_capacity(frame.encoded_len());
        frame.emit(&mut bytes);
        let (group, unicast) = match to {
            Some(peer) => (false, self.addr_of(peer).into_iter().collect()),
            None => self.targets(topic).unwrap_or_default(),
        };
        let only_given_up = open.counted.is_empty() && open.held.is_empty();
        let skipped_addrs: Vec<std::net::SocketAddr> = open
            .held
            .iter()
            .chain(&open.given_up)
            .filter_map(|id| self.addr_of(*id))
            .collect();
        self.longest_deadline = self.longest_deadline.max(open.deadline);
        self.pings.mark_active(open.owed.iter().map(|(id, _)| *id));
        // The unicast copies, each with the subscriber it is for.
        let unicast: Vec<(std::net::SocketAddr, Option<PeerId>)> = unicast
            .iter()
            .filter(|a| !skipped_addrs.contains(a))
            .map(|a| {
                let peer = open
                    .counted
                    .iter()
                    .find(|id| self.addr_of(**id) == Some(*a));
                (*a, peer.copied())
            })
            .collect();
        let mut send = ReliableSend::new(
            now,
            message_id,
            open.owed,
            now + open.deadline,
            self.config.max_rto,
        );
        for peer in &open.held {
            send.hold(*peer);
            self.held.entry(*peer).or_default().push_back(message_id);
        }
        for peer in &open.given_up {
            send.give_up(*peer);
        }
        // A frame larger than a datagram carries one event (events join only while the frame
        // fits), and goes as fragments.
        let fragment_id = self.next_fragment_id;
        let large = crate::fragment::piece_len(fragment_id, bytes.len(), self.outbox.max_body())
            .filter(|_| bytes.len() > self.outbox.max_body())
            .map(|piece_len| {
                self.next_fragment_id += 1;
                self.large_ids.insert(fragment_id, message_id);
                let owed: Vec<PeerId> = open.counted.iter().chain(&open.held).copied().collect();
                let window = self.config.large_window;
                Box::new(Large::new(
                    fragment_id,
                    (piece_len, bytes.len()),
                    &owed,
                    window,
                ))
            });
        let is_large = large.is_some();
        let pending = Pending {
            topic,
            to,
            held: open.held,
            send,
            frame: Bytes::from(bytes),
            large,
            events: open.events,
            bytes: open.bytes,
        };
        let frame = pending.frame.clone();
        let poll_timeout = pending.send.poll_timeout();
        self.pending.insert(message_id, pending);
        let targets = group
            .then_some((Target::Group, None))
            .into_iter()
            .chain(unicast.iter().map(|(a, peer)| (Target::Unicast(*a), *peer)));
        for (target, peer) in targets {
            if is_large {
                self.queue_large_copy(message_id, target, peer);
            } else {
                // Fits: events joined only while the frame did.
                let _ = self.queue_encoded(target, FrameType::ReliablePublish, &frame);
            }
        }
        ReliableCounters::bump(&self.metrics.reliable.sent, 1);
        ReliableCounters::bump(&self.metrics.reliable.events_sent, open.events as u64);
        self.events.push_back(Event::Sent {
            message_id,
            topic,
            events: open.events,
        });
        if let Some(at) = poll_timeout {
            self.wakes.push(Reverse((at, message_id)));
        }
        if only_given_up {
            // Owed only to subscribers given up on: its outcome is known now.
            self.finish_if_settled(now, message_id, None);
        }
    }

    /// Counts a publish refused for a full window, and reports a subscriber whose window has
    /// stayed full for [`BEHIND_AFTER`] without an acknowledgement from it (a burst fills every
    /// window for a moment; a subscriber that keeps up empties it again).
    fn report_behind(&mut self, now: Instant, busy: &Busy) {
        ReliableCounters::bump(&self.metrics.reliable.window_full, 1);
        let Busy::PeerWindowFull {
            peer, in_flight, ..
        } = *busy
        else {
            return;
        };
        let (since, reported) = self.behind.entry(peer).or_insert((now, false));
        if !*reported && now.saturating_duration_since(*since) >= BEHIND_AFTER {
            *reported = true;
            self.events
                .push_back(Event::SubscriberBehind { peer, in_flight });
        }
    }

    /// Reports the subscribers whose window has stayed full for [`BEHIND_AFTER`] since a publish
    /// found it full, with no acknowledgement from them meanwhile: a publisher that waits for
    /// room does not publish again to find out, and would wait for the laggard's messages to
    /// expire. A waiting publisher is woken to try again; its copies to the laggard are held
    /// back from then on.
    pub(super) fn check_behind(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .behind
            .iter()
            .filter(|(_, (since, reported))| {
                !*reported && now.saturating_duration_since(*since) >= BEHIND_AFTER
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            if self.window.has_room_for(&peer, 1, 1) {
                // Room came back (its messages expired): nothing to report.
                self.behind.remove(&peer);
                continue;
            }
            if let Some((_, reported)) = self.behind.get_mut(&peer) {
                *reported = true;
            }
            let (in_flight, _) = self.window.in_flight_to(&peer);
            self.events
                .push_back(Event::SubscriberBehind { peer, in_flight });
            self.room_freed += 1;
        }
    }

    /// When [`Endpoint::check_behind`] next has something to report.
    pub(super) fn next_behind_check(&self) -> Option<Instant> {
        self.behind
            .values()
            .filter(|(_, reported)| !*reported)
            .map(|(since, _)| *since + BEHIND_AFTER)
            .min()
    }

    /// A reliable message from `sender` (its id and the sender's window), carrying `payloads`:
    /// to be delivered if new, and owed to `from` an acknowledgement either way (our first one
    /// may have been lost). Returns whether it is new or a duplicate; `None` if it was refused
    /// (and is not acknowledged).
    pub(super) fn on_reliable(
        &mut self,
        now: Instant,
        from: std::net::SocketAddr,
        sender: PeerId,
        (message_id, window): (u64, u64),
        payloads: &Payloads<'_>,
    ) -> Option<Arrival> {
        let confirmed = self.confirmed(sender);
        if !self.senders.contains_key(&sender) && !self.make_room_for_sender(confirmed) {
            self.metrics.dropped(DropReason::DedupFull);
            return None;
        }
        let table = &self.table;
        let state = self.senders.entry(sender).or_insert_with(|| Sender {
            incarnation: table.get(&sender).map(|p| p.incarnation),
            windows: SenderWindows::default(),
            last_heard: now,
            confirmed,
        });
        state.last_heard = now;
        // Its bitmaps are counted again after the arrival, in the class it is in now; the room
        // it may grow by is what it would have with them counted there.
        let before = state.windows.memory();
        self.dedup.remove(state.confirmed, before);
        state.confirmed = confirmed;
        let room = self
            .dedup
            .room(confirmed, self.config.max_dedup_bytes)
            .saturating_sub(before);
        let floor = message_id.saturating_sub(window);
        let arrival = state.windows.on_arrival_within(message_id, floor, room);
        self.dedup.add(confirmed, state.windows.memory());
        match arrival {
            Arrival::New => {
                ReliableCounters::bump(&self.metrics.reliable.received, 1);
                ReliableCounters::bump(&self.metrics.reliable.events_received, payloads.count());
            }
            Arrival::Duplicate => {
                ReliableCounters::bump(&self.metrics.reliable.duplicates, 1);
            }
            Arrival::OutOfWindow => {
                self.metrics.dropped(DropReason::OutOfWindow);
                return None;
            }
            Arrival::NoRoom => {
                self.metrics.dropped(DropReason::DedupFull);
                return None;
            }
        }
        self.acks_owed.entry(from).or_default().push(message_id);
        self.mark_busy();
        Some(arrival)
    }

    /// Acknowledgements from `peer` for the ids in `ranges`.
    pub(super) fn on_ack(&mut self, now: Instant, peer: PeerId, ranges: &AckRanges) {
        let mut done = Vec::new();
        let mut events = 0;
        for range in ranges.ranges() {
            for (id, pending) in self.pending.range_mut(range.clone()) {
                if pending.send.on_ack(peer) {
                    done.push(*id);
                    events += pending.events as u64;
                }
            }
        }
        ReliableCounters::bump(&self.metrics.reliable.acked, events);
        for id in done {
            self.peer_done(now, id, peer);
        }
    }

    /// `sender` is in its life `incarnation`: a window of another life is void (its ids have
    /// nothing to do with this one's), one of a life not known yet is this one's.
    pub(super) fn sender_life(&mut self, sender: PeerId, incarnation: u64) {
        match self.senders.get_mut(&sender) {
            Some(state) if state.incarnation.is_some_and(|known| known != incarnation) => {
                self.forget_sender(sender);
            }
            Some(state) => state.incarnation = Some(incarnation),
            None => {}
        }
    }

    /// Forgets dedup windows of senders silent for longer than any copy of theirs can still
    /// arrive, and lost peers nothing can still be owed to.
    pub(super) fn prune(&mut self, now: Instant) {
        let retention = self.config.dedup_retention;
        let dedup = &mut self.dedup;
        self.senders.retain(|_, s| {
            let keep = now.saturating_duration_since(s.last_heard) < retention;
            if !keep {
                dedup.remove(s.confirmed, s.windows.memory());
            }
            keep
        });
        let owed_for = self.longest_deadline + self.config.max_rto;
        self.lost
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < owed_for);
        // An epoch is refused as stale once older than this (see `epoch_is_fresh`).
        let epochs_last = self.config.rekey_after * 2 + self.config.max_clock_skew;
        self.freshness.prune(now, epochs_last);
        self.sessions.prune(now);
        self.budgets.prune(now);
        self.diagnostics.prune(now);
        for _ in 0..self.reassembler.handle_timeout(now) {
            self.metrics.dropped(DropReason::ReassemblyExpired);
        }
        let given_up_for = self.config.given_up_for;
        self.given_up
            .retain(|_, since| now.saturating_duration_since(*since) < given_up_for);
        let interval = self.config.beacon_interval;
        self.introduced
            .retain(|_, at| now.saturating_duration_since(*at) < interval);
        self.hinted
            .retain(|_, at| now.saturating_duration_since(*at) < Duration::from_secs(1));
    }

    fn forget_sender(&mut self, sender: PeerId) {
        if let Some(state) = self.senders.remove(&sender) {
            self.dedup.remove(state.confirmed, state.windows.memory());
        }
    }

    /// Room for the window of one more sender: while twice `max_peers` are held, the one heard
    /// from longest ago that is not a confirmed peer is forgotten. Returns whether there is
    /// room (a sender that is not confirmed finds none if every one held is).
    fn make_room_for_sender(&mut self, confirmed: bool) -> bool {
        if self.senders.len() < self.config.max_peers.saturating_mul(2) {
            return true;
        }
        let unconfirmed = self
            .senders
            .iter()
            .filter(|(_, s)| !s.confirmed)
            .min_by_key(|(_, s)| s.last_heard)
            .map(|(id, _)| *id);
        let evicted = match unconfirmed {
            Some(id) => id,
            None if confirmed => match self.senders.iter().min_by_key(|(_, s)| s.last_heard) {
                Some((id, _)) => *id,
                None => return true,
            },
            None => return false,
        };
        self.forget_sender(evicted);
        true
    }

    /// Bytes of dedup bitmaps held, for all senders together.
    pub fn dedup_bytes(&self) -> usize {
        self.dedup.all
    }

    /// Where `peer` is, or was last when it fell silent.
    pub(super) fn addr_of(&self, peer: PeerId) -> Option<std::net::SocketAddr> {
        self.table
            .get(&peer)
            .map(|p| p.addr)
            .or_else(|| self.lost.get(&peer).map(|(addr, _)| *addr))
    }

    /// `peer` stopped subscribing to `topic`: the messages of that topic it was owed are
    /// settled as `left` for it.
    pub(super) fn unsubscribed(&mut self, now: Instant, peer: PeerId, topic: TopicId) {
        // An open message owes it too: closed first, so that it is settled like the others.
        self.close_messages(now);
        let owing: Vec<u64> = self
            .pending
            .iter_mut()
            .filter(|(_, p)| p.topic == topic && p.to.is_none())
            .filter_map(|(id, p)| p.send.on_peer_left(peer).then_some(*id))
            .collect();
        for id in owing {
            self.peer_done(now, id, peer);
        }
    }

    /// `peer` left: nobody waits for it any more.
    pub(super) fn peer_gone(&mut self, now: Instant, peer: PeerId) {
        self.close_messages(now);
        let owing: Vec<u64> = self
            .pending
            .iter_mut()
            .filter_map(|(id, p)| p.send.on_peer_left(peer).then_some(*id))
            .collect();
        for id in owing {
            self.peer_done(now, id, peer);
        }
        // Nothing more goes to it.
        self.held.remove(&peer);
    }

    /// `peer` is done with message `id`; finishes it if that was the last one owed it.
    fn peer_done(&mut self, now: Instant, id: u64, peer: PeerId) {
        // It made progress: not behind (any more), and no run of misses.
        if !self.behind.is_empty() {
            self.behind.remove(&peer);
        }
        if !self.misses.is_empty() {
            self.misses.remove(&peer);
        }
        let counted = self.pending.get_mut(&id).is_some_and(|p| {
            if let Some(large) = p.large.as_mut() {
                large.done(peer);
            }
            match p.held.iter().position(|h| *h == peer) {
                // A held copy reached it anyway (by the group): it was never counted.
                Some(i) => {
                    p.held.swap_remove(i);
                    false
                }
                None => true,
            }
        });
        let done = counted.then_some(peer);
        if !self.finish_if_settled(now, id, done)
            && counted
            && let Some(pending) = self.pending.get(&id)
        {
            self.window
                .release_peer(peer, pending.events, pending.bytes);
            self.room_freed += pending.events;
        }
        self.send_held(now, peer);
    }

    /// Sends `peer` the copies held back for it while its window has room.
    fn send_held(&mut self, now: Instant, peer: PeerId) {
        if !self.held.contains_key(&peer) {
            return;
        }
        let Some(addr) = self.addr_of(peer) else {
            return;
        };
        while let Some(id) = self.held.get(&peer).and_then(|q| q.front().copied()) {
            let Some(pending) = self.pending.get_mut(&id) else {
                // Finished meanwhile.
                self.held.get_mut(&peer).map(VecDeque::pop_front);
                continue;
            };
            let Some(i) = pending.held.iter().position(|h| *h == peer) else {
                self.held.get_mut(&peer).map(VecDeque::pop_front);
                continue;
            };
            if !self
                .window
                .has_room_for(&peer, pending.events, pending.bytes)
            {
                return;
            }
            self.held.get_mut(&peer).map(VecDeque::pop_front);
            pending.held.swap_remove(i);
            if !pending.send.unhold(peer, now) {
                continue;
            }
            self.window.take_peer(peer, pending.events, pending.bytes);
            if let Some(at) = pending.send.poll_timeout() {
                self.wakes.push(Reverse((at, id)));
            }
            if pending.large.is_some() {
                self.queue_large_copy(id, Target::Unicast(addr), Some(peer));
            } else {
                let frame = pending.frame.clone();
                let _ =
                    self.queue_encoded(Target::Unicast(addr), FrameType::ReliablePublish, &frame);
            }
        }
        if self.held.get(&peer).is_some_and(VecDeque::is_empty) {
            self.held.remove(&peer);
        }
    }

    /// Finishes message `id` if it has an outcome, releasing the window's room for `done` and
    /// for every peer still missing in one go. Returns whether it finished.
    fn finish_if_settled(&mut self, now: Instant, id: u64, done: Option<PeerId>) -> bool {
        let Some(pending) = self.pending.get(&id) else {
            return false;
        };
        let Some(report) = pending.send.outcome(now) else {
            return false;
        };
        if !report.missing.is_empty() {
            ReliableCounters::bump(&self.metrics.reliable.expired, pending.events as u64);
        }
        // Those given up on are missing too, but were never counted in their windows.
        let expired: Vec<PeerId> = pending.send.waiting().collect();
        for peer in done.iter().chain(&expired) {
            // A copy still held back was never counted in its window.
            if !pending.held.contains(peer) {
                self.window
                    .release_peer(*peer, pending.events, pending.bytes);
            }
        }
        let events = pending.events;
        if let Some(large) = &pending.large {
            self.large_ids.remove(&large.fragment_id);
        }
        self.window.close(id, events);
        self.pending.remove(&id);
        self.room_freed += events;
        self.events.push_back(Event::Finished {
            message_id: id,
            events,
            report,
        });
        for peer in expired {
            let limit = self.config.give_up_after;
            let missed = self.misses.entry(peer).or_insert(0);
            *missed += 1;
            if limit > 0 && *missed >= limit {
                self.give_up_on(now, peer);
            } else {
                // Room in its window again (by expiry): its next held copy may go.
                self.send_held(now, peer);
            }
        }
        true
    }

    /// `peer` let [`EndpointConfig::give_up_after`](super::EndpointConfig::give_up_after)
    /// messages in a row expire: every message it is owed is settled as missing for it now, and
    /// nothing more is sent to it for a while.
    fn give_up_on(&mut self, now: Instant, peer: PeerId) {
        self.close_messages(now);
        let missed = self.misses.remove(&peer).unwrap_or(0);
        self.given_up.insert(peer, now);
        self.behind.remove(&peer);
        // Before settling, so that no held copy goes out as room frees.
        self.held.remove(&peer);
        ReliableCounters::bump(&self.metrics.reliable.given_up, 1);
        self.events
            .push_back(Event::SubscriberGivenUp { peer, missed });
        let owing: Vec<u64> = self
            .pending
            .iter_mut()
            .filter_map(|(id, p)| p.send.give_up(peer).then_some(*id))
            .collect();
        for id in owing {
            self.peer_done(now, id, peer);
        }
    }

    /// `peer` is owed messages normally again: its time out is over, or it came back.
    pub(super) fn give_another_chance(&mut self, peer: PeerId) {
        self.given_up.remove(&peer);
        self.misses.remove(&peer);
    }

    /// Retransmits every message whose time has come to the peers still missing it, and
    /// finishes those past their deadline.
    pub(super) fn wake_due(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.wakes.peek().copied() {
            if at > now {
                break;
            }
            self.wakes.pop();
            // A message that finished meanwhile has nothing left to do.
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            let due = pending.send.poll_retransmits(now);
            let (frame, large) = (pending.frame.clone(), pending.large.is_some());
            for peer in due {
                // Its address now: a peer that moved is retransmitted to where it is, one
                // that fell silent to where it was.
                let Some(addr) = self.addr_of(peer) else {
                    continue;
                };
                if !large {
                    let target = Target::Unicast(addr);
                    let _ = self.queue_encoded(target, FrameType::ReliablePublish, &frame);
                } else if !self.resend_large(id, peer, addr) {
                    // Its copy is still waiting for its turn.
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.send.deferred(peer, now);
                    }
                    continue;
                }
                ReliableCounters::bump(&self.metrics.reliable.retransmitted, 1);
            }
            if self.finish_if_settled(now, id, None) {
                continue;
            }
            if let Some(next) = self.pending.get(&id).and_then(|p| p.send.poll_timeout()) {
                self.wakes.push(Reverse((next, id)));
            }
        }
    }

    /// Turns the acknowledgements owed into ack frames, batched per sender: the ids merged into
    /// ranges first, so a run of consecutive ids costs one range whatever its length.
    pub(super) fn queue_acks(&mut self) {
        self.queue_fragment_reports();
        for (to, ids) in std::mem::take(&mut self.acks_owed) {
            let all = AckRanges::from_ranges(ids.iter().map(|id| *id..=*id));
            for chunk in all.ranges().chunks(RANGES_PER_ACK) {
                let ranges = AckRanges::from_ranges(chunk.iter().cloned());
                if self
                    .queue(Target::Unicast(to), &Frame::Ack(ranges))
                    .is_err()
                {
                    self.metrics.dropped(DropReason::SendFailed);
                }
            }
        }
    }
}

/// The length of a reliable frame carrying `encoded` bytes of events and one more of
/// `payload_len` bytes, with ids and window at their largest.
fn reliable_frame_len(payload_len: usize, encoded: usize) -> usize {
    let varints = 3 * crate::wire::MAX_VARINT_LEN;
    1 + 8 + 8 + varints + encoded + Payloads::cost(payload_len)
}
