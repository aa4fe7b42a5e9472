//! Counters: what came in, what went out, and what was dropped and why. Atomic, so the driver's
//! threads and the application read them without taking the endpoint's lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::FrameType;

/// Why an incoming datagram or frame was dropped.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum DropReason {
    /// Truncated, or a handshake message of the wrong size.
    Truncated,
    /// The first byte names no packet type.
    UnknownPacketType,
    /// A frame type this version does not know.
    UnknownFrameType,
    /// A reserved byte or undefined flag was set.
    ReservedBits,
    /// Any other malformed field.
    Malformed,
    /// A cipher suite outside this peer's policy.
    BadSuite,
    /// A packet type this peer does not accept in its current mode.
    UnsupportedPacket,
    /// A frame this version parses but does not act on yet.
    UnsupportedFrame,
    /// A beacon whose peer id is not the packet's sender.
    SpoofedSender,
    /// A beacon of another protocol version.
    WrongVersion,
    /// A datagram that could not be sent.
    SendFailed,
    /// A reliable message beyond the receiver's window.
    OutOfWindow,
    /// A packet whose tag did not verify: forged, corrupted, or the wrong key.
    AuthFailure,
    /// A counter already seen, or too old for the replay window.
    Replay,
    /// A sender this peer has no key for.
    UnknownPeer,
    /// A multicast epoch too old, or from too far in the future; or a handshake initiation
    /// no newer than the last one accepted from its sender.
    StaleTimestamp,
    /// A handshake message whose mac1 does not verify.
    BadMac,
    /// A handshake refused because too many are being computed already.
    RateLimited,
    /// An initiation answered with a cookie instead of a handshake (the bus is under load).
    CookieSent,
    /// A reliable message of a topic this peer does not subscribe to (any more): neither
    /// delivered nor acknowledged.
    NotSubscribed,
    /// A beacon from a second process claiming a known peer's id (in a previous incarnation).
    DuplicateId,
    /// A packet sealed under a sender's multicast epoch that is not known to have been sent
    /// after this peer started (a replay, or traffic from before the sender answered our
    /// challenge); its sender is challenged.
    Unproven,
    /// A packet sealed under a sender's multicast epoch for another peer (it names its
    /// recipient): a replay of what was sent to someone else.
    Misdirected,
    /// A message or acknowledgement in a unicast packet under a sender's multicast epoch that
    /// names no recipient (only control frames may travel so).
    Unbound,
    /// A beacon of a peer not known yet when the membership table holds as many as it may
    /// (`EndpointConfig::max_peers`).
    TableFull,
    /// A datagram not sent: to an address that has not answered a ping of ours, beyond three
    /// times what came from it (or, for an introduction, from the peer that made it).
    AmplificationLimit,
    /// A reliable message whose dedup window would grow past the bound on all windows
    /// (`EndpointConfig::max_dedup_bytes`): neither delivered nor acknowledged.
    DedupFull,
    /// A fragment whose claimed length or range is out of bounds, or that does not fit the
    /// fragments of its frame already held (another length, a partial overlap); or a
    /// reassembled frame that is not a message.
    FragmentInvalid,
    /// A fragment of a new frame that would take all senders' reassembly past its bound, or
    /// an incomplete frame dropped to make room for a newer one of its sender
    /// ([`crate::fragment::ReassemblyLimits`]).
    ReassemblyFull,
    /// A fragmented frame not complete within its timeout, dropped whole.
    ReassemblyExpired,
    /// A topic description from a peer that does not announce the topic (or not known), or
    /// with an invalid name.
    TopicUnannounced,
    /// An unreliable register write that could not be applied: no such register here, a
    /// value of another type or not decodable, or refused by the register's validation.
    RegisterRefused,
}

impl DropReason {
    /// Every reason, in the order of the counters.
    pub const ALL: [DropReason; 32] = [
        DropReason::Truncated,
        DropReason::UnknownPacketType,
        DropReason::UnknownFrameType,
        DropReason::ReservedBits,
        DropReason::Malformed,
        DropReason::BadSuite,
        DropReason::UnsupportedPacket,
        DropReason::UnsupportedFrame,
        DropReason::SpoofedSender,
        DropReason::WrongVersion,
        DropReason::SendFailed,
        DropReason::OutOfWindow,
        DropReason::AuthFailure,
        DropReason::Replay,
        DropReason::UnknownPeer,
        DropReason::StaleTimestamp,
        DropReason::BadMac,
        DropReason::RateLimited,
        DropReason::CookieSent,
        DropReason::NotSubscribed,
        DropReason::DuplicateId,
        DropReason::Unproven,
        DropReason::Misdirected,
        DropReason::Unbound,
        DropReason::TableFull,
        DropReason::AmplificationLimit,
        DropReason::DedupFull,
        DropReason::FragmentInvalid,
        DropReason::ReassemblyFull,
        DropReason::ReassemblyExpired,
        DropReason::TopicUnannounced,
        DropReason::RegisterRefused,
    ];

    /// A short, stable name for dashboards.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::UnknownPacketType => "unknown_packet_type",
            DropReason::UnknownFrameType => "unknown_frame_type",
            DropReason::ReservedBits => "reserved_bits",
            DropReason::Malformed => "malformed",
            DropReason::BadSuite => "bad_suite",
            DropReason::UnsupportedPacket => "unsupported_packet",
            DropReason::UnsupportedFrame => "unsupported_frame",
            DropReason::SpoofedSender => "spoofed_sender",
            DropReason::WrongVersion => "wrong_version",
            DropReason::SendFailed => "send_failed",
            DropReason::OutOfWindow => "out_of_window",
            DropReason::AuthFailure => "auth_failure",
            DropReason::Replay => "replay",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::StaleTimestamp => "stale_timestamp",
            DropReason::BadMac => "bad_mac",
            DropReason::RateLimited => "rate_limited",
            DropReason::CookieSent => "cookie_sent",
            DropReason::NotSubscribed => "not_subscribed",
            DropReason::DuplicateId => "duplicate_id",
            DropReason::Unproven => "unproven",
            DropReason::Misdirected => "misdirected",
            DropReason::Unbound => "unbound",
            DropReason::TableFull => "table_full",
            DropReason::AmplificationLimit => "amplification_limit",
            DropReason::DedupFull => "dedup_full",
            DropReason::FragmentInvalid => "fragment_invalid",
            DropReason::ReassemblyFull => "reassembly_full",
            DropReason::ReassemblyExpired => "reassembly_expired",
            DropReason::TopicUnannounced => "topic_unannounced",
            DropReason::RegisterRefused => "register_refused",
        }
    }

    /// The drop reason of a fragment refused.
    pub fn of_fragment_refused(e: crate::fragment::FragmentRefused) -> DropReason {
        use crate::fragment::FragmentRefused;
        match e {
            FragmentRefused::OutOfBounds | FragmentRefused::Inconsistent => {
                DropReason::FragmentInvalid
            }
            FragmentRefused::Full => DropReason::ReassemblyFull,
        }
    }

    /// The drop reason of a packet that would not open.
    pub fn of_open_error(e: crate::crypto::OpenError) -> DropReason {
        use crate::crypto::OpenError;
        match e {
            OpenError::Auth => DropReason::AuthFailure,
            OpenError::Replay => DropReason::Replay,
            OpenError::UnknownSender => DropReason::UnknownPeer,
            OpenError::BadSuite(_) => DropReason::BadSuite,
            OpenError::Expired => DropReason::StaleTimestamp,
            _ => DropReason::Malformed,
        }
    }

    /// The drop reason of a handshake message refused.
    pub fn of_handshake_error(e: crate::crypto::handshake::HandshakeError) -> DropReason {
        use crate::crypto::handshake::HandshakeError;
        match e {
            HandshakeError::Malformed => DropReason::Malformed,
            HandshakeError::BadSuite => DropReason::BadSuite,
            HandshakeError::BadMac => DropReason::BadMac,
            HandshakeError::Auth => DropReason::AuthFailure,
            HandshakeError::UnknownIndex => DropReason::UnknownPeer,
        }
    }

    /// The drop reason of bytes that would not decode.
    pub fn of_decode_error(e: &crate::wire::DecodeError) -> DropReason {
        match e.reason() {
            "truncated" => DropReason::Truncated,
            "unknown_packet_type" => DropReason::UnknownPacketType,
            "unknown_frame_type" => DropReason::UnknownFrameType,
            "reserved_bits" => DropReason::ReservedBits,
            _ => DropReason::Malformed,
        }
    }
}

/// The counters of one endpoint. Every method takes `&self`: any thread may count and read.
#[derive(Debug, Default)]
pub struct Metrics {
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    frames_in: [AtomicU64; FrameType::ALL.len()],
    frames_out: [AtomicU64; FrameType::ALL.len()],
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Reliable messages.
    pub reliable: ReliableCounters,
    /// Datagrams authenticated in a unicast session.
    pub session_datagrams_in: AtomicU64,
    /// Copies of fan-out messages sent by unicast to subscribers not known to hear our
    /// multicast.
    pub fanout_unicast: AtomicU64,
    /// The receive buffer granted to the driver's sockets (a gauge).
    socket_recv_buffer: AtomicU64,
}

/// Counters of reliable messages, sent and received.
#[derive(Debug, Default)]
pub struct ReliableCounters {
    /// First copies sent (of reliable messages, each carrying one event or more).
    pub sent: AtomicU64,
    /// Events carried by the messages sent.
    pub events_sent: AtomicU64,
    /// Copies sent again.
    pub retransmitted: AtomicU64,
    /// Events acknowledged, counted once per peer owed them.
    pub acked: AtomicU64,
    /// Events of messages past their deadline with someone missing.
    pub expired: AtomicU64,
    /// Messages received for the first time.
    pub received: AtomicU64,
    /// Events carried by the messages received for the first time.
    pub events_received: AtomicU64,
    /// Copies received again.
    pub duplicates: AtomicU64,
    /// Reliable publishes that found a subscriber's window full (or the bus's).
    pub window_full: AtomicU64,
    /// Subscribers given up on (see `BusEvent::SubscriberGivenUp`).
    pub given_up: AtomicU64,
    /// Pending-message actors alive now.
    pub pending: AtomicU64,
    /// The most pending-message actors ever alive at once.
    pub pending_peak: AtomicU64,
}

impl ReliableCounters {
    /// Adds `by` to `counter`.
    pub fn bump(counter: &AtomicU64, by: u64) {
        bump(counter, by);
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Metrics {
    /// A datagram of `len` bytes arrived.
    pub fn datagram_in(&self, len: usize) {
        bump(&self.datagrams_in, 1);
        bump(&self.bytes_in, len as u64);
    }

    /// `count` datagrams of `bytes` bytes in all were sent.
    pub fn datagrams_out(&self, count: usize, bytes: usize) {
        bump(&self.datagrams_out, count as u64);
        bump(&self.bytes_out, bytes as u64);
    }

    /// A datagram opened in a unicast session.
    pub fn session_datagram_in(&self) {
        bump(&self.session_datagrams_in, 1);
    }

    /// A frame arrived.
    pub fn frame_in(&self, frame_type: FrameType) {
        bump(&self.frames_in[frame_type as usize], 1);
    }

    /// A frame was queued.
    pub fn frame_out(&self, frame_type: FrameType) {
        bump(&self.frames_out[frame_type as usize], 1);
    }

    /// The driver's sockets hold `bytes` of datagrams (the smallest receive buffer granted).
    pub fn socket_recv_buffer(&self, bytes: usize) {
        self.socket_recv_buffer
            .store(bytes as u64, Ordering::Relaxed);
    }

    /// Something was dropped, for `reason`.
    pub fn dropped(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    /// A copy of every counter now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let by_kind = |counters: &[AtomicU64]| {
            FrameType::ALL
                .iter()
                .zip(counters)
                .filter(|(_, c)| read(c) > 0)
                .map(|(t, c)| (t.name(), read(c)))
                .collect()
        };
        MetricsSnapshot {
            datagrams_in: read(&self.datagrams_in),
            datagrams_out: read(&self.datagrams_out),
            bytes_in: read(&self.bytes_in),
            bytes_out: read(&self.bytes_out),
            frames_in: by_kind(&self.frames_in),
            frames_out: by_kind(&self.frames_out),
            drops: DropReason::ALL
                .iter()
                .zip(&self.drops)
                .filter(|(_, c)| read(c) > 0)
                .map(|(r, c)| (r.name(), read(c)))
                .collect(),
            reliable: ReliableStats {
                sent: read(&self.reliable.sent),
                events_sent: read(&self.reliable.events_sent),
                retransmitted: read(&self.reliable.retransmitted),
                acked: read(&self.reliable.acked),
                expired: read(&self.reliable.expired),
                received: read(&self.reliable.received),
                events_received: read(&self.reliable.events_received),
                duplicates: read(&self.reliable.duplicates),
                window_full: read(&self.reliable.window_full),
                given_up: read(&self.reliable.given_up),
                pending: read(&self.reliable.pending),
                pending_peak: read(&self.reliable.pending_peak),
            },
            handshakes: 0,
            session_datagrams_in: read(&self.session_datagrams_in),
            fanout_unicast: read(&self.fanout_unicast),
            // The endpoint's state, not a counter: filled in by whoever holds it.
            reassembly_entries: 0,
            reassembly_bytes: 0,
            socket_recv_buffer: read(&self.socket_recv_buffer),
        }
    }
}

/// A copy of the bus's counters at one moment. Serializes (with serde) as a map of its fields.
#[derive(Clone, Debug, Default, Eq, PartialEq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received, headers included.
    pub bytes_in: u64,
    /// Bytes sent, headers included.
    pub bytes_out: u64,
    /// Frames received, by kind (kinds never seen are absent).
    pub frames_in: BTreeMap<&'static str, u64>,
    /// Frames sent, by kind.
    pub frames_out: BTreeMap<&'static str, u64>,
    /// Datagrams or frames dropped, by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Reliable messages.
    pub reliable: ReliableStats,
    /// Unicast sessions established by handshakes (as initiator or responder).
    pub handshakes: u64,
    /// Datagrams received and authenticated in a unicast session (the rest of the secure
    /// traffic travels under multicast epochs).
    pub session_datagrams_in: u64,
    /// Copies of fan-out messages (two subscribers or more) sent by unicast because their
    /// subscriber is not known to hear this peer's multicast: the fallback for networks
    /// without multicast, and for the first moments after a peer joins.
    pub fanout_unicast: u64,
    /// Messages larger than a datagram being reassembled now (their fragments not all here).
    pub reassembly_entries: u64,
    /// Bytes reserved for them.
    pub reassembly_bytes: u64,
    /// Bytes of datagrams the kernel holds for the bus's sockets before it drops what arrives
    /// (the smallest socket's receive buffer, as granted; 0 if unknown). A burst larger than
    /// this, such as a large message's fragments from several senders at once, loses
    /// datagrams: raise `net.core.rmem_max` (see the book's operations chapter).
    pub socket_recv_buffer: u64,
}

/// Reliable messages, as a sender and as a receiver.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, serde::Serialize)]
pub struct ReliableStats {
    /// Messages sent (first copies; each carries one event or more).
    pub sent: u64,
    /// Events carried by the messages sent.
    pub events_sent: u64,
    /// Copies sent again to peers that had not acknowledged.
    pub retransmitted: u64,
    /// Events acknowledged, counted once per peer owed them.
    pub acked: u64,
    /// Events of messages whose deadline passed before every owed peer acknowledged.
    pub expired: u64,
    /// Messages received for the first time.
    pub received: u64,
    /// Events carried by the messages received for the first time.
    pub events_received: u64,
    /// Copies received again (acknowledged again, not delivered again).
    pub duplicates: u64,
    /// Reliable publishes that found a subscriber's window full, or the bus's: a subscriber
    /// slower than the publisher (see `BusEvent::SubscriberBehind`).
    pub window_full: u64,
    /// Subscribers given up on after missing messages in a row.
    pub given_up: u64,
    /// Pending-message actors alive now.
    pub pending: u64,
    /// The most pending-message actors ever alive at once.
    pub pending_peak: u64,
}

impl MetricsSnapshot {
    /// Frames of one kind received.
    pub fn frames_in(&self, kind: FrameType) -> u64 {
        self.frames_in.get(kind.name()).copied().unwrap_or(0)
    }

    /// Frames of one kind sent.
    pub fn frames_out(&self, kind: FrameType) -> u64 {
        self.frames_out.get(kind.name()).copied().unwrap_or(0)
    }

    /// Drops for one reason.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.name()).copied().unwrap_or(0)
    }

    /// Drops for every reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}
