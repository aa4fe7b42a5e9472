//! Shared helpers for the integration tests, the test peer process and the benchmarks.
//!
//! Everything here stays on loopback: buses bind to 127.0.0.1 and join their multicast group
//! there, each test on a group port of its own so that tests running in parallel never meet.

// Test support: a panic is how a failed expectation reports itself.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod child;
pub mod forge;
pub mod scenarios;
pub mod sniff;
pub mod soak;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use actix::prelude::*;
use bus_actors::transport::SimHub;
use bus_actors::{Bus, BusBuilder, BusEvent, Event, PeerId, Topic, TopicId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The message most tests publish.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "test/counter")]
pub struct Counter {
    /// Which publisher sent it.
    pub publisher: u32,
    /// Its sequence number at that publisher.
    pub seq: u64,
}

/// A topic whose messages are published reliably by default.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "test/reliable", reliable)]
pub struct Reliable {
    /// Its sequence number at the publisher.
    pub seq: u64,
}

/// A second topic, for peers that must not see the first.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "test/other")]
pub struct Other {
    /// Anything.
    pub value: u64,
}

/// A topic for messages larger than a datagram.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "test/large")]
pub struct Large {
    /// Its sequence number at the publisher.
    pub seq: u64,
    /// The bulk.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `len` bytes that differ from one `seq` to the next (a message whose corruption shows).
pub fn pattern(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A free UDP port on 127.0.0.1 (free when asked; tests use it at once).
pub fn free_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(47_000)
}

/// A multicast group address on a port of its own.
pub fn test_group() -> SocketAddr {
    SocketAddr::from((bus_actors::DEFAULT_GROUP, free_port()))
}

/// A bus builder for tests: insecure, on `group` over loopback, beaconing every 200 ms.
pub fn builder(group: SocketAddr) -> BusBuilder {
    Bus::builder()
        .insecure()
        .group(group)
        .beacon_interval(BEACON_INTERVAL)
}

/// A bus builder for tests like [`builder`], but encrypted with the cluster key `key`.
pub fn secure_builder(group: SocketAddr, key: [u8; 32]) -> BusBuilder {
    Bus::builder()
        .cluster_psk(key)
        .group(group)
        .beacon_interval(BEACON_INTERVAL)
}

/// `builder`, over sockets that lose 20% and duplicate 5% of what they send (seeded).
///
/// At 20% loss each way an attempt fails 36% of the time; with retransmission timeouts
/// inflated by a burst's queueing, the default 5 s deadline allows about a dozen attempts, and
/// one of 30 000 (message, subscriber) pairs failing them all happened about one run in six.
/// 30 s makes it vanishingly rare: the deadline is the knob for lossy networks. Three lost
/// beacons in a row (0.8% per window) would declare a peer unreachable now and then, so the
/// liveness timeout is longer too.
pub fn lossy(builder: BusBuilder, seed: u64) -> BusBuilder {
    faulty(builder.liveness_factor(10), (0.2, 0.05), seed)
}

/// `builder` with a 30 s reliable deadline, over sockets that lose and duplicate the shares
/// `(loss, duplicate)` of what they send (seeded).
fn faulty(builder: BusBuilder, (loss, duplicate): (f64, f64), seed: u64) -> BusBuilder {
    builder
        .reliable_deadline(bus_actors::Duration::from_secs(30))
        .inject_faults(bus_actors::transport::Faults {
            loss,
            duplicate,
            seed,
            ..bus_actors::transport::Faults::NONE
        })
}

/// `builder`, over sockets that lose 30% and duplicate 10% of what they send (seeded): the
/// acceptance tests' worst network. The liveness timeout is twice [`lossy`]'s, so that a run of
/// lost beacons does not declare a peer unreachable, and reliable messages get 30 s.
pub fn heavy_loss(builder: BusBuilder, seed: u64) -> BusBuilder {
    faulty(builder.liveness_factor(20), (0.3, 0.1), seed)
}

/// The beacon interval of [`builder`].
pub const BEACON_INTERVAL: bus_actors::Duration = bus_actors::Duration::from_millis(200);

/// `n` public-key peers on `group` sharing a group key, each trusting the others' keys only
/// (not its own), as a deployment would configure them.
///
/// # Panics
/// If keys cannot be made or a bus does not start.
pub async fn public_key_peers(group: SocketAddr, n: usize) -> Vec<bus_actors::Bus> {
    use bus_core::crypto::noise::Keypair;
    let group_key = Keypair::generate(&mut rand::rng()).expect("keys");
    let identities: Vec<Keypair> = (0..n)
        .map(|_| Keypair::generate(&mut rand::rng()).expect("keys"))
        .collect();
    let mut buses = Vec::new();
    for identity in &identities {
        let mut builder = bus_actors::Bus::builder()
            .group(group)
            .beacon_interval(BEACON_INTERVAL)
            .public_key_mode(identity.clone(), group_key.clone());
        for other in identities
            .iter()
            .filter(|k| k.public() != identity.public())
        {
            builder = builder.trust(*other.public());
        }
        buses.push(builder.start().await.expect("bus start"));
    }
    buses
}

/// Starts a bus from [`builder`].
///
/// # Panics
/// If it does not start.
pub async fn start(group: SocketAddr) -> Bus {
    builder(group).start().await.expect("bus start")
}

/// Builders for successive nodes of a simulated network: node 0, 1, 2... each seeded from
/// `seed`, beaconing every [`BEACON_INTERVAL`].
pub fn sim_builders(hub: &SimHub, seed: u64) -> impl FnMut() -> BusBuilder + use<> {
    let hub = hub.clone();
    let mut next = 0;
    move || {
        let node = next;
        next += 1;
        Bus::builder()
            .insecure()
            .beacon_interval(BEACON_INTERVAL)
            .rng_seed(seed.wrapping_mul(1000).wrapping_add(node as u64))
            // The simulated network stands for a LAN: LAN-sized datagrams, so a lost datagram
            // costs what it would there.
            .max_datagram(1200)
            .transport(hub.transport(node))
    }
}

/// Runs `test` in an actix system on a current-thread runtime whose time is paused: timers
/// advance instantly whenever every task is idle, so simulated seconds cost no wall time.
pub fn run_in_virtual_time<F: std::future::Future>(test: impl FnOnce() -> F) -> F::Output {
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("tokio runtime")
    });
    system.block_on(test())
}

/// An actor that forwards everything it receives into a channel, so tests can await it.
#[derive(Debug)]
pub struct Forward<M> {
    tx: mpsc::UnboundedSender<M>,
}

impl<M> Forward<M> {
    /// An actor that sends what it receives to `tx`.
    pub fn new(tx: mpsc::UnboundedSender<M>) -> Forward<M> {
        Forward { tx }
    }
}

impl<M: 'static> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<T: Topic> Handler<Event<T>> for Forward<Event<T>> {
    type Result = ();
    fn handle(&mut self, event: Event<T>, _: &mut Context<Self>) {
        let _ = self.tx.send(event);
    }
}

impl Handler<BusEvent> for Forward<BusEvent> {
    type Result = ();
    fn handle(&mut self, event: BusEvent, _: &mut Context<Self>) {
        let _ = self.tx.send(event);
    }
}

/// Subscribes a forwarding actor to `T` on `bus` and returns the receiving end.
///
/// # Panics
/// If the bus refuses the subscription.
pub async fn subscribe<T: Topic>(bus: &Bus) -> mpsc::UnboundedReceiver<Event<T>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let recipient = Forward { tx }.start().recipient();
    bus.subscribe::<T>(recipient)
        .await
        .expect("subscribe failed");
    rx
}

/// The bus's events from now on (peers already known arrive as joined).
pub fn events(bus: &Bus) -> mpsc::UnboundedReceiver<BusEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.subscribe_events(Forward { tx }.start().recipient());
    rx
}

/// Waits until `count` known peers subscribe to `topic` and are sent its messages (they
/// answered our pings), reading `events` as they come.
///
/// # Panics
/// If fewer do within `within`.
pub async fn await_subscribers(
    bus: &Bus,
    events: &mut mpsc::UnboundedReceiver<BusEvent>,
    topic: TopicId,
    count: usize,
    within: Duration,
) {
    await_peers(bus, events, count, within, "subscribers", |p| {
        p.topics.contains(&topic) && p.confirmed
    })
    .await;
}

/// Waits until `count` subscribers of `topic` say they hear `bus`'s multicast (so its fan-out
/// to them goes to the group rather than by unicast), reading `events` as they come.
///
/// # Panics
/// If fewer do within `within`.
pub async fn await_group_reaches(
    bus: &Bus,
    events: &mut mpsc::UnboundedReceiver<BusEvent>,
    topic: TopicId,
    count: usize,
    within: Duration,
) {
    await_peers(
        bus,
        events,
        count,
        within,
        "subscribers hearing the group",
        |p| p.topics.contains(&topic) && p.hears_our_multicast,
    )
    .await;
}

/// Waits until `bus` knows `count` peers that answered it (confirmed), reading `events` as
/// they come.
///
/// # Panics
/// If it knows fewer within `within`.
pub async fn await_known(
    bus: &Bus,
    events: &mut mpsc::UnboundedReceiver<BusEvent>,
    count: usize,
    within: Duration,
) {
    await_peers(bus, events, count, within, "peers", |p| p.confirmed).await;
}

/// Waits until `count` known peers satisfy `pred`, reading `events` as they come.
async fn await_peers(
    bus: &Bus,
    events: &mut mpsc::UnboundedReceiver<BusEvent>,
    count: usize,
    within: Duration,
    what: &str,
    pred: impl Fn(&bus_actors::PeerSnapshot) -> bool,
) {
    let matching = |bus: &Bus| bus.peers().iter().filter(|p| pred(p)).count();
    let wait = async {
        while matching(bus) < count {
            if events.recv().await.is_none() {
                break;
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .unwrap_or_else(|_| panic!("{} of {count} {what} after {within:?}", matching(bus)));
    assert!(matching(bus) >= count);
}

/// Waits for an event matching `pred`, returning it.
///
/// # Panics
/// If none comes within `within`.
pub async fn await_event(
    events: &mut mpsc::UnboundedReceiver<BusEvent>,
    within: Duration,
    what: &str,
    pred: impl Fn(&BusEvent) -> bool,
) -> BusEvent {
    let wait = async {
        while let Some(event) = events.recv().await {
            if pred(&event) {
                return Some(event);
            }
        }
        None
    };
    match tokio::time::timeout(within, wait).await {
        Ok(Some(event)) => event,
        _ => panic!("no {what} within {within:?}"),
    }
}

/// Receives exactly `count` events from `rx`.
///
/// # Panics
/// If they do not all come within `within`.
pub async fn receive<T>(
    rx: &mut mpsc::UnboundedReceiver<Event<T>>,
    count: usize,
    within: Duration,
) -> Vec<Event<T>> {
    let mut got = Vec::with_capacity(count);
    let wait = async {
        while got.len() < count {
            match rx.recv().await {
                Some(event) => got.push(event),
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(within, wait).await;
    assert_eq!(got.len(), count, "received {} of {count}", got.len());
    got
}

/// Asserts that `bus` dropped nothing but what an encrypted peer refuses while it meets its
/// peers: `unproven` packets, sealed under a sender's epoch before that sender answered its
/// challenge (a few per peer, at the start; see the security chapter on freshness).
///
/// # Panics
/// If anything else was dropped, or more than 8 unproven packets per known peer.
pub fn assert_only_startup_drops(bus: &Bus) {
    let metrics = bus.metrics();
    let unproven = metrics.drops(bus_actors::DropReason::Unproven);
    assert_eq!(metrics.total_drops() - unproven, 0, "{metrics:?}");
    let bound = 8 * bus.peers().len().max(1) as u64;
    assert!(
        unproven <= bound,
        "{unproven} unproven (at most {bound}): {metrics:?}"
    );
}

/// Whether `event` concerns peer `id` leaving or becoming unreachable.
pub fn is_gone(event: &BusEvent, id: PeerId) -> bool {
    matches!(event, BusEvent::PeerLeft(p) | BusEvent::PeerUnreachable(p) if *p == id)
}
