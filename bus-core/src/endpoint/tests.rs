//! The production endpoint on the simulated network: reliable delivery under loss,
//! duplication, reordering and partitions, and reproducible runs with encryption on.

use std::cell::Cell;
use std::rc::Rc;

use super::sim::{SimEndpoint, sim_addr};
use super::*;
use crate::crypto::handshake::PresharedKey;
use crate::metrics::DropReason;
use crate::sim::{LinkConfig, NodeId, Simulation};

const TOPIC: TopicId = TopicId::from_name("test/reliable");

/// Node `i`'s peer id: node 0 has the lowest, so it initiates every handshake.
pub(super) fn peer_of(node: usize) -> PeerId {
    PeerId([u8::try_from(node + 1).unwrap(); 16])
}

pub(super) fn psk() -> Security {
    Security::Psk {
        cluster: Some(PresharedKey([0x5c; 32])),
        per_peer: HashMap::new(),
    }
}

/// A link that loses everything.
pub(super) fn dead() -> LinkConfig {
    LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    }
}

pub(super) fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        loss,
        duplicate: 0.1,
        latency: Duration::from_micros(500),
        jitter: Duration::from_micros(500),
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
    }
}

/// A publisher (node 0) and `subscribers` subscribers of [`TOPIC`]. Membership does not flap:
/// these tests are about reliable delivery, and a peer that looks unreachable is forgotten.
struct Cluster {
    sim: Simulation<SimEndpoint>,
    /// How many it may publish (raised by the test as it goes).
    quota: Rc<Cell<u64>>,
    /// The payload (sequence number) of each message id.
    seq_of: Rc<std::cell::RefCell<BTreeMap<u64, Vec<u64>>>>,
}

/// The configuration of node `node` in these tests.
fn node_config(
    node: usize,
    security: &Security,
    tune: impl Fn(EndpointConfig) -> EndpointConfig,
) -> EndpointConfig {
    tune(EndpointConfig {
        liveness_factor: 1000,
        window: WindowLimits {
            per_peer_events: 256,
            ..WindowLimits::default()
        },
        ..EndpointConfig::new(peer_of(node), security.clone())
    })
}

/// Node `node`'s randomness in a run seeded `seed`.
fn node_seed(seed: u64, node: usize) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = u8::try_from(node).unwrap();
    bytes
}

fn cluster(seed: u64, link: LinkConfig, security: Security, subscribers: usize) -> Cluster {
    cluster_with(
        seed,
        link,
        security,
        subscribers,
        Duration::from_secs(600),
        |c| c,
    )
}

fn cluster_with(
    seed: u64,
    link: LinkConfig,
    security: Security,
    subscribers: usize,
    deadline: Duration,
    tune: impl Fn(EndpointConfig) -> EndpointConfig,
) -> Cluster {
    let config = |node: usize| {
        let config = node_config(node, &security, &tune);
        EndpointConfig {
            dedup_retention: deadline + config.max_rto,
            ..config
        }
    };
    let node_seed = |node: usize| node_seed(seed, node);
    let published = Rc::new(Cell::new(0u64));
    let quota = Rc::new(Cell::new(0u64));
    let seq_of = Rc::new(std::cell::RefCell::new(BTreeMap::<u64, Vec<u64>>::new()));
    let publisher = {
        let (published, quota, seq_of) = (published.clone(), quota.clone(), seq_of.clone());
        SimEndpoint::new(NodeId(0), config(0), node_seed(0)).with_app(move |ep, now| {
            // Publish only once every subscriber is known, as far as the window allows.
            if ep.subscribers(TOPIC).len() < subscribers {
                return;
            }
            while published.get() < quota.get() {
                let payload = published.get().to_le_bytes();
                match ep.publish_reliable(now, TOPIC, 0, &payload, deadline) {
                    Ok(Some(id)) => {
                        seq_of
                            .borrow_mut()
                            .entry(id)
                            .or_default()
                            .push(published.get());
                        published.set(published.get() + 1);
                    }
                    Err(PublishError::Busy(_)) => return,
                    other => panic!("publish failed: {other:?}"),
                }
            }
        })
    };
    let mut nodes = vec![publisher];
    for node in 1..=subscribers {
        let mut subscriber = SimEndpoint::new(NodeId(node), config(node), node_seed(node));
        subscriber.endpoint.subscribe(TOPIC);
        nodes.push(subscriber);
    }
    Cluster {
        sim: Simulation::new(seed, link, nodes),
        quota,
        seq_of,
    }
}

impl Cluster {
    /// Lets the publisher publish up to `quota` messages, starting now.
    fn allow(&mut self, quota: u64) {
        self.quota.set(quota);
        let now = self.sim.now();
        self.sim.nodes[0].settle(now);
    }

    fn publisher(&self) -> &SimEndpoint {
        &self.sim.nodes[0]
    }

    /// Drives until the publisher has an outcome for `count` messages (within `limit` of
    /// virtual time).
    fn settle(&mut self, count: usize, limit: Duration) {
        let until = self.sim.now() + limit;
        let settled = self
            .sim
            .drive_while(until, |nodes| nodes[0].finished.len() < count);
        assert!(
            settled,
            "{} of {count} messages finished by {until:?}",
            self.publisher().finished.len()
        );
    }

    fn reports(&self) -> Vec<&DeliveryReport> {
        self.publisher().finished.iter().map(|(_, r)| r).collect()
    }

    /// The reliable payloads node `node` delivered, in order.
    fn delivered(&self, node: usize) -> Vec<u64> {
        self.sim.nodes[node]
            .delivered
            .iter()
            .filter(|d| d.topic == TOPIC)
            .flat_map(|d| d.payloads.iter())
            .map(|(_, p)| u64::from_le_bytes(p[..].try_into().unwrap()))
            .collect()
    }
}

/// 10k messages to three subscribers at `loss` each way, with 10% duplication and reordering:
/// each delivered exactly once to every subscriber, every send resolved complete. Returns the
/// retransmissions and the duplicates received.
fn exactly_once_at(loss: f64) -> (u64, u64) {
    let mut c = cluster(42, lossy(loss), Security::Insecure, 3);
    c.allow(10_000);
    c.settle(10_000, Duration::from_secs(3600));
    let reports = c.reports();
    assert!(reports.iter().all(|r| r.is_complete()), "loss {loss}");
    assert_eq!(c.publisher().endpoint.window().in_flight(), 0);
    assert_eq!(c.publisher().endpoint.pending_messages(), 0);
    let mut duplicates = 0;
    for node in 1..=3 {
        let mut delivered = c.delivered(node);
        delivered.sort_unstable();
        assert!(delivered.iter().copied().eq(0..10_000), "loss {loss}");
        let metrics = c.sim.nodes[node].endpoint.metrics().snapshot();
        duplicates += metrics.reliable.duplicates;
    }
    let retransmissions = reports.iter().map(|r| u64::from(r.retransmissions)).sum();
    (retransmissions, duplicates)
}

#[test]
fn exactly_once_without_loss() {
    exactly_once_at(0.0);
}

#[test]
fn exactly_once_at_10_percent_loss() {
    let (retransmissions, duplicates) = exactly_once_at(0.1);
    assert!(retransmissions > 0 && duplicates > 0);
}

#[test]
fn exactly_once_at_30_percent_loss() {
    exactly_once_at(0.3);
}

#[test]
fn exactly_once_at_50_percent_loss() {
    exactly_once_at(0.5);
}

/// Three encrypted (PSK) peers at 20% loss: the same seed gives the same run, datagram for
/// datagram and byte for byte; another seed gives another. Handshakes, epoch keys and nonces
/// all come from the seed.
#[test]
fn an_encrypted_cluster_runs_the_same_twice_with_the_same_seed() {
    let run = |seed| {
        let mut c = cluster(seed, lossy(0.2), psk(), 2);
        c.allow(300);
        c.settle(300, Duration::from_secs(600));
        assert!(c.reports().iter().all(|r| r.is_complete()));
        for node in 1..=2 {
            let mut delivered = c.delivered(node);
            delivered.sort_unstable();
            assert!(delivered.iter().copied().eq(0..300));
        }
        // Encrypted for real: a session was set up and carried traffic (at 20% loss one of the
        // two handshakes may still be waiting for its retry when the messages are done).
        assert!(c.publisher().endpoint.handshakes() >= 1);
        let in_sessions = |node: usize| {
            let endpoint = &c.sim.nodes[node].endpoint;
            endpoint.metrics().snapshot().session_datagrams_in
        };
        assert!(in_sessions(0) > 0 && in_sessions(1) + in_sessions(2) > 0);
        c.sim.network.trace().clone()
    };
    let first = run(7);
    assert!(!first.is_empty());
    assert_eq!(first, run(7));
    assert_ne!(first, run(8));
}

fn two_nodes() -> Cluster {
    let link = LinkConfig {
        latency: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    let mut c = cluster(1, link, Security::Insecure, 1);
    // Until the subscriber is known.
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).is_empty()
    });
    c
}

/// Pavillion's bug 3: the first copy of message 0 is lost, message 1 gets through, and the
/// retransmission of 0 must still be delivered (a highest-id-only replay check drops it).
#[test]
fn a_retransmission_is_delivered_after_a_later_message() {
    let mut c = two_nodes();
    let (a, b) = ([NodeId(0)], [NodeId(1)]);
    c.sim.network.partition(&a, &b);
    c.allow(1);
    // Message 0's first copy is cut.
    let start = c.sim.now();
    c.sim.drive_until(start + Duration::from_micros(100));
    c.sim.network.heal();
    c.allow(2);
    // Message 1 arrives before 0's retransmission.
    let start = c.sim.now();
    c.sim
        .drive_while(start + Duration::from_millis(50), |nodes| {
            nodes[1].delivered.is_empty()
        });
    assert_eq!(c.delivered(1), [1]);
    c.settle(2, Duration::from_secs(10));
    assert_eq!(c.delivered(1), [1, 0]);
    let reports = c.reports();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.is_complete()));
}

/// Pavillion's bug 4: the receiver's acknowledgement is lost, so the sender retransmits; the
/// receiver must acknowledge the duplicate again (not only drop it), or the sender reports a
/// delivered message as failed.
#[test]
fn a_duplicate_is_acknowledged_again() {
    let mut c = two_nodes();
    c.sim.network.set_link(NodeId(1), NodeId(0), dead());
    c.allow(1);
    // Delivered; its ack lost.
    let start = c.sim.now();
    c.sim.drive_until(start + Duration::from_millis(4));
    assert_eq!(c.delivered(1), [0]);
    c.sim
        .network
        .set_link(NodeId(1), NodeId(0), LinkConfig::default());
    c.settle(1, Duration::from_secs(10));
    assert_eq!(c.delivered(1), [0], "delivered once");
    let metrics = c.sim.nodes[1].endpoint.metrics().snapshot();
    assert!(
        metrics.reliable.duplicates >= 1,
        "the retransmission arrived as a duplicate"
    );
    let reports = c.reports();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].is_complete(), "the re-ack completed the send");
    assert!(reports[0].retransmissions >= 1);
}

/// A subscriber cut off for longer than the deadline is named in the report; the others get
/// everything; nothing is left in flight.
#[test]
fn a_partitioned_subscriber_is_named_and_nothing_is_left_behind() {
    let mut c = cluster_with(
        3,
        lossy(0.0),
        Security::Insecure,
        3,
        Duration::from_secs(2),
        |c| c,
    );
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).len() < 3
    });
    c.sim.network.partition(&[NodeId(0)], &[NodeId(3)]);
    c.allow(1000);
    c.settle(1000, Duration::from_secs(60));
    for report in c.reports() {
        assert_eq!(report.missing, [peer_of(3)]);
        assert_eq!(report.acked, [peer_of(1), peer_of(2)]);
    }
    let publisher = &c.publisher().endpoint;
    assert_eq!(publisher.window().in_flight(), 0);
    assert_eq!(publisher.pending_messages(), 0);
    assert_eq!(publisher.window().in_flight_to(&peer_of(3)), (0, 0));
    for node in 1..=2 {
        assert_eq!(c.delivered(node).len(), 1000);
    }
    assert!(c.delivered(3).is_empty());
}

/// Field report: a subscriber killed and restarted within the liveness timeout, on the same
/// address, was cut off until the next rekey, 120 s later: the survivor (the lower id, which
/// initiates) kept its session and never handshook again, and the new process dropped
/// everything sealed under it. A restarted peer beacons a new incarnation; the survivor drops
/// the old life's session and dedup state at once.
#[test]
fn a_subscriber_restarted_within_the_liveness_timeout_gets_traffic_again_within_a_second() {
    let mut c = cluster(11, lossy(0.0), psk(), 1);
    c.allow(100);
    c.settle(100, Duration::from_secs(10));
    let handshakes_before = c.publisher().endpoint.handshakes();
    assert!(handshakes_before >= 1, "the pair talks in a session");

    // kill -9, and a new process with the same peer id on the same address.
    let restart = c.sim.now();
    let config = node_config(1, &psk(), |config| config);
    let mut reborn = SimEndpoint::started_at(NodeId(1), config, node_seed(99, 1), restart);
    reborn.endpoint.subscribe(TOPIC);
    c.sim.nodes[1] = reborn;
    c.allow(200);
    c.settle(200, Duration::from_secs(1));

    assert!(c.reports().iter().all(|r| r.is_complete()));
    let mut delivered = c.delivered(1);
    delivered.sort_unstable();
    assert!(
        delivered.iter().copied().eq(100..200),
        "the new life gets each later message once"
    );
    assert!(c.publisher().endpoint.handshakes() > handshakes_before);
    assert!(
        c.sim.nodes[1]
            .membership
            .iter()
            .any(|e| matches!(e, MembershipEvent::Joined(_)))
    );
    assert!(
        c.publisher()
            .membership
            .iter()
            .any(|e| matches!(e, MembershipEvent::Restarted(_)))
    );
}

/// Two subscribers; one is cut off for `partition` while messages are published, with a 30 s
/// deadline and the default liveness timeout (three 1 s beacons), at 10% loss each way.
/// Returns the cluster after the heal and settle.
fn partitioned_for(partition: Duration) -> Cluster {
    let mut c = cluster_with(
        21,
        lossy(0.1),
        Security::Insecure,
        2,
        Duration::from_secs(30),
        |config| EndpointConfig {
            liveness_factor: 3,
            ..config
        },
    );
    c.allow(100);
    c.settle(100, Duration::from_secs(10));
    // Node 2's acknowledgements are lost first: it has delivered messages that the publisher
    // still retries when the partition starts, and will retry after it.
    c.sim.network.set_link(NodeId(2), NodeId(0), dead());
    c.allow(600);
    let cut_at = c.sim.now() + Duration::from_millis(300);
    c.sim.drive_until(cut_at);
    assert!(
        c.delivered(2).len() > 100,
        "node 2 delivered unacknowledged messages"
    );
    c.sim.network.partition(&[NodeId(0)], &[NodeId(2)]);
    c.sim.drive_until(cut_at + partition);
    c.sim.network.heal();
    c.sim.network.set_link(NodeId(2), NodeId(0), lossy(0.1));
    c.settle(600, Duration::from_secs(30));
    c
}

/// Field report: a subscriber declared unreachable by a partition was dropped from every
/// message it was owed, so `publish_reliable` said `Ok`, and its dedup window was thrown away,
/// so copies still in flight were delivered again after it came back. Silence is not a
/// goodbye: it stays owed, retried at its last address, and its dedup state stays.
#[test]
fn after_a_partition_every_message_is_delivered_exactly_once() {
    for seconds in [2, 10] {
        let c = partitioned_for(Duration::from_secs(seconds));
        for report in c.reports() {
            assert!(report.left.is_empty(), "{seconds} s: nobody left");
            assert!(report.is_complete(), "{seconds} s: {report:?}");
        }
        for node in 1..=2 {
            let mut delivered = c.delivered(node);
            delivered.sort_unstable();
            assert!(
                delivered.iter().copied().eq(0..600),
                "{seconds} s: node {node} got each message exactly once"
            );
        }
        let retried = c.sim.nodes[2]
            .endpoint
            .metrics()
            .snapshot()
            .reliable
            .duplicates;
        assert!(
            retried > 0,
            "{seconds} s: copies of delivered messages came back"
        );
        let cut_off = &c.sim.nodes[0].membership;
        let unreachable = cut_off
            .iter()
            .any(|e| matches!(e, MembershipEvent::Unreachable(info) if info.id == peer_of(2)));
        // The long one exercised the path through "unreachable" (the short one may or may not,
        // as its silence sits near the liveness timeout).
        assert!(unreachable || seconds < 10, "{seconds} s partition");
    }
}

/// A subscriber cut off for longer than the deadline, and declared unreachable meanwhile, is
/// reported missing, never as having left: the publish is `Undelivered`, not `Ok`.
#[test]
fn a_subscriber_unreachable_past_the_deadline_is_missing_not_left() {
    let mut c = cluster_with(
        22,
        lossy(0.0),
        Security::Insecure,
        2,
        Duration::from_secs(5),
        |config| EndpointConfig {
            liveness_factor: 3,
            ..config
        },
    );
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).len() < 2
    });
    c.sim.network.partition(&[NodeId(0)], &[NodeId(2)]);
    c.allow(50);
    c.settle(50, Duration::from_secs(20));
    for report in c.reports() {
        assert_eq!(report.missing, [peer_of(2)]);
        assert!(report.left.is_empty());
        assert!(!report.is_complete());
    }
    assert_eq!(c.publisher().endpoint.window().in_flight(), 0);
}

/// Field report: a peer that stopped subscribing still acknowledged, so reports listed it under
/// `acked` for messages nobody received. It acknowledges only what it delivers; what it was
/// owed on the topic settles as `left` once its beacon says it dropped the topic.
#[test]
fn a_peer_that_unsubscribed_acknowledges_nothing_it_did_not_deliver() {
    let mut c = cluster(31, lossy(0.05), Security::Insecure, 2);
    c.allow(200);
    c.settle(200, Duration::from_secs(10));
    // Node 2 unsubscribes; its beacons saying so are held up for a while, so messages keep
    // coming to it meanwhile.
    c.sim.network.set_link(NodeId(2), NodeId(0), dead());
    c.sim.nodes[2].endpoint.unsubscribe(TOPIC);
    c.allow(400);
    let until = c.sim.now() + Duration::from_millis(500);
    c.sim.drive_until(until);
    c.sim.network.set_link(NodeId(2), NodeId(0), lossy(0.05));
    c.settle(400, Duration::from_secs(30));

    let delivered: std::collections::BTreeSet<u64> = c.delivered(2).into_iter().collect();
    let seq_of = c.seq_of.borrow();
    let mut settled_as_left = 0;
    for (id, report) in &c.publisher().finished {
        assert!(report.is_complete(), "{report:?}");
        if report.acked.contains(&peer_of(2)) {
            assert!(
                seq_of[id].iter().all(|seq| delivered.contains(seq)),
                "acked but not delivered: {id}"
            );
        }
        settled_as_left += usize::from(report.left.contains(&peer_of(2)));
    }
    assert!(settled_as_left > 0, "some were owed when it stopped");
    let refused = c.sim.nodes[2].endpoint.metrics().snapshot();
    assert!(refused.drops(DropReason::NotSubscribed) > 0);
    assert!(
        c.publisher()
            .subscriber_changes
            .contains(&(TOPIC, peer_of(2), false))
    );
}

/// Three peers that know each other through seeds; `multicast_carried` says whether the
/// network carries multicast. Node 0 publishes best effort once both others subscribe.
fn seeded_trio(multicast_carried: bool) -> Simulation<SimEndpoint> {
    let nodes = (0..3)
        .map(|node| {
            let seeds = (0..3)
                .filter(|other| *other != node)
                .map(|other| super::sim::sim_addr(NodeId(other)))
                .collect();
            let config = EndpointConfig {
                seeds,
                ..node_config(node, &Security::Insecure, |c| c)
            };
            let mut endpoint = SimEndpoint::new(NodeId(node), config, node_seed(5, node));
            if node > 0 {
                endpoint.endpoint.subscribe(TOPIC);
            }
            endpoint
        })
        .collect();
    let mut sim = Simulation::new(5, LinkConfig::default(), nodes);
    sim.network.set_multicast(multicast_carried);
    // Discovery, and a ping or two each way.
    sim.drive_until(Instant::from_millis(3000));
    assert_eq!(sim.nodes[0].endpoint.subscribers(TOPIC).len(), 2);
    sim
}

/// How many payloads `node` delivered, of every topic.
fn payloads_delivered(node: &SimEndpoint) -> usize {
    node.delivered.iter().map(|d| d.payloads.len()).sum()
}

/// Publishes `count` best-effort messages from node 0 now, and lets them arrive.
fn publish_best_effort(sim: &mut Simulation<SimEndpoint>, count: u64) {
    let now = sim.now();
    for seq in 0..count {
        let sent = sim.nodes[0]
            .endpoint
            .publish(TOPIC, 0, &seq.to_le_bytes())
            .unwrap();
        assert!(sent);
    }
    sim.drive_until(now + Duration::from_millis(100));
}

/// Field report: with seeds instead of multicast, best effort to two subscribers went to the
/// group, and both got nothing while the publisher said nothing. A subscriber gets group
/// copies only once it says it hears them; until then, and on a network without multicast,
/// unicast ones, counted.
#[test]
fn without_multicast_fan_out_goes_by_unicast_and_arrives() {
    let mut sim = seeded_trio(false);
    publish_best_effort(&mut sim, 1000);
    for node in 1..=2 {
        let got = payloads_delivered(&sim.nodes[node]);
        assert_eq!(got, 1000, "node {node}");
    }
    let metrics = sim.nodes[0].endpoint.metrics().snapshot();
    assert_eq!(metrics.fanout_unicast, 2000);
}

/// The same peers on a network that carries multicast: once the subscribers say they hear the
/// group, one group copy serves both.
#[test]
fn with_multicast_fan_out_goes_to_the_group_once_subscribers_hear_it() {
    let mut sim = seeded_trio(true);
    let before = sim.nodes[0].endpoint.metrics().snapshot().fanout_unicast;
    publish_best_effort(&mut sim, 1000);
    for node in 1..=2 {
        let got = payloads_delivered(&sim.nodes[node]);
        assert_eq!(got, 1000, "node {node}");
    }
    let metrics = sim.nodes[0].endpoint.metrics().snapshot();
    assert_eq!(metrics.fanout_unicast, before, "no unicast copies");
}

/// Field report: with a star of seeds (every leaf seeded with the hub only) and no multicast,
/// the leaves never met each other, and the hub, which beaconed only to the group, was marked
/// unreachable after 3 s. Peers not known to hear our multicast get our beacons by unicast,
/// with the peers we know: one seed introduces the cluster.
#[test]
fn without_multicast_one_seed_introduces_the_whole_cluster() {
    let hub = super::sim::sim_addr(NodeId(0));
    let nodes = (0..4)
        .map(|node| {
            let config = EndpointConfig {
                seeds: if node == 0 { Vec::new() } else { vec![hub] },
                liveness_factor: 3,
                ..node_config(node, &Security::Insecure, |c| c)
            };
            let mut endpoint = SimEndpoint::new(NodeId(node), config, node_seed(6, node));
            if node >= 2 {
                endpoint.endpoint.subscribe(TOPIC);
            }
            endpoint
        })
        .collect();
    let mut sim = Simulation::new(6, LinkConfig::default(), nodes);
    sim.network.set_multicast(false);
    let met = sim.drive_while(Instant::from_millis(5_000), |nodes| {
        nodes.iter().any(|n| n.endpoint.peers().count() < 3)
    });
    assert!(met, "every peer knows every other");
    sim.drive_until(Instant::from_millis(20_000));
    for (node, n) in sim.nodes.iter().enumerate() {
        assert_eq!(n.endpoint.peers().count(), 3, "node {node}");
        let lost = n
            .membership
            .iter()
            .any(|e| matches!(e, MembershipEvent::Unreachable(_)));
        assert!(!lost, "node {node} declared a peer unreachable");
    }
    // A leaf's best effort reaches the other leaves that subscribe.
    assert_eq!(sim.nodes[1].endpoint.subscribers(TOPIC).len(), 2);
    let now = sim.now();
    for seq in 0..100u64 {
        sim.nodes[1]
            .endpoint
            .publish(TOPIC, 0, &seq.to_le_bytes())
            .unwrap();
    }
    sim.drive_until(now + Duration::from_millis(100));
    for node in 2..=3 {
        let got = payloads_delivered(&sim.nodes[node]);
        assert_eq!(got, 100, "node {node}");
    }
}

/// Field report: two processes with one peer id went undetected; the observer's entry for it
/// flipped address every few beacons, and replies went to whichever beaconed last. With
/// incarnations, a claimant in a previous life of the id is a second process: reported once,
/// refused from then on, and the entry stays put.
#[test]
fn two_processes_with_one_id_are_reported_and_the_second_is_refused() {
    let twin = peer_of(1);
    let nodes = (0..3)
        .map(|node| {
            let id = if node == 0 { peer_of(0) } else { twin };
            let config = EndpointConfig::new(id, Security::Insecure);
            SimEndpoint::new(NodeId(node), config, node_seed(8, node))
        })
        .collect();
    let mut sim = Simulation::new(8, LinkConfig::default(), nodes);
    sim.drive_until(Instant::from_millis(10_000));
    let observer = &sim.nodes[0];
    let duplicates: Vec<_> = observer
        .membership
        .iter()
        .filter(|e| matches!(e, MembershipEvent::DuplicateId { id, .. } if *id == twin))
        .collect();
    assert_eq!(duplicates.len(), 1, "{:?}", observer.membership);
    // After the report, the entry neither restarts nor moves again.
    let kept = observer.endpoint.peer(twin).map(|(info, _)| info.addr);
    let moved = observer
        .membership
        .iter()
        .skip_while(|e| !matches!(e, MembershipEvent::DuplicateId { .. }))
        .any(|e| match e {
            MembershipEvent::Restarted(_) => true,
            MembershipEvent::Updated(info) => Some(info.addr) != kept,
            _ => false,
        });
    assert!(!moved, "{:?}", observer.membership);
    let refused = observer.endpoint.metrics().snapshot();
    assert!(refused.drops(DropReason::DuplicateId) >= 5);
}

/// Field report, item 7: a subscriber that never acknowledges slowed everyone, and only
/// per-message reports named it. It is reported behind as soon as its window fills (and the
/// subscriber that keeps up is not), and counted.
#[test]
fn a_subscriber_that_never_acknowledges_is_reported_behind() {
    let mut c = cluster(41, lossy(0.0), Security::Insecure, 2);
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).len() < 2
    });
    c.sim.network.set_link(NodeId(2), NodeId(0), dead());
    c.allow(1000);
    let until = c.sim.now() + Duration::from_secs(3);
    c.sim.drive_until(until);
    // Reported once, though every publish meanwhile found its window full; the subscriber
    // that keeps up never is, though a burst fills its window too.
    assert_eq!(c.publisher().behind, [peer_of(2)]);
    let metrics = c.publisher().endpoint.metrics().snapshot();
    assert!(metrics.reliable.window_full > 1);
}

/// A publisher that, once refused for a full window, waits for [`Event::WindowRoom`] before
/// trying again (as the driver's publishers do) is not stuck behind a laggard until its
/// messages expire: the laggard is reported behind after a second of a full window on a timer,
/// the publisher is woken, and publishing goes on to the subscriber that keeps up.
#[test]
fn a_publisher_waiting_for_room_is_woken_when_a_laggard_is_reported_behind() {
    let mut c = cluster(43, lossy(0.0), Security::Insecure, 2);
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).len() < 2
    });
    c.sim.network.set_link(NodeId(2), NodeId(0), dead());
    let start = c.sim.now();
    let (mut seq, mut waiting_since_room) = (0u64, None);
    while c.sim.now() < start + Duration::from_secs(3) {
        let now = c.sim.now();
        let room = c.sim.nodes[0].window_room;
        // Publishes until refused, then waits for room (the loop ends only when refused).
        if waiting_since_room.is_none_or(|seen| room > seen) {
            loop {
                let deadline = Duration::from_secs(30);
                let payload = seq.to_le_bytes();
                match c.sim.nodes[0]
                    .endpoint
                    .publish_reliable(now, TOPIC, 0, &payload, deadline)
                {
                    Ok(_) => seq += 1,
                    Err(PublishError::Busy(_)) => {
                        waiting_since_room = Some(room);
                        break;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        c.sim.nodes[0].settle(now);
        c.sim.drive_until(now + Duration::from_millis(10));
    }
    assert_eq!(c.publisher().behind, [peer_of(2)]);
    let window = WindowLimits::default().per_peer_events as u64;
    assert!(
        seq > window + 1000,
        "{seq} published in 3 s with a window of {window}"
    );
    assert!(c.delivered(1).len() as u64 > window + 1000);
}

/// Field report, item 7: one subscriber that never acknowledged held every other subscriber to
/// its pace (837 instead of 1500 messages/s). Once it is reported behind (a second of a full
/// window with no acknowledgement), it holds back only itself: it is still owed every message,
/// but its copies wait for room in its window, and the others go on at the pace of their own
/// acknowledgements (at least 80% of their throughput without the laggard). The bound is the
/// bus's window (16 384 messages): a laggard costs the others nothing while the publish rate
/// times the deadline stays within it (the field's 1500 messages/s for 5 s did).
#[test]
fn a_laggard_holds_back_only_itself() {
    // Messages per second of virtual time to node 1, once the laggard (if any) is reported.
    let run = |laggard: bool| {
        let mut c = cluster(42, lossy(0.0), Security::Insecure, 2);
        c.sim.drive_while(Instant::from_millis(5000), |nodes| {
            nodes[0].endpoint.subscribers(TOPIC).len() < 2
        });
        if laggard {
            c.sim.network.set_link(NodeId(2), NodeId(0), dead());
        }
        c.allow(12_000);
        let limit = c.sim.now() + Duration::from_secs(60);
        if laggard {
            c.sim.drive_while(limit, |nodes| nodes[0].behind.is_empty());
        }
        let (from, before) = (c.sim.now(), payloads_delivered(&c.sim.nodes[1]));
        c.sim
            .drive_while(limit, |nodes| payloads_delivered(&nodes[1]) < 12_000);
        let seconds = c.sim.now().saturating_duration_since(from).as_secs_f64();
        let rate = (12_000 - before) as f64 / seconds;
        (c, rate)
    };
    let (_, alone) = run(false);
    let (c, with_laggard) = run(true);
    assert_eq!(
        c.delivered(1).len(),
        12_000,
        "the subscriber that keeps up got everything"
    );
    assert!(
        with_laggard >= 0.8 * alone,
        "{alone:.0} msgs/s alone, {with_laggard:.0} with a laggard"
    );
    // Still owed: nothing it was owed is reported, nothing claims it acknowledged.
    assert!(c.reports().iter().all(|r| !r.acked.contains(&peer_of(2))));
    assert!(
        c.reports().is_empty(),
        "its messages wait for it until their deadline"
    );
}

/// Field report, item 8: a peer that could open another's beacons but not the reverse routed to
/// it, and everything it sent was lost. Here node 0 hears node 1 (a subscriber) but node 1
/// never hears node 0: node 0 knows it, yet does not route to it, and says so (no subscribers)
/// instead of sending into the void; once the link works, the first answer to a ping confirms
/// it and a reliable message is delivered.
#[test]
fn a_peer_is_routed_to_only_once_it_answers() {
    let mut c = cluster(5, LinkConfig::default(), Security::Insecure, 1);
    c.sim.network.set_link(NodeId(0), NodeId(1), dead());
    c.sim.drive_until(Instant::from_millis(5_000));
    let subscriber = peer_of(1);
    let now = c.sim.now();
    let publisher = &mut c.sim.nodes[0];
    let known = publisher
        .endpoint
        .peer(subscriber)
        .map(|(info, _)| info.topics.clone());
    assert_eq!(known, Some(vec![TOPIC]), "its beacons are heard");
    assert!(!publisher.endpoint.confirmed(subscriber));
    assert!(publisher.endpoint.subscribers(TOPIC).is_empty());
    let outcome = publisher
        .endpoint
        .publish_reliable(now, TOPIC, 0, b"x", Duration::from_secs(5));
    assert_eq!(outcome, Ok(None), "nobody to deliver to, said so");
    let pinged = publisher
        .endpoint
        .metrics()
        .snapshot()
        .frames_out(FrameType::Ping);

    c.sim
        .network
        .set_link(NodeId(0), NodeId(1), LinkConfig::default());
    let healed = c.sim.now();
    let routed = c.sim.drive_while(healed + Duration::from_secs(2), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).is_empty()
    });
    assert!(routed, "confirmed within a ping interval of the heal");
    assert!(c.publisher().endpoint.confirmed(subscriber));
    c.allow(1);
    c.settle(1, Duration::from_secs(5));
    assert!(c.reports()[0].is_complete());
    assert_eq!(c.delivered(1), vec![0]);
    assert!(pinged >= 4, "it kept asking meanwhile: {pinged} pings");
}

/// Field report, item 9: every peer pinged every other each second, so an idle cluster cost N²
/// pings a second. An idle peer's pings back off from `ping_interval` to `idle_ping_interval`;
/// a peer we send reliable messages to is pinged every `ping_interval`.
#[test]
fn idle_peers_are_pinged_rarely_and_busy_ones_every_interval() {
    let pings_to = |c: &Cluster, node: usize| {
        let stats = c.sim.nodes[node].endpoint.metrics().snapshot();
        stats.frames_in(FrameType::Ping)
    };
    let mut c = cluster(6, LinkConfig::default(), Security::Insecure, 1);
    c.sim.drive_until(Instant::from_millis(20_000));
    let backing_off = pings_to(&c, 1);
    assert!(
        (5..=8).contains(&backing_off),
        "{backing_off} pings in the first 20 s"
    );
    c.sim.drive_until(Instant::from_millis(50_000));
    let idle = pings_to(&c, 1) - backing_off;
    // One every 10 s over 30 s (the phase decides between 3 and 4).
    assert!((3..=4).contains(&idle), "{idle} pings in 30 s idle");

    let start = pings_to(&c, 1);
    for second in 0..30u64 {
        c.allow(second + 1);
        c.sim
            .drive_until(Instant::from_millis(50_000 + 1_000 * (second + 1)));
    }
    let busy = pings_to(&c, 1) - start;
    assert!(
        (29..=31).contains(&busy),
        "{busy} pings in 30 s with traffic"
    );
}

/// Field report, item 7: the publisher retransmitted 7.6k times a second toward a subscriber
/// that never acknowledged, until every message's deadline. After `give_up_after` messages in a
/// row expire it is given up on: reported missing from every message at once (never `Ok`),
/// sent nothing, and after `given_up_for` given another chance, which a recovered subscriber
/// takes.
#[test]
fn a_subscriber_that_keeps_missing_messages_is_given_up_on_for_a_while() {
    let tune = |config| EndpointConfig {
        give_up_after: 8,
        given_up_for: Duration::from_secs(10),
        ..config
    };
    let deadline = Duration::from_secs(1);
    let mut c = cluster_with(7, lossy(0.0), Security::Insecure, 2, deadline, tune);
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).len() < 2
    });
    c.sim.network.set_link(NodeId(2), NodeId(0), dead());
    // 100 messages a second, for `seconds` more seconds.
    let mut published = 0;
    let mut publish_for = |c: &mut Cluster, seconds: u64| {
        for _ in 0..seconds * 10 {
            published += 10;
            c.allow(published);
            let until = c.sim.now() + Duration::from_millis(100);
            c.sim.drive_until(until);
        }
    };
    let retransmitted = |c: &Cluster| {
        c.publisher()
            .endpoint
            .metrics()
            .snapshot()
            .reliable
            .retransmitted
    };

    publish_for(&mut c, 3);
    assert_eq!(c.publisher().given_up, vec![peer_of(2)]);
    let before = retransmitted(&c);
    publish_for(&mut c, 5);
    assert_eq!(retransmitted(&c), before, "nothing more is sent to it");
    let laggard = peer_of(2);
    for report in c.reports() {
        assert_eq!(report.missing, vec![laggard], "never Ok without it");
        assert_eq!(report.acked, vec![peer_of(1)]);
    }

    // Its time out ends: it is owed messages again, misses them again, and is given up again.
    publish_for(&mut c, 8);
    assert!(retransmitted(&c) > before, "a new chance");
    assert_eq!(c.publisher().given_up, vec![laggard, laggard]);

    // It recovers; at its next chance it gets everything again.
    c.sim.network.set_link(NodeId(2), NodeId(0), lossy(0.0));
    publish_for(&mut c, 12);
    let reports = c.reports();
    let last = reports.last().unwrap();
    assert!(last.is_complete(), "{last:?}");
    assert_eq!(c.publisher().given_up.len(), 2);
}

/// Field report, item 1: nothing told a peer that the other side had lost their session, so
/// its traffic was dropped (`unknown_peer`) until the next rekey, up to 120 s. Here the
/// responder loses its session without restarting: its hint makes the initiator drop the
/// session and handshake again, and the next reliable message arrives at once.
#[test]
fn a_peer_told_its_session_is_unknown_handshakes_again() {
    let mut c = cluster_with(9, lossy(0.0), psk(), 1, Duration::from_secs(5), |c| c);
    c.allow(1);
    c.settle(1, Duration::from_secs(10));
    let until = c.sim.now() + Duration::from_secs(5);
    c.sim
        .drive_while(until, |nodes| nodes[0].endpoint.handshakes() == 0);
    c.allow(2);
    c.settle(2, Duration::from_secs(5));
    assert_eq!(c.publisher().endpoint.handshakes(), 1);

    c.sim.nodes[1].endpoint.sessions.forget_peer(peer_of(0));
    let lost_at = c.sim.now();
    c.allow(3);
    c.settle(3, Duration::from_secs(5));
    let took = c.sim.now().saturating_duration_since(lost_at);
    assert!(took < Duration::from_secs(1), "delivered after {took:?}");
    assert!(c.reports().iter().all(|r| r.is_complete()));
    assert_eq!(c.delivered(1), vec![0, 1, 2]);
    let dropped = c.sim.nodes[1].endpoint.metrics().snapshot();
    assert!(
        dropped.drops(DropReason::UnknownPeer) >= 1,
        "the old session was used"
    );
    let until = c.sim.now() + Duration::from_secs(2);
    c.sim
        .drive_while(until, |nodes| nodes[0].endpoint.handshakes() < 2);
    assert_eq!(c.publisher().endpoint.handshakes(), 2, "a new session");
}

/// Two public-key nodes that trust each other (not themselves), multicast looped back to its
/// sender as real sockets do, under the seed `seed`.
fn public_key_pair(seed: u64) -> Simulation<SimEndpoint> {
    use crate::crypto::noise::Keypair;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let group = Keypair::generate(&mut rng).unwrap();
    let identities: Vec<Keypair> = (0..2)
        .map(|_| Keypair::generate(&mut rng).unwrap())
        .collect();
    let nodes = (0..2)
        .map(|node| {
            let other = 1 - node;
            let security = Security::PublicKey {
                identity: identities[node].clone(),
                group: group.clone(),
                trusted: HashMap::from([(peer_of(other), *identities[other].public())]),
            };
            let config = node_config(node, &security, |c| c);
            SimEndpoint::new(NodeId(node), config, node_seed(seed, node))
        })
        .collect();
    let mut sim = Simulation::new(seed, LinkConfig::default(), nodes);
    sim.network.set_multicast_loop(true);
    sim
}

/// Field report, item 7 of the attacks: public-key mode counted its own looped-back multicast
/// as `unknown_peer` (about 85 a second idle), hiding real drops.
#[test]
fn public_key_mode_counts_no_drop_for_its_own_looped_multicast() {
    let mut sim = public_key_pair(10);
    sim.drive_until(Instant::from_millis(10_000));
    for (i, node) in sim.nodes.iter().enumerate() {
        let metrics = node.endpoint.metrics().snapshot();
        // Its own beacons came back: ten seconds of them, besides the other's.
        assert!(metrics.datagrams_in >= 15, "{metrics:?}");
        assert_eq!(metrics.drops(DropReason::UnknownPeer), 0, "{metrics:?}");
        assert!(node.endpoint.confirmed(peer_of(1 - i)));
    }
}

/// Publishes `count` best-effort messages of [`TOPIC`] at node 0 now, payloads from `first`.
fn publish_best_effort_from(c: &mut Cluster, first: u64, count: u64) {
    let now = c.sim.now();
    for seq in first..first + count {
        c.sim.nodes[0]
            .endpoint
            .publish(TOPIC, 0, &seq.to_le_bytes())
            .unwrap();
    }
    c.sim.nodes[0].settle(now);
}

/// Field report, item 1 of the attacks: replay windows live in memory, so a restarted peer
/// delivered 707 recorded messages, and a peer that did not exist when they were sent 1,063,
/// reliable ones too. Every datagram a subscriber received (reliable and best effort, in its
/// sessions and under the publisher's epoch) is recorded and replayed, once into the same
/// subscriber restarted, once into a peer that joined later: neither delivers any of it, and
/// both go on receiving live traffic exactly once.
#[test]
fn recorded_traffic_replayed_into_a_restarted_or_new_peer_delivers_nothing() {
    // Two subscribers, so the publisher's messages go to the group, under its epoch.
    let mut c = cluster_with(12, lossy(0.0), psk(), 2, Duration::from_secs(5), |c| c);
    let config = node_config(1, &psk(), |c| c);
    c.sim.nodes[1] = SimEndpoint::new(NodeId(1), config, node_seed(12, 1)).capturing();
    c.sim.nodes[1].endpoint.subscribe(TOPIC);
    c.sim.drive_while(Instant::from_millis(10_000), |nodes| {
        let publisher = &nodes[0].endpoint;
        !(publisher.hears_our_multicast(peer_of(1)) && publisher.hears_our_multicast(peer_of(2)))
    });
    c.allow(100);
    c.settle(100, Duration::from_secs(10));
    publish_best_effort_from(&mut c, 1_000, 50);
    let until = c.sim.now() + Duration::from_secs(1);
    c.sim.drive_until(until);
    assert_eq!(c.delivered(1).len(), 150, "the original got everything");
    let recorded = c.sim.nodes[1].captured.take().unwrap();
    assert!(recorded.len() >= 3, "{} datagrams", recorded.len());
    let under_epoch = recorded
        .iter()
        .filter(|(_, d)| PacketType::of_datagram(d) == Ok(PacketType::MulticastData))
        .count();
    assert!(
        under_epoch >= 3,
        "the messages went to the group: {under_epoch} datagrams"
    );
    assert!(c.publisher().endpoint.metrics().snapshot().fanout_unicast == 0);

    let replay = |c: &mut Cluster, node: &mut SimEndpoint| {
        use crate::sim::Node;
        let now = c.sim.now();
        for (from, bytes) in &recorded {
            node.handle_datagram(now, *from, bytes);
        }
        node.handle_timeout(now);
    };

    // The same subscriber, restarted: it meets the publisher again, then gets the recording.
    let restart = c.sim.now();
    let config = node_config(1, &psk(), |c| c);
    let mut reborn = SimEndpoint::started_at(NodeId(1), config, node_seed(13, 1), restart);
    reborn.endpoint.subscribe(TOPIC);
    c.sim.nodes[1] = reborn;
    let until = restart + Duration::from_secs(3);
    c.sim.drive_until(until);
    let mut reborn = std::mem::replace(
        &mut c.sim.nodes[1],
        SimEndpoint::new(NodeId(9), node_config(9, &psk(), |c| c), node_seed(12, 9)),
    );
    replay(&mut c, &mut reborn);
    c.sim.nodes[1] = reborn;
    assert!(c.delivered(1).is_empty(), "{:?}", c.delivered(1));
    let refused = c.sim.nodes[1].endpoint.metrics().snapshot();
    assert!(refused.drops(DropReason::Unproven) + refused.drops(DropReason::UnknownPeer) > 0);
    // Live traffic still flows, once.
    c.allow(110);
    c.settle(110, Duration::from_secs(5));
    publish_best_effort_from(&mut c, 2_000, 5);
    let until = c.sim.now() + Duration::from_secs(1);
    c.sim.drive_until(until);
    let mut live = c.delivered(1);
    live.sort_unstable();
    assert_eq!(live, (100..110).chain(2_000..2_005).collect::<Vec<_>>());

    // A peer that did not exist when the recording was made, with the key, subscribed.
    let config = node_config(3, &psk(), |c| c);
    let now = c.sim.now();
    let mut newcomer = SimEndpoint::started_at(NodeId(3), config, node_seed(12, 3), now);
    newcomer.endpoint.subscribe(TOPIC);
    replay(&mut c, &mut newcomer);
    assert!(
        newcomer.delivered.is_empty(),
        "{:?}",
        newcomer.delivered.len()
    );
}

/// A replayed beacon of a peer's earlier life read as a restart (its sessions dropped) or, for
/// the life just before, as a duplicate id. Here node 1's beacons are kept from node 0 for a
/// while (recorded by node 2, as an attacker would), node 1 restarts, and the recording is
/// replayed into node 0: no second restart, no duplicate id, no new handshake; node 1's new
/// life keeps getting messages.
#[test]
fn a_replayed_beacon_of_an_earlier_life_changes_nothing() {
    let mut c = cluster_with(14, lossy(0.0), psk(), 2, Duration::from_secs(5), |c| c);
    c.allow(20);
    c.settle(20, Duration::from_secs(10));
    // Node 1's old life, kept from node 0 and recorded at node 2.
    c.sim.nodes[2].captured = Some(Vec::new());
    c.sim.network.set_link(NodeId(1), NodeId(0), dead());
    let until = c.sim.now() + Duration::from_secs(3);
    c.sim.drive_until(until);
    c.sim.network.set_link(NodeId(1), NodeId(0), lossy(0.0));
    let old_life: Vec<Vec<u8>> = c.sim.nodes[2].take_captured(NodeId(1), PacketType::MulticastData);
    assert!(old_life.len() >= 2, "{} recorded", old_life.len());

    let restart = c.sim.now();
    let config = node_config(1, &psk(), |c| c);
    let mut reborn = SimEndpoint::started_at(NodeId(1), config, node_seed(15, 1), restart);
    reborn.endpoint.subscribe(TOPIC);
    c.sim.nodes[1] = reborn;
    c.allow(40);
    c.settle(40, Duration::from_secs(5));
    let restarts = |c: &Cluster| {
        c.publisher()
            .membership
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    MembershipEvent::Restarted(_) | MembershipEvent::DuplicateId { .. }
                )
            })
            .count()
    };
    assert_eq!(restarts(&c), 1, "the real restart");
    let handshakes = c.publisher().endpoint.handshakes();
    let before = c.publisher().endpoint.metrics().snapshot();

    {
        use crate::sim::Node;
        let now = c.sim.now();
        for bytes in &old_life {
            c.sim.nodes[0].handle_datagram(now, NodeId(1), bytes);
        }
    }
    let after = c.publisher().endpoint.metrics().snapshot();
    c.allow(60);
    c.settle(60, Duration::from_secs(5));
    assert_eq!(restarts(&c), 1, "{:?}", c.publisher().membership);
    assert_eq!(c.publisher().endpoint.handshakes(), handshakes);
    assert!(c.reports().iter().all(|r| r.is_complete()));
    // Each recorded packet refused: as unproven, or as a replay if it had reached node 0.
    let refused = |m: &crate::metrics::MetricsSnapshot| {
        m.drops(DropReason::Unproven) + m.drops(DropReason::Replay)
    };
    assert_eq!(
        refused(&after) - refused(&before),
        old_life.len() as u64,
        "{after:?}"
    );
}

/// Field report, item 2 of the attacks: before a pair has a session, unicast is sealed under the
/// sender's epoch, which any key holder opens; replayed to other peers from the attacker's
/// address, the beacon inside moved the sender's address there, and a departed peer came back
/// as a ghost. Here everything node 0 sent node 1 under its epoch is replayed into node 2 from
/// another address: node 0's address and membership at node 2 do not change, and nothing meant
/// for node 1 is delivered by node 2.
#[test]
fn unicast_replayed_to_another_peer_moves_nothing_and_delivers_nothing() {
    let mut c = cluster_with(16, lossy(0.0), psk(), 2, Duration::from_secs(5), |c| c);
    // No multicast: beacons and messages go by unicast to each peer.
    c.sim.network.set_multicast(false);
    c.sim.nodes[1].captured = Some(Vec::new());
    c.sim.nodes[0].endpoint.config.seeds = vec![sim_addr(NodeId(1)), sim_addr(NodeId(2))];
    c.allow(50);
    c.settle(50, Duration::from_secs(20));
    let for_node_1: Vec<Vec<u8>> =
        c.sim.nodes[1].take_captured(NodeId(0), PacketType::MulticastData);
    assert!(!for_node_1.is_empty(), "some unicast under node 0's epoch");
    let now = c.sim.now();
    let target = &mut c.sim.nodes[2];
    let known = target.endpoint.peer(peer_of(0)).map(|(p, _)| p.addr);
    assert_eq!(known, Some(sim_addr(NodeId(0))));
    let (events, delivered) = (target.membership.len(), target.delivered.len());
    // From the attacker's own address, on another host.
    let attacker: SocketAddr = "127.0.0.77:40000".parse().unwrap();
    let wall = super::sim::SIM_WALL_CLOCK_START + Duration::from_micros(now.as_micros());
    for bytes in &for_node_1 {
        let datagram = Bytes::copy_from_slice(bytes);
        target
            .endpoint
            .handle_datagram(now, wall, attacker, datagram);
        target.settle(now);
    }
    let after = target.endpoint.peer(peer_of(0)).map(|(p, _)| p.addr);
    assert_eq!(after, known, "the address did not move");
    assert_eq!(target.membership.len(), events);
    assert_eq!(target.delivered.len(), delivered);
    let refused = target.endpoint.metrics().snapshot();
    assert!(refused.drops(DropReason::Misdirected) > 0, "{refused:?}");
}

/// Field report, item 4 of the attacks: a forged handshake response (92 junk bytes with the
/// initiator's index, which travels in clear) ended the initiation before anything was
/// verified, and 50 of 54 handshakes died. Here one is sent while the genuine response is on
/// its way: it is refused, and the genuine one still completes the handshake at once.
#[test]
fn a_forged_handshake_response_does_not_end_the_handshake() {
    let slow = LinkConfig {
        latency: Duration::from_millis(50),
        ..LinkConfig::default()
    };
    let mut c = cluster_with(17, slow, psk(), 1, Duration::from_secs(5), |c| c);
    let started = c.sim.drive_while(Instant::from_millis(5_000), |nodes| {
        nodes[0].endpoint.sessions.outstanding.is_empty()
    });
    assert!(started, "node 0 initiates");
    let sent_at = c.sim.now();
    let index = *c.sim.nodes[0]
        .endpoint
        .sessions
        .outstanding
        .keys()
        .next()
        .unwrap();
    let mut forged = vec![0x5a; crate::wire::handshake::response::LEN];
    forged[0] = PacketType::HandshakeResponse as u8;
    forged[1..4].copy_from_slice(&[crate::crypto::SUITE_CHACHA, 0, 0]);
    forged[crate::wire::handshake::response::field::RECEIVER_INDEX]
        .copy_from_slice(&index.to_le_bytes());
    let bad_mac = |c: &Cluster| {
        let metrics = c.sim.nodes[0].endpoint.metrics().snapshot();
        metrics.drops(DropReason::BadMac)
    };
    {
        use crate::sim::Node;
        c.sim.nodes[0].handle_datagram(sent_at, NodeId(1), &forged);
    }
    assert_eq!(bad_mac(&c), 1, "refused at the first check");
    let done = c
        .sim
        .drive_while(sent_at + Duration::from_millis(300), |nodes| {
            nodes[0].endpoint.handshakes() == 0
        });
    assert!(
        done,
        "the genuine response completed the handshake within a round trip"
    );
}

/// Field report, item 5 of the attacks: mac1 bound an initiation to its initiator only, so a
/// captured initiation was valid at every responder, each paying a Diffie-Hellman for it.
/// mac1 now binds the responder's id too: node 0's initiation to node 1, replayed to node 2,
/// is refused at that first check.
#[test]
fn an_initiation_replayed_to_a_third_peer_costs_it_no_diffie_hellman() {
    let mut c = cluster_with(18, lossy(0.0), psk(), 2, Duration::from_secs(5), |c| c);
    c.sim.nodes[1].captured = Some(Vec::new());
    c.allow(10);
    c.settle(10, Duration::from_secs(10));
    let initiations: Vec<Vec<u8>> =
        c.sim.nodes[1].take_captured(NodeId(0), PacketType::HandshakeInit);
    assert!(!initiations.is_empty(), "node 0 initiated with node 1");
    let now = c.sim.now();
    let target = &mut c.sim.nodes[2];
    let before = target.endpoint.metrics().snapshot();
    let in_flight = target.endpoint.handshakes_in_flight;
    {
        use crate::sim::Node;
        for bytes in &initiations {
            target.handle_datagram(now, NodeId(7), bytes);
        }
    }
    let after = target.endpoint.metrics().snapshot();
    let refused = after.drops(DropReason::BadMac) - before.drops(DropReason::BadMac);
    assert_eq!(refused, initiations.len() as u64, "{after:?}");
    assert_eq!(
        target.endpoint.handshakes_in_flight, in_flight,
        "no work was handed out"
    );
    assert_eq!(after.handshakes, before.handshakes);
}

/// Field report, item 3 of the attacks: in public-key mode one junk multicast packet naming an
/// epoch never seen cost two X25519 operations on the socket thread, and 10k a second saturated
/// a peer. Every epoch header now carries a tag checked with one hash (under a key derived
/// once per sender) before anything else: 10 000 junk packets claiming a trusted sender are
/// refused without a key derivation, the epoch cache does not grow, and the peers stay joined.
#[test]
fn junk_epochs_in_public_key_mode_cost_one_hash_each() {
    use rand::SeedableRng;
    let mut sim = public_key_pair(19);
    sim.drive_until(Instant::from_millis(5_000));
    assert!(sim.nodes[1].endpoint.confirmed(peer_of(0)));
    let cached = sim.nodes[1].endpoint.epochs.len();
    let before = sim.nodes[1].endpoint.metrics().snapshot();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
    let now = sim.now();
    let wall_ms =
        (super::sim::SIM_WALL_CLOCK_START + Duration::from_micros(now.as_micros())).as_millis();
    for _ in 0..10_000 {
        let junk = super::sim::junk_epoch_packet(&mut rng, peer_of(0), wall_ms);
        use crate::sim::Node;
        sim.nodes[1].handle_datagram(now, NodeId(0), &junk);
    }
    let after = sim.nodes[1].endpoint.metrics().snapshot();
    let refused = after.drops(DropReason::AuthFailure) - before.drops(DropReason::AuthFailure);
    assert_eq!(refused, 10_000);
    assert_eq!(
        sim.nodes[1].endpoint.epochs.len(),
        cached,
        "no junk epoch cached"
    );
    assert_eq!(
        sim.nodes[1].endpoint.static_dh.len(),
        1,
        "one static DH, for node 0"
    );
    let until = sim.now() + Duration::from_secs(5);
    sim.drive_until(until);
    assert!(sim.nodes[1].endpoint.confirmed(peer_of(0)));
    assert!(sim.nodes[0].endpoint.confirmed(peer_of(1)));
}

/// A publisher and one subscriber on a clean network, the subscriber known to the publisher.
fn one_subscriber(
    seed: u64,
    deadline: Duration,
    tune: impl Fn(EndpointConfig) -> EndpointConfig,
) -> Cluster {
    let link = LinkConfig::default();
    let mut c = cluster_with(seed, link, Security::Insecure, 1, deadline, tune);
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).is_empty()
    });
    c
}

/// The events of each message the publisher's events finished in, by message id, in order.
fn events_per_message(c: &Cluster) -> Vec<(u64, usize)> {
    let mut counts: Vec<(u64, usize)> = Vec::new();
    for (id, _) in &c.publisher().finished {
        match counts.last_mut() {
            Some((last, n)) if last == id => *n += 1,
            _ => counts.push((*id, 1)),
        }
    }
    counts
}

/// Issue 14: events published together share one reliable message, and each event gets the
/// outcome of the message that carried it: with one subscriber cut off, every event's report
/// names it, and the other subscriber gets every event once, in order.
#[test]
fn a_coalesced_message_names_a_cut_off_subscriber_in_every_events_report() {
    let mut c = cluster_with(
        14,
        LinkConfig::default(),
        Security::Insecure,
        2,
        Duration::from_secs(2),
        |c| c,
    );
    c.sim.drive_while(Instant::from_millis(5000), |nodes| {
        nodes[0].endpoint.subscribers(TOPIC).len() < 2
    });
    c.sim.network.partition(&[NodeId(0)], &[NodeId(2)]);
    c.allow(100);
    c.settle(100, Duration::from_secs(10));
    let messages = events_per_message(&c);
    assert!(messages.len() < 10, "they shared messages: {messages:?}");
    for report in c.reports() {
        assert_eq!(report.missing, [peer_of(2)]);
        assert_eq!(report.acked, [peer_of(1)]);
    }
    assert_eq!(c.delivered(1), (0..100).collect::<Vec<_>>());
    assert!(c.delivered(2).is_empty());
}

/// A coalesced message whose first copy is lost, and whose first acknowledgement is lost too,
/// is retransmitted and acknowledged again: its events are delivered once, in order.
#[test]
fn a_retransmitted_coalesced_message_is_delivered_once_in_order() {
    let mut c = two_nodes();
    c.sim.network.partition(&[NodeId(0)], &[NodeId(1)]);
    c.allow(50);
    let start = c.sim.now();
    c.sim.drive_until(start + Duration::from_micros(100));
    // The next copy gets through; its acknowledgement does not.
    c.sim.network.heal();
    c.sim.network.set_link(NodeId(1), NodeId(0), dead());
    let start = c.sim.now();
    c.sim.drive_while(start + Duration::from_secs(5), |nodes| {
        nodes[1].delivered.is_empty()
    });
    let start = c.sim.now();
    c.sim.drive_until(start + Duration::from_millis(500));
    c.sim
        .network
        .set_link(NodeId(1), NodeId(0), LinkConfig::default());
    c.settle(50, Duration::from_secs(10));
    assert_eq!(
        c.delivered(1),
        (0..50).collect::<Vec<_>>(),
        "once, in order"
    );
    let received = c.sim.nodes[1].endpoint.metrics().snapshot().reliable;
    assert!(received.duplicates >= 1, "{received:?}");
    assert_eq!(received.events_received, 50);
    assert!(
        c.reports()
            .iter()
            .all(|r| r.is_complete() && r.retransmissions >= 1)
    );
    assert!(events_per_message(&c).len() < 50);
}

/// A message is closed when the next event would not fit in its datagram, and when it holds
/// [`MAX_EVENTS_PER_MESSAGE`]; the events come out in order either way.
#[test]
fn a_message_closes_at_the_datagram_size_and_at_the_event_count() {
    // 100-byte events in 1200-byte datagrams: about ten a message.
    let mut c = one_subscriber(15, Duration::from_secs(5), |c| c);
    let now = c.sim.now();
    let publisher = &mut c.sim.nodes[0].endpoint;
    let max_body = publisher.outbox.max_body();
    let mut ids = Vec::new();
    for seq in 0..50u8 {
        let payload = [seq; 100];
        let id = publisher.publish_reliable(now, TOPIC, 0, &payload, Duration::from_secs(5));
        ids.push(id.unwrap().unwrap());
    }
    ids.dedup();
    assert!(ids.len() >= 5, "{} messages", ids.len());
    publisher.close_messages(now);
    assert_eq!(publisher.pending.len(), ids.len());
    for pending in publisher.pending.values() {
        assert!(
            pending.frame.len() <= max_body,
            "{} > {max_body}",
            pending.frame.len()
        );
    }
    let until = c.sim.now() + Duration::from_secs(5);
    c.sim.drive_until(until);
    let got: Vec<u8> = c.sim.nodes[1]
        .delivered
        .iter()
        .flat_map(|d| d.payloads.iter().map(|(_, p)| p[0]))
        .collect();
    assert_eq!(got, (0..50).collect::<Vec<u8>>());

    // Tiny events in large datagrams: the count closes them.
    let large = |c: EndpointConfig| EndpointConfig {
        max_datagram: 65_000,
        window: WindowLimits {
            per_peer_events: 4096,
            ..WindowLimits::default()
        },
        ..c
    };
    let mut c = one_subscriber(16, Duration::from_secs(5), large);
    c.allow(3000);
    c.settle(3000, Duration::from_secs(10));
    let counts: Vec<usize> = events_per_message(&c).iter().map(|(_, n)| *n).collect();
    assert_eq!(
        counts,
        [
            MAX_EVENTS_PER_MESSAGE,
            MAX_EVENTS_PER_MESSAGE,
            3000 - 2 * MAX_EVENTS_PER_MESSAGE
        ]
    );
    assert_eq!(c.delivered(1), (0..3000).collect::<Vec<_>>());
}

/// The window counts events and their bytes, not messages: a publisher that publishes as much
/// as it may before anything is acknowledged stops at the window's events, or its bytes.
#[test]
fn the_window_counts_events_and_bytes_under_coalescing() {
    let mut c = two_nodes();
    c.sim.network.partition(&[NodeId(0)], &[NodeId(1)]);
    c.allow(10_000);
    let window = c.publisher().endpoint.window();
    // The test cluster's window: 256 events to a peer.
    assert_eq!(window.in_flight(), 256);
    assert_eq!(window.in_flight_to(&peer_of(1)), (256, 256 * 8));
    assert!(c.publisher().endpoint.pending_messages() < 256);

    let bytes = |c: EndpointConfig| EndpointConfig {
        window: WindowLimits {
            per_peer_bytes: 800,
            ..c.window
        },
        ..c
    };
    let mut c = one_subscriber(17, Duration::from_secs(600), bytes);
    c.sim.network.partition(&[NodeId(0)], &[NodeId(1)]);
    c.allow(10_000);
    // 8-byte events: 800 bytes hold 100.
    assert_eq!(
        c.publisher().endpoint.window().in_flight_to(&peer_of(1)),
        (100, 800)
    );
}
