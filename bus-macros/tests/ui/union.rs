use bus_macros::Topic;

#[derive(Topic)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
