//! Best-effort pub/sub between peers on real loopback sockets.

use std::time::Duration;

use bus_actors::Topic;
use integration::{Counter, await_subscribers, events, receive, start, subscribe, test_group};

#[actix::test]
async fn three_peers_in_one_process_receive_every_message() {
    let group = test_group();
    let buses = [start(group).await, start(group).await, start(group).await];
    let mut rxs = Vec::new();
    for bus in &buses {
        rxs.push(subscribe::<Counter>(bus).await);
    }
    for bus in &buses {
        let mut ev = events(bus);
        await_subscribers(bus, &mut ev, Counter::ID, 2, Duration::from_secs(5)).await;
    }
    const N: u64 = 10_000;
    for (i, bus) in buses.iter().enumerate() {
        for seq in 0..N {
            bus.publish(Counter {
                publisher: i as u32,
                seq,
            })
            .await
            .unwrap();
        }
    }
    for (i, rx) in rxs.iter_mut().enumerate() {
        let got = receive(rx, 3 * N as usize, Duration::from_secs(20)).await;
        let mut per_publisher = [0u64; 3];
        for event in &got {
            per_publisher[event.message.publisher as usize] += 1;
        }
        assert_eq!(per_publisher, [N; 3], "subscriber {i}");
    }
    for bus in &buses {
        assert_eq!(bus.metrics().total_drops(), 0, "{:?}", bus.metrics());
        bus.shutdown().await.unwrap();
    }
}
