//! The three handshake messages, byte by byte: fixed sizes, one `field` module of named ranges
//! each, and a checked view (the `crypto::handshake` module fills and reads them).
//!
//! ```text
//! HS_INIT, 116 bytes                      HS_RESP, 92 bytes                 COOKIE, 64 bytes
//!   0  type 0x01, suite, mode, 0            0  type 0x02, suite, mode, 0      0  type 0x03, suite, mode, 0
//!   4  sender index (u32 LE)                4  sender index (responder's)     4  receiver index (initiator's)
//!   8  client id (16)                       8  receiver index (initiator's)   8  nonce (24)
//!  24  ephemeral public key (32)           12  ephemeral public key (32)     32  encrypted cookie (16)
//!  56  encrypted timestamp+flags (12+16)   44  tag of the empty payload (16) 48  tag (16)
//!  84  mac1 over bytes 0..84 (16)          60  mac1 over bytes 0..60 (16)
//! 100  mac2 over bytes 0..100 (16)         76  mac2 (16, zero)
//! ```

use super::{DecodeError, PacketType};

/// The first four bytes of every handshake message.
pub mod prefix {
    /// The packet type.
    pub const TYPE: usize = 0;
    /// The cipher suite.
    pub const SUITE: usize = 1;
    /// The credentials' mode (pre-shared key or public key).
    pub const MODE: usize = 2;
    /// Reserved: zero.
    pub const RESERVED: usize = 3;
}

/// The handshake initiation.
pub mod init {
    use core::ops::Range;

    /// Its size.
    pub const LEN: usize = 116;

    /// Its fields.
    pub mod field {
        use super::Range;

        /// The initiator's session index (u32 LE).
        pub const SENDER_INDEX: Range<usize> = 4..8;
        /// The initiator's peer id, in the clear: it selects the credentials.
        pub const CLIENT: Range<usize> = 8..24;
        /// The Noise message: ephemeral key, encrypted timestamp and its tag.
        pub const NOISE: Range<usize> = 24..84;
        /// mac1, keyed by the credentials.
        pub const MAC1: Range<usize> = 84..100;
        /// What mac1 covers.
        pub const MAC1_COVERS: Range<usize> = 0..84;
        /// mac2, keyed by a cookie (zero without one).
        pub const MAC2: Range<usize> = 100..116;
        /// What mac2 covers.
        pub const MAC2_COVERS: Range<usize> = 0..100;
    }
}

/// The handshake response.
pub mod response {
    use core::ops::Range;

    /// Its size.
    pub const LEN: usize = 92;

    /// Its fields.
    pub mod field {
        use super::Range;

        /// The responder's session index (u32 LE).
        pub const SENDER_INDEX: Range<usize> = 4..8;
        /// The initiator's session index, echoed (u32 LE).
        pub const RECEIVER_INDEX: Range<usize> = 8..12;
        /// The Noise message: ephemeral key and the tag of the empty payload.
        pub const NOISE: Range<usize> = 12..60;
        /// mac1.
        pub const MAC1: Range<usize> = 60..76;
        /// What mac1 covers.
        pub const MAC1_COVERS: Range<usize> = 0..60;
        /// mac2 (zero).
        pub const MAC2: Range<usize> = 76..92;
    }
}

/// The cookie reply a responder under load sends instead of a response.
pub mod cookie_reply {
    use core::ops::Range;

    /// Its size: smaller than the initiation it answers, so it amplifies nothing.
    pub const LEN: usize = 64;

    /// Its fields.
    pub mod field {
        use super::Range;

        /// The initiator's session index, echoed (u32 LE).
        pub const RECEIVER_INDEX: Range<usize> = 4..8;
        /// The XChaCha20-Poly1305 nonce.
        pub const NONCE: Range<usize> = 8..32;
        /// The encrypted cookie.
        pub const COOKIE: Range<usize> = 32..48;
        /// Its tag.
        pub const TAG: Range<usize> = 48..64;
    }
}

/// A handshake message over a buffer whose size and prefix were checked.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct HandshakePacket<B: AsRef<[u8]>> {
    buffer: B,
    packet_type: PacketType,
}

impl<B: AsRef<[u8]>> HandshakePacket<B> {
    /// A view of `buffer` as the handshake message its first byte names: exactly that type's
    /// size, with a zero reserved byte.
    ///
    /// # Errors
    /// [`DecodeError`] if the type is not a handshake message's, or the size or reserved byte
    /// is wrong.
    pub fn new_checked(buffer: B) -> Result<Self, DecodeError> {
        let bytes = buffer.as_ref();
        let packet_type = PacketType::of_datagram(bytes)?;
        let Some(len) = packet_type.fixed_len() else {
            return Err(DecodeError::UnknownPacketType(bytes[prefix::TYPE]));
        };
        if bytes.len() != len {
            return Err(DecodeError::WrongLength {
                packet: packet_type.name(),
                expected: len,
                actual: bytes.len(),
            });
        }
        if bytes[prefix::RESERVED] != 0 {
            return Err(DecodeError::ReservedBitsSet {
                field: "handshake reserved byte",
                value: bytes[prefix::RESERVED],
            });
        }
        Ok(HandshakePacket {
            buffer,
            packet_type,
        })
    }

    /// Which of the three messages it is.
    pub fn packet_type(&self) -> PacketType {
        self.packet_type
    }

    /// The whole message.
    pub fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Its cipher suite byte.
    pub fn suite(&self) -> u8 {
        self.bytes()[prefix::SUITE]
    }

    /// Its mode byte.
    pub fn mode(&self) -> u8 {
        self.bytes()[prefix::MODE]
    }

    /// A little-endian u32 field.
    pub fn u32_at(&self, range: core::ops::Range<usize>) -> u32 {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&self.bytes()[range]);
        u32::from_le_bytes(bytes)
    }
}

/// Writes the four prefix bytes of a handshake message into `packet`.
pub fn emit_prefix(packet: &mut [u8], packet_type: PacketType, suite: u8, mode: u8) {
    packet[prefix::TYPE] = packet_type as u8;
    packet[prefix::SUITE] = suite;
    packet[prefix::MODE] = mode;
    packet[prefix::RESERVED] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_fields_agree() {
        assert_eq!(init::field::MAC2.end, init::LEN);
        assert_eq!(init::field::MAC1.start, init::field::MAC1_COVERS.end);
        assert_eq!(init::field::MAC2.start, init::field::MAC2_COVERS.end);
        assert_eq!(response::field::MAC2.end, response::LEN);
        assert_eq!(
            response::field::MAC1.start,
            response::field::MAC1_COVERS.end
        );
        assert_eq!(cookie_reply::field::TAG.end, cookie_reply::LEN);
        assert_eq!(PacketType::HandshakeInit.fixed_len(), Some(init::LEN));
        assert_eq!(
            PacketType::HandshakeResponse.fixed_len(),
            Some(response::LEN)
        );
        assert_eq!(PacketType::CookieReply.fixed_len(), Some(cookie_reply::LEN));
    }

    #[test]
    fn a_view_checks_size_type_and_reserved_byte() {
        let mut packet = [0u8; init::LEN];
        emit_prefix(&mut packet, PacketType::HandshakeInit, 1, 2);
        packet[init::field::SENDER_INDEX].copy_from_slice(&7u32.to_le_bytes());
        let view = HandshakePacket::new_checked(&packet[..]).unwrap();
        assert_eq!(view.packet_type(), PacketType::HandshakeInit);
        assert_eq!((view.suite(), view.mode()), (1, 2));
        assert_eq!(view.u32_at(init::field::SENDER_INDEX), 7);
        assert!(HandshakePacket::new_checked(&packet[..115]).is_err());
        let mut plain = packet;
        plain[prefix::TYPE] = PacketType::Plain as u8;
        assert!(HandshakePacket::new_checked(&plain[..]).is_err());
        packet[prefix::RESERVED] = 1;
        assert!(matches!(
            HandshakePacket::new_checked(&packet[..]),
            Err(DecodeError::ReservedBitsSet { .. })
        ));
    }
}
