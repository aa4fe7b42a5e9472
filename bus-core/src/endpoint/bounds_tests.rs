//! Field report, attacks item 6: an insecure bus grew without bound and amplified. One endpoint
//! is fed what an attacker sends (plaintext, any sender id, any source address) and what it
//! sends back is counted, byte by byte, per address.

use std::net::SocketAddr;

use bytes::Bytes;

use super::budgets::AMPLIFICATION_FACTOR;
use super::*;
use crate::metrics::DropReason;
use crate::wire::{Beacon, Frames, Header, HeaderExtension, HeaderFlags, HeaderRepr};

const TOPIC: TopicId = TopicId::from_name("test/bounds");

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn fake_id(i: u64) -> PeerId {
    let mut id = [0xEE; 16];
    id[..8].copy_from_slice(&i.to_be_bytes());
    PeerId(id)
}

/// A plaintext packet from `sender` carrying `frames`.
fn plain(sender: PeerId, frames: &[Frame<'_>]) -> Bytes {
    let mut packet = Vec::new();
    HeaderRepr {
        suite: 0,
        flags: HeaderFlags::empty(),
        session_index: 0,
        counter: 0,
        extension: HeaderExtension::Plain { sender },
    }
    .emit(&mut packet);
    for frame in frames {
        frame.emit(&mut packet);
    }
    Bytes::from(packet)
}

/// A beacon of `id` subscribing to [`TOPIC`], at `port` of the packet's source, asking for a
/// reply, and timed out only after a minute.
fn beacon(id: PeerId, port: u16) -> Frame<'static> {
    Frame::Beacon(Box::new(Beacon {
        peer_id: id,
        version: crate::wire::PROTOCOL_VERSION,
        leaving: false,
        wants_reply: true,
        unicast_ip: None,
        unicast_port: port,
        interval_ms: u32::MAX,
        incarnation: 1,
        topics: vec![TOPIC],
        metadata: Vec::new(),
    }))
}

/// The endpoint under attack: insecure, at 127.0.0.1:40000, subscribing to [`TOPIC`].
struct Attacked {
    endpoint: Endpoint,
    now: Instant,
    /// Bytes it sent to each address.
    sent: HashMap<SocketAddr, u64>,
    /// Bytes it was sent from each address.
    received: HashMap<SocketAddr, u64>,
    /// Ping ids it sent to each address.
    pings: HashMap<SocketAddr, Vec<u64>>,
    /// The peers it named in gossip to each address.
    gossiped: HashMap<SocketAddr, Vec<PeerId>>,
}

impl Attacked {
    fn new(tune: impl FnOnce(&mut EndpointConfig)) -> Attacked {
        let mut config = EndpointConfig::new(PeerId([0xAA; 16]), Security::Insecure);
        config.unicast_port = 40_000;
        config.unicast_ip = Some(at(40_000).ip());
        tune(&mut config);
        let wall = super::sim::SIM_WALL_CLOCK_START;
        let mut endpoint = Endpoint::new(config, [7; 32], Instant::ZERO, wall);
        endpoint.subscribe(TOPIC);
        Attacked {
            endpoint,
            now: Instant::ZERO,
            sent: HashMap::new(),
            received: HashMap::new(),
            pings: HashMap::new(),
            gossiped: HashMap::new(),
        }
    }

    fn wall(&self) -> WallClock {
        super::sim::SIM_WALL_CLOCK_START + Duration::from_micros(self.now.as_micros())
    }

    fn receive(&mut self, from: SocketAddr, packet: Bytes) {
        *self.received.entry(from).or_default() += packet.len() as u64;
        let wall = self.wall();
        self.endpoint.handle_datagram(self.now, wall, from, packet);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit(self.now) {
            let Target::Unicast(addr) = transmit.target else {
                continue;
            };
            *self.sent.entry(addr).or_default() += transmit.bytes.len() as u64;
            let header = Header::new_checked(&transmit.bytes[..]).unwrap();
            for frame in Frames::new(&transmit.bytes[header.header_len()..]) {
                match frame {
                    Ok(Frame::Ping { ping_id, .. }) => {
                        self.pings.entry(addr).or_default().push(ping_id);
                    }
                    Ok(Frame::Peers(peers)) => {
                        let named = self.gossiped.entry(addr).or_default();
                        named.extend(peers.iter().map(|p| p.id));
                    }
                    _ => {}
                }
            }
        }
        while self.endpoint.poll_event().is_some() {}
    }

    /// Runs its timers until `until`, publishing a best-effort message of [`TOPIC`] every
    /// 100 ms.
    fn run_until(&mut self, until: Instant) {
        let mut next_publish = self.now;
        while self.now < until {
            let timeout = self.endpoint.poll_timeout().unwrap_or(until);
            self.now = timeout.min(next_publish).min(until).max(self.now);
            if self.now >= next_publish {
                let _ = self.endpoint.publish(TOPIC, 0, b"to whoever subscribes");
                next_publish = self.now + Duration::from_millis(100);
            }
            let wall = self.wall();
            self.endpoint.handle_timeout(self.now, wall);
            self.drain();
            if self.now == until {
                break;
            }
        }
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.endpoint.metrics().snapshot().drops(reason)
    }
}

/// Field report: one 68-byte beacon that subscribes drew 337 KB in 10 s toward an address the
/// sender chose. A beacon, a ping and a reliable message "from" a victim's address, and the
/// published traffic of 10 s: the victim is sent at most three times what came "from" it.
#[test]
fn no_reply_to_an_unverified_address_exceeds_three_times_what_it_sent() {
    let mut target = Attacked::new(|_| {});
    let victim = at(9);
    let fake = fake_id(1);
    let ping = Frame::Ping {
        ping_id: 1,
        sent_at_us: 0,
    };
    let reliable = Frame::ReliablePublish {
        topic: TOPIC,
        fingerprint: 0,
        message_id: 5,
        window: 0,
        payloads: crate::wire::Payloads::encoded(1, b"\x01x"),
    };
    target.receive(
        victim,
        plain(fake, &[beacon(fake, victim.port()), ping, reliable]),
    );
    target.run_until(Instant::from_millis(10_000));

    let (sent, received) = (target.sent[&victim], target.received[&victim]);
    assert!(sent > 0, "it was answered, within its budget");
    assert!(
        sent <= AMPLIFICATION_FACTOR * received,
        "{sent} bytes sent for {received} received"
    );
    assert!(target.drops(DropReason::AmplificationLimit) > 0);
    assert!(!target.endpoint.confirmed(fake));
    assert!(target.endpoint.subscribers(TOPIC).is_empty());
}

/// A peer the target pings sees the ids of its pings; it forges a victim's beacon and answers
/// the pings sent to the victim with every id it could predict from its own. None is right (an
/// id has 24 random bits): the victim is neither confirmed nor sent the published traffic.
#[test]
fn a_forged_answer_does_not_verify_an_address() {
    let mut target = Attacked::new(|_| {});
    let (attacker, victim) = (at(8), at(9));
    let (attacker_id, victim_id) = (fake_id(1), fake_id(2));
    for second in 0..5u64 {
        target.receive(attacker, plain(attacker_id, &[beacon(attacker_id, 8)]));
        target.receive(victim, plain(victim_id, &[beacon(victim_id, 9)]));
        let seen: Vec<u64> = target.pings.get(&attacker).cloned().unwrap_or_default();
        let guesses: Vec<u64> = seen
            .iter()
            .flat_map(|id| {
                (1..4u64)
                    .flat_map(move |k| [id.wrapping_sub(k << 24), id.wrapping_add(k << 24)])
                    .chain((1..16).flat_map(move |k| [id.wrapping_sub(k), id.wrapping_add(k)]))
            })
            .collect();
        for ping_id in guesses {
            target.receive(victim, plain(victim_id, &[pong(ping_id)]));
        }
        target.run_until(Instant::from_millis(1_000 * (second + 1)));
    }
    assert!(
        !target.pings[&attacker].is_empty(),
        "the attacker was pinged"
    );
    assert!(!target.endpoint.confirmed(victim_id));
    assert!(target.endpoint.subscribers(TOPIC).is_empty());
    let (sent, received) = (target.sent[&victim], target.received[&victim]);
    assert!(sent <= AMPLIFICATION_FACTOR * received);
}

/// What a peer at `addr` answers to the last ping the target sent there.
fn pong_to_last_ping(target: &Attacked, addr: SocketAddr) -> Frame<'static> {
    pong(*target.pings[&addr].last().unwrap())
}

/// An answer to ping `ping_id`, from a peer that knows the target fresh.
fn pong(ping_id: u64) -> Frame<'static> {
    Frame::Pong {
        ping_id,
        ping_sent_at_us: 0,
        ping_received_at_us: 0,
        sent_at_us: 0,
        hears_your_group: false,
        knows_you_fresh: true,
        incarnation: 1,
        epoch_ms: 0,
        epoch_counter: 0,
    }
}

/// A real answer from the address pinged does verify it, and it is sent what it subscribes to,
/// without limit.
#[test]
fn an_answer_from_the_address_pinged_verifies_it() {
    let mut target = Attacked::new(|_| {});
    let peer = at(9);
    let id = fake_id(1);
    target.receive(peer, plain(id, &[beacon(id, 9)]));
    let pong = pong_to_last_ping(&target, peer);
    target.receive(peer, plain(id, &[pong]));
    assert!(target.endpoint.confirmed(id));
    target.run_until(Instant::from_millis(10_000));
    assert!(target.sent[&peer] > AMPLIFICATION_FACTOR * target.received[&peer]);
    assert_eq!(target.drops(DropReason::AmplificationLimit), 0);
}

/// Field report: 20k fake peers took a peer to 316 MB, and 8,192 reliable frames from 4,096
/// sender ids took its dedup windows to 1.38 GB. Both floods now leave every table within its
/// configured bound: peers at `max_peers`, address budgets at twice that, dedup bitmaps at
/// `max_dedup_bytes`, and the per-address reply budgets hold throughout.
#[test]
fn fake_peers_and_sender_ids_stay_within_the_bounds() {
    const FAKE_PEERS: u64 = 20_000;
    const SENDER_IDS: u64 = 4_096;
    let mut target = Attacked::new(|config| config.max_dedup_bytes = 4 << 20);
    let (max_peers, max_dedup) = (
        target.endpoint.config.max_peers,
        target.endpoint.config.max_dedup_bytes,
    );
    for i in 0..FAKE_PEERS {
        let port = 10_000 + u16::try_from(i % 30_000).unwrap();
        let id = fake_id(i);
        target.receive(at(port), plain(id, &[beacon(id, port)]));
    }
    assert_eq!(target.endpoint.peers().count(), max_peers);
    assert_eq!(
        target.drops(DropReason::TableFull),
        FAKE_PEERS - max_peers as u64
    );
    // Two frames a sender id, as far apart as a window may span, and in two lives.
    for i in 0..SENDER_IDS {
        let id = fake_id(1_000_000 + i);
        let span = crate::reliability::MAX_WINDOW_SPAN - 1;
        for (message_id, window) in [(0, 0), (span, span), ((1 << 40) + span, span)] {
            let frame = Frame::ReliablePublish {
                topic: TOPIC,
                fingerprint: 0,
                message_id,
                window,
                payloads: crate::wire::Payloads::encoded(1, b"\x01x"),
            };
            target.receive(at(50_000), plain(id, &[frame]));
        }
    }
    assert!(target.endpoint.dedup_bytes() <= max_dedup);
    assert!(target.drops(DropReason::DedupFull) > 0);
    assert!(target.endpoint.budgets.len() <= 2 * max_peers);
    target.run_until(Instant::from_millis(10_000));
    assert!(target.endpoint.budgets.len() <= 2 * max_peers);
    for (addr, sent) in &target.sent {
        let received = target.received.get(addr).copied().unwrap_or(0);
        assert!(
            *sent <= AMPLIFICATION_FACTOR * received,
            "{addr}: {sent} bytes sent for {received}"
        );
    }
    // The senders fell silent: their windows are forgotten.
    assert_eq!(target.endpoint.dedup_bytes(), 0);
}

/// Found on loopback: a made-up peer "at" a victim's address was named in gossip, and every peer
/// told of it sent the victim its beacon, each beacon interval, on the word of a peer that had
/// never heard from the victim. Only confirmed peers are named now.
#[test]
fn gossip_names_only_confirmed_peers() {
    let mut target = Attacked::new(|_| {});
    let (peer, attacker, victim) = (at(7), at(8), at(9));
    let (peer_id, fake) = (fake_id(1), fake_id(2));
    target.receive(peer, plain(peer_id, &[beacon(peer_id, 7)]));
    let pong = pong_to_last_ping(&target, peer);
    target.receive(peer, plain(peer_id, &[pong]));
    assert!(target.endpoint.confirmed(peer_id));
    target.receive(attacker, plain(fake, &[beacon(fake, victim.port())]));
    assert!(
        target.endpoint.peer(fake).is_some(),
        "it is known, not confirmed"
    );
    target.run_until(Instant::from_millis(5_000));
    let named = &target.gossiped[&peer];
    assert!(named.contains(&peer_id), "gossip went out: {named:?}");
    assert!(!named.contains(&fake), "the fake was named: {named:?}");
}

/// Topic descriptions from a stranger, or of topics the sender does not announce, or whose
/// names do not hash to what it announced, are dropped and counted; a question from an address
/// that never answered us is not answered.
#[test]
fn forged_topic_descriptions_are_dropped_and_counted() {
    let mut target = Attacked::new(|_| {});
    let stranger = fake_id(1);
    let describe = |asking, topics: &[(u64, &'static str)]| Frame::Topics {
        asking,
        topics: topics.to_vec(),
    };
    target.receive(
        at(9),
        plain(stranger, &[describe(true, &[(1, "test/bounds")])]),
    );
    assert_eq!(target.drops(DropReason::TopicUnannounced), 1);

    // Known now (its beacon announces "test/bounds"), but never answered a ping of ours.
    target.receive(at(9), plain(stranger, &[beacon(stranger, 9)]));
    let forged = [
        (1, "test/other"),
        (2, "not a valid name!"),
        (3, "test/bounds"),
    ];
    target.receive(at(9), plain(stranger, &[describe(true, &forged)]));
    assert_eq!(target.drops(DropReason::TopicUnannounced), 3);
    let (info, _) = target.endpoint.peer(stranger).unwrap();
    assert_eq!(
        info.described,
        [crate::discovery::TopicDescription::new(
            "test/bounds",
            Some(3)
        )]
    );
    let answers = target
        .endpoint
        .metrics()
        .snapshot()
        .frames_out(FrameType::Topics);
    assert_eq!(
        answers, 0,
        "a question from an unconfirmed address was answered"
    );
}
