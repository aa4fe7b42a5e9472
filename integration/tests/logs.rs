//! What the bus logs, through `tracing`, as an operator reads it: peers joining and leaving, in
//! the span of the bus that saw it; a schema mismatch once, not once a message.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_actors::Topic;
use integration::{Counter, await_event, builder, events, test_group};
use serde::{Deserialize, Serialize};

/// Everything written, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_or(Ok(0), |mut all| {
            all.extend_from_slice(bytes);
            Ok(bytes.len())
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|all| String::from_utf8_lossy(&all).into_owned())
            .unwrap_or_default()
    }
}

/// The counter topic as another build of the application declares it: same name, another
/// schema.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "test/counter")]
struct CounterV2 {
    publisher: u32,
    seq: u64,
    note: String,
}

const WITHIN: Duration = Duration::from_secs(10);

#[actix::test]
async fn peers_joining_and_leaving_and_schema_mismatches_are_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("bus_actors=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);

    let group = test_group();
    let old = builder(group).start().await.expect("start");
    let new = builder(group).start().await.expect("start");
    let _received = integration::subscribe::<Counter>(&old).await;
    let mut old_events = events(&old);
    integration::await_subscribers(&new, &mut events(&new), Counter::ID, 1, WITHIN).await;
    for seq in 0..5 {
        new.publish(CounterV2 {
            publisher: 1,
            seq,
            note: "v2".into(),
        })
        .await
        .expect("publish");
    }
    await_event(&mut old_events, WITHIN, "the mismatch", |e| {
        matches!(e, bus_actors::BusEvent::SchemaMismatch { .. })
    })
    .await;
    let new_id = new.local_id();
    new.shutdown().await.expect("shutdown");
    await_event(
        &mut old_events,
        WITHIN,
        "the peer leaving",
        |e| matches!(e, bus_actors::BusEvent::PeerLeft(id) if *id == new_id),
    )
    .await;

    let logs = captured.text();
    let (old_span, new_id) = (format!("bus{{id={}}}", old.local_id()), new_id.to_string());
    let line = |what: &str| {
        logs.lines()
            .find(|l| l.contains(what) && l.contains(&old_span) && l.contains(&new_id))
            .unwrap_or_else(|| panic!("no {what:?} from {old_span} about {new_id} in:\n{logs}"))
    };
    assert!(line("peer joined").contains(" INFO "));
    assert!(line("peer left").contains(" INFO "));
    let mismatches = logs
        .lines()
        .filter(|l| l.contains("another schema"))
        .count();
    assert_eq!(mismatches, 1, "{logs}");
    old.shutdown().await.expect("shutdown");
}
