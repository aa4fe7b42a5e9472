//! Beacons, membership and routes: who is there, what they subscribe to, who hears our
//! multicast, and where each topic's messages go; and the gossip that lets one seed introduce
//! the cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use super::{Endpoint, Event, Route, Target};
use crate::discovery::{MembershipEvent, PeerInfo};
use crate::metrics::DropReason;
use crate::time::Instant;
use crate::wire::{Beacon, Frame, FrameType, PROTOCOL_VERSION, PeerAddr};
use crate::{PeerId, TopicId};

/// Peers listed per gossip frame, and introductions made per frame received.
const GOSSIP_PEERS: usize = 32;

impl Endpoint {
    pub(super) fn beacon(&self, leaving: bool, wants_reply: bool) -> Vec<u8> {
        let config = &self.config;
        let frame = Frame::Beacon(Box::new(Beacon {
            peer_id: config.local_id,
            version: PROTOCOL_VERSION,
            leaving,
            wants_reply,
            // Named when encrypted (authenticated, so a replay cannot move us); a plaintext
            // beacon proves nothing, and the source is as good as anything it could say.
            unicast_ip: if config.security.is_insecure() {
                None
            } else {
                config.unicast_ip
            },
            unicast_port: config.unicast_port,
            interval_ms: u32::try_from(config.beacon_interval.as_millis()).unwrap_or(u32::MAX),
            incarnation: self.incarnation,
            topics: self.local_topics.iter().copied().collect(),
            metadata: config
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }));
        let mut bytes = Vec::new();
        frame.emit(&mut bytes);
        bytes
    }

    /// Sends our beacon to each of `targets`.
    pub(super) fn send_beacon(&mut self, targets: &[Target], leaving: bool) {
        self.send_beacon_of(targets, self.beacon(leaving, false));
    }

    /// Sends our beacon to `to`, asking for its in return.
    pub(super) fn send_beacon_asking(&mut self, to: SocketAddr) {
        self.send_beacon_of(&[Target::Unicast(to)], self.beacon(false, true));
    }

    fn send_beacon_of(&mut self, targets: &[Target], beacon: Vec<u8>) {
        for target in targets {
            if self
                .queue_encoded(*target, FrameType::Beacon, &beacon)
                .is_err()
            {
                // Metadata and topics too many for one datagram: the configuration is at fault.
                self.metrics.dropped(DropReason::SendFailed);
                return;
            }
        }
    }

    /// Where our periodic beacon goes: the group; the seeds; and every known peer not known to
    /// hear our multicast (on a network without it, nothing else keeps us alive in its table).
    pub(super) fn beacon_targets(&self) -> Vec<Target> {
        let group = self.config.multicast.then_some(Target::Group);
        let unicast: BTreeSet<SocketAddr> = self
            .config
            .seeds
            .iter()
            .copied()
            .chain(
                self.table
                    .peers()
                    .filter(|p| !self.hears_our_multicast(p.id))
                    .map(|p| p.addr),
            )
            .collect();
        group
            .into_iter()
            .chain(unicast.into_iter().map(Target::Unicast))
            .collect()
    }

    /// Tells each unicast target of our beacon which peers we know (a window of at most
    /// [`GOSSIP_PEERS`], moving on at each beacon), so that one seed introduces the cluster.
    /// Only confirmed peers are named: their answers prove they are at the address we give,
    /// so no one can have the cluster send beacons to an address of its choosing.
    pub(super) fn gossip(&mut self, targets: &[Target]) {
        let all: Vec<PeerAddr> = self
            .table
            .peers()
            .filter(|p| self.confirmed(p.id))
            .map(|p| PeerAddr {
                id: p.id,
                addr: p.addr,
            })
            .collect();
        let known = all.len();
        if known == 0 {
            return;
        }
        let start = self.gossip_from % known;
        let peers: Vec<PeerAddr> = all
            .iter()
            .cycle()
            .skip(start)
            .take(known.min(GOSSIP_PEERS))
            .copied()
            .collect();
        self.gossip_from = start + peers.len();
        let frame = Frame::Peers(peers);
        for target in targets.iter().filter(|t| matches!(t, Target::Unicast(_))) {
            if self.queue(*target, &frame).is_err() {
                self.metrics.dropped(DropReason::SendFailed);
            }
        }
    }

    /// A known peer (at `sponsor`) told us of others: we introduce ourselves to those we do not
    /// know with a unicast beacon (at most [`GOSSIP_PEERS`] a frame, and once a beacon
    /// interval per address), and learn of them only from their own beacons. The beacons are
    /// charged to the sponsor's budget, not to addresses that never sent us anything.
    pub(super) fn introduce_to(&mut self, now: Instant, sponsor: SocketAddr, peers: &[PeerAddr]) {
        let interval = self.config.beacon_interval;
        let strangers: Vec<SocketAddr> = peers
            .iter()
            .filter(|p| p.id != self.config.local_id && self.table.get(&p.id).is_none())
            .filter(|p| {
                self.introduced
                    .get(&p.addr)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= interval)
            })
            .take(GOSSIP_PEERS)
            .map(|p| p.addr)
            .collect();
        let beacon = self.beacon(false, false);
        // The packet around it: its header, tag and timestamp.
        let cost = beacon.len() + self.outbox_overhead();
        for addr in strangers {
            if !self.budgets.grant(now, sponsor, addr, cost) {
                self.metrics.dropped(DropReason::AmplificationLimit);
                break;
            }
            self.introduced.insert(addr, now);
            self.send_beacon_of(&[Target::Unicast(addr)], beacon.clone());
        }
    }

    /// Our topics changed: beacon to the group, the seeds, and every peer that knows us (so
    /// they learn it without waiting for the multicast to loop).
    pub(super) fn announce_topics(&mut self) {
        let mut targets = self.beacon_targets();
        targets.extend(self.table.peers().map(|p| Target::Unicast(p.addr)));
        self.send_beacon(&targets, false);
    }

    pub(super) fn process_membership(&mut self, now: Instant) {
        let mut changed = false;
        while let Some(event) = self.table.poll_event() {
            changed = true;
            match &event {
                MembershipEvent::Joined(info) => {
                    self.lost.remove(&info.id);
                    self.give_another_chance(info.id);
                    self.sender_life(info.id, info.incarnation);
                    // Introduce ourselves at once rather than at our next beacon, and ask at
                    // once whether it can open what we send: routes wait for its answer.
                    self.send_beacon(&[Target::Unicast(info.addr)], false);
                    self.ping(now, info.id);
                }
                MembershipEvent::Updated(_) => {}
                MembershipEvent::Restarted(info) => {
                    // Its sessions and what it had received died with its previous life: new
                    // sessions at once (whichever side initiates), new dedup state. What it is
                    // owed is still owed, and retransmitted to its new life.
                    self.sessions.forget_peer(info.id);
                    // Its incomplete fragmented frames will never be completed.
                    self.reassembler.forget(info.id);
                    self.sender_life(info.id, info.incarnation);
                    self.give_another_chance(info.id);
                    self.calls_to_gone_peer(info.id);
                    self.send_beacon(&[Target::Unicast(info.addr)], false);
                }
                MembershipEvent::Left(id) => {
                    // A goodbye: it is done with what it was owed.
                    self.lost.remove(id);
                    self.forget(*id);
                    self.peer_gone(now, *id);
                    self.calls_to_gone_peer(*id);
                }
                MembershipEvent::DuplicateId { .. } => {}
                MembershipEvent::Unreachable(info) => {
                    // Silence is not a goodbye: it may come back (a partition, a pause), so it
                    // is still owed what it was owed, retried at its last address until the
                    // deadline, and its dedup state stays.
                    self.lost.insert(info.id, (info.addr, now));
                    self.forget(info.id);
                    self.calls_to_gone_peer(info.id);
                }
            }
            self.events.push_back(Event::Membership(event));
        }
        if changed {
            self.update_routes(now);
        }
    }

    /// Forgets the sessions and measurements of a peer no longer in the table.
    pub(super) fn forget(&mut self, id: PeerId) {
        self.sessions.forget_peer(id);
        self.reassembler.forget(id);
        self.timings.remove(&id);
        self.group_heard.remove(&id);
        self.reaches.remove(&id);
        self.pings.forget(id);
        self.behind.remove(&id);
        self.descriptions_exchanged.remove(&id);
    }

    /// Whether `peer`'s group beacons reached us within its liveness timeout.
    pub(super) fn hears_group_of(&self, peer: PeerId, now: Instant) -> bool {
        let (Some(heard), Some(info)) = (self.group_heard.get(&peer), self.table.get(&peer)) else {
            return false;
        };
        now.saturating_duration_since(*heard) < info.interval * self.config.liveness_factor
    }

    /// `peer` answered our ping, saying whether our multicast reaches it; routes follow (the
    /// first answer confirms it), and a change is reported as an update of the peer.
    pub(super) fn reached_by_group(&mut self, now: Instant, peer: PeerId, hears: bool) {
        let first_answer = !self.confirmed(peer);
        if self.reaches.insert(peer, hears) != Some(hears) {
            self.pings.changed(peer, self.config.ping_interval);
            self.update_routes(now);
            if let Some(info) = self.table.get(&peer) {
                let updated = MembershipEvent::Updated(info.clone());
                self.events.push_back(Event::Membership(updated));
            }
        }
        if first_answer {
            self.descriptions_on_confirming(now, peer);
        }
    }

    /// Whether `peer` said it hears our multicast.
    pub fn hears_our_multicast(&self, peer: PeerId) -> bool {
        self.reaches.get(&peer).copied().unwrap_or(false)
    }

    /// Recomputes where each topic goes from the table, reports who began or stopped
    /// subscribing, and settles as `left` what was owed to a peer on a topic it dropped.
    pub(super) fn update_routes(&mut self, now: Instant) {
        let mut subscribers: BTreeMap<TopicId, Vec<&PeerInfo>> = BTreeMap::new();
        // Only to peers that answered us: membership used for delivery is mutual.
        for peer in self.table.peers().filter(|p| self.confirmed(p.id)) {
            for topic in &peer.topics {
                subscribers.entry(*topic).or_default().push(peer);
            }
        }
        let hear_us = |peer: &PeerInfo| {
            self.config.multicast && self.reaches.get(&peer.id).copied().unwrap_or(false)
        };
        let routes = subscribers.into_iter().map(|(topic, peers)| {
            // The group pays from two listeners on; who is not known to hear it gets unicast.
            let group = peers.iter().filter(|p| hear_us(p)).count() >= 2;
            let unicast = peers
                .iter()
                .filter(|p| !group || !hear_us(p))
                .map(|p| p.addr)
                .collect();
            // The table yields peers by id, so these are sorted.
            let subscribers = peers.iter().map(|p| p.id).collect();
            (
                topic,
                Route {
                    group,
                    unicast,
                    subscribers,
                },
            )
        });
        let mut fresh = HashMap::with_hasher(self.routes.hasher().clone());
        fresh.extend(routes);
        let old = std::mem::replace(&mut self.routes, fresh);
        let mut dropped = Vec::new();
        for (topic, route) in &old {
            let now_subscribing = self.routes.get(topic).map_or(&[][..], |r| &r.subscribers);
            for peer in route.subscribers.iter() {
                if now_subscribing.binary_search(peer).is_err() {
                    dropped.push((*topic, *peer));
                }
            }
        }
        let mut joined = Vec::new();
        for (topic, route) in &self.routes {
            let before = old.get(topic).map_or(&[][..], |r| &r.subscribers);
            for peer in route.subscribers.iter() {
                if before.binary_search(peer).is_err() {
                    joined.push((*topic, *peer));
                }
            }
        }
        // In order of topic and peer, whatever the maps' hasher.
        joined.sort_unstable();
        for (topic, peer) in joined {
            self.events
                .push_back(Event::SubscriberJoined { topic, peer });
        }
        dropped.sort_unstable();
        for (topic, peer) in dropped {
            self.events.push_back(Event::SubscriberLeft { topic, peer });
            if self.table.get(&peer).is_some() {
                // Still here, but no longer taking the topic: it is done with it.
                self.unsubscribed(now, peer, topic);
            }
        }
    }
}
