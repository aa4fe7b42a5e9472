//! `bus bench`: how fast the bus goes here: a publisher and a subscriber in this process, on
//! the flags' group, interface and keys, one message at a time, with a progress bar; then the
//! summary. Reliable runs also time each message's acknowledgement.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bus_actors::{Bus, RawEvent, UntypedTopic};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Failure;
use crate::connect::ConnectArgs;

/// Publishes as fast as it can for `--for` and counts what arrives.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// How long to publish.
    #[arg(long = "for", default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Publishes reliably, each message acknowledged before the next (the acknowledgement's
    /// round trip is timed), instead of best effort.
    #[arg(long)]
    reliable: bool,
}

const TOPIC: &str = "bench/cli";

/// Counts what it receives.
struct Count(Arc<AtomicU64>);

impl Actor for Count {
    type Context = Context<Self>;
}

impl Handler<RawEvent> for Count {
    type Result = ();
    fn handle(&mut self, _: RawEvent, _: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) async fn run(
    publisher: &Bus,
    connect: &ConnectArgs,
    args: &Args,
) -> Result<ExitCode, Failure> {
    let subscriber = connect.start().await?;
    let received = Arc::new(AtomicU64::new(0));
    subscriber
        .subscribe_untyped(TOPIC, Count(received.clone()).start().recipient())
        .await?;
    let topic = UntypedTopic::new(TOPIC, 0)?;
    let ready = tokio::time::Instant::now() + Duration::from_secs(10);
    while !publisher
        .peers()
        .iter()
        .any(|p| p.id == subscriber.local_id() && p.confirmed && p.topics.contains(&topic.id()))
    {
        if tokio::time::Instant::now() >= ready {
            return Err(Failure(
                "the subscriber of this run was not found within 10 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bar = ProgressBar::new(args.duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {elapsed_precise} {msg}")
            .map_err(|e| Failure(e.to_string()))?,
    );
    let payload = vec![0xa5u8; args.size];
    let started = Instant::now();
    let (mut sent, mut round_trips) = (0u64, Vec::new());
    let mut last_shown = started;
    while started.elapsed() < args.duration {
        if args.reliable {
            let at = Instant::now();
            publisher.publish_untyped_reliable(&topic, &payload).await?;
            round_trips.push(at.elapsed().as_secs_f64() * 1e6);
        } else {
            publisher.publish_untyped(&topic, &payload).await?;
        }
        sent += 1;
        if last_shown.elapsed() >= Duration::from_millis(100) {
            last_shown = Instant::now();
            let rate = received.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
            bar.set_position(started.elapsed().as_millis() as u64);
            bar.set_message(format!("{rate:.0} msgs/s received"));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // What is still on its way arrives within a moment.
    let settle = Instant::now();
    while received.load(Ordering::Relaxed) < sent && settle.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bar.finish_and_clear();
    let got = received.load(Ordering::Relaxed);
    let mode = if args.reliable {
        "reliable"
    } else {
        "best effort"
    };
    println!(
        "{mode}, {} B: sent {sent}, received {got} ({:.1}%), {:.0} msgs/s, {:.1} MB/s",
        args.size,
        got as f64 * 100.0 / sent.max(1) as f64,
        got as f64 / elapsed,
        got as f64 * args.size as f64 / elapsed / 1e6
    );
    if !round_trips.is_empty() {
        round_trips.sort_by(f64::total_cmp);
        let pct = |q: f64| round_trips[((round_trips.len() - 1) as f64 * q).round() as usize];
        println!(
            "acknowledged after: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
    let _ = subscriber.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
