//! Anti-amplification: what may be sent to an address that has not proven it is there.
//!
//! A datagram's source address can be forged, so anything sent in reply may land on a third
//! party. Like QUIC before it validates an address, we send an address at most three times the
//! bytes that came from it, until it proves it receives what we send: it answers a ping of ours
//! (the ping's id has 24 random bits, so it cannot be answered without being received). Bytes
//! sent to an address on another peer's word (an introduction) are charged to that peer's
//! budget instead, so no sender can draw more than three times what it sent, toward anyone.
//! The group, and seeds the user configured, are the user's choice and not limited.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::FastHash;
use crate::time::{Duration, Instant};

/// What an unverified address may draw, per byte that came from it.
pub(super) const AMPLIFICATION_FACTOR: u64 = 3;

/// Challenges remembered per address: an answer to an older one does not verify.
const CHALLENGES: usize = 4;

/// An address nothing came from or was sent to for this long is forgotten (a verified one must
/// prove itself again).
const FORGET_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct Budget {
    received: u64,
    /// Credit given on another peer's word.
    granted: u64,
    /// Sent while unverified, and credit granted to others on its word.
    charged: u64,
    verified: bool,
    /// The last ping ids sent to it.
    challenges: [Option<u64>; CHALLENGES],
    next_challenge: usize,
    last: Option<Instant>,
}

impl Budget {
    fn spare(&self) -> u64 {
        (AMPLIFICATION_FACTOR * self.received + self.granted).saturating_sub(self.charged)
    }
}

/// The budget of each address heard from or sent to, at most `max_addresses` of them.
#[derive(Debug)]
pub(super) struct Budgets {
    addresses: HashMap<SocketAddr, Budget, FastHash>,
    max_addresses: usize,
}

impl Budgets {
    pub(super) fn new(max_addresses: usize, hasher: FastHash) -> Budgets {
        Budgets {
            addresses: HashMap::with_hasher(hasher),
            max_addresses,
        }
    }

    /// The budget of `addr`, made if there is room (forgetting an unverified address if
    /// needed; if every address held is verified, `None`: nothing is sent to a new one).
    fn entry(&mut self, now: Instant, addr: SocketAddr) -> Option<&mut Budget> {
        if !self.addresses.contains_key(&addr) && self.addresses.len() >= self.max_addresses {
            let unverified = self
                .addresses
                .iter()
                .find(|(_, b)| !b.verified)
                .map(|(a, _)| *a)?;
            self.addresses.remove(&unverified);
        }
        let budget = self.addresses.entry(addr).or_default();
        budget.last = Some(now);
        Some(budget)
    }

    /// `len` bytes came from `addr`.
    pub(super) fn received(&mut self, now: Instant, addr: SocketAddr, len: usize) {
        if let Some(budget) = self.entry(now, addr) {
            budget.received = budget.received.saturating_add(len as u64);
        }
    }

    /// Whether `addr` answered one of our pings.
    #[cfg(test)]
    fn is_verified(&self, addr: SocketAddr) -> bool {
        self.addresses.get(&addr).is_some_and(|b| b.verified)
    }

    /// Ping `ping_id` is sent to `addr`.
    pub(super) fn challenged(&mut self, now: Instant, addr: SocketAddr, ping_id: u64) {
        if let Some(budget) = self.entry(now, addr) {
            budget.challenges[budget.next_challenge] = Some(ping_id);
            budget.next_challenge = (budget.next_challenge + 1) % CHALLENGES;
        }
    }

    /// An answer to ping `ping_id` came from `addr`: whether it is one of the last pings sent
    /// there (then `addr` is verified).
    pub(super) fn answered(&mut self, addr: SocketAddr, ping_id: u64) -> bool {
        let Some(budget) = self.addresses.get_mut(&addr) else {
            return false;
        };
        if budget.challenges.contains(&Some(ping_id)) {
            budget.verified = true;
            return true;
        }
        false
    }

    /// Whether `len` bytes may go to `addr` now, charging them if it is not verified.
    pub(super) fn try_send(&mut self, now: Instant, addr: SocketAddr, len: usize) -> bool {
        let Some(budget) = self.entry(now, addr) else {
            return false;
        };
        if budget.verified {
            return true;
        }
        let len = len as u64;
        if budget.spare() < len {
            return false;
        }
        budget.charged += len;
        true
    }

    /// `sponsor` told us of `addr`: lets `len` bytes go there, charged to `sponsor`. Returns
    /// whether it could afford them.
    pub(super) fn grant(
        &mut self,
        now: Instant,
        sponsor: SocketAddr,
        addr: SocketAddr,
        len: usize,
    ) -> bool {
        let len = len as u64;
        match self.addresses.get_mut(&sponsor) {
            Some(budget) if budget.spare() >= len => budget.charged += len,
            _ => return false,
        }
        match self.entry(now, addr) {
            Some(budget) => {
                budget.granted += len;
                true
            }
            None => false,
        }
    }

    /// Forgets addresses silent both ways for a while.
    pub(super) fn prune(&mut self, now: Instant) {
        self.addresses.retain(|_, b| {
            b.last
                .is_some_and(|last| now.saturating_duration_since(last) < FORGET_AFTER)
        });
    }

    /// Addresses held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.addresses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn budgets() -> Budgets {
        Budgets::new(4, FastHash::with_seed(1))
    }

    #[test]
    fn an_unverified_address_draws_at_most_three_times_what_it_sent() {
        let (mut b, now) = (budgets(), Instant::ZERO);
        assert!(!b.try_send(now, addr(1), 1), "nothing came from it");
        b.received(now, addr(1), 100);
        assert!(b.try_send(now, addr(1), 250));
        assert!(!b.try_send(now, addr(1), 51));
        assert!(b.try_send(now, addr(1), 50));
    }

    #[test]
    fn only_an_answer_to_a_recent_ping_sent_there_verifies() {
        let (mut b, now) = (budgets(), Instant::ZERO);
        b.challenged(now, addr(1), 7);
        assert!(!b.answered(addr(2), 7), "answered from elsewhere");
        assert!(!b.answered(addr(1), 8), "a ping never sent");
        for id in 10..14 {
            b.challenged(now, addr(1), id);
        }
        assert!(!b.answered(addr(1), 7), "too old");
        assert!(b.answered(addr(1), 13));
        assert!(b.try_send(now, addr(1), 1 << 20));
    }

    #[test]
    fn an_introduction_is_paid_by_whoever_made_it() {
        let (mut b, now) = (budgets(), Instant::ZERO);
        b.received(now, addr(1), 100);
        assert!(b.grant(now, addr(1), addr(2), 200));
        assert!(!b.grant(now, addr(1), addr(3), 200), "its credit is spent");
        assert!(!b.try_send(now, addr(1), 101));
        assert!(b.try_send(now, addr(2), 200));
        assert!(!b.try_send(now, addr(2), 1));
    }

    #[test]
    fn the_table_is_bounded_and_keeps_verified_addresses() {
        let (mut b, now) = (budgets(), Instant::ZERO);
        b.challenged(now, addr(1), 1);
        assert!(b.answered(addr(1), 1));
        for port in 2..100 {
            b.received(now, addr(port), 10);
        }
        assert_eq!(b.len(), 4);
        assert!(b.is_verified(addr(1)));
        b.prune(now + FORGET_AFTER);
        assert_eq!(b.len(), 0);
    }
}
