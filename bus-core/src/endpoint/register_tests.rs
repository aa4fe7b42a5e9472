//! Remote registers on the simulated network: reads and acknowledged writes through loss and
//! duplication, each write applied once; a write retransmitted into a restarted server never
//! applied; unreliable writes; and the errors (no such register, another type).

use std::cell::Cell;
use std::rc::Rc;

use super::sim::SimEndpoint;
use super::tests::{dead, lossy, peer_of, psk};
use super::*;
use crate::rpc::{STATUS_NO_SUCH_REGISTER, STATUS_UNDECODABLE};
use crate::sim::{LinkConfig, NodeId, Simulation};

const SPEED: TopicId = TopicId::from_name("test/register/speed");
const FINGERPRINT: u64 = 0x5eed;

fn config(node: usize, security: &Security) -> EndpointConfig {
    EndpointConfig {
        // Membership does not flap at 30% loss: these tests are about registers.
        liveness_factor: 1000,
        ..EndpointConfig::new(peer_of(node), security.clone())
    }
}

/// Node 1, serving [`SPEED`] (value `b"0"`), started at `now`.
fn serving_speed(security: &Security, seed: u8, now: Instant) -> SimEndpoint {
    let mut server = SimEndpoint::started_at(NodeId(1), config(1, security), [seed; 32], now);
    server
        .registers
        .insert(SPEED, (FINGERPRINT, Bytes::from_static(b"0")));
    server
}

/// Node 0 writes `count` distinct values to node 1's register, ten every 10 ms once node 1
/// is confirmed; then the test reads it back.
fn writer(security: &Security, link: LinkConfig, count: u64) -> Simulation<SimEndpoint> {
    let made = Rc::new(Cell::new(0u64));
    let next_batch = Rc::new(Cell::new(Instant::ZERO));
    let writer = SimEndpoint::new(NodeId(0), config(0, security), [30; 32]).with_app(
        move |endpoint, now| {
            if !endpoint.confirmed(peer_of(1)) || now < next_batch.get() {
                return;
            }
            next_batch.set(now + Duration::from_millis(10));
            for _ in 0..10 {
                if made.get() == count {
                    return;
                }
                let value = made.get().to_le_bytes();
                let deadline = Duration::from_secs(60);
                let register = (SPEED, FINGERPRINT);
                let write = endpoint.write_register(now, peer_of(1), register, &value, deadline);
                assert!(write.is_ok(), "{write:?}");
                made.set(made.get() + 1);
            }
        },
    );
    Simulation::new(
        11,
        link,
        vec![writer, serving_speed(security, 31, Instant::ZERO)],
    )
}

/// Issue 16, acceptance 6 (simulator): 300 acknowledged writes through 30% loss, 10%
/// duplication and reordering are each applied exactly once and each answered; a read then
/// returns the value last applied.
#[test]
fn writes_through_loss_are_applied_once_each_and_read_back() {
    for security in [Security::Insecure, psk()] {
        let mut sim = writer(&security, lossy(0.3), 300);
        sim.drive_until(Instant::from_millis(60_000));
        let replies = &sim.nodes[0].replies;
        assert_eq!(replies.len(), 300, "{security:?}");
        assert!(replies.iter().all(|(_, r)| matches!(r, Ok((0, _)))));
        let mut applied: Vec<u64> = sim.nodes[1]
            .writes
            .iter()
            .map(|(_, v, _)| u64::from_le_bytes(v[..].try_into().unwrap()))
            .collect();
        let last = *applied.last().unwrap();
        applied.sort_unstable();
        assert_eq!(applied, (0..300).collect::<Vec<_>>(), "{security:?}");

        let now = sim.now();
        let read = sim.nodes[0]
            .endpoint
            .read_register(
                now,
                peer_of(1),
                (SPEED, FINGERPRINT),
                Duration::from_secs(30),
            )
            .unwrap();
        sim.drive_until(now + Duration::from_secs(30));
        let (id, outcome) = sim.nodes[0].replies.last().unwrap();
        assert_eq!(*id, read);
        assert_eq!(
            outcome,
            &Ok((0, Bytes::copy_from_slice(&last.to_le_bytes())))
        );
    }
}

/// A write whose answer is lost, retransmitted at 100 points in its schedule into the
/// server's next life, is never applied there: it names the old life. It fails as `PeerGone`.
#[test]
fn a_write_retransmitted_into_a_restarted_server_is_never_applied() {
    for security in [Security::Insecure, psk()] {
        for seed in 0..100u64 {
            let writer = SimEndpoint::new(NodeId(0), config(0, &security), [30; 32]);
            let server = serving_speed(&security, 31, Instant::ZERO);
            let mut sim = Simulation::new(seed, lossy(0.3), vec![writer, server]);
            sim.drive_until(Instant::from_millis(3_000));
            if !sim.nodes[0].endpoint.confirmed(peer_of(1)) {
                continue;
            }
            sim.network.set_link(NodeId(1), NodeId(0), dead());
            let now = sim.now();
            let deadline = Duration::from_secs(60);
            let write = sim.nodes[0]
                .endpoint
                .write_register(now, peer_of(1), (SPEED, FINGERPRINT), b"1", deadline)
                .unwrap();
            sim.drive_until(now + Duration::from_millis(5 + seed * 7 % 700));
            let restart = sim.now();
            sim.nodes[1] = serving_speed(&security, 32, restart);
            sim.network.set_link(NodeId(1), NodeId(0), lossy(0.3));
            sim.drive_until(restart + Duration::from_secs(10));
            assert!(sim.nodes[1].writes.is_empty(), "{security:?}, seed {seed}");
            assert_eq!(
                sim.nodes[0].replies,
                [(write, Err(CallFailure::PeerGone))],
                "{security:?}, seed {seed}"
            );
        }
    }
}

/// An unreliable write is applied once it arrives, with no answer; a read or write of a
/// register the peer does not serve, or of another type, is answered as such and changes
/// nothing.
#[test]
fn unreliable_writes_and_wrong_registers() {
    for security in [Security::Insecure, psk()] {
        let writer = SimEndpoint::new(NodeId(0), config(0, &security), [30; 32]);
        let server = serving_speed(&security, 31, Instant::ZERO);
        let mut sim = Simulation::new(5, LinkConfig::default(), vec![writer, server]);
        sim.drive_until(Instant::from_millis(2_000));
        let now = sim.now();
        let ep = &mut sim.nodes[0].endpoint;
        ep.write_register_unreliable(peer_of(1), (SPEED, FINGERPRINT), b"7")
            .unwrap();
        let deadline = Duration::from_secs(5);
        let other = TopicId::from_name("test/register/other");
        let unknown = ep.read_register(now, peer_of(1), (other, FINGERPRINT), deadline);
        let mistyped = ep.write_register(now, peer_of(1), (SPEED, 1), b"x", deadline);
        let misread = ep.read_register(now, peer_of(1), (SPEED, 1), deadline);
        sim.drive_until(now + Duration::from_secs(1));
        let node = &sim.nodes[1];
        assert_eq!(node.writes, [(SPEED, Bytes::from_static(b"7"), true)]);
        assert_eq!(node.registers[&SPEED].1, Bytes::from_static(b"7"));
        let status = |id| {
            sim.nodes[0]
                .replies
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, r)| r.clone().map(|(status, _)| status))
        };
        assert_eq!(status(unknown.unwrap()), Some(Ok(STATUS_NO_SUCH_REGISTER)));
        assert_eq!(status(mistyped.unwrap()), Some(Ok(STATUS_UNDECODABLE)));
        assert_eq!(status(misread.unwrap()), Some(Ok(STATUS_UNDECODABLE)));
    }
}
