//! Typed topics: what flows on the bus, as ordinary Rust types.
//!
//! A [`Topic`] is a serde type with a name, a schema fingerprint and a default reliability,
//! usually derived with `#[derive(Topic)]`. Its messages travel as MessagePack (rmp-serde) in the
//! payload of publish frames, next to the topic's [`TopicId`] and fingerprint; a receiver whose
//! own type for the topic has another fingerprint refuses to decode ([`PayloadError::SchemaMismatch`])
//! instead of misreading the bytes.
//!
//! # Encoding
//!
//! [`Encoding::Compact`] (the default) writes a struct as a MessagePack array of its fields in
//! declaration order; [`Encoding::Named`] writes it as a map from field names to values. Either
//! decoder accepts both forms. Everything else follows rmp-serde 1.x: a tuple struct is an array,
//! a newtype struct is its inner value, a unit struct is an empty array, a unit enum variant is its
//! name as a string, and any other variant is a one-entry map from its name to its content. The
//! book's "Defining topics" chapter gives byte-level examples.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Instant, PeerId, TopicId};

/// The longest topic name, in bytes.
pub const MAX_TOPIC_NAME_LEN: usize = 255;

/// A type whose values can be published on the bus.
///
/// Derive it with `#[derive(Topic)]`; implement it by hand only with a fingerprint that changes
/// whenever the serialized shape does.
pub trait Topic: Serialize + DeserializeOwned + Send + 'static {
    /// The topic's name: `/`-separated segments (see [`validate_topic_name`]).
    const NAME: &'static str;

    /// The topic's id on the wire.
    const ID: TopicId = TopicId::from_name(Self::NAME);

    /// A hash of the type's name and of its fields' names and types, as written. Two peers built
    /// from the same definition agree; a field added, renamed or retyped changes it.
    const FINGERPRINT: u64;

    /// Whether `publish` sends reliably by default.
    const RELIABLE: bool = false;

    /// How the message is laid out in MessagePack.
    const ENCODING: Encoding = Encoding::Compact;

    /// Appends the message, MessagePack-encoded, to `out`.
    ///
    /// # Errors
    /// [`PayloadError::Unencodable`] if serde refuses the value (a `Serialize` impl that fails).
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        let result = match Self::ENCODING {
            Encoding::Compact => rmp_serde::encode::write(out, self),
            Encoding::Named => rmp_serde::encode::write_named(out, self),
        };
        result.map_err(|e| PayloadError::Unencodable {
            topic: Self::NAME,
            reason: e.to_string(),
        })
    }

    /// The message, MessagePack-encoded.
    ///
    /// # Errors
    /// As [`Topic::encode_into`].
    fn encode(&self) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a payload that arrived with the sender's `fingerprint`.
    ///
    /// # Errors
    /// [`PayloadError::SchemaMismatch`] if the fingerprints differ (the two peers were built from
    /// different definitions of the topic); [`PayloadError::Undecodable`] if the bytes are not a
    /// valid encoding of `Self`.
    fn decode(fingerprint: u64, payload: &[u8]) -> Result<Self, PayloadError> {
        if fingerprint != Self::FINGERPRINT {
            return Err(PayloadError::SchemaMismatch {
                topic: Self::NAME,
                local: Self::FINGERPRINT,
                remote: fingerprint,
            });
        }
        rmp_serde::from_slice(payload).map_err(|e| PayloadError::Undecodable {
            topic: Self::NAME,
            reason: e.to_string(),
        })
    }
}

/// How a topic's messages are laid out in MessagePack.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub enum Encoding {
    /// Structs as arrays of their fields in declaration order: smaller and faster. Safe because
    /// the fingerprint guarantees both sides declare the same fields in the same order.
    #[default]
    Compact,
    /// Structs as maps keyed by field name: larger, but self-describing for consumers in other
    /// languages.
    Named,
}

/// A message as a subscriber receives it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Envelope<T> {
    /// The message.
    pub message: T,
    /// Who published it.
    pub from: PeerId,
    /// When it arrived, on the receiver's clock.
    pub received_at: Instant,
    /// When the sender sent it, converted to the receiver's clock; known once the receiver has
    /// measured the clock offset to the sender (a ping or two after it was discovered).
    pub sent_at: Option<Instant>,
}

/// Why a message could not be encoded or decoded.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The sender's type for this topic has another fingerprint than ours. Neither side is at
    /// fault on its own: the two peers were built from different definitions of the topic. The
    /// message is not delivered; it is counted and reported so the deployment can be fixed.
    #[error(
        "schema mismatch on topic {topic}: local fingerprint {local:#018x}, remote {remote:#018x}"
    )]
    SchemaMismatch {
        /// The topic's name.
        topic: &'static str,
        /// Our fingerprint.
        local: u64,
        /// The sender's.
        remote: u64,
    },
    /// The payload is not a valid encoding of the topic's type. The sender is at fault (or a
    /// peer in another language encoded it wrongly); the message is dropped and counted.
    #[error("undecodable message on topic {topic}: {reason}")]
    Undecodable {
        /// The topic's name.
        topic: &'static str,
        /// What rmp-serde reported.
        reason: String,
    },
    /// The value could not be serialized. The caller is at fault: its `Serialize` impl failed.
    #[error("cannot encode message on topic {topic}: {reason}")]
    Unencodable {
        /// The topic's name.
        topic: &'static str,
        /// What rmp-serde reported.
        reason: String,
    },
}

/// Why a string is not a valid topic name.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicNameError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_NAME_LEN`] bytes.
    #[error("topic name is {len} bytes long, more than {MAX_TOPIC_NAME_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The name starts or ends with `/`, or has `//`.
    #[error("topic name has an empty segment at byte {at}")]
    EmptySegment {
        /// Where, as a byte offset.
        at: usize,
    },
    /// The name holds a character outside `A-Z a-z 0-9 _ - .` and `/`.
    #[error(
        "topic name has {ch:?} at byte {at}; allowed are A-Z a-z 0-9 _ - . and / between segments"
    )]
    InvalidChar {
        /// The character.
        ch: char,
        /// Where, as a byte offset.
        at: usize,
    },
}

/// Checks that `name` is a topic name: 1 to 255 bytes of non-empty segments separated by `/`,
/// each made of ASCII letters, digits, `_`, `-` and `.`. No whitespace, and no `*`, which is kept
/// for wildcard patterns.
///
/// # Errors
/// [`TopicNameError`] names the first problem and where it is.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong { len: name.len() });
    }
    let mut segment_start = true;
    for (at, ch) in name.char_indices() {
        match ch {
            '/' if segment_start => return Err(TopicNameError::EmptySegment { at }),
            '/' => segment_start = true,
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' | '.' => segment_start = false,
            _ => return Err(TopicNameError::InvalidChar { ch, at }),
        }
    }
    if segment_start {
        return Err(TopicNameError::EmptySegment { at: name.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in ["a", "plant/boiler/temperature", "v1.2/x-y_z", "A/B/C"] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_names_say_what_and_where() {
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(
            validate_topic_name("/a"),
            Err(TopicNameError::EmptySegment { at: 0 })
        );
        assert_eq!(
            validate_topic_name("a//b"),
            Err(TopicNameError::EmptySegment { at: 2 })
        );
        assert_eq!(
            validate_topic_name("a/"),
            Err(TopicNameError::EmptySegment { at: 2 })
        );
        assert_eq!(
            validate_topic_name("a b"),
            Err(TopicNameError::InvalidChar { ch: ' ', at: 1 })
        );
        assert_eq!(
            validate_topic_name("plant/*"),
            Err(TopicNameError::InvalidChar { ch: '*', at: 6 })
        );
        assert_eq!(
            validate_topic_name(&"x".repeat(256)),
            Err(TopicNameError::TooLong { len: 256 })
        );
    }
}
