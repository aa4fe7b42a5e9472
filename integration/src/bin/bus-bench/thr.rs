//! `thr`: throughput, best effort or reliable, one publisher and K subscriber processes.

use super::*;

/// What `thr` measures.
#[derive(clap::Args)]
pub(super) struct ThrArgs {
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds counted, after the warmup.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds before counting starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Runs; with more than one, each goes to stderr and the median to stdout.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    #[arg(long, value_enum, default_value_t = Reliability::BestEffort)]
    reliability: Reliability,
    /// Subscriber processes; the slowest one's rate is reported.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Reliable messages per batch call; 1: one call per message.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Reliable: one future per message awaiting its report, instead of a ReliablePublisher.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    reports: bool,
    /// Reliable: add a subscriber that never acknowledges, and report the others' rate.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    laggard: bool,
    #[command(flatten)]
    link: Link,
}

pub(super) fn thr(args: &ThrArgs) -> Res<()> {
    let (size, runs, subscribers) = (args.size, args.runs, args.subscribers);
    let reliability = args.reliability.as_str();
    let reliable = args.reliability == Reliability::Reliable;
    let link = args.link;
    let run = ThrRun {
        size,
        secs: args.secs,
        warmup: args.warmup,
        reliable,
        subscribers: subscribers.max(1),
        batch: args.batch,
        reports: args.reports,
        laggard: args.laggard,
        link,
    };
    if run.laggard && (!reliable || link.encrypted) {
        return Err("--laggard: reliable and unencrypted only (it drops plaintext acks)".into());
    }
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
pub(super) fn thr_line(reliability: &str, size: usize, subscribers: usize, rate: f64) -> String {
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
pub(super) struct ThrRun {
    size: usize,
    secs: f64,
    warmup: f64,
    reliable: bool,
    subscribers: usize,
    /// Reliable messages per `publish_reliable_batch` call; 1: one call per message.
    batch: usize,
    /// With `batch` 1: one `publish_reliable` future per message, each awaiting its report,
    /// instead of one `ReliablePublisher::send` per message (outcomes reported only if they
    /// fail).
    reports: bool,
    /// One more subscriber, which receives and answers pings but never acknowledges; the
    /// rate reported is the others'.
    laggard: bool,
    link: Link,
}

pub(super) async fn thr_once(run: &ThrRun) -> Res<f64> {
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

    let laggard = if run.laggard {
        let child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args([
                "_thr-sub",
                "--group",
                &group.to_string(),
                "--drop-acks",
                "true",
            ])
            .args(["--secs", "3600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn the laggard: {e}"))?;
        Some(integration::child::Reaper(child))
    } else {
        None
    };

    let bus = bench_builder(group, &run.link, 1)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let mut ev = events(&bus);
    await_subscribers(
        &bus,
        &mut ev,
        Blob::ID,
        run.subscribers + usize::from(run.laggard),
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
    } else if run.reliable && !run.reports {
        // Event by event, as a producer does: each send waits only for room in the window.
        let publisher = bus.reliable_publisher::<Blob>();
        let message = Blob { data: data.clone() };
        while !done() && Instant::now() < hard_stop {
            match publisher.send(&message).await {
                Ok(()) => {}
                // The subscriber reported and left before its report was read here: the run
                // is over.
                Err(bus_actors::Error::NoSubscribers { .. }) => break,
                Err(e) => return Err(format!("reliable send failed: {e}")),
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
            match in_flight.next().await {
                // Owed to the laggard too, so never delivered to everyone.
                Some(Err(bus_actors::Error::Undelivered { .. })) if run.laggard => {}
                Some(Err(e)) => return Err(format!("reliable send failed: {e}")),
                _ => {}
            }
        }
    }
    if run.reliable {
        let stats = bus.metrics().reliable;
        let cpu = cpu_seconds() - cpu_before;
        eprintln!(
            "# events_sent={} messages_sent={} retransmitted={} acked={} expired={} given_up={} retransmissions_per_message={:.4} pending_peak={} publisher_cpu_us_per_message={:.2}",
            stats.events_sent,
            stats.sent,
            stats.retransmitted,
            stats.acked,
            stats.expired,
            stats.given_up,
            stats.retransmitted as f64 / stats.acked.max(1) as f64,
            stats.pending_peak,
            cpu * 1e6 / stats.events_sent.max(1) as f64,
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
    drop(laggard);
    for (mut child, reader) in children {
        drop(child.stdin.take());
        let _ = child.wait();
        let _ = reader.join();
    }
    Ok(rates.into_iter().fold(f64::INFINITY, f64::min))
}

/// What a `thr` subscriber is told.
#[derive(clap::Args)]
pub(super) struct ThrSubArgs {
    #[arg(long)]
    group: SocketAddr,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Drop every acknowledgement it sends (the laggard).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    drop_acks: bool,
    #[command(flatten)]
    link: Link,
}

/// Child: subscribe, count for `--secs` after the first message and `--warmup`, report.
pub(super) async fn thr_sub(args: ThrSubArgs) -> Res<()> {
    let (group, secs, warmup) = (args.group, args.secs, args.warmup);
    let mut builder = bench_builder(group, &args.link, 2);
    if args.drop_acks {
        builder = builder.inject_faults(Faults {
            drop_acks: true,
            ..Faults::NONE
        });
    }
    let bus = builder.start().await.map_err(|e| e.to_string())?;
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
    until_parent_is_done().await;
    Ok(())
}
