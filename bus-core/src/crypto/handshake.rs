//! The bus's two handshake messages around Noise `NNpsk0` (PSK mode) and `KK` (public-key
//! mode), framed as in `shared/design/security.md` §3.3 (WireGuard's shape): fixed sizes, a
//! clear client id that selects the credentials, session indexes, a timestamp against replayed
//! initiations, and mac1 so that a responder rejects junk with one keyed hash before any
//! Diffie-Hellman.
//!
//! The byte layouts are in [`crate::wire::handshake`].

use orion::hazardous::aead::xchacha20poly1305::{
    Nonce as XNonce, SecretKey as XKey, Tag as XTag, XChaCha20Poly1305,
};
use orion::hazardous::hash::blake2::blake2b::Blake2b as Blake2bHash;
use orion::hazardous::mac::blake2b::{Blake2b, SecretKey as MacKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;
use super::noise::{HandshakeKeys, HandshakeState, KEY_LEN, KK, Keypair, NN_PSK0, Pattern};
use super::session::{SUITE_CHACHA, Session};
use crate::PeerId;
use crate::time::Instant;
use crate::wire::PacketType;
use crate::wire::handshake::{HandshakePacket, cookie_reply, emit_prefix, init, response};

/// The size of a handshake initiation.
pub const INIT_LEN: usize = init::LEN;
/// The size of a handshake response.
pub const RESP_LEN: usize = response::LEN;
const MAC_LEN: usize = 16;

/// Which kind of credentials a handshake uses; its byte is in every handshake message.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u8)]
pub enum Mode {
    /// A 32-byte pre-shared key (Noise `NNpsk0`).
    Psk = 1,
    /// Static X25519 keys known to both sides (Noise `KK`).
    PublicKey = 2,
}

/// What one side needs to handshake with one peer.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// The key shared with the peer (or the whole cluster), and which side of the handshake
    /// responds: its id is bound into mac1, so an initiation captured on its way to one peer
    /// is refused by every other before any Diffie-Hellman.
    Psk {
        /// The pre-shared key.
        key: PresharedKey,
        /// The responder's id.
        responder: PeerId,
    },
    /// Our key pair, and the peer's public key, pinned.
    PublicKey {
        /// Our static key pair.
        local: Keypair,
        /// The peer's static public key.
        remote: [u8; KEY_LEN],
    },
}

/// A 32-byte pre-shared key; zeroized on drop, never printed.
#[derive(Clone, ZeroizeOnDrop)]
pub struct PresharedKey(pub [u8; KEY_LEN]);

impl std::fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresharedKey(..)")
    }
}

impl Credentials {
    fn mode(&self) -> Mode {
        match self {
            Credentials::Psk { .. } => Mode::Psk,
            Credentials::PublicKey { .. } => Mode::PublicKey,
        }
    }

    fn pattern(&self) -> Pattern {
        match self {
            Credentials::Psk { .. } => NN_PSK0,
            Credentials::PublicKey { .. } => KK,
        }
    }

    fn keys(&self, ephemeral: Keypair) -> HandshakeKeys {
        match self {
            Credentials::Psk { key, .. } => HandshakeKeys {
                psks: vec![key.0],
                ephemeral: Some(ephemeral),
                ..HandshakeKeys::default()
            },
            Credentials::PublicKey { local, remote } => HandshakeKeys {
                static_keys: Some(local.clone()),
                remote_static: Some(*remote),
                ephemeral: Some(ephemeral),
                ..HandshakeKeys::default()
            },
        }
    }

    /// The mac1 key: BLAKE2b-256("pvl1 mac1" ‖ client id ‖ responder id ‖ psk) in PSK mode;
    /// BLAKE2b-256("pvl1 mac1" ‖ responder public ‖ initiator public) in public-key mode.
    fn mac1_key(&self, client: PeerId, initiator: bool) -> [u8; KEY_LEN] {
        let mut hasher = match Blake2bHash::new(KEY_LEN) {
            Ok(h) => h,
            Err(_) => return [0; KEY_LEN],
        };
        let _ = hasher.update(b"pvl1 mac1");
        match self {
            Credentials::Psk { key, responder } => {
                let _ = hasher.update(client.as_bytes());
                let _ = hasher.update(responder.as_bytes());
                let _ = hasher.update(&key.0);
            }
            Credentials::PublicKey { local, remote } => {
                let (responder, initiator_key) = if initiator {
                    (remote, local.public())
                } else {
                    (local.public(), remote)
                };
                let _ = hasher.update(responder);
                let _ = hasher.update(initiator_key);
            }
        }
        let mut key = [0; KEY_LEN];
        if let Ok(digest) = hasher.finalize() {
            key.copy_from_slice(digest.as_ref());
        }
        key
    }
}

fn mac1(key: &[u8; KEY_LEN], bytes: &[u8]) -> [u8; MAC_LEN] {
    let mut out = [0; MAC_LEN];
    let Ok(key) = MacKey::try_from(&key[..]) else {
        return out;
    };
    if let Ok(mut mac) = Blake2b::new(&key, MAC_LEN)
        && mac.update(bytes).is_ok()
        && let Ok(tag) = mac.finalize()
    {
        out.copy_from_slice(tag.unprotected_as_ref());
    }
    out
}

fn mac1_matches(key: &[u8; KEY_LEN], bytes: &[u8], mac: &[u8]) -> bool {
    orion::util::secure_cmp(&mac1(key, bytes), mac).is_ok()
}

fn prologue(mode: Mode, client: PeerId) -> Vec<u8> {
    let mut p = b"PVL/1".to_vec();
    p.push(SUITE_CHACHA);
    p.push(mode as u8);
    p.extend_from_slice(client.as_bytes());
    p
}

/// Why a handshake message was refused. Each maps to a drop counter.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Wrong size, type or reserved byte.
    #[error("malformed handshake message")]
    Malformed,
    /// A suite or mode this peer does not accept.
    #[error("suite or mode not accepted")]
    BadSuite,
    /// mac1 does not verify: junk, or credentials that do not match.
    #[error("bad mac1")]
    BadMac,
    /// The Noise message does not authenticate.
    #[error("authentication failed")]
    Auth,
    /// The response is for another initiation.
    #[error("response to another handshake")]
    UnknownIndex,
}

/// The size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = cookie_reply::LEN;

/// `K_cookie = BLAKE2b-256("pvl1 cookie" ‖ K_mac1)`: the key a cookie travels under.
fn cookie_key(mac1_key: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut key = [0; KEY_LEN];
    if let Ok(mut hasher) = Blake2bHash::new(KEY_LEN)
        && hasher.update(b"pvl1 cookie").is_ok()
        && hasher.update(mac1_key).is_ok()
        && let Ok(digest) = hasher.finalize()
    {
        key.copy_from_slice(digest.as_ref());
    }
    key
}

/// A 16-byte cookie as a mac key (keyed BLAKE2b takes 1 to 64 bytes; we key with 32).
fn pad_key(cookie: &[u8; MAC_LEN]) -> [u8; KEY_LEN] {
    let mut key = [0; KEY_LEN];
    key[..MAC_LEN].copy_from_slice(cookie);
    key
}

/// A responder's rotating secret for cookies (WireGuard's scheme): under load it answers an
/// initiation without a valid mac2 with a cookie bound to the initiator's address, instead of
/// computing the handshake, so a spoofed flood cannot make it work.
#[derive(ZeroizeOnDrop)]
pub struct CookieSecret {
    secret: [u8; KEY_LEN],
    #[zeroize(skip)]
    created: Instant,
}

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSecret").finish_non_exhaustive()
    }
}

impl CookieSecret {
    /// How often the secret changes: a cookie is good for at most this long.
    pub const ROTATE_EVERY: std::time::Duration = std::time::Duration::from_secs(120);

    /// A fresh secret drawn from `rng`.
    pub fn new<R: rand::CryptoRng + ?Sized>(now: Instant, rng: &mut R) -> CookieSecret {
        CookieSecret {
            secret: super::random_key(rng),
            created: now,
        }
    }

    /// Replaces the secret once it is [`CookieSecret::ROTATE_EVERY`] old.
    pub fn rotate_if_due<R: rand::CryptoRng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        if now - self.created >= Self::ROTATE_EVERY {
            *self = CookieSecret::new(now, rng);
        }
    }

    fn cookie(&self, source: std::net::SocketAddr) -> [u8; MAC_LEN] {
        let mut input = Vec::with_capacity(18);
        match source.ip() {
            std::net::IpAddr::V4(ip) => input.extend_from_slice(&ip.octets()),
            std::net::IpAddr::V6(ip) => input.extend_from_slice(&ip.octets()),
        }
        input.extend_from_slice(&source.port().to_be_bytes());
        mac1(&self.secret, &input)
    }

    /// Whether the initiation's mac2 proves that its sender received our cookie at `source`.
    pub fn check_mac2(&self, initiation: &[u8], source: std::net::SocketAddr) -> bool {
        initiation.len() == INIT_LEN
            && mac1_matches(
                &pad_key(&self.cookie(source)),
                &initiation[init::field::MAC2_COVERS],
                &initiation[init::field::MAC2],
            )
    }

    /// The cookie reply for an initiation from `source` (whose mac1 the caller has checked):
    /// 64 bytes, less than the 116 it answers, so no amplification.
    ///
    /// # Errors
    /// [`CryptoError`] if the initiation is malformed.
    pub fn reply<R: rand::CryptoRng + ?Sized>(
        &self,
        initiation: &[u8],
        source: std::net::SocketAddr,
        credentials: &Credentials,
        rng: &mut R,
    ) -> Result<[u8; COOKIE_REPLY_LEN], CryptoError> {
        let header = peek_init(initiation).map_err(|_| CryptoError::Truncated)?;
        let mut mac1_key = credentials.mac1_key(header.client, false);
        let key = cookie_key(&mac1_key);
        mac1_key.zeroize();
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let nonce = XNonce::from(nonce);
        let mut cookie = self.cookie(source);
        let tag = XChaCha20Poly1305::seal_inplace(
            &XKey::from(key),
            &nonce,
            Some(&initiation[init::field::MAC1]),
            &mut cookie,
        )
        .map_err(|_| CryptoError::Seal)?;
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        emit_prefix(
            &mut reply,
            PacketType::CookieReply,
            SUITE_CHACHA,
            header.mode as u8,
        );
        reply[cookie_reply::field::RECEIVER_INDEX]
            .copy_from_slice(&header.sender_index.to_le_bytes());
        reply[cookie_reply::field::NONCE].copy_from_slice(nonce.as_ref());
        reply[cookie_reply::field::COOKIE].copy_from_slice(&cookie);
        reply[cookie_reply::field::TAG].copy_from_slice(tag.unprotected_as_ref());
        Ok(reply)
    }
}

/// The clear fields of a handshake initiation, read before choosing credentials.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct InitHeader {
    /// The claimed initiator.
    pub client: PeerId,
    /// The initiator's session index.
    pub sender_index: u32,
    /// The credentials' kind.
    pub mode: Mode,
}

/// Reads the clear fields of an initiation.
///
/// # Errors
/// [`HandshakeError::Malformed`] or [`HandshakeError::BadSuite`].
pub fn peek_init(packet: &[u8]) -> Result<InitHeader, HandshakeError> {
    let view = checked(packet, PacketType::HandshakeInit)?;
    let mode = mode_of(view.mode())?;
    let mut client = [0; 16];
    client.copy_from_slice(&packet[init::field::CLIENT]);
    Ok(InitHeader {
        client: PeerId(client),
        sender_index: view.u32_at(init::field::SENDER_INDEX),
        mode,
    })
}

/// A view of `packet` as a handshake message of `packet_type` in our suite.
fn checked(
    packet: &[u8],
    packet_type: PacketType,
) -> Result<HandshakePacket<&[u8]>, HandshakeError> {
    let view = HandshakePacket::new_checked(packet).map_err(|_| HandshakeError::Malformed)?;
    if view.packet_type() != packet_type {
        return Err(HandshakeError::Malformed);
    }
    if view.suite() != SUITE_CHACHA {
        return Err(HandshakeError::BadSuite);
    }
    Ok(view)
}

fn mode_of(byte: u8) -> Result<Mode, HandshakeError> {
    match byte {
        1 => Ok(Mode::Psk),
        2 => Ok(Mode::PublicKey),
        _ => Err(HandshakeError::BadSuite),
    }
}

/// The cheap checks of an initiation, for a responder to run on its receive path before any
/// Diffie-Hellman: size, type, suite, mode, and mac1 under `credentials`.
///
/// # Errors
/// [`HandshakeError::Malformed`], [`HandshakeError::BadSuite`] or [`HandshakeError::BadMac`].
pub fn check_initiation(
    initiation: &[u8],
    credentials: &Credentials,
) -> Result<InitHeader, HandshakeError> {
    let header = peek_init(initiation)?;
    if header.mode != credentials.mode() {
        return Err(HandshakeError::BadSuite);
    }
    let mut mac1_key = credentials.mac1_key(header.client, false);
    let valid = mac1_matches(
        &mac1_key,
        &initiation[init::field::MAC1_COVERS],
        &initiation[init::field::MAC1],
    );
    mac1_key.zeroize();
    if valid {
        Ok(header)
    } else {
        Err(HandshakeError::BadMac)
    }
}

/// The initiator's session index a response or cookie reply is addressed to, so the
/// initiator can find the initiation it answers.
pub fn response_index(reply: &[u8]) -> Option<u32> {
    let at = if reply.first() == Some(&(PacketType::CookieReply as u8)) {
        cookie_reply::field::RECEIVER_INDEX
    } else {
        response::field::RECEIVER_INDEX
    };
    let bytes = reply.get(at)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// An initiation sent, waiting for its response.
pub struct Initiation {
    state: HandshakeState,
    sender_index: u32,
    mac1_key: [u8; KEY_LEN],
    packet: [u8; INIT_LEN],
}

impl std::fmt::Debug for Initiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiation")
            .field("sender_index", &self.sender_index)
            .finish_non_exhaustive()
    }
}

impl Drop for Initiation {
    fn drop(&mut self) {
        self.mac1_key.zeroize();
    }
}

impl Initiation {
    /// Starts a handshake as `client` with session index `sender_index`; `timestamp` (for
    /// example nanoseconds since the Unix epoch) must grow with every initiation to the same
    /// responder. `ephemeral` is a fresh key pair the caller drew (`Keypair::generate`), or a fixed one for test vectors.
    ///
    /// # Errors
    /// [`CryptoError`] if a key is missing or the random source fails.
    pub fn start(
        client: PeerId,
        credentials: &Credentials,
        sender_index: u32,
        timestamp: u64,
        ephemeral: Keypair,
    ) -> Result<(Initiation, [u8; INIT_LEN]), CryptoError> {
        let mode = credentials.mode();
        let mut state = HandshakeState::new(
            credentials.pattern(),
            true,
            &prologue(mode, client),
            credentials.keys(ephemeral),
        )?;
        let mut payload = [0u8; 12];
        payload[..8].copy_from_slice(&timestamp.to_be_bytes());
        let message = state.write_message(&payload)?;
        let mut packet = [0u8; INIT_LEN];
        emit_prefix(
            &mut packet,
            PacketType::HandshakeInit,
            SUITE_CHACHA,
            mode as u8,
        );
        packet[init::field::SENDER_INDEX].copy_from_slice(&sender_index.to_le_bytes());
        packet[init::field::CLIENT].copy_from_slice(client.as_bytes());
        if message.len() != init::field::NOISE.len() {
            return Err(CryptoError::Seal);
        }
        packet[init::field::NOISE].copy_from_slice(&message);
        let mac1_key = credentials.mac1_key(client, true);
        let mac = mac1(&mac1_key, &packet[init::field::MAC1_COVERS]);
        packet[init::field::MAC1].copy_from_slice(&mac);
        Ok((
            Initiation {
                state,
                sender_index,
                mac1_key,
                packet,
            },
            packet,
        ))
    }

    /// Our session index for this handshake.
    pub fn sender_index(&self) -> u32 {
        self.sender_index
    }

    /// Takes the cookie a responder under load sent back, and returns the initiation to send
    /// again, now with mac2 keyed by the cookie (proof that we receive at our address).
    ///
    /// # Errors
    /// [`HandshakeError`] if the reply is malformed, for another initiation, or does not
    /// authenticate.
    pub fn accept_cookie(&mut self, reply: &[u8]) -> Result<[u8; INIT_LEN], HandshakeError> {
        let view = HandshakePacket::new_checked(reply).map_err(|_| HandshakeError::Malformed)?;
        if view.packet_type() != PacketType::CookieReply {
            return Err(HandshakeError::Malformed);
        }
        if view.u32_at(cookie_reply::field::RECEIVER_INDEX) != self.sender_index {
            return Err(HandshakeError::UnknownIndex);
        }
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&reply[cookie_reply::field::NONCE]);
        let mut cookie = [0u8; MAC_LEN];
        cookie.copy_from_slice(&reply[cookie_reply::field::COOKIE]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&reply[cookie_reply::field::TAG]);
        XChaCha20Poly1305::open_inplace(
            &XKey::from(cookie_key(&self.mac1_key)),
            &XNonce::from(nonce),
            &XTag::from(tag),
            Some(&self.packet[init::field::MAC1]),
            &mut cookie,
        )
        .map_err(|_| HandshakeError::Auth)?;
        let mac2 = mac1(&pad_key(&cookie), &self.packet[init::field::MAC2_COVERS]);
        self.packet[init::field::MAC2].copy_from_slice(&mac2);
        Ok(self.packet)
    }

    /// Reads the response and returns the session.
    ///
    /// # Errors
    /// [`HandshakeError`] says why; the initiation stays usable for a genuine response only
    /// if the failure happened before the Noise read (wrong size, index or mac1).
    pub fn finish(&self, response: &[u8], now: Instant) -> Result<Session, HandshakeError> {
        let view = checked(response, PacketType::HandshakeResponse)?;
        if view.u32_at(response::field::RECEIVER_INDEX) != self.sender_index {
            return Err(HandshakeError::UnknownIndex);
        }
        if !mac1_matches(
            &self.mac1_key,
            &response[response::field::MAC1_COVERS],
            &response[response::field::MAC1],
        ) {
            return Err(HandshakeError::BadMac);
        }
        // On a copy: a response that fails leaves the initiation able to take the real one.
        let mut state = self.state.clone();
        state
            .read_message(&response[response::field::NOISE])
            .map_err(|_| HandshakeError::Auth)?;
        let remote_index = view.u32_at(response::field::SENDER_INDEX);
        let transport = state.into_transport().map_err(|_| HandshakeError::Auth)?;
        Session::new(&transport, self.sender_index, remote_index, now)
            .map_err(|_| HandshakeError::Auth)
    }
}

/// What a responder learns from a valid initiation.
#[derive(Debug)]
pub struct Accepted {
    /// The new session (the responder should wait for the first data packet on it before
    /// retiring an older one: key confirmation).
    pub session: Session,
    /// The response to send back.
    pub response: [u8; RESP_LEN],
    /// The initiator.
    pub client: PeerId,
    /// The initiation's timestamp: refuse it unless greater than the last one accepted from
    /// this client.
    pub timestamp: u64,
}

/// Answers an initiation with `credentials` (the ones for its client id) and session index
/// `local_index`. Checks mac1 before any Diffie-Hellman.
///
/// # Errors
/// [`HandshakeError`] says why; nothing is answered.
pub fn respond(
    initiation: &[u8],
    credentials: &Credentials,
    local_index: u32,
    now: Instant,
    ephemeral: Keypair,
) -> Result<Accepted, HandshakeError> {
    let header = check_initiation(initiation, credentials)?;
    let mut mac1_key = credentials.mac1_key(header.client, false);
    let mut state = HandshakeState::new(
        credentials.pattern(),
        false,
        &prologue(header.mode, header.client),
        credentials.keys(ephemeral),
    )
    .map_err(|_| HandshakeError::Auth)?;
    let payload = state
        .read_message(&initiation[init::field::NOISE])
        .map_err(|_| HandshakeError::Auth)?;
    let mut timestamp = [0; 8];
    timestamp.copy_from_slice(payload.get(..8).ok_or(HandshakeError::Malformed)?);
    let message = state.write_message(&[]).map_err(|_| HandshakeError::Auth)?;
    let mut response = [0u8; RESP_LEN];
    emit_prefix(
        &mut response,
        PacketType::HandshakeResponse,
        SUITE_CHACHA,
        header.mode as u8,
    );
    response[response::field::SENDER_INDEX].copy_from_slice(&local_index.to_le_bytes());
    response[response::field::RECEIVER_INDEX].copy_from_slice(&header.sender_index.to_le_bytes());
    if message.len() != response::field::NOISE.len() {
        return Err(HandshakeError::Auth);
    }
    response[response::field::NOISE].copy_from_slice(&message);
    let mac = mac1(&mac1_key, &response[response::field::MAC1_COVERS]);
    mac1_key.zeroize();
    response[response::field::MAC1].copy_from_slice(&mac);
    let transport = state.into_transport().map_err(|_| HandshakeError::Auth)?;
    let session = Session::new(&transport, local_index, header.sender_index, now)
        .map_err(|_| HandshakeError::Auth)?;
    Ok(Accepted {
        session,
        response,
        client: header.client,
        timestamp: u64::from_be_bytes(timestamp),
    })
}

#[cfg(test)]
mod tests;
