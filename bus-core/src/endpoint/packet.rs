//! Packets: opening what arrives (plaintext, multicast epochs, unicast sessions, handshake
//! messages) and sealing what leaves.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::{Endpoint, Misconfiguration, Target};
use crate::PeerId;
use crate::crypto::OpenError;
use crate::metrics::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::{Frame, Header, HeaderExtension, HeaderFlags, HeaderRepr, PacketType};

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a multicast epoch that started at `timestamp_ms` (the sender's wall clock) may still
/// be in use at `now_ms` (ours): not older than the rekey interval plus the allowed clock skew,
/// and not from further in the future than the skew. Bounds replays of recorded traffic to a
/// restarted receiver without any state kept across restarts.
fn epoch_is_fresh(now_ms: u64, rekey_after: Duration, skew: Duration, timestamp_ms: u64) -> bool {
    let skew = duration_ms(skew);
    let oldest = now_ms.saturating_sub(duration_ms(rekey_after) + skew);
    (oldest..=now_ms.saturating_add(skew)).contains(&timestamp_ms)
}

/// The datagram's bytes, writable for decryption in place: without a copy when the driver
/// handed over the only reference, as it does.
fn writable(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

/// An authenticated datagram: who sent it, its body of frames, and whether it was sent to
/// the group.
pub(super) struct Opened {
    pub(super) sender: PeerId,
    pub(super) body: Bytes,
    pub(super) to_group: bool,
    /// For a packet sealed under a multicast epoch: when the epoch started (the sender's wall
    /// clock, ms) and the packet's counter in it, which say whether it is known to be fresh
    /// (see the freshness module).
    pub(super) epoch: Option<(u64, u64)>,
}

/// The size of a [`Frame::To`].
pub(super) const TO_FRAME_LEN: usize = 1 + 16;

/// How often a peer is told at most that it sends on a session we do not have.
const HINT_EVERY: Duration = Duration::from_secs(1);

/// Addresses told at most within [`HINT_EVERY`].
const MAX_HINTED: usize = 4096;

impl Endpoint {
    /// Authenticates and decrypts a datagram as the security mode requires: its sender and its
    /// body of frames, or `None` (dropped and counted, or a handshake message handled).
    /// Nothing unauthenticated gets further.
    pub(super) fn open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: Bytes,
    ) -> Option<Opened> {
        let packet_type = match PacketType::of_datagram(&datagram) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.dropped(DropReason::of_decode_error(&e));
                return None;
            }
        };
        match (packet_type, self.config.security.is_insecure()) {
            (PacketType::Plain, true) => {
                let header = match Header::new_checked(&datagram[..]) {
                    Ok(header) => header,
                    Err(e) => {
                        self.metrics.dropped(DropReason::of_decode_error(&e));
                        return None;
                    }
                };
                if header.suite() != 0 {
                    self.metrics.dropped(DropReason::BadSuite);
                    return None;
                }
                let sender = header.sender()?;
                let to_group = header.flags().contains(HeaderFlags::TO_GROUP);
                let body = datagram.slice(header.header_len()..);
                Some(Opened {
                    sender,
                    body,
                    to_group,
                    epoch: None,
                })
            }
            (PacketType::MulticastData, false) => self.open_epoch(now, from, datagram),
            (PacketType::Data, false) => self.open_session(now, from, datagram),
            (PacketType::HandshakeInit, false) => {
                self.handle_initiation(now, from, &datagram);
                None
            }
            (PacketType::HandshakeResponse, false) => {
                self.handle_response(now, &datagram);
                None
            }
            (PacketType::CookieReply, false) => {
                self.handle_cookie(now, &datagram);
                None
            }
            // Plaintext on a secure bus, or encrypted packets on an insecure one.
            (packet_type, _) => {
                self.metrics.dropped(DropReason::UnsupportedPacket);
                let what = if packet_type == PacketType::Plain {
                    Misconfiguration::Plaintext
                } else {
                    Misconfiguration::Encrypted
                };
                self.diagnose(now, from, what);
                None
            }
        }
    }

    fn open_epoch(&mut self, now: Instant, from: SocketAddr, bytes: Bytes) -> Option<Opened> {
        let now_ms = self.wall.1.as_millis();
        let mut packet = writable(bytes);
        let (rekey_after, skew) = (self.config.rekey_after, self.config.max_clock_skew);
        let fresh = |timestamp_ms| epoch_is_fresh(now_ms, rekey_after, skew, timestamp_ms);
        let (security, epochs) = (&self.config.security, &mut self.epochs);
        let static_dh = &mut self.static_dh;
        let local = self.config.local_id;
        let mut looped = false;
        let key_of = |sender, material: &[u8; 32], ts, tag: &[u8; 16]| {
            // Our own multicast, looped back: we hold no receiver key for ourselves (in
            // public-key mode), and it is no drop worth counting.
            looped = sender == local;
            security.checked_epoch_key(sender, (material, ts, tag), static_dh)
        };
        let opened = epochs.open_fresh_range(&mut packet, fresh, key_of);
        if looped && opened == Err(OpenError::UnknownSender) {
            return None;
        }
        match opened {
            Ok(opened) => Some(Opened {
                sender: opened.sender,
                body: packet.freeze().slice(opened.body),
                to_group: opened.flags.contains(HeaderFlags::TO_GROUP),
                epoch: Some((opened.timestamp_ms, opened.counter)),
            }),
            Err(e) => {
                self.refused(now, from, e);
                None
            }
        }
    }

    /// Counts a packet from `from` that would not open, and notes one that failed
    /// authentication.
    fn refused(&mut self, now: Instant, from: SocketAddr, e: OpenError) {
        self.metrics.dropped(DropReason::of_open_error(e));
        if e == OpenError::Auth {
            self.diagnose(now, from, Misconfiguration::AuthenticationFails);
        }
    }

    /// A peer at `from` sends on session `index`, which we do not have (we lost it, restarted,
    /// or dropped it): we tell it, at most once a [`HINT_EVERY`] per address, so it drops the
    /// session and a new handshake follows instead of its traffic being lost until the next
    /// rekey. To an address of no known peer (we may have restarted and know nobody yet) only
    /// while fewer than [`MAX_HINTED`] addresses are waiting (and, like every reply to an
    /// address not verified, within its budget): no amplifier for spoofed junk.
    fn hint_unknown_session(&mut self, now: Instant, from: SocketAddr, index: u32) {
        let recent = self
            .hinted
            .get(&from)
            .is_some_and(|at| now.saturating_duration_since(*at) < HINT_EVERY);
        let known = self.table.peers().any(|p| p.addr == from);
        if recent || (!known && self.hinted.len() >= MAX_HINTED) {
            return;
        }
        self.hinted.insert(from, now);
        if self
            .queue(Target::Unicast(from), &Frame::SessionUnknown { index })
            .is_err()
        {
            self.metrics.dropped(DropReason::SendFailed);
        }
    }

    fn open_session(&mut self, now: Instant, from: SocketAddr, bytes: Bytes) -> Option<Opened> {
        let index = match Header::new_checked(&bytes[..]) {
            Ok(header) => header.session_index(),
            Err(e) => {
                self.metrics.dropped(DropReason::of_decode_error(&e));
                return None;
            }
        };
        let mut packet = writable(bytes);
        match self.sessions.open(index, &mut packet, now) {
            Ok((sender, range)) => {
                self.metrics.session_datagram_in();
                Some(Opened {
                    sender,
                    body: packet.freeze().slice(range),
                    // A session is with one peer: never the group.
                    to_group: false,
                    epoch: None,
                })
            }
            Err(e) => {
                if e == OpenError::UnknownSender {
                    self.hint_unknown_session(now, from, index);
                }
                self.refused(now, from, e);
                None
            }
        }
    }

    /// The peer at `addr`, known or lately lost.
    fn peer_at(&self, addr: SocketAddr) -> Option<PeerId> {
        self.table
            .peers()
            .find(|p| p.addr == addr)
            .map(|p| p.id)
            .or_else(|| {
                self.lost
                    .iter()
                    .find(|(_, (at, _))| *at == addr)
                    .map(|(id, _)| *id)
            })
    }

    /// Wraps a body of frames into a packet: in insecure mode a plain header, a timestamp frame
    /// dating the frames, then the body; in the secure modes the same timestamp and body sealed
    /// under the session with the target if there is one, else under our current multicast
    /// epoch, started afresh every `rekey_after`. Empty if it could not be sealed.
    pub(super) fn seal(&mut self, now: Instant, target: Target, body: &[u8]) -> Vec<u8> {
        let timestamp = Frame::Timestamp {
            sent_at_us: now.as_micros(),
        };
        let flags = match target {
            Target::Group => HeaderFlags::TO_GROUP,
            Target::Unicast(_) => HeaderFlags::empty(),
        };
        if self.config.security.is_insecure() {
            let header = HeaderRepr {
                suite: 0,
                flags,
                session_index: 0,
                counter: self.packet_counter,
                extension: HeaderExtension::Plain {
                    sender: self.config.local_id,
                },
            };
            self.packet_counter += 1;
            let mut packet =
                Vec::with_capacity(header.buffer_len() + timestamp.encoded_len() + body.len());
            header.emit(&mut packet);
            timestamp.emit(&mut packet);
            packet.extend_from_slice(body);
            return packet;
        }
        self.advance_epochs(now);
        // The frames before the body are short: kept apart so the body is copied only once,
        // into the packet where it is encrypted.
        let mut prefix = Vec::with_capacity(timestamp.encoded_len() + TO_FRAME_LEN);
        timestamp.emit(&mut prefix);
        let mut packet = Vec::with_capacity(prefix.len() + TO_FRAME_LEN + body.len() + 88);
        if let Target::Unicast(addr) = target {
            if self.sessions.seal(addr, &[&prefix, body], &mut packet, now) {
                return packet;
            }
            // Under our epoch, which any key holder can open: name the one it is for, so that
            // it cannot be replayed to another peer as if it were for them.
            if let Some(peer) = self.peer_at(addr) {
                Frame::To { peer }.emit(&mut prefix);
            }
        }
        if let Some((epoch, _)) = self.epoch.as_mut()
            && epoch
                .seal_with(flags, &[&prefix, body], &mut packet)
                .is_ok()
        {
            return packet;
        }
        // Counted: the body is lost, and nothing else can be done about it here.
        self.metrics.dropped(DropReason::SendFailed);
        Vec::new()
    }
}
