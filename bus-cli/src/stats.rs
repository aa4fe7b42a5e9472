//! `bus stats`: what the network looks like from here: this peer's counters after a while,
//! and every misconfiguration it diagnosed (with its likely cause), as it is diagnosed.

use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, BusEvent};
use serde_json::json;
use tokio::sync::mpsc;

use crate::Failure;
use crate::forward::Forward;
use crate::peers::NOTHING_ARRIVED;

/// Joins for `--for`, printing diagnostics as they come, then prints the counters.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// How long to listen.
    #[arg(long = "for", default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Prints JSON (diagnostics as lines, then the counters) instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(bus: &Bus, args: &Args) -> Result<ExitCode, Failure> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.subscribe_events(Forward(tx).start().recipient());
    let until = tokio::time::sleep(args.duration);
    tokio::pin!(until);
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(BusEvent::Misconfigured { from, what, packets }) => {
                    if args.json {
                        let line = json!({
                            "misconfigured": format!("{what:?}"),
                            "from": from.to_string(),
                            "packets": packets,
                            "likely_cause": what.likely_cause(),
                        });
                        println!("{line}");
                    } else {
                        println!("{packets} packets from {from}: {}", what.likely_cause());
                    }
                }
                Some(_) => {}
                None => break,
            },
            () = &mut until => break,
        }
    }
    let metrics = bus.metrics();
    if args.json {
        println!("{}", serde_json::to_string(&metrics)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("peers known:       {}", bus.peer_count());
    println!(
        "datagrams in/out:  {} / {}",
        metrics.datagrams_in, metrics.datagrams_out
    );
    println!(
        "bytes in/out:      {} / {}",
        metrics.bytes_in, metrics.bytes_out
    );
    println!("handshakes:        {}", metrics.handshakes);
    let list = |map: &std::collections::BTreeMap<&str, u64>| {
        if map.is_empty() {
            return "none".to_owned();
        }
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("frames in:         {}", list(&metrics.frames_in));
    println!("frames out:        {}", list(&metrics.frames_out));
    println!("dropped:           {}", list(&metrics.drops));
    if bus.peer_count() == 0 && metrics.total_drops() == 0 {
        // What arrived was our own multicast, looped back, if anything.
        println!("{NOTHING_ARRIVED}");
    }
    Ok(ExitCode::SUCCESS)
}
