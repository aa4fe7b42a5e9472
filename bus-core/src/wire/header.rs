//! The packet header.
//!
//! Every packet starts with one byte naming its type. Handshake messages (types 0x01–0x03) have
//! fixed sizes and their own layouts (see the security chapter); every other packet starts with
//! the 16-byte common header below, followed by an extension whose size its type fixes, then the
//! body (frames, encrypted for the encrypted types).
//!
//! ```text
//!  0       1       2       3       4                               8
//! +-------+-------+-------+-------+-------------------------------+
//! | type  | suite | flags | rsvd=0|   session index (u32 LE)      |
//! +-------+-------+-------+-------+-------------------------------+
//! |                     counter (u64 LE)                          |
//! +---------------------------------------------------------------+  16
//! | extension: Plain: sender peer id (16)                         |
//! |            MulticastData: sender peer id (16),                |
//! |                 epoch material (32), epoch timestamp (u64 LE),|
//! |                 epoch tag (16)                                |
//! +---------------------------------------------------------------+
//! | body ...                              | tag (16, encrypted)   |
//! ```
//!
//! The whole header, extension included, is the AEAD's associated data, so none of it can be
//! rewritten in transit.

use super::DecodeError;
use crate::PeerId;

mod field {
    use core::ops::Range;

    pub(super) const TYPE: usize = 0;
    pub(super) const SUITE: usize = 1;
    pub(super) const FLAGS: usize = 2;
    pub(super) const RESERVED: usize = 3;
    pub(super) const SESSION_INDEX: Range<usize> = 4..8;
    pub(super) const COUNTER: Range<usize> = 8..16;
    pub(super) const SENDER: Range<usize> = 16..32;
    pub(super) const EPOCH_MATERIAL: Range<usize> = 32..64;
    pub(super) const EPOCH_TIMESTAMP: Range<usize> = 64..72;
    pub(super) const EPOCH_TAG: Range<usize> = 72..88;
}

/// The length of the common header.
const COMMON_LEN: usize = 16;

/// The length of an AEAD tag at the end of an encrypted packet.
pub const TAG_LEN: usize = 16;

/// The first byte of every packet.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[repr(u8)]
pub enum PacketType {
    /// Handshake initiation (client → server), [`init::LEN`](super::handshake::init::LEN) bytes.
    HandshakeInit = 0x01,
    /// Handshake response (server → client), [`response::LEN`](super::handshake::response::LEN)
    /// bytes.
    HandshakeResponse = 0x02,
    /// Cookie reply sent under load instead of a response,
    /// [`cookie_reply::LEN`](super::handshake::cookie_reply::LEN) bytes.
    CookieReply = 0x03,
    /// Frames encrypted under a unicast session, addressed by the receiver's session index.
    Data = 0x04,
    /// Frames encrypted under the sender's multicast epoch key.
    MulticastData = 0x05,
    /// Frames in clear, for the explicitly chosen insecure mode only.
    Plain = 0x06,
}

impl PacketType {
    /// The type named by `byte`.
    pub fn from_byte(byte: u8) -> Result<PacketType, DecodeError> {
        Ok(match byte {
            0x01 => PacketType::HandshakeInit,
            0x02 => PacketType::HandshakeResponse,
            0x03 => PacketType::CookieReply,
            0x04 => PacketType::Data,
            0x05 => PacketType::MulticastData,
            0x06 => PacketType::Plain,
            other => return Err(DecodeError::UnknownPacketType(other)),
        })
    }

    /// The exact size of a handshake message; `None` for packets that carry frames.
    pub const fn fixed_len(self) -> Option<usize> {
        match self {
            PacketType::HandshakeInit => Some(super::handshake::init::LEN),
            PacketType::HandshakeResponse => Some(super::handshake::response::LEN),
            PacketType::CookieReply => Some(super::handshake::cookie_reply::LEN),
            PacketType::Data | PacketType::MulticastData | PacketType::Plain => None,
        }
    }

    /// The header length, extension included, of a packet that carries frames.
    pub const fn header_len(self) -> Option<usize> {
        match self {
            PacketType::Data => Some(COMMON_LEN),
            PacketType::MulticastData => Some(field::EPOCH_TAG.end),
            PacketType::Plain => Some(field::SENDER.end),
            _ => None,
        }
    }

    /// Bytes that follow the body: the AEAD tag for encrypted types.
    pub const fn trailer_len(self) -> usize {
        match self {
            PacketType::Data | PacketType::MulticastData => TAG_LEN,
            _ => 0,
        }
    }

    /// A name for errors and logs.
    pub const fn name(self) -> &'static str {
        match self {
            PacketType::HandshakeInit => "handshake init",
            PacketType::HandshakeResponse => "handshake response",
            PacketType::CookieReply => "cookie reply",
            PacketType::Data => "data",
            PacketType::MulticastData => "multicast data",
            PacketType::Plain => "plain",
        }
    }

    /// Classifies a datagram by its first byte, checking the exact size of handshake messages and
    /// the minimum size of the others.
    pub fn of_datagram(datagram: &[u8]) -> Result<PacketType, DecodeError> {
        let first = *datagram.get(field::TYPE).ok_or(DecodeError::Truncated {
            field: "packet type",
            needed: 1,
            have: 0,
        })?;
        let packet_type = PacketType::from_byte(first)?;
        match (packet_type.fixed_len(), packet_type.header_len()) {
            (Some(expected), _) if datagram.len() != expected => Err(DecodeError::WrongLength {
                packet: packet_type.name(),
                expected,
                actual: datagram.len(),
            }),
            (_, Some(header)) if datagram.len() < header + packet_type.trailer_len() => {
                Err(DecodeError::Truncated {
                    field: "packet header",
                    needed: header + packet_type.trailer_len(),
                    have: datagram.len(),
                })
            }
            _ => Ok(packet_type),
        }
    }
}

/// The cipher suites this version knows. The suite byte is carried raw in [`Header`]: whether a
/// suite is acceptable is the receiver's policy, not the parser's.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[repr(u8)]
#[non_exhaustive]
pub enum CipherSuite {
    /// No encryption; only in the insecure mode, which must be chosen by name.
    Insecure = 0x00,
    /// X25519, ChaCha20-Poly1305 with a 64-bit counter nonce, SHA-256/HKDF (Noise
    /// `25519_ChaChaPoly_SHA256`).
    ChaChaPoly = 0x01,
}

impl CipherSuite {
    /// The suite named by `byte`, if this version knows it.
    pub fn from_byte(byte: u8) -> Option<CipherSuite> {
        match byte {
            0x00 => Some(CipherSuite::Insecure),
            0x01 => Some(CipherSuite::ChaChaPoly),
            _ => None,
        }
    }
}

/// The header's flag bits.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct HeaderFlags(u8);

impl HeaderFlags {
    /// The body ends with padding frames added to hide its length.
    pub const PADDED: HeaderFlags = HeaderFlags(0b0000_0001);
    /// The sender addressed the packet to the multicast group (authenticated with the rest of
    /// the header): a receiver learns whose group traffic reaches it.
    pub const TO_GROUP: HeaderFlags = HeaderFlags(0b0000_0010);
    const KNOWN: u8 = HeaderFlags::PADDED.0 | HeaderFlags::TO_GROUP.0;

    /// No flag set.
    pub const fn empty() -> HeaderFlags {
        HeaderFlags(0)
    }

    /// The flags in `bits`, if this version defines all of them.
    pub fn from_bits(bits: u8) -> Result<HeaderFlags, DecodeError> {
        if bits & !HeaderFlags::KNOWN != 0 {
            return Err(DecodeError::ReservedBitsSet {
                field: "flags",
                value: bits,
            });
        }
        Ok(HeaderFlags(bits))
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// These flags and `other`'s.
    pub const fn union(self, other: HeaderFlags) -> HeaderFlags {
        HeaderFlags(self.0 | other.0)
    }

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: HeaderFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A read-only (or, over `&mut [u8]`, writable) view of a packet's header.
///
/// [`Header::new_checked`] validates the type, the length, the reserved byte and the flags once;
/// the accessors then index without further checks.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
    packet_type: PacketType,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// A view of the packet in `buffer`, after checking that it carries frames, is long enough for
    /// its header and trailer, and sets no reserved bit.
    ///
    /// # Errors
    /// [`DecodeError`] names what is wrong with the bytes: an unknown type, a handshake message
    /// (which has no common header), a truncated header, or a reserved bit set.
    pub fn new_checked(buffer: T) -> Result<Header<T>, DecodeError> {
        let bytes = buffer.as_ref();
        let packet_type = PacketType::of_datagram(bytes)?;
        if packet_type.header_len().is_none() {
            return Err(DecodeError::NotFramed {
                packet: packet_type.name(),
            });
        }
        if bytes[field::RESERVED] != 0 {
            return Err(DecodeError::ReservedBitsSet {
                field: "reserved",
                value: bytes[field::RESERVED],
            });
        }
        HeaderFlags::from_bits(bytes[field::FLAGS])?;
        Ok(Header {
            buffer,
            packet_type,
        })
    }

    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        self.packet_type
    }

    /// The cipher-suite byte, as sent.
    pub fn suite(&self) -> u8 {
        self.bytes()[field::SUITE]
    }

    /// The flags (validated by `new_checked`).
    pub fn flags(&self) -> HeaderFlags {
        HeaderFlags(self.bytes()[field::FLAGS])
    }

    /// The receiver's session index (data), or zero.
    pub fn session_index(&self) -> u32 {
        u32::from_le_bytes(array(&self.bytes()[field::SESSION_INDEX]))
    }

    /// The per-direction packet counter: the AEAD nonce and the replay-window position.
    pub fn counter(&self) -> u64 {
        u64::from_le_bytes(array(&self.bytes()[field::COUNTER]))
    }

    /// The sender's peer id, for the types that carry it in clear.
    pub fn sender(&self) -> Option<PeerId> {
        match self.packet_type {
            PacketType::Plain | PacketType::MulticastData => {
                Some(PeerId(array(&self.bytes()[field::SENDER])))
            }
            _ => None,
        }
    }

    /// The header, extension included: the AEAD's associated data.
    pub fn header_bytes(&self) -> &[u8] {
        &self.bytes()[..self.header_len()]
    }

    /// The body and trailer: the frames, in clear or encrypted with the tag last.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..]
    }

    /// The header's length for this packet's type.
    pub fn header_len(&self) -> usize {
        // Invariant: new_checked accepted only types that have a header length.
        self.packet_type.header_len().unwrap_or(COMMON_LEN)
    }

    /// The view's buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// The body and trailer, writable: where decryption happens in place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

/// The part of the header whose presence the packet type decides.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HeaderExtension {
    /// [`PacketType::Data`]: the session index identifies the sender.
    Data,
    /// [`PacketType::MulticastData`]: the sender and its current epoch, so any receiver that holds
    /// the key can derive the epoch key without a round trip.
    MulticastData {
        /// The sender.
        sender: PeerId,
        /// The epoch's salt (PSK mode) or ephemeral public key (public-key mode).
        epoch_material: [u8; 32],
        /// When the epoch started, in milliseconds since the Unix epoch on the sender's clock.
        epoch_timestamp_ms: u64,
        /// A MAC over the sender, material and timestamp under a key only the sender and its
        /// receivers hold, checked before any key derivation: one hash, not a Diffie-Hellman,
        /// for a forged epoch.
        epoch_tag: [u8; 16],
    },
    /// [`PacketType::Plain`]: the sender, in clear.
    Plain {
        /// The sender.
        sender: PeerId,
    },
}

/// A parsed header.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct HeaderRepr {
    /// The cipher-suite byte.
    pub suite: u8,
    /// The flags.
    pub flags: HeaderFlags,
    /// The receiver's session index, or zero.
    pub session_index: u32,
    /// The packet counter.
    pub counter: u64,
    /// The type-specific extension; it decides the packet type.
    pub extension: HeaderExtension,
}

impl HeaderRepr {
    /// Parses the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> HeaderRepr {
        let bytes = header.bytes();
        let extension = match header.packet_type() {
            PacketType::MulticastData => HeaderExtension::MulticastData {
                sender: PeerId(array(&bytes[field::SENDER])),
                epoch_material: array(&bytes[field::EPOCH_MATERIAL]),
                epoch_timestamp_ms: u64::from_le_bytes(array(&bytes[field::EPOCH_TIMESTAMP])),
                epoch_tag: array(&bytes[field::EPOCH_TAG]),
            },
            PacketType::Plain => HeaderExtension::Plain {
                sender: PeerId(array(&bytes[field::SENDER])),
            },
            _ => HeaderExtension::Data,
        };
        HeaderRepr {
            suite: header.suite(),
            flags: header.flags(),
            session_index: header.session_index(),
            counter: header.counter(),
            extension,
        }
    }

    /// The packet type the extension implies.
    pub fn packet_type(&self) -> PacketType {
        match self.extension {
            HeaderExtension::Data => PacketType::Data,
            HeaderExtension::MulticastData { .. } => PacketType::MulticastData,
            HeaderExtension::Plain { .. } => PacketType::Plain,
        }
    }

    /// How many bytes [`HeaderRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        // Invariant: every extension maps to a framed packet type.
        self.packet_type().header_len().unwrap_or(COMMON_LEN)
    }

    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.packet_type() as u8, self.suite, self.flags.bits(), 0]);
        out.extend_from_slice(&self.session_index.to_le_bytes());
        out.extend_from_slice(&self.counter.to_le_bytes());
        match &self.extension {
            HeaderExtension::Data => {}
            HeaderExtension::MulticastData {
                sender,
                epoch_material,
                epoch_timestamp_ms,
                epoch_tag,
            } => {
                out.extend_from_slice(sender.as_bytes());
                out.extend_from_slice(epoch_material);
                out.extend_from_slice(&epoch_timestamp_ms.to_le_bytes());
                out.extend_from_slice(epoch_tag);
            }
            HeaderExtension::Plain { sender } => out.extend_from_slice(sender.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain packet: suite 0, no flags, session index 0, counter 0x0102030405060708, sender
    /// 0xaa.., then a one-byte body (a padding frame).
    static PLAIN_BYTES: [u8; 33] = [
        0x06, 0x00, 0x00, 0x00, // type, suite, flags, reserved
        0x00, 0x00, 0x00, 0x00, // session index
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // counter, LE
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, // sender
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, //
        0x00, // body
    ];

    /// A data packet: suite 1, padded, session index 0x11223344, counter 7, then a 16-byte tag
    /// and no body.
    static DATA_BYTES: [u8; 32] = [
        0x04, 0x01, 0x01, 0x00, //
        0x44, 0x33, 0x22, 0x11, //
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, // tag
        0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, //
    ];

    fn plain_repr() -> HeaderRepr {
        HeaderRepr {
            suite: 0,
            flags: HeaderFlags::empty(),
            session_index: 0,
            counter: 0x0102_0304_0506_0708,
            extension: HeaderExtension::Plain {
                sender: PeerId([0xaa; 16]),
            },
        }
    }

    #[test]
    fn deconstruct_plain() {
        let header = Header::new_checked(&PLAIN_BYTES[..]).unwrap();
        assert_eq!(header.packet_type(), PacketType::Plain);
        assert_eq!(header.suite(), 0);
        assert_eq!(header.flags(), HeaderFlags::empty());
        assert_eq!(header.session_index(), 0);
        assert_eq!(header.counter(), 0x0102_0304_0506_0708);
        assert_eq!(header.sender(), Some(PeerId([0xaa; 16])));
        assert_eq!(header.header_bytes(), &PLAIN_BYTES[..32]);
        assert_eq!(header.payload(), &[0x00]);
    }

    #[test]
    fn deconstruct_data() {
        let header = Header::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!(header.packet_type(), PacketType::Data);
        assert_eq!(header.suite(), CipherSuite::ChaChaPoly as u8);
        assert!(header.flags().contains(HeaderFlags::PADDED));
        assert_eq!(header.session_index(), 0x1122_3344);
        assert_eq!(header.counter(), 7);
        assert_eq!(header.sender(), None);
        assert_eq!(header.payload(), &[0xee; 16]);
    }

    #[test]
    fn construct_plain() {
        let mut out = Vec::new();
        plain_repr().emit(&mut out);
        assert_eq!(out.len(), plain_repr().buffer_len());
        assert_eq!(&out[..], &PLAIN_BYTES[..32]);
    }

    #[test]
    fn parse_matches_repr() {
        let header = Header::new_checked(&PLAIN_BYTES[..]).unwrap();
        assert_eq!(HeaderRepr::parse(&header), plain_repr());
    }

    #[test]
    fn multicast_round_trips() {
        let repr = HeaderRepr {
            suite: 1,
            flags: HeaderFlags::empty(),
            session_index: 0,
            counter: u64::MAX,
            extension: HeaderExtension::MulticastData {
                sender: PeerId([3; 16]),
                epoch_material: [9; 32],
                epoch_timestamp_ms: 1_790_000_000_000,
                epoch_tag: [7; 16],
            },
        };
        let mut out = Vec::new();
        repr.emit(&mut out);
        assert_eq!(out.len(), 88);
        assert_eq!(out[72..], [7; 16], "the epoch tag last");
        out.extend_from_slice(&[0; TAG_LEN]);
        let header = Header::new_checked(&out[..]).unwrap();
        assert_eq!(HeaderRepr::parse(&header), repr);
        assert_eq!(header.sender(), Some(PeerId([3; 16])));
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..PLAIN_BYTES.len() - 1 {
            let err = Header::new_checked(&PLAIN_BYTES[..len]).unwrap_err();
            assert!(
                matches!(err, DecodeError::Truncated { .. }),
                "len {len}: {err}"
            );
        }
        // A data packet must hold at least the header and the tag.
        let err = Header::new_checked(&DATA_BYTES[..31]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                field: "packet header",
                needed: 32,
                have: 31
            }
        );
    }

    #[test]
    fn handshake_messages_have_exact_lengths() {
        let mut init = vec![0u8; 116];
        init[0] = PacketType::HandshakeInit as u8;
        assert_eq!(
            PacketType::of_datagram(&init),
            Ok(PacketType::HandshakeInit)
        );
        for len in [115, 117] {
            init.resize(len, 0);
            assert_eq!(
                PacketType::of_datagram(&init),
                Err(DecodeError::WrongLength {
                    packet: "handshake init",
                    expected: 116,
                    actual: len
                })
            );
        }
        let mut resp = vec![0u8; 92];
        resp[0] = PacketType::HandshakeResponse as u8;
        assert_eq!(
            PacketType::of_datagram(&resp),
            Ok(PacketType::HandshakeResponse)
        );
        resp.push(0);
        assert!(matches!(
            PacketType::of_datagram(&resp),
            Err(DecodeError::WrongLength { expected: 92, .. })
        ));
        let mut cookie = vec![0u8; 64];
        cookie[0] = PacketType::CookieReply as u8;
        assert_eq!(
            PacketType::of_datagram(&cookie),
            Ok(PacketType::CookieReply)
        );
        // Handshake messages have no common header to view.
        assert_eq!(
            Header::new_checked(&cookie[..]).unwrap_err(),
            DecodeError::NotFramed {
                packet: "cookie reply"
            }
        );
    }

    #[test]
    fn unknown_type_is_rejected() {
        let mut bytes = PLAIN_BYTES;
        for t in [0x00, 0x07, 0x80, 0xff] {
            bytes[0] = t;
            assert_eq!(
                Header::new_checked(&bytes[..]).unwrap_err(),
                DecodeError::UnknownPacketType(t)
            );
        }
    }

    #[test]
    fn reserved_byte_and_unknown_flags_are_rejected() {
        let mut bytes = PLAIN_BYTES;
        bytes[3] = 1;
        assert_eq!(
            Header::new_checked(&bytes[..]).unwrap_err(),
            DecodeError::ReservedBitsSet {
                field: "reserved",
                value: 1
            }
        );
        let mut bytes = PLAIN_BYTES;
        bytes[2] = 0x80;
        assert_eq!(
            Header::new_checked(&bytes[..]).unwrap_err(),
            DecodeError::ReservedBitsSet {
                field: "flags",
                value: 0x80
            }
        );
    }

    #[test]
    fn payload_is_writable_in_place() {
        let mut bytes = DATA_BYTES;
        let mut header = Header::new_checked(&mut bytes[..]).unwrap();
        header.payload_mut()[0] = 0x42;
        assert_eq!(bytes[16], 0x42);
    }
}
