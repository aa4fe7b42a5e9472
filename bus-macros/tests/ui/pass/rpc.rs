use bus_core::Rpc;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, bus_macros::Rpc)]
#[rpc(procedure = 400, reply = String)]
struct Echo(String);

#[derive(Deserialize, Serialize, bus_macros::Rpc)]
#[rpc(procedure = 0xfeff, reply = Vec<u32>)]
struct Primes {
    below: u32,
}

fn main() {
    assert_eq!(Echo::PROCEDURE, 400);
    assert_eq!(Primes::PROCEDURE, 0xfeff);
    assert_ne!(Echo::FINGERPRINT, Primes::FINGERPRINT);
    let _: <Primes as Rpc>::Reply = vec![2, 3, 5];
}
