use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Topic)]
#[topic(encoding = "json")]
struct Temperature {
    celsius: f64,
}

fn main() {}
