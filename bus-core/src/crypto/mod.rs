//! Cryptography: the Noise handshake, AEAD with counter nonces, and the anti-replay window.
//!
//! Built on orion 0.18's primitives (X25519, ChaCha20-Poly1305, SHA-256, HKDF), following
//! `shared/design/security.md`: `Noise_KK_25519_ChaChaPoly_SHA256` for the public-key mode and
//! `Noise_NNpsk0_25519_ChaChaPoly_SHA256` for the PSK mode; per-direction session keys; the
//! packet header as associated data; an RFC 6479 replay window updated only after a packet
//! authenticates. Secret material is zeroized on drop and never printed by `Debug`.

pub mod handshake;
pub mod noise;
mod replay;
mod session;

pub use replay::{REPLAY_WINDOW, ReplayWindow};
pub use session::{
    EpochOpened, EpochReceiver, OpenError, REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES,
    SUITE_CHACHA, SenderEpoch, Session, epoch_key_psk, epoch_key_receiver, epoch_key_receiver_with,
    epoch_tag, epoch_tag_key_pk, epoch_tag_key_psk, epoch_tag_matches,
};

/// 32 fresh random bytes from `rng`: a new pre-shared key, or epoch material. The core reads no
/// random source of its own; callers pass the operating system's (or, in tests, a seeded one).
pub fn random_key<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> [u8; 32] {
    let mut key = [0; 32];
    rng.fill_bytes(&mut key);
    key
}

/// The peer id public-key mode gives a peer by default: BLAKE2b-128 of its static public key,
/// so the id commits to the key.
pub fn peer_id_of(public_key: &[u8; 32]) -> crate::PeerId {
    let mut id = [0u8; 16];
    if let Ok(mut hasher) = orion::hazardous::hash::blake2::blake2b::Blake2b::new(16)
        && hasher.update(public_key).is_ok()
        && let Ok(digest) = hasher.finalize()
    {
        id.copy_from_slice(digest.as_ref());
    }
    crate::PeerId(id)
}

/// Why a cryptographic operation failed.
///
/// For input from the network the sender is at fault (or an attacker): the packet is dropped
/// and counted, and no state changes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The tag did not verify: forged, corrupted, replayed into the wrong session, or the wrong
    /// key.
    #[error("authentication failed")]
    Auth,
    /// A message shorter than its fixed parts.
    #[error("message truncated")]
    Truncated,
    /// A public key that yields no shared secret (a low-order point), or an unusable private key.
    #[error("unusable key")]
    BadKey,
    /// The configuration lacks a key the handshake needs. The caller is at fault.
    #[error("a key the handshake needs is missing")]
    MissingKey,
    /// A handshake message written or read out of order. The caller (or the peer) is at fault.
    #[error("handshake message out of turn")]
    OutOfTurn,
    /// Sealing failed: a message too long, or the nonces of a key used up.
    #[error("cannot seal")]
    Seal,
    /// The operating system's random source failed.
    #[error("random source failed")]
    Rng,
}
