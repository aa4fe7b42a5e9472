//! The handshake policy: who initiates and when, answering initiations (with cookies under
//! load), and installing the sessions that result. The Diffie-Hellman work itself is handed to
//! the driver as a [`HandshakeJob`], so it can run off the driver's thread; its result comes
//! back through [`Endpoint::handle_handshake`].

use std::net::SocketAddr;

use bytes::Bytes;
use rand::RngCore;

use super::Endpoint;
use super::sessions::Outstanding;
use crate::PeerId;
use crate::crypto::CryptoError;
use crate::crypto::handshake::{
    self, Accepted, CookieSecret, Credentials, HandshakeError, INIT_LEN, Initiation,
};
use crate::crypto::noise::Keypair;
use crate::metrics::DropReason;
use crate::time::{Duration, Instant};

/// Handshakes computed at once; more are dropped and counted (a flood cannot queue work).
const MAX_HANDSHAKES_IN_FLIGHT: usize = 16;

/// How long an initiation may wait for its response before another is sent.
const HANDSHAKE_PATIENCE: Duration = Duration::from_secs(1);

/// Which handshake a job or its result belongs to: enough for the endpoint to account for a
/// job whose computation never came back (see [`HandshakeDone::lost`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct HandshakeTicket(Ticket);

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Ticket {
    /// Answering an initiation from this address.
    Respond { from: SocketAddr },
    /// Initiating with this peer at this address, under this session index.
    Initiate {
        peer: PeerId,
        addr: SocketAddr,
        index: u32,
    },
}

#[derive(Debug)]
enum Work {
    Respond {
        from: SocketAddr,
        initiation: Bytes,
        credentials: Credentials,
        local_index: u32,
        now: Instant,
        ephemeral: Keypair,
    },
    Initiate {
        peer: PeerId,
        addr: SocketAddr,
        index: u32,
        client: PeerId,
        credentials: Credentials,
        timestamp: u64,
        ephemeral: Keypair,
    },
}

/// A handshake computation the endpoint asks for: pure, deterministic, and `Send`, so the
/// driver may run it on another thread.
#[derive(Debug)]
pub struct HandshakeJob(Work);

#[derive(Debug)]
enum Outcome {
    Responded(Result<Accepted, HandshakeError>),
    Initiated(Result<(Initiation, [u8; INIT_LEN]), CryptoError>),
    Lost,
}

/// The result of a [`HandshakeJob`], for [`Endpoint::handle_handshake`].
#[derive(Debug)]
pub struct HandshakeDone {
    ticket: HandshakeTicket,
    outcome: Outcome,
}

impl HandshakeJob {
    /// Which handshake this is (keep it to report a computation that died).
    pub fn ticket(&self) -> HandshakeTicket {
        HandshakeTicket(match &self.0 {
            Work::Respond { from, .. } => Ticket::Respond { from: *from },
            Work::Initiate {
                peer, addr, index, ..
            } => Ticket::Initiate {
                peer: *peer,
                addr: *addr,
                index: *index,
            },
        })
    }

    /// Does the work: one or two Diffie-Hellman operations.
    pub fn run(self) -> HandshakeDone {
        let ticket = self.ticket();
        let outcome = match self.0 {
            Work::Respond {
                initiation,
                credentials,
                local_index,
                now,
                ephemeral,
                ..
            } => Outcome::Responded(handshake::respond(
                &initiation,
                &credentials,
                local_index,
                now,
                ephemeral,
            )),
            Work::Initiate {
                index,
                client,
                credentials,
                timestamp,
                ephemeral,
                ..
            } => Outcome::Initiated(Initiation::start(
                client,
                &credentials,
                index,
                timestamp,
                ephemeral,
            )),
        };
        HandshakeDone { ticket, outcome }
    }
}

impl HandshakeDone {
    /// The result of a job whose computation never finished (its thread panicked).
    pub fn lost(ticket: HandshakeTicket) -> HandshakeDone {
        HandshakeDone {
            ticket,
            outcome: Outcome::Lost,
        }
    }
}

impl Endpoint {
    /// A handshake computation finished: installs the session it made and sends what it
    /// produced.
    pub fn handle_handshake(&mut self, now: Instant, done: HandshakeDone) {
        match (done.ticket.0, done.outcome) {
            (Ticket::Respond { from }, outcome) => {
                self.handshakes_in_flight = self.handshakes_in_flight.saturating_sub(1);
                let accepted = match outcome {
                    Outcome::Responded(Ok(accepted)) => accepted,
                    Outcome::Responded(Err(e)) => {
                        return self.metrics.dropped(DropReason::of_handshake_error(e));
                    }
                    _ => return self.metrics.dropped(DropReason::AuthFailure),
                };
                let last = self.sessions.last_timestamp.get(&accepted.client).copied();
                if last.is_some_and(|last| accepted.timestamp <= last) {
                    // A replayed (or reordered, older) initiation.
                    return self.metrics.dropped(DropReason::StaleTimestamp);
                }
                self.sessions
                    .last_timestamp
                    .insert(accepted.client, accepted.timestamp);
                self.sessions
                    .install(from, accepted.client, accepted.session, false);
                self.send_raw(from, accepted.response.to_vec());
            }
            (Ticket::Initiate { peer, addr, index }, outcome) => {
                self.initiations_starting.remove(&addr);
                let Outcome::Initiated(Ok((initiation, packet))) = outcome else {
                    // Nothing was sent: the next beacon from the peer tries again.
                    return;
                };
                self.sessions.outstanding.insert(
                    index,
                    Outstanding {
                        initiation,
                        peer,
                        addr,
                        sent_at: now,
                    },
                );
                self.send_raw(addr, packet.to_vec());
            }
        }
    }

    /// Answers a handshake initiation: checks it cheaply (mac1) and hands the expensive part to
    /// the driver; at most `MAX_HANDSHAKES_IN_FLIGHT` at once, and under load only for
    /// initiators that proved their address with a cookie.
    pub(super) fn handle_initiation(&mut self, now: Instant, from: SocketAddr, datagram: &Bytes) {
        let Ok(header) = handshake::peek_init(datagram) else {
            return self.metrics.dropped(DropReason::Malformed);
        };
        let local = self.config.local_id;
        let Some(credentials) = self
            .config
            .security
            .credentials(local, header.client, local)
        else {
            return self.metrics.dropped(DropReason::UnknownPeer);
        };
        // mac1 costs one keyed hash: junk stops here, before it can take a handshake slot.
        if let Err(e) = handshake::check_initiation(datagram, &credentials) {
            let reason = DropReason::of_handshake_error(e);
            if reason == DropReason::AuthFailure {
                self.diagnose(now, from, super::Misconfiguration::AuthenticationFails);
            }
            return self.metrics.dropped(reason);
        }
        if self.handshakes_in_flight >= self.config.handshake_load_threshold
            && !self.has_cookie(now, datagram, from)
        {
            // Under load: no work for an initiator that has not proved its address.
            let reply = self
                .cookies
                .as_ref()
                .and_then(|c| c.reply(datagram, from, &credentials, &mut self.rng).ok());
            if let Some(reply) = reply {
                self.send_raw(from, reply.to_vec());
            }
            return self.metrics.dropped(DropReason::CookieSent);
        }
        if self.handshakes_in_flight >= MAX_HANDSHAKES_IN_FLIGHT {
            return self.metrics.dropped(DropReason::RateLimited);
        }
        let Ok(ephemeral) = Keypair::generate(&mut self.rng) else {
            return self.metrics.dropped(DropReason::AuthFailure);
        };
        self.handshakes_in_flight += 1;
        let job = HandshakeJob(Work::Respond {
            from,
            initiation: datagram.clone(),
            credentials,
            local_index: self.rng.next_u32(),
            now,
            ephemeral,
        });
        self.events.push_back(super::Event::Handshake(job));
    }

    /// Whether an initiation carries a valid mac2 for its source address (making the cookie
    /// secret, and rotating it, as needed).
    fn has_cookie(&mut self, now: Instant, initiation: &[u8], from: SocketAddr) -> bool {
        let rng = &mut self.rng;
        let secret = self
            .cookies
            .get_or_insert_with(|| CookieSecret::new(now, rng));
        secret.rotate_if_due(now, &mut self.rng);
        secret.check_mac2(initiation, from)
    }

    /// A responder under load sent a cookie: send the initiation again with it.
    pub(super) fn handle_cookie(&mut self, now: Instant, datagram: &[u8]) {
        let Some(index) = handshake::response_index(datagram) else {
            return self.metrics.dropped(DropReason::Malformed);
        };
        let Some(outstanding) = self.sessions.outstanding.get_mut(&index) else {
            return self.metrics.dropped(DropReason::UnknownPeer);
        };
        match outstanding.initiation.accept_cookie(datagram) {
            Ok(packet) => {
                outstanding.sent_at = now;
                let addr = outstanding.addr;
                self.send_raw(addr, packet.to_vec());
            }
            Err(e) => self.metrics.dropped(DropReason::of_handshake_error(e)),
        }
    }

    pub(super) fn handle_response(&mut self, now: Instant, datagram: &[u8]) {
        let Some(index) = handshake::response_index(datagram) else {
            return self.metrics.dropped(DropReason::Malformed);
        };
        let Some(outstanding) = self.sessions.outstanding.get(&index) else {
            return self.metrics.dropped(DropReason::UnknownPeer);
        };
        // The initiation waits on until a response verifies: a forged one (the index is in
        // clear) must not end it.
        match outstanding.initiation.finish(datagram, now) {
            Ok(session) => {
                let (addr, peer) = (outstanding.addr, outstanding.peer);
                self.sessions.outstanding.remove(&index);
                self.sessions.install(addr, peer, session, true);
            }
            Err(e) => self.metrics.dropped(DropReason::of_handshake_error(e)),
        }
    }

    /// Starts a handshake with `peer` if we are the side that initiates (the lower id), the
    /// bus is in a secure mode that trusts it, and there is no session younger than the rekey
    /// interval nor an initiation waiting.
    pub(super) fn maybe_initiate(&mut self, now: Instant, peer: PeerId, addr: SocketAddr) {
        let local = self.config.local_id;
        if local >= peer {
            return;
        }
        let Some(credentials) = self.config.security.credentials(local, local, peer) else {
            return;
        };
        let fresh = self
            .sessions
            .current_since(addr)
            .is_some_and(|since| now - since < self.config.rekey_after);
        if fresh
            || self.sessions.initiating(addr, now, HANDSHAKE_PATIENCE)
            || !self.initiations_starting.insert(addr)
        {
            return;
        }
        let Ok(ephemeral) = Keypair::generate(&mut self.rng) else {
            self.initiations_starting.remove(&addr);
            return;
        };
        self.last_initiation = self.wall_at(now).as_nanos().max(self.last_initiation + 1);
        let job = HandshakeJob(Work::Initiate {
            peer,
            addr,
            index: self.rng.next_u32(),
            client: local,
            credentials,
            timestamp: self.last_initiation,
            ephemeral,
        });
        self.events.push_back(super::Event::Handshake(job));
    }
}
