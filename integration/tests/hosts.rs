//! Peers on hosts of their own: three network namespaces, each joined by a veth pair to a bridge
//! in a fourth, with real multicast across the bridge; then the same with the bridge dropping
//! all multicast and seeds in its place. The test creates every namespace and link itself and
//! removes them when it ends; nothing it sends can leave them.
//!
//! Needs root and `ip` (iproute2). Without them each test says on stderr that it is skipped and
//! passes; `.ci/run` says beforehand whether they will run.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bus_actors::Topic;
use bus_actors::{Bus, Interface, PeerId};
use futures_util::future::join_all;
use integration::child::Reporter;
use integration::{Counter, Reliable, await_group_reaches, events, secure_builder};

const GROUP: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::new(239, 255, 28, 12)),
    17_000,
);
const PORT: u16 = 17_001;
const KEY: [u8; 32] = [0x5a; 32];
/// Beacons every 200 ms, so 5 s: a restart and a 2 s partition both fall within it.
const LIVENESS_FACTOR: u32 = 25;

/// `hosts` namespaces with one address each on 10.213.0.0/24, cabled to a bridge in a namespace
/// of its own. Dropping it deletes them all (and so every link).
struct Lan {
    names: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lan {
    /// The LAN, or why it cannot be made here (not root, no `ip`).
    fn create(tag: &str, hosts: usize) -> Result<Lan, String> {
        let prefix = format!("bus-{}-{tag}", std::process::id());
        let switch = format!("{prefix}-sw");
        ip(&["netns", "add", &switch])?;
        let mut lan = Lan {
            names: vec![switch.clone()],
        };
        ip(&["-n", &switch, "link", "add", "sw0", "type", "bridge"])?;
        // No IGMP snooping: the bridge floods multicast to every port, as a plain switch does.
        ip(&[
            "-n",
            &switch,
            "link",
            "set",
            "sw0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &switch, "link", "set", "sw0", "up"])?;
        for i in 0..hosts {
            let host = format!("{prefix}-h{i}");
            ip(&["netns", "add", &host])?;
            lan.names.push(host.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &host,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "sw0", "up"])?;
            let addr = format!("{}/24", Lan::addr(i));
            ip(&["-n", &host, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    fn addr(host: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, 0, 1 + u8::try_from(host).expect("a small LAN"))
    }

    fn host(&self, host: usize) -> &str {
        &self.names[1 + host]
    }

    fn hosts(&self) -> usize {
        self.names.len() - 1
    }

    /// Moves the calling thread into `host`'s namespace: sockets it opens from now on are there.
    fn enter(&self, host: usize) {
        let ns = File::open(format!("/run/netns/{}", self.host(host))).expect("the namespace");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    }

    /// Whether the bridge floods multicast (and IGMP) to its ports; unicast is untouched.
    fn set_multicast(&self, on: bool) {
        let flood = if on { "on" } else { "off" };
        for i in 0..self.hosts() {
            let port = format!("p{i}");
            let args = ["-n", &self.names[0], "link", "set", &port];
            ip(&[&args[..], &["type", "bridge_slave", "mcast_flood", flood]].concat())
                .expect("set mcast_flood");
        }
    }

    /// Unplugs (or plugs back) `host`'s cable at the bridge: everything to and from it is lost.
    fn unplug(&self, host: usize, unplugged: bool) {
        let port = format!("p{host}");
        let state = if unplugged { "down" } else { "up" };
        ip(&["-n", &self.names[0], "link", "set", &port, state]).expect("set the port");
    }

    /// A `test-peer --reliable-subscriber` on `host`, peer id [byte; 16], seeded with `seeds`.
    async fn subscriber(&self, host: usize, byte: u8, seeds: &[SocketAddr]) -> Reporter {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.host(host),
            env!("CARGO_BIN_EXE_test-peer"),
        ])
        .args(["--group", &GROUP.to_string(), "--reliable-subscriber"])
        .args([
            "--peer-byte",
            &byte.to_string(),
            "--port",
            &PORT.to_string(),
        ])
        .args(["--key", &bus_actors::keys::format_key(&KEY)])
        .args(["--liveness-factor", &LIVENESS_FACTOR.to_string()])
        .args(["--interface", &Lan::addr(host).to_string()])
        .stderr(Stdio::inherit());
        for seed in seeds {
            cmd.args(["--seed", &seed.to_string()]);
        }
        Reporter::spawn(cmd).await
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = ip(&["netns", "delete", name]);
        }
    }
}

/// Waits until a subscriber reports knowing `count` peers.
async fn await_known(sub: &Reporter, count: usize, within: Duration) {
    let line = format!("peers {count}");
    let lines = sub.wait_until(within, |lines| lines.contains(&line)).await;
    assert!(
        lines.contains(&line),
        "no {line:?} within {within:?}: {lines:?}"
    );
}

/// Publishes `seqs` reliably, all at once, and asserts every one was acknowledged by both
/// subscribers.
async fn publish_reliable_to_both(bus: &Bus, seqs: std::ops::Range<u64>) {
    let reports = join_all(seqs.map(|seq| bus.publish_reliable(Reliable { seq }))).await;
    for report in reports {
        let report = report.expect("delivered");
        assert_eq!(report.acked.len(), 2, "{report:?}");
    }
}

/// Asserts that `sub` has reported each of `seqs` once, and nothing else, under `prefix`.
async fn assert_once(sub: &Reporter, prefix: &str, seqs: std::ops::Range<u64>) {
    let mut got = sub
        .reported(prefix, seqs.clone().count(), Duration::from_secs(5))
        .await;
    got.sort_unstable();
    assert!(
        got.iter().copied().eq(seqs.clone()),
        "{prefix} {seqs:?}: {got:?}"
    );
}

/// One run over the LAN: discovery, best effort to two subscribers, reliable, a subscriber
/// killed and restarted on its address, and a 2 s partition with reliable traffic in flight.
/// The publisher runs in this process, on host 0; the subscribers on hosts 1 and 2.
fn run(lan: &Lan, multicast: bool) {
    lan.set_multicast(multicast);
    // Without multicast the leaves know only the hub; it must introduce them to each other.
    let hub = SocketAddr::from((Lan::addr(0), PORT));
    let seeds = if multicast { Vec::new() } else { vec![hub] };
    lan.enter(0);
    actix::System::new().block_on(async {
        let publisher = secure_builder(GROUP, KEY)
            .interface(Interface::V4(Lan::addr(0)))
            .unicast_port(PORT)
            .peer_id(PeerId([1; 16]))
            .liveness_factor(LIVENESS_FACTOR)
            .start()
            .await
            .expect("publisher");
        let mut subs = vec![
            lan.subscriber(1, 2, &seeds).await,
            lan.subscriber(2, 3, &seeds).await,
        ];

        // Discovery: everyone knows everyone.
        let within = Duration::from_secs(10);
        for sub in &subs {
            await_known(sub, 2, within).await;
        }
        publisher
            .wait_for_subscribers::<Counter>(2, within)
            .await
            .expect("both subscribers known");
        if multicast {
            let mut ev = events(&publisher);
            await_group_reaches(&publisher, &mut ev, Counter::ID, 2, within).await;
        }

        // Best effort, to the group or (without multicast) to each subscriber.
        for seq in 0..300 {
            publisher
                .publish(Counter { publisher: 0, seq })
                .await
                .expect("publish");
        }
        for sub in &subs {
            assert_once(sub, "be", 0..300).await;
        }
        let unicast = publisher.metrics().fanout_unicast;
        if multicast {
            assert_eq!(unicast, 0, "fan-out went to the group");
        } else {
            assert_eq!(unicast, 600, "fan-out went to each subscriber");
            assert!(publisher.peers().iter().all(|p| !p.hears_our_multicast));
        }

        // Reliable.
        publish_reliable_to_both(&publisher, 0..100).await;
        for sub in &subs {
            assert_once(sub, "got", 0..100).await;
        }

        // kill -9 and a restart on the same address, well within the liveness timeout.
        drop(subs.pop());
        subs.push(lan.subscriber(2, 3, &seeds).await);
        let restarted = Instant::now();
        publish_reliable_to_both(&publisher, 100..150).await;
        let took = restarted.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "traffic flowed after {took:?}"
        );
        assert_once(&subs[0], "got", 0..150).await;
        assert_once(&subs[1], "got", 100..150).await;

        // A 2 s partition of host 1 with reliable messages in flight (deadline 5 s).
        lan.unplug(1, true);
        let heal = async {
            actix_rt::time::sleep(Duration::from_secs(2)).await;
            lan.unplug(1, false);
        };
        let ((), ()) =
            futures_util::future::join(publish_reliable_to_both(&publisher, 150..200), heal).await;
        assert_once(&subs[0], "got", 0..200).await;
        assert_once(&subs[1], "got", 100..200).await;

        publisher.shutdown().await.expect("shutdown");
    });
}

fn lan_or_skip(tag: &str) -> Option<Lan> {
    match Lan::create(tag, 3) {
        Ok(lan) => Some(lan),
        Err(why) => {
            eprintln!("skipped: the multi-host test needs root and iproute2 ({why})");
            None
        }
    }
}

#[test]
fn three_hosts_with_multicast() {
    if let Some(lan) = lan_or_skip("mc") {
        run(&lan, true);
    }
}

#[test]
fn three_hosts_without_multicast_and_a_seed() {
    if let Some(lan) = lan_or_skip("seed") {
        run(&lan, false);
    }
}
