//! Every example, run as a user runs it, to its end: the demo, reliable delivery, the
//! public-key cluster, the sensor, a scripted chat between two people, and the Prometheus
//! exporter scraped while it runs.

#![allow(clippy::expect_used, clippy::unwrap_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Kills the child if the test fails before it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end, within [`WITHIN`].
fn run(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WITHIN)
        .expect("ends in time")
        .expect("its output")
}

/// The lines a child prints, as they come, on a channel.
fn lines_of(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `lines` until one contains `what`, within [`WITHIN`].
fn wait_for(lines: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {what:?}: {e}"),
        }
    }
}

#[test]
fn the_demo_ends_with_every_reading_received() {
    let out = run(&mut Command::new(env!("CARGO_BIN_EXE_demo")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("every peer received every reading"),
        "{stdout}"
    );
}

#[test]
fn the_reliable_example_reports_who_acknowledged_and_who_is_missing() {
    let out = run(&mut Command::new(env!("CARGO_BIN_EXE_reliable")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("missing [PeerId("), "{stdout}");
    assert!(stdout.contains("every report was as expected"), "{stdout}");
}

#[test]
fn the_public_key_cluster_admits_exactly_its_members() {
    let out = run(&mut Command::new(env!("CARGO_BIN_EXE_public_keys")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("the cluster admitted exactly its members"),
        "{stdout}"
    );
}

#[test]
fn the_sensor_shows_its_readings_and_ends() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_sensor")).args([
        "--name", "north", "--every", "100ms", "--for", "1s", "--plain",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let readings = stdout.lines().filter(|l| l.contains("north")).count();
    assert!((5..=11).contains(&readings), "{stdout}");
}

/// Alice and Bob in a room with a key: Bob sees Alice join, what she says, and her leaving, by
/// name.
#[test]
fn two_people_chat_and_see_each_other_come_and_go() {
    let dir = std::env::temp_dir().join(format!("chat-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("room.key");
    std::fs::write(
        &key,
        format!(
            "{}\n",
            bus_actors::keys::format_key(&bus_actors::keys::random_key())
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let port = free_port().to_string();
    let person = |nick: &str| {
        let child = Command::new(env!("CARGO_BIN_EXE_chat"))
            .args(["--psk-file", key.to_str().unwrap(), "--port", &port, nick])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("chat runs");
        Running(child)
    };
    let mut bob = person("bob");
    let bob_says = lines_of(bob.0.stdout.take().unwrap());
    let mut alice = person("alice");
    let alice_says = lines_of(alice.0.stdout.take().unwrap());
    // Each can reach the other.
    wait_for(&alice_says, "* bob joined");
    wait_for(&bob_says, "* alice joined");
    let mut alice_types = alice.0.stdin.take().unwrap();
    writeln!(alice_types, "hello bob").unwrap();
    wait_for(&bob_says, "<alice> hello bob");
    // End of her input: she leaves, and Bob is told by name.
    drop(alice_types);
    wait_for(&bob_says, "* alice left");
    drop(bob.0.stdin.take());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exporter's page, scraped while the example runs, has the datagram and drop counters of
/// both its peers.
#[test]
fn the_prometheus_example_serves_the_bus_counters() {
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listen.local_addr().unwrap();
    drop(listen);
    let mut example = Running(
        Command::new(env!("CARGO_BIN_EXE_prometheus"))
            .args([
                "--listen",
                &addr.to_string(),
                "--port",
                &free_port().to_string(),
                "--for",
                "30s",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("runs"),
    );
    let said = lines_of(example.0.stdout.take().unwrap());
    wait_for(&said, "serving metrics");
    // The counters are copied out once a second: scrape until both peers' datagrams show.
    let deadline = std::time::Instant::now() + WITHIN;
    let page = loop {
        let page = scrape(addr);
        let sending = page
            .lines()
            .filter(|l| l.starts_with("bus_datagrams_total{") && l.contains("direction=\"out\""))
            .filter(|l| !l.ends_with(" 0"))
            .count();
        if sending == 2 {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for reason in ["auth_failure", "replay", "malformed"] {
        assert!(
            page.contains(&format!("reason=\"{reason}\"")),
            "no {reason} drop counter: {page}"
        );
    }
    assert!(page.contains("bus_reliable_total{"), "{page}");
    assert!(
        page.lines().any(|l| l.starts_with("bus_received_total{")
            && l.contains("topic=\"plant/boiler/temperature\"")
            && !l.ends_with(" 0")),
        "no per-topic count: {page}"
    );
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    page
}
