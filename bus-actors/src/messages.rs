//! Messages between the bus's actors, and the events it delivers to applications.

use std::net::SocketAddr;

use actix::Message;
use bus_core::discovery::TopicDescription;
use bus_core::endpoint::Misconfiguration;
use bus_core::reliability::DeliveryReport;
use bus_core::{Duration, Envelope, Instant, PeerId, Topic, TopicId};
use bytes::Bytes;

/// A message on a topic, as a subscriber actor receives it: the message, who sent it, and when
/// it arrived. Dereferences to [`Envelope`], so `event.message`, `event.from` and
/// `event.received_at` read its fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<T>(pub Envelope<T>);

impl<T: Topic> Message for Event<T> {
    type Result = ();
}

impl<T> std::ops::Deref for Event<T> {
    type Target = Envelope<T>;
    fn deref(&self) -> &Envelope<T> {
        &self.0
    }
}

impl<T> Event<T> {
    /// The message itself.
    pub fn into_message(self) -> T {
        self.0.message
    }
}

/// What a remote peer looks like from here.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSnapshot {
    /// Its id.
    pub id: PeerId,
    /// Its unicast address.
    pub addr: SocketAddr,
    /// The topics it subscribes to.
    pub topics: Vec<TopicId>,
    /// What it said of its topics: names and schema fingerprints, sorted by id (learnt a
    /// round trip after it is confirmed; a topic subscribed by id alone is never described).
    pub described: Vec<TopicDescription>,
    /// Its application-defined metadata.
    pub metadata: Vec<(String, String)>,
    /// The smoothed round-trip time to it, once measured.
    pub rtt: Option<Duration>,
    /// Its clock minus ours, in microseconds, once measured.
    pub clock_offset_us: Option<i64>,
    /// When its last beacon arrived.
    pub last_seen: Instant,
    /// The retransmission timeout for reliable messages to it (RFC 6298, from measured RTT).
    pub rto: Duration,
    /// Whether it says it hears our multicast: until it does, messages to it go by unicast.
    pub hears_our_multicast: bool,
    /// Whether it answered a ping of ours, so each side can open what the other sends: only
    /// then is it sent messages (a peer we hear but that cannot hear us is not a subscriber).
    pub confirmed: bool,
}

impl PeerSnapshot {
    /// What it said of `topic`, if it described it.
    pub fn description(&self, topic: TopicId) -> Option<&TopicDescription> {
        self.described
            .binary_search_by_key(&topic, |d| d.id)
            .ok()
            .map(|i| &self.described[i])
    }

    /// Its topics by name where it named them, by id (in hex) where not.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|id| match self.description(*id) {
                Some(d) => d.name.clone(),
                None => format!("{:016x}", id.0),
            })
            .collect()
    }

    /// A metadata value by key.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Something that happened on the bus, delivered to actors that called
/// [`Bus::subscribe_events`](crate::Bus::subscribe_events).
#[derive(Clone, Debug, Message, PartialEq)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum BusEvent {
    /// A peer was discovered.
    PeerJoined(PeerSnapshot),
    /// A known peer changed its address, topics or metadata, or now says it hears (or no longer
    /// hears) our multicast.
    PeerUpdated(PeerSnapshot),
    /// A known peer restarted: it beacons with a new incarnation. Sessions with its previous
    /// life are gone; reliable messages it was owed are retransmitted to the new one.
    PeerRestarted(PeerSnapshot),
    /// A remote peer began subscribing to a topic: reliable messages of the topic are owed to it
    /// from now on (Pavillion's `onNewSubscriber`).
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
    /// Two processes claim one peer id (a configuration error: each peer needs an id of its
    /// own). The one that beaconed the current incarnation is kept; beacons from `refused` are
    /// ignored and counted (`duplicate_id`).
    DuplicateId {
        /// The id claimed twice.
        id: PeerId,
        /// Where the refused claimant beacons from.
        refused: SocketAddr,
    },
    /// Packets from `from` say a configuration is wrong: they fail authentication (another
    /// cluster key?), or are plaintext reaching this encrypted bus, or encrypted packets
    /// reaching this insecure one. Each is dropped and counted; this is said (and logged as a
    /// warning) at most once per 10 s per address and cause, with the packets since the last
    /// time. [`Misconfiguration::likely_cause`] says what to look at.
    Misconfigured {
        /// Where the packets come from.
        from: SocketAddr,
        /// What is wrong.
        what: Misconfiguration,
        /// Packets since the last report of it.
        packets: u64,
    },
    /// A subscriber is behind: for a second, reliable publishes found its window of messages in
    /// flight full and it acknowledged nothing (it is much slower than we publish, or does not
    /// acknowledge), and publishers to it wait. Reported once per such stretch;
    /// `metrics().reliable.window_full` counts the refused publishes.
    SubscriberBehind {
        /// The peer.
        peer: PeerId,
        /// Its messages in flight.
        in_flight: usize,
    },
    /// A subscriber let many reliable messages in a row pass their deadline without
    /// acknowledging (see [`BusBuilder::give_up_on_laggards`](crate::BusBuilder::give_up_on_laggards)):
    /// for a while it is reported missing from every message at once and sent nothing.
    SubscriberGivenUp {
        /// The peer.
        peer: PeerId,
        /// The messages in a row it missed.
        missed: u32,
    },
    /// A reliable message carrying events published with a
    /// [`ReliablePublisher`](crate::ReliablePublisher) (which wait for no outcome) was not
    /// acknowledged by everyone owed it before its deadline: its report names who is missing.
    Undelivered {
        /// The topic.
        topic: TopicId,
        /// How many such events it carried.
        events: usize,
        /// The message's outcome.
        report: DeliveryReport,
    },
    /// A reliable message carrying events published with a `ReliablePublisher` was
    /// acknowledged by everyone owed it (reported only with
    /// [`BusBuilder::report_reliable_successes`](crate::BusBuilder::report_reliable_successes)).
    Delivered {
        /// The topic.
        topic: TopicId,
        /// How many such events it carried.
        events: usize,
        /// The message's outcome.
        report: DeliveryReport,
    },
    /// A peer shut down gracefully.
    PeerLeft(PeerId),
    /// A peer fell silent for longer than the liveness timeout.
    PeerUnreachable(PeerId),
    /// A message arrived whose sender's type for the topic has another schema: it was not
    /// delivered. The two peers were built from different definitions of the topic.
    SchemaMismatch {
        /// The topic.
        topic: &'static str,
        /// The sender.
        from: PeerId,
        /// Our fingerprint.
        local: u64,
        /// The sender's.
        remote: u64,
    },
}

/// The payloads of one topic that arrived together in one datagram (or were published
/// locally), on their way to a subscription actor: one mailbox message for all of them, since a
/// datagram carries many small messages and a message per payload would cost more than the
/// payload.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct RawMessages {
    pub(crate) from: PeerId,
    /// Each payload with the sender's schema fingerprint, in the order they were sent.
    pub(crate) payloads: std::sync::Arc<[(u64, Bytes)]>,
    pub(crate) received_at: Instant,
    pub(crate) sent_at: Option<Instant>,
}

/// The outbox has frames: send them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Flush;

/// Say goodbye, send what is queued, and stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// A pong arrived for a peer actor's ping.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct PongReceived(pub(crate) bus_core::PingSample);

/// Where a pending message's outcome goes.
#[derive(Debug)]
pub(crate) enum ReportTo {
    /// The one caller of `publish_reliable`.
    Caller(tokio::sync::oneshot::Sender<DeliveryReport>),
    /// A batch's collector, with the message's place in the batch.
    Batch {
        index: usize,
        to: tokio::sync::mpsc::UnboundedSender<(usize, DeliveryReport)>,
    },
}

impl ReportTo {
    /// Hands over the outcome; a caller that stopped waiting is no error.
    pub(crate) fn send(self, report: DeliveryReport) {
        match self {
            ReportTo::Caller(reply) => drop(reply.send(report)),
            ReportTo::Batch { index, to } => drop(to.send((index, report))),
        }
    }
}

/// A reliable message has its outcome.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Finished(pub(crate) DeliveryReport);
