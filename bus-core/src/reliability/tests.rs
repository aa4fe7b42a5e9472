//! Reliable messages on the simulated network: one sender, three subscribers, the core state
//! machines only (the actors wrap the same ones).

use std::collections::{BTreeMap, VecDeque};

use super::*;
use crate::sim::{Destination, LinkConfig, Node, NodeId, Simulation, Transmit};
use crate::time::{Duration, Instant};
use crate::wire::{AckRanges, Frame, Frames};
use crate::{FrameBatcher, PeerId, TopicId};

const TOPIC: TopicId = TopicId::from_name("test/reliable");
const RTO: Duration = Duration::from_millis(5);
const MAX_RTO: Duration = Duration::from_millis(200);

fn peer_of(node: NodeId) -> PeerId {
    PeerId([u8::try_from(node.0).unwrap(); 16])
}

fn node_of(peer: PeerId) -> NodeId {
    NodeId(usize::from(peer.0[0]))
}

#[derive(Debug)]
struct Sender {
    window: SendWindow,
    pending: BTreeMap<u64, (ReliableSend, Vec<u8>)>,
    subscribers: Vec<NodeId>,
    quota: u64,
    published: u64,
    deadline: Duration,
    reports: Vec<DeliveryReport>,
}

#[derive(Debug, Default)]
struct Receiver {
    windows: BTreeMap<NodeId, SenderWindows>,
    delivered: Vec<u64>,
    duplicates: u64,
    acks_owed: BTreeMap<NodeId, Vec<u64>>,
}

#[derive(Debug)]
enum Role {
    Sender(Sender),
    Receiver(Receiver),
}

#[derive(Debug)]
struct ReliableNode {
    role: Role,
    batcher: FrameBatcher<Destination>,
    now: Instant,
}

impl ReliableNode {
    fn sender(subscribers: usize, quota: u64, limits: WindowLimits) -> ReliableNode {
        ReliableNode {
            role: Role::Sender(Sender {
                window: SendWindow::new(limits, 1 << 40),
                pending: BTreeMap::new(),
                subscribers: (1..=subscribers).map(NodeId).collect(),
                quota,
                published: 0,
                deadline: Duration::from_secs(600),
                reports: Vec::new(),
            }),
            batcher: FrameBatcher::new(1200),
            now: Instant::ZERO,
        }
    }

    fn receiver() -> ReliableNode {
        ReliableNode {
            role: Role::Receiver(Receiver::default()),
            batcher: FrameBatcher::new(1200),
            now: Instant::ZERO,
        }
    }

    fn sender_state(&self) -> &Sender {
        match &self.role {
            Role::Sender(s) => s,
            Role::Receiver(_) => panic!("not the sender"),
        }
    }

    fn receiver_state(&self) -> &Receiver {
        match &self.role {
            Role::Receiver(r) => r,
            Role::Sender(_) => panic!("not a receiver"),
        }
    }

    /// Opens as many new messages as the quota and the window allow.
    fn publish(&mut self) {
        let Role::Sender(s) = &mut self.role else {
            return;
        };
        let owed: Vec<PeerId> = s.subscribers.iter().map(|n| peer_of(*n)).collect();
        while s.published < s.quota {
            let payload = s.published.to_le_bytes();
            let Ok(id) = s.window.open(&owed, payload.len()) else {
                break;
            };
            let mut frame = Vec::new();
            Frame::ReliablePublish {
                topic: TOPIC,
                fingerprint: 0,
                message_id: id,
                window: id - s.window.floor(),
                payload: &payload,
            }
            .emit(&mut frame);
            self.batcher
                .push_encoded(&Destination::Multicast, &frame)
                .unwrap();
            let send = ReliableSend::new(
                self.now,
                id,
                owed.iter().map(|p| (*p, RTO)),
                self.now + s.deadline,
                MAX_RTO,
            );
            s.pending.insert(id, (send, frame));
            s.published += 1;
        }
    }

    fn finish(&mut self, id: u64) {
        let Role::Sender(s) = &mut self.role else {
            return;
        };
        let Some((send, _)) = s.pending.get(&id) else {
            return;
        };
        if let Some(report) = send.outcome(self.now) {
            for peer in report.missing.iter() {
                s.window.release_peer(*peer, 8);
            }
            s.window.close(id);
            s.pending.remove(&id);
            s.reports.push(report);
        }
    }
}

impl Node for ReliableNode {
    fn handle_datagram(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        self.now = now;
        for frame in Frames::new(bytes) {
            match (&mut self.role, frame.unwrap()) {
                (Role::Sender(s), Frame::Ack(ranges)) => {
                    let mut done = Vec::new();
                    for range in ranges.ranges() {
                        for (id, (send, _)) in s.pending.range_mut(range.clone()) {
                            if send.on_ack(peer_of(from)) {
                                s.window.release_peer(peer_of(from), 8);
                                done.push(*id);
                            }
                        }
                    }
                    for id in done {
                        self.finish(id);
                    }
                }
                (
                    Role::Receiver(r),
                    Frame::ReliablePublish {
                        message_id,
                        window,
                        payload,
                        ..
                    },
                ) => {
                    let windows = r.windows.entry(from).or_default();
                    match windows.on_arrival(message_id, message_id - window) {
                        Arrival::New => {
                            r.delivered
                                .push(u64::from_le_bytes(payload.try_into().unwrap()));
                        }
                        Arrival::Duplicate => r.duplicates += 1,
                        Arrival::OutOfWindow => continue,
                    }
                    // Duplicates too: the first acknowledgement may have been lost.
                    r.acks_owed.entry(from).or_default().push(message_id);
                }
                _ => {}
            }
        }
        self.publish();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Role::Sender(s) = &mut self.role {
            let mut finished = Vec::new();
            for (id, (send, frame)) in s.pending.iter_mut() {
                for peer in send.poll_retransmits(now) {
                    self.batcher
                        .push_encoded(&Destination::Unicast(node_of(peer)), frame)
                        .unwrap();
                }
                if send.outcome(now).is_some() {
                    finished.push(*id);
                }
            }
            for id in finished {
                self.finish(id);
            }
        }
        self.publish();
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        if let Role::Receiver(r) = &mut self.role {
            for (to, ids) in std::mem::take(&mut r.acks_owed) {
                let mut ids: VecDeque<u64> = ids.into();
                while !ids.is_empty() {
                    // Keep each ack well inside a datagram.
                    let chunk: Vec<u64> = ids.drain(..ids.len().min(64)).collect();
                    let ranges = AckRanges::from_ranges(chunk.into_iter().map(|id| id..=id));
                    self.batcher
                        .push(&Destination::Unicast(to), &Frame::Ack(ranges))
                        .unwrap();
                }
            }
        }
        self.batcher
            .poll_body()
            .map(|(destination, bytes)| Transmit { destination, bytes })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.role {
            Role::Sender(s) => s
                .pending
                .values()
                .filter_map(|(m, _)| m.poll_timeout())
                .min(),
            Role::Receiver(_) => None,
        }
    }
}

fn network(seed: u64, loss: f64) -> Simulation<ReliableNode> {
    let config = LinkConfig {
        loss,
        duplicate: 0.1,
        latency: Duration::from_micros(500),
        jitter: Duration::from_micros(500),
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
    };
    let limits = WindowLimits {
        per_peer_messages: 256,
        ..WindowLimits::default()
    };
    let nodes = vec![
        ReliableNode::sender(3, 10_000, limits),
        ReliableNode::receiver(),
        ReliableNode::receiver(),
        ReliableNode::receiver(),
    ];
    let mut sim = Simulation::new(seed, config, nodes);
    sim.nodes[0].publish();
    sim
}

/// 10k messages to three subscribers at `loss` each way, with 10% duplication and reordering:
/// each delivered exactly once to every subscriber, every send resolved complete.
fn exactly_once_at(loss: f64) -> (u64, u64) {
    let mut sim = network(42, loss);
    assert!(sim.drive_bounded(5_000_000), "the simulation never settled");
    let sender = sim.nodes[0].sender_state();
    assert_eq!(sender.reports.len(), 10_000);
    assert!(sender.reports.iter().all(DeliveryReport::is_complete));
    assert_eq!(sender.window.in_flight(), 0);
    let mut duplicates = 0;
    for node in &sim.nodes[1..] {
        let r = node.receiver_state();
        let mut delivered = r.delivered.clone();
        delivered.sort_unstable();
        assert!(delivered.iter().copied().eq(0..10_000), "loss {loss}");
        duplicates += r.duplicates;
    }
    let retransmissions = sender
        .reports
        .iter()
        .map(|r| u64::from(r.retransmissions))
        .sum();
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

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        let mut sim = network(seed, 0.2);
        sim.nodes[0].role =
            match std::mem::replace(&mut sim.nodes[0].role, Role::Receiver(Receiver::default())) {
                Role::Sender(mut s) => {
                    s.quota = 500;
                    Role::Sender(s)
                }
                r => r,
            };
        assert!(sim.drive_bounded(1_000_000));
        sim.network.trace().clone()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

fn two_nodes() -> Simulation<ReliableNode> {
    let config = LinkConfig {
        latency: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    let nodes = vec![
        ReliableNode::sender(1, 0, WindowLimits::default()),
        ReliableNode::receiver(),
    ];
    Simulation::new(1, config, nodes)
}

fn allow(sim: &mut Simulation<ReliableNode>, quota: u64) {
    if let Role::Sender(s) = &mut sim.nodes[0].role {
        s.quota = quota;
    }
    sim.nodes[0].publish();
}

/// Pavillion's bug 3: the first copy of message 0 is lost, message 1 gets through, and the
/// retransmission of 0 must still be delivered (a highest-id-only replay check drops it).
#[test]
fn a_retransmission_is_delivered_after_a_later_message() {
    let mut sim = two_nodes();
    let (a, b) = ([NodeId(0)], [NodeId(1)]);
    sim.network.partition(&a, &b);
    allow(&mut sim, 1);
    sim.drive_until(Instant::from_micros(100)); // message 0's first copy is cut
    sim.network.heal();
    allow(&mut sim, 2);
    sim.drive_until(Instant::from_millis(3)); // message 1 arrives before 0's retransmission
    assert_eq!(sim.nodes[1].receiver_state().delivered, [1]);
    assert!(sim.drive_bounded(10_000));
    assert_eq!(sim.nodes[1].receiver_state().delivered, [1, 0]);
    let reports = &sim.nodes[0].sender_state().reports;
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(DeliveryReport::is_complete));
}

/// Pavillion's bug 4: the receiver's acknowledgement is lost, so the sender retransmits; the
/// receiver must acknowledge the duplicate again (not only drop it), or the sender reports a
/// delivered message as failed.
#[test]
fn a_duplicate_is_acknowledged_again() {
    let mut sim = two_nodes();
    let dead = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    sim.network.set_link(NodeId(1), NodeId(0), dead);
    allow(&mut sim, 1);
    sim.drive_until(Instant::from_millis(4)); // delivered; its ack lost
    assert_eq!(sim.nodes[1].receiver_state().delivered, [0]);
    sim.network
        .set_link(NodeId(1), NodeId(0), LinkConfig::default());
    assert!(sim.drive_bounded(10_000));
    let r = sim.nodes[1].receiver_state();
    assert_eq!(r.delivered, [0], "delivered once");
    assert!(
        r.duplicates >= 1,
        "the retransmission arrived as a duplicate"
    );
    let reports = &sim.nodes[0].sender_state().reports;
    assert_eq!(reports.len(), 1);
    assert!(reports[0].is_complete(), "the re-ack completed the send");
    assert!(reports[0].retransmissions >= 1);
}

/// A subscriber cut off for longer than the deadline is named in the report; the others get
/// everything; nothing is left in flight.
#[test]
fn a_partitioned_subscriber_is_named_and_nothing_is_left_behind() {
    let mut sim = network(3, 0.0);
    if let Role::Sender(s) = &mut sim.nodes[0].role {
        s.quota = 1000;
        s.deadline = Duration::from_secs(2);
    }
    sim.network.partition(&[NodeId(0)], &[NodeId(3)]);
    assert!(sim.drive_bounded(1_000_000));
    let sender = sim.nodes[0].sender_state();
    assert_eq!(sender.reports.len(), 1000);
    for report in &sender.reports {
        assert_eq!(report.missing, [peer_of(NodeId(3))]);
        assert_eq!(report.acked, [peer_of(NodeId(1)), peer_of(NodeId(2))]);
    }
    assert_eq!(sender.window.in_flight(), 0);
    assert!(sender.pending.is_empty());
    assert_eq!(sender.window.in_flight_to(&peer_of(NodeId(3))), (0, 0));
    for node in &sim.nodes[1..3] {
        assert_eq!(node.receiver_state().delivered.len(), 1000);
    }
    assert!(sim.nodes[3].receiver_state().delivered.is_empty());
}
