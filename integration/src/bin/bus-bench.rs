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
//! With `--runs R` > 1, each run goes to stderr and the median to stdout.
//!
//! Everything stays on loopback: both peers bind to 127.0.0.1 and join their group there, on a
//! port of their own.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bus_actors::transport::{Faults, SimHub};
use bus_actors::{Event, Topic, WindowLimits};
use bus_core::sim::{LinkConfig, NodeId};
use futures_util::stream::{FuturesUnordered, StreamExt};
use integration::{await_subscribers, builder, events, secure_builder, sim_builders, test_group};
use serde::{Deserialize, Serialize};

/// The benchmark's message: opaque bytes of the requested size.
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "bench/thr")]
struct Blob {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

type Res<T> = Result<T, String>;

struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Res<Args> {
        let mut map = HashMap::new();
        let mut it = raw.iter().peekable();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or(format!("unexpected argument {flag:?}"))?;
            // A flag with no value (`--encrypted`) means true.
            let value = match it.peek() {
                Some(next) if !next.starts_with("--") => it.next().cloned().unwrap_or_default(),
                _ => "true".to_owned(),
            };
            map.insert(name.to_owned(), value);
        }
        Ok(Args(map))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad number {v:?}")),
        }
    }

    fn str<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.0.get(name).map_or(default, String::as_str)
    }
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = raw.split_first() else {
        eprintln!(
            "usage: bus-bench thr --size N [--secs S] [--warmup S] [--reliability R] [--runs R]"
        );
        return ExitCode::from(2);
    };
    // `_mem WHAT --flags`: the one command with a positional argument.
    let (what, rest) = match (command.as_str(), rest.split_first()) {
        ("_mem", Some((what, flags))) => (what.as_str(), flags),
        _ => ("", rest),
    };
    let result = Args::parse(rest).and_then(|args| match command.as_str() {
        "thr" => thr(&args),
        "mem" => mem(&args),
        "_mem" => System::new().block_on(mem_one(what, &args)),
        "handshake" => handshakes(&args),
        "lat" => System::new().block_on(lat(&args)),
        "_lat-pong" => System::new().block_on(lat_pong(args)),
        "udp-lat" => udp_lat(&args),
        "_udp-echo" => udp_echo(&args),
        "_thr-sub" => System::new().block_on(thr_sub(args)),
        other => Err(format!("unknown command {other:?}")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bus-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn thr(args: &Args) -> Res<()> {
    let size: usize = args.num("size", 64)?;
    let secs: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let runs: usize = args.num("runs", 1)?;
    let reliability = args.str("reliability", "best_effort");
    let reliable = match reliability {
        "best_effort" => false,
        "reliable" => true,
        other => return Err(format!("--reliability {other}: best_effort or reliable")),
    };
    let subscribers: usize = args.num("subscribers", 1)?;
    let link = Link::from_args(args)?;
    let run = ThrRun {
        size,
        secs,
        warmup,
        reliable,
        subscribers: subscribers.max(1),
        batch: args.num("batch", 1)?,
        link,
    };
    let mut rates = Vec::new();
    for n in 0..runs.max(1) {
        let rate = System::new().block_on(thr_once(&run))?;
        let line = thr_line(reliability, size, subscribers, rate);
        if runs > 1 {
            eprintln!("# run {}/{runs}: {line}", n + 1);
        }
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{}",
        thr_line(reliability, size, subscribers, rates[rates.len() / 2])
    );
    Ok(())
}

/// A result line; with several subscribers, `rate` is the slowest one's and a field says how many.
fn thr_line(reliability: &str, size: usize, subscribers: usize, rate: f64) -> String {
    let fan_out = if subscribers > 1 {
        format!(" subscribers={subscribers}")
    } else {
        String::new()
    };
    format!(
        "peer=bus mode=thr transport=udp reliability={reliability} size={size}{fan_out} msgs_per_s={rate:.0} mb_per_s={:.2}",
        rate * size as f64 / 1e6
    )
}

/// One throughput run's parameters.
struct ThrRun {
    size: usize,
    secs: f64,
    warmup: f64,
    reliable: bool,
    subscribers: usize,
    /// Reliable messages per `publish_reliable_batch` call; 1: one `publish_reliable` each.
    batch: usize,
    link: Link,
}

/// The benchmark cluster's key, for `--encrypted` runs.
const BENCH_KEY: [u8; 32] = [0xbe; 32];

/// How the benchmark's buses talk: what both sides of a run must agree on.
#[derive(Clone, Copy, Debug)]
struct Link {
    /// Share of sent datagrams dropped (both directions), for the loss scenario.
    loss: f64,
    encrypted: bool,
    /// `None`: the bus's default for loopback.
    max_datagram: Option<usize>,
    /// Microseconds to keep polling after each datagram; 0: off (the default).
    busy_poll_us: u64,
}

impl Link {
    fn from_args(args: &Args) -> Res<Link> {
        Ok(Link {
            loss: args.num("loss", 0.0)?,
            encrypted: args.str("encrypted", "false") == "true",
            max_datagram: args
                .0
                .get("max-datagram")
                .map(|v| v.parse())
                .transpose()
                .map_err(|_| "--max-datagram: bad number")?,
            busy_poll_us: args.num("busy-poll-us", 0)?,
        })
    }

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
        })
    } else {
        builder
    }
}

/// Parent: spawn the counting subscribers, publish until they report; the slowest one's rate.
async fn thr_once(run: &ThrRun) -> Res<f64> {
    let group = test_group();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // Publishing goes on until every subscriber has reported.
    let reported = Arc::new(AtomicUsize::new(0));
    let mut children = Vec::new();
    for _ in 0..run.subscribers {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args([
                "_thr-sub",
                "--group",
                &group.to_string(),
                "--secs",
                &run.secs.to_string(),
                "--warmup",
                &run.warmup.to_string(),
            ])
            .args(run.link.child_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn subscriber: {e}"))?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let (tx, reported) = (done_tx.clone(), reported.clone());
        let reader = std::thread::spawn(move || {
            let mut result = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(v) = line.trim().strip_prefix("RESULT msgs_per_s=") {
                    result = v.parse::<f64>().ok();
                    break;
                }
            }
            reported.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(result);
        });
        children.push((child, reader));
    }

    let bus = bench_builder(group, &run.link, 1)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let mut ev = events(&bus);
    await_subscribers(
        &bus,
        &mut ev,
        Blob::ID,
        run.subscribers,
        Duration::from_secs(30),
    )
    .await;
    let data = vec![0x5a; run.size];
    let hard_stop = Instant::now() + Duration::from_secs_f64(run.secs + run.warmup + 60.0);
    let done = || reported.load(Ordering::Relaxed) == run.subscribers;
    let cpu_before = cpu_seconds();
    if run.reliable && run.batch > 1 {
        // The window's worth outstanding, in batches: each resolves when all its messages are
        // acknowledged.
        let mut in_flight = FuturesUnordered::new();
        while !done() && Instant::now() < hard_stop {
            while in_flight.len() * run.batch < 4096 {
                let batch = (0..run.batch).map(|_| Blob { data: data.clone() });
                in_flight.push(bus.publish_reliable_batch(batch));
            }
            match in_flight.next().await {
                Some(Ok(reports)) if reports.iter().all(|r| r.is_complete()) => {}
                other => return Err(format!("reliable batch failed: {other:?}")),
            }
        }
    } else if run.reliable {
        // Keep the window full: as many sends outstanding as the per-peer window holds (4096 by
        // default), each resolving on its acknowledgement. More would only queue publishers.
        let mut in_flight = FuturesUnordered::new();
        while !done() && Instant::now() < hard_stop {
            while in_flight.len() < 4096 {
                in_flight.push(bus.publish_reliable(Blob { data: data.clone() }));
            }
            if let Some(Err(e)) = in_flight.next().await {
                return Err(format!("reliable send failed: {e}"));
            }
        }
    }
    if run.reliable {
        let stats = bus.metrics().reliable;
        let cpu = cpu_seconds() - cpu_before;
        eprintln!(
            "# sent={} retransmitted={} acked={} expired={} retransmissions_per_message={:.4} pending_peak={} publisher_cpu_us_per_message={:.2}",
            stats.sent,
            stats.retransmitted,
            stats.acked,
            stats.expired,
            stats.retransmitted as f64 / stats.acked.max(1) as f64,
            stats.pending_peak,
            cpu * 1e6 / stats.sent.max(1) as f64,
        );
    } else {
        let mut sent: u64 = 0;
        while !done() {
            bus.publish(Blob { data: data.clone() })
                .await
                .map_err(|e| e.to_string())?;
            sent += 1;
            if sent.is_multiple_of(1024) {
                if Instant::now() > hard_stop {
                    break;
                }
                // Let the socket actor and timers run between bursts.
                tokio::task::yield_now().await;
            }
        }
    }
    let mut rates = Vec::new();
    for _ in 0..run.subscribers {
        let rate = done_rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
        rates.push(rate.ok_or("thr: a subscriber reported no result")?);
    }
    let _ = bus.shutdown().await;
    for (mut child, reader) in children {
        drop(child.stdin.take());
        let _ = child.wait();
        let _ = reader.join();
    }
    Ok(rates.into_iter().fold(f64::INFINITY, f64::min))
}

/// A ping of the latency benchmark, echoed back as a [`Pong`].
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "bench/ping")]
struct Ping {
    seq: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// The echo of a [`Ping`].
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "bench/pong")]
struct Pong {
    seq: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Ping-pong, one in flight: round-trip percentiles through both buses and their actors.
async fn lat(args: &Args) -> Res<()> {
    let size: usize = args.num("size", 64)?;
    let count: usize = args.num("count", 10_000)?;
    let warmup: usize = args.num("warmup-count", 500)?;
    let reliability = args.str("reliability", "best_effort").to_owned();
    if reliability != "best_effort" {
        return Err("lat: only best_effort is measured".into());
    }
    let link = Link::from_args(args)?;
    let group = test_group();
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["_lat-pong", "--group", &group.to_string()])
        .args(link.child_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn pong: {e}"))?;
    let bus = bench_builder(group, &link, 3)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let mut pongs = integration::subscribe::<Pong>(&bus).await;
    let mut ev = events(&bus);
    await_subscribers(&bus, &mut ev, Ping::ID, 1, Duration::from_secs(30)).await;
    let data = vec![0x5a; size.saturating_sub(8)];
    let mut rtts = Vec::with_capacity(count);
    let started = Instant::now();
    for seq in 0..(warmup + count) as u64 {
        let sent = Instant::now();
        bus.publish(Ping {
            seq,
            data: data.clone(),
        })
        .await
        .map_err(|e| e.to_string())?;
        loop {
            let pong = tokio::time::timeout(Duration::from_secs(5), pongs.recv())
                .await
                .map_err(|_| format!("lat: no pong for {seq} within 5 s"))?
                .ok_or("lat: pong channel closed")?;
            if pong.message.seq == seq {
                break;
            }
        }
        if seq as usize >= warmup {
            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "peer=bus mode=lat transport=udp reliability=best_effort size={size} msgs_per_s={:.0} {}",
        (warmup + count) as f64 / elapsed,
        rtt_fields(&mut rtts)
    );
    let _ = bus.shutdown().await;
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}

/// Percentiles of sorted round-trip times, as the result line's fields.
fn rtt_fields(rtts: &mut [f64]) -> String {
    rtts.sort_by(f64::total_cmp);
    let pct = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50_us={:.1} p90_us={:.1} p99_us={:.1}",
        pct(0.5),
        pct(0.9),
        pct(0.99)
    )
}

/// The floor for `lat`: ping-pong over plain blocking UDP sockets between this process and a
/// child echoing on 127.0.0.1, one datagram in flight, no bus.
fn udp_lat(args: &Args) -> Res<()> {
    let size: usize = args.num("size", 64)?;
    let count: usize = args.num("count", 10_000)?;
    let warmup: usize = args.num("warmup-count", 500)?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["_udp-echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn echo: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no child stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let echo: SocketAddr = line
        .trim()
        .parse()
        .map_err(|e| format!("echo address {line:?}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0x5a; size.max(8)];
    let mut rtts = Vec::with_capacity(count);
    for seq in 0..(warmup + count) as u64 {
        buf[..8].copy_from_slice(&seq.to_be_bytes());
        let sent = Instant::now();
        socket.send_to(&buf, echo).map_err(|e| e.to_string())?;
        loop {
            let (n, _) = socket
                .recv_from(&mut buf)
                .map_err(|e| format!("udp-lat: no echo of {seq}: {e}"))?;
            if n >= 8 && buf[..8] == seq.to_be_bytes() {
                break;
            }
        }
        if seq as usize >= warmup {
            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
        }
    }
    println!(
        "peer=raw_udp mode=lat transport=udp reliability=best_effort size={size} {}",
        rtt_fields(&mut rtts)
    );
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// Child of `udp-lat`: prints its address, echoes every datagram to its sender.
fn udp_echo(_: &Args) -> Res<()> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("{}", socket.local_addr().map_err(|e| e.to_string())?);
    let mut buf = vec![0; 65_536];
    loop {
        let (n, from) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        socket.send_to(&buf[..n], from).map_err(|e| e.to_string())?;
    }
}

/// Echoes every ping it receives as a pong.
struct Echo(bus_actors::Bus);

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<Event<Ping>> for Echo {
    type Result = ();
    fn handle(&mut self, ping: Event<Ping>, ctx: &mut Context<Self>) {
        let bus = self.0.clone();
        let Ping { seq, data } = ping.into_message();
        ctx.spawn(
            async move {
                let _ = bus.publish(Pong { seq, data }).await;
            }
            .into_actor(self),
        );
    }
}

async fn lat_pong(args: Args) -> Res<()> {
    let group: SocketAddr = args
        .str("group", "")
        .parse()
        .map_err(|e| format!("--group: {e}"))?;
    let bus = bench_builder(group, &Link::from_args(&args)?, 4)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    bus.subscribe::<Ping>(Echo(bus.clone()).start().recipient())
        .await
        .map_err(|e| e.to_string())?;
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0; 1])).await;
    let _ = bus.shutdown().await;
    Ok(())
}

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

/// Child: subscribe, count for `--secs` after the first message and `--warmup`, report.
async fn thr_sub(args: Args) -> Res<()> {
    let group: SocketAddr = args
        .str("group", "")
        .parse()
        .map_err(|e| format!("--group: {e}"))?;
    let secs: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let bus = bench_builder(group, &Link::from_args(&args)?, 2)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    bus.subscribe::<Blob>(Count(count.clone()).start().recipient())
        .await
        .map_err(|e| e.to_string())?;
    let first = async {
        while count.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .map_err(|_| "thr-sub: no message within 30 s")?;
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    let (c0, t0) = (count.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (c1, t1) = (count.load(Ordering::Relaxed), Instant::now());
    let rate = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    println!("RESULT msgs_per_s={rate}");
    let _ = bus.shutdown().await;
    // Wait for the parent to finish with us (it closes our stdin).
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0; 1])).await;
    Ok(())
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

/// Each memory figure in a process of its own: memory freed by one measurement would be reused
/// by the next and make it look smaller.
fn mem(args: &Args) -> Res<()> {
    let count: u64 = args.num("count", 20_000)?;
    let size: usize = args.num("size", 64)?;
    for what in ["pending", "subscriptions", "peers", "actors"] {
        let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args([
                "_mem",
                what,
                "--count",
                &count.to_string(),
                "--size",
                &size.to_string(),
            ])
            .status()
            .map_err(|e| format!("spawn mem {what}: {e}"))?;
        if !status.success() {
            return Err(format!("mem {what} failed: {status}"));
        }
    }
    Ok(())
}

/// One memory measurement (`_mem WHAT`), in this process.
async fn mem_one(what: &str, args: &Args) -> Res<()> {
    let count: u64 = args.num("count", 20_000)?;
    match what {
        "pending" => mem_pending(count, args.num("size", 64)?).await,
        "subscriptions" => mem_subscriptions(count).await,
        "peers" => mem_peers(count.min(2000)).await,
        "actors" => mem_bare_actors(count).await,
        other => Err(format!("unknown memory measurement {other:?}")),
    }
}

/// Memory per pending reliable message: a publisher whose one subscriber is cut off holds
/// `count` messages of `size` bytes in flight; the growth of the resident set is divided among
/// them. Runs on the simulated network.
async fn mem_pending(count: u64, size: usize) -> Res<()> {
    let hub = SimHub::new(1, 2, LinkConfig::default());
    let mut make = sim_builders(&hub, 1);
    let room = usize::try_from(count + count / 10 + 1).map_err(|e| e.to_string())?;
    let limits = WindowLimits {
        per_peer_messages: room,
        per_peer_bytes: usize::MAX / 2,
        total_messages: room,
    };
    let publisher = make()
        .reliable_window(limits)
        .reliable_deadline(bus_actors::Duration::from_secs(600))
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let subscriber = make().start().await.map_err(|e| e.to_string())?;
    subscriber
        .subscribe::<Blob>(Count(Arc::new(AtomicU64::new(0))).start().recipient())
        .await
        .map_err(|e| e.to_string())?;
    let mut ev = events(&publisher);
    await_subscribers(&publisher, &mut ev, Blob::ID, 1, Duration::from_secs(10)).await;
    hub.with_network(|net| net.partition(&[NodeId(0)], &[NodeId(1)]));
    // Warm up allocators with a first batch, then measure the next.
    let data = vec![0x5a; size];
    let mut held = Vec::new();
    let mut measure = |n: u64| {
        for _ in 0..n {
            let bus = publisher.clone();
            let blob = Blob { data: data.clone() };
            held.push(actix::spawn(
                async move { bus.publish_reliable(blob).await },
            ));
        }
    };
    measure(count / 10);
    while publisher.metrics().reliable.pending < count / 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = rss_bytes()?;
    measure(count);
    while publisher.metrics().reliable.pending < count + count / 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = rss_bytes()?;
    let per_message = after.saturating_sub(before) as f64 / count as f64;
    // Part of that is the publisher's own: the spawned task holding its `publish_reliable`
    // future (a task adds a header of about 100 bytes).
    let future = std::mem::size_of_val(&publisher.publish_reliable(Blob { data: Vec::new() }));
    println!(
        "peer=bus mode=mem pending_messages={count} payload={size} bytes_per_pending_message={per_message:.0} publisher_future_bytes={future}"
    );
    Ok(())
}

/// The floor under the figures above: the resident set of an actix actor that holds nothing
/// (its context, mailbox and task), `count` of them alive at once.
async fn mem_bare_actors(count: u64) -> Res<()> {
    struct Bare;
    impl Actor for Bare {
        type Context = Context<Self>;
    }
    let mut held: Vec<Addr<Bare>> = (0..count / 10).map(|_| Bare.start()).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = rss_bytes()?;
    held.extend((0..count).map(|_| Bare.start()));
    // Let every actor's task run once, as a live actor's has.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per_actor = rss_bytes()?.saturating_sub(before) as f64 / count as f64;
    println!("peer=actix mode=mem actors={count} bytes_per_bare_actor={per_actor:.0}");
    Ok(())
}

/// Memory per subscription: `count` subscriptions of one recipient (so that only the bus's
/// side grows: a subscription actor, its counters, its registry entry).
async fn mem_subscriptions(count: u64) -> Res<()> {
    let bus = &builder(test_group())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let recipient = Count(Arc::new(AtomicU64::new(0))).start().recipient();
    let mut held = Vec::new();
    let mut subscribe = async |n: u64| -> Res<()> {
        for _ in 0..n {
            let subscription = bus
                .subscribe::<Blob>(recipient.clone())
                .await
                .map_err(|e| e.to_string())?;
            held.push(subscription);
        }
        // Let the subscription actors start.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    };
    subscribe(count / 10).await?;
    let before = rss_bytes()?;
    subscribe(count).await?;
    let per_subscription = rss_bytes()?.saturating_sub(before) as f64 / count as f64;
    println!(
        "peer=bus mode=mem subscriptions={count} bytes_per_subscription={per_subscription:.0}"
    );
    Ok(())
}

/// Memory per known peer: a bus on loopback hears beacons from `count` peers (crafted here,
/// each with an id and port of its own, none of them listening), and its resident set grows by
/// what it keeps for each: table entry, snapshot, peer actor.
async fn mem_peers(count: u64) -> Res<()> {
    use bus_core::wire::{Beacon, Frame, HeaderExtension, HeaderFlags, HeaderRepr};
    let bus = builder(test_group())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let send_beacons = |from: u64, to: u64| -> Res<()> {
        for i in from..to {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i + 1).to_be_bytes());
            let sender = bus_actors::PeerId(id);
            let mut packet = Vec::new();
            HeaderRepr {
                suite: 0,
                flags: HeaderFlags::empty(),
                session_index: 0,
                counter: i,
                extension: HeaderExtension::Plain { sender },
            }
            .emit(&mut packet);
            Frame::Beacon(Beacon {
                peer_id: sender,
                version: bus_core::wire::PROTOCOL_VERSION,
                leaving: false,
                unicast_port: 20_000 + u16::try_from(i % 40_000).unwrap_or(0),
                // Long enough that none expires while measuring.
                interval_ms: 600_000,
                topics: Vec::new(),
                metadata: Vec::new(),
            })
            .emit(&mut packet);
            socket
                .send_to(&packet, bus.local_addr())
                .map_err(|e| e.to_string())?;
            if i % 64 == 0 {
                // Paced so that the receive buffer never overflows.
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        Ok(())
    };
    let known = |n: u64| {
        let bus = bus.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while (bus.peers().len() as u64) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            bus.peers().len() as u64 >= n
        }
    };
    send_beacons(0, count / 10)?;
    if !known(count / 10).await {
        return Err("mem: the crafted peers were not all discovered".into());
    }
    let before = rss_bytes()?;
    send_beacons(count / 10, count + count / 10)?;
    if !known(count + count / 10).await {
        return Err("mem: the crafted peers were not all discovered".into());
    }
    let per_peer = rss_bytes()?.saturating_sub(before) as f64 / count as f64;
    println!("peer=bus mode=mem peers={count} bytes_per_peer={per_peer:.0}");
    let _ = bus.shutdown().await;
    Ok(())
}

/// Complete handshakes per second (both sides' work, on one core), PSK and public-key mode.
fn handshakes(args: &Args) -> Res<()> {
    use bus_core::crypto::handshake::{Credentials, Initiation, PresharedKey, respond};
    use bus_core::crypto::noise::Keypair;
    let secs: f64 = args.num("secs", 2.0)?;
    let client = Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?;
    let server = Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?;
    let modes = [
        (
            "psk",
            Credentials::Psk(PresharedKey(BENCH_KEY)),
            Credentials::Psk(PresharedKey(BENCH_KEY)),
        ),
        (
            "public_key",
            Credentials::PublicKey {
                local: client.clone(),
                remote: *server.public(),
            },
            Credentials::PublicKey {
                local: server.clone(),
                remote: *client.public(),
            },
        ),
    ];
    let id = bus_actors::PeerId([1; 16]);
    for (name, initiator, responder) in modes {
        let started = Instant::now();
        let mut done = 0u64;
        while started.elapsed().as_secs_f64() < secs {
            let (initiation, init) = Initiation::start(
                id,
                &initiator,
                1,
                done,
                Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let accepted = respond(
                &init,
                &responder,
                2,
                bus_actors::Instant::ZERO,
                Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            initiation
                .finish(&accepted.response, bus_actors::Instant::ZERO)
                .map_err(|e| e.to_string())?;
            done += 1;
        }
        let rate = done as f64 / started.elapsed().as_secs_f64();
        println!("peer=bus mode=handshake kind={name} handshakes_per_s={rate:.0}");
    }
    Ok(())
}
