//! Topics by name at run time on real loopback sockets: peers describe their topics (names and
//! fingerprints), an untyped subscriber gets a typed publisher's payloads undecoded, and an
//! untyped publisher that sends the fingerprint a typed subscriber described is decoded by it.

use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, RawEvent, Topic, UntypedTopic};
use integration::{
    Counter, Reliable, await_event, builder, events, receive, subscribe, test_group,
};
use tokio::sync::mpsc;

struct ForwardRaw(mpsc::UnboundedSender<RawEvent>);

impl Actor for ForwardRaw {
    type Context = Context<Self>;
}

impl Handler<RawEvent> for ForwardRaw {
    type Result = ();
    fn handle(&mut self, event: RawEvent, _: &mut Context<Self>) {
        let _ = self.0.send(event);
    }
}

async fn subscribe_untyped(bus: &Bus, name: &str) -> mpsc::UnboundedReceiver<RawEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    let subscribed = bus.subscribe_untyped(name, ForwardRaw(tx).start().recipient());
    assert!(subscribed.await.is_ok(), "subscribe_untyped");
    rx
}

const WITHIN: Duration = Duration::from_secs(10);

#[actix::test]
async fn untyped_and_typed_peers_exchange_messages_and_describe_their_topics() {
    let group = test_group();
    let typed = builder(group).start().await.expect("start");
    let tool = builder(group).start().await.expect("start");
    let mut typed_rx = subscribe::<Counter>(&typed).await;
    let mut tool_rx = subscribe_untyped(&tool, Counter::NAME).await;
    let mut reliable_rx = subscribe::<Reliable>(&typed).await;

    // Each learns what the other takes, by name, and with which fingerprint.
    let mut tool_events = events(&tool);
    await_event(
        &mut tool_events,
        WITHIN,
        "a description of the typed peer's topics",
        |_| {
            tool.peers().iter().any(|p| {
                p.description(Counter::ID)
                    .is_some_and(|d| d.fingerprint == Some(Counter::FINGERPRINT))
                    && p.description(Reliable::ID).is_some()
            })
        },
    )
    .await;
    let typed_peer = tool
        .peers()
        .into_iter()
        .find(|p| p.id == typed.local_id())
        .unwrap();
    let mut names = typed_peer.topic_names();
    names.sort();
    assert_eq!(names, ["test/counter", "test/reliable"]);
    let mut typed_events = events(&typed);
    await_event(
        &mut typed_events,
        WITHIN,
        "a description of the tool's topic",
        |_| {
            typed.peers().iter().any(|p| {
                p.confirmed
                    && p.description(Counter::ID)
                        .is_some_and(|d| d.fingerprint.is_none())
            })
        },
    )
    .await;

    // Typed to untyped: the payload as sent, with its fingerprint.
    let message = Counter {
        publisher: 7,
        seq: 1,
    };
    typed
        .publish_best_effort(message.clone())
        .await
        .expect("publish");
    let got = tokio::time::timeout(WITHIN, tool_rx.recv())
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(got.topic, "test/counter");
    assert_eq!(got.fingerprint, Counter::FINGERPRINT);
    assert_eq!(got.from, typed.local_id());
    assert_eq!(
        rmp_serde::from_slice::<Counter>(&got.payload).unwrap(),
        message
    );

    // Untyped to typed, reliably: a JSON-like map the typed side decodes, and a report naming it.
    let topic = UntypedTopic::new(Reliable::NAME, Reliable::FINGERPRINT).unwrap();
    let payload = rmp_serde::to_vec_named(&serde_json::json!({ "seq": 42 })).unwrap();
    let report = tool
        .publish_untyped_reliable(&topic, &payload)
        .await
        .expect("delivered");
    assert_eq!(report.acked, [typed.local_id()]);
    let got = receive(&mut reliable_rx, 1, WITHIN).await;
    assert_eq!(got[0].0.message, Reliable { seq: 42 });
    // The typed peer's own subscription to Counter got its own message locally, once.
    assert_eq!(
        receive(&mut typed_rx, 1, WITHIN).await[0].0.message,
        message
    );

    // A bad name is refused, naming the problem.
    let err = UntypedTopic::new("no spaces", 0).unwrap_err();
    assert!(err.to_string().contains("invalid topic name"), "{err}");
    for bus in [typed, tool] {
        bus.shutdown().await.expect("shutdown");
    }
}
