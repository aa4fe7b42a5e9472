//! Topic descriptions: peers tell each other the names and schema fingerprints of the topics
//! their beacons list by id, so that tools name topics and untyped publishers send the
//! fingerprint subscribers expect (see [`Frame::Topics`]).

use std::net::SocketAddr;

use super::{Endpoint, Target};
use crate::PeerId;
use crate::metrics::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::Frame;

/// How often a peer is asked for descriptions it has not given, or sent ours when it asks:
/// a lost answer is asked for again; a peer asking in a loop gets one answer a period.
const EXCHANGE_PERIOD: Duration = Duration::from_secs(1);

/// When descriptions last went each way with one peer.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct DescriptionsExchanged {
    /// When we last asked, and a hash of the topics it announced then.
    asked: Option<(Instant, u64)>,
    /// Whether descriptions came since we last asked: what it left undescribed then, it does
    /// not describe (subscribed by id alone), and is not asked for again.
    replied: bool,
    /// When we last answered its question.
    answered: Option<Instant>,
}

fn topics_hash(topics: &[crate::TopicId]) -> u64 {
    let ids: Vec<u8> = topics.iter().flat_map(|t| t.0.to_le_bytes()).collect();
    crate::fnv1a64(&ids)
}

fn due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= EXCHANGE_PERIOD)
}

impl Endpoint {
    /// After a beacon of `peer`: if it takes topics it has not described, ask (once a period,
    /// or at once if its topics changed). Only a confirmed peer, whose address answered us, is
    /// sent to.
    pub(super) fn ask_for_descriptions(&mut self, now: Instant, peer: PeerId) {
        if self.confirmed(peer) && self.should_ask(now, peer) {
            self.exchange_descriptions(now, peer, true);
        }
    }

    /// `peer` answered us for the first time: ours go to it at once, whether or not it asked
    /// (a question it sent before we could answer it was not answered), with a question if it
    /// takes topics it has not described.
    pub(super) fn descriptions_on_confirming(&mut self, now: Instant, peer: PeerId) {
        let asking = self.should_ask(now, peer);
        if asking || !self.local_descriptions.is_empty() {
            self.exchange_descriptions(now, peer, asking);
        }
    }

    /// Whether to ask `peer` for descriptions now: it takes topics it has not described, and
    /// we have not asked since its topics last changed, or asked a period ago and had no reply.
    fn should_ask(&self, now: Instant, peer: PeerId) -> bool {
        let Some(info) = self.table.get(&peer).filter(|info| info.undescribed()) else {
            return false;
        };
        let exchanged = self
            .descriptions_exchanged
            .get(&peer)
            .copied()
            .unwrap_or_default();
        match exchanged.asked {
            None => true,
            Some((_, asked_for)) if asked_for != topics_hash(&info.topics) => true,
            Some((at, _)) => !exchanged.replied && due(Some(at), now),
        }
    }

    /// Sends `peer` our descriptions, asking for its own if `asking`.
    fn exchange_descriptions(&mut self, now: Instant, peer: PeerId, asking: bool) {
        let Some(info) = self.table.get(&peer) else {
            return;
        };
        let (addr, topics) = (info.addr, topics_hash(&info.topics));
        if asking {
            let exchanged = self.descriptions_exchanged.entry(peer).or_default();
            exchanged.asked = Some((now, topics));
            exchanged.replied = false;
        }
        self.send_descriptions(addr, asking);
    }

    /// `peer` described its topics, and may ask for ours.
    pub(super) fn on_descriptions(
        &mut self,
        now: Instant,
        peer: PeerId,
        asking: bool,
        topics: &[(u64, &str)],
    ) {
        let Some(addr) = self.table.get(&peer).map(|info| info.addr) else {
            // Only a peer whose beacon we took is answered: no one else learns what we take,
            // and no spoofed address is sent to.
            self.metrics.dropped(DropReason::TopicUnannounced);
            return;
        };
        for _ in 0..self.table.describe(peer, topics) {
            self.metrics.dropped(DropReason::TopicUnannounced);
        }
        self.descriptions_exchanged.entry(peer).or_default().replied = true;
        if !asking || !self.confirmed(peer) {
            return;
        }
        let exchanged = self.descriptions_exchanged.entry(peer).or_default();
        if due(exchanged.answered, now) {
            exchanged.answered = Some(now);
            self.send_descriptions(addr, false);
        }
    }

    /// Our descriptions changed: every confirmed peer is told.
    pub(super) fn send_descriptions_to_all(&mut self) {
        let addrs: Vec<SocketAddr> = self
            .table
            .peers()
            .filter(|p| self.confirmed(p.id))
            .map(|p| p.addr)
            .collect();
        for addr in addrs {
            self.send_descriptions(addr, false);
        }
    }

    /// Our descriptions to `addr`, in as many frames as they take (at least one, to carry the
    /// question when `asking`).
    fn send_descriptions(&mut self, addr: SocketAddr, asking: bool) {
        let all: Vec<(u64, &str)> = self
            .local_descriptions
            .values()
            .map(|d| (d.fingerprint.unwrap_or(0), d.name.as_str()))
            .collect();
        let budget = self.outbox.max_body();
        let mut frames = Vec::new();
        let mut start = 0;
        loop {
            let mut end = start;
            // The frame's type, flags and a count of up to two bytes.
            let mut len = 4;
            while let Some((_, name)) = all.get(end) {
                let entry = 8 + crate::wire::varint_len(name.len() as u64) + name.len();
                if len + entry > budget && end > start {
                    break;
                }
                len += entry;
                end += 1;
            }
            frames.push(Frame::Topics {
                asking,
                topics: all[start..end].to_vec(),
            });
            start = end;
            if start >= all.len() {
                break;
            }
        }
        let mut failed = false;
        for frame in &frames {
            failed |= self.outbox.push(&Target::Unicast(addr), frame).is_err();
        }
        for frame in &frames {
            self.metrics.frame_out(frame.frame_type());
        }
        if failed {
            self.metrics.dropped(DropReason::SendFailed);
        }
        self.mark_busy();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::sim::SimEndpoint;
    use super::super::{EndpointConfig, Security};
    use crate::crypto::handshake::PresharedKey;
    use crate::discovery::TopicDescription;
    use crate::sim::{LinkConfig, NodeId, Simulation};
    use crate::time::{Duration, Instant};
    use crate::{PeerId, TopicId};

    fn peer_of(node: usize) -> PeerId {
        PeerId([u8::try_from(node + 1).unwrap(); 16])
    }

    /// Three peers: 0 takes a typed topic, 1 the same untyped and another by id alone, 2 none.
    fn cluster(security: &Security, link: LinkConfig) -> Simulation<SimEndpoint> {
        let nodes = (0..3)
            .map(|node| {
                // Membership does not flap at 30% loss: a peer forgotten is described anew
                // once it is confirmed again, which would hide what these tests look at.
                let config = EndpointConfig {
                    liveness_factor: 1000,
                    ..EndpointConfig::new(peer_of(node), security.clone())
                };
                let mut sim = SimEndpoint::new(NodeId(node), config, [node as u8 + 90; 32]);
                match node {
                    0 => sim.endpoint.subscribe_named("plant/temperature", Some(42)),
                    1 => {
                        sim.endpoint.subscribe_named("plant/temperature", None);
                        sim.endpoint.subscribe(TopicId::from_name("plant/secret"));
                    }
                    _ => {}
                }
                sim
            })
            .collect();
        Simulation::new(5, link, nodes)
    }

    fn described(sim: &Simulation<SimEndpoint>, at: usize, of: usize) -> Vec<TopicDescription> {
        sim.nodes[at]
            .endpoint
            .peer(peer_of(of))
            .map(|(info, _)| info.described.clone())
            .unwrap_or_default()
    }

    /// Every peer learns the names and fingerprints others give their topics, in each security
    /// mode and at 30% loss; a topic taken by id alone stays undescribed, and is not asked
    /// for again and again.
    #[test]
    fn peers_learn_the_names_and_fingerprints_of_each_others_topics() {
        let psk = Security::Psk {
            cluster: Some(PresharedKey([0x33; 32])),
            per_peer: HashMap::new(),
        };
        let lossy = LinkConfig {
            loss: 0.3,
            ..LinkConfig::default()
        };
        for security in [Security::Insecure, psk] {
            for link in [LinkConfig::default(), lossy] {
                let mut sim = cluster(&security, link);
                // Time for every peer to confirm every other at 30% loss, then to ask.
                sim.drive_until(Instant::from_millis(20_000));
                let typed = TopicDescription::new("plant/temperature", Some(42));
                let untyped = TopicDescription::new("plant/temperature", None);
                for at in [1, 2] {
                    assert_eq!(
                        described(&sim, at, 0),
                        std::slice::from_ref(&typed),
                        "{security:?} {link:?}"
                    );
                }
                for at in [0, 2] {
                    assert_eq!(
                        described(&sim, at, 1),
                        std::slice::from_ref(&untyped),
                        "{security:?} {link:?}"
                    );
                    let info = sim.nodes[at].endpoint.peer(peer_of(1)).unwrap().0;
                    assert!(info.undescribed());
                    assert_eq!(info.description(typed.id), Some(&untyped));
                }
                assert!(described(&sim, 0, 2).is_empty());
            }
        }
        // Lossless, each peer asked each other peer that takes topics once: the answer came.
        let mut sim = cluster(&Security::Insecure, LinkConfig::default());
        sim.drive_until(Instant::from_millis(3_000));
        let topics_sent = |sim: &Simulation<SimEndpoint>| -> u64 {
            let frames = |node: &SimEndpoint| {
                node.endpoint
                    .metrics()
                    .snapshot()
                    .frames_out(crate::wire::FrameType::Topics)
            };
            sim.nodes.iter().map(frames).sum()
        };
        let settled = topics_sent(&sim);
        sim.drive_until(Instant::from_millis(3_000) + Duration::from_secs(30));
        assert_eq!(
            topics_sent(&sim),
            settled,
            "descriptions asked for again and again"
        );
    }

    /// A fingerprint that changes (an untyped subscription, then a typed one) reaches peers
    /// that already had the old one.
    #[test]
    fn a_new_fingerprint_reaches_peers_that_had_the_old_one() {
        let mut sim = cluster(&Security::Insecure, LinkConfig::default());
        sim.drive_until(Instant::from_millis(3_000));
        sim.nodes[1]
            .endpoint
            .subscribe_named("plant/temperature", Some(42));
        sim.drive_until(Instant::from_millis(3_100));
        let typed = TopicDescription::new("plant/temperature", Some(42));
        assert_eq!(described(&sim, 2, 1), [typed]);
        sim.nodes[1]
            .endpoint
            .unsubscribe(TopicId::from_name("plant/temperature"));
        sim.drive_until(Instant::from_millis(3_200));
        assert!(described(&sim, 2, 1).is_empty());
    }
}
