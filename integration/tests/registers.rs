//! Remote registers on real loopback sockets: read, acknowledged write, unreliable write and
//! observe, a write refused by the owner's validation, and a reader or writer built from
//! another definition of the register's type; in plaintext and encrypted.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::time::Duration;

use bus_actors::{
    Bus, BusBuilder, DropReason, Error, Refusal, STATUS_NO_SUCH_REGISTER, STATUS_UNDECODABLE, Topic,
};
use integration::{await_known, await_subscribers, builder, events, secure_builder, test_group};
use serde::{Deserialize, Serialize};

/// The register: a thermostat's setpoint.
#[derive(Clone, Debug, Deserialize, Serialize, Topic, PartialEq)]
#[topic(name = "test/register/setpoint")]
struct Setpoint {
    celsius: u32,
}

/// Another build's definition of the same register.
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "test/register/setpoint")]
struct SetpointSigned {
    celsius: i64,
}

/// A register nobody serves.
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "test/register/unserved")]
struct Unserved;

const WITHIN: Duration = Duration::from_secs(20);

fn status<T: std::fmt::Debug>(result: Result<T, Error>) -> u8 {
    match result {
        Err(Error::Remote { status, .. }) => status,
        other => panic!("{other:?}"),
    }
}

async fn registers(make: impl Fn() -> BusBuilder) {
    let owner = make().start().await.expect("start");
    let client = make().start().await.expect("start");
    await_known(&client, &mut events(&client), 1, WITHIN).await;
    let register = owner.serve_register_validated(Setpoint { celsius: 20 }, |_, value| {
        if value.celsius > 100 {
            Err(Refusal::new(1, "too hot"))
        } else {
            Ok(())
        }
    });
    let peer = owner.local_id();

    // Read and write.
    let read = client.read_register::<Setpoint>(peer).await.expect("read");
    assert_eq!(read, Setpoint { celsius: 20 });
    client
        .write_register(peer, &Setpoint { celsius: 25 })
        .await
        .expect("write");
    assert_eq!(register.get().await.expect("get").celsius, 25);
    assert_eq!(
        client.read_register::<Setpoint>(peer).await.expect("read"),
        Setpoint { celsius: 25 }
    );

    // A write the owner refuses changes nothing, and the writer is told why.
    match client
        .write_register(peer, &Setpoint { celsius: 150 })
        .await
    {
        Err(Error::Refused { code, message, .. }) => {
            assert_eq!((code, &message[..]), (1, "too hot"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(register.get().await.expect("get").celsius, 25);

    // Another definition of the type, and a register not served.
    let signed = client.read_register::<SetpointSigned>(peer).await;
    assert_eq!(status(signed), STATUS_UNDECODABLE);
    let signed = client
        .write_register(peer, &SetpointSigned { celsius: -5 })
        .await;
    assert_eq!(status(signed), STATUS_UNDECODABLE);
    assert_eq!(
        status(client.read_register::<Unserved>(peer).await),
        STATUS_NO_SUCH_REGISTER
    );
    assert_eq!(register.get().await.expect("get").celsius, 25);

    // Observe: remote writes, unreliable ones too, and the owner's own changes.
    let mut changes = integration::subscribe::<Setpoint>(&client).await;
    await_subscribers(&owner, &mut events(&owner), Setpoint::ID, 1, WITHIN).await;
    client
        .write_register_unreliable(peer, &Setpoint { celsius: 30 })
        .expect("sent");
    let change = tokio::time::timeout(WITHIN, changes.recv())
        .await
        .expect("a change")
        .expect("subscribed");
    assert_eq!((change.message.celsius, change.from), (30, peer));
    register.set(Setpoint { celsius: 40 }).await.expect("set");
    let change = tokio::time::timeout(WITHIN, changes.recv())
        .await
        .expect("a change")
        .expect("subscribed");
    assert_eq!(change.message.celsius, 40);

    // An unreliable write the owner refuses is dropped and counted.
    client
        .write_register_unreliable(peer, &Setpoint { celsius: 500 })
        .expect("sent");
    client
        .write_register(peer, &Setpoint { celsius: 41 })
        .await
        .expect("write");
    assert_eq!(
        client
            .read_register::<Setpoint>(peer)
            .await
            .expect("read")
            .celsius,
        41
    );
    assert_eq!(owner.metrics().drops(DropReason::RegisterRefused), 1);
    for bus in [owner, client] {
        bus.shutdown().await.expect("shutdown");
    }
}

/// Issue 16, acceptance 6 (plaintext).
#[actix::test]
async fn registers_are_read_written_and_observed() {
    let group = test_group();
    registers(|| builder(group)).await;
}

/// Issue 16, acceptance 6 (encrypted).
#[actix::test]
async fn registers_are_read_written_and_observed_encrypted() {
    let group = test_group();
    registers(|| secure_builder(group, [0x6b; 32])).await;
}

/// A write of a peer that is not known fails at once, naming it.
#[actix::test]
async fn a_register_of_an_unknown_peer_is_an_error() {
    let bus: Bus = builder(test_group()).start().await.expect("start");
    let stranger = bus_actors::PeerId([0xee; 16]);
    assert!(matches!(
        bus.read_register::<Setpoint>(stranger).await,
        Err(Error::Call { peer, .. }) if peer == stranger
    ));
    assert!(matches!(
        bus.write_register_unreliable(stranger, &Setpoint { celsius: 1 }),
        Err(Error::Call { peer, .. }) if peer == stranger
    ));
}
