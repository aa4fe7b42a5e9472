//! Messages to one chosen peer on real loopback sockets: they reach that peer alone, exactly
//! once when reliable, through 30% loss and 10% duplication, in plaintext and encrypted; a
//! peer that takes nothing of the topic, or is not known, is an error that names it.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use bus_actors::{Bus, BusBuilder, Error, Event, Topic};
use futures_util::future::join_all;
use integration::{
    await_subscribers, builder, events, heavy_loss, receive, secure_builder, subscribe, test_group,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "test/direct")]
struct Note {
    seq: u64,
}

/// Marks the end of a run: published to everyone after the direct messages are all acknowledged.
const END: u64 = u64::MAX;

const WITHIN: Duration = Duration::from_secs(30);

/// A sender and two peers subscribing to [`Note`], each confirmed by the sender.
async fn three(
    make: impl Fn(u64) -> BusBuilder,
) -> (Bus, [(Bus, UnboundedReceiver<Event<Note>>); 2]) {
    let sender = make(1).start().await.expect("start");
    let mut peers = Vec::new();
    for seed in [2, 3] {
        let bus = make(seed).start().await.expect("start");
        let notes = subscribe::<Note>(&bus).await;
        peers.push((bus, notes));
    }
    await_subscribers(&sender, &mut events(&sender), Note::ID, 2, WITHIN).await;
    let peers: [_; 2] = peers.try_into().expect("two");
    (sender, peers)
}

/// Publishes [`END`] reliably to both peers and returns what each received up to it, in order.
async fn until_end(
    sender: &Bus,
    peers: &mut [(Bus, UnboundedReceiver<Event<Note>>); 2],
) -> [Vec<u64>; 2] {
    sender
        .publish_reliable(Note { seq: END })
        .await
        .expect("the end mark delivered");
    let mut seen = [Vec::new(), Vec::new()];
    for ((_, notes), seen) in peers.iter_mut().zip(&mut seen) {
        loop {
            let note = tokio::time::timeout(WITHIN, notes.recv())
                .await
                .expect("the end mark")
                .expect("subscribed");
            if note.message.seq == END {
                break;
            }
            seen.push(note.message.seq);
        }
    }
    seen
}

async fn reliable_to_one_peer(make: impl Fn(u64) -> BusBuilder) {
    let (sender, mut peers) = three(make).await;
    let to = peers[0].0.local_id();
    for chunk in (0..500u64).collect::<Vec<_>>().chunks(50) {
        let sends = chunk
            .iter()
            .map(|seq| sender.send_reliable_to(to, Note { seq: *seq }));
        for report in join_all(sends).await {
            let report = report.expect("delivered");
            assert_eq!(report.acked, vec![to], "the report names the peer");
        }
    }
    let [mut got, other] = until_end(&sender, &mut peers).await;
    got.sort_unstable();
    assert_eq!(
        got,
        (0..500).collect::<Vec<_>>(),
        "each once, to the peer named"
    );
    assert!(other.is_empty(), "the other subscriber got {other:?}");
}

/// Issue 16, acceptance 5 (loopback, plaintext).
#[actix::test]
async fn reliable_messages_to_one_peer_reach_it_exactly_once_through_loss() {
    let group = test_group();
    reliable_to_one_peer(|seed| heavy_loss(builder(group), seed)).await;
}

/// Issue 16, acceptance 5 (loopback, encrypted).
#[actix::test]
async fn encrypted_reliable_messages_to_one_peer_reach_it_exactly_once_through_loss() {
    let group = test_group();
    reliable_to_one_peer(|seed| heavy_loss(secure_builder(group, [0x3c; 32]), seed)).await;
}

/// Best effort, without loss: the named peer gets every message, the other none.
#[actix::test]
async fn best_effort_messages_to_one_peer_reach_it_alone() {
    let group = test_group();
    let (sender, mut peers) = three(|_| builder(group)).await;
    let to = peers[1].0.local_id();
    for seq in 0..100 {
        sender
            .send_best_effort_to(to, Note { seq })
            .await
            .expect("sent");
    }
    let mut got = receive(&mut peers[1].1, 100, WITHIN).await;
    got.sort_unstable_by_key(|n| n.message.seq);
    assert!(got.iter().map(|n| n.message.seq).eq(0..100));
    let [other, rest] = until_end(&sender, &mut peers).await;
    assert!(other.is_empty() && rest.is_empty(), "{other:?} {rest:?}");
}

/// A peer that does not subscribe is named missing; one that is not known is refused; the
/// bus itself takes its own messages if it subscribes.
#[actix::test]
async fn a_peer_that_cannot_take_the_message_is_named() {
    let group = test_group();
    let sender = builder(group).start().await.expect("start");
    let bystander = builder(group).start().await.expect("start");
    integration::await_known(&sender, &mut events(&sender), 1, WITHIN).await;
    let short = bus_actors::Duration::from_millis(500);
    let to = bystander.local_id();
    match sender
        .send_reliable_to_within(to, Note { seq: 1 }, short)
        .await
    {
        Err(Error::Undelivered { report, .. }) => assert_eq!(report.missing, vec![to]),
        other => panic!("{other:?}"),
    }
    let stranger = bus_actors::PeerId([0xee; 16]);
    for result in [
        sender.send_best_effort_to(stranger, Note { seq: 2 }).await,
        sender.send_to(stranger, Note { seq: 3 }).await,
        sender
            .send_reliable_to(stranger, Note { seq: 4 })
            .await
            .map(drop),
    ] {
        assert!(
            matches!(result, Err(Error::UnknownPeer { peer }) if peer == stranger),
            "{result:?}"
        );
    }
    let mut own = subscribe::<Note>(&sender).await;
    let me = sender.local_id();
    let report = sender
        .send_reliable_to(me, Note { seq: 5 })
        .await
        .expect("to itself");
    assert_eq!(report.acked, vec![me]);
    assert_eq!(receive(&mut own, 1, WITHIN).await[0].message.seq, 5);
}
