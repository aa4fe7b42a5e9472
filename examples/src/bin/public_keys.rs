//! A public-key cluster: three peers, each with a key pair of its own, trust each other's
//! public keys (their peer ids are the hashes of those keys) and share a group key pair for
//! multicast. They find each other and exchange readings; a fourth peer, with the group key but
//! a key pair nobody trusts, is never admitted.
//!
//! ```sh
//! cargo run -p examples --bin public_keys
//! ```
//!
//! With files: `bus keygen north.key` prints the public key to give the others (`.trust`, or
//! `bus --key-file north.key --group-key-file group.key --trust KEY ...`).

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;

use actix::prelude::*;
use bus_actors::keys::{self, Keypair};
use bus_actors::{Bus, Duration, Error, Event};
use examples::plant::{Temperature, reading};

const NAMES: [&str; 3] = ["north", "south", "control"];

/// Prints what a peer receives.
struct Show(&'static str);

impl Actor for Show {
    type Context = Context<Self>;
}

impl Handler<Event<Temperature>> for Show {
    type Result = ();
    fn handle(&mut self, event: Event<Temperature>, _: &mut Context<Self>) {
        println!(
            "{:>8} <- {} {:.1} °C",
            self.0, event.message.sensor, event.message.celsius
        );
    }
}

#[actix::main]
async fn main() -> ExitCode {
    examples::log_to_stderr();
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("public_keys: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Error> {
    let group = keys::generate_keypair()?;
    let members: Vec<Keypair> = (0..NAMES.len())
        .map(|_| keys::generate_keypair())
        .collect::<Result<_, _>>()?;
    let start = |identity: &Keypair, trusted: &[Keypair]| {
        let mut builder = Bus::builder()
            .group(SocketAddr::from(([239, 255, 28, 12], 17_833)))
            .public_key_mode(identity.clone(), group.clone());
        for other in trusted {
            builder = builder.trust(*other.public());
        }
        builder.start()
    };
    let mut buses = Vec::new();
    for (i, identity) in members.iter().enumerate() {
        let others: Vec<Keypair> = members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, k)| k.clone())
            .collect();
        let bus = start(identity, &others).await?;
        println!(
            "{:>8} is peer {} (public key {})",
            NAMES[i],
            bus.local_id(),
            keys::format_key(identity.public())
        );
        bus.subscribe::<Temperature>(Show(NAMES[i]).start().recipient())
            .await?;
        buses.push(bus);
    }
    // An intruder with the group key, trusting everyone, but trusted by no one.
    let intruder = start(&keys::generate_keypair()?, &members).await?;
    for bus in &buses {
        bus.wait_for_subscribers::<Temperature>(2, Duration::from_secs(10))
            .await?;
    }
    for (i, bus) in buses.iter().enumerate() {
        bus.publish_reliable(reading(NAMES[i], 70.0 + i as f64, 0))
            .await?;
    }
    let mut ok = true;
    for (i, bus) in buses.iter().enumerate() {
        let known: Vec<_> = bus.peers().into_iter().map(|p| p.id).collect();
        ok &= known.len() == 2 && !known.contains(&intruder.local_id());
        println!(
            "{:>8} knows {} peers, not the intruder",
            NAMES[i],
            known.len()
        );
    }
    for bus in buses.iter().chain([&intruder]) {
        bus.shutdown().await?;
    }
    println!(
        "{}",
        if ok {
            "the cluster admitted exactly its members"
        } else {
            "membership was not as expected"
        }
    );
    Ok(ok)
}
