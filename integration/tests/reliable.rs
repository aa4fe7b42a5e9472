//! Reliable messages over real loopback sockets, through a transport that loses 20% and
//! duplicates 5% of what every peer sends.

use integration::{builder, lossy, scenarios, test_group};

#[actix::test]
async fn exactly_once_to_three_peers_at_20_percent_loss() {
    let group = test_group();
    let mut seed = 0;
    let mut make = || {
        seed += 1;
        lossy(builder(group), seed)
    };
    scenarios::reliable_messages_arrive_exactly_once(&mut make, 10_000).await;
}

#[actix::test]
async fn exactly_once_to_three_peers_without_loss() {
    let group = test_group();
    scenarios::reliable_messages_arrive_exactly_once(&mut || builder(group), 10_000).await;
}
