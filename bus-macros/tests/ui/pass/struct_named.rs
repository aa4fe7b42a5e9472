use bus_core::Topic as _;
use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "plant/boiler/temperature", reliable, encoding = "named")]
struct Temperature {
    sensor: u32,
    celsius: f64,
}

fn main() {
    assert_eq!(Temperature::NAME, "plant/boiler/temperature");
    assert!(Temperature::RELIABLE);
}
