//! `lat` and `udp-lat`: ping-pong latency through the bus, and over raw UDP for the floor.

use super::*;

/// A ping of the latency benchmark, echoed back as a [`Pong`].
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "bench/ping")]
pub(super) struct Ping {
    seq: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// The echo of a [`Ping`].
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "bench/pong")]
pub(super) struct Pong {
    seq: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Ping-pong, one in flight: round-trip percentiles through both buses and their actors.
/// What `lat` measures.
#[derive(clap::Args)]
pub(super) struct LatArgs {
    /// Payload bytes of each ping and pong (at least 8: they carry a sequence number).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Round trips measured.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 500)]
    warmup_count: usize,
    #[command(flatten)]
    both: PingPong,
}

/// What both sides of `lat` run with.
#[derive(clap::Args)]
pub(super) struct PingPong {
    #[arg(long, value_enum, default_value_t = Reliability::BestEffort)]
    reliability: Reliability,
    /// Reliable messages of this size sent to the same peer all along (0: none), to see what
    /// a large transfer does to the latency of small messages.
    #[arg(long, default_value_t = 0)]
    background: usize,
    #[command(flatten)]
    link: Link,
}

/// What the pong side of `lat` is told.
#[derive(clap::Args)]
pub(super) struct LatPongArgs {
    #[arg(long)]
    group: SocketAddr,
    #[command(flatten)]
    both: PingPong,
}

/// What `udp-lat` measures.
#[derive(clap::Args)]
pub(super) struct UdpLatArgs {
    /// Datagram bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Round trips measured.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 500)]
    warmup_count: usize,
}

pub(super) async fn lat(args: &LatArgs) -> Res<()> {
    let (size, count, warmup) = (args.size, args.count, args.warmup_count);
    let reliability = args.both.reliability.as_str();
    let reliable = args.both.reliability == Reliability::Reliable;
    let background = args.both.background;
    let link = args.both.link;
    let group = test_group();
    let mut child = other_side("_lat-pong", group, &link)?
        .args(["--reliability", reliability])
        .args(["--background", &background.to_string()])
        .spawn()
        .map_err(|e| format!("spawn pong: {e}"))?;
    let bus = bench_builder(group, &link, 3)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let mut pongs = integration::subscribe::<Pong>(&bus).await;
    let mut ev = events(&bus);
    await_subscribers(&bus, &mut ev, Ping::ID, 1, Duration::from_secs(30)).await;
    let bulk_sent = Arc::new(AtomicU64::new(0));
    let bulk = (background > 0).then(|| {
        let (bus, sent) = (bus.clone(), bulk_sent.clone());
        actix::spawn(async move {
            let blob = Blob {
                data: vec![0xb5; background],
            };
            while bus.publish_reliable(blob.clone()).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    if bulk.is_some() {
        await_subscribers(&bus, &mut ev, Blob::ID, 1, Duration::from_secs(30)).await;
    }
    let data = vec![0x5a; size.saturating_sub(8)];
    let mut rtts = Vec::with_capacity(count);
    let started = Instant::now();
    // Reliable: each ping and pong is acknowledged, but nobody waits for that to send the next.
    let pings = bus.reliable_publisher::<Ping>();
    for seq in 0..(warmup + count) as u64 {
        let sent = Instant::now();
        let ping = Ping {
            seq,
            data: data.clone(),
        };
        if reliable {
            pings.send(&ping).await
        } else {
            bus.publish(ping).await
        }
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
    let during = match bulk {
        Some(task) => {
            task.abort();
            let delivered = bulk_sent.load(Ordering::Relaxed) as f64;
            format!(
                " background={background} background_mb_per_s={:.1}",
                delivered * background as f64 / elapsed / 1e6
            )
        }
        None => String::new(),
    };
    println!(
        "peer=bus mode=lat transport=udp reliability={reliability} size={size} msgs_per_s={:.0} {}{during}",
        (warmup + count) as f64 / elapsed,
        rtt_fields(&mut rtts)
    );
    let _ = bus.shutdown().await;
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}

/// Percentiles of sorted round-trip times, as the result line's fields.
pub(super) fn rtt_fields(rtts: &mut [f64]) -> String {
    rtts.sort_by(f64::total_cmp);
    // Exact, from every sample: a run keeps at most a few hundred thousand.
    let pct = |q: f64| {
        let last = rtts.len().saturating_sub(1);
        rtts.get((last as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    format!(
        "p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    )
}

/// The floor for `lat`: ping-pong over plain blocking UDP sockets between this process and a
/// child echoing on 127.0.0.1, one datagram in flight, no bus.
pub(super) fn udp_lat(args: &UdpLatArgs) -> Res<()> {
    let (size, count, warmup) = (args.size, args.count, args.warmup_count);
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
pub(super) fn udp_echo() -> Res<()> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("{}", socket.local_addr().map_err(|e| e.to_string())?);
    let mut buf = vec![0; 65_536];
    loop {
        let (n, from) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        socket.send_to(&buf[..n], from).map_err(|e| e.to_string())?;
    }
}

/// Echoes every ping it receives as a pong (reliably, with the publisher if there is one).
pub(super) struct Echo(bus_actors::Bus, Option<bus_actors::ReliablePublisher<Pong>>);

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<Event<Ping>> for Echo {
    type Result = ();
    fn handle(&mut self, ping: Event<Ping>, ctx: &mut Context<Self>) {
        let (bus, reliable) = (self.0.clone(), self.1.clone());
        let Ping { seq, data } = ping.into_message();
        ctx.spawn(
            async move {
                let pong = Pong { seq, data };
                let _ = match reliable {
                    Some(publisher) => publisher.send(&pong).await,
                    None => bus.publish(pong).await,
                };
            }
            .into_actor(self),
        );
    }
}

pub(super) async fn lat_pong(args: LatPongArgs) -> Res<()> {
    let group = args.group;
    let bus = bench_builder(group, &args.both.link, 4)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let reliable = args.both.reliability == Reliability::Reliable;
    let echo = Echo(
        bus.clone(),
        reliable.then(|| bus.reliable_publisher::<Pong>()),
    );
    bus.subscribe::<Ping>(echo.start().recipient())
        .await
        .map_err(|e| e.to_string())?;
    if args.both.background > 0 {
        let counted = Count(Arc::new(AtomicU64::new(0))).start().recipient();
        bus.subscribe::<Blob>(counted)
            .await
            .map_err(|e| e.to_string())?;
    }
    until_parent_is_done().await;
    let _ = bus.shutdown().await;
    Ok(())
}
