//! The Noise protocol framework's handshake, for the `25519_ChaChaPoly_SHA256` suite, over orion.
//!
//! Only what the bus uses: the patterns [`KK`] (both sides know each other's static key; the
//! public-key mode) and [`NN_PSK0`] (a pre-shared key; the PSK mode), plus [`NN`] and
//! [`KK_PSK2`], which cost nothing more and let the published test vectors check every token.
//! Message layout, key schedule and `Split()` follow the Noise specification (revision 34)
//! exactly, so the implementation can be checked against third-party vectors.

// ChaCha20-Poly1305 from ring: its assembly (BoringSSL's) picks AVX2 or SSE at run time, where
// orion's has no SIMD path and RustCrypto's leaves its AVX2 intrinsics uninlined (about 0.9 GB/s
// on 16 KB against ring's 1.5–1.8 here; see the security chapter). orion keeps the rest.
use orion::hazardous::ecc::x25519::{self, PrivateKey, PublicKey};
use orion::hazardous::hash::sha2::sha256::Sha256;
use orion::hazardous::kdf::hkdf::{Hkdf, SHA256};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;

/// Length of keys, hashes and DH outputs in this suite.
pub const KEY_LEN: usize = 32;
/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;

/// One step of a handshake pattern.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Token {
    /// Send or receive an ephemeral public key.
    E,
    /// Send or receive a static public key (encrypted once a key exists).
    S,
    /// DH between the two ephemerals.
    Ee,
    /// DH between the initiator's ephemeral and the responder's static.
    Es,
    /// DH between the initiator's static and the responder's ephemeral.
    Se,
    /// DH between the two statics.
    Ss,
    /// Mix in the next pre-shared key.
    Psk,
}

/// A two-message handshake pattern.
#[derive(Clone, Copy, Debug)]
pub struct Pattern {
    /// The full protocol name, hashed into the initial state.
    pub name: &'static str,
    /// Whether the responder knows the initiator's static key beforehand (`-> s` pre-message).
    pub initiator_static_known: bool,
    /// Whether the initiator knows the responder's static key beforehand (`<- s` pre-message).
    pub responder_static_known: bool,
    /// The tokens of each message, initiator first.
    pub messages: [&'static [Token]; 2],
}

impl Pattern {
    fn uses_psk(&self) -> bool {
        self.messages.iter().any(|m| m.contains(&Token::Psk))
    }
}

/// `NN`: no static keys.
pub const NN: Pattern = Pattern {
    name: "Noise_NN_25519_ChaChaPoly_SHA256",
    initiator_static_known: false,
    responder_static_known: false,
    messages: [&[Token::E], &[Token::E, Token::Ee]],
};

/// `KK`: both static keys known in advance. The bus's public-key mode.
pub const KK: Pattern = Pattern {
    name: "Noise_KK_25519_ChaChaPoly_SHA256",
    initiator_static_known: true,
    responder_static_known: true,
    messages: [
        &[Token::E, Token::Es, Token::Ss],
        &[Token::E, Token::Ee, Token::Se],
    ],
};

/// `NNpsk0`: authenticated by a pre-shared key only. The bus's PSK mode.
pub const NN_PSK0: Pattern = Pattern {
    name: "Noise_NNpsk0_25519_ChaChaPoly_SHA256",
    initiator_static_known: false,
    responder_static_known: false,
    messages: [&[Token::Psk, Token::E], &[Token::E, Token::Ee]],
};

/// `KKpsk2`: both static keys and a pre-shared key.
pub const KK_PSK2: Pattern = Pattern {
    name: "Noise_KKpsk2_25519_ChaChaPoly_SHA256",
    initiator_static_known: true,
    responder_static_known: true,
    messages: [
        &[Token::E, Token::Es, Token::Ss],
        &[Token::E, Token::Ee, Token::Se, Token::Psk],
    ],
};

/// An X25519 key pair. The private half is zeroized on drop.
#[derive(Clone, ZeroizeOnDrop)]
pub struct Keypair {
    private: [u8; KEY_LEN],
    #[zeroize(skip)]
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &Hex(&self.public))
            .finish_non_exhaustive()
    }
}

struct Hex<'a>(&'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Keypair {
    /// A fresh key pair from `rng` (the operating system's random source, or a seeded one in
    /// tests).
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] in the negligible case that the drawn key is unusable.
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Result<Keypair, CryptoError> {
        Keypair::from_private(super::random_key(rng))
    }

    /// The key pair of a given private key.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] if the key is unusable.
    pub fn from_private(mut private: [u8; KEY_LEN]) -> Result<Keypair, CryptoError> {
        let secret = PrivateKey::from(private);
        let public = PublicKey::try_from(&secret).map_err(|_| {
            private.zeroize();
            CryptoError::BadKey
        })?;
        let mut public_bytes = [0; KEY_LEN];
        public_bytes.copy_from_slice(public.as_ref());
        Ok(Keypair {
            private,
            public: public_bytes,
        })
    }

    /// The public half.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The private half, for writing a key file. Handle with care.
    pub fn private_bytes(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    /// X25519 with `public`; an error for a low-order (worthless) public key.
    pub(crate) fn dh(&self, public: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], CryptoError> {
        let shared =
            x25519::key_agreement(&PrivateKey::from(self.private), &PublicKey::from(*public))
                // A low-order point: the peer's key is worthless.
                .map_err(|_| CryptoError::BadKey)?;
        let mut out = [0; KEY_LEN];
        out.copy_from_slice(shared.unprotected_as_ref());
        Ok(out)
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut hasher = Sha256::new();
    for part in parts {
        // Invariant: SHA-256 accepts any input shorter than 2^61 bytes.
        let _ = hasher.update(part);
    }
    let mut out = [0; KEY_LEN];
    if let Ok(digest) = hasher.finalize() {
        out.copy_from_slice(digest.as_ref());
    }
    out
}

/// Noise's HKDF: RFC 5869 with `ck` as the salt and no info, `N` outputs of 32 bytes.
fn hkdf<const N: usize>(ck: &[u8; KEY_LEN], ikm: &[u8]) -> [[u8; KEY_LEN]; N] {
    let mut okm = [0u8; 96];
    // Invariant: 96 bytes is far below HKDF-SHA256's 255 × 32 limit.
    let _ = Hkdf::<SHA256>::derive_key(ck, ikm, None, &mut okm[..N * KEY_LEN]);
    let mut out = [[0u8; KEY_LEN]; N];
    for (i, o) in out.iter_mut().enumerate() {
        o.copy_from_slice(&okm[i * KEY_LEN..(i + 1) * KEY_LEN]);
    }
    okm.zeroize();
    out
}

/// The ChaChaPoly nonce for counter `n`: four zero bytes, then `n` little-endian.
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// A key for one call: for ChaCha20-Poly1305 that is a copy of the 32 bytes, nothing derived.
fn aead_key(key: &[u8; KEY_LEN]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Seal)
}

/// Encrypts `buf` in place under `key` and nonce `n`, authenticating `ad`; returns the tag.
///
/// # Errors
/// [`CryptoError::Seal`] if the message is longer than ChaCha20 allows.
pub fn seal(
    key: &[u8; KEY_LEN],
    n: u64,
    ad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], CryptoError> {
    let tag = aead_key(key)?
        .seal_in_place_separate_tag(nonce(n), Aad::from(ad), buf)
        .map_err(|_| CryptoError::Seal)?;
    let mut out = [0; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Checks `tag` over `ad` and `buf`, decrypting `buf` in place. On failure what `buf` holds
/// is unspecified: the caller drops it (nothing in the bus opens one buffer twice).
///
/// # Errors
/// [`CryptoError::Auth`] if the tag does not verify: forged, corrupted, or the wrong key.
pub fn open(
    key: &[u8; KEY_LEN],
    n: u64,
    ad: &[u8],
    tag: &[u8; TAG_LEN],
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    aead_key(key)
        .map_err(|_| CryptoError::Auth)?
        .open_in_place_separate_tag(nonce(n), Aad::from(ad), Tag::from(*tag), buf, 0..)
        .map(|_| ())
        .map_err(|_| CryptoError::Auth)
}

/// A key and an implicit nonce counter: Noise's CipherState.
#[derive(Clone, Default, ZeroizeOnDrop)]
pub struct CipherState {
    key: Option<[u8; KEY_LEN]>,
    n: u64,
}

impl std::fmt::Debug for CipherState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherState")
            .field("has_key", &self.key.is_some())
            .field("n", &self.n)
            .finish()
    }
}

impl CipherState {
    /// The key, once there is one (for deriving session keys).
    pub fn key(&self) -> Option<&[u8; KEY_LEN]> {
        self.key.as_ref()
    }

    /// Encrypts `plaintext` with the next nonce; without a key, returns it unchanged.
    ///
    /// # Errors
    /// [`CryptoError::Seal`] if the message is too long, or the nonces are used up.
    pub fn encrypt_with_ad(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = plaintext.to_vec();
        if self.key.is_some() {
            let n = self.next_nonce()?;
            if let Some(key) = &self.key {
                let tag = seal(key, n, ad, &mut out)?;
                out.extend_from_slice(&tag);
            }
        }
        Ok(out)
    }

    /// Decrypts `ciphertext` with the next nonce; without a key, returns it unchanged.
    ///
    /// # Errors
    /// [`CryptoError::Auth`] if it does not authenticate; [`CryptoError::Truncated`] if it is
    /// shorter than a tag.
    pub fn decrypt_with_ad(
        &mut self,
        ad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let Some(key) = &self.key else {
            return Ok(ciphertext.to_vec());
        };
        let split = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(CryptoError::Truncated)?;
        let (body, tag) = ciphertext.split_at(split);
        let mut tag_bytes = [0; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let mut out = body.to_vec();
        open(key, self.n, ad, &tag_bytes, &mut out)?;
        // Only a message that authenticated consumes a nonce.
        self.n += 1;
        Ok(out)
    }

    fn next_nonce(&mut self) -> Result<u64, CryptoError> {
        if self.n == u64::MAX {
            return Err(CryptoError::Seal);
        }
        let n = self.n;
        self.n += 1;
        Ok(n)
    }
}

/// Noise's SymmetricState: chaining key, handshake hash, and the current cipher.
#[derive(Clone, ZeroizeOnDrop)]
struct SymmetricState {
    cipher: CipherState,
    ck: [u8; KEY_LEN],
    #[zeroize(skip)]
    h: [u8; KEY_LEN],
}

impl SymmetricState {
    fn new(protocol_name: &str) -> SymmetricState {
        let name = protocol_name.as_bytes();
        let h = if name.len() <= KEY_LEN {
            let mut h = [0; KEY_LEN];
            h[..name.len()].copy_from_slice(name);
            h
        } else {
            sha256(&[name])
        };
        SymmetricState {
            cipher: CipherState::default(),
            ck: h,
            h,
        }
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let [ck, k] = hkdf::<2>(&self.ck, ikm);
        self.ck = ck;
        self.cipher = CipherState { key: Some(k), n: 0 };
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = sha256(&[&self.h, data]);
    }

    fn mix_key_and_hash(&mut self, ikm: &[u8]) {
        let [ck, temp_h, k] = hkdf::<3>(&self.ck, ikm);
        self.ck = ck;
        self.mix_hash(&temp_h);
        self.cipher = CipherState { key: Some(k), n: 0 };
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let ciphertext = self.cipher.encrypt_with_ad(&self.h, plaintext)?;
        self.mix_hash(&ciphertext);
        Ok(ciphertext)
    }

    fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let plaintext = self.cipher.decrypt_with_ad(&self.h, ciphertext)?;
        self.mix_hash(ciphertext);
        Ok(plaintext)
    }

    fn split(&self) -> (CipherState, CipherState) {
        let [k1, k2] = hkdf::<2>(&self.ck, &[]);
        (
            CipherState {
                key: Some(k1),
                n: 0,
            },
            CipherState {
                key: Some(k2),
                n: 0,
            },
        )
    }
}

/// What a finished handshake yields: one cipher per direction, and the handshake hash (the
/// session's channel binding).
#[derive(Debug)]
pub struct Transport {
    /// Encrypts what this side sends.
    pub send: CipherState,
    /// Decrypts what this side receives.
    pub recv: CipherState,
    /// The final handshake hash, equal on both sides.
    pub handshake_hash: [u8; KEY_LEN],
}

/// One side of a two-message handshake. Cloned to try a message that may be forged without
/// spending the state on it.
#[derive(Clone)]
pub struct HandshakeState {
    pattern: Pattern,
    symmetric: SymmetricState,
    initiator: bool,
    s: Option<Keypair>,
    e: Option<Keypair>,
    rs: Option<[u8; KEY_LEN]>,
    re: Option<[u8; KEY_LEN]>,
    psks: Vec<[u8; KEY_LEN]>,
    next_message: usize,
}

impl std::fmt::Debug for HandshakeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeState")
            .field("pattern", &self.pattern.name)
            .field("initiator", &self.initiator)
            .field("next_message", &self.next_message)
            .finish_non_exhaustive()
    }
}

impl Drop for HandshakeState {
    fn drop(&mut self) {
        for psk in &mut self.psks {
            psk.zeroize();
        }
    }
}

/// The keys a party brings to a handshake.
#[derive(Debug, Default)]
pub struct HandshakeKeys {
    /// Its static key pair, for patterns with `s`.
    pub static_keys: Option<Keypair>,
    /// The peer's static public key, when known beforehand.
    pub remote_static: Option<[u8; KEY_LEN]>,
    /// Pre-shared keys, used in order by the `psk` tokens.
    pub psks: Vec<[u8; KEY_LEN]>,
    /// The ephemeral key pair, freshly drawn by the caller (or fixed, for test vectors);
    /// required by patterns with `e`.
    pub ephemeral: Option<Keypair>,
}

impl HandshakeState {
    /// Starts a handshake with `prologue` bound into the transcript.
    ///
    /// # Errors
    /// [`CryptoError::MissingKey`] if the pattern needs a key that `keys` lacks.
    pub fn new(
        pattern: Pattern,
        initiator: bool,
        prologue: &[u8],
        keys: HandshakeKeys,
    ) -> Result<HandshakeState, CryptoError> {
        let mut symmetric = SymmetricState::new(pattern.name);
        symmetric.mix_hash(prologue);
        let local_known = if initiator {
            pattern.initiator_static_known
        } else {
            pattern.responder_static_known
        };
        let remote_known = if initiator {
            pattern.responder_static_known
        } else {
            pattern.initiator_static_known
        };
        let HandshakeKeys {
            static_keys,
            remote_static,
            psks,
            ephemeral,
        } = keys;
        if (local_known && static_keys.is_none())
            || (remote_known && remote_static.is_none())
            || (pattern.uses_psk() && psks.is_empty())
        {
            return Err(CryptoError::MissingKey);
        }
        // Pre-messages, initiator's first.
        let (initiator_static, responder_static) = if initiator {
            (static_keys.as_ref().map(|k| k.public), remote_static)
        } else {
            (remote_static, static_keys.as_ref().map(|k| k.public))
        };
        if pattern.initiator_static_known
            && let Some(key) = initiator_static
        {
            symmetric.mix_hash(&key);
        }
        if pattern.responder_static_known
            && let Some(key) = responder_static
        {
            symmetric.mix_hash(&key);
        }
        Ok(HandshakeState {
            pattern,
            symmetric,
            initiator,
            s: static_keys,
            e: ephemeral,
            rs: remote_static,
            re: None,
            psks,
            next_message: 0,
        })
    }

    /// Whether it is this side's turn to write.
    pub fn is_my_turn(&self) -> bool {
        self.next_message.is_multiple_of(2) == self.initiator
    }

    /// Whether both messages are done.
    pub fn is_finished(&self) -> bool {
        self.next_message >= self.pattern.messages.len()
    }

    fn dh(
        &self,
        local: Option<&Keypair>,
        remote: Option<&[u8; KEY_LEN]>,
    ) -> Result<[u8; KEY_LEN], CryptoError> {
        match (local, remote) {
            (Some(local), Some(remote)) => local.dh(remote),
            _ => Err(CryptoError::MissingKey),
        }
    }

    fn mix_dh(&mut self, token: Token) -> Result<(), CryptoError> {
        // Which of our keys meets which of theirs depends on our role.
        let (ours_e, ours_s) = (self.e.as_ref(), self.s.as_ref());
        let (theirs_e, theirs_s) = (self.re.as_ref(), self.rs.as_ref());
        let mut shared = match (token, self.initiator) {
            (Token::Ee, _) => self.dh(ours_e, theirs_e)?,
            (Token::Ss, _) => self.dh(ours_s, theirs_s)?,
            (Token::Es, true) | (Token::Se, false) => self.dh(ours_e, theirs_s)?,
            (Token::Es, false) | (Token::Se, true) => self.dh(ours_s, theirs_e)?,
            _ => return Ok(()),
        };
        self.symmetric.mix_key(&shared);
        shared.zeroize();
        Ok(())
    }

    fn mix_psk(&mut self) -> Result<(), CryptoError> {
        if self.psks.is_empty() {
            return Err(CryptoError::MissingKey);
        }
        let mut psk = self.psks.remove(0);
        self.symmetric.mix_key_and_hash(&psk);
        psk.zeroize();
        Ok(())
    }

    /// Writes this side's next handshake message, carrying `payload` (encrypted once a key
    /// exists).
    ///
    /// # Errors
    /// [`CryptoError::OutOfTurn`] if it is the peer's turn; key errors as the tokens require.
    pub fn write_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if self.is_finished() || !self.is_my_turn() {
            return Err(CryptoError::OutOfTurn);
        }
        let mut out = Vec::new();
        for &token in self.pattern.messages[self.next_message] {
            match token {
                Token::E => {
                    // The caller draws ephemeral keys: the core has no random source of its own.
                    let e = self.e.take().ok_or(CryptoError::MissingKey)?;
                    out.extend_from_slice(&e.public);
                    self.symmetric.mix_hash(&e.public);
                    if self.pattern.uses_psk() {
                        self.symmetric.mix_key(&e.public);
                    }
                    self.e = Some(e);
                }
                Token::S => {
                    let public = self.s.as_ref().ok_or(CryptoError::MissingKey)?.public;
                    let sealed = self.symmetric.encrypt_and_hash(&public)?;
                    out.extend_from_slice(&sealed);
                }
                Token::Psk => self.mix_psk()?,
                dh => self.mix_dh(dh)?,
            }
        }
        let sealed = self.symmetric.encrypt_and_hash(payload)?;
        out.extend_from_slice(&sealed);
        self.next_message += 1;
        Ok(out)
    }

    /// Reads the peer's next handshake message and returns its payload.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`] if it is too short, [`CryptoError::Auth`] if it does not
    /// authenticate (wrong keys, forged, corrupted), [`CryptoError::BadKey`] for a worthless
    /// public key, [`CryptoError::OutOfTurn`] if it is this side's turn. A failed read leaves
    /// the state unusable: start a new handshake.
    pub fn read_message(&mut self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if self.is_finished() || self.is_my_turn() {
            return Err(CryptoError::OutOfTurn);
        }
        let mut rest = message;
        for &token in self.pattern.messages[self.next_message] {
            match token {
                Token::E => {
                    let (key, tail) = take_key(rest)?;
                    rest = tail;
                    self.symmetric.mix_hash(&key);
                    if self.pattern.uses_psk() {
                        self.symmetric.mix_key(&key);
                    }
                    self.re = Some(key);
                }
                Token::S => {
                    let len = KEY_LEN
                        + if self.symmetric.cipher.key.is_some() {
                            TAG_LEN
                        } else {
                            0
                        };
                    if rest.len() < len {
                        return Err(CryptoError::Truncated);
                    }
                    let (sealed, tail) = rest.split_at(len);
                    rest = tail;
                    let public = self.symmetric.decrypt_and_hash(sealed)?;
                    let mut key = [0; KEY_LEN];
                    key.copy_from_slice(&public);
                    self.rs = Some(key);
                }
                Token::Psk => self.mix_psk()?,
                dh => self.mix_dh(dh)?,
            }
        }
        let payload = self.symmetric.decrypt_and_hash(rest)?;
        self.next_message += 1;
        Ok(payload)
    }

    /// The transcript hash so far.
    pub fn handshake_hash(&self) -> &[u8; KEY_LEN] {
        &self.symmetric.h
    }

    /// Ends a finished handshake: one cipher per direction.
    ///
    /// # Errors
    /// [`CryptoError::OutOfTurn`] if messages remain.
    pub fn into_transport(self) -> Result<Transport, CryptoError> {
        if !self.is_finished() {
            return Err(CryptoError::OutOfTurn);
        }
        let (initiator_to_responder, responder_to_initiator) = self.symmetric.split();
        let (send, recv) = if self.initiator {
            (initiator_to_responder, responder_to_initiator)
        } else {
            (responder_to_initiator, initiator_to_responder)
        };
        Ok(Transport {
            send,
            recv,
            handshake_hash: self.symmetric.h,
        })
    }
}

fn take_key(bytes: &[u8]) -> Result<([u8; KEY_LEN], &[u8]), CryptoError> {
    if bytes.len() < KEY_LEN {
        return Err(CryptoError::Truncated);
    }
    let (key, rest) = bytes.split_at(KEY_LEN);
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(key);
    Ok((out, rest))
}
