//! Identifiers that travel on the wire: peers and topics.

use core::fmt;

use rand::RngCore;

/// A peer's 16-byte identity (Pavillion's client id).
///
/// Random by default; in public-key mode it defaults to a hash of the peer's public key. It is
/// bound into the handshake, so a peer can only speak as the id whose credentials it holds.
#[derive(Clone, Copy, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct PeerId(pub [u8; 16]);

impl PeerId {
    /// Its length on the wire.
    pub const LEN: usize = 16;

    /// A fresh random id drawn from `rng` (the caller supplies the randomness).
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> PeerId {
        let mut bytes = [0; 16];
        rng.fill_bytes(&mut bytes);
        PeerId(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for PeerId {
    /// The first eight bytes in hex: enough to tell peers apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", hex::encode(self.0))
    }
}

/// A topic as it travels on the wire: a 64-bit hash of its name.
///
/// Names can be long; frames carry this fixed 8-byte id instead. It is FNV-1a, computed at compile
/// time for derived topics, and stable across builds, platforms and languages.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct TopicId(pub u64);

impl TopicId {
    /// The id of the topic called `name`.
    pub const fn from_name(name: &str) -> TopicId {
        TopicId(fnv1a64(name.as_bytes()))
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// 64-bit FNV-1a, usable in `const` contexts.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fnv1a_matches_reference_values() {
        // Reference values from the FNV specification's test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn topic_id_is_const_and_stable() {
        const ID: TopicId = TopicId::from_name("plant/boiler/temperature");
        assert_eq!(ID, TopicId::from_name("plant/boiler/temperature"));
        assert_ne!(ID, TopicId::from_name("plant/boiler/pressure"));
    }

    #[test]
    fn random_peer_ids_follow_the_seed() {
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        assert_eq!(PeerId::random(&mut a), PeerId::random(&mut b));
        assert_ne!(PeerId::random(&mut a), PeerId::random(&mut a));
    }

    #[test]
    fn peer_id_formats_as_hex() {
        let id = PeerId([0xab; 16]);
        assert_eq!(id.to_string(), "abababababababab");
        assert_eq!(format!("{id:?}"), format!("PeerId({})", "ab".repeat(16)));
    }
}
