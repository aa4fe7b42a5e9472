//! The production endpoint on the simulated network: [`SimEndpoint`] is a [`Node`] that feeds an
//! [`Endpoint`] the datagrams and timeouts of a [`Simulation`](crate::sim::Simulation), runs its
//! handshake computations inline, and records what it delivers and reports. The protocol under
//! test is the one the actors drive; only addresses and the clock are simulated.
//!
//! Node `i` has the address 127.0.0.1:40000+i, and its wall clock reads
//! [`SIM_WALL_CLOCK_START`] plus the virtual time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use super::{CallFailure, Delivery, Endpoint, EndpointConfig, Event, Misconfiguration, Target};
use crate::discovery::MembershipEvent;
use crate::reliability::DeliveryReport;
use crate::sim::{Destination, Node, NodeId, Transmit};
use crate::time::{Duration, Instant, WallClock};
use crate::{PeerId, TopicId};

/// The wall clock at virtual time zero: 2026-01-01T00:00:00Z.
pub const SIM_WALL_CLOCK_START: WallClock = WallClock::from_nanos(1_767_225_600 * 1_000_000_000);

/// The address of node `node`.
pub fn sim_addr(node: NodeId) -> SocketAddr {
    let port = 40_000 + u16::try_from(node.0).unwrap_or(u16::MAX - 40_000);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn sim_node(addr: SocketAddr) -> Option<NodeId> {
    let index = addr.port().checked_sub(40_000)?;
    (addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)).then_some(NodeId(usize::from(index)))
}

/// What the application on a node does after every input: publish, subscribe, and so on.
pub type App = Box<dyn FnMut(&mut Endpoint, Instant)>;

/// What became of a call: answered (status, result), or failed.
pub type CallOutcome = Result<(u8, Bytes), CallFailure>;

/// How a simulated node answers calls: (procedure, argument) to (status, result).
pub type Server = Box<dyn FnMut(u64, &[u8]) -> (u8, Vec<u8>)>;

/// An [`Endpoint`] as a simulated node, and what it has seen.
pub struct SimEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// What it delivered to its application, in order.
    pub delivered: Vec<Delivery>,
    /// The outcome of each reliable event it published (the outcome of the message that
    /// carried it), in the order they finished.
    pub finished: Vec<(u64, DeliveryReport)>,
    /// Its membership events, in order.
    pub membership: Vec<MembershipEvent>,
    /// Remote peers that began (`true`) or stopped subscribing to a topic, in order.
    pub subscriber_changes: Vec<(TopicId, PeerId, bool)>,
    /// Subscribers reported behind, in order.
    pub behind: Vec<PeerId>,
    /// Subscribers given up on, in order.
    pub given_up: Vec<PeerId>,
    /// Window room given back, summed over [`Event::WindowRoom`]s.
    pub window_room: usize,
    /// Misconfigurations reported, with the packets each report counts, in order.
    pub misconfigured: Vec<(SocketAddr, Misconfiguration, u64)>,
    app: Option<App>,
    /// What answers calls to it: (procedure, argument) to (status, result), at once.
    server: Option<Server>,
    /// The outcome of each call it made, in the order they came: answered (status, result),
    /// or failed.
    pub replies: Vec<(u64, CallOutcome)>,
    /// Every datagram it received and from whom, once [`SimEndpoint::capturing`]: what an
    /// attacker on the wire records, to replay.
    pub captured: Option<Vec<(NodeId, Vec<u8>)>>,
    /// The registers it serves: each one's type fingerprint and value. A read answers the
    /// value; a write of the same type replaces it, once however often it is sent.
    pub registers: std::collections::HashMap<TopicId, (u64, Bytes)>,
    /// Writes applied, in order: (register, value, whether it came unreliably).
    pub writes: Vec<(TopicId, Bytes, bool)>,
}

impl std::fmt::Debug for SimEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEndpoint")
            .field("endpoint", &self.endpoint)
            .field("delivered", &self.delivered.len())
            .field("finished", &self.finished.len())
            .finish_non_exhaustive()
    }
}

impl SimEndpoint {
    /// Node `node` running an endpoint of `config` (its unicast port is set to the node's),
    /// its randomness from `seed`, from the start of the simulation.
    pub fn new(node: NodeId, config: EndpointConfig, seed: [u8; 32]) -> SimEndpoint {
        SimEndpoint::started_at(node, config, seed, Instant::ZERO)
    }

    /// [`SimEndpoint::new`] for an endpoint that starts at `now`: a late joiner, or a restart
    /// (put it in the node's place).
    pub fn started_at(
        node: NodeId,
        mut config: EndpointConfig,
        seed: [u8; 32],
        now: Instant,
    ) -> SimEndpoint {
        config.unicast_port = sim_addr(node).port();
        config.unicast_ip = Some(sim_addr(node).ip());
        SimEndpoint {
            endpoint: Endpoint::new(config, seed, now, wall(now)),
            delivered: Vec::new(),
            finished: Vec::new(),
            membership: Vec::new(),
            subscriber_changes: Vec::new(),
            behind: Vec::new(),
            given_up: Vec::new(),
            window_room: 0,
            misconfigured: Vec::new(),
            app: None,
            server: None,
            replies: Vec::new(),
            captured: None,
            registers: std::collections::HashMap::new(),
            writes: Vec::new(),
        }
    }

    /// Records every datagram it receives from now on (see [`SimEndpoint::captured`]).
    pub fn capturing(mut self) -> Self {
        self.captured = Some(Vec::new());
        self
    }

    /// Ends the capture and returns the datagrams of packet type `kind` it captured from
    /// `from`.
    ///
    /// # Panics
    /// If it was not capturing.
    pub fn take_captured(&mut self, from: NodeId, kind: crate::wire::PacketType) -> Vec<Vec<u8>> {
        let captured = self
            .captured
            .take()
            .unwrap_or_else(|| panic!("not capturing"));
        captured
            .into_iter()
            .filter(|(sender, bytes)| {
                *sender == from && crate::wire::PacketType::of_datagram(bytes) == Ok(kind)
            })
            .map(|(_, bytes)| bytes)
            .collect()
    }

    /// Runs `app` after every input from now on.
    pub fn with_app(mut self, app: impl FnMut(&mut Endpoint, Instant) + 'static) -> Self {
        self.app = Some(Box::new(app));
        self
    }

    /// Answers calls with `serve` from now on.
    pub fn serving(mut self, serve: impl FnMut(u64, &[u8]) -> (u8, Vec<u8>) + 'static) -> Self {
        self.server = Some(Box::new(serve));
        self
    }

    /// Replaces the application.
    pub fn set_app(&mut self, app: impl FnMut(&mut Endpoint, Instant) + 'static) {
        self.app = Some(Box::new(app));
    }

    /// Runs the application now (as after an input), then handles every event until there are
    /// none.
    pub fn settle(&mut self, now: Instant) {
        loop {
            if let Some(app) = self.app.as_mut() {
                app(&mut self.endpoint, now);
            }
            let mut any = false;
            while let Some(event) = self.endpoint.poll_event() {
                any = true;
                match event {
                    Event::Handshake(job) => self.endpoint.handle_handshake(now, job.run()),
                    Event::Deliver(delivery) => self.delivered.push(delivery),
                    Event::Finished {
                        message_id,
                        events,
                        report,
                    } => {
                        // Each event has the outcome of the message that carried it.
                        let outcomes = std::iter::repeat_n((message_id, report), events);
                        self.finished.extend(outcomes);
                    }
                    Event::Membership(event) => self.membership.push(event),
                    Event::SubscriberJoined { topic, peer } => {
                        self.subscriber_changes.push((topic, peer, true));
                    }
                    Event::SubscriberLeft { topic, peer } => {
                        self.subscriber_changes.push((topic, peer, false));
                    }
                    Event::SubscriberBehind { peer, .. } => self.behind.push(peer),
                    Event::SubscriberGivenUp { peer, .. } => self.given_up.push(peer),
                    Event::Misconfigured {
                        from,
                        what,
                        packets,
                    } => self.misconfigured.push((from, what, packets)),
                    Event::WindowRoom(room) => self.window_room += room,
                    Event::Request {
                        from,
                        call_id,
                        method,
                        payload,
                    } => {
                        let answer = self.server.as_mut().map(|serve| serve(method, &payload));
                        if let Some((status, result)) = answer {
                            self.endpoint.reply(now, from, call_id, status, &result);
                        }
                    }
                    Event::RegisterRequest {
                        from,
                        call_id,
                        register,
                        fingerprint,
                        write,
                    } => {
                        let (status, answer) = self.serve_register(register, fingerprint, write);
                        self.endpoint.reply(now, from, call_id, status, &answer);
                    }
                    Event::RegisterWritten {
                        register,
                        fingerprint,
                        value,
                        ..
                    } => {
                        let _ = self.apply_write(register, fingerprint, value, true);
                    }
                    Event::Replied {
                        call_id,
                        status,
                        payload,
                    } => self.replies.push((call_id, Ok((status, payload)))),
                    Event::CallFailed { call_id, reason } => {
                        self.replies.push((call_id, Err(reason)));
                    }
                    Event::Pong { .. } | Event::Sent { .. } => {}
                }
            }
            if !any {
                return;
            }
        }
    }
}

impl SimEndpoint {
    /// The answer to a read (`write` is `None`) or write of `register`.
    fn serve_register(
        &mut self,
        register: TopicId,
        fingerprint: u64,
        write: Option<Bytes>,
    ) -> (u8, Vec<u8>) {
        match write {
            Some(value) => match self.apply_write(register, fingerprint, value, false) {
                Ok(()) => (0, Vec::new()),
                Err(status) => (status, b"refused".to_vec()),
            },
            None => match self.registers.get(&register) {
                Some((ours, value)) if *ours == fingerprint => (0, value.to_vec()),
                Some(_) => (crate::rpc::STATUS_UNDECODABLE, b"another type".to_vec()),
                None => (
                    crate::rpc::STATUS_NO_SUCH_REGISTER,
                    b"no such register".to_vec(),
                ),
            },
        }
    }

    fn apply_write(
        &mut self,
        register: TopicId,
        fingerprint: u64,
        value: Bytes,
        unreliable: bool,
    ) -> Result<(), u8> {
        match self.registers.get_mut(&register) {
            Some((ours, held)) if *ours == fingerprint => {
                *held = value.clone();
                self.writes.push((register, value, unreliable));
                Ok(())
            }
            Some(_) => Err(crate::rpc::STATUS_UNDECODABLE),
            None => Err(crate::rpc::STATUS_NO_SUCH_REGISTER),
        }
    }
}

fn wall(now: Instant) -> WallClock {
    SIM_WALL_CLOCK_START + Duration::from_micros(now.as_micros())
}

impl Node for SimEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        if let Some(captured) = self.captured.as_mut() {
            captured.push((from, bytes.to_vec()));
        }
        let datagram = Bytes::copy_from_slice(bytes);
        self.endpoint
            .handle_datagram(now, wall(now), sim_addr(from), datagram);
        self.settle(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now, wall(now));
        self.settle(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        loop {
            let transmit = self.endpoint.poll_transmit(now)?;
            let destination = match transmit.target {
                Target::Group => Destination::Multicast,
                Target::Unicast(addr) => match sim_node(addr) {
                    Some(node) => Destination::Unicast(node),
                    // No node has that address: the datagram goes nowhere.
                    None => continue,
                },
            };
            return Some(Transmit {
                destination,
                bytes: transmit.bytes,
            });
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }
}

/// What an attacker without the keys sends to flood a group: a multicast data packet claiming
/// `sender`'s epoch stamped `epoch_ms`, with random material, tag, counter and 64 bytes of
/// "ciphertext".
pub fn junk_epoch_packet<R: rand::Rng>(rng: &mut R, sender: PeerId, epoch_ms: u64) -> Vec<u8> {
    use crate::wire::{HeaderExtension, HeaderFlags, HeaderRepr};
    let header = HeaderRepr {
        suite: crate::crypto::SUITE_CHACHA,
        flags: HeaderFlags::TO_GROUP,
        session_index: 0,
        counter: rng.random(),
        extension: HeaderExtension::MulticastData {
            sender,
            epoch_material: rng.random(),
            epoch_timestamp_ms: epoch_ms,
            epoch_tag: rng.random(),
        },
    };
    let mut junk = Vec::new();
    header.emit(&mut junk);
    junk.extend((0..64).map(|_| rng.random::<u8>()));
    junk
}
