//! Loopback benchmarks of the bus, with the interface and output of the Zenoh harness in
//! `shared/peer-bench/zenoh`, so `compare.sh` can run both side by side.
//!
//! ```text
//! bus-bench thr --size N [--secs S] [--warmup S] [--reliability best_effort] [--runs R]
//! ```
//!
//! `thr`: the parent publishes as fast as it can; a child process (this binary, spawned with a
//! hidden subcommand) subscribes and counts deliveries for `--secs` after `--warmup`, then
//! reports. One line per result on stdout:
//! `peer=bus mode=thr transport=udp reliability=best_effort size=64 msgs_per_s=... mb_per_s=...`
//! With `--runs R` > 1, each run goes to stderr and the median to stdout. `--reliability
//! reliable --laggard true` adds a subscriber that never acknowledges (its acks are dropped
//! before they leave), and reports the others' rate.
//!
//! `rpc`: a child process serves an echo procedure by number; the parent calls it one call at
//! a time (`mode=rpc`, round-trip percentiles), then from `--concurrency` callers at once for
//! `--secs` (`mode=rpc_thr`, `calls_per_s`).
//!
//! Everything stays on loopback: both peers bind to 127.0.0.1 and join their group there, on a
//! port of their own.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod handshake;
mod idle;
mod lat;
mod mem;
mod rpc;
mod thr;

use actix::prelude::*;
use bus_actors::transport::{Faults, SimHub};
use bus_actors::{Event, Topic, WindowLimits};
use bus_core::sim::{LinkConfig, NodeId};
use clap::{Parser, ValueEnum};
use futures_util::stream::{FuturesUnordered, StreamExt};
use integration::{await_subscribers, builder, events, secure_builder, sim_builders, test_group};
use serde::{Deserialize, Serialize};

/// The benchmark's message: opaque bytes of the requested size.
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "bench/thr")]
pub(crate) struct Blob {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

type Res<T> = Result<T, String>;

use handshake::{HandshakeArgs, handshakes};
use idle::{IdleArgs, idle};
use lat::{LatArgs, LatPongArgs, UdpLatArgs, lat, lat_pong, udp_echo, udp_lat};
use mem::{MemArgs, MemOneArgs, mem, mem_one};
use rpc::{RpcArgs, RpcServerArgs, rpc, rpc_server};
use thr::{ThrArgs, ThrSubArgs, thr, thr_sub};

/// Loopback benchmarks of the bus; every result is one line on stdout, in the Zenoh harness's
/// format.
#[derive(Parser)]
#[command(name = "bus-bench")]
enum Cli {
    /// Throughput: one publisher, subscriber processes counting deliveries.
    Thr(ThrArgs),
    /// Round trips of a ping and its pong between two processes.
    Lat(LatArgs),
    /// Round trips of raw UDP datagrams between two processes: the floor under `lat`.
    UdpLat(UdpLatArgs),
    /// Memory per pending event, per subscription, per peer and per bare actor.
    Mem(MemArgs),
    /// CPU that idle peers cost.
    Idle(IdleArgs),
    /// Handshakes per second.
    Handshake(HandshakeArgs),
    /// Calls of a procedure in another process: latency one at a time, then calls per second
    /// with many callers.
    Rpc(RpcArgs),
    /// One memory measurement, in this process.
    #[command(name = "_mem", hide = true)]
    MemOne(MemOneArgs),
    /// The pong side of `lat`.
    #[command(name = "_lat-pong", hide = true)]
    LatPong(LatPongArgs),
    /// The echo side of `udp-lat`.
    #[command(name = "_udp-echo", hide = true)]
    UdpEcho,
    /// The server side of `rpc`.
    #[command(name = "_rpc-server", hide = true)]
    RpcServer(RpcServerArgs),
    /// A counting subscriber of `thr`.
    #[command(name = "_thr-sub", hide = true)]
    ThrSub(ThrSubArgs),
}

/// Best effort or reliable.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
enum Reliability {
    #[value(name = "best_effort")]
    BestEffort,
    #[value(name = "reliable")]
    Reliable,
}

impl Reliability {
    fn as_str(self) -> &'static str {
        match self {
            Reliability::BestEffort => "best_effort",
            Reliability::Reliable => "reliable",
        }
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse() {
        Cli::Thr(args) => thr(&args),
        Cli::Lat(args) => System::new().block_on(lat(&args)),
        Cli::UdpLat(args) => udp_lat(&args),
        Cli::Mem(args) => mem(&args),
        Cli::Idle(args) => System::new().block_on(idle(&args)),
        Cli::Handshake(args) => handshakes(&args),
        Cli::Rpc(args) => System::new().block_on(rpc(&args)),
        Cli::RpcServer(args) => System::new().block_on(rpc_server(args)),
        Cli::MemOne(args) => System::new().block_on(mem_one(&args)),
        Cli::LatPong(args) => System::new().block_on(lat_pong(args)),
        Cli::UdpEcho => udp_echo(),
        Cli::ThrSub(args) => System::new().block_on(thr_sub(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bus-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// CPU time (user and system) this process has used, in seconds; 0 where unknown.
fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat, after the parenthesised command name.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    // The kernel's USER_HZ, 100 on Linux.
    ticks / 100.0
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> Res<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").map_err(|e| e.to_string())?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or("unreadable /proc/self/statm")?;
    Ok(pages * 4096)
}

/// The benchmark cluster's key, for `--encrypted` runs.
const BENCH_KEY: [u8; 32] = [0xbe; 32];

/// How the benchmark's buses talk: what both sides of a run must agree on.
#[derive(clap::Args, Clone, Copy, Debug)]
struct Link {
    /// Share of sent datagrams dropped (both directions), for the loss scenario.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Encrypt with a cluster key.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    encrypted: bool,
    /// The largest datagram, headers included (default: the bus's for loopback).
    #[arg(long)]
    max_datagram: Option<usize>,
    /// Microseconds to keep polling after each datagram; 0: off.
    #[arg(long, default_value_t = 0)]
    busy_poll_us: u64,
}

impl Link {
    /// The same link, as arguments for a child process.
    fn child_args(&self) -> Vec<String> {
        let mut out = vec![
            "--loss".to_owned(),
            self.loss.to_string(),
            "--encrypted".to_owned(),
            self.encrypted.to_string(),
        ];
        if let Some(bytes) = self.max_datagram {
            out.extend(["--max-datagram".to_owned(), bytes.to_string()]);
        }
        if self.busy_poll_us > 0 {
            out.extend(["--busy-poll-us".to_owned(), self.busy_poll_us.to_string()]);
        }
        out
    }
}

/// This binary's hidden subcommand `role` on `group` over `link`, the other side of a
/// measurement: it runs until its stdin closes.
fn other_side(role: &str, group: SocketAddr, link: &Link) -> Res<Command> {
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command
        .args([role, "--group", &group.to_string()])
        .args(link.child_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    Ok(command)
}

/// On the other side: waits until the parent closes our stdin.
async fn until_parent_is_done() {
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0; 1])).await;
}

/// A bus on `group` over `link`.
fn bench_builder(group: SocketAddr, link: &Link, seed: u64) -> bus_actors::BusBuilder {
    let builder = if link.encrypted {
        secure_builder(group, BENCH_KEY)
    } else {
        builder(group)
    };
    let builder = match link.max_datagram {
        Some(bytes) => builder.max_datagram(bytes),
        None => builder,
    }
    .busy_poll(bus_actors::Duration::from_micros(link.busy_poll_us));
    if link.loss > 0.0 {
        builder.liveness_factor(10).inject_faults(Faults {
            loss: link.loss,
            duplicate: 0.0,
            seed,
            ..Faults::NONE
        })
    } else {
        builder
    }
}

/// Parent: spawn the counting subscribers, publish until they report; the slowest one's rate.
/// Counts deliveries.
struct Count(Arc<AtomicU64>);

impl Actor for Count {
    type Context = Context<Self>;
}

impl Handler<Event<Blob>> for Count {
    type Result = ();
    fn handle(&mut self, _: Event<Blob>, _: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}
