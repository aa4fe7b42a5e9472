use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "plant boiler/temperature")]
struct Temperature {
    celsius: f64,
}

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "plant//pressure")]
struct Pressure {
    bar: f64,
}

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "")]
struct Level {
    metres: f64,
}

fn main() {}
