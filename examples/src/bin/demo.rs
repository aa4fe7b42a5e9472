//! Three peers on loopback, each in a thread of its own with its own actix system, find each
//! other by multicast and publish typed events to each other, encrypted with a cluster key
//! they share; each prints what it receives and the program ends with a summary.
//!
//! ```sh
//! cargo run --release -p examples --bin demo
//! ```

#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, BusEvent, Event};
use examples::plant::{Temperature, reading};
use tokio::sync::mpsc;

const PEERS: [&str; 3] = ["boiler-north", "boiler-south", "control-room"];
const READINGS: u32 = 5;
/// A port of the demo's own, so it does not meet other buses on the default port.
const GROUP: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::new(239, 255, 28, 12)),
    17_830,
);

/// Prints each reading as it arrives and passes it on for counting.
struct Display {
    name: &'static str,
    seen: mpsc::UnboundedSender<String>,
}

impl Actor for Display {
    type Context = Context<Self>;
}

impl Handler<Event<Temperature>> for Display {
    type Result = ();
    fn handle(&mut self, event: Event<Temperature>, _: &mut Context<Self>) {
        println!(
            "{:>13} <- {:<13} {:5.1} °C   (from peer {})",
            self.name, event.message.sensor, event.message.celsius, event.from
        );
        let _ = self.seen.send(event.into_message().sensor);
    }
}

/// What one peer did.
struct Summary {
    name: &'static str,
    sent: u32,
    received: usize,
    datagrams_out: u64,
    datagrams_in: u64,
}

async fn run_peer(index: usize, key: [u8; 32]) -> Result<Summary, bus_actors::Error> {
    let name = PEERS[index];
    let bus = Bus::builder()
        .cluster_psk(key)
        .group(GROUP)
        .beacon_interval(bus_actors::Duration::from_millis(250))
        .metadata("role", name)
        .start()
        .await?;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    bus.subscribe::<Temperature>(
        Display {
            name,
            seen: seen_tx,
        }
        .start()
        .recipient(),
    )
    .await?;

    // Wait until both other peers subscribe and answered us, so that nothing is published into
    // the void: best effort has no retransmission.
    let (event_tx, mut events) = mpsc::unbounded_channel();
    bus.subscribe_events(Forward(event_tx).start().recipient());
    actix::spawn(async move {
        while let Some(event) = events.recv().await {
            if let BusEvent::PeerJoined(p) = event {
                let role = p.metadata("role").unwrap_or("?");
                println!("{name:>13} :: discovered {role} ({})", p.addr);
            }
        }
    });
    let others = PEERS.len() - 1;
    if bus
        .wait_for_subscribers::<Temperature>(others, bus_actors::Duration::from_secs(10))
        .await
        .is_err()
    {
        println!("{name:>13} :: gave up waiting for the other peers");
    }

    let mut sent = 0;
    for i in 0..READINGS {
        bus.publish(reading(name, 80.0 + index as f64 * 5.0, u64::from(i)))
            .await?;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everyone's readings, ours included (local subscribers get local messages too).
    let expected = PEERS.len() * READINGS as usize;
    let mut received = 0;
    let all_in = async {
        while received < expected && seen.recv().await.is_some() {
            received += 1;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), all_in).await;
    let metrics = bus.metrics();
    bus.shutdown().await?;
    Ok(Summary {
        name,
        sent,
        received,
        datagrams_out: metrics.datagrams_out,
        datagrams_in: metrics.datagrams_in,
    })
}

struct Forward(mpsc::UnboundedSender<BusEvent>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<BusEvent> for Forward {
    type Result = ();
    fn handle(&mut self, event: BusEvent, _: &mut Context<Self>) {
        let _ = self.0.send(event);
    }
}

fn main() -> ExitCode {
    examples::log_to_stderr();
    // Every packet is encrypted and authenticated with a key the three peers share.
    let key = bus_actors::keys::random_key();
    println!("three peers on loopback, group {GROUP}, encrypted with a fresh cluster key\n");
    let (done_tx, done_rx) = std_mpsc::channel();
    let threads: Vec<_> = (0..PEERS.len())
        .map(|index| {
            let done = done_tx.clone();
            thread::spawn(move || {
                let result = System::new().block_on(run_peer(index, key));
                let _ = done.send((index, result));
            })
        })
        .collect();
    drop(done_tx);
    let mut summaries: Vec<_> = done_rx.iter().collect();
    for thread in threads {
        let _ = thread.join();
    }
    summaries.sort_by_key(|(index, _)| *index);

    println!(
        "\n{:<13} {:>5} {:>9} {:>14} {:>13}",
        "peer", "sent", "received", "datagrams out", "datagrams in"
    );
    let expected = PEERS.len() * READINGS as usize;
    let mut complete = true;
    for (index, result) in summaries {
        match result {
            Ok(s) => {
                complete &= s.received == expected;
                println!(
                    "{:<13} {:>5} {:>6}/{:<2} {:>14} {:>13}",
                    s.name, s.sent, s.received, expected, s.datagrams_out, s.datagrams_in
                );
            }
            Err(e) => {
                complete = false;
                println!("{:<13} failed: {e}", PEERS[index]);
            }
        }
    }
    if complete {
        println!("\nevery peer received every reading");
        ExitCode::SUCCESS
    } else {
        println!("\nsome readings were not received");
        ExitCode::FAILURE
    }
}
