//! Best-effort pub/sub between peers on real loopback sockets. The scenarios are shared with
//! `pubsub_sim.rs`, which runs them over the simulated network.

use integration::{builder, scenarios, test_group};

#[actix::test]
async fn three_peers_in_one_process_receive_every_message() {
    let group = test_group();
    let buses = scenarios::three_peers_receive_every_message(&mut || builder(group), 10_000).await;
    for bus in buses {
        bus.shutdown().await.expect("shutdown");
    }
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
async fn a_panicking_subscriber_does_not_stop_delivery_to_others() {
    let group = test_group();
    scenarios::a_panicking_subscriber_does_not_stop_delivery_to_others(&mut || builder(group))
        .await;
}
