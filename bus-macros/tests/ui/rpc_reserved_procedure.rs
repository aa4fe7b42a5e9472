use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, bus_macros::Rpc)]
#[rpc(procedure = 0xff00, reply = ())]
struct Internal;

#[derive(Deserialize, Serialize, bus_macros::Rpc)]
#[rpc(procedure = 70000, reply = ())]
struct TooLarge;

fn main() {}
