//! Loopback throughput / latency harness for Eclipse Zenoh.
//!
//! One binary, two roles per measurement: the parent process spawns a child
//! (itself, with a hidden subcommand) that listens on `127.0.0.1`, then connects
//! to it as the other side. Both sessions run in peer mode with multicast
//! scouting and gossip disabled, so nothing leaves the loopback interface.
//!
//! Result lines (stdout) look like:
//! `peer=zenoh mode=thr transport=tcp reliability=reliable size=64 msgs_per_s=... mb_per_s=...`
//! `peer=zenoh mode=lat transport=udp reliability=best_effort size=64 msgs_per_s=... p50_us=... p90_us=... p99_us=...`

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::{Config, Session, Wait};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const THR_KEY: &str = "bench/thr";
const PING_KEY: &str = "bench/ping";
const PONG_KEY: &str = "bench/pong";
const RPC_KEY: &str = "bench/rpc";
const DEFAULT_SIZES: [usize; 3] = [8, 64, 1024];

const USAGE: &str = "\
zenoh-peer-bench: Eclipse Zenoh loopback benchmark (peer mode, no scouting)

USAGE:
  zenoh-peer-bench thr --transport udp|tcp [--size N]... [--secs S] [--warmup S]
                       [--reliability best_effort|reliable] [--runs R] [--port P]
  zenoh-peer-bench lat --transport udp|tcp [--size N] [--count N] [--warmup-count N]
                       [--reliability best_effort|reliable] [--runs R] [--port P]
  zenoh-peer-bench rpc --transport udp|tcp [--size N] [--count N] [--concurrency C] [--secs S]
  zenoh-peer-bench all [--secs S] [--count N] [--runs R]

Defaults: thr sizes 8,64,1024, secs 5, warmup 1; lat size 64, count 10000;
reliability: both for tcp, best_effort only for udp (the UDP link is unreliable);
runs 1 (with R>1 each run goes to stderr and the median goes to stdout);
port: a free loopback port picked per run.
best_effort = CongestionControl::Drop (zenoh default), reliable = CongestionControl::Block.";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn parse(s: &str) -> Res<Self> {
        match s {
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            _ => Err(format!("unknown transport {s:?} (udp|tcp)").into()),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
    /// Reliability modes measured by default on this transport.
    fn default_modes(self) -> Vec<Reliab> {
        match self {
            Self::Tcp => vec![Reliab::BestEffort, Reliab::Reliable],
            // A zenoh UDP unicast link is best-effort; Block would only add
            // queue back-pressure, not delivery guarantees.
            Self::Udp => vec![Reliab::BestEffort],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reliab {
    BestEffort,
    Reliable,
}

impl Reliab {
    fn parse(s: &str) -> Res<Self> {
        match s {
            "best_effort" | "best-effort" | "be" => Ok(Self::BestEffort),
            "reliable" | "rel" => Ok(Self::Reliable),
            _ => Err(format!("unknown reliability {s:?} (best_effort|reliable)").into()),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::BestEffort => "best_effort",
            Self::Reliable => "reliable",
        }
    }
    fn congestion(self) -> CongestionControl {
        match self {
            Self::BestEffort => CongestionControl::Drop,
            Self::Reliable => CongestionControl::Block,
        }
    }
}

/// Minimal `--flag value` parser (keeps the dependency tree to zenoh alone).
struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: &[String]) -> Res<Self> {
        let mut pairs = Vec::new();
        let mut it = raw.iter();
        while let Some(flag) = it.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("unexpected argument {flag:?}").into());
            };
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_string(), value.clone()));
        }
        Ok(Self { pairs })
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.all(name).last().copied()
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: bad number {v:?}").into()),
        }
    }
    fn transport(&self) -> Res<Transport> {
        Transport::parse(
            self.get("transport")
                .ok_or("--transport udp|tcp is required")?,
        )
    }
    fn modes(&self, t: Transport) -> Res<Vec<Reliab>> {
        match self.get("reliability") {
            None => Ok(t.default_modes()),
            Some(v) => Ok(vec![Reliab::parse(v)?]),
        }
    }
}

/// Peer-mode config bound to loopback only: no multicast scouting, no gossip,
/// exactly one explicit endpoint (listen on one side, connect on the other).
/// The connecting side also binds its local socket to 127.0.0.1 (zenoh would
/// otherwise bind the UDP socket to 0.0.0.0 before connecting it).
fn loopback_config(t: Transport, port: u16, listen: bool) -> Res<Config> {
    let bind = if listen { "" } else { "#bind=127.0.0.1:0" };
    let endpoint = format!("[\"{}/127.0.0.1:{port}{bind}\"]", t.name());
    let mut c = Config::default();
    c.insert_json5("mode", "\"peer\"")?;
    c.insert_json5("scouting/multicast/enabled", "false")?;
    c.insert_json5("scouting/gossip/enabled", "false")?;
    if listen {
        c.insert_json5("listen/endpoints", &endpoint)?;
        c.insert_json5("connect/endpoints", "[]")?;
    } else {
        c.insert_json5("listen/endpoints", "[]")?;
        c.insert_json5("connect/endpoints", &endpoint)?;
    }
    Ok(c)
}

fn open(t: Transport, port: u16, listen: bool) -> Res<Session> {
    Ok(zenoh::open(loopback_config(t, port, listen)?).wait()?)
}

/// Ask the kernel for a currently free loopback port of the right kind.
fn free_port(t: Transport) -> Res<u16> {
    Ok(match t {
        Transport::Tcp => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        Transport::Udp => UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port(),
    })
}

fn pick_port(args: &Args, t: Transport) -> Res<u16> {
    match args.get("port") {
        Some(p) => Ok(p.parse().map_err(|_| format!("--port: bad number {p:?}"))?),
        None => free_port(t),
    }
}

/// Spawn `self <role> <args>` with stdin/stdout piped; wait for its READY line.
fn spawn_child(role: &str, args: &[String]) -> Res<(Child, BufReader<ChildStdout>)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg(role)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            let _ = child.wait();
            return Err(format!("{role} child exited before READY").into());
        }
        if line.trim() == "READY" {
            return Ok((child, out));
        }
    }
}

fn ready() {
    let mut so = std::io::stdout().lock();
    let _ = writeln!(so, "READY");
    let _ = so.flush();
}

/// Block until the parent closes our stdin (or dies).
fn wait_for_parent_eof() {
    let mut sink = String::new();
    let stdin = std::io::stdin();
    while stdin.lock().read_line(&mut sink).unwrap_or(0) > 0 {
        sink.clear();
    }
}

fn payload(size: usize) -> ZBytes {
    ZBytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

// ---------------------------------------------------------------- throughput

struct ThrParams {
    t: Transport,
    r: Reliab,
    size: usize,
    secs: f64,
    warmup: f64,
}

fn thr_line(p: &ThrParams, msgs_per_s: f64) -> String {
    format!(
        "peer=zenoh mode=thr transport={} reliability={} size={} msgs_per_s={:.0} mb_per_s={:.2}",
        p.t.name(),
        p.r.name(),
        p.size,
        msgs_per_s,
        msgs_per_s * p.size as f64 / 1e6
    )
}

/// Child: listen, count deliveries, print one `msgs_per_s=` figure, exit.
fn thr_sub(args: &Args) -> Res<()> {
    let t = args.transport()?;
    let port: u16 = args.num("port", 0)?;
    let secs: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let session = open(t, port, true)?;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let sub = session
        .declare_subscriber(THR_KEY)
        .callback(move |_sample| {
            c.fetch_add(1, Ordering::Relaxed);
        })
        .wait()?;
    ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            return Err("thr-sub: no message within 30 s".into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_secs_f64(warmup));
    let (c0, t0) = (count.load(Ordering::Relaxed), Instant::now());
    thread::sleep(Duration::from_secs_f64(secs));
    let (c1, t1) = (count.load(Ordering::Relaxed), Instant::now());
    let rate = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    {
        let mut so = std::io::stdout().lock();
        writeln!(so, "RESULT msgs_per_s={rate}")?;
        so.flush()?;
    }
    drop(sub);
    session.close().wait()?;
    Ok(())
}

/// Parent: spawn the subscriber child, publish as fast as possible until it reports.
fn thr_once(p: &ThrParams, port: u16) -> Res<f64> {
    let child_args: Vec<String> = vec![
        "--transport".into(),
        p.t.name().into(),
        "--port".into(),
        port.to_string(),
        "--secs".into(),
        p.secs.to_string(),
        "--warmup".into(),
        p.warmup.to_string(),
    ];
    let (mut child, mut out) = spawn_child("_thr-sub", &child_args)?;
    let session = open(p.t, port, false)?;
    let publisher = session
        .declare_publisher(THR_KEY)
        .congestion_control(p.r.congestion())
        .wait()?;

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Option<f64>>();
    let stop_reader = stop.clone();
    let reader = thread::spawn(move || {
        let mut line = String::new();
        let mut result = None;
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(v) = line.trim().strip_prefix("RESULT msgs_per_s=") {
                result = v.parse::<f64>().ok();
                break;
            }
            line.clear();
        }
        stop_reader.store(true, Ordering::Relaxed);
        let _ = tx.send(result);
    });

    let data = payload(p.size);
    let hard_stop = Instant::now() + Duration::from_secs_f64(p.secs + p.warmup + 60.0);
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        publisher.put(data.clone()).wait()?;
        sent += 1;
        if sent % 1024 == 0 && Instant::now() > hard_stop {
            break;
        }
    }
    let result = rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
    drop(publisher);
    session.close().wait()?;
    drop(child.stdin.take());
    let _ = child.wait();
    let _ = reader.join();
    result.ok_or_else(|| "thr: subscriber reported no result".into())
}

fn thr(args: &Args) -> Res<()> {
    let t = args.transport()?;
    let sizes: Vec<usize> = match args.all("size") {
        v if v.is_empty() => DEFAULT_SIZES.to_vec(),
        v => v
            .iter()
            .map(|s| s.parse().map_err(|_| format!("--size: bad number {s:?}")))
            .collect::<Result<_, _>>()?,
    };
    let secs: f64 = args.num("secs", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let runs: usize = args.num("runs", 1)?;
    for r in args.modes(t)? {
        for &size in &sizes {
            let p = ThrParams {
                t,
                r,
                size,
                secs,
                warmup,
            };
            let mut rates = Vec::new();
            for i in 0..runs.max(1) {
                let rate = thr_once(&p, pick_port(args, t)?)?;
                if runs > 1 {
                    eprintln!("# run {}/{}: {}", i + 1, runs, thr_line(&p, rate));
                }
                rates.push(rate);
            }
            println!("{}", thr_line(&p, median(&mut rates)));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- latency

/// Child: echo every ping sample back on the pong key until stdin closes.
fn lat_pong(args: &Args) -> Res<()> {
    let t = args.transport()?;
    let r = Reliab::parse(args.get("reliability").unwrap_or("best_effort"))?;
    let port: u16 = args.num("port", 0)?;
    let session = open(t, port, true)?;
    let publisher = session
        .declare_publisher(PONG_KEY)
        .congestion_control(r.congestion())
        .express(true)
        .wait()?;
    let sub = session
        .declare_subscriber(PING_KEY)
        .callback(move |sample| {
            let _ = publisher.put(sample.payload().clone()).wait();
        })
        .wait()?;
    ready();
    wait_for_parent_eof();
    drop(sub);
    session.close().wait()?;
    Ok(())
}

struct LatStats {
    p50: f64,
    p90: f64,
    p99: f64,
    rtts_per_s: f64,
    lost: u64,
}

fn lat_line(t: Transport, r: Reliab, size: usize, s: &LatStats) -> String {
    format!(
        "peer=zenoh mode=lat transport={} reliability={} size={} msgs_per_s={:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1}",
        t.name(),
        r.name(),
        size,
        s.rtts_per_s,
        s.p50,
        s.p90,
        s.p99
    )
}

fn lat_once(
    t: Transport,
    r: Reliab,
    size: usize,
    count: usize,
    warm: usize,
    port: u16,
) -> Res<LatStats> {
    let child_args: Vec<String> = vec![
        "--transport".into(),
        t.name().into(),
        "--port".into(),
        port.to_string(),
        "--reliability".into(),
        r.name().into(),
    ];
    let (mut child, _out) = spawn_child("_pong", &child_args)?;
    let session = open(t, port, false)?;
    let sub = session.declare_subscriber(PONG_KEY).wait()?;
    let publisher = session
        .declare_publisher(PING_KEY)
        .congestion_control(r.congestion())
        .express(true)
        .wait()?;

    let mut buf: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let timeout = Duration::from_millis(500);
    let mut lost: u64 = 0;
    let mut rtts: Vec<f64> = Vec::with_capacity(count);
    let mut seq: u64 = 0;

    // Until the pong side has learnt our subscriber, replies are not routed:
    // keep pinging until the first reply arrives (at most 20 s).
    let connect_deadline = Instant::now() + Duration::from_secs(20);
    'connect: loop {
        seq += 1;
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        publisher.put(buf.clone()).wait()?;
        if sub.recv_timeout(Duration::from_millis(50))?.is_some() {
            break 'connect;
        }
        if Instant::now() > connect_deadline {
            return Err("lat: no pong within 20 s".into());
        }
    }
    while sub.try_recv()?.is_some() {}

    let t_start = Instant::now();
    let mut t_measure = t_start;
    for i in 0..(warm + count) {
        if i == warm {
            t_measure = Instant::now();
        }
        seq += 1;
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        let data = ZBytes::from(buf.clone());
        let t0 = Instant::now();
        publisher.put(data).wait()?;
        // Wait for the reply carrying this sequence number; drop stale ones.
        let got = loop {
            match sub.recv_deadline(t0 + timeout)? {
                None => break false,
                Some(s) => {
                    let p = s.payload().to_bytes();
                    if p.len() >= 8 && u64::from_le_bytes(p[..8].try_into().unwrap()) == seq {
                        break true;
                    }
                }
            }
        };
        let rtt = t0.elapsed();
        if !got {
            lost += 1;
            continue;
        }
        if i >= warm {
            rtts.push(rtt.as_secs_f64() * 1e6);
        }
    }
    let elapsed = t_measure.elapsed().as_secs_f64();
    drop(publisher);
    drop(sub);
    session.close().wait()?;
    drop(child.stdin.take());
    let _ = child.wait();

    if rtts.is_empty() {
        return Err("lat: every ping was lost".into());
    }
    rtts.sort_by(|a, b| a.total_cmp(b));
    Ok(LatStats {
        p50: percentile(&rtts, 0.50),
        p90: percentile(&rtts, 0.90),
        p99: percentile(&rtts, 0.99),
        rtts_per_s: rtts.len() as f64 / elapsed,
        lost,
    })
}

fn lat(args: &Args) -> Res<()> {
    let t = args.transport()?;
    let size: usize = args.num("size", 64)?;
    if size < 8 {
        return Err("lat: --size must be >= 8 (carries a sequence number)".into());
    }
    let count: usize = args.num("count", 10_000)?;
    let warm: usize = args.num("warmup-count", 1_000)?;
    let runs: usize = args.num("runs", 1)?;
    for r in args.modes(t)? {
        let mut all = Vec::new();
        for i in 0..runs.max(1) {
            let s = lat_once(t, r, size, count, warm, pick_port(args, t)?)?;
            if runs > 1 || s.lost > 0 {
                eprintln!(
                    "# run {}/{}: {} lost={}",
                    i + 1,
                    runs,
                    lat_line(t, r, size, &s),
                    s.lost
                );
            }
            all.push(s);
        }
        let med = |f: fn(&LatStats) -> f64| median(&mut all.iter().map(f).collect::<Vec<_>>());
        let s = LatStats {
            p50: med(|s| s.p50),
            p90: med(|s| s.p90),
            p99: med(|s| s.p99),
            rtts_per_s: med(|s| s.rtts_per_s),
            lost: all.iter().map(|s| s.lost).sum(),
        };
        println!("{}", lat_line(t, r, size, &s));
    }
    Ok(())
}

// -------------------------------------------------------------------- common

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The whole matrix: thr over both transports and all sizes, then lat.
fn all(args: &Args) -> Res<()> {
    let secs = args.get("secs").unwrap_or("5").to_string();
    let count = args.get("count").unwrap_or("10000").to_string();
    let runs = args.get("runs").unwrap_or("3").to_string();
    for t in ["tcp", "udp"] {
        let a = owned(&["--transport", t, "--secs", &secs, "--runs", &runs]);
        thr(&Args::parse(&a)?)?;
    }
    for t in ["tcp", "udp"] {
        let a = owned(&["--transport", t, "--count", &count, "--runs", &runs]);
        lat(&Args::parse(&a)?)?;
    }
    Ok(())
}

// ----------------------------------------------------------------------- rpc

/// Child: a queryable on the rpc key answering every query with its payload.
fn rpc_server(args: &Args) -> Res<()> {
    let t = args.transport()?;
    let port: u16 = args.num("port", 0)?;
    let session = open(t, port, true)?;
    let queryable = session
        .declare_queryable(RPC_KEY)
        .callback(|query| {
            let payload = query.payload().cloned().unwrap_or_default();
            let _ = query.reply(RPC_KEY, payload).wait();
        })
        .wait()?;
    ready();
    wait_for_parent_eof();
    drop(queryable);
    session.close().wait()?;
    Ok(())
}

/// One get of `payload` on the rpc key, to its first reply.
fn get_once(session: &Session, payload: &ZBytes) -> Res<usize> {
    let replies = session
        .get(RPC_KEY)
        .payload(payload.clone())
        .target(zenoh::query::QueryTarget::BestMatching)
        .consolidation(zenoh::query::ConsolidationMode::None)
        .timeout(Duration::from_secs(5))
        .wait()?;
    let reply = replies.recv()?;
    let sample = reply.result().map_err(|e| format!("error reply: {e:?}"))?;
    Ok(sample.payload().len())
}

/// How a get travels: a zenoh UDP unicast link is best effort, a TCP one reliable.
fn rpc_reliability(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "reliable",
        Transport::Udp => "best_effort",
    }
}

/// `get` against a queryable in a child process: round trips one at a time, then gets per
/// second from `--concurrency` threads at once for `--secs`.
fn rpc(args: &Args) -> Res<()> {
    let t = args.transport()?;
    let size: usize = args.num("size", 64)?;
    let count: usize = args.num("count", 10_000)?;
    let warm: usize = args.num("warmup-count", 500)?;
    let concurrency: usize = args.num("concurrency", 64)?;
    let secs: f64 = args.num("secs", 5.0)?;
    let port = pick_port(args, t)?;
    let child_args: Vec<String> = vec!["--transport".into(), t.name().into(), "--port".into(), port.to_string()];
    let (mut child, _out) = spawn_child("_rpc-server", &child_args)?;
    let session = open(t, port, false)?;
    let payload = payload(size);
    // Until the queryable is known, gets find nobody: retry for up to 20 s.
    let connect_deadline = Instant::now() + Duration::from_secs(20);
    while get_once(&session, &payload).map(|n| n != size).unwrap_or(true) {
        if Instant::now() > connect_deadline {
            return Err("rpc: no reply from the queryable within 20 s".into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let mut rtts = Vec::with_capacity(count);
    for i in 0..warm + count {
        let sent = Instant::now();
        let n = get_once(&session, &payload)?;
        if n != size {
            return Err(format!("rpc: reply of {n} bytes").into());
        }
        if i >= warm {
            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    let pct = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
    println!(
        "peer=zenoh mode=rpc transport={} reliability={} size={size} p50_us={:.1} p90_us={:.1} p99_us={:.1}",
        t.name(),
        rpc_reliability(t),
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
    let calls = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (session, payload, calls) = (session.clone(), payload.clone(), calls.clone());
            thread::spawn(move || {
                while Instant::now() < until {
                    if get_once(&session, &payload).is_ok() {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "peer=zenoh mode=rpc_thr transport={} reliability={} size={size} concurrency={concurrency} calls_per_s={:.0}",
        t.name(),
        rpc_reliability(t),
        calls.load(Ordering::Relaxed) as f64 / elapsed
    );
    drop(child.stdin.take());
    let _ = child.wait();
    session.close().wait()?;
    Ok(())
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = raw.split_first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let result = Args::parse(rest).and_then(|args| match cmd.as_str() {
        "thr" => thr(&args),
        "lat" => lat(&args),
        "all" => all(&args),
        "_thr-sub" => thr_sub(&args),
        "_pong" => lat_pong(&args),
        "rpc" => rpc(&args),
        "_rpc-server" => rpc_server(&args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown subcommand {other:?}\n\n{USAGE}").into()),
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
