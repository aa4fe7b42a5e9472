//! The pub/sub scenarios of `pubsub_loopback.rs`, over the simulated network in virtual time:
//! deterministic, with a fixed seed.

#![allow(clippy::unwrap_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use bus_actors::transport::SimHub;
use bus_actors::{BusEvent, Topic};
use bus_core::sim::{LinkConfig, NodeId, Trace};
use integration::{
    BEACON_INTERVAL, Counter, await_event, await_subscribers, events, run_in_virtual_time,
    scenarios, sim_builders, subscribe,
};

const SEED: u64 = 0x5eed;

fn lan() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_micros(200),
        jitter: Duration::from_micros(100),
        ..LinkConfig::default()
    }
}

#[test]
fn three_peers_receive_every_message() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 3, lan());
        scenarios::three_peers_receive_every_message(&mut sim_builders(&hub, SEED), 10_000).await;
    });
}

#[test]
fn best_effort_messages_of_64_kib_arrive_whole() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lan());
        scenarios::large_best_effort_messages_arrive_whole(
            &mut sim_builders(&hub, SEED),
            16,
            64 << 10,
        )
        .await;
    });
}

#[test]
fn a_late_joiner_is_discovered_by_all_within_two_beacon_intervals() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 3, lan());
        scenarios::late_joiner_is_discovered_within_two_beacon_intervals(&mut sim_builders(
            &hub, SEED,
        ))
        .await;
    });
}

#[test]
fn a_peer_that_does_not_subscribe_never_delivers() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 4, lan());
        scenarios::a_peer_that_does_not_subscribe_never_delivers(&mut sim_builders(&hub, SEED))
            .await;
    });
}

#[test]
fn unsubscribing_stops_delivery_and_tells_peers() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lan());
        scenarios::unsubscribing_stops_delivery_and_tells_peers(&mut sim_builders(&hub, SEED))
            .await;
    });
}

#[test]
fn a_panicking_subscriber_does_not_stop_delivery_to_others() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lan());
        scenarios::a_panicking_subscriber_does_not_stop_delivery_to_others(&mut sim_builders(
            &hub, SEED,
        ))
        .await;
    });
}

#[test]
fn a_cut_off_peer_is_reported_unreachable_within_the_liveness_timeout() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lan());
        let mut make = sim_builders(&hub, SEED);
        let observer = make().start().await.unwrap();
        let victim = make().start().await.unwrap();
        let mut ev = events(&observer);
        await_event(
            &mut ev,
            Duration::from_secs(5),
            "the victim joining",
            |e| matches!(e, BusEvent::PeerJoined(p) if p.id == victim.local_id()),
        )
        .await;
        hub.with_network(|net| net.partition(&[NodeId(0)], &[NodeId(1)]));
        let cut_at = tokio::time::Instant::now();
        // Three intervals, each up to 10% late, and the last beacon's own lateness.
        let bound = BEACON_INTERVAL * 3 + BEACON_INTERVAL * 3 / 10 + BEACON_INTERVAL / 10;
        await_event(
            &mut ev,
            bound,
            "the victim reported unreachable",
            |e| matches!(e, BusEvent::PeerUnreachable(p) if *p == victim.local_id()),
        )
        .await;
        assert!(cut_at.elapsed() <= bound);
    });
}

/// Three peers on a lossy, duplicating, reordering network each publish 2000 messages; returns
/// how many each subscriber got from each publisher, and the network's trace.
fn lossy_run(seed: u64) -> (Vec<[u64; 3]>, Trace) {
    run_in_virtual_time(|| async move {
        let config = LinkConfig {
            loss: 0.1,
            duplicate: 0.05,
            reorder: 0.05,
            ..lan()
        };
        let hub = SimHub::new(seed, 3, config);
        let (_buses, mut rxs) =
            scenarios::three_peers_publish(&mut sim_builders(&hub, seed), 2000).await;
        // Let the simulation run to a horizon far past the last delivery.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut counts = Vec::new();
        for rx in &mut rxs {
            let mut per_publisher = [0u64; 3];
            while let Ok(event) = rx.try_recv() {
                per_publisher[event.message.publisher as usize] += 1;
            }
            counts.push(per_publisher);
        }
        (counts, hub.with_network(|net| net.trace().clone()))
    })
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let (counts, trace) = lossy_run(SEED);
    // Best effort on a lossy network: some messages are lost, and duplicates are delivered
    // as they come (at most once is the reliable mode's promise, not this one's).
    for (i, per_publisher) in counts.iter().enumerate() {
        assert_eq!(
            per_publisher[i], 2000,
            "local delivery is not over the network"
        );
        let remote: u64 = per_publisher.iter().sum::<u64>() - 2000;
        assert!(
            (3000..=4400).contains(&remote),
            "subscriber {i}: {per_publisher:?}"
        );
    }
    let (again, trace_again) = lossy_run(SEED);
    assert_eq!(counts, again);
    assert_eq!(trace, trace_again);
    let (_, other_trace) = lossy_run(SEED + 1);
    assert_ne!(trace, other_trace);
}

#[test]
fn a_peer_that_shuts_down_is_reported_left_at_once() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lan());
        scenarios::a_peer_that_shuts_down_is_reported_left_at_once(&mut sim_builders(&hub, SEED))
            .await;
    });
}

#[test]
fn a_schema_mismatch_is_reported_not_delivered() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lan());
        scenarios::a_schema_mismatch_is_reported_not_delivered(&mut sim_builders(&hub, SEED)).await;
    });
}

#[test]
fn events_carry_the_senders_timestamp_in_local_time() {
    run_in_virtual_time(|| async {
        // 1 ms each way: the sender's timestamp, in our clock, is 1 ms before arrival.
        let config = LinkConfig {
            latency: Duration::from_millis(1),
            ..LinkConfig::default()
        };
        let hub = SimHub::new(SEED, 2, config);
        let mut make = sim_builders(&hub, SEED);
        let receiver = make().start().await.unwrap();
        // Start the sender 777 ms (virtual) later: its clock's epoch differs by that much.
        tokio::time::sleep(Duration::from_millis(777)).await;
        let sender = make().start().await.unwrap();
        let mut rx = subscribe::<Counter>(&receiver).await;
        let mut ev = events(&sender);
        await_subscribers(&sender, &mut ev, Counter::ID, 1, Duration::from_secs(5)).await;
        // Until the receiver's peer actor has measured the clock offset (a ping after
        // discovery), events come without a send time; publish until one has it.
        let mut event = None;
        for seq in 0..100 {
            sender.publish(Counter { publisher: 1, seq }).await.unwrap();
            let got = integration::receive(&mut rx, 1, Duration::from_secs(1))
                .await
                .remove(0);
            if got.sent_at.is_some() {
                event = Some(got);
                break;
            }
        }
        let event = event.expect("a send time within 100 messages");
        let offset = receiver.peers()[0].clock_offset_us.unwrap();
        assert!(
            (-778_000..=-776_000).contains(&offset),
            "offset {offset} µs"
        );
        let sent_at = event.sent_at.expect("the offset is known");
        let transit = event.received_at - sent_at;
        assert!(
            (Duration::from_micros(900)..=Duration::from_micros(1100)).contains(&transit),
            "transit {transit:?}"
        );
    });
}
