//! Pavillion's RPC scenario, as its own tests wrote it: procedure 400 (an object with state,
//! served typed) and 401 (a bare function, served by number) echo `b"A test string"` back, in
//! the pre-shared-key and public-key modes. A panicking function is a remote failure, and the
//! server keeps serving.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use actix::prelude::*;
use bus_actors::{Bus, Error, Refusal, Request, Rpc, STATUS_REMOTE_FAILURE};
use integration::{await_known, events, public_key_peers, secure_builder, test_group};
use serde::{Deserialize, Serialize};

const TEST_STRING: &[u8] = b"A test string";
const DEADLINE: bus_actors::Duration = bus_actors::Duration::from_secs(10);

/// Procedure 400: echoes its bytes.
#[derive(Debug, Deserialize, Serialize, Rpc)]
#[rpc(procedure = 400, reply = Echoed)]
struct Echo(#[serde(with = "serde_bytes")] Vec<u8>);

/// The echo, and how many the object has answered.
#[derive(Debug, Deserialize, Serialize)]
struct Echoed {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    answered: u64,
}

/// The object behind procedure 400.
#[derive(Default)]
struct Echoer {
    answered: u64,
}

impl Actor for Echoer {
    type Context = Context<Self>;
}

impl Handler<Request<Echo>> for Echoer {
    type Result = Result<Echoed, Refusal>;
    fn handle(&mut self, call: Request<Echo>, _: &mut Context<Self>) -> Self::Result {
        self.answered += 1;
        Ok(Echoed {
            bytes: call.request.0,
            answered: self.answered,
        })
    }
}

/// Serves 400, 401 and a panicking 402 on `server`, and checks them from `caller`.
async fn echo_scenario(caller: &Bus, server: &Bus) {
    await_known(caller, &mut events(caller), 1, Duration::from_secs(20)).await;
    server
        .serve_rpc::<Echo>(Echoer::default().start().recipient())
        .expect("serve 400");
    server
        .serve_fn(401, |_, argument| Ok(argument.to_vec()))
        .expect("serve 401");
    server
        .serve_fn(402, |_, _| {
            panic!("a bug with a detail that stays on the server")
        })
        .expect("serve 402");
    let peer = server.local_id();
    for round in 1..=3 {
        let echoed = caller
            .call_within(peer, &Echo(TEST_STRING.to_vec()), DEADLINE)
            .await
            .expect("400 answers");
        assert_eq!(echoed.bytes, TEST_STRING);
        assert_eq!(echoed.answered, round, "the object keeps its state");
        let echoed = caller
            .call_procedure(peer, 401, TEST_STRING, DEADLINE)
            .await
            .expect("401 answers");
        assert_eq!(&echoed[..], TEST_STRING);
    }
    match caller
        .call_procedure(peer, 402, TEST_STRING, DEADLINE)
        .await
    {
        Err(Error::Remote {
            status, message, ..
        }) => {
            assert_eq!(status, STATUS_REMOTE_FAILURE);
            assert!(!message.contains("bug"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let echoed = caller
        .call_procedure(peer, 401, TEST_STRING, DEADLINE)
        .await
        .expect("still serving");
    assert_eq!(&echoed[..], TEST_STRING);
}

/// Issue 16, acceptance 7, pre-shared key.
#[actix::test]
async fn echo_procedures_answer_with_a_preshared_key() {
    let group = test_group();
    let key = [0x91; 32];
    let caller = secure_builder(group, key).start().await.expect("start");
    let server = secure_builder(group, key).start().await.expect("start");
    echo_scenario(&caller, &server).await;
}

/// Issue 16, acceptance 7, public keys.
#[actix::test]
async fn echo_procedures_answer_in_public_key_mode() {
    let buses = public_key_peers(test_group(), 2).await;
    echo_scenario(&buses[0], &buses[1]).await;
}
