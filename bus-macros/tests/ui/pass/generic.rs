use bus_core::Topic;
use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Topic)]
#[topic(name = "wrapped")]
struct Wrapped<T: Clone> where T: Default {
    value: T,
    history: Vec<T>,
}

fn name_of<M: Topic>() -> &'static str {
    M::NAME
}

fn main() {
    assert_eq!(name_of::<Wrapped<u32>>(), "wrapped");
    assert_eq!(name_of::<Wrapped<String>>(), "wrapped");
}
