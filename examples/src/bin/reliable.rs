//! Reliable delivery and its reports: a control room publishes readings reliably to two
//! boilers on loopback; each publish resolves with who acknowledged. Then one boiler's process
//! dies without a goodbye: the next reading's report names it missing once the deadline
//! passes; once its silence outlasts its liveness timeout it is no longer owed anything. The
//! other boiler gets every reading exactly once.
//!
//! ```sh
//! cargo run -p examples --bin reliable
//! ```

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc as std_mpsc;

use actix::prelude::*;
use bus_actors::{Bus, BusBuilder, Error, Event, keys};
use examples::plant::{Temperature, reading};

/// Counts what a boiler receives.
struct Boiler {
    name: &'static str,
}

impl Actor for Boiler {
    type Context = Context<Self>;
}

impl Handler<Event<Temperature>> for Boiler {
    type Result = ();
    fn handle(&mut self, event: Event<Temperature>, _: &mut Context<Self>) {
        println!("    {} got {:.1} °C", self.name, event.message.celsius);
    }
}

fn builder(key: [u8; 32], port: u16) -> BusBuilder {
    Bus::builder()
        .cluster_psk(key)
        .group(SocketAddr::from(([239, 255, 28, 12], port)))
        .beacon_interval(bus_actors::Duration::from_millis(250))
        .reliable_deadline(bus_actors::Duration::from_secs(1))
}

/// A boiler in a thread (and actix system) of its own; it dies, saying no goodbye, when the
/// sender returned is used or dropped.
fn boiler(
    name: &'static str,
    key: [u8; 32],
    port: u16,
) -> (
    std_mpsc::Receiver<bus_actors::PeerId>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (started, ready) = std_mpsc::channel();
    let (die, death) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        System::new().block_on(async move {
            let Ok(bus) = builder(key, port).metadata("role", name).start().await else {
                return;
            };
            let subscribed = bus.subscribe::<Temperature>(Boiler { name }.start().recipient());
            if subscribed.await.is_ok() {
                let _ = started.send(bus.local_id());
            }
            let _ = death.await;
            // Returning drops the system, its actors and its sockets, without `shutdown`.
        });
    });
    (ready, die)
}

#[actix::main]
async fn main() -> ExitCode {
    examples::log_to_stderr();
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reliable: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Error> {
    let key = keys::random_key();
    let port = 17_832;
    let (north_ready, _north) = boiler("north", key, port);
    let (south_ready, south) = boiler("south", key, port);
    let (north, south_id) = (north_ready.recv(), south_ready.recv());
    let (Ok(north), Ok(south_id)) = (north, south_id) else {
        return Err(Error::Config("a boiler did not start".into()));
    };
    let control = builder(key, port).start().await?;
    control
        .wait_for_subscribers::<Temperature>(2, bus_actors::Duration::from_secs(10))
        .await?;
    println!("control room publishes to north ({north}) and south ({south_id})");
    let mut ok = true;
    for i in 0..3 {
        let report = control
            .publish_reliable(reading("control", 80.0, i))
            .await?;
        println!("reading {i}: acknowledged by {:?}", report.acked);
        ok &= report.acked.len() == 2;
    }
    println!("south's process dies");
    let _ = south.send(());
    // Still a subscriber as far as anyone knows: retransmitted to it until the deadline, and
    // named missing.
    match control.publish_reliable(reading("control", 80.0, 3)).await {
        Err(Error::Undelivered { report, .. }) => {
            println!(
                "reading 3: acknowledged by {:?}, missing {:?}",
                report.acked, report.missing
            );
            ok &= report.acked == [north] && report.missing == [south_id];
        }
        other => {
            println!("reading 3: {other:?}");
            ok = false;
        }
    }
    // By now its silence outlasted its liveness timeout: it is unreachable, and not owed.
    let report = control
        .publish_reliable(reading("control", 80.0, 4))
        .await?;
    println!(
        "reading 4: acknowledged by {:?} (south is unreachable)",
        report.acked
    );
    ok &= report.acked == [north];
    control.shutdown().await?;
    println!(
        "{}",
        if ok {
            "every report was as expected"
        } else {
            "some report was not as expected"
        }
    );
    Ok(ok)
}
