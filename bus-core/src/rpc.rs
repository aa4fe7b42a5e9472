//! What a call means above the endpoint: procedure numbers, reply statuses, and typed
//! procedures ([`Rpc`], derived with `#[derive(Rpc)]`).
//!
//! A call frame's `method` is a `u64`: bits 0–15 are the procedure's number; bits 16–63 are
//! zero for a call by number (a client in another language), or the top 48 bits of the
//! request type's fingerprint for a typed call, which a typed server checks before it
//! decodes: two peers built from different definitions get [`STATUS_UNDECODABLE`] naming the
//! mismatch, not a garbled value.
//!
//! A reply's status (to a call, or a register read or write) is 0 for success; 1 to 31 are
//! the bus's (below); 32 to 255 are free for applications serving by number. A refusal ([`STATUS_REFUSED`]) carries the handler's own
//! code, a `u16` big-endian, then its message in UTF-8; every other error carries a message.

use std::ops::RangeInclusive;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::topic::PayloadError;

/// Procedures the bus keeps for itself (register reads and writes among them): an
/// application serves none of them.
pub const RESERVED_PROCEDURES: RangeInclusive<u16> = 0xff00..=0xffff;

/// Nobody serves that procedure there.
pub const STATUS_NO_SUCH_PROCEDURE: u8 = 1;
/// The handler refused the call: its code and message follow.
pub const STATUS_REFUSED: u8 = 2;
/// The handler could not answer (it stopped or panicked): nothing more leaves the server.
pub const STATUS_REMOTE_FAILURE: u8 = 3;
/// The request was not a valid encoding of the procedure's type (or was built from another
/// definition of it).
pub const STATUS_UNDECODABLE: u8 = 4;
/// The reply could not be encoded by the server.
pub const STATUS_UNENCODABLE_REPLY: u8 = 5;
/// The peer serves no register of that name.
pub const STATUS_NO_SUCH_REGISTER: u8 = 6;

/// The low bits of a call's method: the procedure.
const PROCEDURE_BITS: u64 = 0xffff;

/// A typed procedure: its request type, the number it is served under and the type of its
/// reply. Derive it with `#[derive(Rpc)]` from `bus-actors`, which computes the fingerprint
/// from both definitions; by hand, a fingerprint of zero checks nothing:
///
/// ```
/// use bus_core::Rpc;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, Serialize)]
/// struct Echo(String);
///
/// impl Rpc for Echo {
///     const PROCEDURE: u16 = 400;
///     const FINGERPRINT: u64 = 0;
///     type Reply = String;
/// }
///
/// assert_eq!(bus_core::rpc::split_method(bus_core::rpc::method_of::<Echo>()), (400, 0));
/// ```
pub trait Rpc: Serialize + DeserializeOwned + Send + 'static {
    /// The procedure's number, outside [`RESERVED_PROCEDURES`].
    const PROCEDURE: u16;
    /// The schema fingerprint of the request and the name of its reply type.
    const FINGERPRINT: u64;
    /// What the procedure answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// The method a typed call of `R` is sent with.
pub const fn method_of<R: Rpc>() -> u64 {
    R::PROCEDURE as u64 | (R::FINGERPRINT & !PROCEDURE_BITS)
}

/// A method's procedure, and the fingerprint bits it carries (zero for a call by number).
pub const fn split_method(method: u64) -> (u16, u64) {
    // Masked to 16 bits: the cast keeps them all.
    let procedure = (method & PROCEDURE_BITS) as u16;
    (procedure, method & !PROCEDURE_BITS)
}

/// The name of the topic a peer serving `procedure` announces in its beacons, so that a
/// caller of every server (a group call) knows whom to call. Nothing is published on it.
pub fn servers_topic(procedure: u16) -> String {
    format!("bus/rpc/{procedure}")
}

/// Whether a call carrying `bits` (from [`split_method`]) may be decoded as `R`: sent by
/// number, or by a peer with the same definition of `R`.
pub const fn fingerprint_matches<R: Rpc>(bits: u64) -> bool {
    bits == 0 || bits == R::FINGERPRINT & !PROCEDURE_BITS
}

/// `value` in MessagePack, structs as arrays (as topics' compact encoding).
///
/// # Errors
/// [`PayloadError::Unencodable`] naming `what` if serde refuses the value.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, PayloadError> {
    rmp_serde::to_vec(value).map_err(|e| PayloadError::Unencodable {
        topic: what,
        reason: e.to_string(),
    })
}

/// A value of `T` from MessagePack.
///
/// # Errors
/// [`PayloadError::Undecodable`] naming `what` if the bytes are not an encoding of `T`.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, PayloadError> {
    rmp_serde::from_slice(bytes).map_err(|e| PayloadError::Undecodable {
        topic: what,
        reason: e.to_string(),
    })
}

/// The payload of a [`STATUS_REFUSED`] reply.
pub fn encode_refusal(code: u16, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// The code and message of a [`STATUS_REFUSED`] reply's payload; a payload too short for a
/// code reads as code 0 with what there is as the message.
pub fn decode_refusal(payload: &[u8]) -> (u16, String) {
    match payload {
        [high, low, message @ ..] => (
            u16::from_be_bytes([*high, *low]),
            String::from_utf8_lossy(message).into_owned(),
        ),
        short => (0, String::from_utf8_lossy(short).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Double(u32);

    impl Rpc for Double {
        const PROCEDURE: u16 = 7;
        const FINGERPRINT: u64 = 0x1234_5678_9abc_def0;
        type Reply = u64;
    }

    #[test]
    fn a_typed_method_carries_the_procedure_and_the_fingerprint() {
        let method = method_of::<Double>();
        assert_eq!(method, 0x1234_5678_9abc_0007);
        let (procedure, bits) = split_method(method);
        assert_eq!(procedure, 7);
        assert!(fingerprint_matches::<Double>(bits));
        // By number: no fingerprint to check.
        assert!(fingerprint_matches::<Double>(split_method(7).1));
        assert!(!fingerprint_matches::<Double>(1 << 16));
    }

    #[test]
    fn refusals_round_trip_and_short_ones_are_read() {
        let payload = encode_refusal(0x0102, "not now");
        assert_eq!(payload[..2], [1, 2]);
        assert_eq!(decode_refusal(&payload), (0x0102, "not now".to_owned()));
        assert_eq!(decode_refusal(b"x"), (0, "x".to_owned()));
    }
}
