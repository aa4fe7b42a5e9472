use bus_core::Topic as _;
use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "pair")]
struct Pair(u8, String);

#[derive(Deserialize, Serialize, Topic)]
struct Heartbeat;

fn main() {
    assert_eq!(Pair::NAME, "pair");
    assert_eq!(Heartbeat::NAME, "heartbeat");
}
