use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "a", reliable)]
#[topic(name = "b", reliable)]
struct Temperature {
    celsius: f64,
}

fn main() {}
