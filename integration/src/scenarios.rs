//! Pub/sub scenarios written once and run twice: over real loopback sockets
//! (`tests/pubsub_loopback.rs`) and over the simulated network in virtual time
//! (`tests/pubsub_sim.rs`). Each takes a function that returns the builder for the next peer.

use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, BusBuilder, BusEvent, Event, FrameType, Topic};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    BEACON_INTERVAL, Counter, Forward, Large, Other, Reliable, await_event, await_group_reaches,
    await_subscribers, events, pattern, receive, subscribe,
};

async fn start(make: &mut impl FnMut() -> BusBuilder) -> Bus {
    make().start().await.expect("bus start")
}

/// Starts three peers, subscribes each to [`Counter`], waits until each knows the other two
/// subscribe, then has each publish `n` counters. Returns the buses and their subscriptions.
pub async fn three_peers_publish(
    make: &mut impl FnMut() -> BusBuilder,
    n: u64,
) -> (Vec<Bus>, Vec<UnboundedReceiver<Event<Counter>>>) {
    let buses = vec![start(make).await, start(make).await, start(make).await];
    let mut rxs = Vec::new();
    for bus in &buses {
        rxs.push(subscribe::<Counter>(bus).await);
    }
    for bus in &buses {
        let mut ev = events(bus);
        await_subscribers(bus, &mut ev, Counter::ID, 2, Duration::from_secs(10)).await;
    }
    for (i, bus) in buses.iter().enumerate() {
        for seq in 0..n {
            let publisher = u32::try_from(i).expect("three publishers");
            bus.publish(Counter { publisher, seq })
                .await
                .expect("publish");
        }
    }
    (buses, rxs)
}

/// Three peers in one process, each subscribed, each publishing `n` messages: every subscriber
/// receives all `3n`, and nothing is dropped. Returns the buses, still running.
pub async fn three_peers_receive_every_message(
    make: &mut impl FnMut() -> BusBuilder,
    n: u64,
) -> Vec<Bus> {
    let (buses, mut rxs) = three_peers_publish(make, n).await;
    for (i, rx) in rxs.iter_mut().enumerate() {
        let got = receive(
            rx,
            3 * usize::try_from(n).expect("fits"),
            Duration::from_secs(20),
        )
        .await;
        let mut per_publisher = [0u64; 3];
        for event in &got {
            per_publisher[event.message.publisher as usize] += 1;
        }
        assert_eq!(per_publisher, [n; 3], "subscriber {i}");
    }
    for bus in &buses {
        crate::assert_only_startup_drops(bus);
    }
    buses
}

/// Two peers know each other; a third starts and, within two beacon intervals, both see it
/// join and it sees both.
pub async fn late_joiner_is_discovered_within_two_beacon_intervals(
    make: &mut impl FnMut() -> BusBuilder,
) {
    let a = start(make).await;
    let b = start(make).await;
    let mut a_events = events(&a);
    let mut b_events = events(&b);
    await_event(
        &mut a_events,
        Duration::from_secs(5),
        "a sees b",
        |e| matches!(e, BusEvent::PeerJoined(p) if p.id == b.local_id()),
    )
    .await;

    let started = tokio::time::Instant::now();
    let c = start(make).await;
    let mut c_events = events(&c);
    let within = BEACON_INTERVAL * 2;
    for (events, who) in [(&mut a_events, "a"), (&mut b_events, "b")] {
        await_event(
            events,
            within,
            &format!("{who} sees c join"),
            |e| matches!(e, BusEvent::PeerJoined(p) if p.id == c.local_id()),
        )
        .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = await_event(&mut c_events, within, "c sees a and b", |e| {
            matches!(e, BusEvent::PeerJoined(_))
        })
        .await;
        if let BusEvent::PeerJoined(p) = event {
            seen.push(p.id);
        }
    }
    seen.sort();
    let mut expected = vec![a.local_id(), b.local_id()];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(started.elapsed() <= within, "took {:?}", started.elapsed());
}

/// A peer subscribed only to another topic receives the multicast of a topic it does not
/// subscribe to, and delivers none of it.
pub async fn a_peer_that_does_not_subscribe_never_delivers(make: &mut impl FnMut() -> BusBuilder) {
    let publisher = start(make).await;
    let subscribers = [start(make).await, start(make).await];
    let bystander = start(make).await;
    let mut counters = Vec::new();
    for bus in &subscribers {
        counters.push(subscribe::<Counter>(bus).await);
    }
    let (tx, mut other) = tokio::sync::mpsc::unbounded_channel();
    let other_subscription = bystander
        .subscribe::<Other>(Forward::new(tx).start().recipient())
        .await
        .expect("subscribe");
    let mut ev = events(&publisher);
    await_subscribers(&publisher, &mut ev, Counter::ID, 2, Duration::from_secs(5)).await;
    await_subscribers(&publisher, &mut ev, Other::ID, 1, Duration::from_secs(5)).await;
    // Two subscribers that hear the publisher's multicast: its messages go to the group, so
    // the bystander receives them too...
    await_group_reaches(&publisher, &mut ev, Counter::ID, 2, Duration::from_secs(5)).await;
    for seq in 0..100 {
        publisher
            .publish(Counter { publisher: 0, seq })
            .await
            .expect("publish");
    }
    for rx in &mut counters {
        receive(rx, 100, Duration::from_secs(5)).await;
    }
    // ...and delivered none of them: its only subscription, to another topic, gets exactly the
    // one message published there afterwards, which comes after the counters on the wire.
    publisher
        .publish(Other { value: 1 })
        .await
        .expect("publish");
    let got = receive(&mut other, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].message, Other { value: 1 });
    assert!(bystander.metrics().frames_in(FrameType::Publish) >= 101);
    assert_eq!(other_subscription.stats().delivered, 1);
    assert_eq!(other_subscription.stats().undecodable, 0);
}

/// Two subscriptions to one topic on a peer. Unsubscribing one stops its deliveries at once
/// (the other still gets everything) and frees it: its actor stops and lets go of the
/// subscriber's address. Unsubscribing the last one takes the topic out of the peer's beacons,
/// so the publisher stops sending it there.
pub async fn unsubscribing_stops_delivery_and_tells_peers(make: &mut impl FnMut() -> BusBuilder) {
    let publisher = start(make).await;
    let subscriber = start(make).await;
    let (first_tx, mut first) = tokio::sync::mpsc::unbounded_channel();
    let (second_tx, mut second) = tokio::sync::mpsc::unbounded_channel();
    let first_subscription = subscriber
        .subscribe::<Counter>(Forward::new(first_tx).start().recipient())
        .await
        .expect("subscribe");
    let second_subscription = subscriber
        .subscribe::<Counter>(Forward::new(second_tx).start().recipient())
        .await
        .expect("subscribe");
    let mut ev = events(&publisher);
    await_subscribers(&publisher, &mut ev, Counter::ID, 1, Duration::from_secs(5)).await;
    let mut seq = 0;
    let mut publish = async |n: u64| {
        for _ in 0..n {
            publisher
                .publish(Counter { publisher: 0, seq })
                .await
                .expect("publish");
            seq += 1;
        }
    };
    publish(10).await;
    receive(&mut first, 10, Duration::from_secs(5)).await;
    receive(&mut second, 10, Duration::from_secs(5)).await;

    first_subscription.unsubscribe();
    publish(10).await;
    let got = receive(&mut second, 10, Duration::from_secs(5)).await;
    assert_eq!(got.last().map(|e| e.message.seq), Some(19));
    // The first subscriber's actor had its only address in the subscription: the channel
    // closes when the subscription actor has stopped and dropped it, with nothing more sent.
    let rest = tokio::time::timeout(Duration::from_secs(5), first.recv())
        .await
        .expect("the unsubscribed subscription was not freed");
    assert!(rest.is_none(), "delivered after unsubscribing: {rest:?}");
    assert!(second_subscription.is_active());

    second_subscription.unsubscribe();
    let subscriber_id = subscriber.local_id();
    await_event(
        &mut ev,
        Duration::from_secs(5),
        "the topic withdrawn",
        |e| {
            matches!(e, BusEvent::PeerUpdated(p)
            if p.id == subscriber_id && !p.topics.contains(&Counter::ID))
        },
    )
    .await;
    let sent = publisher.metrics().frames_out(FrameType::Publish);
    publish(10).await;
    assert_eq!(
        publisher.metrics().frames_out(FrameType::Publish),
        sent,
        "published to a peer that no longer subscribes"
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), second.recv())
            .await
            .expect("the last subscription was not freed"),
        None
    );
}

/// A subscriber that panics on its first message.
#[derive(Debug)]
pub struct Fragile;

impl Actor for Fragile {
    type Context = Context<Self>;
}

impl Handler<Event<Counter>> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Event<Counter>, _: &mut Context<Self>) {
        panic!("subscriber failure, on purpose");
    }
}

/// One subscriber actor panics; another on the same bus keeps receiving everything, and the
/// panicked one's subscription ends.
pub async fn a_panicking_subscriber_does_not_stop_delivery_to_others(
    make: &mut impl FnMut() -> BusBuilder,
) {
    let a = start(make).await;
    let b = start(make).await;
    let fragile = b
        .subscribe::<Counter>(Fragile.start().recipient())
        .await
        .expect("subscribe");
    let mut healthy = subscribe::<Counter>(&b).await;
    let mut ev = events(&a);
    await_subscribers(&a, &mut ev, Counter::ID, 1, Duration::from_secs(5)).await;
    for seq in 0..1000 {
        a.publish(Counter { publisher: 0, seq })
            .await
            .expect("publish");
    }
    let got = receive(&mut healthy, 1000, Duration::from_secs(5)).await;
    // Best effort keeps no order: compare as sets.
    let mut seqs: Vec<u64> = got.iter().map(|e| e.message.seq).collect();
    seqs.sort_unstable();
    assert!(seqs.iter().copied().eq(0..1000));
    let mut seq = 1000;
    let wait = async {
        while fragile.is_active() {
            a.publish(Counter { publisher: 0, seq })
                .await
                .expect("publish");
            receive(&mut healthy, 1, Duration::from_secs(5)).await;
            seq += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("the fragile subscription outlived its actor");
    assert!(fragile.stats().delivered >= 1);
}

/// A peer that shuts down is reported as left at once, not after the liveness timeout.
pub async fn a_peer_that_shuts_down_is_reported_left_at_once(
    make: &mut impl FnMut() -> BusBuilder,
) {
    let a = start(make).await;
    let b = start(make).await;
    let mut ev = events(&a);
    await_event(
        &mut ev,
        Duration::from_secs(5),
        "b joining",
        |e| matches!(e, BusEvent::PeerJoined(p) if p.id == b.local_id()),
    )
    .await;
    let b_id = b.local_id();
    b.shutdown().await.expect("shutdown");
    assert!(
        b.publish(Other { value: 0 }).await.is_err(),
        "a shut-down bus refuses work"
    );
    await_event(
        &mut ev,
        BEACON_INTERVAL / 2,
        "b leaving",
        |e| matches!(e, BusEvent::PeerLeft(p) if *p == b_id),
    )
    .await;
}

/// The same topic name with another definition of its type, as from a peer built from other
/// sources.
pub mod other_version {
    use bus_actors::Topic;
    use serde::{Deserialize, Serialize};

    /// `test/counter` with a field more.
    #[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
    #[topic(name = "test/counter")]
    pub struct Counter {
        /// As in version 1.
        pub publisher: u32,
        /// As in version 1.
        pub seq: u64,
        /// Added.
        pub urgent: bool,
    }
}

/// Messages from a peer whose type for the topic has another schema are not delivered; they
/// are counted and reported as schema mismatches naming both fingerprints.
pub async fn a_schema_mismatch_is_reported_not_delivered(make: &mut impl FnMut() -> BusBuilder) {
    let old = start(make).await;
    let new = start(make).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event<Counter>>();
    let subscription = old
        .subscribe::<Counter>(Forward::new(tx).start().recipient())
        .await
        .expect("subscribe");
    let mut old_events = events(&old);
    let mut new_events = events(&new);
    await_subscribers(
        &new,
        &mut new_events,
        Counter::ID,
        1,
        Duration::from_secs(5),
    )
    .await;
    new.publish(other_version::Counter {
        publisher: 1,
        seq: 1,
        urgent: true,
    })
    .await
    .expect("publish");
    let event = await_event(&mut old_events, Duration::from_secs(5), "a mismatch", |e| {
        matches!(e, BusEvent::SchemaMismatch { .. })
    })
    .await;
    assert_eq!(
        event,
        BusEvent::SchemaMismatch {
            topic: "test/counter",
            from: new.local_id(),
            local: Counter::FINGERPRINT,
            remote: other_version::Counter::FINGERPRINT,
        }
    );
    assert_eq!(subscription.stats().schema_mismatched, 1);
    assert_eq!(subscription.stats().delivered, 0);
    assert!(rx.try_recv().is_err());
}

/// Publishes `count` reliable messages with up to `concurrency` sends outstanding at once, and
/// returns every send's result, in completion order. Calls `each` after every completion.
pub async fn publish_reliably(
    bus: &Bus,
    count: u64,
    concurrency: usize,
    mut each: impl FnMut(&Bus),
) -> Vec<Result<bus_actors::DeliveryReport, bus_actors::Error>> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut in_flight = FuturesUnordered::new();
    let mut results = Vec::new();
    let mut next = 0;
    while next < count || !in_flight.is_empty() {
        while next < count && in_flight.len() < concurrency {
            in_flight.push(bus.publish_reliable(Reliable { seq: next }));
            next += 1;
        }
        if let Some(result) = in_flight.next().await {
            results.push(result);
            each(bus);
        }
    }
    results
}

/// One publisher and three subscribers; the publisher sends `n` reliable messages. Every send
/// resolves complete, and every subscriber gets every message exactly once.
pub async fn reliable_messages_arrive_exactly_once(make: &mut impl FnMut() -> BusBuilder, n: u64) {
    let publisher = start(make).await;
    let subscribers = [start(make).await, start(make).await, start(make).await];
    let mut rxs = Vec::new();
    for bus in &subscribers {
        rxs.push(subscribe::<Reliable>(bus).await);
    }
    let mut ev = events(&publisher);
    await_subscribers(
        &publisher,
        &mut ev,
        Reliable::ID,
        3,
        Duration::from_secs(10),
    )
    .await;
    let results = publish_reliably(&publisher, n, 2048, |_| {}).await;
    assert_eq!(results.len() as u64, n);
    for result in &results {
        let Ok(report) = result else {
            let all: Vec<_> = std::iter::once(&publisher)
                .chain(&subscribers)
                .map(|b| (b.local_id(), b.metrics()))
                .collect();
            panic!("a send failed: {result:?}\nmetrics: {all:#?}");
        };
        assert_eq!(report.acked.len(), 3);
    }
    for (bus, rx) in subscribers.iter().zip(&mut rxs) {
        let got = receive(
            rx,
            usize::try_from(n).expect("fits"),
            Duration::from_secs(10),
        )
        .await;
        let mut seqs: Vec<u64> = got.iter().map(|e| e.message.seq).collect();
        seqs.sort_unstable();
        assert!(seqs.iter().copied().eq(0..n), "each message exactly once");
        // Everything was acknowledged, so everything was received and deduplicated already:
        // no later copy can be delivered again.
        assert_eq!(bus.metrics().reliable.events_received, n);
    }
    let stats = publisher.metrics().reliable;
    assert_eq!(stats.events_sent, n);
    assert_eq!(stats.acked, 3 * n);
    assert_eq!(stats.expired, 0);
    let settled = async {
        while publisher.metrics().reliable.pending > 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .expect("pending actors outlived their messages");
}

/// A publisher and a subscriber of [`Large`] that the publisher knows subscribes, and the
/// subscriber's events.
async fn large_pair(
    make: &mut impl FnMut() -> BusBuilder,
) -> (Bus, Bus, UnboundedReceiver<Event<Large>>) {
    let publisher = start(make).await;
    let subscriber = start(make).await;
    let rx = subscribe::<Large>(&subscriber).await;
    let mut publisher_events = events(&publisher);
    await_subscribers(
        &publisher,
        &mut publisher_events,
        Large::ID,
        1,
        Duration::from_secs(5),
    )
    .await;
    (publisher, subscriber, rx)
}

/// Best-effort messages of `len` bytes, larger than a datagram, published by one peer and
/// received whole by another, each once; one over the bus's limit is refused at the sender
/// naming the topic and both sizes.
pub async fn large_best_effort_messages_arrive_whole(
    make: &mut impl FnMut() -> BusBuilder,
    count: u64,
    len: usize,
) {
    let (publisher, subscriber, mut rx) = large_pair(make).await;
    for seq in 0..count {
        let data = pattern(seq, len);
        publisher
            .publish(Large { seq, data })
            .await
            .expect("publish");
    }
    let got = receive(&mut rx, count as usize, Duration::from_secs(10)).await;
    assert_eq!(got.len() as u64, count, "every message arrived");
    for event in &got {
        let Large { seq, data } = &event.message;
        assert!(*data == pattern(*seq, len), "message {seq} intact");
    }
    let mut seqs: Vec<u64> = got.iter().map(|e| e.message.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, count, "each once");
    let held = subscriber.metrics();
    assert_eq!((held.reassembly_entries, held.reassembly_bytes), (0, 0));
    let limit = 16 << 20;
    let refused = publisher
        .publish(Large {
            seq: count,
            data: vec![0; limit],
        })
        .await;
    match refused {
        Err(bus_actors::Error::MessageTooLarge {
            topic, len, max, ..
        }) => {
            assert_eq!(topic, "test/large");
            assert!(len > limit && max == limit, "{len} over {max}");
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    for bus in [publisher, subscriber] {
        bus.shutdown().await.expect("shutdown");
    }
}

/// Reliable messages of each size in `sizes`, larger than a datagram, published one after the
/// other by one peer: each report is complete, and the other peer receives each once, whole.
pub async fn large_reliable_messages_arrive_once(
    make: &mut impl FnMut() -> BusBuilder,
    sizes: &[usize],
) {
    let (publisher, subscriber, mut rx) = large_pair(make).await;
    for (seq, len) in sizes.iter().enumerate() {
        let seq = seq as u64;
        let report = publisher
            .publish_reliable(Large {
                seq,
                data: pattern(seq, *len),
            })
            .await
            .expect("delivered");
        assert!(report.is_complete(), "{report:?}");
    }
    let got = receive(&mut rx, sizes.len(), Duration::from_secs(10)).await;
    assert_eq!(got.len(), sizes.len());
    for (event, len) in got.iter().zip(sizes) {
        let Large { seq, data } = &event.message;
        assert!(*data == pattern(*seq, *len), "message {seq} intact");
    }
    // A last small message, received after them: nothing more of theirs came meanwhile.
    let marker = sizes.len() as u64;
    publisher
        .publish_reliable(Large {
            seq: marker,
            data: Vec::new(),
        })
        .await
        .expect("delivered");
    let last = receive(&mut rx, 1, Duration::from_secs(5)).await;
    assert_eq!(last[0].message.seq, marker, "each once");
    assert!(rx.try_recv().is_err(), "each once");
    for bus in [publisher, subscriber] {
        bus.shutdown().await.expect("shutdown");
    }
}
