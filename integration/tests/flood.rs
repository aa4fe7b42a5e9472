//! An insecure peer in a process of its own, flooded over loopback with raw datagrams: 20,000
//! made-up peers, reliable frames from 4,096 made-up senders stretching their dedup windows as
//! wide as a window may go, in two lives each, and beacons that point its replies at a victim.
//! Its memory stays under a stated bound, the victim is sent at most three times what it sent,
//! and the peer it already knew still gets its reliable messages through.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use bus_actors::{Bus, Topic};
use bus_core::wire::Frame;
use integration::child::Reporter;
use integration::forge::{beacon, fake_peer, plain_packet};
use integration::soak::rss_bytes_of;
use integration::{Reliable, builder, free_port, test_group};

const FAKE_PEERS: u64 = 20_000;
const FAKE_SENDERS: u64 = 4_096;
/// What the flooded process may grow by: its table of 4,096 peers (with a peer actor each), the
/// dedup bitmaps of senders it has not confirmed (half of `max_dedup_bytes`: 8 MiB), and the
/// address budgets. About 15 MB measured; before the bounds, 20k fake peers alone took 316 MB.
const GROWTH_BOUND: u64 = 32 << 20;

/// The flooded peer's counter `name`, as it reports it.
async fn stat(peer: &mut Reporter, name: &str) -> u64 {
    let line = peer.ask("stats", "stats", Duration::from_secs(10)).await;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// Sends `packets` to the flooded peer, a chunk at a time, each once the peer has taken in the
/// one before (its datagram count says so): the point is what it does with them, not what the
/// kernel drops when its socket buffer overflows.
async fn flood(peer: &mut Reporter, from: &UdpSocket, to: SocketAddr, packets: Vec<Vec<u8>>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for chunk in packets.chunks(256) {
        let taken = stat(peer, "datagrams_in").await + chunk.len() as u64;
        for packet in chunk {
            from.send_to(packet, to).expect("send");
        }
        while stat(peer, "datagrams_in").await < taken {
            assert!(
                std::time::Instant::now() < deadline,
                "the flood was not taken in"
            );
        }
    }
}

async fn publish(bus: &Bus, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        let report = bus
            .publish_reliable(Reliable { seq })
            .await
            .expect("delivered");
        assert_eq!(report.acked.len(), 1, "{report:?}");
    }
}

#[actix_rt::test]
async fn an_insecure_peer_under_a_flood_stays_bounded_and_amplifies_nothing() {
    let group = test_group();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-peer"));
    cmd.args(["--group", &group.to_string(), "--reliable-subscriber"])
        .args(["--peer-byte", "7", "--port", &port.to_string()]);
    let mut flooded = Reporter::spawn(cmd).await;
    let pid = flooded.child.0.id().to_string();
    let bus = builder(group).start().await.expect("publisher");
    bus.wait_for_subscribers::<Reliable>(1, Duration::from_secs(10))
        .await
        .expect("the flooded peer subscribes");
    publish(&bus, 0..10).await;
    let rss_before = rss_bytes_of(&pid);

    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let attacker = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("attacker socket");
    let victim = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("victim socket");
    victim.set_nonblocking(true).expect("nonblocking");
    let victim_port = victim.local_addr().expect("victim address").port();
    // The victim says one thing itself: what it may be sent is three times that.
    let hello = plain_packet(
        fake_peer(u64::MAX - 1),
        0,
        &[Frame::Ping {
            ping_id: 1,
            sent_at_us: 0,
        }],
    );
    victim.send_to(&hello, target).expect("send");
    let topics = vec![Reliable::ID];
    // Every made-up peer subscribes, asks for a reply, lives a minute, and is "at" the victim.
    let fake_peers = (0..FAKE_PEERS).map(|i| {
        let peer = fake_peer(i);
        let beacon = beacon(peer, i, victim_port, u32::MAX, topics.clone(), true);
        plain_packet(peer, i, &[beacon])
    });
    flood(&mut flooded, &attacker, target, fake_peers.collect()).await;
    let span = bus_core::reliability::MAX_WINDOW_SPAN - 1;
    let fake_senders = (0..FAKE_SENDERS).flat_map(|i| {
        let sender = fake_peer(1_000_000 + i);
        [(0, 0), (span, span), ((1 << 40) + span, span)]
            .into_iter()
            .map(move |(message_id, window)| {
                let frame = Frame::ReliablePublish {
                    topic: Reliable::ID,
                    // Of another schema: the subscriber delivers none of it.
                    fingerprint: !Reliable::FINGERPRINT,
                    message_id,
                    window,
                    payloads: bus_core::wire::Payloads::encoded(1, b"\x01x"),
                };
                plain_packet(sender, message_id, &[frame])
            })
    });
    flood(&mut flooded, &attacker, target, fake_senders.collect()).await;
    let refused = stat(&mut flooded, "table_full").await;
    assert!(refused >= FAKE_PEERS - 4096, "{refused} beacons refused");
    assert!(stat(&mut flooded, "dedup_full").await > 0);
    assert!(stat(&mut flooded, "amplification_limit").await > 0);

    // The peer it knew before the flood is served as before.
    publish(&bus, 10..20).await;
    let mut got = flooded.reported("got", 20, Duration::from_secs(10)).await;
    got.sort_unstable();
    assert!(got.iter().copied().eq(0..20), "{got:?}");
    let grown = rss_bytes_of(&pid).saturating_sub(rss_before);
    eprintln!("flooded peer grew by {} KB", grown / 1024);
    assert!(
        grown <= GROWTH_BOUND,
        "grew by {grown} bytes, over {GROWTH_BOUND}"
    );

    let mut drawn = 0;
    let mut buf = [0u8; 65_536];
    while let Ok(n) = victim.recv(&mut buf) {
        drawn += n;
    }
    assert!(
        drawn <= 3 * hello.len(),
        "the victim was sent {drawn} bytes for {} it sent",
        hello.len()
    );
}
