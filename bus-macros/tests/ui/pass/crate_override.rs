use bus_macros::Topic;
use serde::{Deserialize, Serialize};

mod reexport {
    pub use bus_core::*;
}

#[derive(Deserialize, Serialize, Topic)]
#[topic(crate = "reexport")]
struct Renamed {
    x: u8,
}

fn main() {
    assert_eq!(<Renamed as reexport::Topic>::NAME, "renamed");
}
