use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, bus_macros::Rpc)]
#[rpc(procedure = 400)]
struct Echo(String);

fn main() {}
