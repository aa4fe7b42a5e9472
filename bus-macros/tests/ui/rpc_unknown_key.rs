use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, bus_macros::Rpc)]
#[rpc(procedure = 1, reply = (), timeout = 5)]
struct Ping;

fn main() {}
