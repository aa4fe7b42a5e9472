//! A soak: three peers on loopback, every datagram at risk of loss, mixed best-effort and
//! reliable traffic for a while, and the guarantees checked message by message: a reliable
//! message is delivered at most once to each subscriber; every one reported delivered reached
//! every subscriber that acknowledged it, and every other was reported `Undelivered` naming who
//! is missing; resident memory stays flat once warmed up.
//!
//! `cargo run --release -p integration --bin soak -- --secs 900` runs it for 15 minutes; the
//! test suite runs it for 60 s.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bus_actors::{Bus, Error};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::{Counter, Reliable, builder, subscribe, test_group};

/// What a soak does.
#[derive(Clone, Copy, Debug)]
pub struct SoakConfig {
    /// How long traffic runs.
    pub duration: Duration,
    /// The probability that a datagram sent is lost (each peer, each datagram).
    pub loss: f64,
    /// Reliable messages each peer publishes per second.
    pub reliable_per_sec: u32,
    /// Best-effort messages each peer publishes per second.
    pub best_effort_per_sec: u32,
    /// The peers' retransmission-timeout floor (`BusBuilder::min_rto`); `None`: the default.
    pub min_rto: Option<Duration>,
}

/// What a soak saw.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    /// Reliable messages published.
    pub reliable: u64,
    /// Of them, reported delivered to everyone owed them.
    pub delivered: u64,
    /// Of them, reported `Undelivered`, naming the subscribers missing.
    pub undelivered: u64,
    /// Best-effort messages published.
    pub best_effort_sent: u64,
    /// Best-effort messages received, summed over the subscribers.
    pub best_effort_received: u64,
    /// Copies sent again, summed over the peers (with no loss, every one is spurious).
    pub retransmitted: u64,
    /// Resident memory after warm-up (a fifth of the run), in bytes.
    pub rss_warm: u64,
    /// Resident memory at the end, in bytes.
    pub rss_end: u64,
    /// Everything that broke a guarantee; empty if none did.
    pub violations: Vec<String>,
}

impl SoakReport {
    /// Whether memory stayed flat after warm-up: at most a quarter more, plus 8 MiB of slack
    /// for allocator noise.
    pub fn rss_flat(&self) -> bool {
        self.rss_end <= self.rss_warm + self.rss_warm / 4 + (8 << 20)
    }
}

/// Resident set size of this process, in bytes (0 where unknown).
pub fn rss_bytes() -> u64 {
    rss_bytes_of("self")
}

/// Resident set size of process `pid` ("self" for this one), in bytes (0 where unknown).
pub fn rss_bytes_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

const PEERS: usize = 3;

/// One bit per message sequence number.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    /// Sets bit `i`; returns whether it was set already.
    fn set(&mut self, i: u64) -> bool {
        let (word, bit) = (usize::try_from(i / 64).unwrap_or(usize::MAX), i % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        let was = self.0[word] & (1 << bit) != 0;
        self.0[word] |= 1 << bit;
        was
    }

    fn get(&self, i: u64) -> bool {
        let word = usize::try_from(i / 64).unwrap_or(usize::MAX);
        self.0.get(word).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// What everyone saw, shared by the tasks of the soak (one thread: `Rc`).
#[derive(Default)]
struct Ledger {
    /// `delivered[subscriber][publisher]`: the sequence numbers it delivered.
    delivered: [[Bits; PEERS]; PEERS],
    /// `acked[publisher][subscriber]`: the messages reported acknowledged by it.
    acked: [[Bits; PEERS]; PEERS],
    report: SoakReport,
}

/// Runs a soak as `config` says. Call inside an actix system.
///
/// # Panics
/// If the peers cannot start or do not find each other.
pub async fn soak(config: SoakConfig) -> SoakReport {
    let group = test_group();
    let mut peers = Vec::new();
    for seed in 0..PEERS as u64 {
        let mut builder = builder(group);
        if let Some(floor) = config.min_rto {
            builder = builder.min_rto(floor);
        }
        let bus = builder
            // Lost beacons must not flap membership, and a message owed must get enough
            // attempts at this loss (see `crate::lossy`).
            .liveness_factor(10)
            .reliable_deadline(bus_actors::Duration::from_secs(30))
            .inject_faults(bus_actors::transport::Faults {
                loss: config.loss,
                duplicate: 0.01,
                seed,
                ..bus_actors::transport::Faults::NONE
            })
            .start()
            .await
            .unwrap_or_else(|e| panic!("peer {seed}: {e}"));
        peers.push(bus);
    }
    let ledger = Rc::new(RefCell::new(Ledger::default()));
    let mut drains = Vec::new();
    for (subscriber, bus) in peers.iter().enumerate() {
        let mut reliable = subscribe::<Reliable>(bus).await;
        let mut counters = subscribe::<Counter>(bus).await;
        let ledger = ledger.clone();
        drains.push(actix::spawn(async move {
            loop {
                tokio::select! {
                    Some(event) = reliable.recv() => {
                        let seq = event.message.seq;
                        let (publisher, n) = (seq >> 56, seq & ((1 << 56) - 1));
                        let mut l = ledger.borrow_mut();
                        let publisher = usize::try_from(publisher).unwrap_or(0) % PEERS;
                        if l.delivered[subscriber][publisher].set(n) {
                            let what = format!("{seq:#x} delivered twice to peer {subscriber}");
                            l.report.violations.push(what);
                        }
                    }
                    Some(_) = counters.recv() => ledger.borrow_mut().report.best_effort_received += 1,
                    else => break,
                }
            }
        }));
    }
    for bus in &peers {
        bus.wait_for_subscribers::<Reliable>(PEERS - 1, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("discovery: {e}"));
    }

    let started = Instant::now();
    let mut publishers = Vec::new();
    for (index, bus) in peers.iter().enumerate() {
        let task = publish(
            bus.clone(),
            peers.clone(),
            index,
            config,
            started,
            ledger.clone(),
        );
        publishers.push(actix::spawn(task));
    }
    tokio::time::sleep(config.duration / 5).await;
    let rss_warm = rss_bytes();
    for publisher in publishers {
        let _ = publisher.await;
    }
    // Deliveries still in the subscribers' mailboxes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_end = rss_bytes();
    let retransmitted = peers
        .iter()
        .map(|bus| bus.metrics().reliable.retransmitted)
        .sum();
    for bus in &peers {
        let _ = bus.shutdown().await;
    }
    for drain in drains {
        drain.abort();
    }

    let mut l = ledger.borrow_mut();
    let ledger = &mut *l;
    for publisher in 0..PEERS {
        for subscriber in (0..PEERS).filter(|s| *s != publisher) {
            let acked = &ledger.acked[publisher][subscriber];
            let delivered = &ledger.delivered[subscriber][publisher];
            for (word, bits) in acked.0.iter().enumerate() {
                for bit in (0..64).filter(|b| bits & (1 << b) != 0) {
                    let n = word as u64 * 64 + bit;
                    if !delivered.get(n) {
                        ledger.report.violations.push(format!(
                            "message {n} of peer {publisher} acknowledged by peer {subscriber}, \
                             never delivered"
                        ));
                    }
                }
            }
        }
    }
    ledger.report.retransmitted = retransmitted;
    ledger.report.rss_warm = rss_warm;
    ledger.report.rss_end = rss_end;
    std::mem::take(&mut ledger.report)
}

/// Publishes as `config` says until its time is up, and records each reliable outcome.
async fn publish(
    bus: Bus,
    peers: Vec<Bus>,
    index: usize,
    config: SoakConfig,
    started: Instant,
    ledger: Rc<RefCell<Ledger>>,
) {
    let per_tick = |per_sec: u32| (u64::from(per_sec) / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0u64;
    let mut best_effort = 0u64;
    let record = |seq: u64, outcome: Result<bus_actors::DeliveryReport, Error>| {
        let mut l = ledger.borrow_mut();
        l.report.reliable += 1;
        let n = seq & ((1 << 56) - 1);
        let (acked, complete) = match outcome {
            Ok(report) => (report.acked, true),
            Err(Error::Undelivered { report, .. }) if !report.missing.is_empty() => {
                (report.acked, false)
            }
            Err(e) => {
                l.report.violations.push(format!("message {seq:#x}: {e}"));
                return;
            }
        };
        if complete {
            l.report.delivered += 1;
        } else {
            l.report.undelivered += 1;
        }
        if complete && acked.len() != PEERS - 1 {
            let what = format!("message {seq:#x} Ok, acknowledged by {} peers", acked.len());
            l.report.violations.push(what);
        }
        for (subscriber, peer) in peers.iter().enumerate() {
            if acked.contains(&peer.local_id()) {
                l.acked[index][subscriber].set(n);
            }
        }
    };
    while started.elapsed() < config.duration {
        tick.tick().await;
        for _ in 0..per_tick(config.best_effort_per_sec) {
            let message = Counter {
                publisher: index as u32,
                seq: best_effort,
            };
            if bus.publish_best_effort(message).await.is_ok() {
                best_effort += 1;
            }
        }
        for _ in 0..per_tick(config.reliable_per_sec) {
            let seq = (index as u64) << 56 | next;
            next += 1;
            let bus = bus.clone();
            in_flight.push(async move { (seq, bus.publish_reliable(Reliable { seq }).await) });
        }
        while let Some(Some((seq, outcome))) =
            futures_util::FutureExt::now_or_never(in_flight.next())
        {
            record(seq, outcome);
        }
    }
    while let Some((seq, outcome)) = in_flight.next().await {
        record(seq, outcome);
    }
    ledger.borrow_mut().report.best_effort_sent += best_effort;
}
