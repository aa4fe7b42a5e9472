//! `bus listen`: a topic's messages as JSON lines, one per message, as they arrive.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, RawEvent};
use serde_json::json;
use tokio::sync::mpsc;

use crate::forward::Forward;
use crate::{Failure, json};

/// Prints every message of the topics as a JSON line: time, topic, sender, fingerprint and the
/// message (or why it could not be decoded).
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Topic names.
    #[arg(required_unless_present = "all")]
    topics: Vec<String>,
    /// Every topic the peers found describe, and those they describe later.
    #[arg(long)]
    all: bool,
    /// Stops after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stops after this long.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

pub(crate) async fn run(bus: &Bus, args: &Args) -> Result<ExitCode, Failure> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let forward = Forward(tx).start();
    let mut subscribed = HashSet::new();
    for topic in &args.topics {
        subscribe(bus, &forward, &mut subscribed, topic).await?;
    }
    let stop_at = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut printed = 0;
    let mut look_for_topics = tokio::time::interval(Duration::from_millis(200));
    let mut out = std::io::stdout().lock();
    while args.count.is_none_or(|count| printed < count) {
        let stop = async {
            match stop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                writeln!(out, "{}", line(bus, &event))?;
                out.flush()?;
                printed += 1;
            }
            _ = look_for_topics.tick(), if args.all => {
                let names: Vec<String> = bus
                    .peers()
                    .iter()
                    .flat_map(|p| p.described.iter().map(|d| d.name.clone()))
                    .collect();
                for name in names {
                    subscribe(bus, &forward, &mut subscribed, &name).await?;
                }
            }
            () = stop => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn subscribe(
    bus: &Bus,
    forward: &Addr<Forward<RawEvent>>,
    subscribed: &mut HashSet<String>,
    topic: &str,
) -> Result<(), Failure> {
    if subscribed.insert(topic.to_owned()) {
        bus.subscribe_untyped(topic, forward.clone().recipient())
            .await?;
    }
    Ok(())
}

fn line(bus: &Bus, event: &RawEvent) -> serde_json::Value {
    let time = humantime::format_rfc3339_micros(bus.wall_time(event.received_at)).to_string();
    let mut line = json!({
        "time": time,
        "topic": event.topic,
        "from": event.from.to_string(),
        "fingerprint": format!("{:016x}", event.fingerprint),
    });
    match json::decode(&event.payload) {
        Ok(message) => line["message"] = message,
        Err(why) => {
            line["undecodable"] = json!(why);
            line["payload"] = json!(event.payload.to_vec());
        }
    }
    line
}
