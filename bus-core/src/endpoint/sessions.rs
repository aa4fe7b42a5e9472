//! Unicast sessions with peers, set up by Noise handshakes (PSK mode: `NNpsk0`).
//!
//! Each peer has up to three key slots, as in WireGuard: `current` (used to send), `previous`
//! (still accepted while packets sealed under it drain) and `pending` (a responder's new session,
//! accepted but not used to send until the initiator proves it has it by sending on it: key
//! confirmation, so a lost response cannot strand traffic). Until a session exists, unicast
//! traffic is sealed under the sender's multicast epoch.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::crypto::handshake::Initiation;
use crate::crypto::{OpenError, Session};
use crate::{Instant, PeerId};

#[derive(Debug, Default)]
struct Slots {
    peer: Option<PeerId>,
    current: Option<Session>,
    /// Whether the peer has sent on `current`: until it has, it may still be sending on
    /// `previous`, which must then outlive a newer `current`.
    current_heard: bool,
    previous: Option<Session>,
    /// A responder's new sessions, newest last: the initiator may be using any of the last two
    /// (a later response of its may have been lost).
    pending: Vec<Session>,
}

/// How many unconfirmed sessions a responder keeps per peer.
const MAX_PENDING: usize = 2;

/// An initiation waiting for its response.
#[derive(Debug)]
pub(crate) struct Outstanding {
    pub(crate) initiation: Initiation,
    pub(crate) peer: PeerId,
    pub(crate) addr: SocketAddr,
    pub(crate) sent_at: Instant,
}

/// Every peer's sessions, by address and by our session index.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Sessions older than this neither send nor receive (1.5 × the rekey interval, as
    /// WireGuard's 180 s to its 120 s).
    reject_after: std::time::Duration,
    by_addr: BTreeMap<SocketAddr, Slots>,
    addr_of_index: BTreeMap<u32, SocketAddr>,
    /// Initiations sent, by our session index.
    pub(crate) outstanding: BTreeMap<u32, Outstanding>,
    /// The newest handshake timestamp accepted from each initiator.
    pub(crate) last_timestamp: BTreeMap<PeerId, u64>,
    /// Complete handshakes.
    pub(crate) established: u64,
}

impl Sessions {
    pub(crate) fn new(rekey_after: std::time::Duration) -> Sessions {
        Sessions {
            reject_after: rekey_after * 3 / 2,
            by_addr: BTreeMap::new(),
            addr_of_index: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            last_timestamp: BTreeMap::new(),
            established: 0,
        }
    }

    fn retire(&mut self, session: Option<Session>) {
        if let Some(old) = session {
            self.addr_of_index.remove(&old.local_index);
        }
    }

    /// Installs a session: as current if we initiated it (the response proved the peer has
    /// it), as pending if we responded.
    pub(crate) fn install(
        &mut self,
        addr: SocketAddr,
        peer: PeerId,
        session: Session,
        confirmed: bool,
    ) {
        self.addr_of_index.insert(session.local_index, addr);
        self.established += 1;
        let slots = self.by_addr.entry(addr).or_default();
        slots.peer = Some(peer);
        let retired = if confirmed {
            let replaced = slots.current.replace(session);
            if slots.current_heard {
                // The peer uses the old current: keep it for receiving, retire the one before.
                slots.current_heard = false;
                std::mem::replace(&mut slots.previous, replaced)
            } else {
                // The peer never used the old current (it may still be on `previous`): drop it.
                replaced
            }
        } else {
            slots.pending.push(session);
            (slots.pending.len() > MAX_PENDING).then(|| slots.pending.remove(0))
        };
        self.retire(retired);
    }

    /// Seals the body made of `parts` for `addr` if a session with it is current and not
    /// expired.
    pub(crate) fn seal(
        &mut self,
        addr: SocketAddr,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
        now: Instant,
    ) -> bool {
        let reject_after = self.reject_after;
        match self.by_addr.get_mut(&addr).and_then(|s| s.current.as_mut()) {
            Some(session) if now - session.established_at() < reject_after => {
                session.seal_parts(parts, out).is_ok()
            }
            _ => false,
        }
    }

    /// Opens a data packet addressed to one of our sessions; returns its peer and the body's
    /// range. A pending session that opens a packet becomes current.
    pub(crate) fn open(
        &mut self,
        session_index: u32,
        packet: &mut [u8],
        now: Instant,
    ) -> Result<(PeerId, std::ops::Range<usize>), OpenError> {
        let reject_after = self.reject_after;
        let addr = *self
            .addr_of_index
            .get(&session_index)
            .ok_or(OpenError::UnknownSender)?;
        let slots = self
            .by_addr
            .get_mut(&addr)
            .ok_or(OpenError::UnknownSender)?;
        let peer = slots.peer.ok_or(OpenError::UnknownSender)?;
        let promote: Option<usize>;
        let on_current = slots
            .current
            .as_ref()
            .is_some_and(|s| s.local_index == session_index);
        let expired = |s: &Session| now - s.established_at() >= reject_after;
        let range = if on_current {
            promote = None;
            slots.current.as_mut().map(|s| {
                if expired(s) {
                    return Err(OpenError::Expired);
                }
                s.open_range(packet)
            })
        } else if let Some(i) = slots
            .pending
            .iter()
            .position(|s| s.local_index == session_index)
        {
            promote = Some(i);
            slots.pending.get_mut(i).map(|s| s.open_range(packet))
        } else {
            promote = None;
            slots.previous.as_mut().map(|s| {
                if expired(s) {
                    return Err(OpenError::Expired);
                }
                s.open_range(packet)
            })
        }
        .ok_or(OpenError::UnknownSender)??;
        if on_current {
            slots.current_heard = true;
        }
        if let Some(i) = promote {
            // The peer just sent on pending session `i`: it is current now, and any pending
            // session older than it will never be used.
            let mut pending = std::mem::take(&mut slots.pending);
            let newer = pending.split_off(i + 1);
            let promoted = pending.pop();
            let previous = slots.previous.take();
            slots.previous = slots.current.take();
            slots.current = promoted;
            slots.current_heard = true;
            slots.pending = newer;
            for old in pending.into_iter().chain(previous) {
                self.addr_of_index.remove(&old.local_index);
            }
        }
        Ok((peer, range))
    }

    /// When our current session with `addr` was established, if there is one.
    pub(crate) fn current_since(&self, addr: SocketAddr) -> Option<Instant> {
        self.by_addr
            .get(&addr)
            .and_then(|s| s.current.as_ref())
            .map(Session::established_at)
    }

    /// Whether an initiation to `addr` is waiting for its response (and is younger than
    /// `patience`).
    pub(crate) fn initiating(
        &self,
        addr: SocketAddr,
        now: Instant,
        patience: std::time::Duration,
    ) -> bool {
        self.outstanding
            .values()
            .any(|o| o.addr == addr && now - o.sent_at < patience)
    }

    /// Whether we send to `addr` on a session the peer knows by `index` (its session index,
    /// as it names it in a [`SessionUnknown`](crate::wire::Frame::SessionUnknown) hint).
    pub(crate) fn sends_on(&self, addr: SocketAddr, index: u32) -> bool {
        self.by_addr
            .get(&addr)
            .and_then(|s| s.current.as_ref())
            .is_some_and(|s| s.remote_index == index)
    }

    /// Drops the session we send on to `addr` (the peer said it does not have it), keeping any
    /// newer one a handshake is setting up.
    pub(crate) fn drop_current(&mut self, addr: SocketAddr) {
        if let Some(slots) = self.by_addr.get_mut(&addr)
            && let Some(session) = slots.current.take()
        {
            self.addr_of_index.remove(&session.local_index);
            slots.current_heard = false;
        }
    }

    /// Forgets sessions past their life (they are refused by now anyway), and addresses left
    /// with none: a responder's sessions for initiations nobody followed up (captured ones
    /// replayed from elsewhere, say) do not pile up.
    pub(crate) fn prune(&mut self, now: Instant) {
        let reject_after = self.reject_after;
        let expired = |s: &Session| now - s.established_at() >= reject_after;
        let mut gone = Vec::new();
        for slots in self.by_addr.values_mut() {
            if slots.current.as_ref().is_some_and(expired) {
                gone.extend(slots.current.take());
                slots.current_heard = false;
            }
            if slots.previous.as_ref().is_some_and(expired) {
                gone.extend(slots.previous.take());
            }
            let (old, kept): (Vec<Session>, Vec<Session>) = std::mem::take(&mut slots.pending)
                .into_iter()
                .partition(expired);
            slots.pending = kept;
            gone.extend(old);
        }
        for session in gone {
            self.addr_of_index.remove(&session.local_index);
        }
        self.by_addr.retain(|_, slots| {
            slots.current.is_some() || slots.previous.is_some() || !slots.pending.is_empty()
        });
    }

    /// Forgets the sessions of `peer` at every address it had (it left).
    pub(crate) fn forget_peer(&mut self, peer: PeerId) {
        let addrs: Vec<SocketAddr> = self
            .by_addr
            .iter()
            .filter(|(_, slots)| slots.peer == Some(peer))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in addrs {
            self.forget(addr);
        }
        self.outstanding.retain(|_, o| o.peer != peer);
    }

    /// Forgets everything about `addr`.
    pub(crate) fn forget(&mut self, addr: SocketAddr) {
        if let Some(slots) = self.by_addr.remove(&addr) {
            let sessions = [slots.current, slots.previous].into_iter().flatten();
            for session in sessions.chain(slots.pending) {
                self.addr_of_index.remove(&session.local_index);
            }
        }
        self.outstanding.retain(|_, o| o.addr != addr);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::crypto::handshake::{Credentials, PresharedKey, respond};
    use crate::crypto::noise::Keypair;

    const ALICE: PeerId = PeerId([1; 16]);
    const BOB: PeerId = PeerId([2; 16]);
    const REKEY: std::time::Duration = std::time::Duration::from_secs(120);

    fn alice_addr() -> SocketAddr {
        "127.0.0.1:40001".parse().unwrap()
    }

    fn bob_addr() -> SocketAddr {
        "127.0.0.1:40002".parse().unwrap()
    }

    /// A handshake between Alice (initiator, index `a`) and Bob (responder, index `b`) at `now`:
    /// Alice's session and Bob's.
    fn pair(a: u32, b: u32, now: Instant) -> (Session, Session) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(a) << 32 | u64::from(b));
        let psk = Credentials::Psk {
            key: PresharedKey([7; 32]),
            responder: BOB,
        };
        let mut ephemeral = || Keypair::generate(&mut rng).unwrap();
        let (initiation, init) = Initiation::start(ALICE, &psk, a, 1, ephemeral()).unwrap();
        let accepted = respond(&init, &psk, b, now, ephemeral()).unwrap();
        let alice = initiation.finish(&accepted.response, now).unwrap();
        (alice, accepted.session)
    }

    fn sealed(sessions: &mut Sessions, to: SocketAddr, body: &[u8], now: Instant) -> Vec<u8> {
        let mut packet = Vec::new();
        assert!(
            sessions.seal(to, &[body], &mut packet, now),
            "no session to seal with"
        );
        packet
    }

    fn index_of(packet: &[u8]) -> u32 {
        crate::wire::Header::new_checked(packet)
            .unwrap()
            .session_index()
    }

    /// Opens `packet` at `sessions` and returns its sender and body.
    fn open(sessions: &mut Sessions, mut packet: Vec<u8>, now: Instant) -> (PeerId, Vec<u8>) {
        let index = index_of(&packet);
        let (peer, range) = sessions.open(index, &mut packet, now).unwrap();
        (peer, packet[range].to_vec())
    }

    #[test]
    fn sessions_nobody_used_are_pruned_with_their_address() {
        let mut bob = Sessions::new(REKEY);
        let (_, pending) = pair(1, 2, Instant::ZERO);
        bob.install(alice_addr(), ALICE, pending, false);
        bob.prune(Instant::ZERO + REKEY);
        assert_eq!(bob.by_addr.len(), 1, "still young");
        bob.prune(Instant::ZERO + REKEY * 3 / 2);
        assert!(bob.by_addr.is_empty() && bob.addr_of_index.is_empty());
    }

    #[test]
    fn the_responder_sends_only_once_the_initiator_has_used_the_session() {
        let (mut alice, mut bob) = (Sessions::new(REKEY), Sessions::new(REKEY));
        let (a, b) = pair(1, 2, Instant::ZERO);
        alice.install(bob_addr(), BOB, a, true);
        bob.install(alice_addr(), ALICE, b, false);
        let mut out = Vec::new();
        assert!(
            !bob.seal(alice_addr(), &[b"too early"], &mut out, Instant::ZERO),
            "key confirmation: Alice may not have the response yet"
        );
        let packet = sealed(&mut alice, bob_addr(), b"hello", Instant::ZERO);
        assert_eq!(
            open(&mut bob, packet, Instant::ZERO),
            (ALICE, b"hello".to_vec())
        );
        let reply = sealed(&mut bob, alice_addr(), b"back", Instant::ZERO);
        assert_eq!(
            open(&mut alice, reply, Instant::ZERO),
            (BOB, b"back".to_vec())
        );
    }

    #[test]
    fn a_lost_response_strands_nothing() {
        let mut bob = Sessions::new(REKEY);
        // Bob answered twice; Alice only got the second answer.
        let (_, first) = pair(1, 2, Instant::ZERO);
        let (mut second_alice, second) = pair(3, 4, Instant::ZERO);
        bob.install(alice_addr(), ALICE, first, false);
        bob.install(alice_addr(), ALICE, second, false);
        let mut packet = Vec::new();
        second_alice.seal(b"on the second", &mut packet).unwrap();
        assert_eq!(
            open(&mut bob, packet, Instant::ZERO),
            (ALICE, b"on the second".to_vec())
        );
        // The first will never be used: it is gone, and Bob sends on the second.
        let mut stale = Vec::new();
        let (mut first_alice, _) = pair(1, 2, Instant::ZERO);
        first_alice.seal(b"x", &mut stale).unwrap();
        let index = index_of(&stale);
        assert_eq!(
            bob.open(index, &mut stale, Instant::ZERO),
            Err(OpenError::UnknownSender)
        );
        assert!(bob.seal(alice_addr(), &[b"reply"], &mut Vec::new(), Instant::ZERO));
    }

    #[test]
    fn the_previous_session_opens_while_its_packets_drain() {
        let (mut alice, mut bob) = (Sessions::new(REKEY), Sessions::new(REKEY));
        let (a1, b1) = pair(1, 2, Instant::ZERO);
        alice.install(bob_addr(), BOB, a1, true);
        bob.install(alice_addr(), ALICE, b1, false);
        let hello = sealed(&mut alice, bob_addr(), b"hello", Instant::ZERO);
        open(&mut bob, hello, Instant::ZERO);
        // Bob sends on the first session; Alice rekeys before that packet arrives.
        let in_flight = sealed(&mut bob, alice_addr(), b"in flight", Instant::ZERO);
        open(&mut alice, in_flight.clone(), Instant::ZERO);
        let later = Instant::ZERO + REKEY;
        let (a2, b2) = pair(5, 6, later);
        alice.install(bob_addr(), BOB, a2, true);
        bob.install(alice_addr(), ALICE, b2, false);
        let still = sealed(&mut bob, alice_addr(), b"still the first", later);
        assert_eq!(
            open(&mut alice, still, later),
            (BOB, b"still the first".to_vec())
        );
        // Alice sends on the new one, which promotes it at Bob.
        let fresh = sealed(&mut alice, bob_addr(), b"new", later);
        assert_eq!(index_of(&fresh), 6);
        assert_eq!(open(&mut bob, fresh, later), (ALICE, b"new".to_vec()));
    }

    #[test]
    fn an_expired_session_neither_seals_nor_opens() {
        let (mut alice, mut bob) = (Sessions::new(REKEY), Sessions::new(REKEY));
        let (a, b) = pair(1, 2, Instant::ZERO);
        alice.install(bob_addr(), BOB, a, true);
        bob.install(alice_addr(), ALICE, b, false);
        let hello = sealed(&mut alice, bob_addr(), b"hello", Instant::ZERO);
        open(&mut bob, hello, Instant::ZERO);
        let mut old = sealed(&mut alice, bob_addr(), b"old", Instant::ZERO);
        // 1.5 x the rekey interval: rejected both ways.
        let late = Instant::ZERO + REKEY * 3 / 2;
        assert!(!alice.seal(bob_addr(), &[b"late"], &mut Vec::new(), late));
        let index = index_of(&old);
        assert_eq!(bob.open(index, &mut old, late), Err(OpenError::Expired));
    }

    #[test]
    fn forgetting_a_peer_forgets_its_sessions_at_every_address() {
        let mut bob = Sessions::new(REKEY);
        let (mut a, b) = pair(1, 2, Instant::ZERO);
        bob.install(alice_addr(), ALICE, b, false);
        bob.forget_peer(ALICE);
        let mut packet = Vec::new();
        a.seal(b"gone", &mut packet).unwrap();
        let index = index_of(&packet);
        assert_eq!(
            bob.open(index, &mut packet, Instant::ZERO),
            Err(OpenError::UnknownSender)
        );
        assert!(bob.current_since(alice_addr()).is_none());
    }
}
