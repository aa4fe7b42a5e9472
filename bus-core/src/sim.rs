//! A deterministic network simulator for tests.
//!
//! [`Network`] is a datagram fabric in virtual time between N nodes: each directed link has its
//! own seeded random stream and its own [`LinkConfig`] (loss, duplication, delay, jitter,
//! reordering), and links can be cut and restored to make partitions. [`Simulation`] puts
//! sans-IO state machines ([`Node`]) on the fabric and drives them: it delivers datagrams in
//! arrival order, fires their timers, and carries what they transmit.
//!
//! Everything is a function of the seed: the same seed and the same inputs give the same
//! [`Trace`], event for event. Available to other crates' tests through the `sim` feature.
//!
//! ```
//! use bus_core::sim::{Destination, LinkConfig, Network, NodeId};
//! use bus_core::{Duration, Instant};
//!
//! let lossy = LinkConfig { loss: 0.3, latency: Duration::from_millis(1), ..LinkConfig::default() };
//! let mut net = Network::new(42, 2, lossy);
//! for _ in 0..1000 {
//!     net.send(NodeId(0), Destination::Unicast(NodeId(1)), vec![0; 64]);
//! }
//! let mut delivered = 0;
//! while let Some(_) = net.poll_delivery(Instant::MAX) {
//!     delivered += 1;
//! }
//! assert!((600..800).contains(&delivered));
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::id::fnv1a64;
use crate::time::{Duration, Instant};

/// A node's index in the network.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct NodeId(pub usize);

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Destination {
    /// One node.
    Unicast(NodeId),
    /// Every node but the sender, each over its own link.
    Multicast,
}

/// How one directed link treats the datagrams it carries. Probabilities are in `0.0..=1.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram that is not lost arrives twice.
    pub duplicate: f64,
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` for each copy; datagrams sent closer together
    /// than this may overtake one another.
    pub jitter: Duration,
    /// Probability that a copy is held back by an extra `reorder_delay`, letting later datagrams
    /// overtake it.
    pub reorder: f64,
    /// How long a reordered copy is held back.
    pub reorder_delay: Duration,
}

impl Default for LinkConfig {
    /// A perfect link with 100 µs of latency.
    fn default() -> LinkConfig {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            latency: Duration::from_micros(100),
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(5),
        }
    }
}

#[derive(Debug)]
struct Link {
    config: LinkConfig,
    up: bool,
    rng: ChaCha8Rng,
}

/// What happened to one datagram on one link.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TraceKind {
    /// The link lost it.
    Lost,
    /// The link was cut.
    Partitioned,
    /// It will arrive at the given instant.
    Scheduled(Instant),
    /// A duplicate of it will arrive at the given instant.
    Duplicated(Instant),
    /// It arrived.
    Delivered,
}

/// One event of a [`Trace`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TraceEvent {
    /// Virtual time of the event.
    pub at: Instant,
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Length of the datagram.
    pub len: usize,
    /// A hash of its bytes, so traces compare contents without keeping them.
    pub digest: u64,
    /// What happened.
    pub kind: TraceKind,
}

/// Everything the network did, in order.
pub type Trace = Vec<TraceEvent>;

/// Counts of what the network did to datagrams (multicast counts once per receiver).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct NetworkStats {
    /// Datagram copies offered to links.
    pub sent: u64,
    /// Lost by a link.
    pub lost: u64,
    /// Dropped because the link was cut.
    pub partitioned: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Handed to the receiver.
    pub delivered: u64,
}

/// A datagram that arrived.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Delivery {
    /// When it arrived.
    pub at: Instant,
    /// Who sent it.
    pub from: NodeId,
    /// Who receives it.
    pub to: NodeId,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd)]
struct InFlight {
    arrival: Instant,
    /// Breaks ties in send order, so equal arrival times stay deterministic.
    seq: u64,
    from: NodeId,
    to: NodeId,
    bytes: Vec<u8>,
}

/// A datagram fabric in virtual time. See the [module docs](self).
#[derive(Debug)]
pub struct Network {
    now: Instant,
    nodes: usize,
    links: Vec<Link>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    trace: Trace,
    stats: NetworkStats,
    /// Whether multicast is carried (as on a LAN) or dropped (as in most clouds).
    multicast: bool,
    /// Whether a multicast datagram also reaches its sender, as with `IP_MULTICAST_LOOP`.
    multicast_loop: bool,
}

impl Network {
    /// A network of `nodes` nodes whose links all start as `config`, with randomness from `seed`.
    pub fn new(seed: u64, nodes: usize, config: LinkConfig) -> Network {
        let mut seeder = ChaCha8Rng::seed_from_u64(seed);
        let links = (0..nodes * nodes)
            .map(|_| Link {
                config,
                up: true,
                rng: ChaCha8Rng::seed_from_u64(seeder.random()),
            })
            .collect();
        Network {
            now: Instant::ZERO,
            nodes,
            links,
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            trace: Vec::new(),
            stats: NetworkStats::default(),
            multicast: true,
            multicast_loop: false,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// How many nodes the network has.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Sets the configuration of the link from `from` to `to`.
    pub fn set_link(&mut self, from: NodeId, to: NodeId, config: LinkConfig) {
        self.link_mut(from, to).config = config;
    }

    /// Sets the configuration of every link.
    pub fn set_all_links(&mut self, config: LinkConfig) {
        for link in &mut self.links {
            link.config = config;
        }
    }

    /// Carries multicast (the default) or drops every multicast datagram (counted as cut), as
    /// networks without multicast do.
    pub fn set_multicast(&mut self, carried: bool) {
        self.multicast = carried;
    }

    /// Whether multicast datagrams also reach their sender (as real sockets with
    /// `IP_MULTICAST_LOOP` do); off by default.
    pub fn set_multicast_loop(&mut self, looped: bool) {
        self.multicast_loop = looped;
    }

    /// Cuts every link between the two groups, both ways, until [`Network::heal`].
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.link_mut(x, y).up = false;
                self.link_mut(y, x).up = false;
            }
        }
    }

    /// Restores every cut link. Datagrams dropped while cut stay dropped.
    pub fn heal(&mut self) {
        for link in &mut self.links {
            link.up = true;
        }
    }

    /// Sends `bytes` from `from` at the current time.
    pub fn send(&mut self, from: NodeId, destination: Destination, bytes: Vec<u8>) {
        match destination {
            // No node has that address (a peer may advertise anything): it goes nowhere.
            Destination::Unicast(to) if to.0 >= self.nodes => {}
            Destination::Unicast(to) => self.send_on_link(from, to, bytes),
            Destination::Multicast if !self.multicast => {
                self.stats.sent += (self.nodes.saturating_sub(1)) as u64;
                self.stats.partitioned += (self.nodes.saturating_sub(1)) as u64;
            }
            Destination::Multicast => {
                let looped = self.multicast_loop;
                let receivers: Vec<_> =
                    (0..self.nodes).filter(|&i| looped || i != from.0).collect();
                if let Some((&last, rest)) = receivers.split_last() {
                    for &to in rest {
                        self.send_on_link(from, NodeId(to), bytes.clone());
                    }
                    self.send_on_link(from, NodeId(last), bytes);
                }
            }
        }
    }

    fn send_on_link(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let now = self.now;
        let digest = fnv1a64(&bytes);
        let len = bytes.len();
        self.stats.sent += 1;
        let link = self.link_mut(from, to);
        let fate = if !link.up {
            Fate::Partitioned
        } else if link.rng.random_bool(link.config.loss) {
            Fate::Lost
        } else {
            let first = now + link.delay();
            let duplicate = link
                .rng
                .random_bool(link.config.duplicate)
                .then(|| now + link.delay());
            Fate::Arrives { first, duplicate }
        };
        let event = |kind| TraceEvent {
            at: now,
            from,
            to,
            len,
            digest,
            kind,
        };
        match fate {
            Fate::Partitioned => {
                self.stats.partitioned += 1;
                self.trace.push(event(TraceKind::Partitioned));
            }
            Fate::Lost => {
                self.stats.lost += 1;
                self.trace.push(event(TraceKind::Lost));
            }
            Fate::Arrives { first, duplicate } => {
                self.trace.push(event(TraceKind::Scheduled(first)));
                if let Some(at) = duplicate {
                    self.stats.duplicated += 1;
                    self.trace.push(event(TraceKind::Duplicated(at)));
                    self.enqueue(at, from, to, bytes.clone());
                }
                self.enqueue(first, from, to, bytes);
            }
        }
    }

    fn enqueue(&mut self, arrival: Instant, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Reverse(InFlight {
            arrival,
            seq,
            from,
            to,
            bytes,
        }));
    }

    /// When the next datagram arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse(d)| d.arrival)
    }

    /// The next datagram to arrive no later than `until`, advancing time to its arrival.
    pub fn poll_delivery(&mut self, until: Instant) -> Option<Delivery> {
        if self.next_arrival()? > until {
            return None;
        }
        let Reverse(d) = self.in_flight.pop()?;
        self.now = self.now.max(d.arrival);
        self.stats.delivered += 1;
        self.trace.push(TraceEvent {
            at: self.now,
            from: d.from,
            to: d.to,
            len: d.bytes.len(),
            digest: fnv1a64(&d.bytes),
            kind: TraceKind::Delivered,
        });
        Some(Delivery {
            at: self.now,
            from: d.from,
            to: d.to,
            bytes: d.bytes,
        })
    }

    /// Moves time forward to `to` (never backwards).
    pub fn advance_to(&mut self, to: Instant) {
        self.now = self.now.max(to);
    }

    /// Everything that happened so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Counts of what happened so far.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    fn link_mut(&mut self, from: NodeId, to: NodeId) -> &mut Link {
        assert!(
            from.0 < self.nodes && to.0 < self.nodes,
            "link {from:?} -> {to:?} outside a network of {} nodes",
            self.nodes
        );
        &mut self.links[from.0 * self.nodes + to.0]
    }
}

enum Fate {
    Partitioned,
    Lost,
    Arrives {
        first: Instant,
        duplicate: Option<Instant>,
    },
}

impl Link {
    fn delay(&mut self) -> Duration {
        let config = self.config;
        let mut delay = config.latency;
        let jitter = u64::try_from(config.jitter.as_micros()).unwrap_or(u64::MAX);
        if jitter > 0 {
            delay += Duration::from_micros(self.rng.random_range(0..=jitter));
        }
        if self.rng.random_bool(config.reorder) {
            delay += config.reorder_delay;
        }
        delay
    }
}

/// A datagram a node wants sent.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Transmit {
    /// Where to.
    pub destination: Destination,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// A sans-IO state machine the simulator can drive: the same shape the actors drive for real.
pub trait Node {
    /// A datagram arrived from `from`.
    fn handle_datagram(&mut self, now: Instant, from: NodeId, bytes: &[u8]);
    /// The time returned by [`Node::poll_timeout`] has come.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;
    /// When the node next wants [`Node::handle_timeout`], if ever.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// Nodes on a [`Network`], driven in virtual time.
#[derive(Debug)]
pub struct Simulation<N> {
    /// The fabric; configure links and partitions through it.
    pub network: Network,
    /// The nodes; `nodes[i]` is `NodeId(i)`.
    pub nodes: Vec<N>,
}

impl<N: Node> Simulation<N> {
    /// The nodes on a network seeded with `seed` whose links start as `config`.
    pub fn new(seed: u64, config: LinkConfig, nodes: Vec<N>) -> Simulation<N> {
        Simulation {
            network: Network::new(seed, nodes.len(), config),
            nodes,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.network.now()
    }

    /// Sends what the nodes want sent, then handles the next instant at which anything happens,
    /// if it is no later than `until`. Returns whether anything happened.
    pub fn step(&mut self, until: Instant) -> bool {
        self.flush_transmits();
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.poll_timeout())
            .min()
            .map(|t| t.max(self.now()));
        let next = match (self.network.next_arrival(), next_timer) {
            (Some(a), Some(t)) => a.min(t),
            (a, t) => match a.or(t) {
                Some(next) => next,
                None => return false,
            },
        };
        if next > until {
            return false;
        }
        self.network.advance_to(next);
        let now = self.now();
        while let Some(d) = self.network.poll_delivery(now) {
            self.nodes[d.to.0].handle_datagram(now, d.from, &d.bytes);
        }
        for node in &mut self.nodes {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
        self.flush_transmits();
        true
    }

    /// Steps until nothing is left to do before `until`, then sets the time to `until`.
    pub fn drive_until(&mut self, until: Instant) {
        while self.step(until) {}
        self.network.advance_to(until);
    }

    /// Steps until nothing is left to do at all, or `max_steps` steps have run. Returns whether
    /// the simulation went idle (false means it was still busy after `max_steps`).
    pub fn drive_bounded(&mut self, max_steps: usize) -> bool {
        for _ in 0..max_steps {
            if !self.step(Instant::MAX) {
                return true;
            }
        }
        false
    }

    /// Steps while `busy(&nodes)` holds, until `until` at the latest. Returns whether `busy`
    /// became false (for nodes that never go idle, such as endpoints that beacon).
    pub fn drive_while(&mut self, until: Instant, mut busy: impl FnMut(&[N]) -> bool) -> bool {
        while busy(&self.nodes) {
            if !self.step(until) {
                return !busy(&self.nodes);
            }
        }
        true
    }

    fn flush_transmits(&mut self) {
        let now = self.now();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            while let Some(t) = node.poll_transmit(now) {
                self.network.send(NodeId(i), t.destination, t.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests;
