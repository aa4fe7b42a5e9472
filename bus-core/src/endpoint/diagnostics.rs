//! Traffic that says a configuration is wrong: packets from an address that keep failing
//! authentication, plaintext reaching an encrypted bus, encrypted packets reaching an insecure
//! one. Each is dropped and counted like any bad packet; this notes them per source address so
//! that the driver can say, at most once per [`REPORT_EVERY`] for an address and a cause, what
//! is likely wrong ([`Event::Misconfigured`](super::Event::Misconfigured)), instead of two
//! peers with different keys simply never seeing each other.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::FastHash;
use crate::time::{Duration, Instant};

/// What the packets from an address say is wrong.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Misconfiguration {
    /// They fail authentication.
    AuthenticationFails,
    /// They are plaintext, and this bus is encrypted.
    Plaintext,
    /// They are encrypted, and this bus is insecure.
    Encrypted,
}

impl Misconfiguration {
    /// The likely cause, for a person to read.
    pub fn likely_cause(self) -> &'static str {
        match self {
            Misconfiguration::AuthenticationFails => {
                "is it using another cluster key, or is it not trusted (public-key mode)?"
            }
            Misconfiguration::Plaintext => {
                "it runs insecure (plaintext) while this bus is encrypted: give it the cluster's key"
            }
            Misconfiguration::Encrypted => {
                "it is encrypted while this bus runs insecure: give this bus the cluster's key"
            }
        }
    }
}

/// An address and cause is reported at most this often.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Addresses and causes noted at most: a flood of forged sources fills it, and is then noted no
/// further (it is counted in the drops all the same).
const MAX_NOTED: usize = 1024;

#[derive(Debug)]
struct Noted {
    reported_at: Option<Instant>,
    /// Packets since the last report.
    packets: u64,
    last_at: Instant,
}

#[derive(Debug)]
pub(super) struct Diagnostics {
    noted: HashMap<(SocketAddr, Misconfiguration), Noted, FastHash>,
}

impl Diagnostics {
    pub(super) fn new(hasher: FastHash) -> Diagnostics {
        Diagnostics {
            noted: HashMap::with_hasher(hasher),
        }
    }

    /// A packet from `from` showed `what`. Returns the packets to report now (this one and
    /// those since the last report), if it is time to report.
    pub(super) fn note(
        &mut self,
        now: Instant,
        from: SocketAddr,
        what: Misconfiguration,
    ) -> Option<u64> {
        let key = (from, what);
        if !self.noted.contains_key(&key) && self.noted.len() >= MAX_NOTED {
            return None;
        }
        let noted = self.noted.entry(key).or_insert(Noted {
            reported_at: None,
            packets: 0,
            last_at: now,
        });
        noted.packets += 1;
        noted.last_at = now;
        let due = noted
            .reported_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        if !due {
            return None;
        }
        noted.reported_at = Some(now);
        Some(std::mem::take(&mut noted.packets))
    }

    /// Forgets the addresses quiet for a report interval.
    pub(super) fn prune(&mut self, now: Instant) {
        self.noted
            .retain(|_, n| now.saturating_duration_since(n.last_at) < REPORT_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use crate::crypto::handshake::PresharedKey;
    use crate::endpoint::sim::SimEndpoint;
    use crate::endpoint::{EndpointConfig, Security};
    use crate::sim::{LinkConfig, NodeId, Simulation};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_address_and_cause_is_reported_once_per_interval_with_the_packets_since() {
        let mut d = Diagnostics::new(FastHash::default());
        let t0 = Instant::ZERO;
        let what = Misconfiguration::AuthenticationFails;
        assert_eq!(d.note(t0, addr(1), what), Some(1), "the first at once");
        for i in 1..50 {
            assert_eq!(
                d.note(t0 + Duration::from_millis(i * 100), addr(1), what),
                None
            );
        }
        assert_eq!(
            d.note(
                t0 + Duration::from_millis(5_000),
                addr(1),
                Misconfiguration::Plaintext
            ),
            Some(1),
            "another cause is its own"
        );
        assert_eq!(d.note(t0 + REPORT_EVERY, addr(1), what), Some(50));
        d.prune(t0 + REPORT_EVERY * 3);
        assert_eq!(
            d.note(t0 + REPORT_EVERY * 3, addr(1), what),
            Some(1),
            "forgotten"
        );
    }

    #[test]
    fn a_flood_of_sources_is_noted_within_the_bound() {
        let mut d = Diagnostics::new(FastHash::default());
        let what = Misconfiguration::Plaintext;
        for port in 0..(MAX_NOTED as u16 + 100) {
            d.note(Instant::ZERO, addr(port), what);
        }
        assert_eq!(d.noted.len(), MAX_NOTED);
    }

    fn psk(key: u8) -> Security {
        Security::Psk {
            cluster: Some(PresharedKey([key; 32])),
            per_peer: std::collections::HashMap::new(),
        }
    }

    /// Two endpoints with different cluster keys for 30 s: each reports the other's address
    /// as failing authentication, at most once per interval, and never becomes its peer.
    #[test]
    fn endpoints_with_different_keys_report_each_other_a_few_times() {
        let nodes = (0..2u8)
            .map(|node| {
                let config = EndpointConfig::new(PeerId([node + 1; 16]), psk(node + 7));
                SimEndpoint::new(NodeId(node as usize), config, [node + 60; 32])
            })
            .collect();
        let mut sim = Simulation::new(5, LinkConfig::default(), nodes);
        sim.drive_until(Instant::from_millis(30_000));
        for node in &sim.nodes {
            let reports = &node.misconfigured;
            assert!(!reports.is_empty() && reports.len() <= 4, "{reports:?}");
            assert!(
                reports
                    .iter()
                    .all(|(_, what, _)| *what == Misconfiguration::AuthenticationFails)
            );
            assert_eq!(node.endpoint.peers().count(), 0);
        }
    }
}
