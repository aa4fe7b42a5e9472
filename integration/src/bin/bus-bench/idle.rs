//! `idle`: what N peers on one host cost when nobody publishes (beacons, pings and their
//! answers): CPU of the process holding them all, and datagrams sent per second.

use super::*;

/// What `idle` measures.
#[derive(clap::Args)]
pub(super) struct IdleArgs {
    /// Peers, all in this process.
    #[arg(long, default_value_t = 50)]
    peers: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
}

pub(super) async fn idle(args: &IdleArgs) -> Res<()> {
    let (count, secs) = (args.peers, args.secs);
    let group = test_group();
    let mut buses = Vec::with_capacity(count);
    for _ in 0..count {
        let bus = bus_actors::Bus::builder()
            .insecure()
            .group(group)
            .start()
            .await
            .map_err(|e| e.to_string())?;
        buses.push(bus);
    }
    // Until every peer knows every other.
    let deadline = Instant::now() + Duration::from_secs(30);
    while buses.iter().any(|b| b.peers().len() < count - 1) {
        if Instant::now() > deadline {
            return Err("idle: the peers did not all meet".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = |buses: &[bus_actors::Bus]| -> u64 {
        buses.iter().map(|b| b.metrics().datagrams_out).sum()
    };
    let (cpu0, sent0, t0) = (cpu_seconds(), sent(&buses), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu0) / elapsed;
    let per_sec = (sent(&buses) - sent0) as f64 / elapsed;
    println!("peer=bus mode=idle peers={count} cpu_cores={cpu:.3} datagrams_per_s={per_sec:.0}");
    for bus in &buses {
        let _ = bus.shutdown().await;
    }
    Ok(())
}
