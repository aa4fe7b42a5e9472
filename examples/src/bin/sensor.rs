//! Sensor telemetry with a live terminal view: each run is one thermometer of the plant that
//! publishes a reading every half second and shows every sensor's latest reading, redrawn as
//! they come. Run a few in several terminals with one key; each ends after `--for`.
//!
//! ```sh
//! cargo run -p bus-cli -- keygen plant.key    # once: the `bus` CLI makes the key
//! cargo run -p examples --bin sensor -- --psk-file plant.key --name north
//! cargo run -p examples --bin sensor -- --psk-file plant.key --name south   # another terminal
//! ```
//!
//! `bus --psk-file plant.key listen plant/boiler/temperature` shows the same readings as JSON.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, Event, keys};
use clap::Parser;
use examples::plant::{Temperature, publish_readings};

/// One thermometer: publishes its readings and shows everyone's.
#[derive(Parser)]
#[command(name = "sensor")]
struct Args {
    /// This sensor's name.
    #[arg(long, default_value = "boiler")]
    name: String,
    /// The cluster key file (`bus keygen FILE` makes one); without it, a key of the run's own
    /// that no other process has.
    #[arg(long)]
    psk_file: Option<PathBuf>,
    /// How often to publish.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    every: Duration,
    /// When to stop.
    #[arg(long = "for", default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Prints each reading on a line of its own instead of redrawing the view.
    #[arg(long)]
    plain: bool,
}

/// Keeps every sensor's latest reading and redraws them.
struct View {
    latest: BTreeMap<String, (f64, String)>,
    plain: bool,
    bus: Bus,
}

impl Actor for View {
    type Context = Context<Self>;
}

impl Handler<Event<Temperature>> for View {
    type Result = ();
    fn handle(&mut self, event: Event<Temperature>, _: &mut Context<Self>) {
        let at = humantime::format_rfc3339_millis(self.bus.wall_time(event.received_at));
        let Temperature { sensor, celsius } = event.into_message();
        if self.plain {
            println!("{at} {sensor:<12} {celsius:6.1} °C");
            return;
        }
        self.latest.insert(sensor, (celsius, at.to_string()));
        // Clear the screen and go home, then the table.
        print!("\x1b[2J\x1b[H");
        println!("{:<12} {:>8}  received", "sensor", "°C");
        for (sensor, (celsius, at)) in &self.latest {
            println!("{sensor:<12} {celsius:8.1}  {at}");
        }
    }
}

#[actix::main]
async fn main() -> ExitCode {
    examples::log_to_stderr();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sensor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), bus_actors::Error> {
    let key = match &args.psk_file {
        Some(file) => keys::load_key(file)?,
        None => keys::random_key(),
    };
    let bus = Bus::builder()
        .cluster_psk(key)
        .metadata("sensor", args.name.clone())
        .start()
        .await?;
    // Where to find it without multicast: `bus --seed ADDR ...`.
    eprintln!(
        "sensor {} is peer {} at {}",
        args.name,
        bus.local_id(),
        bus.local_addr()
    );
    let view = View {
        latest: BTreeMap::new(),
        plain: args.plain,
        bus: bus.clone(),
    };
    bus.subscribe::<Temperature>(view.start().recipient())
        .await?;
    let base = 60.0 + f64::from(args.name.bytes().map(u32::from).sum::<u32>() % 40);
    let publishing = publish_readings(&bus, &args.name, base, args.every, None);
    // Ends when the time is up (publishing for ever ends only on an error).
    if let Ok(Err(e)) = tokio::time::timeout(args.duration, publishing).await {
        return Err(e);
    }
    bus.shutdown().await
}
