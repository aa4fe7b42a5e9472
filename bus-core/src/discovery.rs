//! Discovery and membership: who is out there, what they subscribe to, and whether they are alive.
//!
//! [`PeerTable`] is fed every beacon that arrives and the passing of time; it reports
//! [`MembershipEvent`]s (joined, updated, left, unreachable) for the caller to act on, and
//! answers "who subscribes to this topic". A peer is unreachable when no beacon has come from it
//! for `liveness_factor` times the interval it advertises, plus the 10% its beacons' jitter
//! can add.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use rand::Rng;

use crate::time::{Duration, Instant};
use crate::wire::{Beacon, PROTOCOL_VERSION};
use crate::{PeerId, TopicId};

/// What the table knows of a remote peer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PeerInfo {
    /// Its id.
    pub id: PeerId,
    /// Where its unicast socket is.
    pub addr: SocketAddr,
    /// The topics it subscribes to, sorted.
    pub topics: Vec<TopicId>,
    /// What it said of its topics (names and fingerprints), for those it described: sorted by
    /// id, each one of `topics`.
    pub described: Vec<TopicDescription>,
    /// Its application-defined metadata.
    pub metadata: Vec<(String, String)>,
    /// How often it beacons.
    pub interval: Duration,
    /// Which life of the peer this is (random at each start).
    pub incarnation: u64,
    /// When its last beacon arrived.
    pub last_seen: Instant,
}

impl PeerInfo {
    /// Whether it subscribes to `topic`.
    pub fn subscribes_to(&self, topic: TopicId) -> bool {
        self.topics.binary_search(&topic).is_ok()
    }

    /// What it said of `topic`, if it described it.
    pub fn description(&self, topic: TopicId) -> Option<&TopicDescription> {
        self.described
            .binary_search_by_key(&topic, |d| d.id)
            .ok()
            .map(|i| &self.described[i])
    }

    /// Whether some of its topics are not described yet.
    pub fn undescribed(&self) -> bool {
        self.described.len() < self.topics.len()
    }
}

/// A topic as a peer describes it (see [`Frame::Topics`](crate::wire::Frame::Topics)).
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct TopicDescription {
    /// Its id: the hash of its name.
    pub id: TopicId,
    /// Its name.
    pub name: String,
    /// The schema fingerprint of the peer's type for it; `None` for an untyped subscription,
    /// which takes any.
    pub fingerprint: Option<u64>,
}

impl TopicDescription {
    /// The description of topic `name`, whose messages have `fingerprint`.
    pub fn new(name: &str, fingerprint: Option<u64>) -> TopicDescription {
        TopicDescription {
            id: TopicId::from_name(name),
            name: name.to_owned(),
            fingerprint,
        }
    }
}

/// A change in membership.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum MembershipEvent {
    /// A peer was heard from for the first time (or again after it left).
    Joined(PeerInfo),
    /// A known peer changed its address, topics or metadata.
    Updated(PeerInfo),
    /// A known peer restarted (it beacons with a new incarnation): whatever was set up with
    /// its previous life (sessions, what it had received) is void.
    Restarted(PeerInfo),
    /// A peer said goodbye.
    Left(PeerId),
    /// A peer fell silent for longer than its liveness timeout; what was last known of it (it
    /// may come back: a partition, or a pause).
    Unreachable(PeerInfo),
    /// Two processes claim one peer id: beacons from `refused` (in a previous incarnation of
    /// the peer) are ignored from now on, and the current claimant is kept. Reported once per
    /// refused address.
    DuplicateId {
        /// The id claimed twice.
        id: PeerId,
        /// Where the refused claimant beacons from.
        refused: SocketAddr,
    },
}

/// Why a beacon was ignored.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum BeaconIgnored {
    /// It came from this peer itself (multicast loops back).
    OwnBeacon,
    /// It speaks another protocol version.
    WrongVersion(u8),
    /// It claims the id of a known peer in a previous life of that peer's: two processes use
    /// one peer id (a real restart never returns to an old incarnation). The current claimant
    /// is kept; this one is refused.
    DuplicateId,
    /// A peer not known yet, and the table already holds as many as it may.
    TableFull,
}

/// The membership state machine. See the [module docs](self).
#[derive(Debug)]
pub struct PeerTable {
    local_id: PeerId,
    /// Peers held at most.
    max_peers: usize,
    liveness_factor: u32,
    peers: BTreeMap<PeerId, PeerInfo>,
    /// Every peer's liveness deadline, earliest first: the next one is found without looking
    /// at every peer (each input asks for it).
    deadlines: BTreeSet<(Instant, PeerId)>,
    /// The incarnation each peer had before its last restart, and whether a claimant in it was
    /// reported.
    retired: BTreeMap<PeerId, (u64, bool)>,
    events: VecDeque<MembershipEvent>,
}

impl PeerTable {
    /// An empty table for the peer `local_id`; peers silent for `liveness_factor` beacon intervals
    /// are declared unreachable.
    pub fn new(local_id: PeerId, liveness_factor: u32) -> PeerTable {
        PeerTable {
            local_id,
            max_peers: usize::MAX,
            liveness_factor: liveness_factor.max(1),
            peers: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            retired: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The same table, holding at most `max_peers` peers: beacons of others are refused until
    /// some leave or fall silent (anyone can claim any id in plaintext, and memory is finite).
    pub fn with_max_peers(mut self, max_peers: usize) -> PeerTable {
        self.max_peers = max_peers;
        self
    }

    /// A beacon arrived from `source`. The event it causes, if any, is queued for
    /// [`PeerTable::poll_event`].
    ///
    /// # Errors
    /// [`BeaconIgnored`] if the beacon is this peer's own or of another protocol version.
    pub fn handle_beacon(
        &mut self,
        now: Instant,
        source: SocketAddr,
        beacon: &Beacon<'_>,
    ) -> Result<(), BeaconIgnored> {
        if beacon.peer_id == self.local_id {
            return Err(BeaconIgnored::OwnBeacon);
        }
        if beacon.version != PROTOCOL_VERSION {
            return Err(BeaconIgnored::WrongVersion(beacon.version));
        }
        if beacon.leaving {
            self.retired.remove(&beacon.peer_id);
            if self.remove(&beacon.peer_id).is_some() {
                self.events.push_back(MembershipEvent::Left(beacon.peer_id));
            }
            return Ok(());
        }
        let mut topics = beacon.topics.clone();
        topics.sort_unstable();
        topics.dedup();
        let info = PeerInfo {
            id: beacon.peer_id,
            // Where it says it is, if it says so (encrypted peers do, so that a replay from
            // elsewhere cannot move it), else where the beacon came from.
            addr: SocketAddr::new(
                beacon.unicast_ip.unwrap_or(source.ip()),
                beacon.unicast_port,
            ),
            described: Vec::new(),
            topics,
            metadata: beacon
                .metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            // Within sane bounds whatever it says: an interval of 2^32 ms would keep a peer
            // that stopped beaconing (or a forged one, in plaintext) for ever.
            interval: Duration::from_millis(u64::from(
                beacon.interval_ms.clamp(1, MAX_INTERVAL_MS),
            )),
            incarnation: beacon.incarnation,
            last_seen: now,
        };
        let retired = self.retired.get_mut(&beacon.peer_id);
        if let Some((old, reported)) = retired
            && *old == beacon.incarnation
            && self.peers.contains_key(&beacon.peer_id)
        {
            if !*reported {
                *reported = true;
                self.events.push_back(MembershipEvent::DuplicateId {
                    id: beacon.peer_id,
                    refused: info.addr,
                });
            }
            return Err(BeaconIgnored::DuplicateId);
        }
        let full = self.peers.len() >= self.max_peers;
        let event = match self.peers.get(&beacon.peer_id) {
            None if full => return Err(BeaconIgnored::TableFull),
            None => Some(MembershipEvent::Joined(info.clone())),
            Some(known) if known.incarnation != info.incarnation => {
                self.retired
                    .insert(beacon.peer_id, (known.incarnation, false));
                Some(MembershipEvent::Restarted(info.clone()))
            }
            Some(known) => {
                let changed = known.addr != info.addr
                    || known.topics != info.topics
                    || known.metadata != info.metadata
                    || known.interval != info.interval;
                changed.then(|| MembershipEvent::Updated(info.clone()))
            }
        };
        let mut info = info;
        if let Some(known) = self.peers.get(&beacon.peer_id)
            && known.incarnation == info.incarnation
        {
            // What it said of topics it still takes still holds.
            info.described = known
                .described
                .iter()
                .filter(|d| info.subscribes_to(d.id))
                .cloned()
                .collect();
        }
        self.remove(&beacon.peer_id);
        self.deadlines.insert((self.deadline(&info), info.id));
        self.peers.insert(beacon.peer_id, info);
        self.events.extend(event);
        Ok(())
    }

    /// Peer `id` described topics as (fingerprint, name), fingerprint 0 for untyped. Kept are
    /// those it announced taking, whose names hash to their ids; a change is reported as an
    /// update. Returns how many descriptions were refused (neither announced nor valid).
    pub fn describe(&mut self, id: PeerId, topics: &[(u64, &str)]) -> usize {
        let Some(peer) = self.peers.get_mut(&id) else {
            return topics.len();
        };
        let mut refused = 0;
        let mut changed = false;
        for (fingerprint, name) in topics {
            let description =
                TopicDescription::new(name, (*fingerprint != 0).then_some(*fingerprint));
            if !peer.subscribes_to(description.id) || crate::validate_topic_name(name).is_err() {
                refused += 1;
                continue;
            }
            match peer
                .described
                .binary_search_by_key(&description.id, |d| d.id)
            {
                Ok(i) if peer.described[i] == description => {}
                Ok(i) => {
                    peer.described[i] = description;
                    changed = true;
                }
                Err(i) => {
                    peer.described.insert(i, description);
                    changed = true;
                }
            }
        }
        if changed {
            self.events
                .push_back(MembershipEvent::Updated(peer.clone()));
        }
        refused
    }

    fn remove(&mut self, id: &PeerId) -> Option<PeerInfo> {
        let info = self.peers.remove(id)?;
        self.deadlines.remove(&(self.deadline(&info), info.id));
        Some(info)
    }

    /// Declares unreachable every peer whose liveness deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<PeerId> = self
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in expired {
            self.retired.remove(&id);
            if let Some(info) = self.remove(&id) {
                self.events.push_back(MembershipEvent::Unreachable(info));
            }
        }
    }

    /// When the next peer's liveness deadline passes, if any peer is known.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// The next membership event, oldest first. Changed by `handle_beacon` and `handle_timeout`.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// The known peers, by id.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values()
    }

    /// A known peer.
    pub fn get(&self, id: &PeerId) -> Option<&PeerInfo> {
        self.peers.get(id)
    }

    /// The known peers that subscribe to `topic`, by id.
    pub fn subscribers(&self, topic: TopicId) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values().filter(move |p| p.subscribes_to(topic))
    }

    /// The instant at which `peer` is declared unreachable if nothing more is heard from it.
    pub fn deadline(&self, peer: &PeerInfo) -> Instant {
        // Each beacon may come 10% late (see `next_beacon_at`): without that allowance, a peer
        // whose next `liveness_factor - 1` beacons are lost is declared unreachable although its
        // next one is on its way (at 10% loss, two in a row once in a hundred beacons).
        let silence = peer.interval * self.liveness_factor;
        peer.last_seen + silence + silence / 10
    }
}

/// The longest beacon interval a peer is taken at: its liveness timeout is at most this many
/// milliseconds times the liveness factor.
pub const MAX_INTERVAL_MS: u32 = 60_000;

/// When to send the next beacon: `interval` from `now`, give or take 10%, so that peers started
/// together do not beacon in lockstep.
pub fn next_beacon_at<R: Rng + ?Sized>(now: Instant, interval: Duration, rng: &mut R) -> Instant {
    let micros = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
    let spread = micros / 10;
    let jittered = micros - spread + rng.random_range(0..=spread.saturating_mul(2));
    now + Duration::from_micros(jittered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn beacon(id: u8, topics: Vec<TopicId>) -> Beacon<'static> {
        Beacon {
            peer_id: PeerId([id; 16]),
            version: PROTOCOL_VERSION,
            leaving: false,
            wants_reply: false,
            unicast_ip: None,
            unicast_port: 4000 + u16::from(id),
            interval_ms: 100,
            incarnation: 7,
            topics,
            metadata: vec![("role", "test")],
        }
    }

    fn source() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn an_advertised_interval_beyond_a_minute_is_taken_as_a_minute() {
        // Field report (attacks, item 6): an interval of 2^32 - 1 ms never expired.
        let mut table = PeerTable::new(PeerId([0; 16]), 3);
        let b = Beacon {
            interval_ms: u32::MAX,
            ..beacon(1, vec![])
        };
        table.handle_beacon(Instant::ZERO, source(), &b).unwrap();
        let _joined = table.poll_event();
        // Three intervals of a minute, and their 10% of jitter.
        let expiry = Instant::from_millis(33 * u64::from(MAX_INTERVAL_MS) / 10);
        assert_eq!(table.poll_timeout(), Some(expiry));
        table.handle_timeout(expiry);
        assert!(matches!(
            table.poll_event(),
            Some(MembershipEvent::Unreachable(_))
        ));
    }

    #[test]
    fn a_full_table_refuses_newcomers_and_keeps_what_it_has() {
        let mut table = PeerTable::new(PeerId([0; 16]), 3).with_max_peers(2);
        let t0 = Instant::from_millis(1);
        for id in 1..=2 {
            table
                .handle_beacon(t0, source(), &beacon(id, vec![]))
                .unwrap();
        }
        assert_eq!(
            table.handle_beacon(t0, source(), &beacon(3, vec![])),
            Err(BeaconIgnored::TableFull)
        );
        assert_eq!(table.peers().count(), 2);
        // Those it holds are still updated.
        table
            .handle_beacon(t0, source(), &beacon(2, vec![TopicId(9)]))
            .unwrap();
        assert_eq!(table.subscribers(TopicId(9)).count(), 1);
    }

    #[test]
    fn join_update_leave() {
        let mut table = PeerTable::new(PeerId([0; 16]), 3);
        let t0 = Instant::from_millis(1);
        let b = beacon(1, vec![TopicId(2), TopicId(1)]);
        table.handle_beacon(t0, source(), &b).unwrap();
        assert!(matches!(
            table.poll_event(),
            Some(MembershipEvent::Joined(_))
        ));
        // The same beacon again: no event, but liveness is refreshed.
        table.handle_beacon(t0, source(), &b).unwrap();
        assert_eq!(table.poll_event(), None);
        let info = table.get(&PeerId([1; 16])).unwrap();
        assert_eq!(info.addr, "127.0.0.1:4001".parse().unwrap());
        assert_eq!(info.topics, [TopicId(1), TopicId(2)]);
        assert_eq!(table.subscribers(TopicId(2)).count(), 1);
        assert_eq!(table.subscribers(TopicId(3)).count(), 0);

        let b2 = beacon(1, vec![TopicId(3)]);
        table.handle_beacon(t0, source(), &b2).unwrap();
        assert!(matches!(
            table.poll_event(),
            Some(MembershipEvent::Updated(_))
        ));
        let bye = Beacon {
            leaving: true,
            wants_reply: false,
            ..b2
        };
        table.handle_beacon(t0, source(), &bye).unwrap();
        assert_eq!(
            table.poll_event(),
            Some(MembershipEvent::Left(PeerId([1; 16])))
        );
        assert_eq!(table.peers().count(), 0);
        assert_eq!(table.poll_event(), None);
    }

    #[test]
    fn a_new_incarnation_is_a_restart() {
        let mut table = PeerTable::new(PeerId([0; 16]), 3);
        let first = beacon(1, vec![TopicId(1)]);
        table
            .handle_beacon(Instant::ZERO, source(), &first)
            .unwrap();
        table.poll_event();
        let reborn = Beacon {
            incarnation: first.incarnation + 1,
            ..first.clone()
        };
        table
            .handle_beacon(Instant::from_millis(5), source(), &reborn)
            .unwrap();
        match table.poll_event() {
            Some(MembershipEvent::Restarted(info)) => {
                assert_eq!(info.incarnation, first.incarnation + 1);
            }
            other => panic!("expected a restart, got {other:?}"),
        }
        // Its next beacons are the same life again: nothing to report.
        table
            .handle_beacon(Instant::from_millis(9), source(), &reborn)
            .unwrap();
        assert_eq!(table.poll_event(), None);
    }

    /// Three intervals (of 100 ms), each allowed its 10% of jitter: two beacons lost and the
    /// third as late as jitter makes it (at 330 ms) keep the peer.
    #[test]
    fn silence_makes_a_peer_unreachable_after_the_liveness_timeout() {
        let mut table = PeerTable::new(PeerId([0; 16]), 3);
        table
            .handle_beacon(Instant::ZERO, source(), &beacon(1, vec![]))
            .unwrap();
        table.poll_event();
        assert_eq!(table.poll_timeout(), Some(Instant::from_millis(330)));
        table.handle_timeout(Instant::from_millis(329));
        assert_eq!(table.poll_event(), None);
        table.handle_timeout(Instant::from_millis(330));
        assert!(matches!(
            table.poll_event(),
            Some(MembershipEvent::Unreachable(info)) if info.id == PeerId([1; 16])
        ));
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn own_and_foreign_version_beacons_are_ignored() {
        let mut table = PeerTable::new(PeerId([1; 16]), 3);
        assert_eq!(
            table.handle_beacon(Instant::ZERO, source(), &beacon(1, vec![])),
            Err(BeaconIgnored::OwnBeacon)
        );
        let other = Beacon {
            version: 9,
            ..beacon(2, vec![])
        };
        assert_eq!(
            table.handle_beacon(Instant::ZERO, source(), &other),
            Err(BeaconIgnored::WrongVersion(9))
        );
    }

    #[test]
    fn beacon_jitter_stays_within_ten_percent() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let interval = Duration::from_millis(1000);
        for _ in 0..1000 {
            let at = next_beacon_at(Instant::ZERO, interval, &mut rng);
            assert!((900_000..=1_100_000).contains(&at.as_micros()));
        }
    }
}
