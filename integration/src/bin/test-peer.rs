//! A peer in a process of its own, for the multi-process integration tests.
//!
//! ```text
//! test-peer --group 239.255.28.12:PORT --id N --idle
//!     start, print "ready <peer id>", and run until killed or stdin closes
//! test-peer --group 239.255.28.12:PORT --exit-at-once
//!     start a bus and return from `main` at once, as a program that forgot to wait would
//! test-peer --group 239.255.28.12:PORT --id N --publish COUNT --peers P [--timeout-secs S]
//!     subscribe to test/counter, wait for P other subscribers, publish COUNT messages, and
//!     wait to receive COUNT from each of them; print a summary; exit 0 if all arrived
//! test-peer --group 239.255.28.12:PORT --reliable-subscriber --peer-byte B --port P
//!           [--key HEX] [--liveness-factor F] [--interface IP] [--seed ADDR]...
//!     peer id [B; 16] on unicast port P (encrypted with the cluster key HEX if given):
//!     subscribe to test/reliable and test/counter, print "ready", then "got SEQ" for each
//!     test/reliable message delivered, "be SEQ" for each test/counter one, and "peers N"
//!     whenever the number of peers it knows changes, until killed or stdin closes; a line
//!     "stats" on stdin has it print its counters ("stats datagrams_in=N ... table_full=N")
//! ```
//!
//! The bus binds to 127.0.0.1 unless `--interface` names another address: the multi-host tests
//! run it inside network namespaces they create, on addresses of their own bridge.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use bus_actors::Interface;
use bus_actors::Topic;
use integration::{
    Counter, Reliable, await_subscribers, builder, events, secure_builder, subscribe,
};

struct Args {
    group: SocketAddr,
    id: u32,
    idle: bool,
    exit_at_once: bool,
    reliable_subscriber: bool,
    peer_byte: u8,
    port: u16,
    key: Option<[u8; 32]>,
    liveness_factor: u32,
    interface: Ipv4Addr,
    seeds: Vec<SocketAddr>,
    publish: u64,
    peers: usize,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        group: "239.255.28.12:1783".parse().map_err(|e| format!("{e}"))?,
        id: 0,
        idle: false,
        exit_at_once: false,
        reliable_subscriber: false,
        peer_byte: 0,
        port: 0,
        key: None,
        liveness_factor: 3,
        interface: Ipv4Addr::LOCALHOST,
        seeds: Vec::new(),
        publish: 0,
        peers: 0,
        timeout: Duration::from_secs(30),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--group" => args.group = value()?.parse().map_err(|e| format!("--group: {e}"))?,
            "--id" => args.id = value()?.parse().map_err(|e| format!("--id: {e}"))?,
            "--idle" => args.idle = true,
            "--exit-at-once" => args.exit_at_once = true,
            "--reliable-subscriber" => args.reliable_subscriber = true,
            "--peer-byte" => {
                args.peer_byte = value()?.parse().map_err(|e| format!("--peer-byte: {e}"))?
            }
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--key" => {
                let text = value()?;
                args.key = Some(bus_actors::keys::parse_key(&text).ok_or("--key: not a key")?);
            }
            "--liveness-factor" => {
                args.liveness_factor = value()?
                    .parse()
                    .map_err(|e| format!("--liveness-factor: {e}"))?
            }
            "--interface" => {
                args.interface = value()?.parse().map_err(|e| format!("--interface: {e}"))?
            }
            "--seed" => args
                .seeds
                .push(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--publish" => {
                args.publish = value()?.parse().map_err(|e| format!("--publish: {e}"))?
            }
            "--peers" => args.peers = value()?.parse().map_err(|e| format!("--peers: {e}"))?,
            "--timeout-secs" => {
                args.timeout = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--timeout-secs: {e}"))?,
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !args.group.ip().is_multicast() || !args.group.is_ipv4() {
        return Err(format!(
            "--group {} is not an IPv4 multicast address",
            args.group
        ));
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("test-peer: {e}");
            return ExitCode::from(2);
        }
    };
    actix::System::new().block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    if args.reliable_subscriber {
        return reliable_subscriber(&args).await;
    }
    let bus = builder(args.group)
        .metadata("test-peer", args.id.to_string())
        .start()
        .await
        .expect("bus start");
    if args.exit_at_once {
        return ExitCode::SUCCESS;
    }
    if args.idle {
        println!("ready {:?}", bus.local_id());
        // Until stdin closes (the parent exits) or the process is killed.
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0; 1])).await;
        return ExitCode::SUCCESS;
    }
    let mut rx = subscribe::<Counter>(&bus).await;
    let mut ev = events(&bus);
    await_subscribers(&bus, &mut ev, Counter::ID, args.peers, args.timeout).await;
    for seq in 0..args.publish {
        bus.publish(Counter {
            publisher: args.id,
            seq,
        })
        .await
        .expect("publish");
    }
    let expected = args.publish * args.peers as u64;
    let mut from: BTreeMap<u32, u64> = BTreeMap::new();
    let wait = async {
        let mut others = 0;
        while others < expected {
            let Some(event) = rx.recv().await else { break };
            *from.entry(event.message.publisher).or_default() += 1;
            if event.message.publisher != args.id {
                others += 1;
            }
        }
    };
    let _ = tokio::time::timeout(args.timeout, wait).await;
    let others: u64 = from
        .iter()
        .filter(|(p, _)| **p != args.id)
        .map(|(_, n)| n)
        .sum();
    println!(
        "peer={} received_from_others={others} expected={expected} by_publisher={from:?}",
        args.id
    );
    bus.shutdown().await.expect("shutdown");
    if others == expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Subscribes to test/reliable and reports every delivery on stdout, one line each, until killed.
async fn reliable_subscriber(args: &Args) -> ExitCode {
    let builder = match args.key {
        Some(key) => secure_builder(args.group, key),
        None => builder(args.group),
    };
    let bus = builder
        .peer_id(bus_actors::PeerId([args.peer_byte; 16]))
        .unicast_port(args.port)
        .liveness_factor(args.liveness_factor)
        .interface(Interface::V4(args.interface))
        .seeds(args.seeds.iter().copied())
        .start()
        .await
        .expect("bus start");
    let mut reliable = subscribe::<Reliable>(&bus).await;
    let mut best_effort = subscribe::<Counter>(&bus).await;
    let mut membership = events(&bus);
    println!("ready {:?}", bus.local_id());
    let mut commands = stdin_lines();
    let mut peers = 0;
    loop {
        tokio::select! {
            command = commands.recv() => match command.as_deref() {
                Some("stats") => print_stats(&bus),
                Some(other) => eprintln!("test-peer: unknown command {other:?}"),
                None => break,
            },
            Some(event) = reliable.recv() => println!("got {}", event.message.seq),
            Some(event) = best_effort.recv() => println!("be {}", event.message.seq),
            Some(_) = membership.recv() => {
                let known = bus.peer_count();
                if known != peers {
                    peers = known;
                    println!("peers {peers}");
                }
            }
            else => break,
        }
    }
    ExitCode::SUCCESS
}

/// The lines of stdin as they come; the channel closes with stdin (the parent exited).
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// One line of counters: "stats datagrams_in=N ..." with every drop reason by name.
fn print_stats(bus: &bus_actors::Bus) {
    use bus_core::metrics::DropReason;
    let stats = bus.metrics();
    let mut line = format!(
        "stats datagrams_in={} datagrams_out={}",
        stats.datagrams_in, stats.datagrams_out
    );
    for reason in DropReason::ALL {
        line += &format!(" {}={}", reason.name(), stats.drops(reason));
    }
    println!("{line}");
}
