//! Configuration of a bus, and the builder that produces it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::collections::HashMap;

use bus_core::crypto::handshake::PresharedKey;
use bus_core::crypto::noise::Keypair;
use bus_core::crypto::peer_id_of;
use bus_core::endpoint::{EndpointConfig, Security};
use bus_core::reliability::WindowLimits;
use bus_core::{Duration, PeerId, Topic, TopicId};

use crate::error::Error;
use crate::transport::{Interface, Transport, UdpOptions};

/// The default multicast group (as in the Pavillion protocol document).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 28, 12);
/// The default multicast port.
pub const DEFAULT_PORT: u16 = 1783;

pub(crate) type TransportFactory = Box<dyn FnOnce(&Config) -> Result<Box<dyn Transport>, Error>>;

/// Everything a bus needs to start; built by [`BusBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) peer_id: Option<PeerId>,
    pub(crate) interface: Interface,
    pub(crate) group: SocketAddr,
    pub(crate) unicast_port: u16,
    pub(crate) beacon_interval: Duration,
    pub(crate) liveness_factor: u32,
    pub(crate) ping_interval: Duration,
    pub(crate) seeds: Vec<SocketAddr>,
    pub(crate) multicast: bool,
    pub(crate) recv_buffer: usize,
    pub(crate) busy_poll: Duration,
    pub(crate) send_buffer: usize,
    pub(crate) multicast_ttl: u32,
    /// `None`: chosen by the interface (see [`Config::max_datagram`]).
    pub(crate) max_datagram: Option<usize>,
    pub(crate) outbox_limit: usize,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) security: Option<Security>,
    /// Keys given to [`BusBuilder::trust`] before a public-key mode was chosen: taken into it
    /// when it is, refused at start if it never is.
    pub(crate) early_trust: Vec<[u8; 32]>,
    pub(crate) rng_seed: Option<u64>,
    pub(crate) reliable_deadline: Duration,
    pub(crate) topic_deadlines: HashMap<TopicId, Duration>,
    pub(crate) window: WindowLimits,
    pub(crate) min_rto: Duration,
    pub(crate) max_rto: Duration,
    pub(crate) give_up_after: u32,
    pub(crate) given_up_for: Duration,
    pub(crate) max_peers: usize,
    pub(crate) max_dedup_bytes: usize,
    pub(crate) max_message_size: usize,
    pub(crate) large_message_window: usize,
    pub(crate) report_reliable_successes: bool,
    pub(crate) rekey_after: Duration,
    pub(crate) max_clock_skew: Duration,
    pub(crate) handshake_load_threshold: usize,
}

/// The floor of the retransmission timeout (see [`BusBuilder::min_rto`]). Measured with the
/// soak on loopback, no loss, 3 peers at 200 reliable messages a second each for 30 s (36 012
/// message-subscriber pairs): 24 spurious retransmissions with a 1 ms floor, 20 with 2 ms, none
/// with 5 or 10 ms; at 5% loss, as many retransmissions with 5 ms as with 1 ms and nothing
/// undelivered, so the higher floor costs recovery nothing measurable.
pub(crate) const DEFAULT_MIN_RTO: Duration = Duration::from_millis(5);

/// The default largest datagram on a loopback interface.
pub(crate) const LOOPBACK_MAX_DATAGRAM: usize = 16 * 1024;
/// The default largest datagram elsewhere: fits any LAN's MTU with IP and UDP headers.
pub(crate) const LAN_MAX_DATAGRAM: usize = 1200;

impl Config {
    /// What the UDP sockets are bound and tuned with.
    pub(crate) fn udp_options(&self) -> UdpOptions {
        UdpOptions {
            interface: self.interface,
            group: self.group,
            unicast_port: self.unicast_port,
            recv_buffer: self.recv_buffer,
            send_buffer: self.send_buffer,
            multicast_ttl: self.multicast_ttl,
            busy_poll: self.busy_poll,
        }
    }

    /// What the endpoint of peer `local_id`, reachable at `unicast`, runs with.
    pub(crate) fn endpoint_config(
        &self,
        local_id: PeerId,
        unicast: std::net::SocketAddr,
    ) -> EndpointConfig {
        EndpointConfig {
            unicast_port: unicast.port(),
            unicast_ip: Some(unicast.ip()).filter(|ip| !ip.is_unspecified()),
            beacon_interval: self.beacon_interval,
            liveness_factor: self.liveness_factor,
            seeds: self.seeds.clone(),
            multicast: self.multicast,
            ping_interval: self.ping_interval,
            // Ten active intervals, as by default (1 s and 10 s).
            idle_ping_interval: self.ping_interval * 10,
            metadata: self.metadata.clone(),
            max_datagram: self.max_datagram(),
            outbox_limit: self.outbox_limit,
            window: self.window,
            max_rto: self.max_rto,
            give_up_after: self.give_up_after,
            given_up_for: self.given_up_for,
            max_peers: self.max_peers,
            max_dedup_bytes: self.max_dedup_bytes,
            reassembly: bus_core::fragment::ReassemblyLimits {
                max_message: self.max_message_size,
                // Room for two incomplete messages of the largest size from one sender, and
                // four in all: a flood of claimed messages holds no more.
                per_sender_bytes: self.max_message_size.saturating_mul(2),
                total_bytes: self.max_message_size.saturating_mul(4),
                ..bus_core::fragment::ReassemblyLimits::default()
            },
            large_window: self.large_message_window,
            rekey_after: self.rekey_after,
            max_clock_skew: self.max_clock_skew,
            handshake_load_threshold: self.handshake_load_threshold,
            // The peers of a cluster are configured alike: their copies can arrive as long as
            // our own longest deadline allows, plus a retransmission interval.
            dedup_retention: self
                .topic_deadlines
                .values()
                .copied()
                .fold(self.reliable_deadline, Duration::max)
                + self.max_rto,
            ..EndpointConfig::new(
                local_id,
                self.security.clone().unwrap_or(Security::Insecure),
            )
        }
    }

    /// The largest datagram to send: as set, or by the interface.
    pub(crate) fn max_datagram(&self) -> usize {
        self.max_datagram
            .unwrap_or(if self.interface.ip().is_loopback() {
                LOOPBACK_MAX_DATAGRAM
            } else {
                LAN_MAX_DATAGRAM
            })
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            peer_id: None,
            interface: Interface::V4(Ipv4Addr::LOCALHOST),
            group: SocketAddr::new(IpAddr::V4(DEFAULT_GROUP), DEFAULT_PORT),
            unicast_port: 0,
            beacon_interval: Duration::from_secs(1),
            liveness_factor: 3,
            ping_interval: Duration::from_secs(1),
            seeds: Vec::new(),
            multicast: true,
            recv_buffer: 4 << 20,
            busy_poll: Duration::ZERO,
            send_buffer: 4 << 20,
            multicast_ttl: 1,
            max_datagram: None,
            outbox_limit: 4 << 20,
            metadata: Vec::new(),
            security: None,
            early_trust: Vec::new(),
            rng_seed: None,
            reliable_deadline: Duration::from_secs(5),
            topic_deadlines: HashMap::new(),
            window: WindowLimits::default(),
            min_rto: DEFAULT_MIN_RTO,
            max_rto: Duration::from_millis(500),
            give_up_after: 64,
            given_up_for: Duration::from_secs(10),
            max_peers: 4096,
            max_dedup_bytes: 16 << 20,
            max_message_size: bus_core::fragment::ReassemblyLimits::default().max_message,
            large_message_window: bus_core::fragment::DEFAULT_LARGE_WINDOW,
            report_reliable_successes: false,
            rekey_after: Duration::from_secs(120),
            max_clock_skew: Duration::from_secs(60),
            handshake_load_threshold: 8,
        }
    }
}

/// Configures and starts a [`Bus`](crate::Bus).
///
/// With no interface named, the bus binds to 127.0.0.1 and joins its multicast group there, so
/// nothing leaves the host; going onto a network is the one explicit call
/// [`BusBuilder::interface`].
pub struct BusBuilder {
    pub(crate) config: Config,
    pub(crate) transport: Option<TransportFactory>,
}

impl std::fmt::Debug for BusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusBuilder")
            .field("config", &self.config)
            .field("custom_transport", &self.transport.is_some())
            .finish()
    }
}

impl BusBuilder {
    pub(crate) fn new() -> BusBuilder {
        BusBuilder {
            config: Config::default(),
            transport: None,
        }
    }

    /// This peer's id (default: random).
    pub fn peer_id(mut self, id: PeerId) -> Self {
        self.config.peer_id = Some(id);
        self
    }

    /// The interface to join the group on and send from: the call that takes the bus off
    /// loopback.
    pub fn interface(mut self, interface: Interface) -> Self {
        self.config.interface = interface;
        self
    }

    /// The multicast group and port (default 239.255.28.12:1783). Peers that should find each
    /// other use the same group and port.
    pub fn group(mut self, group: SocketAddr) -> Self {
        self.config.group = group;
        self
    }

    /// The port of this peer's unicast socket (default 0: any free port).
    pub fn unicast_port(mut self, port: u16) -> Self {
        self.config.unicast_port = port;
        self
    }

    /// How often to announce this peer (default 1 s, jittered by ±10%).
    pub fn beacon_interval(mut self, interval: Duration) -> Self {
        self.config.beacon_interval = interval;
        self
    }

    /// How many beacon intervals of silence make a peer unreachable (default 3).
    pub fn liveness_factor(mut self, factor: u32) -> Self {
        self.config.liveness_factor = factor;
        self
    }

    /// How often peers this one sends reliable messages to are pinged, to measure RTT (for
    /// retransmission timeouts) and clock offset (default 1 s); other peers are pinged ten
    /// times less often. A peer is sent messages only once it has answered a ping.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// Addresses to send beacons to by unicast, for networks without multicast.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.config.seeds = seeds.into_iter().collect();
        self
    }

    /// Whether to use multicast at all (default: yes). Either way a subscriber gets group copies
    /// only once it says (in its answers to our pings) that it hears our multicast, and unicast
    /// copies until then, so fan-out is never lost to a network that drops multicast. With
    /// `false` the bus sends nothing to the group: beacons go to the seeds only, and every
    /// message by unicast to each subscriber (`metrics().fanout_unicast` counts the copies).
    pub fn multicast(mut self, enabled: bool) -> Self {
        self.config.multicast = enabled;
        self
    }

    /// Socket receive and send buffer sizes (default 4 MiB each; the kernel may cap them).
    pub fn buffer_sizes(mut self, recv: usize, send: usize) -> Self {
        self.config.recv_buffer = recv;
        self.config.send_buffer = send;
        self
    }

    /// After each datagram, keep polling the sockets for the next one for up to `period`
    /// (yielding to the bus's other work in between) before going to sleep on them. Default: off.
    ///
    /// A receiver that sleeps is woken by the kernel when the next datagram arrives; on a busy
    /// host, or a virtual machine whose idle CPU has halted, that wake-up can cost more than the
    /// rest of a round trip (here: ~100 µs against ~20). Busy polling keeps the thread running
    /// through the gaps of a conversation, trading CPU for latency: up to `period` of one core
    /// after each datagram received.
    pub fn busy_poll(mut self, period: Duration) -> Self {
        self.config.busy_poll = period;
        self
    }

    /// The multicast TTL (default 1: the local network only).
    pub fn multicast_ttl(mut self, ttl: u32) -> Self {
        self.config.multicast_ttl = ttl;
        self
    }

    /// The largest datagram to send, headers included. The default depends on the interface:
    /// 16 KiB on loopback (whose MTU is 64 KiB: fewer, larger datagrams carry more per system
    /// call), 1200 bytes elsewhere (safe on any LAN without fragmenting IP). Raise it on a LAN
    /// with jumbo frames (8972 for a 9000-byte MTU).
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.config.max_datagram = Some(bytes);
        self
    }

    /// Adds a metadata entry that travels in beacons and shows in `peers()`.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.metadata.push((key.into(), value.into()));
        self
    }

    /// Runs without encryption or authentication. Development only: anyone on the network can
    /// read and forge traffic. Logs a warning when the bus starts.
    pub fn insecure(mut self) -> Self {
        self.config.security = Some(Security::Insecure);
        self
    }

    /// Encrypts and authenticates everything with `key`, shared by every peer of the cluster.
    /// Peers without it can neither read nor forge traffic; their packets are dropped.
    pub fn cluster_psk(mut self, key: [u8; 32]) -> Self {
        match &mut self.config.security {
            Some(Security::Psk { cluster, .. }) => *cluster = Some(PresharedKey(key)),
            _ => {
                self.config.security = Some(Security::Psk {
                    cluster: Some(PresharedKey(key)),
                    per_peer: HashMap::new(),
                });
            }
        }
        self
    }

    /// Uses `key` for traffic from and to `peer` (and for what this peer sends, if `peer` is
    /// this bus's own id), instead of the cluster key.
    pub fn peer_psk(mut self, peer: PeerId, key: [u8; 32]) -> Self {
        match &mut self.config.security {
            Some(Security::Psk { per_peer, .. }) => {
                per_peer.insert(peer, PresharedKey(key));
            }
            _ => {
                self.config.security = Some(Security::Psk {
                    cluster: None,
                    per_peer: HashMap::from([(peer, PresharedKey(key))]),
                });
            }
        }
        self
    }

    /// Public-key mode: this peer's key pair (its peer id becomes the hash of its public key,
    /// unless set) and the group key pair every member shares for multicast. Trust peers with
    /// [`BusBuilder::trust`].
    pub fn public_key_mode(mut self, identity: Keypair, group: Keypair) -> Self {
        let mut trusted = match self.config.security.take() {
            Some(Security::PublicKey { trusted, .. }) => trusted,
            _ => HashMap::new(),
        };
        for key in self.config.early_trust.drain(..) {
            trusted.insert(peer_id_of(&key), key);
        }
        self.config.security = Some(Security::PublicKey {
            identity,
            group,
            trusted,
        });
        self
    }

    /// Public-key mode: trusts the peer with `public_key` (its id is the hash of the key).
    /// Before or after [`BusBuilder::public_key_mode`]; a bus that trusts keys but never
    /// chose public-key mode refuses to start.
    pub fn trust(mut self, public_key: [u8; 32]) -> Self {
        match &mut self.config.security {
            Some(Security::PublicKey { trusted, .. }) => {
                trusted.insert(peer_id_of(&public_key), public_key);
            }
            _ => self.config.early_trust.push(public_key),
        }
        self
    }

    /// How many handshakes may be under way before the bus counts as under load and asks
    /// initiators for a cookie round trip first (default 8 of the 16 it computes at once).
    /// 0 asks always: for tests of the cookie path.
    #[doc(hidden)]
    pub fn handshake_load_threshold(mut self, threshold: usize) -> Self {
        self.config.handshake_load_threshold = threshold;
        self
    }

    /// How long a multicast epoch key is used before a new one replaces it (default 120 s).
    pub fn rekey_after(mut self, after: Duration) -> Self {
        self.config.rekey_after = after;
        self
    }

    /// Seeds the bus's random choices (peer id if not set, beacon jitter), for reproducible tests.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.config.rng_seed = Some(seed);
        self
    }

    /// How long a reliable message may take to be acknowledged by every subscriber before its
    /// send fails, naming those that did not (default 5 s).
    pub fn reliable_deadline(mut self, deadline: Duration) -> Self {
        self.config.reliable_deadline = deadline;
        self
    }

    /// The deadline of reliable messages on topic `T`, instead of the bus's default.
    pub fn topic_deadline<T: Topic>(mut self, deadline: Duration) -> Self {
        self.config.topic_deadlines.insert(T::ID, deadline);
        self
    }

    /// The floor of the retransmission timeout toward a peer, whatever its measured round trip
    /// (default 5 ms). Too low, and a scheduling hiccup at the receiver makes the sender
    /// retransmit what was not lost; too high, and a real loss waits that long.
    pub fn min_rto(mut self, floor: Duration) -> Self {
        self.config.min_rto = floor;
        self
    }

    /// When to give up on a subscriber that does not acknowledge: after `misses` reliable
    /// messages in a row passed their deadline without its acknowledgement (default 64; 0:
    /// never), it is reported missing from every message at once and sent nothing, for
    /// `pause` (default 10 s), then owed messages again. Giving up is reported
    /// ([`BusEvent::SubscriberGivenUp`](crate::BusEvent::SubscriberGivenUp)) and counted
    /// (`metrics().reliable.given_up`); the messages are `Undelivered` either way, this only
    /// stops the retransmissions toward a subscriber that is not there.
    pub fn give_up_on_laggards(mut self, misses: u32, pause: Duration) -> Self {
        self.config.give_up_after = misses;
        self.config.given_up_for = pause;
        self
    }

    /// How many peers this one keeps track of at most (default 4096). Beacons of others are
    /// refused and counted (`table_full` in the metrics' drops) until some leave or fall
    /// silent: in plaintext anyone can claim any id, and memory is finite.
    pub fn max_peers(mut self, max_peers: usize) -> Self {
        self.config.max_peers = max_peers;
        self
    }

    /// Whether a reliable message whose events were published with a
    /// [`ReliablePublisher`](crate::ReliablePublisher) is reported as `BusEvent::Delivered` when
    /// everyone owed it acknowledged (default off: only failures are reported, as
    /// `BusEvent::Undelivered`).
    pub fn report_reliable_successes(mut self, on: bool) -> Self {
        self.config.report_reliable_successes = on;
        self
    }

    /// Bytes of reliable-message dedup bitmaps this peer keeps for all senders together at most
    /// (default 16 MiB; senders that are not confirmed peers may hold half). An honest sender
    /// needs a few hundred bytes; a message whose window would grow past the bound is not
    /// acknowledged (`dedup_full` in the metrics' drops) and comes again.
    pub fn max_dedup_bytes(mut self, bytes: usize) -> Self {
        self.config.max_dedup_bytes = bytes;
        self
    }

    /// The largest message this peer sends and receives, encoded (default 16 MiB), the same on
    /// every interface: a message larger than a datagram goes as fragments and is reassembled
    /// by the receiver, which reserves room for at most two such messages per sender and four
    /// in all while they are incomplete. Configure every peer of a cluster alike.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Bytes of one large reliable message (one sent as fragments) in flight toward a peer at
    /// most: sent, and neither reported held by it nor taken for lost (default 256 KiB). Keep
    /// it below the receivers' socket receive buffers, or a burst overflows them; raise it
    /// for a path whose round trip times its rate is larger (10 Gb/s at 1 ms: 1.25 MB).
    pub fn large_message_window(mut self, bytes: usize) -> Self {
        self.config.large_message_window = bytes;
        self
    }

    /// Reliable messages in flight: per peer (count and bytes) and overall. A publisher that
    /// reaches a limit waits (`publish_reliable`) or is told it is busy (`try_publish_reliable`).
    pub fn reliable_window(mut self, limits: WindowLimits) -> Self {
        self.config.window = limits;
        self
    }

    /// Runs over UDP sockets that lose and duplicate outgoing datagrams as `faults` says: for
    /// testing reliability over real sockets.
    #[cfg(feature = "sim")]
    pub fn inject_faults(mut self, faults: crate::transport::Faults) -> Self {
        self.transport = Some(Box::new(move |config| {
            let udp = crate::transport::UdpTransport::bind(&config.udp_options())?;
            Ok(Box::new(crate::transport::FaultyTransport::new(
                udp, faults,
            )))
        }));
        self
    }

    /// Runs the bus over `transport` instead of UDP sockets (for the simulated network).
    pub fn transport<T: Transport>(mut self, transport: T) -> Self {
        self.transport = Some(Box::new(move |_| Ok(Box::new(transport))));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let c = &self.config;
        match &c.security {
            None => {
                return Err(Error::Config(
                    "no security mode chosen: call .cluster_psk(key) (or .peer_psk), or \
                     .insecure() for an unencrypted development bus"
                        .into(),
                ));
            }
            Some(Security::Psk {
                cluster: None,
                per_peer,
            }) if per_peer.is_empty() => {
                return Err(Error::Config(
                    "PSK mode needs a cluster key or peer keys".into(),
                ));
            }
            Some(Security::Psk { cluster, per_peer }) => {
                if cluster.as_ref().is_some_and(|k| k.0 == [0; 32]) {
                    return Err(Error::Config(
                        "the cluster key is all zeros: generate one (`bus keygen FILE`, or \
                         bus_actors::keys::random_key)"
                            .into(),
                    ));
                }
                if let Some((peer, _)) = per_peer.iter().find(|(_, k)| k.0 == [0; 32]) {
                    return Err(Error::Config(format!(
                        "the key for peer {peer} is all zeros: generate one"
                    )));
                }
            }
            Some(Security::PublicKey { identity, .. }) => {
                let own = peer_id_of(identity.public());
                if let Some(chosen) = c.peer_id.filter(|id| *id != own) {
                    return Err(Error::Config(format!(
                        "peer_id {chosen} was chosen, but in public-key mode a peer's id is the \
                         hash of its public key ({own}), and peers refuse any other: drop \
                         .peer_id()"
                    )));
                }
            }
            Some(_) => {}
        }
        if !c.early_trust.is_empty() {
            return Err(Error::Config(format!(
                ".trust() was given {} key(s), but the security mode is not public-key mode: \
                 call .public_key_mode(identity, group) too, or drop .trust()",
                c.early_trust.len()
            )));
        }
        if !(64..=65_507).contains(&c.max_datagram()) {
            return Err(Error::Config(format!(
                "max_datagram is {}, must be between 64 and 65507 bytes",
                c.max_datagram()
            )));
        }
        if c.max_message_size < c.max_datagram() {
            return Err(Error::Config(format!(
                "max_message_size is {} bytes, less than a datagram ({} bytes)",
                c.max_message_size,
                c.max_datagram()
            )));
        }
        if c.large_message_window < 2 * c.max_datagram() {
            return Err(Error::Config(format!(
                "large_message_window is {} bytes, less than two datagrams ({} bytes)",
                c.large_message_window,
                2 * c.max_datagram()
            )));
        }
        if c.busy_poll > Duration::from_secs(1) {
            return Err(Error::Config(format!(
                "busy_poll is {:?}, at most 1 s: it keeps a core busy that long after every datagram",
                c.busy_poll
            )));
        }
        if c.beacon_interval < Duration::from_millis(1) {
            return Err(Error::Config(
                "beacon_interval must be at least 1 ms".into(),
            ));
        }
        if c.group.port() == 0 {
            return Err(Error::Config(format!(
                "group {} has port 0: peers find each other on one fixed port (default {DEFAULT_PORT})",
                c.group
            )));
        }
        if let Some(reason) = c.interface.not_unicast() {
            return Err(Error::Config(format!(
                "interface {:?} is {reason}: name the address of one interface \
                 (127.0.0.1 by default)",
                c.interface
            )));
        }
        if !c.group.ip().is_multicast() {
            return Err(Error::Config(format!(
                "group {} is not a multicast address",
                c.group.ip()
            )));
        }
        if c.group.is_ipv4() != matches!(c.interface, Interface::V4(_)) {
            return Err(Error::Config(format!(
                "group {} and interface {:?} are of different IP versions",
                c.group, c.interface
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_polling_is_off_by_default_and_bounded() {
        assert!(BusBuilder::new().insecure().validate().is_ok());
        assert_eq!(BusBuilder::new().config.busy_poll, Duration::ZERO);
        let too_long = BusBuilder::new()
            .insecure()
            .busy_poll(Duration::from_secs(2))
            .validate();
        assert!(
            matches!(&too_long, Err(Error::Config(m)) if m.contains("busy_poll")),
            "{too_long:?}"
        );
    }

    #[test]
    fn datagrams_are_large_on_loopback_and_lan_sized_elsewhere_unless_set() {
        let loopback = BusBuilder::new().config;
        assert_eq!(loopback.max_datagram(), LOOPBACK_MAX_DATAGRAM);
        let lan = BusBuilder::new()
            .interface(Interface::V4(Ipv4Addr::new(192, 0, 2, 1)))
            .config;
        assert_eq!(lan.max_datagram(), LAN_MAX_DATAGRAM);
        let jumbo = BusBuilder::new()
            .interface(Interface::V4(Ipv4Addr::new(192, 0, 2, 1)))
            .max_datagram(8972)
            .config;
        assert_eq!(jumbo.max_datagram(), 8972);
    }

    #[test]
    fn a_large_message_window_under_two_datagrams_is_refused() {
        let small = BusBuilder::new()
            .insecure()
            .large_message_window(1000)
            .validate();
        assert!(
            matches!(&small, Err(Error::Config(m)) if m.contains("large_message_window is 1000 bytes")),
            "{small:?}"
        );
        let config = BusBuilder::new()
            .insecure()
            .large_message_window(1 << 20)
            .config;
        let local = "127.0.0.1:1".parse().expect("address");
        let endpoint = config.endpoint_config(PeerId([1; 16]), local);
        assert_eq!(endpoint.large_window, 1 << 20);
    }

    fn refusal(builder: BusBuilder) -> String {
        match builder.validate() {
            Err(Error::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    fn keypair(byte: u8) -> Keypair {
        Keypair::from_private([byte; 32]).expect("a key pair")
    }

    #[test]
    fn trust_before_public_key_mode_counts_and_trust_without_it_is_refused() {
        let peer = keypair(3);
        let early = BusBuilder::new()
            .trust(*peer.public())
            .public_key_mode(keypair(1), keypair(2));
        assert!(early.validate().is_ok());
        match &early.config.security {
            Some(Security::PublicKey { trusted, .. }) => {
                assert_eq!(trusted.get(&peer_id_of(peer.public())), Some(peer.public()));
            }
            other => panic!("{other:?}"),
        }
        let message = refusal(BusBuilder::new().cluster_psk([7; 32]).trust(*peer.public()));
        assert!(message.contains(".trust() was given 1 key(s)"), "{message}");
    }

    #[test]
    fn a_peer_id_public_key_mode_would_not_accept_is_refused() {
        let identity = keypair(1);
        let own = peer_id_of(identity.public());
        let chosen = BusBuilder::new()
            .public_key_mode(identity.clone(), keypair(2))
            .peer_id(PeerId([9; 16]));
        let message = refusal(chosen);
        assert!(message.contains(&own.to_string()), "{message}");
        let same = BusBuilder::new()
            .public_key_mode(identity, keypair(2))
            .peer_id(own);
        assert!(same.validate().is_ok());
    }

    #[test]
    fn an_all_zero_key_is_refused() {
        let message = refusal(BusBuilder::new().cluster_psk([0; 32]));
        assert!(message.contains("cluster key is all zeros"), "{message}");
        let message = refusal(BusBuilder::new().peer_psk(PeerId([4; 16]), [0; 32]));
        assert!(message.contains("is all zeros"), "{message}");
    }

    #[test]
    fn group_port_0_and_interfaces_that_are_no_interface_are_refused() {
        let group = "239.255.28.12:0".parse().expect("group");
        let message = refusal(BusBuilder::new().insecure().group(group));
        assert!(message.contains("port 0"), "{message}");
        for (ip, reason) in [
            (Ipv4Addr::UNSPECIFIED, "unspecified"),
            (Ipv4Addr::new(239, 1, 2, 3), "multicast"),
            (Ipv4Addr::BROADCAST, "broadcast"),
        ] {
            let message = refusal(BusBuilder::new().insecure().interface(Interface::V4(ip)));
            assert!(message.contains(reason), "{message}");
        }
    }
}
