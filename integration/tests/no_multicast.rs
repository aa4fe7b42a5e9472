//! Peers on real loopback sockets with no multicast at all (`multicast(false)`): discovery
//! through one seed, and fan-out by unicast.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use bus_actors::Bus;
use integration::{Counter, Reliable, builder, events, receive, subscribe, test_group};

/// A hub with no seeds and three leaves seeded with the hub only, sending nothing to the group.
async fn star() -> (Bus, Vec<Bus>) {
    let group = test_group();
    let hub = builder(group).multicast(false).start().await.expect("hub");
    let mut leaves = Vec::new();
    for _ in 0..3 {
        let leaf = builder(group)
            .multicast(false)
            .seeds([hub.local_addr()])
            .start()
            .await
            .expect("leaf");
        leaves.push(leaf);
    }
    (hub, leaves)
}

/// Waits, on `bus`'s events, until it knows `count` peers.
async fn await_peers(bus: &Bus, count: usize) {
    let mut ev = events(bus);
    let wait = async {
        while bus.peers().len() < count {
            if ev.recv().await.is_none() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("{} of {count} peers known", bus.peers().len()));
}

/// Field report: seeds did not introduce the rest of the cluster, and best effort to two
/// subscribers went to the group and was lost. Both on loopback, with real sockets.
#[actix::test]
async fn one_seed_introduces_the_cluster_and_fan_out_arrives_by_unicast() {
    let (hub, leaves) = star().await;
    for bus in std::iter::once(&hub).chain(&leaves) {
        await_peers(bus, 3).await;
    }
    let mut got = Vec::new();
    for leaf in &leaves[1..] {
        got.push(subscribe::<Counter>(leaf).await);
    }
    let publisher = &leaves[0];
    publisher
        .wait_for_subscribers::<Counter>(2, Duration::from_secs(5))
        .await
        .expect("both subscribers known");
    for seq in 0..500 {
        publisher
            .publish(Counter { publisher: 0, seq })
            .await
            .expect("publish");
    }
    for rx in &mut got {
        let events = receive(rx, 500, Duration::from_secs(5)).await;
        assert!(events.iter().map(|e| e.message.seq).eq(0..500));
    }
    assert_eq!(publisher.metrics().fanout_unicast, 1000);

    // Reliable fan-out too, first copies included.
    let mut reliable = Vec::new();
    for leaf in &leaves[1..] {
        reliable.push(subscribe::<Reliable>(leaf).await);
    }
    publisher
        .wait_for_subscribers::<Reliable>(2, Duration::from_secs(5))
        .await
        .expect("both subscribers known");
    for seq in 0..100 {
        let report = publisher
            .publish_reliable(Reliable { seq })
            .await
            .expect("delivered");
        assert_eq!(report.acked.len(), 2);
    }
    for rx in &mut reliable {
        receive(rx, 100, Duration::from_secs(5)).await;
    }
    for bus in std::iter::once(&hub).chain(&leaves) {
        bus.shutdown().await.expect("shutdown");
    }
}
