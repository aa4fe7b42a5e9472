//! Messages sent to one peer: they reach that peer alone, exactly once when reliable, through
//! loss, duplication and reordering, in plaintext and encrypted; `Ok` is never reported for a
//! peer that did not take the message.

use std::cell::Cell;
use std::rc::Rc;

use super::sim::SimEndpoint;
use super::tests::{dead, lossy, peer_of, psk};
use super::*;
use crate::sim::{LinkConfig, NodeId, Simulation};

const TOPIC: TopicId = TopicId::from_name("test/direct");

fn config(node: usize, security: &Security) -> EndpointConfig {
    EndpointConfig {
        liveness_factor: 1000,
        ..EndpointConfig::new(peer_of(node), security.clone())
    }
}

fn seed_of(seed: u64, node: usize) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = u8::try_from(node).unwrap();
    bytes
}

/// The sequence numbers a node was delivered, in arrival order.
fn delivered_seqs(node: &SimEndpoint) -> Vec<u64> {
    node.delivered
        .iter()
        .flat_map(|d| d.payloads.iter())
        .map(|(_, p)| u64::from_le_bytes(p[..].try_into().unwrap()))
        .collect()
}

/// A sender (node 0) and two subscribers of [`TOPIC`] (nodes 1 and 2, unless `subscribe`
/// says otherwise); the sender sends `count` messages to node 1 alone once it has confirmed
/// both peers, reliably or best effort, as fast as its window allows.
fn run(
    seed: u64,
    security: &Security,
    link: LinkConfig,
    (count, reliable): (u64, bool),
    subscribe: [bool; 2],
) -> Simulation<SimEndpoint> {
    let sent = Rc::new(Cell::new(0u64));
    let sender = {
        let sent = sent.clone();
        SimEndpoint::new(NodeId(0), config(0, security), seed_of(seed, 0)).with_app(
            move |ep, now| {
                // Once both peers answered a ping: until then, what goes to an address
                // not proven to answer is limited (against amplification).
                if !(ep.confirmed(peer_of(1)) && ep.confirmed(peer_of(2))) {
                    return;
                }
                while sent.get() < count {
                    let payload = sent.get().to_le_bytes();
                    let key = (TOPIC, 0);
                    let result = if reliable {
                        let deadline = Duration::from_secs(30);
                        ep.send_reliable_to(now, peer_of(1), key, &payload, deadline)
                            .map(drop)
                    } else {
                        ep.send_to(peer_of(1), key, &payload)
                    };
                    match result {
                        Ok(()) => sent.set(sent.get() + 1),
                        Err(PublishError::Busy(_)) => return,
                        Err(e) => panic!("send failed: {e}"),
                    }
                }
            },
        )
    };
    let mut nodes = vec![sender];
    for (node, subscribes) in [(1, subscribe[0]), (2, subscribe[1])] {
        let mut receiver =
            SimEndpoint::new(NodeId(node), config(node, security), seed_of(seed, node));
        if subscribes {
            receiver.endpoint.subscribe(TOPIC);
        }
        nodes.push(receiver);
    }
    Simulation::new(seed, link, nodes)
}

/// Issue 16, acceptance 5 (simulator): 300 reliable messages to node 1 through 30% loss and
/// 10% duplication reach node 1 exactly once each and node 2 never, though it subscribes;
/// every report names node 1 alone as having acknowledged.
#[test]
fn reliable_messages_to_one_peer_reach_it_exactly_once_and_nobody_else() {
    for security in [Security::Insecure, psk()] {
        for seed in 0..5 {
            let mut sim = run(seed, &security, lossy(0.3), (300, true), [true, true]);
            sim.drive_until(Instant::from_millis(60_000));
            let mut seqs = delivered_seqs(&sim.nodes[1]);
            seqs.sort_unstable();
            assert_eq!(
                seqs,
                (0..300).collect::<Vec<_>>(),
                "{security:?} seed {seed}"
            );
            assert!(
                sim.nodes[2].delivered.is_empty(),
                "{security:?} seed {seed}"
            );
            let sender = &sim.nodes[0];
            assert!(!sender.finished.is_empty());
            for (_, report) in &sender.finished {
                assert_eq!(report.acked, vec![peer_of(1)], "{security:?} seed {seed}");
                assert!(report.is_complete());
            }
            assert_eq!(sender.endpoint.pending_messages(), 0);
        }
    }
}

/// Best-effort messages to node 1 go to node 1 only, though the network duplicates a third
/// of the datagrams: each once when encrypted (the replay window drops a copy); in plaintext,
/// which proves nothing about a datagram, a copy is delivered again.
#[test]
fn best_effort_messages_to_one_peer_reach_it_and_nobody_else() {
    for security in [psk(), Security::Insecure] {
        let link = LinkConfig {
            loss: 0.0,
            duplicate: 0.3,
            ..lossy(0.3)
        };
        let mut sim = run(7, &security, link, (200, false), [true, true]);
        sim.drive_until(Instant::from_millis(10_000));
        let mut seqs = delivered_seqs(&sim.nodes[1]);
        seqs.sort_unstable();
        if matches!(security, Security::Insecure) {
            seqs.dedup();
        }
        assert_eq!(seqs, (0..200).collect::<Vec<_>>(), "{security:?}");
        assert!(sim.nodes[2].delivered.is_empty());
    }
}

/// A reliable message to a peer that takes nothing of its topic is not acknowledged: its
/// report names that peer as missing at the deadline, never as delivered.
#[test]
fn a_reliable_message_to_a_peer_that_does_not_subscribe_is_reported_missing() {
    let mut sim = run(
        3,
        &Security::Insecure,
        LinkConfig::default(),
        (1, true),
        [false, true],
    );
    sim.drive_until(Instant::from_millis(60_000));
    let sender = &sim.nodes[0];
    assert_eq!(sender.finished.len(), 1);
    let report = &sender.finished[0].1;
    assert_eq!(report.missing, vec![peer_of(1)]);
    assert!(report.acked.is_empty());
    assert!(sim.nodes[1].delivered.is_empty() && sim.nodes[2].delivered.is_empty());
}

/// A peer that is not in the table is a caller's mistake, named.
#[test]
fn a_message_to_an_unknown_peer_is_refused() {
    let mut endpoint = SimEndpoint::new(NodeId(0), config(0, &Security::Insecure), [1; 32]);
    let stranger = peer_of(9);
    let key = (TOPIC, 0);
    let ep = &mut endpoint.endpoint;
    assert_eq!(
        ep.send_to(stranger, key, b"x"),
        Err(PublishError::UnknownPeer(stranger))
    );
    assert_eq!(
        ep.send_reliable_to(Instant::ZERO, stranger, key, b"x", Duration::from_secs(1)),
        Err(PublishError::UnknownPeer(stranger))
    );
}

/// A reliable message to a peer that takes it, loses its acknowledgement and restarts: as
/// with published messages, what the old life did not acknowledge is still owed and goes to
/// the new life, once, and the report names the peer as having acknowledged (its new life
/// did). Exactly once holds per process: only a crash between delivering and acknowledging
/// lets two lives of a peer both have it.
#[test]
fn a_peer_that_restarts_before_acknowledging_gets_it_once_in_its_new_life() {
    for security in [Security::Insecure, psk()] {
        let mut sim = run(9, &security, LinkConfig::default(), (0, true), [true, true]);
        sim.drive_until(Instant::from_millis(2_000));
        sim.network.set_link(NodeId(1), NodeId(0), dead());
        let now = sim.now();
        let deadline = Duration::from_secs(20);
        let id = sim.nodes[0]
            .endpoint
            .send_reliable_to(now, peer_of(1), (TOPIC, 0), &7u64.to_le_bytes(), deadline)
            .unwrap();
        sim.drive_until(now + Duration::from_millis(100));
        assert_eq!(delivered_seqs(&sim.nodes[1]), [7], "{security:?}");
        let restart = sim.now();
        let mut again =
            SimEndpoint::started_at(NodeId(1), config(1, &security), seed_of(99, 1), restart);
        again.endpoint.subscribe(TOPIC);
        sim.nodes[1] = again;
        sim.network
            .set_link(NodeId(1), NodeId(0), LinkConfig::default());
        sim.drive_until(now + deadline + Duration::from_secs(1));
        assert_eq!(delivered_seqs(&sim.nodes[1]), [7], "{security:?}");
        assert!(sim.nodes[2].delivered.is_empty());
        let sender = &sim.nodes[0];
        assert_eq!(sender.finished.len(), 1);
        let (finished, report) = &sender.finished[0];
        assert_eq!(*finished, id);
        assert_eq!(report.acked, [peer_of(1)], "{security:?}");
    }
}
