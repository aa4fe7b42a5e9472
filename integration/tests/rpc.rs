//! Remote procedure calls on real loopback sockets: a counter called 1,000 times through 30%
//! loss and 10% duplication counts 1,000, every call answered; each error reaches the caller
//! as a status or a refusal, without detail from the server; a slow handler delays only its
//! own calls, and a concurrency limit holds.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use actix::prelude::*;
use bus_actors::{
    Bus, CallRequest, Error, Refusal, Request, Rpc, STATUS_NO_SUCH_PROCEDURE,
    STATUS_REMOTE_FAILURE, STATUS_UNDECODABLE,
};
use futures_util::future::join_all;
use integration::{await_known, builder, events, test_group};
use serde::{Deserialize, Serialize};

const DEADLINE: bus_actors::Duration = bus_actors::Duration::from_secs(30);

/// Adds to the counter; answers with the count. By 0 reads it; by 13 is refused; by 666
/// panics.
#[derive(Debug, Deserialize, Serialize, bus_actors::Rpc)]
#[rpc(procedure = 400, reply = u64)]
struct Add {
    by: u64,
}

/// Another build's definition of procedure 400.
#[derive(Debug, Deserialize, Serialize, bus_actors::Rpc)]
#[rpc(procedure = 400, reply = u64)]
struct AddSigned {
    by: i64,
}

/// Nobody serves it.
#[derive(Debug, Deserialize, Serialize, bus_actors::Rpc)]
#[rpc(procedure = 402, reply = ())]
struct Unserved;

/// Counts; serves [`Add`] typed, and by number: `+1` adds one, `count` reads, anything else
/// is refused.
struct Counter(u64);

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Request<Add>> for Counter {
    type Result = Result<u64, Refusal>;
    fn handle(&mut self, call: Request<Add>, _: &mut Context<Self>) -> Self::Result {
        match call.request.by {
            13 => Err(Refusal::new(13, "unlucky")),
            666 => panic!("a handler bug, with a detail that must not leave the server"),
            by => {
                self.0 += by;
                Ok(self.0)
            }
        }
    }
}

impl Handler<CallRequest> for Counter {
    type Result = Result<Vec<u8>, Refusal>;
    fn handle(&mut self, request: CallRequest, _: &mut Context<Self>) -> Self::Result {
        match &request.payload[..] {
            b"+1" => {
                self.0 += 1;
                Ok(self.0.to_le_bytes().to_vec())
            }
            b"count" => Ok(self.0.to_le_bytes().to_vec()),
            other => Err(format!("unknown command of {} bytes", other.len()).into()),
        }
    }
}

async fn pair(make: impl Fn(u64) -> bus_actors::BusBuilder) -> (Bus, Bus) {
    let (caller, server) = (
        make(1).start().await.expect("start"),
        make(2).start().await.expect("start"),
    );
    await_known(&caller, &mut events(&caller), 1, Duration::from_secs(20)).await;
    (caller, server)
}

/// The status and message of a call the server refused.
fn status<T: std::fmt::Debug>(result: Result<T, Error>) -> (u8, String) {
    match result {
        Err(Error::Remote {
            status, message, ..
        }) => (status, message),
        other => panic!("{other:?}"),
    }
}

/// Issue 16, acceptance 1 (loopback): 1,000 typed increments, 16 at a time, through 30% loss
/// and 10% duplication each way, run exactly 1,000 times, and each call gets its own count.
#[actix::test]
async fn a_counter_called_a_thousand_times_through_loss_counts_a_thousand() {
    let group = test_group();
    let make = |seed| integration::heavy_loss(builder(group), seed);
    let (caller, server) = pair(make).await;
    server
        .serve_rpc::<Add>(Counter(0).start().recipient())
        .expect("serve");
    let server_id = server.local_id();
    let mut counts = Vec::new();
    for _ in 0..1000 / 16 + 1 {
        let wave = (0..16).map(|_| caller.call_within(server_id, &Add { by: 1 }, DEADLINE));
        for answer in join_all(wave).await {
            counts.push(answer.expect("answered"));
        }
    }
    counts.truncate(1000);
    let total = caller
        .call_within(server_id, &Add { by: 0 }, DEADLINE)
        .await
        .expect("answered");
    // 63 waves of 16: 1008 increments made, each run once.
    assert_eq!(total, 1008);
    counts.sort_unstable();
    counts.dedup();
    assert_eq!(counts.len(), 1000, "every answer its own count");
    for bus in [caller, server] {
        bus.shutdown().await.expect("shutdown");
    }
}

/// Issue 16, acceptance 2: unknown procedure, undecodable request (bytes, and another
/// build's definition), the handler's refusal, a handler that panics: each reaches the caller
/// as a status or a refusal it can show, nothing of the server's internals, and the server
/// keeps serving. Mistakes of the caller's own are refused at once, naming what was wrong.
#[actix::test]
async fn errors_reach_the_caller_as_statuses() {
    let group = test_group();
    let (caller, server) = pair(|_| builder(group)).await;
    let counter = Counter(0).start();
    server
        .serve_rpc::<Add>(counter.clone().recipient())
        .expect("serve");
    server.serve(401, counter.recipient()).expect("serve");
    let id = server.local_id();
    let (code, message) = status(caller.call_within(id, &Unserved, DEADLINE).await);
    assert_eq!(
        (code, message.as_str()),
        (STATUS_NO_SUCH_PROCEDURE, "no such procedure")
    );
    let (code, message) = status(caller.call_procedure(id, 400, b"\xc1", DEADLINE).await);
    assert_eq!(
        (code, message.as_str()),
        (STATUS_UNDECODABLE, "undecodable request for procedure 400")
    );
    let (code, message) = status(caller.call_within(id, &AddSigned { by: 1 }, DEADLINE).await);
    assert_eq!(
        (code, message.as_str()),
        (
            STATUS_UNDECODABLE,
            "request built from another definition of procedure 400"
        )
    );
    assert_ne!(Add::FINGERPRINT, AddSigned::FINGERPRINT);
    match caller.call_within(id, &Add { by: 13 }, DEADLINE).await {
        Err(Error::Refused {
            peer,
            code,
            message,
        }) => assert_eq!((peer, code, message.as_str()), (id, 13, "unlucky")),
        other => panic!("{other:?}"),
    }
    match caller.call_procedure(id, 401, b"jump", DEADLINE).await {
        Err(Error::Refused { code, message, .. }) => {
            assert_eq!((code, message.as_str()), (0, "unknown command of 4 bytes"));
        }
        other => panic!("{other:?}"),
    }
    let (code, message) = status(caller.call_within(id, &Add { by: 666 }, DEADLINE).await);
    assert_eq!(
        (code, message.as_str()),
        (STATUS_REMOTE_FAILURE, "remote failure")
    );
    // The panicked handler's actor is gone: a new one serves, the bus is unharmed.
    server
        .serve_rpc::<Add>(Counter(41).start().recipient())
        .expect("serve");
    let answer = caller.call_within(id, &Add { by: 1 }, DEADLINE).await;
    assert_eq!(answer.expect("answered"), 42);
    // A call to a peer that is not there is refused at once, naming it.
    let nobody = bus_actors::PeerId([9; 16]);
    assert!(
        matches!(caller.call(nobody, &Add { by: 1 }).await, Err(Error::Call { peer, .. }) if peer == nobody)
    );
    // The bus's own procedures are not the application's.
    let reserved = server.serve(0xff00, Counter(0).start().recipient());
    assert!(matches!(reserved, Err(Error::ReservedProcedure(0xff00))));
    assert!(matches!(
        server.limit_concurrency(400, 0),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        server.limit_concurrency(999, 1),
        Err(Error::Config(_))
    ));
    for bus in [caller, server] {
        bus.shutdown().await.expect("shutdown");
    }
}

/// Issue 16, acceptance 2 (the last case): the server goes away while its handler runs; the
/// call fails as `PeerGone` at once, not at its deadline.
#[actix::test]
async fn a_call_to_a_server_that_goes_away_fails_promptly() {
    let group = test_group();
    let (caller, server) = pair(|_| builder(group)).await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    server
        .serve(1, Slow(started_tx).start().recipient())
        .expect("serve");
    let id = server.local_id();
    let call = caller.call_procedure(id, 1, b"", DEADLINE);
    let leave = async {
        started.recv().await.expect("the handler started");
        let at = std::time::Instant::now();
        server.shutdown().await.expect("shutdown");
        at
    };
    let (outcome, left_at) = tokio::join!(call, leave);
    let took = left_at.elapsed();
    assert!(
        matches!(
            outcome,
            Err(Error::CallFailed {
                failure: bus_actors::CallFailure::PeerGone,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "failed {took:?} after it left"
    );
    caller.shutdown().await.expect("shutdown");
}

/// Answers after `for`, without holding its thread; says when it starts; counts how many run
/// at once.
struct Nap {
    running: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Actor for Nap {
    type Context = Context<Self>;
}

impl Handler<CallRequest> for Nap {
    type Result = ResponseFuture<Result<Vec<u8>, Refusal>>;
    fn handle(&mut self, _: CallRequest, _: &mut Context<Self>) -> Self::Result {
        use std::sync::atomic::Ordering::SeqCst;
        let (running, most) = (self.running.clone(), self.most.clone());
        let now = running.fetch_add(1, SeqCst) + 1;
        most.fetch_max(now, SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            running.fetch_sub(1, SeqCst);
            Ok(Vec::new())
        })
    }
}

/// A procedure limited to 2 calls at once runs 8 concurrent calls 2 at a time, and answers
/// them all; unlimited, they overlap.
#[actix::test]
async fn a_concurrency_limit_holds() {
    let group = test_group();
    let (caller, server) = pair(|_| builder(group)).await;
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let nap = Nap {
        running: std::sync::Arc::default(),
        most: most.clone(),
    }
    .start();
    server.serve(1, nap.recipient()).expect("serve");
    let id = server.local_id();
    let eight = || join_all((0..8).map(|_| caller.call_procedure(id, 1, b"", DEADLINE)));
    assert!(eight().await.iter().all(Result::is_ok));
    let unlimited = most.swap(0, std::sync::atomic::Ordering::SeqCst);
    assert!(unlimited > 2, "{unlimited} at once");
    server.limit_concurrency(1, 2).expect("limit");
    assert!(eight().await.iter().all(Result::is_ok));
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    for bus in [caller, server] {
        bus.shutdown().await.expect("shutdown");
    }
}

/// Answers after two seconds, without holding its thread; says when it starts.
struct Slow(tokio::sync::mpsc::UnboundedSender<()>);

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<CallRequest> for Slow {
    type Result = ResponseFuture<Result<Vec<u8>, Refusal>>;
    fn handle(&mut self, _: CallRequest, _: &mut Context<Self>) -> Self::Result {
        let _ = self.0.send(());
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(b"slow".to_vec())
        })
    }
}

/// Issue 16, acceptance 3: while a handler takes 2 s, other procedures of the same peer answer
/// in under 50 ms and its pub/sub goes on.
#[actix::test]
async fn a_slow_handler_delays_only_its_own_calls() {
    let group = test_group();
    let (caller, server) = pair(|_| builder(group)).await;
    let (started_tx, mut slow_started) = tokio::sync::mpsc::unbounded_channel();
    server
        .serve(1, Slow(started_tx).start().recipient())
        .expect("serve");
    server
        .serve(2, Counter(0).start().recipient())
        .expect("serve");
    let mut readings = integration::subscribe::<integration::Counter>(&caller).await;
    integration::await_subscribers(
        &server,
        &mut events(&server),
        <integration::Counter as bus_actors::Topic>::ID,
        1,
        Duration::from_secs(10),
    )
    .await;
    let id = server.local_id();
    let started = std::time::Instant::now();
    let slow = caller.call_procedure(id, 1, b"", DEADLINE);
    let others = async {
        // Once the slow call is in its handler.
        slow_started.recv().await.expect("the slow handler started");
        for seq in 0..10 {
            let at = std::time::Instant::now();
            caller
                .call_procedure(id, 2, b"+1", DEADLINE)
                .await
                .expect("answered");
            let took = at.elapsed();
            assert!(took < Duration::from_millis(50), "call {seq} took {took:?}");
            let at = std::time::Instant::now();
            server
                .publish(integration::Counter { publisher: 0, seq })
                .await
                .expect("publish");
            let got = tokio::time::timeout(Duration::from_millis(50), readings.recv()).await;
            assert!(
                got.is_ok(),
                "message {seq} not delivered within 50 ms ({:?})",
                at.elapsed()
            );
        }
        started.elapsed()
    };
    let (slow, others_done) = tokio::join!(slow, others);
    assert_eq!(&slow.expect("the slow call answered")[..], b"slow");
    assert!(
        others_done < Duration::from_secs(2),
        "the others waited for the slow one"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    for bus in [caller, server] {
        bus.shutdown().await.expect("shutdown");
    }
}

/// Issue 16, acceptance 4: a group call to three servers returns three replies, one from
/// each; "first reply" returns one of them; a procedure nobody serves is an error saying so.
#[actix::test]
async fn a_group_call_reaches_every_server_and_the_first_reply_wins() {
    let group = test_group();
    let caller = builder(group).start().await.expect("start");
    let mut servers = Vec::new();
    for _ in 0..3 {
        let server = builder(group).start().await.expect("start");
        server
            .serve_rpc::<Add>(Counter(10).start().recipient())
            .expect("serve");
        servers.push(server);
    }
    let topic = bus_actors::TopicId::from_name(&bus_actors::servers_topic(Add::PROCEDURE));
    let within = Duration::from_secs(20);
    integration::await_subscribers(&caller, &mut events(&caller), topic, 3, within).await;
    let mut ids: Vec<_> = servers.iter().map(Bus::local_id).collect();
    ids.sort_unstable();
    let mut answered = caller.servers_of(Add::PROCEDURE);
    answered.sort_unstable();
    assert_eq!(answered, ids);

    let replies = caller
        .call_group(&Add { by: 1 }, bus_actors::Duration::from_secs(2))
        .await
        .expect("group call");
    let mut from: Vec<_> = replies
        .iter()
        .map(|(peer, reply)| {
            assert_eq!(reply.as_ref().expect("replied"), &11);
            *peer
        })
        .collect();
    from.sort_unstable();
    assert_eq!(from, ids, "one reply from each server");

    let (first, count) = caller
        .call_first(&Add { by: 1 }, DEADLINE)
        .await
        .expect("a first reply");
    assert!(ids.contains(&first));
    assert_eq!(count, 12);

    match caller
        .call_group(&Unserved, bus_actors::Duration::from_secs(1))
        .await
    {
        Err(Error::NoServers { procedure }) => assert_eq!(procedure, Unserved::PROCEDURE),
        other => panic!("{other:?}"),
    }
    for bus in servers.into_iter().chain([caller]) {
        bus.shutdown().await.expect("shutdown");
    }
}

/// A call and its answer larger than a datagram go as fragments: a 1 MiB argument comes back
/// whole (reversed, so it is the server's answer).
#[actix::test]
async fn large_calls_and_answers_go_as_fragments() {
    let group = test_group();
    let (caller, server) = pair(|_| builder(group)).await;
    server
        .serve_fn(7, |_, argument| {
            Ok(argument.iter().rev().copied().collect())
        })
        .expect("serve");
    let argument: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let back = caller
        .call_procedure(server.local_id(), 7, &argument, DEADLINE)
        .await
        .expect("answered");
    assert!(back.len() == argument.len() && back.iter().rev().eq(argument.iter()));
    for bus in [caller, server] {
        bus.shutdown().await.expect("shutdown");
    }
}
