//! `bus peers`: the peers this one finds, as a table or as JSON.

use std::process::ExitCode;
use std::time::Duration;

use bus_actors::{Bus, PeerSnapshot};
use serde_json::json;

use crate::Failure;

/// Lists the peers found within `--wait`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// How long to listen for peers (and their descriptions of their topics) first.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Prints a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Prints the table again every second until interrupted.
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

pub(crate) async fn run(bus: &Bus, args: &Args) -> Result<ExitCode, Failure> {
    tokio::time::sleep(args.wait).await;
    loop {
        let peers = bus.peers();
        if args.json {
            let list: Vec<_> = peers.iter().map(|p| to_json(bus, p)).collect();
            println!("{}", serde_json::Value::Array(list));
            return Ok(ExitCode::SUCCESS);
        }
        if args.watch {
            // Clear the screen and go home.
            print!("\x1b[2J\x1b[H");
        }
        print_table(bus, &peers);
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What it means when no other peer's packet arrived at all.
pub(crate) const NOTHING_ARRIVED: &str = "nothing arrived from any other peer: they may beacon on \
     another group or port (--group, --port), or multicast does not reach here (give a peer's \
     unicast address with --seed ADDR)";

fn to_json(bus: &Bus, peer: &PeerSnapshot) -> serde_json::Value {
    let topics: Vec<_> = peer
        .topics
        .iter()
        .map(|id| match peer.description(*id) {
            Some(d) => json!({
                "name": d.name,
                "fingerprint": d.fingerprint.map(|f| format!("{f:016x}")),
            }),
            None => json!({ "id": format!("{:016x}", id.0) }),
        })
        .collect();
    let metadata: serde_json::Map<_, _> = peer
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "id": peer.id.to_string(),
        "address": peer.addr.to_string(),
        "rtt_us": peer.rtt.map(|d| d.as_micros()),
        "clock_offset_us": peer.clock_offset_us,
        "topics": topics,
        "metadata": metadata,
        "last_seen": wall(bus, peer.last_seen),
        "confirmed": peer.confirmed,
        "hears_our_multicast": peer.hears_our_multicast,
    })
}

fn wall(bus: &Bus, at: bus_actors::Instant) -> String {
    humantime::format_rfc3339_millis(bus.wall_time(at)).to_string()
}

fn print_table(bus: &Bus, peers: &[PeerSnapshot]) {
    if peers.is_empty() {
        println!(
            "no peers found: `bus stats` shows what arrives (packets with another key, or in \
             plaintext, are named there)"
        );
        return;
    }
    println!(
        "{:<16}  {:<21}  {:>9}  {:>14}  {:<24}  {:<30}  METADATA",
        "ID", "ADDRESS", "RTT", "CLOCK OFFSET", "LAST SEEN", "TOPICS"
    );
    for peer in peers {
        let rtt = peer.rtt.map_or("-".to_owned(), |d| {
            format!("{:.2} ms", d.as_secs_f64() * 1e3)
        });
        let offset = peer
            .clock_offset_us
            .map_or("-".to_owned(), |us| format!("{:+.3} s", us as f64 / 1e6));
        let metadata: Vec<String> = peer
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "{:<16}  {:<21}  {:>9}  {:>14}  {:<24}  {:<30}  {}",
            peer.id.to_string(),
            peer.addr.to_string(),
            rtt,
            offset,
            wall(bus, peer.last_seen),
            peer.topic_names().join(","),
            metadata.join(" ")
        );
    }
}
