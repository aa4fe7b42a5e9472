//! Messages larger than a datagram, through the production endpoint on the simulated network.

use super::sim::SimEndpoint;
use super::*;
use crate::crypto::handshake::PresharedKey;
use crate::metrics::DropReason;
use crate::sim::{LinkConfig, NodeId, Simulation};

const TOPIC: TopicId = TopicId::from_name("test/large");

fn psk() -> Security {
    Security::Psk {
        cluster: Some(PresharedKey([0x3d; 32])),
        per_peer: HashMap::new(),
    }
}

/// A message of `len` bytes, different for every `seq` and at every offset.
fn message(seq: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i ^ (seq << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect()
}

fn config(node: usize, security: &Security, max_datagram: usize) -> EndpointConfig {
    EndpointConfig {
        max_datagram,
        liveness_factor: 1000,
        ..EndpointConfig::new(PeerId([node as u8 + 1; 16]), security.clone())
    }
}

/// Node 0 publishes to node 1, which subscribes; datagrams of `max_datagram` bytes.
fn pair(security: &Security, max_datagram: usize, link: LinkConfig) -> Simulation<SimEndpoint> {
    let nodes = (0..2)
        .map(|node| {
            let config = config(node, security, max_datagram);
            let mut endpoint = SimEndpoint::new(NodeId(node), config, [node as u8 + 40; 32]);
            if node == 1 {
                endpoint.endpoint.subscribe(TOPIC);
            }
            endpoint
        })
        .collect();
    let mut sim = Simulation::new(11, link, nodes);
    sim.drive_until(Instant::from_millis(3000));
    assert_eq!(sim.nodes[0].endpoint.subscribers(TOPIC).len(), 1);
    sim
}

fn delivered(node: &SimEndpoint) -> Vec<Bytes> {
    node.delivered
        .iter()
        .filter(|d| d.topic == TOPIC)
        .flat_map(|d| d.payloads.iter().map(|(_, p)| p.clone()))
        .collect()
}

/// Best-effort messages of 64 KiB arrive whole, once each, with datagrams of 1200 bytes (any
/// LAN) and of 16 KiB (loopback), encrypted and not; nothing stays held for reassembly.
#[test]
fn best_effort_messages_larger_than_a_datagram_arrive_whole() {
    for security in [Security::Insecure, psk()] {
        for max_datagram in [1200, 16_384] {
            let mut sim = pair(&security, max_datagram, LinkConfig::default());
            let sent: Vec<Vec<u8>> = (0..8).map(|seq| message(seq, 64 << 10)).collect();
            for payload in &sent {
                assert!(sim.nodes[0].endpoint.publish(TOPIC, 0, payload).unwrap());
            }
            let now = sim.now();
            sim.drive_until(now + Duration::from_millis(500));
            let got = delivered(&sim.nodes[1]);
            assert_eq!(got.len(), sent.len(), "{security:?} at {max_datagram}");
            for (got, sent) in got.iter().zip(&sent) {
                assert!(got[..] == sent[..], "intact, in order on a clean link");
            }
            assert_eq!(sim.nodes[1].endpoint.reassembly(), (0, 0));
            let drops = sim.nodes[1].endpoint.metrics().snapshot();
            assert_eq!(drops.drops(DropReason::FragmentInvalid), 0);
        }
    }
}

/// The same limit on every interface: a message over `max_message` fails at the sender, naming
/// its size and the limit, whether or not anyone listens; one at the limit is sent.
#[test]
fn a_message_over_the_limit_fails_at_the_sender_with_both_sizes() {
    let mut sim = pair(&Security::Insecure, 1200, LinkConfig::default());
    let limit = ReassemblyLimits::default().max_message;
    let over = vec![0u8; limit];
    let err = sim.nodes[0].endpoint.publish(TOPIC, 0, &over).unwrap_err();
    assert!(err.len > limit && err.max == limit, "{err:?}");
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    let nobody = TopicId::from_name("test/nobody");
    assert!(sim.nodes[0].endpoint.publish(nobody, 0, &over).is_err());
    let at_limit = vec![7u8; limit - 32];
    assert!(sim.nodes[0].endpoint.publish(TOPIC, 0, &at_limit).unwrap());
    let now = sim.now();
    sim.drive_until(now + Duration::from_secs(2));
    let got = delivered(&sim.nodes[1]);
    assert_eq!(got.len(), 1);
    assert!(got[0][..] == at_limit[..]);
}

/// Best effort over a lossy link: a message missing fragments is dropped whole once its time
/// is up (counted), every message that arrives is intact, and the reassembly entries and bytes
/// return to 0.
#[test]
fn a_best_effort_message_missing_fragments_is_dropped_whole_at_its_timeout() {
    let lossy = LinkConfig {
        loss: 0.05,
        duplicate: 0.1,
        reorder: 0.1,
        reorder_delay: Duration::from_millis(2),
        ..LinkConfig::default()
    };
    let mut sim = pair(&Security::Insecure, 1200, lossy);
    let sent: Vec<Vec<u8>> = (0..20).map(|seq| message(seq, 16 << 10)).collect();
    for payload in &sent {
        sim.nodes[0].endpoint.publish(TOPIC, 0, payload).unwrap();
    }
    let now = sim.now();
    sim.drive_until(now + Duration::from_millis(200));
    let (held, bytes) = sim.nodes[1].endpoint.reassembly();
    assert!(
        held > 0 && bytes >= held * (16 << 10),
        "some are incomplete: {held}, {bytes}"
    );
    let timeout = ReassemblyLimits::default().timeout;
    sim.drive_until(now + timeout + Duration::from_secs(2));
    assert_eq!(sim.nodes[1].endpoint.reassembly(), (0, 0));
    let got = delivered(&sim.nodes[1]);
    let metrics = sim.nodes[1].endpoint.metrics().snapshot();
    let expired = metrics.drops(DropReason::ReassemblyExpired);
    assert!(expired as usize >= held, "{expired} expired");
    assert_eq!(
        got.len() + expired as usize,
        sent.len(),
        "each delivered or dropped whole"
    );
    for payload in &got {
        assert!(sent.iter().any(|s| s[..] == payload[..]), "intact");
    }
}

/// Reliable messages larger than a datagram: each event's frame goes as fragments, every copy
/// whole, and the receiver acknowledges the message only once it has all of it; retransmitted
/// copies complete what it holds. At 10% loss with duplication and reordering, every message
/// arrives intact exactly once and every report is complete.
fn reliable_large_messages_arrive_once(security: &Security, max_datagram: usize, sizes: &[usize]) {
    let lossy = LinkConfig {
        loss: 0.1,
        duplicate: 0.1,
        latency: Duration::from_micros(500),
        jitter: Duration::from_micros(500),
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
    };
    let mut sim = pair(security, max_datagram, lossy);
    let sent: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(seq, len)| message(seq as u64, *len))
        .collect();
    let now = sim.now();
    for payload in &sent {
        let id = sim.nodes[0]
            .endpoint
            .publish_reliable(now, TOPIC, 0, payload, Duration::from_secs(120))
            .expect("published");
        assert!(id.is_some());
    }
    sim.nodes[0].settle(now);
    sim.drive_until(now + Duration::from_secs(60));
    let finished = &sim.nodes[0].finished;
    assert_eq!(finished.len(), sent.len(), "every message has an outcome");
    assert!(
        finished.iter().all(|(_, r)| r.is_complete()),
        "{finished:?}"
    );
    let got = delivered(&sim.nodes[1]);
    assert_eq!(got.len(), sent.len(), "each exactly once");
    for payload in &sent {
        assert_eq!(
            got.iter().filter(|g| g[..] == payload[..]).count(),
            1,
            "intact, once"
        );
    }
    assert_eq!(sim.nodes[1].endpoint.reassembly(), (0, 0));
}

#[test]
fn reliable_messages_of_1_mib_arrive_once_at_10_percent_loss_in_1200_byte_datagrams() {
    reliable_large_messages_arrive_once(&psk(), 1200, &[1 << 20, 1 << 20, 100_000]);
}

/// The largest message alone (it takes the window toward its subscriber whole: a second one
/// would wait for it).
#[test]
fn a_reliable_message_of_16_mib_arrives_once_at_10_percent_loss() {
    reliable_large_messages_arrive_once(&psk(), 16_384, &[(16 << 20) - 64]);
}

/// Every datagram of large messages a subscriber received (reliable and best effort, as
/// fragments) is recorded, and replayed into the same subscriber restarted: it delivers none
/// of it, and a live large message after that arrives once.
#[test]
fn recorded_fragments_replayed_into_a_restarted_peer_deliver_nothing() {
    let mut sim = pair(&psk(), 1200, LinkConfig::default());
    let recorder = std::mem::replace(
        &mut sim.nodes[1],
        SimEndpoint::new(NodeId(9), config(9, &psk(), 1200), [9; 32]),
    );
    sim.nodes[1] = recorder.capturing();
    let now = sim.now();
    let (reliable, best_effort) = (message(1, 100_000), message(2, 64 << 10));
    let deadline = Duration::from_secs(5);
    sim.nodes[0]
        .endpoint
        .publish_reliable(now, TOPIC, 0, &reliable, deadline)
        .expect("published");
    sim.nodes[0]
        .endpoint
        .publish(TOPIC, 0, &best_effort)
        .expect("published");
    sim.nodes[0].settle(now);
    sim.drive_until(now + Duration::from_secs(1));
    assert_eq!(delivered(&sim.nodes[1]).len(), 2, "the original got both");
    let recorded = sim.nodes[1].captured.take().expect("capturing");
    assert!(recorded.len() > 100, "{} datagrams", recorded.len());

    let restart = sim.now();
    let mut reborn = SimEndpoint::started_at(NodeId(1), config(1, &psk(), 1200), [77; 32], restart);
    reborn.endpoint.subscribe(TOPIC);
    sim.nodes[1] = reborn;
    sim.drive_until(restart + Duration::from_secs(3));
    let now = sim.now();
    {
        use crate::sim::Node;
        let node = &mut sim.nodes[1];
        for (from, bytes) in &recorded {
            node.handle_datagram(now, *from, bytes);
        }
        node.handle_timeout(now);
    }
    assert!(
        delivered(&sim.nodes[1]).is_empty(),
        "nothing recorded is delivered"
    );

    let live = message(3, 100_000);
    sim.nodes[0]
        .endpoint
        .publish_reliable(now, TOPIC, 0, &live, deadline)
        .expect("published");
    sim.nodes[0].settle(now);
    sim.drive_until(now + Duration::from_secs(2));
    let got = delivered(&sim.nodes[1]);
    assert_eq!(got.len(), 1, "the live one, once");
    assert!(got[0][..] == live[..]);
}

/// Node 0 publishes `payload` reliably (a 30 s deadline) and sends it; returns when.
fn publish_large(sim: &mut Simulation<SimEndpoint>, payload: &[u8]) -> Instant {
    let now = sim.now();
    sim.nodes[0]
        .endpoint
        .publish_reliable(now, TOPIC, 0, payload, Duration::from_secs(30))
        .expect("published");
    sim.nodes[0].settle(now);
    now
}

/// Drives until node 0's one reliable message has its outcome, by `until`: complete.
fn await_complete(sim: &mut Simulation<SimEndpoint>, until: Instant) -> DeliveryReport {
    sim.drive_while(until, |nodes| nodes[0].finished.is_empty());
    let finished = &sim.nodes[0].finished;
    assert_eq!(finished.len(), 1);
    assert!(finished[0].1.is_complete(), "{finished:?}");
    finished[0].1.clone()
}

/// Nothing node 1 sends reaches node 0 (its reports and acknowledgements are lost).
fn cut_link_back(sim: &mut Simulation<SimEndpoint>) {
    let lost = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    sim.network.set_link(NodeId(1), NodeId(0), lost);
}

fn assert_delivered_once(node: &SimEndpoint, payload: &[u8]) {
    let got = delivered(node);
    assert_eq!(got.len(), 1, "once");
    assert!(got[0][..] == payload[..], "intact");
}

/// The data bytes of each fragment node 0 sends of a reliable message of `len` bytes (about).
fn piece_len(sim: &Simulation<SimEndpoint>, len: usize) -> u64 {
    let max_body = sim.nodes[0].endpoint.outbox.max_body();
    fragment::piece_len(u64::MAX, len + 64, max_body).expect("room") as u64
}

/// Fragment datagrams node 0 sent so far.
fn fragments_sent(sim: &Simulation<SimEndpoint>) -> u64 {
    let metrics = sim.nodes[0].endpoint.metrics().snapshot();
    metrics.frames_out(FrameType::Fragment)
}

/// A reliable large message over a lossy link is repaired piece by piece: what the receiver
/// reports missing is sent again, not the whole message (a whole copy of 1 MiB in 1200-byte
/// datagrams would almost never get through 5% loss at all).
#[test]
fn only_missing_fragments_are_sent_again() {
    let lossy = LinkConfig {
        loss: 0.05,
        latency: Duration::from_micros(200),
        ..LinkConfig::default()
    };
    let mut sim = pair(&psk(), 1200, lossy);
    let payload = message(1, 1 << 20);
    let pieces = (payload.len() as u64).div_ceil(piece_len(&sim, payload.len()));
    let before = fragments_sent(&sim);
    let now = publish_large(&mut sim, &payload);
    await_complete(&mut sim, now + Duration::from_secs(30));
    assert_delivered_once(&sim.nodes[1], &payload);
    let sent = fragments_sent(&sim) - before;
    // 5% of the pieces are lost, 5% of those again...: about 5% more than one copy; a piece
    // sent again before its report arrives adds a little.
    assert!(
        sent >= pieces && sent * 100 <= pieces * 115,
        "{sent} fragments sent for {pieces} pieces"
    );
    let stats = sim.nodes[0].endpoint.metrics().snapshot().reliable;
    assert!(stats.retransmitted < 20, "few timeouts: {stats:?}");
}

/// A receiver whose reports do not arrive (its link back is cut) is sent one window's worth
/// of a large message, then a probe per retransmission timeout, not the whole message; once
/// the link is back it completes, and the acknowledgement it sends is what settles it.
#[test]
fn a_silent_receiver_is_sent_one_window_then_probes() {
    let mut sim = pair(&psk(), 1200, LinkConfig::default());
    cut_link_back(&mut sim);
    let payload = message(2, 4 << 20);
    let window = sim.nodes[0].endpoint.config.large_window as u64;
    let piece = piece_len(&sim, payload.len());
    let before = fragments_sent(&sim);
    let now = publish_large(&mut sim, &payload);
    sim.drive_until(now + Duration::from_millis(500));
    let sent = fragments_sent(&sim) - before;
    assert!(
        sent >= window / piece && sent <= window / piece + 20,
        "{sent} fragments sent with a window of {window} bytes"
    );
    sim.network
        .set_link(NodeId(1), NodeId(0), LinkConfig::default());
    let healed = sim.now();
    await_complete(&mut sim, healed + Duration::from_secs(20));
    assert_delivered_once(&sim.nodes[1], &payload);
}

/// The receiver completes a large message, but its acknowledgement is lost: the sender's next
/// probe is a piece of a frame the receiver already completed, which it answers with the
/// acknowledgement again (it does not reassemble or deliver it twice).
#[test]
fn a_lost_acknowledgement_of_a_completed_large_message_is_sent_again() {
    let mut sim = pair(&psk(), 1200, LinkConfig::default());
    let payload = message(3, 100_000);
    let now = publish_large(&mut sim, &payload);
    // Every report and the acknowledgement are lost.
    cut_link_back(&mut sim);
    sim.drive_while(now + Duration::from_secs(5), |nodes| {
        delivered(&nodes[1]).is_empty()
    });
    assert_eq!(delivered(&sim.nodes[1]).len(), 1, "whole at the receiver");
    assert!(sim.nodes[0].finished.is_empty(), "the sender does not know");
    sim.network
        .set_link(NodeId(1), NodeId(0), LinkConfig::default());
    let healed = sim.now();
    await_complete(&mut sim, healed + Duration::from_secs(5));
    assert_eq!(delivered(&sim.nodes[1]).len(), 1, "once");
    assert_eq!(sim.nodes[1].endpoint.reassembly(), (0, 0));
}

/// Three subscribers of a large reliable message sent once to the group, one of them behind a
/// lossy link: the pieces it misses go again to it alone, and every subscriber gets it once.
#[test]
fn a_large_message_to_the_group_is_repaired_for_the_subscriber_that_missed_pieces() {
    let nodes = (0..4)
        .map(|node| {
            let config = config(node, &psk(), 1200);
            let mut endpoint = SimEndpoint::new(NodeId(node), config, [node as u8 + 40; 32]);
            if node > 0 {
                endpoint.endpoint.subscribe(TOPIC);
            }
            endpoint
        })
        .collect();
    let mut sim = Simulation::new(12, LinkConfig::default(), nodes);
    sim.drive_until(Instant::from_millis(3000));
    assert_eq!(sim.nodes[0].endpoint.subscribers(TOPIC).len(), 3);
    let lossy = LinkConfig {
        loss: 0.1,
        ..LinkConfig::default()
    };
    sim.network.set_link(NodeId(0), NodeId(3), lossy);
    let payload = message(4, 1 << 20);
    let pieces = (payload.len() as u64).div_ceil(piece_len(&sim, payload.len()));
    let before = fragments_sent(&sim);
    let now = publish_large(&mut sim, &payload);
    let report = await_complete(&mut sim, now + Duration::from_secs(30));
    assert_eq!(report.acked.len(), 3);
    for node in 1..4 {
        let got = delivered(&sim.nodes[node]);
        assert_eq!(got.len(), 1, "node {node}");
        assert!(got[0][..] == payload[..], "intact at node {node}");
    }
    // One copy to the group, and about a tenth of it again.
    let sent = fragments_sent(&sim) - before;
    assert!(
        sent >= pieces && sent * 100 <= pieces * 125,
        "{sent} fragments sent for {pieces} pieces"
    );
}

/// A partition in the middle of a large reliable message: nothing gets through for a second,
/// the sender backs off, and once the network heals the message completes from what the
/// receiver already holds, delivered once.
#[test]
fn a_partition_in_the_middle_of_a_large_message_delays_it_but_loses_nothing() {
    partitioned_mid_message(Duration::from_secs(1));
}

/// The same with a partition longer than the receiver keeps an incomplete message: what it
/// held expired, and the sender, told so by its first report after the partition, sends the
/// rest again.
#[test]
fn a_large_message_whose_partial_expired_in_a_partition_is_sent_again() {
    partitioned_mid_message(Duration::from_secs(7));
}

fn partitioned_mid_message(partition: Duration) {
    let link = LinkConfig {
        latency: Duration::from_micros(200),
        ..LinkConfig::default()
    };
    let mut sim = pair(&psk(), 1200, link);
    let payload = message(5, 4 << 20);
    let now = publish_large(&mut sim, &payload);
    // Until part of it arrived.
    sim.drive_while(now + Duration::from_secs(5), |nodes| {
        nodes[1].endpoint.reassembly().1 == 0
    });
    sim.drive_until(sim.now() + Duration::from_millis(2));
    assert_eq!(
        sim.nodes[1].endpoint.reassembly().0,
        1,
        "part of it arrived"
    );
    sim.network.partition(&[NodeId(0)], &[NodeId(1)]);
    let cut = sim.now();
    sim.drive_until(cut + partition);
    assert!(delivered(&sim.nodes[1]).is_empty(), "not whole yet");
    if partition > ReassemblyLimits::default().timeout {
        assert_eq!(sim.nodes[1].endpoint.reassembly(), (0, 0), "expired");
    }
    sim.network.heal();
    let healed = sim.now();
    await_complete(&mut sim, healed + Duration::from_secs(20));
    assert_delivered_once(&sim.nodes[1], &payload);
    assert_eq!(sim.nodes[1].endpoint.reassembly(), (0, 0));
}

/// Small messages published while a 16 MiB reliable message is in flight, on another topic,
/// keep arriving: each is delivered long before the large one completes, within a few link
/// latencies of being published.
#[test]
fn small_messages_keep_arriving_while_a_large_one_is_in_flight() {
    const SMALL: TopicId = TopicId::from_name("test/small");
    let link = LinkConfig {
        latency: Duration::from_micros(200),
        ..LinkConfig::default()
    };
    let mut sim = pair(&Security::Insecure, 16_384, link);
    sim.nodes[1].endpoint.subscribe(SMALL);
    sim.drive_until(sim.now() + Duration::from_secs(2));
    let large = message(6, (16 << 20) - 64);
    let now = publish_large(&mut sim, &large);
    let mut published = Vec::new();
    while delivered(&sim.nodes[1]).is_empty() {
        let at = sim.now();
        assert!(at < now + Duration::from_secs(10), "the large one arrives");
        sim.nodes[0]
            .endpoint
            .publish(SMALL, 0, &(published.len() as u64).to_le_bytes())
            .expect("published");
        sim.nodes[0].settle(at);
        published.push(at);
        sim.drive_until(at + Duration::from_millis(1));
    }
    let done = sim.nodes[1]
        .delivered
        .iter()
        .find(|d| d.topic == TOPIC)
        .map(|d| d.received_at)
        .expect("delivered");
    let small: Vec<Instant> = sim.nodes[1]
        .delivered
        .iter()
        .filter(|d| d.topic == SMALL)
        .map(|d| d.received_at)
        .collect();
    assert!(
        published.len() > 10,
        "{} published during it",
        published.len()
    );
    // Every one published more than a millisecond before the large one completed got there
    // first, within a millisecond.
    let before: Vec<&Instant> = published
        .iter()
        .filter(|at| **at + Duration::from_millis(1) < done)
        .collect();
    assert!(
        small.len() >= before.len(),
        "{} of {}",
        small.len(),
        before.len()
    );
    for (sent, got) in before.iter().zip(&small) {
        assert!(*got < done, "ahead of the large one");
        assert!(
            got.saturating_duration_since(**sent) < Duration::from_millis(1),
            "{:?} late",
            got.saturating_duration_since(**sent)
        );
    }
}
