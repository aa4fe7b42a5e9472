//! Reliable messages over real loopback sockets, through a transport that loses 20% and
//! duplicates 5% of what every peer sends.

use bus_actors::transport::Faults;
use integration::{builder, scenarios, test_group};

#[actix::test]
async fn exactly_once_to_three_peers_at_20_percent_loss() {
    let group = test_group();
    let mut seed = 0;
    // At 20% loss three lost beacons in a row (0.8% per window) would declare a subscriber
    // unreachable now and then and release it from the messages it is owed; a longer liveness
    // timeout keeps the test about retransmission.
    let mut make = || {
        seed += 1;
        builder(group)
            .liveness_factor(10)
            // At 20% loss each way an attempt fails 36% of the time; with RTOs inflated by
            // the burst's queueing, 5 s allows about a dozen attempts, and one of 30 000
            // (message, subscriber) pairs failing them all is likely. 30 s makes it
            // vanishingly rare: the deadline is the knob for lossy networks.
            .reliable_deadline(bus_actors::Duration::from_secs(30))
            .inject_faults(Faults {
                loss: 0.2,
                duplicate: 0.05,
                seed,
            })
    };
    scenarios::reliable_messages_arrive_exactly_once(&mut make, 10_000).await;
}

#[actix::test]
async fn exactly_once_to_three_peers_without_loss() {
    let group = test_group();
    scenarios::reliable_messages_arrive_exactly_once(&mut || builder(group), 10_000).await;
}
