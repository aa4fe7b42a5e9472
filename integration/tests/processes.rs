//! Peers in separate OS processes (the `test-peer` binary), on loopback.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bus_actors::BusEvent;
use integration::child::{Reaper, Reporter};
use integration::{BEACON_INTERVAL, await_event, events, start, test_group};

fn test_peer(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-peer"));
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// `bus-bench` answers `--help`, and refuses a misspelt flag, suggesting the right one,
/// instead of running with the defaults.
#[test]
fn the_bench_answers_help_and_refuses_unknown_flags() {
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bus-bench"))
            .args(args)
            .output()
            .expect("run bus-bench")
    };
    let help = bench(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["thr", "lat", "mem", "handshake"] {
        assert!(text.contains(command), "{text}");
    }
    let typo = bench(&["thr", "--sise", "64"]);
    assert_eq!(typo.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("--sise") && stderr.contains("--size"),
        "{stderr}"
    );
    let bad = bench(&["lat", "--reliability", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A program that returns from `main` right after starting a bus ends cleanly: before, the
/// socket actor, started by actix from its drop outside any runtime, panicked ("there is no
/// reactor running").
#[test]
fn returning_from_main_right_after_start_ends_cleanly() {
    let group = test_group().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_test-peer"))
        .args(["--group", &group, "--exit-at-once"])
        .output()
        .expect("run test-peer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn three_processes_exchange_messages_both_ways() {
    let group = test_group().to_string();
    let children: Vec<Reaper> = (0..3)
        .map(|id| {
            let args = [
                "--group",
                &group,
                "--id",
                &id.to_string(),
                "--publish",
                "500",
                "--peers",
                "2",
                "--timeout-secs",
                "30",
            ]
            .map(String::from);
            Reaper(test_peer(&args).spawn().expect("spawn test-peer"))
        })
        .collect();
    for mut child in children {
        let status = child.0.wait().expect("wait for test-peer");
        let mut summary = String::new();
        if let Some(out) = child.0.stdout.take() {
            BufReader::new(out)
                .read_line(&mut summary)
                .expect("read summary");
        }
        assert!(status.success(), "test-peer failed: {summary}");
        assert!(
            summary.contains("received_from_others=1000 expected=1000"),
            "{summary}"
        );
    }
}

#[actix::test]
async fn a_killed_peer_is_reported_within_the_liveness_timeout() {
    let group = test_group();
    let observer = start(group).await;
    let mut events = events(&observer);
    let args = ["--group", &group.to_string(), "--id", "9", "--idle"].map(String::from);
    let mut child = Reaper(
        test_peer(&args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn test-peer"),
    );
    let joined = await_event(
        &mut events,
        Duration::from_secs(10),
        "the child joining",
        |e| matches!(e, BusEvent::PeerJoined(_)),
    )
    .await;
    let BusEvent::PeerJoined(peer) = joined else {
        unreachable!()
    };
    assert_eq!(peer.metadata("test-peer"), Some("9"));

    child.0.kill().expect("SIGKILL the child");
    let killed_at = Instant::now();
    // Three intervals, each allowed 10% of jitter.
    let liveness_timeout = BEACON_INTERVAL * 3 + BEACON_INTERVAL * 3 / 10;
    // Jitter can stretch the child's last interval by 10%; the rest is scheduling tolerance for a
    // loaded 2-core machine.
    let bound = liveness_timeout + BEACON_INTERVAL / 10 + Duration::from_millis(150);
    await_event(
        &mut events,
        bound,
        "the child reported gone",
        |e| matches!(e, BusEvent::PeerUnreachable(p) if *p == peer.id),
    )
    .await;
    assert!(killed_at.elapsed() <= bound);
    assert!(observer.peers().is_empty());
}

/// Field report, item 1: a subscriber killed (`kill -9`) and restarted on the same address
/// within the liveness timeout was cut off for up to 120 s: the survivor, the lower id and so
/// the initiator, kept its session; the new process dropped everything sealed under it. Here,
/// across real processes with PSK encryption: reliable traffic flows to the new process within
/// a second of its start, and it delivers each message once.
#[actix::test]
async fn a_subscriber_killed_and_restarted_on_the_same_address_gets_traffic_within_a_second() {
    use bus_actors::{Bus, PeerId};
    use integration::{Reliable, free_port, secure_builder};

    let group = test_group();
    let key = [0x42; 32];
    // The liveness timeout is 5 s: the restart falls well within it.
    let publisher: Bus = secure_builder(group, key)
        .peer_id(PeerId([1; 16]))
        .liveness_factor(25)
        .start()
        .await
        .expect("publisher");
    let port = free_port().to_string();
    let args = [
        "--group",
        &group.to_string(),
        "--reliable-subscriber",
        "--peer-byte",
        "9",
        "--port",
        &port,
        "--key",
        &bus_actors::keys::format_key(&key),
        "--liveness-factor",
        "25",
    ]
    .map(String::from);
    let first = Reporter::spawn(test_peer(&args)).await;
    publisher
        .wait_for_subscribers::<Reliable>(1, Duration::from_secs(5))
        .await
        .expect("the subscriber is known");
    for seq in 0..50 {
        publisher
            .publish_reliable(Reliable { seq })
            .await
            .expect("delivered before the restart");
    }
    let before = first.reported("got", 50, Duration::from_secs(5)).await;
    assert!(before.iter().copied().eq(0..50), "{before:?}");
    drop(first); // SIGKILL: no goodbye.

    let second = Reporter::spawn(test_peer(&args)).await;
    let restarted = Instant::now();
    for seq in 50..100 {
        publisher
            .publish_reliable(Reliable { seq })
            .await
            .expect("delivered after the restart");
    }
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "traffic flowed again after {took:?}"
    );
    // Each message once: 50 reports, and none more a moment later.
    let mut after = second.reported("got", 50, Duration::from_secs(5)).await;
    after.sort_unstable();
    assert!(after.iter().copied().eq(50..100), "{after:?}");
    assert!(
        publisher.metrics().handshakes >= 2,
        "a new session with the new process"
    );
    drop(second.child);
    publisher.shutdown().await.expect("shutdown");
}
