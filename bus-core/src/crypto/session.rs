//! Protected packets: unicast [`Session`]s set up by a handshake, and multicast
//! [`SenderEpoch`]s any holder of the sender's key can open.
//!
//! Both seal a body of frames under ChaCha20-Poly1305 with the packet's counter as the nonce
//! and the whole header as associated data, so no header byte can be rewritten. Opening checks
//! the replay window first (cheap, changes nothing), then the tag, and only then records the
//! counter: a forged or corrupted packet changes no state at all.

use std::collections::VecDeque;
use std::ops::Range;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::noise::{self, KEY_LEN, TAG_LEN};
use super::{CryptoError, ReplayWindow};
use crate::PeerId;
use crate::time::{Duration, Instant};
use crate::wire::{Header, HeaderExtension, HeaderFlags, HeaderRepr, PacketType};

/// The suite byte of the one encrypted suite: X25519, ChaCha20-Poly1305, SHA-256.
pub const SUITE_CHACHA: u8 = 0x01;
/// A sender refuses to send past this counter; the session must be replaced first.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// A session is replaced after this many packets.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;

/// Why a protected packet was refused. Each maps to a drop counter.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a well-formed packet of the expected type.
    #[error("malformed")]
    Malformed,
    /// A suite outside the receiver's policy (or rewritten in transit).
    #[error("suite {0:#04x} not accepted")]
    BadSuite(u8),
    /// A counter already accepted, or too old for the window.
    #[error("replayed")]
    Replay,
    /// The tag did not verify.
    #[error("authentication failed")]
    Auth,
    /// The key's lifetime is over.
    #[error("session expired")]
    Expired,
    /// No key for this sender or session.
    #[error("unknown sender")]
    UnknownSender,
}

/// The key and counter for one direction.
#[derive(Clone, ZeroizeOnDrop)]
struct DirectionKey {
    key: [u8; KEY_LEN],
}

/// A unicast session with one peer, from a finished handshake.
pub struct Session {
    /// Our index: peers address packets for this session to it.
    pub local_index: u32,
    /// The peer's index, put in the packets we send.
    pub remote_index: u32,
    send: DirectionKey,
    recv: DirectionKey,
    send_counter: u64,
    replay: ReplayWindow,
    established_at: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("send_counter", &self.send_counter)
            .finish_non_exhaustive()
    }
}

/// Seals the body made of `parts` into a packet described by `header` (its counter is the
/// nonce), appending to `out`. The parts are copied once, straight into the packet, and
/// encrypted there: a body assembled first would cost a second copy of every datagram.
fn seal_packet(
    key: &[u8; KEY_LEN],
    header: &HeaderRepr,
    parts: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let start = out.len();
    header.emit(out);
    let header_end = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    let (aad, plaintext) = out[start..].split_at_mut(header_end - start);
    match noise::seal(key, header.counter, aad, plaintext) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(error) => {
            // Nothing half-built is left behind for the caller to send.
            out.truncate(start);
            Err(error)
        }
    }
}

/// Opens a checked packet in place, if `replay` allows its counter; records it on success.
/// Returns the body's range within the packet.
fn open_packet(
    key: &[u8; KEY_LEN],
    replay: &mut ReplayWindow,
    packet: &mut [u8],
    (counter, header_len): (u64, usize),
) -> Result<Range<usize>, OpenError> {
    if !replay.check(counter) {
        return Err(OpenError::Replay);
    }
    let tag_at = packet
        .len()
        .checked_sub(TAG_LEN)
        .filter(|&at| at >= header_len)
        .ok_or(OpenError::Malformed)?;
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(&packet[tag_at..]);
    let (aad, rest) = packet[..tag_at].split_at_mut(header_len);
    noise::open(key, counter, aad, &tag, rest).map_err(|_| OpenError::Auth)?;
    replay.accept(counter);
    Ok(header_len..tag_at)
}

impl Session {
    /// The session a finished handshake yields.
    pub fn new(
        transport: &noise::Transport,
        local_index: u32,
        remote_index: u32,
        now: Instant,
    ) -> Result<Session, CryptoError> {
        let (Some(send), Some(recv)) = (transport.send.key(), transport.recv.key()) else {
            return Err(CryptoError::MissingKey);
        };
        Ok(Session {
            local_index,
            remote_index,
            send: DirectionKey { key: *send },
            recv: DirectionKey { key: *recv },
            send_counter: 0,
            replay: ReplayWindow::default(),
            established_at: now,
        })
    }

    /// The two direction keys, for tests that prove they never travel.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> [[u8; KEY_LEN]; 2] {
        [self.send.key, self.recv.key]
    }

    /// When the handshake finished.
    pub fn established_at(&self) -> Instant {
        self.established_at
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u64 {
        self.send_counter
    }

    /// Whether it is time to replace the session (by age or by use).
    pub fn needs_rekey(&self, now: Instant, rekey_after: Duration) -> bool {
        now - self.established_at >= rekey_after || self.send_counter >= REKEY_AFTER_MESSAGES
    }

    /// Seals `body` (frames) into a data packet addressed to the peer's session, appending it
    /// to `out`.
    ///
    /// # Errors
    /// [`CryptoError::Seal`] once the counter reaches [`REJECT_AFTER_MESSAGES`].
    pub fn seal(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.seal_parts(&[body], out)
    }

    /// [`Session::seal`] for a body given in parts, in order.
    ///
    /// # Errors
    /// As [`Session::seal`].
    pub fn seal_parts(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(CryptoError::Seal);
        }
        let header = HeaderRepr {
            suite: SUITE_CHACHA,
            flags: HeaderFlags::empty(),
            session_index: self.remote_index,
            counter: self.send_counter,
            extension: HeaderExtension::Data,
        };
        seal_packet(&self.send.key, &header, parts, out)?;
        self.send_counter += 1;
        Ok(())
    }

    /// Opens a data packet for this session in place and returns its body. A packet that
    /// fails (replayed, forged, corrupted, wrong suite) changes no state; its body bytes are then
    /// unspecified, and it is to be dropped.
    ///
    /// # Errors
    /// [`OpenError`] says why; the packet must be dropped and counted.
    pub fn open<'a>(&mut self, packet: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        let body = self.open_range(packet)?;
        Ok(&packet[body])
    }

    /// [`Session::open`], returning where the body lies in the packet (for a caller that keeps
    /// the packet's buffer and slices it).
    ///
    /// # Errors
    /// As [`Session::open`].
    pub fn open_range(&mut self, packet: &mut [u8]) -> Result<Range<usize>, OpenError> {
        let header = Header::new_checked(&packet[..]).map_err(|_| OpenError::Malformed)?;
        if header.packet_type() != PacketType::Data || header.session_index() != self.local_index {
            return Err(OpenError::UnknownSender);
        }
        if header.suite() != SUITE_CHACHA {
            return Err(OpenError::BadSuite(header.suite()));
        }
        let fields = (header.counter(), header.header_len());
        open_packet(&self.recv.key, &mut self.replay, packet, fields)
    }
}

/// A sender's current multicast key: derived from fresh random material and the key it shares
/// with its receivers, announced in every packet, so any receiver holding the shared key can
/// open the packet with no handshake and no state beforehand.
pub struct SenderEpoch {
    sender: PeerId,
    material: [u8; 32],
    timestamp_ms: u64,
    tag: [u8; 16],
    key: DirectionKey,
    counter: u64,
}

impl std::fmt::Debug for SenderEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderEpoch")
            .field("sender", &self.sender)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// The multicast key of `sender`'s epoch `material` at `timestamp_ms`, in PSK mode:
/// HKDF-SHA256(salt = material, ikm = psk, info = "pvl1 mcast" ‖ suite ‖ sender ‖ timestamp).
pub fn epoch_key_psk(
    psk: &[u8; KEY_LEN],
    sender: PeerId,
    material: &[u8; 32],
    timestamp_ms: u64,
) -> [u8; KEY_LEN] {
    let mut info = Vec::with_capacity(10 + 1 + 16 + 8);
    info.extend_from_slice(b"pvl1 mcast");
    info.push(SUITE_CHACHA);
    info.extend_from_slice(sender.as_bytes());
    info.extend_from_slice(&timestamp_ms.to_be_bytes());
    let mut key = [0; KEY_LEN];
    // Invariant: 32 bytes is within HKDF-SHA256's output limit.
    let _ = orion::hazardous::kdf::hkdf::Hkdf::<orion::hazardous::kdf::hkdf::SHA256>::derive_key(
        material,
        psk,
        Some(&info),
        &mut key,
    );
    key
}

/// The key of `sender`'s epoch tags in PSK mode: BLAKE2b-256("pvl1 epoch tag" ‖ sender ‖ psk).
pub fn epoch_tag_key_psk(psk: &[u8; KEY_LEN], sender: PeerId) -> [u8; KEY_LEN] {
    tag_key(sender, psk)
}

/// The key of `sender`'s epoch tags in public-key mode, from DH(sender's static, group), which
/// only the sender and holders of the group key can compute (and a receiver computes once per
/// sender): BLAKE2b-256("pvl1 epoch tag" ‖ sender ‖ that DH).
pub fn epoch_tag_key_pk(dh_static_group: &[u8; KEY_LEN], sender: PeerId) -> [u8; KEY_LEN] {
    tag_key(sender, dh_static_group)
}

fn tag_key(sender: PeerId, secret: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    use orion::hazardous::hash::blake2::blake2b::Blake2b;
    let mut key = [0; KEY_LEN];
    if let Ok(mut hasher) = Blake2b::new(KEY_LEN)
        && hasher.update(b"pvl1 epoch tag").is_ok()
        && hasher.update(sender.as_bytes()).is_ok()
        && hasher.update(secret).is_ok()
        && let Ok(digest) = hasher.finalize()
    {
        key.copy_from_slice(digest.as_ref());
    }
    key
}

/// An epoch's tag: BLAKE2b-MAC-128 under its sender's tag key over sender ‖ material ‖
/// timestamp. Checked before anything is derived for an epoch not seen before.
pub fn epoch_tag(
    key: &[u8; KEY_LEN],
    sender: PeerId,
    material: &[u8; 32],
    timestamp_ms: u64,
) -> [u8; 16] {
    use orion::hazardous::mac::blake2b::{Blake2b, SecretKey};
    let mut tag = [0; 16];
    if let Ok(key) = SecretKey::try_from(&key[..])
        && let Ok(mut mac) = Blake2b::new(&key, 16)
        && mac.update(sender.as_bytes()).is_ok()
        && mac.update(material).is_ok()
        && mac.update(&timestamp_ms.to_be_bytes()).is_ok()
        && let Ok(out) = mac.finalize()
    {
        tag.copy_from_slice(out.unprotected_as_ref());
    }
    tag
}

/// Whether `tag` is the epoch tag of `sender`'s epoch `material` at `timestamp_ms` under `key`
/// (compared in constant time).
pub fn epoch_tag_matches(
    key: &[u8; KEY_LEN],
    sender: PeerId,
    material: &[u8; 32],
    timestamp_ms: u64,
    tag: &[u8; 16],
) -> bool {
    orion::util::secure_cmp(&epoch_tag(key, sender, material, timestamp_ms), tag).is_ok()
}

fn epoch_key_pk(
    dh_ephemeral_group: &[u8; KEY_LEN],
    dh_static_group: &[u8; KEY_LEN],
    sender: PeerId,
    material: &[u8; 32],
    group_public: &[u8; KEY_LEN],
    timestamp_ms: u64,
) -> [u8; KEY_LEN] {
    let mut ikm = [0u8; 2 * KEY_LEN];
    ikm[..KEY_LEN].copy_from_slice(dh_ephemeral_group);
    ikm[KEY_LEN..].copy_from_slice(dh_static_group);
    let mut info = Vec::with_capacity(1 + 16 + 32 + 32 + 8);
    info.push(SUITE_CHACHA);
    info.extend_from_slice(sender.as_bytes());
    info.extend_from_slice(material);
    info.extend_from_slice(group_public);
    info.extend_from_slice(&timestamp_ms.to_be_bytes());
    let mut key = [0; KEY_LEN];
    // Invariant: 32 bytes is within HKDF-SHA256's output limit.
    let _ = orion::hazardous::kdf::hkdf::Hkdf::<orion::hazardous::kdf::hkdf::SHA256>::derive_key(
        b"pvl1 mcast",
        &ikm,
        Some(&info),
        &mut key,
    );
    ikm.zeroize();
    key
}

/// The multicast key of an epoch in public-key mode, on the receiver's side (the Noise K
/// pattern, one way): HKDF(salt = "pvl1 mcast", ikm = DH(group, E) ‖ DH(group, sender's static),
/// info = suite ‖ sender ‖ E ‖ group public ‖ timestamp), where E, the epoch's ephemeral public
/// key, is the epoch material. Only the sender (its static key) and holders of the group key
/// can compute it.
///
/// # Errors
/// [`CryptoError::BadKey`] for a worthless public key.
pub fn epoch_key_receiver(
    group: &noise::Keypair,
    sender: PeerId,
    sender_static: &[u8; KEY_LEN],
    material: &[u8; 32],
    timestamp_ms: u64,
) -> Result<[u8; KEY_LEN], CryptoError> {
    let mut b = group.dh(sender_static)?;
    let key = epoch_key_receiver_with(group, sender, &b, material, timestamp_ms);
    b.zeroize();
    key
}

/// [`epoch_key_receiver`] with DH(group, sender's static) already computed (it is the same for
/// every epoch of the sender): one Diffie-Hellman instead of two.
///
/// # Errors
/// [`CryptoError::BadKey`] for a worthless epoch key.
pub fn epoch_key_receiver_with(
    group: &noise::Keypair,
    sender: PeerId,
    dh_static_group: &[u8; KEY_LEN],
    material: &[u8; 32],
    timestamp_ms: u64,
) -> Result<[u8; KEY_LEN], CryptoError> {
    let mut a = group.dh(material)?;
    let key = epoch_key_pk(
        &a,
        dh_static_group,
        sender,
        material,
        group.public(),
        timestamp_ms,
    );
    a.zeroize();
    Ok(key)
}

impl SenderEpoch {
    /// A new epoch for `sender` in public-key mode: a fresh ephemeral key pair whose public
    /// half is the epoch material, and the key [`epoch_key_receiver`] derives on the other
    /// side.
    ///
    /// # Errors
    /// [`CryptoError`] if the random source fails or a key is worthless.
    pub fn generate_pk<R: rand::CryptoRng + ?Sized>(
        sender: PeerId,
        sender_static: &noise::Keypair,
        group_public: &[u8; KEY_LEN],
        timestamp_ms: u64,
        rng: &mut R,
    ) -> Result<SenderEpoch, CryptoError> {
        let ephemeral = noise::Keypair::generate(rng)?;
        let material = *ephemeral.public();
        let mut a = ephemeral.dh(group_public)?;
        let mut b = sender_static.dh(group_public)?;
        let key = epoch_key_pk(&a, &b, sender, &material, group_public, timestamp_ms);
        let mut tag_key = epoch_tag_key_pk(&b, sender);
        let tag = epoch_tag(&tag_key, sender, &material, timestamp_ms);
        a.zeroize();
        b.zeroize();
        tag_key.zeroize();
        Ok(SenderEpoch {
            sender,
            material,
            timestamp_ms,
            tag,
            key: DirectionKey { key },
            counter: 0,
        })
    }

    /// A new epoch for `sender` in PSK mode. `material` must be fresh random bytes and `timestamp_ms` the wall-clock time in milliseconds.
    pub fn new_psk(
        sender: PeerId,
        psk: &[u8; KEY_LEN],
        material: [u8; 32],
        timestamp_ms: u64,
    ) -> SenderEpoch {
        let mut tag_key = epoch_tag_key_psk(psk, sender);
        let tag = epoch_tag(&tag_key, sender, &material, timestamp_ms);
        tag_key.zeroize();
        SenderEpoch {
            key: DirectionKey {
                key: epoch_key_psk(psk, sender, &material, timestamp_ms),
            },
            sender,
            material,
            timestamp_ms,
            tag,
            counter: 0,
        }
    }

    /// A new epoch for `sender` in PSK mode, its material drawn from `rng`.
    pub fn generate_psk<R: rand::CryptoRng + ?Sized>(
        sender: PeerId,
        psk: &[u8; KEY_LEN],
        timestamp_ms: u64,
        rng: &mut R,
    ) -> SenderEpoch {
        SenderEpoch::new_psk(sender, psk, super::random_key(rng), timestamp_ms)
    }

    /// When the epoch started, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// Packets sealed in this epoch.
    pub fn sent(&self) -> u64 {
        self.counter
    }

    /// Seals `body` into a multicast data packet, appending it to `out`.
    ///
    /// # Errors
    /// [`CryptoError::Seal`] once the epoch's counter is used up (start a new epoch long
    /// before: every 2^32 packets).
    pub fn seal(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.seal_with(HeaderFlags::empty(), &[body], out)
    }

    /// [`SenderEpoch::seal`] with header flags (authenticated with the rest of the header), for
    /// a body given in parts, in order.
    ///
    /// # Errors
    /// As [`SenderEpoch::seal`].
    pub fn seal_with(
        &mut self,
        flags: HeaderFlags,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if self.counter >= REJECT_AFTER_MESSAGES {
            return Err(CryptoError::Seal);
        }
        let header = HeaderRepr {
            suite: SUITE_CHACHA,
            flags,
            session_index: 0,
            counter: self.counter,
            extension: HeaderExtension::MulticastData {
                sender: self.sender,
                epoch_material: self.material,
                epoch_timestamp_ms: self.timestamp_ms,
                epoch_tag: self.tag,
            },
        };
        seal_packet(&self.key.key, &header, parts, out)?;
        self.counter += 1;
        Ok(())
    }
}

/// A multicast data packet opened in place.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochOpened {
    /// Who sealed it.
    pub sender: PeerId,
    /// Where its body lies in the packet.
    pub body: Range<usize>,
    /// Its header's flags.
    pub flags: HeaderFlags,
    /// When its epoch started: the sender's wall clock, in ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Its counter in that epoch.
    pub counter: u64,
}

struct EpochState {
    sender: PeerId,
    material: [u8; 32],
    key: DirectionKey,
    replay: ReplayWindow,
}

/// The receiving side of multicast epochs: a bounded cache of (sender, epoch) → key and replay
/// window, so a new epoch costs one key derivation and every later packet of it none.
pub struct EpochReceiver {
    epochs: VecDeque<EpochState>,
    capacity: usize,
}

impl std::fmt::Debug for EpochReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochReceiver")
            .field("epochs", &self.epochs.len())
            .finish()
    }
}

impl EpochReceiver {
    /// A cache of at most `capacity` epochs (the oldest is forgotten first).
    pub fn new(capacity: usize) -> EpochReceiver {
        EpochReceiver {
            epochs: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Opens a multicast data packet in place and returns its sender and body. For an epoch
    /// not seen before, `key_of(sender, material, timestamp_ms)` derives its key (see
    /// [`epoch_key_psk`] and [`epoch_key_receiver`]), or says the sender is unknown; the epoch
    /// tag is not checked. A packet that fails changes no state, not even the cache; its body
    /// bytes are then unspecified, and it is to be dropped.
    ///
    /// # Errors
    /// [`OpenError`] says why; the packet must be dropped and counted.
    pub fn open<'a>(
        &mut self,
        packet: &'a mut [u8],
        key_of: impl FnOnce(PeerId, &[u8; 32], u64) -> Option<[u8; KEY_LEN]>,
    ) -> Result<(PeerId, &'a [u8]), OpenError> {
        let (sender, body) = self.open_range(packet, key_of)?;
        Ok((sender, &packet[body]))
    }

    /// [`EpochReceiver::open`], returning where the body lies in the packet (for a caller that
    /// keeps the packet's buffer and slices it).
    ///
    /// # Errors
    /// As [`EpochReceiver::open`].
    pub fn open_range(
        &mut self,
        packet: &mut [u8],
        key_of: impl FnOnce(PeerId, &[u8; 32], u64) -> Option<[u8; KEY_LEN]>,
    ) -> Result<(PeerId, Range<usize>), OpenError> {
        let key_of = |sender, material: &[u8; 32], ts, _: &[u8; 16]| {
            key_of(sender, material, ts).ok_or(OpenError::UnknownSender)
        };
        self.open_checked(packet, |_| true, key_of, false)
            .map(|opened| (opened.sender, opened.body))
    }

    /// [`EpochReceiver::open_range`] for a caller that checks epoch tags: for an epoch not seen
    /// before, `key_of(sender, material, timestamp_ms, tag)` checks the tag (see
    /// [`epoch_tag_matches`], one hash) before it derives the key, and says why not otherwise.
    /// Its `Ok` vouches for the epoch, which is then cached even if this packet's body fails
    /// (so a flood of junk under a genuine epoch header costs one derivation, not one each).
    /// Refuses with [`OpenError::Expired`] a packet whose epoch started at a time `is_fresh`
    /// rejects (checked on every packet, cached epoch or not, from the one parse of its
    /// header).
    ///
    /// # Errors
    /// As [`EpochReceiver::open`], what `key_of` says, and [`OpenError::Expired`].
    pub fn open_fresh_range(
        &mut self,
        packet: &mut [u8],
        is_fresh: impl FnOnce(u64) -> bool,
        key_of: impl FnOnce(PeerId, &[u8; 32], u64, &[u8; 16]) -> Result<[u8; KEY_LEN], OpenError>,
    ) -> Result<EpochOpened, OpenError> {
        self.open_checked(packet, is_fresh, key_of, true)
    }

    fn open_checked(
        &mut self,
        packet: &mut [u8],
        is_fresh: impl FnOnce(u64) -> bool,
        key_of: impl FnOnce(PeerId, &[u8; 32], u64, &[u8; 16]) -> Result<[u8; KEY_LEN], OpenError>,
        vouched: bool,
    ) -> Result<EpochOpened, OpenError> {
        let header = Header::new_checked(&packet[..]).map_err(|_| OpenError::Malformed)?;
        if header.packet_type() != PacketType::MulticastData {
            return Err(OpenError::Malformed);
        }
        if header.suite() != SUITE_CHACHA {
            return Err(OpenError::BadSuite(header.suite()));
        }
        let HeaderExtension::MulticastData {
            sender,
            epoch_material,
            epoch_timestamp_ms,
            epoch_tag,
        } = HeaderRepr::parse(&header).extension
        else {
            return Err(OpenError::Malformed);
        };
        if !is_fresh(epoch_timestamp_ms) {
            return Err(OpenError::Expired);
        }
        let fields = (header.counter(), header.header_len());
        let flags = header.flags();
        let known = self
            .epochs
            .iter()
            .position(|e| e.sender == sender && e.material == epoch_material);
        let body = match known {
            Some(i) => {
                let epoch = &mut self.epochs[i];
                open_packet(&epoch.key.key, &mut epoch.replay, packet, fields)?
            }
            None => {
                let key = key_of(sender, &epoch_material, epoch_timestamp_ms, &epoch_tag)?;
                let mut epoch = EpochState {
                    sender,
                    material: epoch_material,
                    key: DirectionKey { key },
                    replay: ReplayWindow::default(),
                };
                let opened = open_packet(&epoch.key.key, &mut epoch.replay, packet, fields);
                if opened.is_ok() || vouched {
                    if self.epochs.len() == self.capacity {
                        self.epochs.pop_front();
                    }
                    self.epochs.push_back(epoch);
                }
                opened?
            }
        };
        Ok(EpochOpened {
            sender,
            body,
            flags,
            timestamp_ms: epoch_timestamp_ms,
            counter: fields.0,
        })
    }

    /// Epochs cached.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether none is cached.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }
}
