//! `#[derive(Topic)]` on every shape: names, defaults, fingerprints and MessagePack round trips.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

use bus_core::{Encoding, PayloadError, Topic, TopicId};
use bus_macros::Topic;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "plant/boiler/temperature")]
struct Temperature {
    sensor: u32,
    celsius: f64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "plant/pair", reliable)]
struct Pair(u8, String);

#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
struct Tick;

#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "ids")]
struct Id(u32);

#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "plant/command", encoding = "named")]
enum Command {
    Start,
    Set(f64),
    Move { x: i32, y: i32 },
}

#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
#[topic(name = "plant/wrapped")]
struct Wrapper<T> {
    value: T,
}

fn round_trip<T: Topic + PartialEq + std::fmt::Debug>(message: T) {
    let bytes = message.encode().unwrap();
    assert_eq!(T::decode(T::FINGERPRINT, &bytes).unwrap(), message);
}

#[test]
fn names_and_defaults() {
    assert_eq!(Temperature::NAME, "plant/boiler/temperature");
    assert_eq!(
        Temperature::ID,
        TopicId::from_name("plant/boiler/temperature")
    );
    const { assert!(!Temperature::RELIABLE) };
    assert_eq!(Temperature::ENCODING, Encoding::Compact);
    const { assert!(Pair::RELIABLE) };
    assert_eq!(Tick::NAME, "tick");
    assert_eq!(Command::ENCODING, Encoding::Named);
    assert_eq!(Wrapper::<u8>::NAME, "plant/wrapped");
}

#[test]
fn every_shape_round_trips() {
    round_trip(Temperature {
        sensor: 7,
        celsius: 81.5,
    });
    round_trip(Pair(1, "two".into()));
    round_trip(Tick);
    round_trip(Id(u32::MAX));
    round_trip(Command::Start);
    round_trip(Command::Set(60.0));
    round_trip(Command::Move { x: -1, y: 2 });
    round_trip(Wrapper { value: 3u64 });
    round_trip(Wrapper {
        value: vec!["a".to_owned()],
    });
}

/// Payloads written byte by byte from the MessagePack specification, as a peer in another
/// language would send them.
#[test]
fn hand_made_messagepack_decodes() {
    // fixarray(2): positive fixint 7, float 64 81.5 (0x4054600000000000).
    let compact = [0x92, 0x07, 0xcb, 0x40, 0x54, 0x60, 0, 0, 0, 0, 0];
    let expected = Temperature {
        sensor: 7,
        celsius: 81.5,
    };
    assert_eq!(
        Temperature::decode(Temperature::FINGERPRINT, &compact).unwrap(),
        expected
    );
    assert_eq!(expected.encode().unwrap(), compact);
    // fixmap(2) {"sensor": 7, "celsius": 81.5}, keys in any order.
    let named = [
        0x82, 0xa7, b'c', b'e', b'l', b's', b'i', b'u', b's', 0xcb, 0x40, 0x54, 0x60, 0, 0, 0, 0,
        0, 0xa6, b's', b'e', b'n', b's', b'o', b'r', 0x07,
    ];
    assert_eq!(
        Temperature::decode(Temperature::FINGERPRINT, &named).unwrap(),
        expected
    );
    // fixarray(2): 1, fixstr "two".
    let pair = [0x92, 0x01, 0xa3, b't', b'w', b'o'];
    assert_eq!(
        Pair::decode(Pair::FINGERPRINT, &pair).unwrap(),
        Pair(1, "two".into())
    );
    // Newtype struct: the inner value alone.
    assert_eq!(Id::decode(Id::FINGERPRINT, &[0x05]).unwrap(), Id(5));
    // Unit struct: an empty fixarray.
    assert_eq!(Tick::decode(Tick::FINGERPRINT, &[0x90]).unwrap(), Tick);
    // Unit variant: its name as a fixstr; other variants: fixmap(1) {name: content}.
    let start = [0xa5, b'S', b't', b'a', b'r', b't'];
    assert_eq!(
        Command::decode(Command::FINGERPRINT, &start).unwrap(),
        Command::Start
    );
    let set = [
        0x81, 0xa3, b'S', b'e', b't', 0xcb, 0x40, 0x4e, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(
        Command::decode(Command::FINGERPRINT, &set).unwrap(),
        Command::Set(60.0)
    );
    // Named encoding writes the struct variant's fields as a map.
    let moved = Command::Move { x: -1, y: 2 }.encode().unwrap();
    assert_eq!(
        moved,
        [
            0x81, 0xa4, b'M', b'o', b'v', b'e', 0x82, 0xa1, b'x', 0xff, 0xa1, b'y', 0x02
        ]
    );
}

#[test]
fn mismatched_fingerprint_is_refused() {
    let bytes = Temperature {
        sensor: 1,
        celsius: 2.0,
    }
    .encode()
    .unwrap();
    let err = Temperature::decode(Temperature::FINGERPRINT ^ 1, &bytes).unwrap_err();
    assert_eq!(
        err,
        PayloadError::SchemaMismatch {
            topic: "plant/boiler/temperature",
            local: Temperature::FINGERPRINT,
            remote: Temperature::FINGERPRINT ^ 1,
        }
    );
}

#[test]
fn undecodable_payload_is_an_error() {
    let err = Temperature::decode(Temperature::FINGERPRINT, &[0x93, 1, 2, 3]).unwrap_err();
    assert!(matches!(
        err,
        PayloadError::Undecodable {
            topic: "plant/boiler/temperature",
            ..
        }
    ));
    let err = Temperature::decode(Temperature::FINGERPRINT, &[]).unwrap_err();
    assert!(matches!(err, PayloadError::Undecodable { .. }));
}

mod v1 {
    use super::*;

    #[derive(Deserialize, Serialize, Topic)]
    #[topic(name = "reading")]
    pub(crate) struct Reading {
        pub(crate) sensor: u32,
        pub(crate) value: f64,
    }
}

mod v1_copy {
    use super::*;

    /// The same definition in another module, with other docs and attributes.
    #[derive(Clone, Debug, Deserialize, Serialize, Topic)]
    #[topic(name = "reading")]
    pub(crate) struct Reading {
        sensor: u32,
        value: f64,
    }
}

mod added_field {
    use super::*;

    #[derive(Deserialize, Serialize, Topic)]
    #[topic(name = "reading")]
    pub(crate) struct Reading {
        pub(crate) sensor: u32,
        pub(crate) value: f64,
        pub(crate) unit: String,
    }
}

mod renamed_field {
    use super::*;

    #[derive(Deserialize, Serialize, Topic)]
    #[topic(name = "reading")]
    pub(crate) struct Reading {
        pub(crate) sensor: u32,
        pub(crate) reading: f64,
    }
}

mod retyped_field {
    use super::*;

    #[derive(Deserialize, Serialize, Topic)]
    #[topic(name = "reading")]
    pub(crate) struct Reading {
        pub(crate) sensor: u32,
        pub(crate) value: f32,
    }
}

mod serde_renamed_field {
    use super::*;

    #[derive(Deserialize, Serialize, Topic)]
    #[topic(name = "reading")]
    pub(crate) struct Reading {
        pub(crate) sensor: u32,
        #[serde(rename = "v")]
        pub(crate) value: f64,
    }
}

#[test]
fn fingerprints_are_stable_across_builds() {
    // FNV-1a 64 of "bus-schema-v1 struct Reading{sensor:u32,value:f64}". A change here breaks
    // interoperability with every deployed peer: bump the scheme instead.
    assert_eq!(
        v1::Reading::FINGERPRINT,
        bus_core::fnv1a64(b"bus-schema-v1 struct Reading{sensor:u32,value:f64}")
    );
    assert_eq!(v1::Reading::FINGERPRINT, 0xfd28_e2ac_c468_f34b);
}

#[test]
fn identical_definitions_agree() {
    assert_eq!(v1::Reading::FINGERPRINT, v1_copy::Reading::FINGERPRINT);
}

#[test]
fn changed_definitions_differ() {
    let v1 = v1::Reading::FINGERPRINT;
    for (change, fingerprint) in [
        ("added", added_field::Reading::FINGERPRINT),
        ("renamed", renamed_field::Reading::FINGERPRINT),
        ("retyped", retyped_field::Reading::FINGERPRINT),
        ("serde-renamed", serde_renamed_field::Reading::FINGERPRINT),
    ] {
        assert_ne!(v1, fingerprint, "{change} field kept the fingerprint");
    }
}

#[test]
fn a_peer_with_an_added_field_is_detected() {
    let old = v1::Reading {
        sensor: 1,
        value: 2.0,
    };
    let bytes = old.encode().unwrap();
    let err = added_field::Reading::decode(v1::Reading::FINGERPRINT, &bytes)
        .err()
        .unwrap();
    assert!(matches!(
        err,
        PayloadError::SchemaMismatch {
            topic: "reading",
            ..
        }
    ));
}
