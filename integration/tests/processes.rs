//! Peers in separate OS processes (the `test-peer` binary), on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bus_actors::BusEvent;
use integration::{BEACON_INTERVAL, await_event, events, start, test_group};

fn test_peer(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-peer"));
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Kills the child when the test ends, whatever happens.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let liveness_timeout = BEACON_INTERVAL * 3;
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
