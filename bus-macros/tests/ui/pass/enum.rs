use bus_core::Topic as _;
use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "plant/command", encoding = "compact")]
enum Command {
    Start,
    Set(f64),
    Move { x: i32, y: i32 },
}

fn main() {
    assert_eq!(Command::NAME, "plant/command");
}
