//! The `bus` CLI as a user drives it, in processes of its own, against a plant sensor peer (the
//! examples' code) in this process: keys from `bus keygen` load into a secured bus that the CLI
//! joins; `peers` names the sensor's topic; `listen` prints as JSON what `publish` sends from
//! another process; `publish --reliable` reports who acknowledged.

#![allow(clippy::expect_used, clippy::unwrap_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, Event, PeerId, Topic, keys};
use examples::plant::{Temperature, publish_readings};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(20);

/// A group port of the test's own, so that it meets no other test's peers.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// A scratch directory with a key made by `bus keygen`.
    async fn new(name: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("bus-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let cluster = Cluster {
            dir,
            port: free_port(),
        };
        let out = cluster
            .bus(&["keygen", "plant.key"])
            .output()
            .await
            .expect("keygen");
        assert!(out.status.success(), "{out:?}");
        cluster
    }

    fn key(&self) -> PathBuf {
        self.dir.join("plant.key")
    }

    /// `bus` with this cluster's port and key, then `args`.
    fn bus(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bus"));
        command
            .current_dir(&self.dir)
            .args(["--port", &self.port.to_string()])
            .args(["--psk-file", &self.key().display().to_string()])
            .args(args)
            .kill_on_drop(true);
        command
    }

    /// A sensor peer in this process, with the key `bus keygen` wrote: it subscribes to the
    /// temperature topic and publishes a reading every 100 ms.
    async fn sensor(&self) -> (Bus, mpsc::UnboundedReceiver<Temperature>) {
        let bus = Bus::builder()
            .cluster_psk(keys::load_key(self.key()).expect("the key bus keygen wrote loads"))
            .group(([239, 255, 28, 12], self.port).into())
            .metadata("sensor", "north")
            .start()
            .await
            .expect("start");
        let (tx, rx) = mpsc::unbounded_channel();
        bus.subscribe::<Temperature>(Forward(tx).start().recipient())
            .await
            .expect("subscribe");
        let publisher = bus.clone();
        actix::spawn(async move {
            let every = Duration::from_millis(100);
            let _ = publish_readings(&publisher, "north", 70.0, every, None).await;
        });
        (bus, rx)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Forward(mpsc::UnboundedSender<Temperature>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<Event<Temperature>> for Forward {
    type Result = ();
    fn handle(&mut self, event: Event<Temperature>, _: &mut Context<Self>) {
        let _ = self.0.send(event.into_message());
    }
}

async fn stdout_json(command: &mut Command) -> Value {
    let out = stdout_text(command).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `peers --json` lists the sensor with its topic by name and fingerprint, and its metadata.
#[actix::test]
async fn peers_lists_a_running_sensor_with_its_topic_names() {
    let cluster = Cluster::new("peers").await;
    let (sensor, _) = cluster.sensor().await;
    let peers = stdout_json(&mut cluster.bus(&["peers", "--json", "--wait", "2s"])).await;
    let sensor_id = sensor.local_id().to_string();
    let listed = peers
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["id"] == sensor_id.as_str()))
        .unwrap_or_else(|| panic!("the sensor is not listed: {peers}"));
    assert_eq!(listed["metadata"]["sensor"], "north");
    assert_eq!(
        listed["topics"],
        serde_json::json!([{
            "name": Temperature::NAME,
            "fingerprint": format!("{:016x}", Temperature::FINGERPRINT),
        }])
    );
    assert!(listed["rtt_us"].is_u64(), "{listed}");
    // The table names it too.
    let out = cluster
        .bus(&["peers", "--wait", "2s"])
        .output()
        .await
        .expect("runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(Temperature::NAME) && table.contains("sensor=north"),
        "{table}"
    );
    sensor.shutdown().await.expect("shutdown");
}

/// `listen` prints the sensor's readings, and what `publish` sends from another process, as
/// JSON; `publish --reliable` prints a report naming the subscribers that acknowledged.
#[actix::test]
async fn listen_prints_as_json_what_publish_sends() {
    let cluster = Cluster::new("listen").await;
    let (sensor, mut readings) = cluster.sensor().await;
    let mut listener = cluster
        .bus(&[
            "--meta",
            "role=listener",
            "listen",
            "test/notes",
            Temperature::NAME,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("listen runs");
    let mut lines = BufReader::new(listener.stdout.take().expect("stdout")).lines();
    let mut next_line = async || -> Value {
        let line = tokio::time::timeout(WITHIN, lines.next_line())
            .await
            .expect("a line in time")
            .expect("readable")
            .expect("a line before the end");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };

    // The sensor's typed readings, decoded: a compact struct is the array of its fields.
    let reading = next_line().await;
    assert_eq!(reading["topic"], Temperature::NAME);
    assert_eq!(reading["from"], sensor.local_id().to_string().as_str());
    assert_eq!(reading["message"][0], "north", "{reading}");
    assert!(reading["message"][1].is_f64(), "{reading}");
    assert_eq!(
        reading["fingerprint"],
        format!("{:016x}", Temperature::FINGERPRINT)
    );

    // A note published from another process: the listener is its only subscriber (it takes
    // any schema), and acknowledges it.
    let note = r#"{"text":"boiler north serviced","by":["ann","bo"],"ok":true}"#;
    let report =
        stdout_json(&mut cluster.bus(&["publish", "test/notes", note, "--reliable"])).await;
    assert_eq!(report["delivered"], true, "{report}");
    let acked = ids(&report["acked"]);
    let listener_id = listener_id(&sensor).await;
    assert_eq!(acked, [listener_id.to_string()], "{report}");
    let printed = loop {
        let line = next_line().await;
        if line["topic"] == "test/notes" {
            break line;
        }
    };
    assert_eq!(
        printed["message"],
        serde_json::from_str::<Value>(note).unwrap()
    );

    // JSON to the typed topic: the sensor decodes it (its fingerprint was described), and the
    // report names both subscribers.
    let json = r#"{"sensor":"from-the-shell","celsius":21.5}"#;
    let report =
        stdout_json(&mut cluster.bus(&["publish", Temperature::NAME, json, "--reliable"])).await;
    let mut acked = ids(&report["acked"]);
    acked.sort();
    let mut expected = vec![sensor.local_id().to_string(), listener_id.to_string()];
    expected.sort();
    assert_eq!(acked, expected, "{report}");
    let from_shell = tokio::time::timeout(WITHIN, async {
        while let Some(reading) = readings.recv().await {
            if reading.sensor == "from-the-shell" {
                return Some(reading);
            }
        }
        None
    })
    .await
    .expect("the sensor got the shell's reading");
    assert_eq!(from_shell.map(|r| r.celsius), Some(21.5));
    listener.kill().await.expect("kill");
    sensor.shutdown().await.expect("shutdown");
}

/// The listener's id, as the sensor knows it (by the metadata it announces).
async fn listener_id(sensor: &Bus) -> PeerId {
    tokio::time::timeout(WITHIN, async {
        loop {
            if let Some(p) = sensor
                .peers()
                .iter()
                .find(|p| p.metadata("role") == Some("listener"))
            {
                return p.id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the sensor knows the listener")
}

/// Mistakes get a one-line answer that names them, and a failing status.
#[actix::test]
async fn mistakes_are_named() {
    let cluster = Cluster::new("mistakes").await;
    let run = async |command: &mut Command| {
        let out = command.output().await.expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut no_keys = Command::new(env!("CARGO_BIN_EXE_bus"));
    no_keys.args(["peers", "--wait", "0s"]);
    let (code, stderr) = run(&mut no_keys).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--psk-file") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let (code, stderr) = run(&mut cluster.bus(&["publish", "no spaces", "1"])).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("invalid topic name"), "{stderr}");
    let (code, stderr) = run(&mut cluster.bus(&["publish", "a/b", "{not json"])).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not JSON"), "{stderr}");
    let (code, stderr) = run(&mut cluster.bus(&["publish", "a/b", "1", "--wait", "300ms"])).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no peer subscribes to a/b"), "{stderr}");
    let (code, stderr) = run(&mut cluster.bus(&["peers", "--sise", "64"])).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--sise"), "{stderr}");
    let missing = cluster.dir.join("missing.key");
    let mut wrong_key = Command::new(env!("CARGO_BIN_EXE_bus"));
    wrong_key.args(["--psk-file", &missing.display().to_string(), "peers"]);
    let (code, stderr) = run(&mut wrong_key).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

/// `bench` publishes to a subscriber of its own and says what arrived; reliably, all of it.
#[actix::test]
async fn bench_reports_what_arrived() {
    let cluster = Cluster::new("bench").await;
    let out = stdout_text(&mut cluster.bus(&["bench", "--for", "300ms", "--reliable"])).await;
    assert!(
        out.contains("reliable, 64 B: sent") && out.contains("(100.0%)"),
        "{out}"
    );
    assert!(out.contains("acknowledged after: p50"), "{out}");
    let out = stdout_text(&mut cluster.bus(&["bench", "--for", "300ms", "--size", "1000"])).await;
    assert!(out.contains("best effort, 1000 B: sent"), "{out}");
}

async fn stdout_text(command: &mut Command) -> String {
    let out = tokio::time::timeout(WITHIN, command.output())
        .await
        .expect("the command ends")
        .expect("the command runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
