//! `mem`: resident bytes per pending message, subscription, known peer and bare actor, each
//! measured in a process of its own.

use super::*;
use integration::forge::{beacon, fake_peer, plain_packet};

/// Each memory figure in a process of its own: memory freed by one measurement would be reused
/// by the next and make it look smaller.
/// What `mem` measures.
#[derive(clap::Args)]
pub(super) struct MemArgs {
    /// Pending events, subscriptions, actors (peers: at most 2000).
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Payload bytes of each pending event.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

/// One measurement of `mem`, in a process of its own.
#[derive(clap::Args)]
pub(super) struct MemOneArgs {
    /// pending, subscriptions, peers or actors.
    what: String,
    #[command(flatten)]
    args: MemArgs,
}

pub(super) fn mem(args: &MemArgs) -> Res<()> {
    let (count, size) = (args.count, args.size);
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
pub(super) async fn mem_one(one: &MemOneArgs) -> Res<()> {
    let count = one.args.count;
    match one.what.as_str() {
        "pending" => mem_pending(count, one.args.size).await,
        "subscriptions" => mem_subscriptions(count).await,
        "peers" => mem_peers(count.min(2000)).await,
        "actors" => mem_bare_actors(count).await,
        other => Err(format!("unknown memory measurement {other:?}")),
    }
}

/// Memory per pending reliable event: a publisher whose one subscriber is cut off holds
/// `count` events of `size` bytes in flight, published one by one with a `ReliablePublisher`
/// (so they share reliable messages as a fast producer's do); the growth of the resident set is
/// divided among them. Runs on the simulated network.
pub(super) async fn mem_pending(count: u64, size: usize) -> Res<()> {
    let hub = SimHub::new(1, 2, LinkConfig::default());
    let mut make = sim_builders(&hub, 1);
    let room = usize::try_from(count + count / 10 + 1).map_err(|e| e.to_string())?;
    let limits = WindowLimits {
        per_peer_events: room,
        per_peer_bytes: usize::MAX / 2,
        total_events: room,
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
    let events_sent = || publisher.metrics().reliable.events_sent;
    let blob = Blob {
        data: vec![0x5a; size],
    };
    let sender = publisher.reliable_publisher::<Blob>();
    // Warm up allocators with a first tenth, then measure the rest.
    for _ in 0..count / 10 {
        sender.send(&blob).await.map_err(|e| e.to_string())?;
    }
    while events_sent() < count / 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = rss_bytes()?;
    for _ in 0..count {
        sender.send(&blob).await.map_err(|e| e.to_string())?;
    }
    while events_sent() < count + count / 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = rss_bytes()?;
    let per_event = after.saturating_sub(before) as f64 / count as f64;
    let stats = publisher.metrics().reliable;
    println!(
        "peer=bus mode=mem pending_events={count} payload={size} bytes_per_pending_event={per_event:.0} without_payload={:.0} messages={}",
        per_event - size as f64,
        stats.sent
    );
    Ok(())
}

/// The floor under the figures above: the resident set of an actix actor that holds nothing
/// (its context, mailbox and task), `count` of them alive at once.
pub(super) async fn mem_bare_actors(count: u64) -> Res<()> {
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

/// Memory per subscription: `count` subscriptions, each of a subscriber actor of its own (a
/// recipient subscribes once to a topic), the actors started before measuring so that only the
/// bus's side grows (a subscription actor, its counters, its registry entry, the handle) and
/// the recipient made for it, as a caller makes one per subscription. Then the bus's part
/// alone: `count` more, their recipients made before measuring.
pub(super) async fn mem_subscriptions(count: u64) -> Res<()> {
    let bus = &builder(test_group())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let subscriber = || Count(Arc::new(AtomicU64::new(0))).start();
    let warmup: Vec<_> = (0..count / 10).map(|_| subscriber().recipient()).collect();
    let first: Vec<_> = (0..count).map(|_| subscriber()).collect();
    let mut second: Vec<_> = (0..count).map(|_| subscriber().recipient()).collect();
    let mut held = Vec::new();
    subscribe_all(bus, warmup, &mut held).await?;
    let before = rss_bytes()?;
    subscribe_all(bus, first.iter().map(|a| a.clone().recipient()), &mut held).await?;
    let per_subscription = rss_bytes()?.saturating_sub(before) as f64 / count as f64;
    let before = rss_bytes()?;
    // Drained, not consumed: the list's own buffer is freed only after measuring.
    subscribe_all(bus, second.drain(..), &mut held).await?;
    let bus_part = rss_bytes()?.saturating_sub(before) as f64 / count as f64;
    drop(second);
    println!(
        "peer=bus mode=mem subscriptions={count} bytes_per_subscription={per_subscription:.0} without_recipient={bus_part:.0}"
    );
    Ok(())
}

async fn subscribe_all(
    bus: &bus_actors::Bus,
    recipients: impl IntoIterator<Item = Recipient<Event<Blob>>>,
    held: &mut Vec<bus_actors::Subscription>,
) -> Res<()> {
    for recipient in recipients {
        let subscription = bus
            .subscribe::<Blob>(recipient)
            .await
            .map_err(|e| e.to_string())?;
        held.push(subscription);
    }
    // Let the subscription actors start.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Memory per known peer: a bus on loopback hears beacons from `count` peers (crafted here,
/// each with an id and port of its own, none of them listening), and its resident set grows by
/// what it keeps for each: table entry, snapshot, peer actor.
pub(super) async fn mem_peers(count: u64) -> Res<()> {
    let bus = builder(test_group())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let send_beacons = |from: u64, to: u64| -> Res<()> {
        for i in from..to {
            let sender = fake_peer(i);
            let port = 20_000 + u16::try_from(i % 40_000).unwrap_or(0);
            // Long enough that none expires while measuring.
            let beacon = beacon(sender, i, port, 600_000, Vec::new(), false);
            let packet = plain_packet(sender, i, &[beacon]);
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
