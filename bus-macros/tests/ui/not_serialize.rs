use bus_macros::Topic;

#[derive(Topic)]
#[topic(name = "plant/boiler")]
struct Temperature {
    celsius: f64,
}

fn main() {}
