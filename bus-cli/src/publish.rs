//! `bus publish`: one message, given as JSON, sent as MessagePack to a topic's subscribers.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use bus_actors::{Bus, DeliveryReport, Error, TopicId, UntypedTopic};
use serde_json::json;

use crate::{Failure, json};

/// Waits for a subscriber of the topic, then publishes the message with the schema fingerprint
/// the subscribers describe (or `--fingerprint`).
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The topic's name.
    topic: String,
    /// The message, as JSON: an object for a struct (its fields by name), an array for a
    /// tuple struct, a bare value for a newtype.
    message: String,
    /// Publishes reliably, waits for every subscriber's acknowledgement, and prints the report.
    #[arg(long)]
    reliable: bool,
    /// The schema fingerprint to send (hex), instead of the one subscribers describe.
    #[arg(long, value_parser = parse_fingerprint)]
    fingerprint: Option<u64>,
    /// How long to wait for a subscriber.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

fn parse_fingerprint(text: &str) -> Result<u64, String> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|e| e.to_string())
}

pub(crate) async fn run(bus: &Bus, args: &Args) -> Result<ExitCode, Failure> {
    let message: serde_json::Value = serde_json::from_str(&args.message)
        .map_err(|e| Failure(format!("the message is not JSON: {e}")))?;
    let payload = json::encode(&message)?;
    // Checks the name before waiting for anyone.
    let topic = UntypedTopic::new(&args.topic, 0)?;
    let fingerprint = match args.fingerprint {
        Some(fingerprint) => fingerprint,
        None => subscribers_fingerprint(bus, topic.id(), &args.topic, args.wait).await?,
    };
    let topic = UntypedTopic::new(&args.topic, fingerprint)?;
    if !args.reliable {
        bus.publish_untyped(&topic, &payload).await?;
        return Ok(ExitCode::SUCCESS);
    }
    match bus.publish_untyped_reliable(&topic, &payload).await {
        Ok(report) => {
            println!("{}", report_json(&report, true));
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Undelivered { report, .. }) => {
            println!("{}", report_json(&report, false));
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// The fingerprint the topic's subscribers expect, once one is known and has described it
/// (an untyped subscriber takes any: 0). Typed subscribers that disagree are an error.
async fn subscribers_fingerprint(
    bus: &Bus,
    topic: TopicId,
    name: &str,
    wait: Duration,
) -> Result<u64, Failure> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let peers = bus.peers();
        let subscribers: Vec<_> = peers
            .iter()
            .filter(|p| p.confirmed && p.topics.contains(&topic))
            .collect();
        let described: Vec<_> = subscribers
            .iter()
            .filter_map(|p| p.description(topic))
            .collect();
        if !subscribers.is_empty() && described.len() == subscribers.len() {
            let typed: BTreeSet<u64> = described.iter().filter_map(|d| d.fingerprint).collect();
            return match typed.len() {
                0 => Ok(0),
                1 => Ok(typed.into_iter().next().unwrap_or(0)),
                _ => Err(Failure(format!(
                    "the subscribers of {name} expect different schemas ({}): choose one with \
                     --fingerprint",
                    typed
                        .iter()
                        .map(|f| format!("{f:016x}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure(if subscribers.is_empty() {
                format!(
                    "no peer subscribes to {name} (waited {}; `bus peers` lists who is there)",
                    humantime::format_duration(wait)
                )
            } else {
                format!(
                    "the subscribers of {name} did not describe it within {}: give --fingerprint",
                    humantime::format_duration(wait)
                )
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report_json(report: &DeliveryReport, delivered: bool) -> serde_json::Value {
    let ids = |peers: &[bus_actors::PeerId]| -> Vec<String> {
        peers.iter().map(ToString::to_string).collect()
    };
    json!({
        "delivered": delivered,
        "message_id": report.message_id,
        "acked": ids(&report.acked),
        "left": ids(&report.left),
        "missing": ids(&report.missing),
    })
}
