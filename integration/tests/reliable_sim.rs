//! Reliable messages through the actors, over the simulated network in virtual time.

#![allow(clippy::unwrap_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use bus_actors::transport::SimHub;
use bus_actors::{Bus, BusBuilder, BusEvent, Error, Event, Topic, WindowLimits};
use bus_core::sim::{LinkConfig, NodeId};
use integration::scenarios::{self, publish_reliably};
use integration::{
    Reliable, await_subscribers, events, receive, run_in_virtual_time, sim_builders, subscribe,
};
use tokio::sync::mpsc::UnboundedReceiver;

const SEED: u64 = 0xfeed;

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        loss,
        duplicate: 0.1,
        latency: Duration::from_micros(300),
        jitter: Duration::from_micros(300),
        reorder: 0.05,
        reorder_delay: Duration::from_millis(2),
    }
}

/// A publisher whose per-peer window holds `in_flight` messages, and a subscriber of `T` it has
/// discovered, on `hub`; `tune` adjusts both builders. Returns the publisher, and the
/// subscriber's bus and its events.
async fn windowed_pair<T: Topic>(
    hub: &SimHub,
    in_flight: usize,
    tune: impl Fn(BusBuilder) -> BusBuilder,
) -> (Bus, Bus, UnboundedReceiver<Event<T>>) {
    let mut make = sim_builders(hub, SEED);
    let window = WindowLimits {
        per_peer_events: in_flight,
        ..WindowLimits::default()
    };
    let publisher = tune(make()).reliable_window(window).start().await.unwrap();
    let subscriber = tune(make()).start().await.unwrap();
    let rx = subscribe::<T>(&subscriber).await;
    let mut ev = events(&publisher);
    await_subscribers(&publisher, &mut ev, T::ID, 1, Duration::from_secs(5)).await;
    (publisher, subscriber, rx)
}

#[test]
fn exactly_once_at_30_percent_loss_with_duplication_and_reordering() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 4, lossy(0.3));
        // At 30% loss, three lost beacons in a row are common enough to flap membership; a
        // longer liveness timeout keeps every subscriber owed every message. An attempt fails
        // 51% of the time here, and the default 5 s deadline allows about a dozen: one of the
        // 30 000 (message, subscriber) pairs failing them all is to be expected (0.51^12 ×
        // 30 000 ≈ 9), and since retransmissions due together share a datagram, such failures
        // come in runs. 30 s allows about 60 attempts (as `integration::lossy` does).
        let mut builders = sim_builders(&hub, SEED);
        let mut make = || {
            builders()
                .liveness_factor(10)
                .reliable_deadline(bus_actors::Duration::from_secs(30))
        };
        scenarios::reliable_messages_arrive_exactly_once(&mut make, 10_000).await;
    });
}

#[test]
fn a_cut_off_subscriber_is_named_and_no_pending_actor_is_left() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 4, lossy(0.0));
        let mut make = sim_builders(&hub, SEED);
        // The deadline is shorter than the liveness timeout (3 beacon intervals), so the cut-off
        // peer is still owed the messages when they expire.
        let deadline = bus_actors::Duration::from_millis(300);
        let publisher = make()
            .topic_deadline::<Reliable>(deadline)
            .start()
            .await
            .unwrap();
        let mut subscribers = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..3 {
            let bus = make().start().await.unwrap();
            rxs.push(subscribe::<Reliable>(&bus).await);
            subscribers.push(bus);
        }
        let mut ev = events(&publisher);
        await_subscribers(&publisher, &mut ev, Reliable::ID, 3, Duration::from_secs(5)).await;
        hub.with_network(|net| net.partition(&[NodeId(0)], &[NodeId(3)]));
        let cut = subscribers[2].local_id();

        let results = publish_reliably(&publisher, 200, 200, |_| {}).await;
        for result in results {
            match result {
                Err(Error::Undelivered { topic, report }) => {
                    assert_eq!(topic, "test/reliable");
                    assert_eq!(report.missing, [cut]);
                    assert_eq!(report.acked.len(), 2);
                }
                other => panic!("expected a failure naming the cut-off peer, got {other:?}"),
            }
        }
        for rx in &mut rxs[..2] {
            receive(rx, 200, Duration::from_secs(1)).await;
        }
        let stats = publisher.metrics().reliable;
        assert_eq!(stats.expired, 200);
        assert_eq!(
            stats.pending, 0,
            "every pending actor stopped with its message"
        );
        // Nothing is held for the cut-off peer: its window has room again (not busy), and the
        // new message fails like the others.
        let again = publisher.try_publish_reliable(Reliable { seq: 0 }).await;
        assert!(matches!(again, Err(Error::Undelivered { .. })), "{again:?}");
    });
}

#[test]
fn a_publisher_faster_than_the_window_waits_and_try_reports_busy() {
    run_in_virtual_time(|| async {
        // A slow subscriber: 20 ms each way, so acknowledgements take 40 ms to come back.
        let config = LinkConfig {
            latency: Duration::from_millis(20),
            ..LinkConfig::default()
        };
        let hub = SimHub::new(SEED, 2, config);
        let (publisher, _subscriber, mut rx) = windowed_pair::<Reliable>(&hub, 32, |b| b).await;

        let results = publish_reliably(&publisher, 500, 500, |_| {}).await;
        assert!(results.iter().all(Result::is_ok));
        let stats = publisher.metrics().reliable;
        // The window is 32 events: never more messages than that in flight, and the events
        // published while it was full shared messages.
        assert!(stats.pending_peak <= 32, "{stats:?}");
        assert!(stats.sent < 500, "{stats:?}");
        assert_eq!(stats.events_sent, 500);
        assert_eq!(stats.pending, 0);
        receive(&mut rx, 500, Duration::from_secs(1)).await;

        // Fill the window, then ask without waiting.
        let filling = publish_reliably(&publisher, 32, 32, |_| {});
        let probe = async {
            tokio::task::yield_now().await;
            publisher.try_publish_reliable(Reliable { seq: 999 }).await
        };
        let (filled, probed) = tokio::join!(filling, probe);
        assert!(filled.iter().all(Result::is_ok));
        assert!(matches!(probed, Err(Error::Busy(_))), "{probed:?}");
    });
}

#[test]
fn a_batch_larger_than_the_window_arrives_exactly_once_with_its_reports_in_order() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lossy(0.3));
        // As in the 30%-loss test above: no membership flaps, time for enough attempts.
        let (publisher, _subscriber, mut rx) = windowed_pair::<Reliable>(&hub, 32, |b| {
            b.liveness_factor(10)
                .reliable_deadline(bus_actors::Duration::from_secs(30))
        })
        .await;

        let reports = publisher
            .publish_reliable_batch((0..300).map(|seq| Reliable { seq }))
            .await
            .unwrap();
        assert_eq!(reports.len(), 300);
        assert!(
            reports
                .iter()
                .all(|r| r.is_complete() && r.acked.len() == 1)
        );
        // Events published together share a message, and so its report.
        assert!(
            reports
                .windows(2)
                .all(|w| w[0].message_id <= w[1].message_id),
            "reports come in the order of the messages"
        );
        let stats = publisher.metrics().reliable;
        assert!(
            stats.pending_peak <= 32,
            "in flight never exceeds the window"
        );
        assert!(stats.sent < 300, "events shared messages: {stats:?}");
        assert_eq!(stats.pending, 0);
        assert!(stats.retransmitted > 0, "the network did lose some");
        let mut seqs: Vec<u64> = receive(&mut rx, 300, Duration::from_secs(1))
            .await
            .iter()
            .map(|e| e.message.seq)
            .collect();
        seqs.sort_unstable();
        assert!(seqs.iter().copied().eq(0..300), "each exactly once");
    });
}

/// A reliable topic whose messages can be made too large.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, Topic)]
#[topic(name = "test/reliable-blob", reliable)]
struct Blob {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[test]
fn a_batch_stops_at_a_message_too_large_and_what_went_before_is_still_delivered() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lossy(0.0));
        // A window of exactly the messages before the refused one.
        // A limit a 64 KiB message is over.
        let tune = |b: BusBuilder| b.max_message_size(32 << 10);
        let (publisher, _subscriber, mut rx) = windowed_pair::<Blob>(&hub, 10, tune).await;

        let small = |n: u8| Blob { data: vec![n; 8] };
        let batch = (0..10)
            .map(small)
            .chain([Blob {
                data: vec![0; 64 * 1024],
            }])
            .chain((10..15).map(small));
        let refused = publisher.publish_reliable_batch(batch).await;
        assert!(
            matches!(
                refused,
                Err(Error::MessageTooLarge {
                    topic: "test/reliable-blob",
                    ..
                })
            ),
            "{refused:?}"
        );
        let got = receive(&mut rx, 10, Duration::from_secs(1)).await;
        let firsts: Vec<u8> = got.iter().map(|e| e.message.data[0]).collect();
        assert_eq!(firsts, (0..10).collect::<Vec<u8>>());
        // Each of them took the window's room and gives it back when acknowledged: had they
        // not been started, the next batch would wait for that room forever.
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            publisher.publish_reliable_batch((20..30).map(small)),
        )
        .await
        .expect("the room taken before the refused message came back")
        .unwrap();
        assert!(next.iter().all(|r| r.is_complete()));
        assert_eq!(publisher.metrics().reliable.acked, 20);
    });
}

/// Field report (and Pavillion's own test): "subscribe, then publish at once" lost the message
/// and said `Ok`, with an empty report. A reliable publish with nobody subscribed is an error,
/// and `wait_for_subscribers` is the way to publish at once after a subscriber starts.
#[test]
fn a_reliable_publish_to_nobody_is_not_a_success() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, lossy(0.0));
        let mut make = sim_builders(&hub, SEED);
        let publisher = make().start().await.unwrap();
        let mut publisher_events = events(&publisher);
        let nobody = publisher.publish_reliable(Reliable { seq: 0 }).await;
        assert!(
            matches!(
                nobody,
                Err(Error::NoSubscribers {
                    topic: "test/reliable"
                })
            ),
            "{nobody:?}"
        );
        let waited = publisher
            .wait_for_subscribers::<Reliable>(1, Duration::from_millis(100))
            .await;
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");

        let subscriber = make().start().await.unwrap();
        let mut rx = subscribe::<Reliable>(&subscriber).await;
        publisher
            .wait_for_subscribers::<Reliable>(1, Duration::from_secs(5))
            .await
            .unwrap();
        let report = publisher
            .publish_reliable(Reliable { seq: 1 })
            .await
            .unwrap();
        assert_eq!(report.acked, [subscriber.local_id()]);
        let got = receive(&mut rx, 1, Duration::from_secs(5)).await;
        assert_eq!(got[0].message, Reliable { seq: 1 });
        // The application heard the subscriber arrive.
        let subscriber_id = subscriber.local_id();
        integration::await_event(
            &mut publisher_events,
            Duration::from_secs(1),
            "the subscriber of test/reliable",
            |event| {
                matches!(event, BusEvent::SubscriberJoined { topic, peer }
                    if *topic == Reliable::ID && *peer == subscriber_id)
            },
        )
        .await;
    });
}

/// Reliable events published one by one with a `ReliablePublisher` wait for no report, yet
/// every outcome is told: each event arrives once, in order, and the messages that carried
/// them are reported delivered (asked for) with as many events as were sent; with the
/// subscriber cut off, each is reported undelivered, naming it.
#[test]
fn a_reliable_publisher_reports_what_became_of_its_events() {
    run_in_virtual_time(|| async {
        let hub = SimHub::new(SEED, 2, LinkConfig::default());
        let tune = |b: BusBuilder| {
            b.report_reliable_successes(true)
                .reliable_deadline(bus_actors::Duration::from_secs(1))
        };
        // Room for all 200 at once: cut off, the subscriber is declared unreachable (and owed
        // nothing new) before expiries would free room for more.
        let (publisher, subscriber, mut rx) = windowed_pair::<Reliable>(&hub, 256, tune).await;
        let mut ev = events(&publisher);
        let sender = publisher.reliable_publisher::<Reliable>();
        // The events the outcomes reported so far tell of, once every message has one.
        let settled = async |ev: &mut UnboundedReceiver<BusEvent>, delivered: bool, sent: u64| {
            for _ in 0..1000 {
                let stats = publisher.metrics().reliable;
                if stats.events_sent == sent && stats.pending == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut events = 0;
            while let Ok(event) = ev.try_recv() {
                match event {
                    BusEvent::Delivered {
                        events: n, report, ..
                    } if delivered => {
                        assert!(report.is_complete(), "{report:?}");
                        events += n;
                    }
                    BusEvent::Undelivered {
                        events: n, report, ..
                    } if !delivered => {
                        assert_eq!(report.missing, [subscriber.local_id()]);
                        events += n;
                    }
                    _ => {}
                }
            }
            events
        };
        for seq in 0..200 {
            sender.send(&Reliable { seq }).await.unwrap();
        }
        let got = receive(&mut rx, 200, Duration::from_secs(5)).await;
        assert_eq!(settled(&mut ev, true, 200).await, 200);
        assert!(
            got.iter().map(|e| e.message.seq).eq(0..200),
            "once, in order"
        );
        assert!(
            publisher.metrics().reliable.sent < 200,
            "events shared messages"
        );

        hub.with_network(|net| net.partition(&[NodeId(0)], &[NodeId(1)]));
        for seq in 200..400 {
            sender.send(&Reliable { seq }).await.unwrap();
        }
        assert_eq!(settled(&mut ev, false, 400).await, 200);
        assert_eq!(publisher.metrics().reliable.pending, 0);
    });
}
