//! The bus's metrics in Prometheus's text format: two peers on loopback exchange readings,
//! reliably, while an exporter serves every counter (datagrams, frames, drops by reason,
//! reliable messages, round-trip times) at `http://127.0.0.1:9898/metrics` for a scraper. Ends
//! after `--for`.
//!
//! ```sh
//! cargo run -p examples --bin prometheus
//! curl -s http://127.0.0.1:9898/metrics | grep bus_      # meanwhile, in another terminal
//! ```

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, Event, keys};
use clap::Parser;
use examples::plant::{Temperature, reading};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Two peers, and their metrics served over HTTP.
#[derive(Parser)]
#[command(name = "prometheus")]
struct Args {
    /// Where to serve the metrics (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:9898")]
    listen: SocketAddr,
    /// The group port the two peers meet on.
    #[arg(long, default_value_t = 17_831)]
    port: u16,
    /// When to stop.
    #[arg(long = "for", default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

/// Takes readings and does nothing with them: the metrics are the point.
struct Sink;

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Event<Temperature>> for Sink {
    type Result = ();
    fn handle(&mut self, _: Event<Temperature>, _: &mut Context<Self>) {}
}

#[actix::main]
async fn main() -> ExitCode {
    examples::log_to_stderr();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prometheus: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    PrometheusBuilder::new()
        .with_http_listener(args.listen)
        .install()?;
    println!("serving metrics at http://{}/metrics", args.listen);
    let key = keys::random_key();
    let start = || {
        Bus::builder()
            .cluster_psk(key)
            .group(SocketAddr::from(([239, 255, 28, 12], args.port)))
            .start()
    };
    let (publisher, subscriber) = (start().await?, start().await?);
    subscriber
        .subscribe::<Temperature>(Sink.start().recipient())
        .await?;
    publisher
        .wait_for_subscribers::<Temperature>(1, Duration::from_secs(10))
        .await?;
    let publishing = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for i in 0.. {
            tick.tick().await;
            publisher
                .publish_reliable(reading("north", 70.0, i))
                .await?;
        }
        Ok::<(), bus_actors::Error>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(args.duration, publishing).await {
        return Err(e.into());
    }
    publisher.shutdown().await?;
    subscriber.shutdown().await?;
    Ok(())
}
