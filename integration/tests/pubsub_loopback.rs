//! Best-effort pub/sub between peers on real loopback sockets. The scenarios are shared with
//! `pubsub_sim.rs`, which runs them over the simulated network.

use bus_actors::DropReason;
use integration::{builder, lossy, scenarios, test_group};

#[actix::test]
async fn three_peers_in_one_process_receive_every_message() {
    let group = test_group();
    let buses = scenarios::three_peers_receive_every_message(&mut || builder(group), 10_000).await;
    for bus in buses {
        bus.shutdown().await.expect("shutdown");
    }
}

#[actix::test]
async fn busy_polling_peers_receive_every_message() {
    // The receive loop's polling path, not only its sleeping one.
    let group = test_group();
    let mut make = || builder(group).busy_poll(bus_actors::Duration::from_micros(500));
    let buses = scenarios::three_peers_receive_every_message(&mut make, 2_000).await;
    for bus in buses {
        bus.shutdown().await.expect("shutdown");
    }
}

#[actix::test]
async fn best_effort_messages_of_64_kib_arrive_whole_at_the_loopback_datagram_size() {
    let group = test_group();
    scenarios::large_best_effort_messages_arrive_whole(&mut || builder(group), 16, 64 << 10).await;
}

#[actix::test]
async fn best_effort_messages_of_64_kib_arrive_whole_in_1200_byte_datagrams() {
    let group = test_group();
    let mut make = || builder(group).max_datagram(1200);
    scenarios::large_best_effort_messages_arrive_whole(&mut make, 16, 64 << 10).await;
}

#[actix::test]
async fn reliable_messages_of_1_mib_arrive_once_at_both_datagram_sizes() {
    let group = test_group();
    let sizes = [1 << 20, 100_000, 1 << 20];
    scenarios::large_reliable_messages_arrive_once(&mut || builder(group), &sizes).await;
    let mut make = || builder(group).max_datagram(1200);
    scenarios::large_reliable_messages_arrive_once(&mut make, &sizes).await;
}

/// Through a transport that loses 10%, duplicates 5% and reorders 5% of what each peer sends:
/// a 1 MiB and a (nearly) 16 MiB reliable message arrive intact, each once, in datagrams of
/// the loopback size and of 1200 bytes.
#[actix::test]
async fn reliable_messages_up_to_16_mib_arrive_once_at_10_percent_loss() {
    let group = test_group();
    let sizes = [1 << 20, (16 << 20) - 1024];
    let faults = |seed| bus_actors::transport::Faults {
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.05,
        seed,
        ..bus_actors::transport::Faults::NONE
    };
    let mut seed = 0;
    let mut make = || {
        seed += 1;
        lossy(builder(group), seed).inject_faults(faults(seed))
    };
    scenarios::large_reliable_messages_arrive_once(&mut make, &sizes).await;
    let mut make = || {
        seed += 1;
        lossy(builder(group), seed)
            .inject_faults(faults(seed))
            .max_datagram(1200)
    };
    scenarios::large_reliable_messages_arrive_once(&mut make, &sizes).await;
}

/// The receive buffer the kernel granted the sockets is in the metrics: what was asked when
/// the kernel allows that much, less (never more) when it caps it.
#[actix::test]
async fn the_socket_receive_buffer_granted_is_reported() {
    let group = test_group();
    let asked = 1 << 20;
    let bus = builder(group)
        .buffer_sizes(asked, asked)
        .start()
        .await
        .expect("start");
    let granted = bus.metrics().socket_recv_buffer;
    let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match cap {
        Some(cap) if cap >= asked as u64 => assert_eq!(granted, asked as u64),
        _ => assert!(granted > 0 && granted <= asked as u64, "{granted}"),
    }
    bus.shutdown().await.expect("shutdown");
}

/// The same recipient subscribing twice to a topic is refused (it would get everything twice);
/// another topic, or the same one once the first subscription ended, is fine.
#[actix::test]
async fn a_recipient_subscribes_once_to_a_topic() {
    use actix::Actor;
    use integration::{Counter, Forward, Large};
    let bus = builder(test_group()).start().await.expect("start");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let recipient = Forward::new(tx)
        .start()
        .recipient::<bus_actors::Event<Counter>>();
    let first = bus
        .subscribe::<Counter>(recipient.clone())
        .await
        .expect("first");
    match bus.subscribe::<Counter>(recipient.clone()).await {
        Err(bus_actors::Error::AlreadySubscribed { topic }) => assert_eq!(topic, "test/counter"),
        other => panic!("expected AlreadySubscribed, got {other:?}"),
    }
    let (large_tx, _large_rx) = tokio::sync::mpsc::unbounded_channel();
    let other = Forward::new(large_tx)
        .start()
        .recipient::<bus_actors::Event<Large>>();
    bus.subscribe::<Large>(other).await.expect("another topic");
    bus.publish(Counter {
        publisher: 1,
        seq: 1,
    })
    .await
    .expect("publish");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
    assert_eq!(got.ok().flatten().map(|e| e.message.seq), Some(1));
    first.unsubscribe();
    let again = bus.subscribe::<Counter>(recipient).await.expect("again");
    bus.publish(Counter {
        publisher: 1,
        seq: 2,
    })
    .await
    .expect("publish");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
    assert_eq!(got.ok().flatten().map(|e| e.message.seq), Some(2));
    assert!(rx.try_recv().is_err(), "once");
    assert!(again.is_active());
    bus.shutdown().await.expect("shutdown");
}

/// A bus shut down knows no peers any more and refuses new work, saying so.
#[actix::test]
async fn after_shutdown_a_bus_knows_no_peers_and_refuses_work() {
    use integration::Counter;
    let group = test_group();
    let (a, b) = (
        builder(group).start().await.expect("start"),
        builder(group).start().await.expect("start"),
    );
    let mut a_events = integration::events(&a);
    integration::await_event(
        &mut a_events,
        std::time::Duration::from_secs(5),
        "b joined",
        |e| matches!(e, bus_actors::BusEvent::PeerJoined(p) if p.id == b.local_id()),
    )
    .await;
    assert_eq!(a.peer_count(), 1);
    a.shutdown().await.expect("shutdown");
    assert!(a.peers().is_empty());
    assert_eq!(a.peer_count(), 0);
    let refused = a
        .publish(Counter {
            publisher: 1,
            seq: 1,
        })
        .await;
    assert!(
        matches!(refused, Err(bus_actors::Error::ShutDown)),
        "{refused:?}"
    );
    assert!(matches!(
        a.shutdown().await,
        Err(bus_actors::Error::ShutDown)
    ));
    b.shutdown().await.expect("shutdown");
}

#[actix::test]
async fn a_late_joiner_is_discovered_by_all_within_two_beacon_intervals() {
    let group = test_group();
    scenarios::late_joiner_is_discovered_within_two_beacon_intervals(&mut || builder(group)).await;
}

#[actix::test]
async fn a_peer_that_does_not_subscribe_never_delivers() {
    let group = test_group();
    scenarios::a_peer_that_does_not_subscribe_never_delivers(&mut || builder(group)).await;
}

#[actix::test]
async fn unsubscribing_stops_delivery_and_tells_peers() {
    let group = test_group();
    scenarios::unsubscribing_stops_delivery_and_tells_peers(&mut || builder(group)).await;
}

#[actix::test]
async fn a_panicking_subscriber_does_not_stop_delivery_to_others() {
    let group = test_group();
    scenarios::a_panicking_subscriber_does_not_stop_delivery_to_others(&mut || builder(group))
        .await;
}

#[actix::test]
async fn a_peer_that_shuts_down_is_reported_left_at_once() {
    let group = test_group();
    scenarios::a_peer_that_shuts_down_is_reported_left_at_once(&mut || builder(group)).await;
}

#[actix::test]
async fn a_schema_mismatch_is_reported_not_delivered() {
    let group = test_group();
    scenarios::a_schema_mismatch_is_reported_not_delivered(&mut || builder(group)).await;
}

#[actix::test]
async fn malformed_datagrams_are_dropped_and_counted() {
    let group = test_group();
    let mut make = || builder(group);
    let buses = scenarios::three_peers_receive_every_message(&mut make, 10).await;
    let target = buses[0].local_addr();
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let before = buses[0].metrics();
    let garbage: [&[u8]; 5] = [
        b"",
        b"\x07 not a packet type",
        b"\x06\x00\x00\x00 truncated plain header",
        &[
            0x06, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1,
        ],
        &[0x01; 116],
    ];
    for datagram in garbage {
        attacker.send_to(datagram, target).expect("send");
    }
    // The bus keeps working: another round of messages still arrives everywhere.
    let mut rx = integration::subscribe::<integration::Other>(&buses[0]).await;
    let mut ev = integration::events(&buses[1]);
    integration::await_subscribers(
        &buses[1],
        &mut ev,
        <integration::Other as bus_actors::Topic>::ID,
        1,
        std::time::Duration::from_secs(5),
    )
    .await;
    buses[1]
        .publish(integration::Other { value: 7 })
        .await
        .expect("publish");
    integration::receive(&mut rx, 1, std::time::Duration::from_secs(5)).await;
    let after = buses[0].metrics();
    // Five datagrams in, five drops: empty and truncated, unknown type, reserved flag, and a
    // handshake message this plaintext bus does not accept.
    assert_eq!(after.total_drops() - before.total_drops(), 5, "{after:?}");
    assert_eq!(after.drops(DropReason::UnsupportedPacket), 1);
    assert_eq!(after.drops(DropReason::ReservedBits), 1);
    assert_eq!(after.drops(DropReason::UnknownPacketType), 1);
}

/// An attacker on the wire sends an insecure bus forged fragments: a claimed length over the
/// limit, a piece past the end, a total changing mid-message, a partial overlap, and a flood of
/// frames each claiming the largest size. The bus reserves no more than its bounds (two of the
/// largest messages per sender, four in all: a sender out of room evicts its own oldest, and
/// once all the room is taken a sender holding none is refused), counts every refusal, and
/// frees what it held once the incomplete frames expire.
#[actix::test]
async fn forged_fragments_hold_nothing_beyond_the_bounds_and_expire() {
    use bus_core::wire::Frame;
    use integration::forge::{fake_peer, plain_packet};

    const LIMIT: usize = 1 << 20;
    let bus = builder(test_group())
        .max_message_size(LIMIT)
        .start()
        .await
        .expect("start");
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let piece = [0x5a; 100];
    let fragment = |id: u64, total: usize, offset: u64, data: &'static [u8]| Frame::Fragment {
        message_id: id,
        total_len: total as u64,
        offset,
        reliable: true,
        report: true,
        data,
    };
    let piece: &'static [u8] = Box::leak(Box::new(piece));
    let mallory = fake_peer(1);
    let mut packets = vec![
        plain_packet(mallory, 0, &[fragment(1, LIMIT + 1, 0, piece)]),
        plain_packet(mallory, 1, &[fragment(2, 1000, 0, piece)]),
        plain_packet(mallory, 2, &[fragment(2, 2000, 100, piece)]),
        plain_packet(mallory, 3, &[fragment(2, 1000, 50, piece)]),
    ];
    // Past the end: 100 bytes at 950 of 1000, written out by hand (the codec would not emit
    // it, and refuses it as malformed).
    let mut past_end = plain_packet(mallory, 4, &[]);
    past_end.extend_from_slice(&[0x0e, 0x02, 0xe8, 0x07, 0xb6, 0x07, 0x03, 0x64]);
    past_end.extend_from_slice(piece);
    packets.push(past_end);
    for sender in 1..=8 {
        for id in 100..104 {
            let packet = plain_packet(fake_peer(sender), id, &[fragment(id, LIMIT, 0, piece)]);
            packets.push(packet);
        }
    }
    let before = bus.metrics().datagrams_in;
    for packet in &packets {
        attacker.send_to(packet, bus.local_addr()).expect("send");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bus.metrics().datagrams_in < before + packets.len() as u64 {
        assert!(std::time::Instant::now() < deadline, "not all taken in");
        tokio::task::yield_now().await;
    }
    let held = bus.metrics();
    assert!(
        held.reassembly_bytes <= 4 * LIMIT as u64,
        "{} bytes reserved",
        held.reassembly_bytes
    );
    assert_eq!(
        held.reassembly_entries, 4,
        "two of the largest from each of the first two senders, each of whom evicted its own oldest"
    );
    assert!(held.drops(DropReason::FragmentInvalid) >= 3, "{held:?}");
    assert!(held.drops(DropReason::Malformed) >= 1, "{held:?}");
    assert!(held.drops(DropReason::ReassemblyFull) >= 28, "{held:?}");
    let expiry = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bus.metrics().reassembly_entries > 0 {
        assert!(std::time::Instant::now() < expiry, "never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let freed = bus.metrics();
    assert_eq!((freed.reassembly_entries, freed.reassembly_bytes), (0, 0));
    assert!(freed.drops(DropReason::ReassemblyExpired) >= 4, "{freed:?}");
    bus.shutdown().await.expect("shutdown");
}
