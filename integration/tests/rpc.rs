//! Remote procedure calls on real loopback sockets: a counter called 1,000 times through 30%
//! loss and 10% duplication counts 1,000, every call answered; the error statuses reach the
//! caller without detail from the server.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use actix::prelude::*;
use bus_actors::{
    Bus, CallRequest, Error, STATUS_HANDLER_ERROR, STATUS_NO_SUCH_PROCEDURE, STATUS_REMOTE_FAILURE,
};
use futures_util::future::join_all;
use integration::{await_known, builder, events, test_group};

const DEADLINE: bus_actors::Duration = bus_actors::Duration::from_secs(30);

/// Counts its calls; answers each with the count.
struct Counter(u64);

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<CallRequest> for Counter {
    type Result = Result<Vec<u8>, String>;
    fn handle(&mut self, request: CallRequest, _: &mut Context<Self>) -> Self::Result {
        match &request.payload[..] {
            b"+1" => {
                self.0 += 1;
                Ok(self.0.to_le_bytes().to_vec())
            }
            b"count" => Ok(self.0.to_le_bytes().to_vec()),
            b"panic" => panic!("a handler bug, with a detail that must not leave the server"),
            other => Err(format!("unknown command of {} bytes", other.len())),
        }
    }
}

fn lossy(seed: u64) -> bus_actors::BusBuilder {
    builder(test_group())
        .liveness_factor(20)
        .inject_faults(bus_actors::transport::Faults {
            loss: 0.3,
            duplicate: 0.1,
            seed,
            ..bus_actors::transport::Faults::NONE
        })
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

fn count_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("a count"))
}

/// Issue 16, acceptance 1 (loopback): 1,000 increments, 16 at a time, through 30% loss and
/// 10% duplication each way, run exactly 1,000 times, and each call gets its own count.
#[actix::test]
async fn a_counter_called_a_thousand_times_through_loss_counts_a_thousand() {
    let group = test_group();
    let make = |seed| lossy(seed).group(group);
    let (caller, server) = pair(make).await;
    server.serve(400, Counter(0).start().recipient());
    let server_id = server.local_id();
    let mut counts = Vec::new();
    for _ in 0..1000 / 16 + 1 {
        let wave = (0..16).map(|_| caller.call(server_id, 400, b"+1", DEADLINE));
        for answer in join_all(wave).await {
            counts.push(count_of(&answer.expect("answered")));
        }
    }
    counts.truncate(1000);
    let total = count_of(
        &caller
            .call(server_id, 400, b"count", DEADLINE)
            .await
            .expect("answered"),
    );
    // 63 waves of 16: 1008 increments made, each run once.
    assert_eq!(total, 1008);
    counts.sort_unstable();
    counts.dedup();
    assert_eq!(counts.len(), 1000, "every answer its own count");
    for bus in [caller, server] {
        bus.shutdown().await.expect("shutdown");
    }
}

/// Unknown procedure, the handler's error, and a handler that panics: each a status and a
/// message the caller can show, nothing of the server's internals; the server keeps serving.
#[actix::test]
async fn errors_reach_the_caller_as_statuses() {
    let group = test_group();
    let (caller, server) = pair(|_| builder(group)).await;
    server.serve(400, Counter(0).start().recipient());
    let id = server.local_id();
    let (code, message) = status(caller.call(id, 401, b"", DEADLINE).await);
    assert_eq!(
        (code, message.as_str()),
        (STATUS_NO_SUCH_PROCEDURE, "no such procedure")
    );
    let (code, message) = status(caller.call(id, 400, b"jump", DEADLINE).await);
    assert_eq!(
        (code, message.as_str()),
        (STATUS_HANDLER_ERROR, "unknown command of 4 bytes")
    );
    let (code, message) = status(caller.call(id, 400, b"panic", DEADLINE).await);
    assert_eq!(
        (code, message.as_str()),
        (STATUS_REMOTE_FAILURE, "remote failure")
    );
    // The panicked handler's actor is gone: a new one serves, the bus is unharmed.
    server.serve(400, Counter(41).start().recipient());
    let answer = caller
        .call(id, 400, b"+1", DEADLINE)
        .await
        .expect("answered");
    assert_eq!(count_of(&answer), 42);
    // A call to a peer that is not there is refused at once, naming it.
    let nobody = bus_actors::PeerId([9; 16]);
    assert!(
        matches!(caller.call(nobody, 400, b"", DEADLINE).await, Err(Error::Call { peer, .. }) if peer == nobody)
    );
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
    type Result = ResponseFuture<Result<Vec<u8>, String>>;
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
    server.serve(1, Slow(started_tx).start().recipient());
    server.serve(2, Counter(0).start().recipient());
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
    let slow = caller.call(id, 1, b"", DEADLINE);
    let others = async {
        // Once the slow call is in its handler.
        slow_started.recv().await.expect("the slow handler started");
        for seq in 0..10 {
            let at = std::time::Instant::now();
            caller.call(id, 2, b"+1", DEADLINE).await.expect("answered");
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
