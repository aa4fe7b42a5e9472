//! The handshake against the published Noise test vectors (cacophony; see
//! `tests/data/noise/README.md`): every handshake message, every transport message and the
//! final handshake hash must match byte for byte, on both sides.

#![allow(clippy::expect_used, clippy::unwrap_used)] // Test helpers: a panic fails the test.

use bus_core::crypto::noise::{
    HandshakeKeys, HandshakeState, KEY_LEN, KK, KK_PSK2, Keypair, NN, NN_PSK0, Pattern,
};
use serde_json::Value;

fn hex(value: &Value) -> Vec<u8> {
    let s = value.as_str().expect("hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn key(value: Option<&Value>) -> Option<[u8; KEY_LEN]> {
    value.map(|v| hex(v).try_into().expect("32-byte key"))
}

fn keypair(value: Option<&Value>) -> Option<Keypair> {
    key(value).map(|k| Keypair::from_private(k).expect("key pair"))
}

fn side(vector: &Value, pattern: Pattern, prefix: &str, initiator: bool) -> HandshakeState {
    let field = |name: &str| vector.get(format!("{prefix}_{name}"));
    let psks = field("psks")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| hex(p).try_into().expect("psk"))
                .collect()
        })
        .unwrap_or_default();
    let keys = HandshakeKeys {
        static_keys: keypair(field("static")),
        remote_static: key(field("remote_static")),
        psks,
        ephemeral: keypair(field("ephemeral")),
    };
    let prologue = hex(field("prologue").expect("prologue"));
    HandshakeState::new(pattern, initiator, &prologue, keys).expect("handshake state")
}

fn check(pattern: Pattern) {
    let file = include_str!("data/noise/cacophony-subset.json");
    let all: Value = serde_json::from_str(file).expect("vector file");
    let vector = all["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["protocol_name"] == pattern.name)
        .unwrap_or_else(|| panic!("no vector for {}", pattern.name));
    let mut initiator = side(vector, pattern, "init", true);
    let mut responder = side(vector, pattern, "resp", false);
    let messages = vector["messages"].as_array().expect("messages");

    // The two handshake messages.
    for (i, message) in messages.iter().take(2).enumerate() {
        let (writer, reader) = if i % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let payload = hex(&message["payload"]);
        let written = writer.write_message(&payload).expect("write");
        assert_eq!(
            written,
            hex(&message["ciphertext"]),
            "{} message {i}",
            pattern.name
        );
        assert_eq!(reader.read_message(&written).expect("read"), payload);
    }
    let expected_hash = hex(&vector["handshake_hash"]);
    assert_eq!(
        initiator.handshake_hash().as_slice(),
        expected_hash.as_slice()
    );
    assert_eq!(
        responder.handshake_hash().as_slice(),
        expected_hash.as_slice()
    );

    // Transport messages, alternating as the handshake did.
    let mut initiator = initiator.into_transport().expect("initiator done");
    let mut responder = responder.into_transport().expect("responder done");
    for (i, message) in messages.iter().enumerate().skip(2) {
        let (writer, reader) = if i % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let payload = hex(&message["payload"]);
        let sealed = writer.send.encrypt_with_ad(&[], &payload).expect("seal");
        assert_eq!(
            sealed,
            hex(&message["ciphertext"]),
            "{} message {i}",
            pattern.name
        );
        assert_eq!(
            reader.recv.decrypt_with_ad(&[], &sealed).expect("open"),
            payload
        );
    }
}

#[test]
fn kk_matches_the_vectors() {
    check(KK);
}

#[test]
fn nnpsk0_matches_the_vectors() {
    check(NN_PSK0);
}

#[test]
fn nn_matches_the_vectors() {
    check(NN);
}

#[test]
fn kkpsk2_matches_the_vectors() {
    check(KK_PSK2);
}

#[test]
fn a_wrong_psk_fails_to_authenticate() {
    let keys = |psk| HandshakeKeys {
        psks: vec![[psk; 32]],
        ephemeral: Some(fresh()),
        ..HandshakeKeys::default()
    };
    let mut initiator = HandshakeState::new(NN_PSK0, true, b"p", keys(1)).unwrap();
    let mut responder = HandshakeState::new(NN_PSK0, false, b"p", keys(2)).unwrap();
    let first = initiator.write_message(b"hello").unwrap();
    assert!(responder.read_message(&first).is_err());
}

#[test]
fn a_different_prologue_fails_to_authenticate() {
    let keys = || HandshakeKeys {
        psks: vec![[7; 32]],
        ephemeral: Some(fresh()),
        ..HandshakeKeys::default()
    };
    let mut initiator = HandshakeState::new(NN_PSK0, true, b"suite 1", keys()).unwrap();
    let mut responder = HandshakeState::new(NN_PSK0, false, b"suite 0", keys()).unwrap();
    let first = initiator.write_message(&[]).unwrap();
    assert!(responder.read_message(&first).is_err());
}

#[test]
fn kk_with_an_unknown_static_key_fails() {
    let a = fresh();
    let b = fresh();
    let mallory = fresh();
    let mut initiator = HandshakeState::new(
        KK,
        true,
        b"",
        HandshakeKeys {
            static_keys: Some(mallory),
            remote_static: Some(*b.public()),
            ephemeral: Some(fresh()),
            ..HandshakeKeys::default()
        },
    )
    .unwrap();
    let mut responder = HandshakeState::new(
        KK,
        false,
        b"",
        HandshakeKeys {
            static_keys: Some(b),
            remote_static: Some(*a.public()),
            ephemeral: Some(fresh()),
            ..HandshakeKeys::default()
        },
    )
    .unwrap();
    let first = initiator.write_message(&[]).unwrap();
    assert!(responder.read_message(&first).is_err());
}

/// A fresh key pair (the core draws no randomness of its own; tests pass the thread's).
fn fresh() -> Keypair {
    Keypair::generate(&mut rand::rng()).unwrap()
}
