//! `bus`: the bus from a shell. It joins the cluster as a peer of its own (on loopback unless
//! told otherwise) and lists peers, prints a topic's messages as JSON lines, publishes JSON,
//! makes key files, and shows what the network looks like from where it stands.
//!
//! ```sh
//! bus --insecure peers
//! bus --psk-file cluster.key listen demo/temperature
//! bus --psk-file cluster.key publish demo/temperature '{"sensor": "a", "celsius": 21.5}' --reliable
//! bus keygen cluster.key
//! bus --insecure bench --size 1024
//! ```
//!
//! `RUST_LOG` sets what the bus logs to standard error (warnings by default).

#![allow(clippy::print_stdout)]

mod bench;
mod connect;
mod forward;
mod json;
mod keygen;
mod listen;
mod peers;
mod publish;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The bus from a shell: peers, topics as JSON, keys and metrics.
#[derive(Debug, Parser)]
#[command(name = "bus", version)]
struct Cli {
    #[command(flatten)]
    connect: connect::ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the peers this one finds: id, address, round-trip time, clock offset, topics by
    /// name, metadata, last seen.
    Peers(peers::Args),
    /// Prints the messages of topics as JSON lines (MessagePack payloads decoded).
    Listen(listen::Args),
    /// Publishes one message, given as JSON, to a topic's subscribers.
    Publish(publish::Args),
    /// Writes a new key file (a cluster pre-shared key, or an X25519 private key).
    Keygen(keygen::Args),
    /// Joins for a while and prints this peer's counters: datagrams, frames and drops by
    /// reason, and the misconfigurations it saw.
    Stats(stats::Args),
    /// Measures throughput (and, reliable, acknowledgement times) between two peers of its
    /// own on the flags' network.
    Bench(bench::Args),
}

/// A failure the user can act on: printed as one line, exit status 1.
#[derive(Debug)]
pub(crate) struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        // Needs no bus.
        Command::Keygen(args) => keygen::run(&args),
        command => actix::System::new().block_on(run(cli.connect, command)),
    };
    match result {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("bus: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(connect: connect::ConnectArgs, command: Command) -> Result<ExitCode, Failure> {
    let bus = connect.start().await?;
    let result = match command {
        Command::Peers(args) => peers::run(&bus, &args).await,
        Command::Listen(args) => listen::run(&bus, &args).await,
        Command::Publish(args) => publish::run(&bus, &args).await,
        Command::Stats(args) => stats::run(&bus, &args).await,
        Command::Bench(args) => bench::run(&bus, &connect, &args).await,
        Command::Keygen(args) => keygen::run(&args),
    };
    // Said goodbye either way, so that peers do not wait out a liveness timeout.
    let _ = bus.shutdown().await;
    result
}
