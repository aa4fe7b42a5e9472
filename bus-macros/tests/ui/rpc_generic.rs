use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, bus_macros::Rpc)]
#[rpc(procedure = 1, reply = T)]
struct Echo<T>(T);

fn main() {}
