//! The protocol endpoint: every decision one peer makes, as a deterministic state machine.
//!
//! Like quinn-proto's `Endpoint`, it does no I/O. Inputs are datagrams, timeouts, the results of
//! handshake computations and commands from the application; outputs are datagrams to send, the
//! next instant it wants a timeout, and events. The driver (the socket actor in `bus-actors`, or
//! the simulator) moves bytes and time and carries out what the events ask.
//!
//! | input | what it changes |
//! |---|---|
//! | [`Endpoint::handle_datagram`] | membership, sessions, deliveries, acknowledgements, handshakes |
//! | [`Endpoint::handle_timeout`] | beacons, liveness, retransmissions, deadlines |
//! | [`Endpoint::handle_handshake`] | sessions (a computation of [`Event::Handshake`] finished) |
//! | [`Endpoint::publish`], [`Endpoint::publish_reliable`], [`Endpoint::subscribe`], [`Endpoint::subscribe_named`], [`Endpoint::unsubscribe`], [`Endpoint::leave`] | the outbox, the reliable window |
//!
//! | output | when to ask |
//! |---|---|
//! | [`Endpoint::poll_transmit`] | after any input, until `None` |
//! | [`Endpoint::poll_timeout`] | after any input: the next instant to call `handle_timeout` |
//! | [`Endpoint::poll_event`] | after any input, until `None` |
//! | [`Endpoint::poll_wakeup`] | after a command from outside the driver: whether to wake it |
//!
//! Randomness comes from the seed the endpoint is created with, and wall-clock time from the
//! caller, so with the same seed and the same inputs an endpoint does the same thing, byte for
//! byte, encrypted or not.

mod budgets;
mod calls;
mod descriptions;
mod diagnostics;
mod frames;
mod freshness;
mod handshakes;
mod membership;
mod packet;
mod pings;
mod reliable;
mod security;
mod sessions;
mod transfers;

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod direct_tests;
#[cfg(test)]
mod fragment_tests;
#[cfg(test)]
mod register_tests;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub use diagnostics::Misconfiguration;
pub use handshakes::{HandshakeDone, HandshakeJob, HandshakeTicket};
pub use reliable::MAX_EVENTS_PER_MESSAGE;
pub use security::Security;

use crate::batch::{FrameBatcher, FrameTooLarge};
use crate::crypto::handshake::CookieSecret;
use crate::crypto::{EpochReceiver, SenderEpoch};
use crate::discovery::{MembershipEvent, PeerInfo, PeerTable, TopicDescription, next_beacon_at};
use crate::fragment::{self, Reassembler, ReassemblyLimits};
use crate::metrics::{DropReason, Metrics, ReliableCounters};
use crate::reliability::{Busy, DeliveryReport, SendWindow, WindowLimits};
use crate::rtt::{PingSample, RttEstimator};
use crate::time::{Duration, Instant, WallClock};
use crate::wire::{Frame, FrameType, PacketType};
use crate::{PeerId, TopicId};
pub use calls::{CallError, CallFailure, MAX_CALLS_IN_FLIGHT};
use descriptions::DescriptionsExchanged;
use reliable::Pending;
use sessions::Sessions;
use transfers::Transfer;

/// The hasher of the maps on the hot paths: keyed by a seed from the endpoint's RNG (so a
/// remote sender cannot aim for collisions, and runs stay reproducible), and much cheaper than
/// SipHash on the 8- and 16-byte ids they hold.
type FastHash = foldhash::fast::FixedState;

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Target {
    /// The multicast group: every peer.
    Group,
    /// One peer's unicast socket.
    Unicast(SocketAddr),
}

/// A datagram to send.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Transmit {
    /// Where to.
    pub target: Target,
    /// The whole datagram, sealed.
    pub bytes: Vec<u8>,
}

/// Everything an endpoint needs to know that does not change while it runs.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// This peer's id.
    pub local_id: PeerId,
    /// The port peers reach this one's unicast socket at (advertised in beacons).
    pub unicast_port: u16,
    /// The address of this one's unicast socket, advertised in encrypted beacons (`None`:
    /// receivers take the beacon's source).
    pub unicast_ip: Option<std::net::IpAddr>,
    /// Keys and trust.
    pub security: Security,
    /// How often to beacon.
    pub beacon_interval: Duration,
    /// A peer silent for this many of its advertised beacon intervals is unreachable.
    pub liveness_factor: u32,
    /// Unicast addresses that are sent every beacon (for networks without multicast).
    pub seeds: Vec<SocketAddr>,
    /// Application-defined key/value pairs, in every beacon.
    pub metadata: Vec<(String, String)>,
    /// The largest datagram to send, headers included.
    pub max_datagram: usize,
    /// Bytes queued for sending beyond which [`Endpoint::outbox_has_room`] says no.
    pub outbox_limit: usize,
    /// How many reliable messages may be in flight.
    pub window: WindowLimits,
    /// The retransmission timeout toward a peer whose round trip was never measured.
    pub initial_rto: Duration,
    /// The longest gap between retransmissions of a reliable message.
    pub max_rto: Duration,
    /// Sessions and multicast epochs are replaced this often.
    pub rekey_after: Duration,
    /// How far apart the peers' wall clocks may be.
    pub max_clock_skew: Duration,
    /// Handshakes being computed beyond which initiations without a cookie get one.
    pub handshake_load_threshold: usize,
    /// Whether to send to the multicast group at all. With `false`, beacons go to the seeds
    /// only and every message goes by unicast to each subscriber (networks without multicast).
    /// With `true`, a subscriber gets group copies once it says it hears them, and unicast
    /// ones until then.
    pub multicast: bool,
    /// How often peers we send reliable messages to are pinged (their round trip sets the
    /// retransmission timeout), and peers that have not answered yet.
    pub ping_interval: Duration,
    /// How often the other peers are pinged (their answers say whether our multicast still
    /// reaches them).
    pub idle_ping_interval: Duration,
    /// Peers held in the membership table at most; beacons of others are refused and counted
    /// (`table_full`) until some leave or fall silent.
    pub max_peers: usize,
    /// A subscriber that let this many reliable messages in a row pass their deadline without
    /// acknowledging is given up on (0: never): it is reported missing from each message at
    /// once and sent nothing, instead of being retransmitted to until every deadline.
    pub give_up_after: u32,
    /// How long a subscriber stays given up on; then it is owed messages again, a new chance.
    pub given_up_for: Duration,
    /// How long a copy of a peer's reliable message can still arrive after the last one
    /// heard: its longest deadline plus its longest retransmission interval. A sender's dedup
    /// window is kept at least this long after it was last heard, across unreachability and
    /// rejoining, so nothing is delivered twice.
    pub dedup_retention: Duration,
    /// Bytes of dedup bitmaps held for all senders together at most, of which senders that
    /// are not confirmed peers may hold half. An honest sender's window spans its messages in
    /// flight (a few hundred bytes); a reliable message whose window would grow past the bound
    /// is refused unacknowledged and counted (`dedup_full`), and comes again.
    pub max_dedup_bytes: usize,
    /// The largest message that may be sent or received, and what incomplete fragmented
    /// frames may hold (see [`crate::fragment`]). The limit is the same on every interface:
    /// a message larger than a datagram is split into fragments.
    pub reassembly: ReassemblyLimits,
    /// Bytes of a large reliable message's fragments in flight toward one peer at most (sent,
    /// and neither reported held nor taken for lost). Keep it below the receivers' socket
    /// buffers: a burst larger than a receiver's buffer overflows it.
    pub large_window: usize,
}

impl EndpointConfig {
    /// The defaults of a LAN bus for peer `local_id`.
    pub fn new(local_id: PeerId, security: Security) -> EndpointConfig {
        EndpointConfig {
            local_id,
            unicast_port: 0,
            unicast_ip: None,
            security,
            beacon_interval: Duration::from_secs(1),
            liveness_factor: 3,
            seeds: Vec::new(),
            metadata: Vec::new(),
            max_datagram: 1200,
            outbox_limit: 4 << 20,
            window: WindowLimits::default(),
            initial_rto: RttEstimator::INITIAL_RTO,
            max_rto: Duration::from_millis(500),
            rekey_after: Duration::from_secs(120),
            max_clock_skew: Duration::from_secs(60),
            handshake_load_threshold: 8,
            dedup_retention: Duration::from_millis(5_500),
            multicast: true,
            ping_interval: Duration::from_secs(1),
            idle_ping_interval: Duration::from_secs(10),
            give_up_after: 64,
            given_up_for: Duration::from_secs(10),
            max_peers: 4096,
            max_dedup_bytes: 16 << 20,
            reassembly: ReassemblyLimits::default(),
            large_window: fragment::DEFAULT_LARGE_WINDOW,
        }
    }
}

/// What the driver has measured of the path to a peer (from pings), and the endpoint uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerTiming {
    /// The smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// The retransmission timeout for reliable messages to it.
    pub rto: Duration,
    /// Its clock minus ours, in microseconds, once measured.
    pub clock_offset_us: Option<i64>,
}

/// Payloads of one topic that arrived together in one datagram, for the local subscriptions.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The sender.
    pub from: PeerId,
    /// The topic.
    pub topic: TopicId,
    /// Each payload with the sender's schema fingerprint, in the order they were sent.
    pub payloads: Arc<[(u64, Bytes)]>,
    /// When the datagram arrived.
    pub received_at: Instant,
    /// When it was sent, on our clock, once the sender's clock offset is known.
    pub sent_at: Option<Instant>,
}

/// Something the driver must act on or pass to the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Messages for the local subscriptions of a topic.
    Deliver(Delivery),
    /// A peer joined, changed, left or became unreachable.
    Membership(MembershipEvent),
    /// A remote peer began subscribing to a topic (it joined, or its beacon lists the topic now).
    SubscriberJoined {
        /// The topic.
        topic: TopicId,
        /// The peer.
        peer: PeerId,
    },
    /// A remote peer stopped subscribing to a topic (it unsubscribed, left, or is unreachable).
    SubscriberLeft {
        /// The topic.
        topic: TopicId,
        /// The peer.
        peer: PeerId,
    },
    /// Packets from `from` say a configuration is wrong (see [`Misconfiguration`]): every
    /// one is dropped and counted, and this is reported at most once per 10 s per address and
    /// cause, with the packets since the last report.
    Misconfigured {
        /// Where they come from.
        from: SocketAddr,
        /// What is wrong.
        what: Misconfiguration,
        /// Packets since the last report of it.
        packets: u64,
    },
    /// A subscriber is behind: for a second, every reliable publish found its window of
    /// messages in flight full, and it acknowledged nothing meanwhile (it is much slower than
    /// we publish, or does not acknowledge at all). Reported once per such stretch;
    /// `metrics().reliable.window_full` counts every publish refused for a full window.
    SubscriberBehind {
        /// The peer.
        peer: PeerId,
        /// Its messages in flight.
        in_flight: usize,
    },
    /// A peer answered one of our pings.
    Pong {
        /// The peer.
        peer: PeerId,
        /// The four timestamps of the exchange.
        sample: PingSample,
    },
    /// A reliable message was closed and sent: no more events join it, and its outcome comes
    /// later as [`Event::Finished`].
    Sent {
        /// The message's id, as [`Endpoint::publish_reliable`] returned it for each event.
        message_id: u64,
        /// Its topic.
        topic: TopicId,
        /// How many events it carries.
        events: usize,
    },
    /// A reliable message has its outcome: acknowledged by everyone owed it, or not by the
    /// deadline. It is the outcome of every event the message carried.
    Finished {
        /// The message's id, as [`Endpoint::publish_reliable`] returned it for each event.
        message_id: u64,
        /// How many events it carried.
        events: usize,
        /// Who acknowledged, who left, who is missing.
        report: DeliveryReport,
    },
    /// A subscriber let [`EndpointConfig::give_up_after`] reliable messages in a row pass their
    /// deadline: it is reported missing from every message at once, and sent nothing, for
    /// [`EndpointConfig::given_up_for`].
    SubscriberGivenUp {
        /// The subscriber.
        peer: PeerId,
        /// The messages in a row it missed.
        missed: u32,
    },
    /// Room in the reliable window was given back: this many publishers waiting may try again.
    WindowRoom(usize),
    /// A peer calls procedure `method`: answer with [`Endpoint::reply`]. Each call comes once,
    /// however often the caller sends it.
    Request {
        /// The caller.
        from: PeerId,
        /// Its id for the call, to answer it.
        call_id: u64,
        /// The procedure.
        method: u64,
        /// The argument.
        payload: Bytes,
    },
    /// A peer reads (`write` is `None`) or writes register `register`: answer with
    /// [`Endpoint::reply`] (the value, or nothing once written). Each comes once, however
    /// often the peer sends it.
    RegisterRequest {
        /// The reader or writer.
        from: PeerId,
        /// Its id for the request, to answer it.
        call_id: u64,
        /// The register.
        register: TopicId,
        /// The fingerprint of the peer's type for it.
        fingerprint: u64,
        /// The value written, for a write.
        write: Option<Bytes>,
    },
    /// A peer wrote register `register` unreliably (no answer is owed).
    RegisterWritten {
        /// The writer.
        from: PeerId,
        /// The register.
        register: TopicId,
        /// The fingerprint of the value's type.
        fingerprint: u64,
        /// The value.
        value: Bytes,
    },
    /// A call of ours ([`Endpoint::call`]) was answered.
    Replied {
        /// The id `call` returned.
        call_id: u64,
        /// 0 for success, otherwise the server's error code.
        status: u8,
        /// The result, or the error's message.
        payload: Bytes,
    },
    /// A call of ours failed: it may or may not have run.
    CallFailed {
        /// The id `call` returned.
        call_id: u64,
        /// Why.
        reason: CallFailure,
    },
    /// A handshake computation to run, off the driver's thread if it can (a Diffie-Hellman or
    /// two); its result goes to [`Endpoint::handle_handshake`].
    Handshake(HandshakeJob),
}

/// Why a publish was refused. The caller is at fault for the first and the last; nobody for
/// the second.
// Exhaustive: drivers map every refusal to an error of their own, and one added must be
// mapped there too.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// The message is over the largest message ([`ReassemblyLimits::max_message`]).
    #[error(transparent)]
    TooLarge(#[from] FrameTooLarge),
    /// The reliable window toward a subscriber is full.
    #[error("busy: {0}")]
    Busy(Busy),
    /// A message was sent to a peer that is not in the peer table.
    #[error("no peer {0} is known")]
    UnknownPeer(PeerId),
}

/// Where a topic's messages go on the network, and who is owed its reliable ones.
#[derive(Clone, Debug)]
struct Route {
    /// Whether a copy goes to the group: two subscribers or more are known to hear it.
    group: bool,
    /// The subscribers a copy goes to by unicast: all of them when the group does not pay,
    /// otherwise those not known to hear our multicast.
    unicast: Arc<[SocketAddr]>,
    /// The remote subscribers, sorted by id.
    subscribers: Arc<[PeerId]>,
}

/// A timestamp frame: every packet carries one, so bodies leave room for it.
const TIMESTAMP_FRAME: Frame<'static> = Frame::Timestamp {
    sent_at_us: u64::MAX,
};

/// One peer's protocol state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    metrics: Arc<Metrics>,
    rng: ChaCha20Rng,
    /// Which life of this peer this is: random, in every beacon.
    incarnation: u64,
    /// The last wall-clock reading the driver gave, and when.
    wall: (Instant, WallClock),
    table: PeerTable,
    timings: HashMap<PeerId, PeerTiming, FastHash>,
    routes: HashMap<TopicId, Route, FastHash>,
    local_topics: BTreeSet<TopicId>,
    /// What we say of our topics, for those subscribed by name.
    local_descriptions: BTreeMap<TopicId, TopicDescription>,
    /// When we last asked each peer for descriptions, and last sent ours when asked.
    descriptions_exchanged: HashMap<PeerId, DescriptionsExchanged, FastHash>,
    /// Calls made and served.
    calls: calls::Calls,
    next_beacon: Instant,
    outbox: FrameBatcher<Target>,
    /// Handshake messages, sent as they are ahead of the outbox.
    handshake_out: VecDeque<Transmit>,
    /// Whether the driver has drained every transmit (and so needs waking for new ones).
    idle: bool,
    wakeup: bool,
    /// The counter of plaintext packets.
    packet_counter: u64,
    sessions: Sessions,
    /// Our multicast epoch (secure modes), and when it started on our clock.
    epoch: Option<(SenderEpoch, Instant)>,
    /// What we know to be fresh of others' multicast.
    freshness: freshness::Freshness,
    /// Multicast epoch keys of the senders heard from.
    epochs: EpochReceiver,
    /// DH(group, sender's static) of each trusted sender heard from (public-key mode): the
    /// part of an epoch key that is the same for every epoch of a sender.
    static_dh: HashMap<PeerId, zeroize::Zeroizing<[u8; 32]>, FastHash>,
    /// The secret of our cookies, made when first under load.
    cookies: Option<CookieSecret>,
    /// Handshake computations handed out and not yet handled.
    handshakes_in_flight: usize,
    /// The timestamp of our last initiation: each must be greater than the one before.
    last_initiation: u64,
    /// Peers whose initiation is being computed, so that beacons meanwhile start no other.
    initiations_starting: BTreeSet<SocketAddr>,
    window: SendWindow,
    /// Reliable messages in flight, by id.
    pending: BTreeMap<u64, Pending>,
    /// Reliable messages still taking events, by topic.
    open: BTreeMap<reliable::OpenKey, reliable::OpenMessage>,
    /// When each pending message next needs attention, earliest first. Entries of messages
    /// that finished meanwhile are skipped when they come up.
    wakes: BinaryHeap<Reverse<(Instant, u64)>>,
    /// What each sender's reliable messages we have received, in which of its lives.
    senders: HashMap<PeerId, reliable::Sender, FastHash>,
    /// Bytes of the senders' dedup bitmaps.
    dedup: reliable::DedupUse,
    /// Peers declared unreachable, with their last address and when: still owed what they
    /// were owed until the deadline.
    lost: HashMap<PeerId, (SocketAddr, Instant), FastHash>,
    /// The longest deadline of a reliable message sent so far.
    longest_deadline: Duration,
    /// When dedup windows and lost peers past their retention are next pruned.
    next_prune: Instant,
    /// When each peer's group beacons last reached us.
    group_heard: HashMap<PeerId, Instant, FastHash>,
    /// Which peers say they hear our multicast (from their pongs).
    reaches: HashMap<PeerId, bool, FastHash>,
    pings: pings::Pings,
    /// Where the next gossip frame's window of known peers starts.
    gossip_from: usize,
    /// Subscribers whose window was found full, since when with no acknowledgement from them
    /// in between, and whether that was reported.
    behind: BTreeMap<PeerId, (Instant, bool)>,
    /// Reliable messages in a row each subscriber let pass their deadline (only those with one).
    misses: BTreeMap<PeerId, u32>,
    /// Subscribers given up on, and since when.
    given_up: BTreeMap<PeerId, Instant>,
    /// The messages whose copy to each subscriber behind is held back, oldest first.
    held: BTreeMap<PeerId, VecDeque<u64>>,
    /// Addresses we told they send on a session we do not have, and when.
    hinted: HashMap<SocketAddr, Instant, FastHash>,
    /// Addresses we introduced ourselves to because a peer told us of them, and when.
    introduced: HashMap<SocketAddr, Instant, FastHash>,
    /// What each address may be sent before it proves it is there.
    budgets: budgets::Budgets,
    /// Copies of messages larger than a datagram, sent a fragment at a time when the outbox is
    /// empty: small messages go ahead of a large one instead of behind all of it.
    bulk: VecDeque<transfers::Transfer>,
    /// Their bytes still to send.
    bulk_bytes: usize,
    /// Our large reliable messages in flight: their fragment ids' message ids.
    large_ids: BTreeMap<u64, u64>,
    /// Reports owed on incomplete frames whose fragments asked for them: where to, whose, which.
    reports_owed: BTreeSet<(SocketAddr, PeerId, u64)>,
    /// Incomplete fragmented frames from other peers.
    reassembler: Reassembler,
    /// Packets that say a configuration is wrong, by source.
    diagnostics: diagnostics::Diagnostics,
    /// The id of the next frame we fragment.
    next_fragment_id: u64,
    /// Message ids to acknowledge, by the address of their sender.
    acks_owed: BTreeMap<SocketAddr, Vec<u64>>,
    /// Window room given back since the last [`Event::WindowRoom`].
    room_freed: usize,
    events: VecDeque<Event>,
}

impl Endpoint {
    /// An endpoint whose randomness all comes from `seed` (draw it from the operating system's
    /// random source; fix it only in tests), started at `now` / `wall`. Its first beacon is due
    /// at once.
    pub fn new(config: EndpointConfig, seed: [u8; 32], now: Instant, wall: WallClock) -> Endpoint {
        let mut rng = ChaCha20Rng::from_seed(seed);
        // Random: a restarted peer's first fragmented frames are not taken for its last life's.
        let next_fragment_id = rng.next_u64() >> 16;
        // Random too (a restarted caller's calls are not taken for its last life's), from a
        // stream of its own so that the other draws stay as they were.
        let first_call_id = {
            let mut calls_rng = rng.clone();
            calls_rng.set_stream(1);
            calls_rng.next_u64() >> 16
        };
        let mut hasher = || FastHash::with_seed(rng.next_u64());
        let (timings, routes, senders, lost, group_heard, reaches, introduced) = (
            HashMap::with_hasher(hasher()),
            HashMap::with_hasher(hasher()),
            HashMap::with_hasher(hasher()),
            HashMap::with_hasher(hasher()),
            HashMap::with_hasher(hasher()),
            HashMap::with_hasher(hasher()),
            HashMap::with_hasher(hasher()),
        );
        let ping_hashers = (hasher(), hasher());
        let freshness_hashers = (hasher(), hasher(), hasher());
        let hinted = HashMap::with_hasher(hasher());
        let static_dh = HashMap::with_hasher(hasher());
        let budgets_hasher = hasher();
        let diagnostics = diagnostics::Diagnostics::new(hasher());
        let first_ping_id = rng.next_u64();
        let pings = pings::Pings::new(now, first_ping_id, ping_hashers.0, ping_hashers.1);
        let (fresh_from, probed, answered) = freshness_hashers;
        let freshness = freshness::Freshness::new(fresh_from, probed, answered);
        // A random first id: a restarted peer's ids land far from its previous life's.
        let first_message_id = rng.next_u64() >> 2;
        let incarnation = rng.next_u64();
        let packet_type = if config.security.is_insecure() {
            PacketType::Plain
        } else {
            PacketType::MulticastData
        };
        // The largest header a packet of this mode carries, and its tag.
        let overhead = packet_type.header_len().unwrap_or(72) + packet_type.trailer_len();
        // In the secure modes a unicast body under our epoch also names its recipient.
        let recipient = if config.security.is_insecure() {
            0
        } else {
            packet::TO_FRAME_LEN
        };
        let max_body = config
            .max_datagram
            .saturating_sub(overhead + TIMESTAMP_FRAME.encoded_len() + recipient);
        Endpoint {
            table: PeerTable::new(config.local_id, config.liveness_factor)
                .with_max_peers(config.max_peers),
            sessions: Sessions::new(config.rekey_after),
            window: SendWindow::new(config.window, first_message_id),
            metrics: Arc::new(Metrics::default()),
            rng,
            incarnation,
            wall: (now, wall),
            timings,
            routes,
            local_topics: BTreeSet::new(),
            local_descriptions: BTreeMap::new(),
            descriptions_exchanged: HashMap::default(),
            calls: calls::Calls::new(first_call_id),
            next_beacon: now,
            outbox: FrameBatcher::new(max_body).pad_full_bodies(),
            handshake_out: VecDeque::new(),
            idle: true,
            wakeup: false,
            packet_counter: 0,
            epoch: None,
            freshness,
            epochs: EpochReceiver::new(MAX_EPOCHS),
            static_dh,
            cookies: None,
            handshakes_in_flight: 0,
            last_initiation: 0,
            initiations_starting: BTreeSet::new(),
            pending: BTreeMap::new(),
            open: BTreeMap::new(),
            wakes: BinaryHeap::new(),
            senders,
            dedup: reliable::DedupUse::default(),
            lost,
            longest_deadline: Duration::ZERO,
            next_prune: now,
            group_heard,
            reaches,
            pings,
            gossip_from: 0,
            behind: BTreeMap::new(),
            misses: BTreeMap::new(),
            given_up: BTreeMap::new(),
            held: BTreeMap::new(),
            introduced,
            hinted,
            // Two addresses per peer: room for every peer's, and as many again unverified.
            budgets: budgets::Budgets::new(config.max_peers.saturating_mul(2), budgets_hasher),
            bulk: VecDeque::new(),
            bulk_bytes: 0,
            large_ids: BTreeMap::new(),
            reports_owed: BTreeSet::new(),
            reassembler: Reassembler::new(config.reassembly),
            diagnostics,
            next_fragment_id,
            acks_owed: BTreeMap::new(),
            room_freed: 0,
            events: VecDeque::new(),
            config,
        }
    }

    /// This peer's id.
    pub fn local_id(&self) -> PeerId {
        self.config.local_id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Its counters, shared: the driver adds what only it sees (datagrams sent, send failures).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Unicast sessions established by handshakes so far.
    pub fn handshakes(&self) -> u64 {
        self.sessions.established
    }

    /// The known peers, by id, with what is measured of the path to each.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerInfo, PeerTiming)> {
        self.table.peers().map(|info| (info, self.timing(info.id)))
    }

    /// A known peer.
    pub fn peer(&self, id: PeerId) -> Option<(&PeerInfo, PeerTiming)> {
        self.table.get(&id).map(|info| (info, self.timing(id)))
    }

    /// What is measured of the path to `peer` (the defaults before any measurement).
    pub fn timing(&self, peer: PeerId) -> PeerTiming {
        self.timings.get(&peer).copied().unwrap_or(PeerTiming {
            rtt: None,
            rto: self.config.initial_rto,
            clock_offset_us: None,
        })
    }

    /// Records what the driver measured of the path to `peer`.
    pub fn set_timing(&mut self, peer: PeerId, timing: PeerTiming) {
        if self.table.get(&peer).is_some() {
            self.timings.insert(peer, timing);
        }
    }

    /// The remote subscribers of `topic` known now, by id.
    pub fn subscribers(&self, topic: TopicId) -> &[PeerId] {
        self.routes
            .get(&topic)
            .map_or(&[], |route| &route.subscribers[..])
    }

    /// Reliable messages in flight, and those still taking events.
    pub fn pending_messages(&self) -> usize {
        self.pending.len() + self.open.len()
    }

    /// The reliable window: what is in flight toward whom.
    pub fn window(&self) -> &SendWindow {
        &self.window
    }

    /// The wall clock now, from the driver's last reading and the monotonic time since.
    fn wall_at(&self, now: Instant) -> WallClock {
        let (read_at, wall) = self.wall;
        wall + now.saturating_duration_since(read_at)
    }

    /// Keeps our multicast epoch current (secure modes): a new one every `rekey_after`, or
    /// when its counter runs out, each stamped later than the one before (receivers take a
    /// later epoch of a life they know fresh as fresh: see the freshness module).
    fn advance_epochs(&mut self, now: Instant) {
        if self.config.security.is_insecure() {
            return;
        }
        let rekey_after = self.config.rekey_after;
        let due = self.epoch.as_ref().is_none_or(|(e, started)| {
            now.saturating_duration_since(*started) >= rekey_after || e.sent() >= 1 << 32
        });
        if !due {
            return;
        }
        let previous_ms = self.epoch.as_ref().map_or(0, |(e, _)| e.timestamp_ms());
        let wall_ms = self.wall_at(now).as_millis().max(previous_ms + 1);
        let local = self.config.local_id;
        // None only if our own key is missing, which the configuration rules out; the old
        // epoch then stays until the next try.
        if let Some(fresh) = self
            .config
            .security
            .new_epoch(local, wall_ms, &mut self.rng)
        {
            self.epoch = Some((fresh, now));
        }
    }

    /// When our current epoch started and the counter of our next packet in it (0 and 0 when
    /// insecure).
    fn epoch_position(&mut self, now: Instant) -> (u64, u64) {
        self.advance_epochs(now);
        self.epoch
            .as_ref()
            .map_or((0, 0), |(epoch, _)| (epoch.timestamp_ms(), epoch.sent()))
    }

    fn read_wall(&mut self, now: Instant, wall: WallClock) {
        self.wall = (now, wall);
    }

    /// A datagram arrived from `from`. It is authenticated and opened as the security mode
    /// requires, its frames parsed once and acted on; anything malformed, forged, replayed or
    /// unexpected is dropped and counted, never acted on in part.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: WallClock,
        from: SocketAddr,
        datagram: Bytes,
    ) {
        self.read_wall(now, wall);
        self.metrics.datagram_in(datagram.len());
        self.budgets.received(now, from, datagram.len());
        let Some(opened) = self.open(now, from, datagram) else {
            return;
        };
        if opened.sender == self.config.local_id {
            // Our own multicast, looped back.
            return;
        }
        self.handle_body(now, from, &opened);
    }

    /// The instant [`Endpoint::poll_timeout`] returned has come: beacons, liveness,
    /// retransmissions and deadlines.
    pub fn handle_timeout(&mut self, now: Instant, wall: WallClock) {
        self.read_wall(now, wall);
        self.advance_epochs(now);
        if now >= self.next_beacon {
            let targets = self.beacon_targets();
            self.send_beacon(&targets, false);
            self.gossip(&targets);
            self.next_beacon = next_beacon_at(now, self.config.beacon_interval, &mut self.rng);
        }
        self.table.handle_timeout(now);
        self.process_membership(now);
        self.wake_due(now);
        self.calls_due(now);
        self.check_behind(now);
        self.ping_due(now);
        if now >= self.next_prune {
            self.prune(now);
            self.next_prune = now + PRUNE_EVERY;
        }
    }

    /// The next instant at which [`Endpoint::handle_timeout`] must be called. Changed by every
    /// input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let wake = self.wakes.peek().map(|Reverse((at, _))| *at);
        let ping = Some(self.pings.next_tick());
        [
            Some(self.next_beacon),
            self.next_behind_check(),
            self.table.poll_timeout(),
            wake,
            ping,
            self.calls.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next datagram to send, sealed; `None` once everything queued is out. Changed by
    /// every input.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.close_messages(now);
        self.queue_acks();
        while let Some(transmit) = self.handshake_out.pop_front() {
            if self.may_send(now, transmit.target, transmit.bytes.len()) {
                return Some(transmit);
            }
        }
        loop {
            let Some((target, body)) = self.outbox.poll_body().or_else(|| self.poll_bulk()) else {
                self.idle = true;
                return None;
            };
            // Checked before sealing, which costs more than refusing; a packet is never
            // larger than its body and the most a packet adds.
            let most = body.len() + self.outbox_overhead();
            if !self.may_send(now, target, most) {
                self.outbox.recycle(body);
                continue;
            }
            let packet = self.seal(now, target, &body);
            self.outbox.recycle(body);
            if !packet.is_empty() {
                return Some(Transmit {
                    target,
                    bytes: packet,
                });
            }
        }
    }

    /// Whether a datagram of `len` bytes may go to `target` (see the budgets module): always to
    /// the group and the seeds, to others once verified or within their budget. Counted if not.
    fn may_send(&mut self, now: Instant, target: Target, len: usize) -> bool {
        let Target::Unicast(addr) = target else {
            return true;
        };
        if self.config.seeds.contains(&addr) || self.budgets.try_send(now, addr, len) {
            return true;
        }
        self.metrics.dropped(DropReason::AmplificationLimit);
        false
    }

    /// The bytes a packet adds around its body.
    fn outbox_overhead(&self) -> usize {
        self.config
            .max_datagram
            .saturating_sub(self.outbox.max_body())
    }

    /// The next event; `None` once there are none. Changed by every input.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.room_freed > 0 {
            return Some(Event::WindowRoom(std::mem::take(&mut self.room_freed)));
        }
        self.events.pop_front()
    }

    /// Whether something was queued while the driver was idle: a driver woken by commands from
    /// other threads asks after each, and drains [`Endpoint::poll_transmit`] if so. True once
    /// per idle period.
    pub fn poll_wakeup(&mut self) -> bool {
        std::mem::take(&mut self.wakeup)
    }

    /// Whether the outbox has room for more best-effort messages.
    pub fn outbox_has_room(&self) -> bool {
        self.outbox.queued_bytes() + self.bulk_bytes < self.config.outbox_limit
    }

    /// Whether a frame of `len` bytes fits in a datagram.
    ///
    /// # Errors
    /// [`FrameTooLarge`] naming both sizes if it does not.
    pub fn check_fits(&self, len: usize) -> Result<(), FrameTooLarge> {
        let max = self.outbox.max_body();
        if len > max {
            return Err(FrameTooLarge { len, max });
        }
        Ok(())
    }

    /// Queues a best-effort message of `topic` for its remote subscribers, sharing datagrams
    /// with what else is queued for them; one larger than a datagram goes as fragments.
    /// Returns whether anyone remote subscribes (if nobody does, nothing is sent).
    ///
    /// # Errors
    /// [`FrameTooLarge`] if it is larger than the largest message
    /// ([`ReassemblyLimits::max_message`]), whether or not anyone listens.
    pub fn publish(
        &mut self,
        topic: TopicId,
        fingerprint: u64,
        payload: &[u8],
    ) -> Result<bool, FrameTooLarge> {
        let frame = Frame::Publish {
            topic,
            fingerprint,
            payload,
        };
        Self::check_message_fits(&self.config, &frame)?;
        let Some((group, unicast)) = self.targets(topic) else {
            return Ok(false);
        };
        let targets = group
            .then_some(Target::Group)
            .into_iter()
            .chain(unicast.iter().map(|addr| Target::Unicast(*addr)));
        self.send_message(&frame, targets)?;
        Ok(true)
    }

    /// Sends a best-effort event of `topic` to `peer` alone, by unicast, whether or not it
    /// subscribes (a peer with no local subscription to the topic drops it).
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] if it is over the largest message;
    /// [`PublishError::UnknownPeer`] if `peer` is not in the peer table.
    pub fn send_to(
        &mut self,
        peer: PeerId,
        (topic, fingerprint): (TopicId, u64),
        payload: &[u8],
    ) -> Result<(), PublishError> {
        let frame = Frame::Publish {
            topic,
            fingerprint,
            payload,
        };
        Self::check_message_fits(&self.config, &frame)?;
        let addr = self
            .table
            .get(&peer)
            .map(|p| p.addr)
            .ok_or(PublishError::UnknownPeer(peer))?;
        self.send_message(&frame, std::iter::once(Target::Unicast(addr)))?;
        Ok(())
    }

    fn check_message_fits(config: &EndpointConfig, frame: &Frame<'_>) -> Result<(), FrameTooLarge> {
        let len = frame.encoded_len();
        let max = config.reassembly.max_message;
        if len > max {
            return Err(FrameTooLarge { len, max });
        }
        Ok(())
    }

    /// Queues a best-effort message frame to each of `targets`, as fragments if it is larger
    /// than a datagram.
    fn send_message(
        &mut self,
        frame: &Frame<'_>,
        targets: impl Iterator<Item = Target>,
    ) -> Result<(), FrameTooLarge> {
        let len = frame.encoded_len();
        if len <= self.outbox.max_body() {
            for target in targets {
                self.queue(target, frame)?;
            }
            return Ok(());
        }
        let max_body = self.outbox.max_body();
        let fragment_id = self.next_fragment_id;
        let piece_len = fragment::piece_len(fragment_id, len, max_body)
            .ok_or(FrameTooLarge { len, max: max_body })?;
        self.next_fragment_id += 1;
        let mut encoded = Vec::with_capacity(len);
        frame.emit(&mut encoded);
        let encoded = Bytes::from(encoded);
        for target in targets {
            let copy = Transfer::best_effort(target, encoded.clone(), fragment_id, piece_len);
            self.queue_transfer(copy, false);
        }
        Ok(())
    }

    /// Incomplete fragmented frames held, and the bytes reserved for them.
    pub fn reassembly(&self) -> (usize, usize) {
        (self.reassembler.entries(), self.reassembler.bytes())
    }

    /// Where a message of `topic` goes, counting the unicast copies of a fan-out (subscribers
    /// not known to hear our multicast); `None` if nobody remote subscribes.
    fn targets(&self, topic: TopicId) -> Option<(bool, Arc<[SocketAddr]>)> {
        let route = self.routes.get(&topic)?;
        if route.subscribers.len() >= 2 {
            let copies = route.unicast.len() as u64;
            ReliableCounters::bump(&self.metrics.fanout_unicast, copies);
        }
        Some((route.group, route.unicast.clone()))
    }

    /// A topic gained its first local subscription: peers learn it at once.
    pub fn subscribe(&mut self, topic: TopicId) {
        if self.local_topics.insert(topic) {
            self.announce_topics();
        }
    }

    /// A topic gained a local subscription, by name: peers learn it at once, and can learn
    /// its name and the `fingerprint` of our type for it (`None` when the subscription is
    /// untyped). A new fingerprint for a topic already taken is sent to every known peer.
    pub fn subscribe_named(&mut self, name: &str, fingerprint: Option<u64>) {
        let description = TopicDescription::new(name, fingerprint);
        let id = description.id;
        let changed = self.local_descriptions.get(&id) != Some(&description);
        self.local_descriptions.insert(id, description);
        if self.local_topics.contains(&id) {
            if changed {
                self.send_descriptions_to_all();
            }
        } else {
            self.subscribe(id);
        }
    }

    /// What we say of a topic we subscribe to by name.
    pub fn local_description(&self, topic: TopicId) -> Option<&TopicDescription> {
        self.local_descriptions.get(&topic)
    }

    /// A topic lost its last local subscription: peers learn it at once.
    pub fn unsubscribe(&mut self, topic: TopicId) {
        self.local_descriptions.remove(&topic);
        if self.local_topics.remove(&topic) {
            self.announce_topics();
        }
    }

    /// Says goodbye: a leaving beacon to the group and every seed.
    pub fn leave(&mut self) {
        self.send_beacon(&self.beacon_targets(), true);
    }

    fn queue(&mut self, target: Target, frame: &Frame<'_>) -> Result<(), FrameTooLarge> {
        self.outbox.push(&target, frame)?;
        self.metrics.frame_out(frame.frame_type());
        self.mark_busy();
        Ok(())
    }

    fn queue_encoded(
        &mut self,
        target: Target,
        frame_type: FrameType,
        frame: &[u8],
    ) -> Result<(), FrameTooLarge> {
        self.outbox.push_encoded(&target, frame)?;
        self.metrics.frame_out(frame_type);
        self.mark_busy();
        Ok(())
    }

    /// The fragment id a frame of `len` bytes goes under, if it is larger than a datagram: a
    /// request or an answer keeps its id when it is sent again whole, so that the pieces of
    /// every copy complete the same frame at the receiver.
    fn fragment_id_for(&mut self, len: usize) -> Option<u64> {
        (len > self.outbox.max_body()).then(|| {
            let id = self.next_fragment_id;
            self.next_fragment_id += 1;
            id
        })
    }

    /// Queues an encoded frame to `target`: as it is, or as best-effort fragments under
    /// `fragment_id` (from [`Endpoint::fragment_id_for`]).
    fn queue_whole(
        &mut self,
        target: Target,
        frame_type: FrameType,
        (frame, fragment_id): (&Bytes, Option<u64>),
    ) -> Result<(), FrameTooLarge> {
        let Some(fragment_id) = fragment_id else {
            return self.queue_encoded(target, frame_type, frame);
        };
        let max_body = self.outbox.max_body();
        let piece_len =
            fragment::piece_len(fragment_id, frame.len(), max_body).ok_or(FrameTooLarge {
                len: frame.len(),
                max: max_body,
            })?;
        self.metrics.frame_out(frame_type);
        let copy = Transfer::best_effort(target, frame.clone(), fragment_id, piece_len);
        self.queue_transfer(copy, false);
        Ok(())
    }

    /// Queues a handshake message, sent as it is.
    fn send_raw(&mut self, addr: SocketAddr, packet: Vec<u8>) {
        self.handshake_out.push_back(Transmit {
            target: Target::Unicast(addr),
            bytes: packet,
        });
        self.mark_busy();
    }

    /// A packet from `from` showed `what`: reported if it is time.
    fn diagnose(&mut self, now: Instant, from: SocketAddr, what: Misconfiguration) {
        if let Some(packets) = self.diagnostics.note(now, from, what) {
            self.events.push_back(Event::Misconfigured {
                from,
                what,
                packets,
            });
        }
    }

    fn mark_busy(&mut self) {
        if self.idle {
            self.idle = false;
            self.wakeup = true;
        }
    }
}

/// How often dedup windows and lost peers past their retention are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Multicast epochs cached: two per sender for a large cluster.
const MAX_EPOCHS: usize = 2048;
