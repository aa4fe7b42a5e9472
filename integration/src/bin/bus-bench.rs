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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bus_actors::{Event, Topic};
use integration::{await_subscribers, builder, events, test_group};
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
        let mut it = raw.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or(format!("unexpected argument {flag:?}"))?;
            let value = it.next().ok_or(format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
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
    let result = Args::parse(rest).and_then(|args| match command.as_str() {
        "thr" => thr(&args),
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
    if reliability != "best_effort" {
        return Err(format!(
            "--reliability {reliability}: only best_effort is implemented"
        ));
    }
    let mut rates = Vec::new();
    for run in 0..runs.max(1) {
        let rate = System::new().block_on(thr_once(size, secs, warmup))?;
        let line = thr_line(reliability, size, rate);
        if runs > 1 {
            eprintln!("# run {}/{runs}: {line}", run + 1);
        }
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("{}", thr_line(reliability, size, rates[rates.len() / 2]));
    Ok(())
}

fn thr_line(reliability: &str, size: usize, rate: f64) -> String {
    format!(
        "peer=bus mode=thr transport=udp reliability={reliability} size={size} msgs_per_s={rate:.0} mb_per_s={:.2}",
        rate * size as f64 / 1e6
    )
}

/// Parent: spawn the counting subscriber, publish until it reports.
async fn thr_once(size: usize, secs: f64, warmup: f64) -> Res<f64> {
    let group = test_group();
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args([
            "_thr-sub",
            "--group",
            &group.to_string(),
            "--secs",
            &secs.to_string(),
            "--warmup",
            &warmup.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn subscriber: {e}"))?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_done = done.clone();
    let reader = std::thread::spawn(move || {
        let mut result = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(v) = line.trim().strip_prefix("RESULT msgs_per_s=") {
                result = v.parse::<f64>().ok();
                break;
            }
        }
        reader_done.store(true, Ordering::Relaxed);
        let _ = tx.send(result);
    });

    let bus = builder(group).start().await.map_err(|e| e.to_string())?;
    let mut ev = events(&bus);
    await_subscribers(&bus, &mut ev, Blob::ID, 1, Duration::from_secs(30)).await;
    let data = vec![0x5a; size];
    let hard_stop = Instant::now() + Duration::from_secs_f64(secs + warmup + 60.0);
    let mut sent: u64 = 0;
    while !done.load(Ordering::Relaxed) {
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
    let result = rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
    let _ = bus.shutdown().await;
    drop(child.stdin.take());
    let _ = child.wait();
    let _ = reader.join();
    result.ok_or_else(|| "thr: the subscriber reported no result".into())
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
    let bus = builder(group).start().await.map_err(|e| e.to_string())?;
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
