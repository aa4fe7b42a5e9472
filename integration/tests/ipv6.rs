//! The bus over IPv6 loopback. Linux does not route IPv6 multicast over `lo` (it has no
//! MULTICAST flag: a send to the group fails with "network unreachable"), so the two peers find
//! each other through seed addresses, which is what seeds are for (their group sends fail and
//! are counted as `send_failed`).

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use bus_actors::{Bus, Interface, Topic};
use integration::{
    BEACON_INTERVAL, Counter, await_subscribers, events, free_port, receive, subscribe,
};

/// The loopback interface's index (1 on Linux).
fn loopback_index() -> u32 {
    std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1)
}

fn free_port_v6() -> u16 {
    std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port on [::1]")
}

#[actix::test]
async fn two_peers_exchange_messages_over_ipv6_loopback_via_seeds() {
    let group = SocketAddr::from(("ff02::1:28:12".parse::<Ipv6Addr>().unwrap(), free_port()));
    let interface = Interface::V6 {
        addr: Ipv6Addr::LOCALHOST,
        index: loopback_index(),
    };
    let (port_a, port_b) = (free_port_v6(), free_port_v6());
    let start = |port: u16, seed: u16| {
        Bus::builder()
            .insecure()
            .interface(interface)
            .group(group)
            .unicast_port(port)
            .seeds([SocketAddr::from((Ipv6Addr::LOCALHOST, seed))])
            .beacon_interval(BEACON_INTERVAL)
            .start()
    };
    let a = start(port_a, port_b).await.unwrap();
    let b = start(port_b, port_a).await.unwrap();
    assert_eq!(
        a.local_addr(),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port_a))
    );
    let mut rx = subscribe::<Counter>(&b).await;
    let mut ev = events(&a);
    await_subscribers(&a, &mut ev, Counter::ID, 1, Duration::from_secs(5)).await;
    for seq in 0..100 {
        a.publish(Counter { publisher: 0, seq }).await.unwrap();
    }
    receive(&mut rx, 100, Duration::from_secs(5)).await;
}
