//! The wire format: packets, their header, and the frames they carry.
//!
//! One UDP datagram is one packet. A packet starts with a fixed header ([`Header`], parsed by hand
//! at fixed offsets) and, for data packets, continues with a sequence of [`Frame`]s, so many small
//! messages share one datagram. The `book/` chapter "Wire format" gives every layout byte by byte.
//!
//! Two kinds of types, as in smoltcp:
//! - views over a buffer ([`Header`]), with `new_checked` that validates lengths and reserved
//!   bits once so that the accessors can index without further checks;
//! - parsed representations ([`HeaderRepr`], [`Frame`]) with `parse` and `emit`, and a length
//!   function (`buffer_len`, `encoded_len`) that says how many bytes `emit` writes.
//!
//! Every decoder takes arbitrary bytes and returns a `Result`; none panics, and none allocates more
//! than the input it was given justifies.

mod codec;
mod frame;
pub mod handshake;
mod header;

pub use codec::{LenCounter, MAX_VARINT_LEN, Reader, Sink, varint_len};
pub use frame::{
    AckRanges, Beacon, Frame, FrameType, Frames, PROTOCOL_VERSION, Payloads, PeerAddr,
};
pub use header::{
    CipherSuite, Header, HeaderExtension, HeaderFlags, HeaderRepr, PacketType, TAG_LEN,
};

/// Why bytes from the network could not be decoded.
///
/// The sender of the datagram is at fault (or whatever corrupted it on the way): the receiver drops
/// the datagram, counts the drop under [`DecodeError::reason`], and carries on. It never answers
/// malformed input.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A field runs past the end of the input.
    #[error("{field} truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// A packet type whose layout has a fixed size arrived with another size.
    #[error("{packet} packet must be {expected} bytes, got {actual}")]
    WrongLength {
        /// The packet type.
        packet: &'static str,
        /// Its fixed size.
        expected: usize,
        /// The datagram's size.
        actual: usize,
    },
    /// A handshake message was given where a packet with a header and frames was expected.
    #[error("{packet} packet carries no frames")]
    NotFramed {
        /// The packet type.
        packet: &'static str,
    },
    /// The first byte names no packet type this version knows.
    #[error("unknown packet type {0:#04x}")]
    UnknownPacketType(u8),
    /// A frame starts with a type byte this version does not know.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// A field that must be zero, or a flag bit this version does not define, is set.
    #[error("reserved bits set in {field}: {value:#04x}")]
    ReservedBitsSet {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// A LEB128 integer is longer than 10 bytes or does not fit in 64 bits.
    #[error("{field}: varint overflows 64 bits")]
    VarintOverflow {
        /// The field.
        field: &'static str,
    },
    /// A LEB128 integer has a redundant trailing zero group.
    #[error("{field}: varint is not minimally encoded")]
    VarintNotMinimal {
        /// The field.
        field: &'static str,
    },
    /// A number is larger than the field allows.
    #[error("{field} is {value}, more than {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value read.
        value: u64,
        /// The largest value allowed there.
        max: u64,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// Ack ranges overlap, touch, or run below zero.
    #[error("ack ranges are not descending and disjoint")]
    InvalidAckRanges,
}

impl DecodeError {
    /// A short, stable name for the metrics counter this drop is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } | DecodeError::WrongLength { .. } => "truncated",
            DecodeError::UnknownPacketType(_) | DecodeError::NotFramed { .. } => {
                "unknown_packet_type"
            }
            DecodeError::UnknownFrameType(_) => "unknown_frame_type",
            DecodeError::ReservedBitsSet { .. } => "reserved_bits",
            DecodeError::VarintOverflow { .. }
            | DecodeError::VarintNotMinimal { .. }
            | DecodeError::OutOfRange { .. }
            | DecodeError::InvalidUtf8 { .. }
            | DecodeError::InvalidAckRanges => "malformed",
        }
    }
}
