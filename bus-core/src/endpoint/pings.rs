//! Pings: who is pinged when, and what a peer's answer confirms.
//!
//! A peer is routed to only once it has answered a ping of ours: its beacon proves we can open
//! what it sends, its pong that it can open what we send, so membership used for delivery is
//! mutual. Peers we send reliable messages to are pinged every `ping_interval` (their round trip
//! sets the retransmission timeout). The others are pinged at intervals that double from
//! `ping_interval` up to `idle_ping_interval` while their answers stay the same (whether our
//! multicast reaches them), and start again from `ping_interval` when they change: a new
//! peer's state is learned within seconds, and an idle cluster does not cost N² pings a
//! second. A peer that has not answered yet is pinged at every tick until it does.

use std::collections::{HashMap, HashSet};

use rand::RngCore;

use super::{Endpoint, FastHash};
use crate::PeerId;
use crate::metrics::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::Frame;

#[derive(Debug)]
pub(super) struct Pings {
    next_tick: Instant,
    /// Ping ids of this life run from `first_id`, a random number: an answer to one of them
    /// was sent after we started (see the freshness module). Each id adds 24 random bits to
    /// a count, so that an answer proves the ping was received (see the budgets module).
    first_id: u64,
    next_id: u64,
    /// When each known peer was last pinged, and the interval to its next ping if idle.
    last: HashMap<PeerId, Pinged, FastHash>,
    /// Peers sent reliable messages since the last tick.
    active: HashSet<PeerId, FastHash>,
}

#[derive(Debug)]
struct Pinged {
    at: Instant,
    interval: Duration,
}

/// The random part of a ping id.
const RANDOM_BITS: u32 = 24;

impl Pings {
    pub(super) fn new(now: Instant, first_id: u64, last: FastHash, active: FastHash) -> Pings {
        // Room for 2^38 pings before the ids would wrap.
        let first_id = first_id >> 2;
        Pings {
            next_tick: now,
            first_id,
            next_id: first_id,
            last: HashMap::with_hasher(last),
            active: HashSet::with_hasher(active),
        }
    }

    /// Whether this life of ours issued ping `id`.
    pub(super) fn issued(&self, id: u64) -> bool {
        (self.first_id..self.next_id).contains(&id)
    }

    /// The id of a new ping; `random` gives its random part.
    pub(super) fn next_id(&mut self, random: u32) -> u64 {
        let ping_id = self.next_id + u64::from(random >> (32 - RANDOM_BITS));
        self.next_id += 1 << RANDOM_BITS;
        ping_id
    }

    pub(super) fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// `peers` were sent a reliable message: their round trip matters.
    pub(super) fn mark_active(&mut self, peers: impl IntoIterator<Item = PeerId>) {
        self.active.extend(peers);
    }

    /// What `peer` answers changed: ping it often again for a while.
    pub(super) fn changed(&mut self, peer: PeerId, ping_interval: Duration) {
        if let Some(pinged) = self.last.get_mut(&peer) {
            pinged.interval = ping_interval;
        }
    }

    pub(super) fn forget(&mut self, peer: PeerId) {
        self.last.remove(&peer);
        self.active.remove(&peer);
    }
}

impl Endpoint {
    /// Whether `peer` answered a ping of ours since it (last) joined: only then is it routed to.
    pub fn confirmed(&self, peer: PeerId) -> bool {
        self.reaches.contains_key(&peer)
    }

    /// Sends `peer` a ping now, if it is known.
    pub(super) fn ping(&mut self, now: Instant, peer: PeerId) {
        let Some(addr) = self.table.get(&peer).map(|p| p.addr) else {
            return;
        };
        let (active, idle) = (self.config.ping_interval, self.config.idle_ping_interval);
        let interval = match self.pings.last.get(&peer) {
            Some(last) if !self.pings.active.contains(&peer) => (last.interval * 2).min(idle),
            _ => active,
        };
        let pinged = Pinged { at: now, interval };
        self.pings.last.insert(peer, pinged);
        self.send_ping(now, addr);
    }

    /// Sends a ping to `addr`, whoever is there.
    pub(super) fn send_ping(&mut self, now: Instant, addr: std::net::SocketAddr) {
        let ping_id = self.pings.next_id(self.rng.next_u32());
        self.budgets.challenged(now, addr, ping_id);
        let frame = Frame::Ping {
            ping_id,
            sent_at_us: now.as_micros(),
        };
        if self.queue(super::Target::Unicast(addr), &frame).is_err() {
            self.metrics.dropped(DropReason::SendFailed);
        }
    }

    /// Pings every peer that is due: active and unconfirmed ones each tick (what goes to an
    /// address that never answers is bounded by its budget), idle ones when their interval has
    /// passed.
    pub(super) fn ping_due(&mut self, now: Instant) {
        if now < self.pings.next_tick {
            return;
        }
        self.pings.next_tick = now + self.config.ping_interval;
        let due: Vec<PeerId> =
            self.table
                .peers()
                .map(|p| p.id)
                .filter(|id| {
                    !self.confirmed(*id)
                        || self.pings.active.contains(id)
                        || self.pings.last.get(id).is_none_or(|last| {
                            now.saturating_duration_since(last.at) >= last.interval
                        })
                })
                .collect();
        for peer in due {
            self.ping(now, peer);
        }
        self.pings.active.clear();
    }
}
