//! Frames: the messages a packet's body carries, one after another.
//!
//! Every frame starts with a one-byte [`FrameType`]; its body follows with no length prefix of its
//! own, because every field is self-delimiting (fixed width, LEB128 varint, or a varint length
//! followed by that many bytes). An unknown type ends parsing of the packet: its length cannot be
//! known, so the rest of the datagram is dropped and counted.
//!
//! Notation in the diagrams: `u8`, `u16`, `u64` are fixed-width little-endian; `v` is a varint;
//! `bytes` is a varint length followed by that many bytes; `str` is `bytes` holding UTF-8.

use core::ops::RangeInclusive;

use super::DecodeError;
use super::codec::{LenCounter, Reader, Sink};
use crate::{PeerId, TopicId};

/// The protocol version carried in beacons; a peer ignores beacons of another version.
pub const PROTOCOL_VERSION: u8 = 1;

/// The first byte of every frame.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[repr(u8)]
pub enum FrameType {
    /// See [`Frame::Padding`].
    Padding = 0x00,
    /// See [`Frame::Beacon`].
    Beacon = 0x01,
    /// See [`Frame::Publish`].
    Publish = 0x02,
    /// See [`Frame::ReliablePublish`].
    ReliablePublish = 0x03,
    /// See [`Frame::Ack`].
    Ack = 0x04,
    /// See [`Frame::Call`].
    Call = 0x05,
    /// See [`Frame::Reply`].
    Reply = 0x06,
    /// See [`Frame::RegisterRead`].
    RegisterRead = 0x07,
    /// See [`Frame::RegisterWrite`].
    RegisterWrite = 0x08,
    /// See [`Frame::RegisterUnreliableWrite`].
    RegisterUnreliableWrite = 0x09,
    /// See [`Frame::StreamOpen`].
    StreamOpen = 0x0a,
    /// See [`Frame::StreamData`].
    StreamData = 0x0b,
    /// See [`Frame::StreamAck`].
    StreamAck = 0x0c,
    /// See [`Frame::StreamClose`].
    StreamClose = 0x0d,
    /// See [`Frame::Fragment`].
    Fragment = 0x0e,
    /// See [`Frame::Ping`].
    Ping = 0x0f,
    /// See [`Frame::Pong`].
    Pong = 0x10,
    /// See [`Frame::Timestamp`].
    Timestamp = 0x11,
    /// See [`Frame::Peers`].
    Peers = 0x12,
    /// See [`Frame::SessionUnknown`].
    SessionUnknown = 0x13,
    /// See [`Frame::To`].
    To = 0x14,
    /// See [`Frame::FragmentAck`].
    FragmentAck = 0x15,
    /// See [`Frame::Topics`].
    Topics = 0x16,
}

impl FrameType {
    /// Every frame type, in wire order.
    pub const ALL: [FrameType; 23] = [
        FrameType::Padding,
        FrameType::Beacon,
        FrameType::Publish,
        FrameType::ReliablePublish,
        FrameType::Ack,
        FrameType::Call,
        FrameType::Reply,
        FrameType::RegisterRead,
        FrameType::RegisterWrite,
        FrameType::RegisterUnreliableWrite,
        FrameType::StreamOpen,
        FrameType::StreamData,
        FrameType::StreamAck,
        FrameType::StreamClose,
        FrameType::Fragment,
        FrameType::Ping,
        FrameType::Pong,
        FrameType::Timestamp,
        FrameType::Peers,
        FrameType::SessionUnknown,
        FrameType::To,
        FrameType::FragmentAck,
        FrameType::Topics,
    ];

    /// The type named by `byte`.
    pub fn from_byte(byte: u8) -> Result<FrameType, DecodeError> {
        FrameType::ALL
            .get(usize::from(byte))
            .copied()
            .ok_or(DecodeError::UnknownFrameType(byte))
    }

    /// A short, stable name for metrics ("frames by kind").
    pub const fn name(self) -> &'static str {
        match self {
            FrameType::Padding => "padding",
            FrameType::Beacon => "beacon",
            FrameType::Publish => "publish",
            FrameType::ReliablePublish => "reliable_publish",
            FrameType::Ack => "ack",
            FrameType::Call => "call",
            FrameType::Reply => "reply",
            FrameType::RegisterRead => "register_read",
            FrameType::RegisterWrite => "register_write",
            FrameType::RegisterUnreliableWrite => "register_unreliable_write",
            FrameType::StreamOpen => "stream_open",
            FrameType::StreamData => "stream_data",
            FrameType::StreamAck => "stream_ack",
            FrameType::StreamClose => "stream_close",
            FrameType::Fragment => "fragment",
            FrameType::Ping => "ping",
            FrameType::Pong => "pong",
            FrameType::Timestamp => "timestamp",
            FrameType::Peers => "peers",
            FrameType::SessionUnknown => "session_unknown",
            FrameType::To => "to",
            FrameType::FragmentAck => "fragment_ack",
            FrameType::Topics => "topics",
        }
    }
}

const FRAGMENT_RELIABLE: u8 = 0b0000_0001;
const FRAGMENT_REPORT: u8 = 0b0000_0010;
const TOPICS_ASKING: u8 = 0b0000_0001;
const PONG_HEARS_YOUR_GROUP: u8 = 0b0000_0001;
const PONG_KNOWS_YOU_FRESH: u8 = 0b0000_0010;

/// A peer's periodic announcement of itself.
///
/// ```text
/// +------+-------------+---------+-------+--------------+-------------+-----------------+
/// | 0x01 | peer id(16) | version | flags | family u8 | address | unicast port | interval_ms |
/// |      |             |   u8    |  u8   | (0, 4, 6) | 0/4/16  |     u16      |      v      |
/// +------+-------------+---------+-------+-----------+---------+--------------+-------------+
/// | incarnation u64 |
/// +-----------------+
/// | topic count v | topic id u64 ... | entry count v | (key str, value str) ... |
/// +---------------+------------------+---------------+--------------------------+
/// ```
///
/// Flag bit 0 means the peer is leaving (sent on graceful shutdown); bit 1 asks the receiver
/// for its own beacon in return (the sender may have refused the receiver's earlier ones as
/// not known fresh); other bits are reserved. The address is the peer's own unicast address
/// (family 0: none given, the receiver takes the datagram's source): an encrypted peer names
/// it, so that a replay from elsewhere cannot move it.
/// The incarnation is drawn at random when the peer starts: a known id with a new incarnation
/// has restarted, and what was set up with its previous life is void.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Beacon<'a> {
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Its protocol version.
    pub version: u8,
    /// Whether this is the peer's goodbye.
    pub leaving: bool,
    /// Whether the sender asks for the receiver's beacon in return.
    pub wants_reply: bool,
    /// The address of its unicast socket, if it names it; otherwise the beacon's source.
    pub unicast_ip: Option<std::net::IpAddr>,
    /// The port of its unicast socket.
    pub unicast_port: u16,
    /// How often it beacons, so receivers can time its liveness.
    pub interval_ms: u32,
    /// Which life of the peer this is: random, drawn when it started.
    pub incarnation: u64,
    /// The topics it subscribes to.
    pub topics: Vec<TopicId>,
    /// Application-defined metadata (role, version, battery...).
    pub metadata: Vec<(&'a str, &'a str)>,
}

impl Beacon<'_> {
    const LEAVING: u8 = 0b0000_0001;
    const WANTS_REPLY: u8 = 0b0000_0010;
}

/// Acknowledged message ids, as disjoint inclusive ranges from the highest down.
///
/// ```text
/// +------+---------------+---------+---------------+-----------------------+
/// | 0x04 | range count v | largest | first length  | (gap v, length v) ... |
/// |      |               |    v    |      v        |   count - 1 times     |
/// +------+---------------+---------+---------------+-----------------------+
/// ```
///
/// The first range is `largest - first length ..= largest`. Each following range ends `gap + 2`
/// below the previous range's start (ranges never touch) and spans `length + 1` ids. A count of 0
/// carries nothing else.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct AckRanges {
    /// Descending, disjoint, non-adjacent.
    ranges: Vec<RangeInclusive<u64>>,
}

impl AckRanges {
    /// The ranges covering exactly the ids in `ranges`, whatever their order and overlap.
    pub fn from_ranges(ranges: impl IntoIterator<Item = RangeInclusive<u64>>) -> AckRanges {
        let mut sorted: Vec<_> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
        sorted.sort_by(|a, b| b.end().cmp(a.end()));
        let mut merged: Vec<RangeInclusive<u64>> = Vec::with_capacity(sorted.len());
        for range in sorted {
            match merged.last_mut() {
                Some(last) if range.end().saturating_add(1) >= *last.start() => {
                    *last = (*range.start()).min(*last.start())..=*last.end();
                }
                _ => merged.push(range),
            }
        }
        AckRanges { ranges: merged }
    }

    /// The ranges, highest first.
    pub fn ranges(&self) -> &[RangeInclusive<u64>] {
        &self.ranges
    }

    /// Whether `id` is acknowledged.
    pub fn contains(&self, id: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(&id))
    }

    /// Every acknowledged id, highest first.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|r| r.clone().rev())
    }

    fn emit<S: Sink>(&self, out: &mut S) {
        out.put_varint(self.ranges.len() as u64);
        let mut previous_start = None;
        for range in &self.ranges {
            match previous_start {
                None => out.put_varint(*range.end()),
                Some(previous_start) => out.put_varint(previous_start - range.end() - 2),
            }
            out.put_varint(range.end() - range.start());
            previous_start = Some(*range.start());
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<AckRanges, DecodeError> {
        let count = r.count(2, "ack range count")?;
        let mut ranges = Vec::with_capacity(count);
        let mut previous_start: Option<u64> = None;
        for _ in 0..count {
            let end = match previous_start {
                None => r.varint("ack largest")?,
                Some(previous_start) => {
                    let gap = r.varint("ack gap")?;
                    previous_start
                        .checked_sub(gap)
                        .and_then(|x| x.checked_sub(2))
                        .ok_or(DecodeError::InvalidAckRanges)?
                }
            };
            let length = r.varint("ack range length")?;
            let start = end
                .checked_sub(length)
                .ok_or(DecodeError::InvalidAckRanges)?;
            ranges.push(start..=end);
            previous_start = Some(start);
        }
        Ok(AckRanges { ranges })
    }
}

/// One frame, borrowing its variable-length fields from the packet it was parsed from.
///
/// Payloads are opaque here: user messages are MessagePack, decoded by the subscription that wants
/// them, never on the receive path.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Frame<'a> {
    /// Zero bytes up to the end of the packet, hiding the body's length.
    ///
    /// ```text
    /// | 0x00 | 0x00 ... to the end of the packet |
    /// ```
    Padding {
        /// Bytes of padding, the type byte included.
        len: usize,
    },
    /// See [`Beacon`]. Boxed: beacons are rare and large, and every frame is as large as the
    /// largest variant (frames are moved several times each on the receive path).
    Beacon(Box<Beacon<'a>>),
    /// A best-effort message on a topic.
    ///
    /// ```text
    /// | 0x02 | topic id u64 | fingerprint u64 | payload bytes |
    /// ```
    Publish {
        /// The topic.
        topic: TopicId,
        /// The schema fingerprint of the sender's type for the topic.
        fingerprint: u64,
        /// The MessagePack-encoded message.
        payload: &'a [u8],
    },
    /// A reliable message: one or more events of one topic, which the receiver acknowledges
    /// once and delivers once per (sender, message id), in order.
    ///
    /// ```text
    /// | 0x03 | topic id u64 | fingerprint u64 | message id v | window v | count v | count × payload bytes |
    /// ```
    ///
    /// `window`: the sender may still retransmit ids down to `message_id - window` and no lower,
    /// so the receiver can forget what it received below that.
    ReliablePublish {
        /// The topic.
        topic: TopicId,
        /// The schema fingerprint of the sender's type for the topic.
        fingerprint: u64,
        /// Unique per sender; what the receiver acknowledges and deduplicates by.
        message_id: u64,
        /// How far below `message_id` the sender's oldest unfinished message is.
        window: u64,
        /// The MessagePack-encoded events, in the order they were published.
        payloads: Payloads<'a>,
    },
    /// See [`AckRanges`].
    Ack(AckRanges),
    /// A remote procedure call; the server runs it at most once per request id.
    ///
    /// ```text
    /// | 0x05 | request id v | method v | incarnation v | argument bytes |
    /// ```
    Call {
        /// Unique per caller; the reply echoes it.
        request_id: u64,
        /// The method's number.
        method: u64,
        /// The server's life the caller means, from its beacons. A server in another life
        /// (restarted, with no memory of what it ran) drops the call rather than run it twice.
        incarnation: u64,
        /// The MessagePack-encoded argument.
        payload: &'a [u8],
    },
    /// The answer to a call, register read or register write.
    ///
    /// ```text
    /// | 0x06 | request id v | status u8 | payload bytes |
    /// ```
    Reply {
        /// The request answered.
        request_id: u64,
        /// 0 for success; otherwise an error code, and the payload is a short message.
        status: u8,
        /// The MessagePack-encoded result, or the error message.
        payload: &'a [u8],
    },
    /// Reads a register the receiver serves; answered by a [`Frame::Reply`] carrying the
    /// value.
    ///
    /// ```text
    /// | 0x07 | request id v | register v | fingerprint u64 | incarnation v |
    /// ```
    RegisterRead {
        /// Echoed by the reply; from the same sequence as calls' ids.
        request_id: u64,
        /// The register's number: the id of the topic named as the register.
        register: u64,
        /// The schema fingerprint of the reader's type for it: a register of another type
        /// answers that it is.
        fingerprint: u64,
        /// The server's life the reader means, as in [`Frame::Call`].
        incarnation: u64,
    },
    /// Writes a register; answered by an empty [`Frame::Reply`] once applied, or an error.
    /// Applied at most once, as a call runs.
    ///
    /// ```text
    /// | 0x08 | request id v | register v | fingerprint u64 | incarnation v | value bytes |
    /// ```
    RegisterWrite {
        /// Echoed by the reply; from the same sequence as calls' ids.
        request_id: u64,
        /// The register's number.
        register: u64,
        /// The schema fingerprint of the value's type.
        fingerprint: u64,
        /// The server's life the writer means.
        incarnation: u64,
        /// The MessagePack-encoded value.
        payload: &'a [u8],
    },
    /// Writes a register with no answer and no retransmission.
    ///
    /// ```text
    /// | 0x09 | register v | fingerprint u64 | incarnation v | value bytes |
    /// ```
    RegisterUnreliableWrite {
        /// The register's number.
        register: u64,
        /// The schema fingerprint of the value's type.
        fingerprint: u64,
        /// The server's life the writer means.
        incarnation: u64,
        /// The MessagePack-encoded value.
        payload: &'a [u8],
    },
    /// Opens an ordered byte stream.
    ///
    /// ```text
    /// | 0x0a | stream id v | window v |
    /// ```
    StreamOpen {
        /// Chosen by the opener, unique among its streams to this peer.
        stream_id: u64,
        /// How many bytes the opener is prepared to receive.
        window: u64,
    },
    /// Stream bytes at an offset.
    ///
    /// ```text
    /// | 0x0b | stream id v | offset v | flags u8 | data bytes |
    /// ```
    ///
    /// Flag bit 0 (fin): the sender's half ends after this data.
    StreamData {
        /// The stream.
        stream_id: u64,
        /// The position of the first byte of `data` in the stream.
        offset: u64,
        /// Whether the sender's half ends after this data.
        fin: bool,
        /// The bytes.
        data: &'a [u8],
    },
    /// Cumulative acknowledgement and flow-control window of a stream.
    ///
    /// ```text
    /// | 0x0c | stream id v | received v | window v |
    /// ```
    StreamAck {
        /// The stream.
        stream_id: u64,
        /// Every byte below this offset has arrived.
        received: u64,
        /// The sender may send bytes below `received + window`.
        window: u64,
    },
    /// Aborts a stream in both directions.
    ///
    /// ```text
    /// | 0x0d | stream id v | code v |
    /// ```
    StreamClose {
        /// The stream.
        stream_id: u64,
        /// Why: 0 for a normal close, otherwise an application code.
        code: u64,
    },
    /// A piece of a frame too large for one packet; the reassembled bytes are one frame.
    ///
    /// ```text
    /// | 0x0e | message id v | total length v | offset v | flags u8 | data bytes |
    /// ```
    ///
    /// Flag bit 0 (reliable): the sender repairs the frame from [`Frame::FragmentAck`]s;
    /// the receiver of an incomplete one reports when a piece opens a new hole (pieces before
    /// it are missing) and when a piece comes that it holds already. Bit 1 (report): report
    /// now (the sender paces by the reports it asks for).
    Fragment {
        /// Identifies the fragmented frame among the sender's.
        message_id: u64,
        /// The length of the whole frame.
        total_len: u64,
        /// Where `data` goes in it; `offset + data.len() <= total_len`.
        offset: u64,
        /// Whether the sender repairs it from reports.
        reliable: bool,
        /// Whether the sender asks for a report now.
        report: bool,
        /// The piece.
        data: &'a [u8],
    },
    /// Asks for a [`Frame::Pong`], to measure round-trip time and clock offset.
    ///
    /// ```text
    /// | 0x0f | ping id v | sent at u64 |
    /// ```
    Ping {
        /// Echoed by the pong.
        ping_id: u64,
        /// The sender's clock when sent, in microseconds.
        sent_at_us: u64,
    },
    /// Answers a ping with the responder's clock readings (NTP-style).
    ///
    /// ```text
    /// | 0x10 | ping id v | ping sent at u64 | ping received at u64 | sent at u64 | flags u8 |
    /// | incarnation u64 | epoch start u64 | epoch counter v |
    /// ```
    ///
    /// Flag bit 0: the responder hears the pinger's multicast (its group beacons arrived
    /// lately); bit 1: it knows the pinger's multicast packets fresh; other bits are reserved. The rest says which life of the responder answers,
    /// and where its multicast stands: when its current epoch started (ms, its wall clock, as
    /// in the epoch's headers) and the counter its next packet in it will carry. A pong
    /// answering a ping of ours was sent after we started, so its multicast from there on is
    /// fresh (0 and 0 when insecure).
    Pong {
        /// The ping answered.
        ping_id: u64,
        /// The ping's `sent_at_us`, echoed.
        ping_sent_at_us: u64,
        /// The responder's clock when the ping arrived.
        ping_received_at_us: u64,
        /// The responder's clock when the pong left.
        sent_at_us: u64,
        /// Whether the responder hears the pinger's multicast.
        hears_your_group: bool,
        /// Whether the responder knows the pinger's multicast packets fresh (so it takes
        /// them): only then is it routed to.
        knows_you_fresh: bool,
        /// The responder's incarnation.
        incarnation: u64,
        /// When the responder's current multicast epoch started (ms since the Unix epoch).
        epoch_ms: u64,
        /// The counter of the responder's next packet in that epoch.
        epoch_counter: u64,
    },
    /// The sender's clock when the packet left; it dates the frames that follow it in the
    /// packet (one per datagram rather than one per message).
    ///
    /// ```text
    /// | 0x11 | sent at u64 |
    /// ```
    Timestamp {
        /// The sender's clock, in microseconds.
        sent_at_us: u64,
    },
    /// Peers the sender knows, for a receiver that may not hear them (no multicast): it
    /// introduces itself to each with a unicast beacon, and learns of them only from their own.
    ///
    /// ```text
    /// | 0x12 | count v | (peer id (16), family u8 (4 or 6), address (4 or 16), port u16) ... |
    /// ```
    Peers(Vec<PeerAddr>),
    /// A packet sealed under a session the sender does not know (by its session index) came
    /// from the receiver: the receiver drops that session, and a new handshake follows.
    /// Sent at most once a second to a known peer, sealed without the session it names.
    ///
    /// ```text
    /// | 0x13 | session index u32 (little-endian) |
    /// ```
    SessionUnknown {
        /// The session index the packet carried: the sender's index of the session.
        index: u32,
    },
    /// The one peer a packet sealed under the sender's multicast epoch but sent by unicast is
    /// for: first in the packet, authenticated with it. Another peer drops the whole packet;
    /// a unicast epoch packet without it carries control frames only (beacons, pings, pongs,
    /// peers, hints), never messages or acknowledgements.
    ///
    /// ```text
    /// | 0x14 | peer id (16) |
    /// ```
    To {
        /// The recipient.
        peer: PeerId,
    },
    /// What the receiver holds of a span of an incomplete reliable fragmented frame: exactly
    /// the byte ranges given, encoded as an ack's ranges are (see [`AckRanges`]; a range `a..=b`
    /// holds bytes `a` to `b`), every one inside the span. A receiver with more holes than one
    /// frame carries sends several, for spans one after the other.
    ///
    /// ```text
    /// | 0x15 | fragment id v | span start v | span length v | held ranges (as in 0x04) |
    /// ```
    FragmentAck {
        /// The fragmented frame's id, as its fragments carry it.
        fragment_id: u64,
        /// The bytes the report is about: of them, exactly `held` are held.
        span: std::ops::Range<u64>,
        /// The byte ranges held.
        held: AckRanges,
    },
    /// Names and schema fingerprints of topics the sender subscribes to, so that tools show
    /// names instead of ids and untyped publishers send the fingerprint subscribers expect.
    /// Beacons carry only the ids (names would not fit a datagram for long); a peer asks for
    /// descriptions of ids it cannot name (flag bit 0, *asking*, with or without entries of
    /// its own) and is answered by unicast in as many frames as needed. A topic's id is the
    /// hash of its name, so a receiver checks each name against the ids the sender announced.
    /// Fingerprint 0 means the subscription is untyped (any schema).
    ///
    /// ```text
    /// | 0x16 | flags u8 | count v | (fingerprint u64, name str) ... |
    /// ```
    Topics {
        /// Whether the sender asks for the receiver's descriptions in return.
        asking: bool,
        /// (fingerprint, name) of each described topic.
        topics: Vec<(u64, &'a str)>,
    },
}

/// The events of a [`Frame::ReliablePublish`]: `count` length-prefixed byte strings, back to
/// back, as [`Sink::put_bytes`] writes each. Parsing checks that exactly `count` fill the bytes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Payloads<'a> {
    count: u64,
    encoded: &'a [u8],
}

impl<'a> Payloads<'a> {
    /// `count` payloads already encoded back to back in `encoded` (by [`Payloads::push`]).
    pub fn encoded(count: u64, encoded: &'a [u8]) -> Payloads<'a> {
        Payloads { count, encoded }
    }

    /// Appends `payload` to `encoded`, the bytes of a [`Payloads`] being built.
    pub fn push(encoded: &mut Vec<u8>, payload: &[u8]) {
        encoded.put_bytes(payload);
    }

    /// The bytes one more payload of `len` bytes adds.
    pub fn cost(len: usize) -> usize {
        super::varint_len(len as u64) + len
    }

    /// How many there are.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The encoded bytes, every payload with its length.
    pub fn as_encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// The payloads, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let mut r = Reader::new(self.encoded);
        // Checked when parsed (or built here): every one decodes.
        std::iter::from_fn(move || r.bytes("payload").ok()).take(self.count as usize)
    }

    fn parse(r: &mut Reader<'a>) -> Result<Payloads<'a>, DecodeError> {
        // Each takes a byte at least: a count beyond what is left is malformed, not a long loop.
        let count = r.varint_at_most(r.remaining() as u64, "payload count")?;
        let mut probe = r.clone();
        for _ in 0..count {
            probe.bytes("payload")?;
        }
        let encoded = r.take(probe.consumed() - r.consumed(), "payloads")?;
        Ok(Payloads { count, encoded })
    }
}

/// A peer and where its unicast socket is, in a [`Frame::Peers`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PeerAddr {
    /// The peer.
    pub id: PeerId,
    /// Its unicast address.
    pub addr: std::net::SocketAddr,
}

impl<'a> Frame<'a> {
    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Padding { .. } => FrameType::Padding,
            Frame::Beacon(_) => FrameType::Beacon,
            Frame::Publish { .. } => FrameType::Publish,
            Frame::ReliablePublish { .. } => FrameType::ReliablePublish,
            Frame::Ack(_) => FrameType::Ack,
            Frame::Call { .. } => FrameType::Call,
            Frame::Reply { .. } => FrameType::Reply,
            Frame::RegisterRead { .. } => FrameType::RegisterRead,
            Frame::RegisterWrite { .. } => FrameType::RegisterWrite,
            Frame::RegisterUnreliableWrite { .. } => FrameType::RegisterUnreliableWrite,
            Frame::StreamOpen { .. } => FrameType::StreamOpen,
            Frame::StreamData { .. } => FrameType::StreamData,
            Frame::StreamAck { .. } => FrameType::StreamAck,
            Frame::StreamClose { .. } => FrameType::StreamClose,
            Frame::Fragment { .. } => FrameType::Fragment,
            Frame::Ping { .. } => FrameType::Ping,
            Frame::Pong { .. } => FrameType::Pong,
            Frame::Timestamp { .. } => FrameType::Timestamp,
            Frame::Peers(_) => FrameType::Peers,
            Frame::SessionUnknown { .. } => FrameType::SessionUnknown,
            Frame::To { .. } => FrameType::To,
            Frame::FragmentAck { .. } => FrameType::FragmentAck,
            Frame::Topics { .. } => FrameType::Topics,
        }
    }

    /// How many bytes [`Frame::emit`] writes.
    pub fn encoded_len(&self) -> usize {
        let mut counter = LenCounter::default();
        self.emit_to(&mut counter);
        counter.0
    }

    /// Appends the frame to `out`.
    ///
    /// A [`Frame::Padding`] must be the last frame of a packet: it claims everything after it.
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.emit_to(out);
    }

    fn emit_to<S: Sink>(&self, out: &mut S) {
        out.put_u8(self.frame_type() as u8);
        match self {
            Frame::Padding { len } => {
                for _ in 1..*len {
                    out.put_u8(0);
                }
            }
            Frame::Beacon(beacon) => {
                out.put_slice(beacon.peer_id.as_bytes());
                out.put_u8(beacon.version);
                let leaving = if beacon.leaving { Beacon::LEAVING } else { 0 };
                let reply = if beacon.wants_reply {
                    Beacon::WANTS_REPLY
                } else {
                    0
                };
                out.put_u8(leaving | reply);
                match beacon.unicast_ip {
                    None => out.put_u8(0),
                    Some(std::net::IpAddr::V4(ip)) => {
                        out.put_u8(4);
                        out.put_slice(&ip.octets());
                    }
                    Some(std::net::IpAddr::V6(ip)) => {
                        out.put_u8(6);
                        out.put_slice(&ip.octets());
                    }
                }
                out.put_slice(&beacon.unicast_port.to_le_bytes());
                out.put_varint(u64::from(beacon.interval_ms));
                out.put_slice(&beacon.incarnation.to_le_bytes());
                out.put_varint(beacon.topics.len() as u64);
                for topic in &beacon.topics {
                    out.put_slice(&topic.0.to_le_bytes());
                }
                out.put_varint(beacon.metadata.len() as u64);
                for (key, value) in &beacon.metadata {
                    out.put_bytes(key.as_bytes());
                    out.put_bytes(value.as_bytes());
                }
            }
            Frame::Publish {
                topic,
                fingerprint,
                payload,
            } => {
                out.put_slice(&topic.0.to_le_bytes());
                out.put_slice(&fingerprint.to_le_bytes());
                out.put_bytes(payload);
            }
            Frame::ReliablePublish {
                topic,
                fingerprint,
                message_id,
                window,
                payloads,
            } => {
                out.put_slice(&topic.0.to_le_bytes());
                out.put_slice(&fingerprint.to_le_bytes());
                out.put_varint(*message_id);
                out.put_varint(*window);
                out.put_varint(payloads.count);
                out.put_slice(payloads.encoded);
            }
            Frame::Ack(ranges) => ranges.emit(out),
            Frame::Call {
                request_id,
                method,
                incarnation,
                payload,
            } => {
                out.put_varint(*request_id);
                out.put_varint(*method);
                out.put_varint(*incarnation);
                out.put_bytes(payload);
            }
            Frame::Reply {
                request_id,
                status,
                payload,
            } => {
                out.put_varint(*request_id);
                out.put_u8(*status);
                out.put_bytes(payload);
            }
            Frame::RegisterRead {
                request_id,
                register,
                fingerprint,
                incarnation,
            } => {
                out.put_varint(*request_id);
                out.put_varint(*register);
                out.put_slice(&fingerprint.to_le_bytes());
                out.put_varint(*incarnation);
            }
            Frame::RegisterWrite {
                request_id,
                register,
                fingerprint,
                incarnation,
                payload,
            } => {
                out.put_varint(*request_id);
                out.put_varint(*register);
                out.put_slice(&fingerprint.to_le_bytes());
                out.put_varint(*incarnation);
                out.put_bytes(payload);
            }
            Frame::RegisterUnreliableWrite {
                register,
                fingerprint,
                incarnation,
                payload,
            } => {
                out.put_varint(*register);
                out.put_slice(&fingerprint.to_le_bytes());
                out.put_varint(*incarnation);
                out.put_bytes(payload);
            }
            Frame::StreamOpen { stream_id, window } => {
                out.put_varint(*stream_id);
                out.put_varint(*window);
            }
            Frame::StreamData {
                stream_id,
                offset,
                fin,
                data,
            } => {
                out.put_varint(*stream_id);
                out.put_varint(*offset);
                out.put_u8(u8::from(*fin));
                out.put_bytes(data);
            }
            Frame::StreamAck {
                stream_id,
                received,
                window,
            } => {
                out.put_varint(*stream_id);
                out.put_varint(*received);
                out.put_varint(*window);
            }
            Frame::StreamClose { stream_id, code } => {
                out.put_varint(*stream_id);
                out.put_varint(*code);
            }
            Frame::Fragment {
                message_id,
                total_len,
                offset,
                reliable,
                report,
                data,
            } => {
                out.put_varint(*message_id);
                out.put_varint(*total_len);
                out.put_varint(*offset);
                let reliable = if *reliable { FRAGMENT_RELIABLE } else { 0 };
                let report = if *report { FRAGMENT_REPORT } else { 0 };
                out.put_u8(reliable | report);
                out.put_bytes(data);
            }
            Frame::FragmentAck {
                fragment_id,
                span,
                held,
            } => {
                out.put_varint(*fragment_id);
                out.put_varint(span.start);
                out.put_varint(span.end - span.start);
                held.emit(out);
            }
            Frame::Topics { asking, topics } => {
                out.put_u8(if *asking { TOPICS_ASKING } else { 0 });
                out.put_varint(topics.len() as u64);
                for (fingerprint, name) in topics {
                    out.put_slice(&fingerprint.to_le_bytes());
                    out.put_bytes(name.as_bytes());
                }
            }
            Frame::Ping {
                ping_id,
                sent_at_us,
            } => {
                out.put_varint(*ping_id);
                out.put_slice(&sent_at_us.to_le_bytes());
            }
            Frame::Pong {
                ping_id,
                ping_sent_at_us,
                ping_received_at_us,
                sent_at_us,
                hears_your_group,
                knows_you_fresh,
                incarnation,
                epoch_ms,
                epoch_counter,
            } => {
                out.put_varint(*ping_id);
                out.put_slice(&ping_sent_at_us.to_le_bytes());
                out.put_slice(&ping_received_at_us.to_le_bytes());
                out.put_slice(&sent_at_us.to_le_bytes());
                let hears = if *hears_your_group {
                    PONG_HEARS_YOUR_GROUP
                } else {
                    0
                };
                let knows = if *knows_you_fresh {
                    PONG_KNOWS_YOU_FRESH
                } else {
                    0
                };
                out.put_u8(hears | knows);
                out.put_slice(&incarnation.to_le_bytes());
                out.put_slice(&epoch_ms.to_le_bytes());
                out.put_varint(*epoch_counter);
            }
            Frame::Timestamp { sent_at_us } => out.put_slice(&sent_at_us.to_le_bytes()),
            Frame::SessionUnknown { index } => out.put_slice(&index.to_le_bytes()),
            Frame::To { peer } => out.put_slice(peer.as_bytes()),
            Frame::Peers(peers) => {
                out.put_varint(peers.len() as u64);
                for peer in peers {
                    out.put_slice(peer.id.as_bytes());
                    match peer.addr.ip() {
                        std::net::IpAddr::V4(ip) => {
                            out.put_u8(4);
                            out.put_slice(&ip.octets());
                        }
                        std::net::IpAddr::V6(ip) => {
                            out.put_u8(6);
                            out.put_slice(&ip.octets());
                        }
                    }
                    out.put_slice(&peer.addr.port().to_le_bytes());
                }
            }
        }
    }

    /// Parses one frame from the front of `r`.
    ///
    /// # Errors
    /// [`DecodeError`] if the type is unknown or a field is truncated or malformed; `r` is then
    /// left at an unspecified position and the rest of the packet must be dropped.
    pub fn parse(r: &mut Reader<'a>) -> Result<Frame<'a>, DecodeError> {
        let frame_type = FrameType::from_byte(r.u8("frame type")?)?;
        Ok(match frame_type {
            FrameType::Padding => {
                let rest = r.rest();
                if let Some(&value) = rest.iter().find(|&&b| b != 0) {
                    return Err(DecodeError::ReservedBitsSet {
                        field: "padding",
                        value,
                    });
                }
                Frame::Padding {
                    len: rest.len() + 1,
                }
            }
            FrameType::Beacon => Frame::Beacon(Box::new(parse_beacon(r)?)),
            FrameType::Publish => Frame::Publish {
                topic: TopicId(r.u64("topic id")?),
                fingerprint: r.u64("fingerprint")?,
                payload: r.bytes("payload")?,
            },
            FrameType::ReliablePublish => {
                let topic = TopicId(r.u64("topic id")?);
                let fingerprint = r.u64("fingerprint")?;
                let message_id = r.varint("message id")?;
                Frame::ReliablePublish {
                    topic,
                    fingerprint,
                    message_id,
                    window: r.varint_at_most(message_id, "reliable window")?,
                    payloads: Payloads::parse(r)?,
                }
            }
            FrameType::Ack => Frame::Ack(AckRanges::parse(r)?),
            FrameType::Call => Frame::Call {
                request_id: r.varint("request id")?,
                method: r.varint("method")?,
                incarnation: r.varint("incarnation")?,
                payload: r.bytes("payload")?,
            },
            FrameType::Reply => Frame::Reply {
                request_id: r.varint("request id")?,
                status: r.u8("status")?,
                payload: r.bytes("payload")?,
            },
            FrameType::RegisterRead => Frame::RegisterRead {
                request_id: r.varint("request id")?,
                register: r.varint("register")?,
                fingerprint: r.u64("fingerprint")?,
                incarnation: r.varint("incarnation")?,
            },
            FrameType::RegisterWrite => Frame::RegisterWrite {
                request_id: r.varint("request id")?,
                register: r.varint("register")?,
                fingerprint: r.u64("fingerprint")?,
                incarnation: r.varint("incarnation")?,
                payload: r.bytes("payload")?,
            },
            FrameType::RegisterUnreliableWrite => Frame::RegisterUnreliableWrite {
                register: r.varint("register")?,
                fingerprint: r.u64("fingerprint")?,
                incarnation: r.varint("incarnation")?,
                payload: r.bytes("payload")?,
            },
            FrameType::StreamOpen => Frame::StreamOpen {
                stream_id: r.varint("stream id")?,
                window: r.varint("window")?,
            },
            FrameType::StreamData => Frame::StreamData {
                stream_id: r.varint("stream id")?,
                offset: r.varint("offset")?,
                fin: match r.u8("stream flags")? {
                    0 => false,
                    1 => true,
                    value => {
                        return Err(DecodeError::ReservedBitsSet {
                            field: "stream flags",
                            value,
                        });
                    }
                },
                data: r.bytes("data")?,
            },
            FrameType::StreamAck => Frame::StreamAck {
                stream_id: r.varint("stream id")?,
                received: r.varint("received")?,
                window: r.varint("window")?,
            },
            FrameType::StreamClose => Frame::StreamClose {
                stream_id: r.varint("stream id")?,
                code: r.varint("code")?,
            },
            FrameType::Fragment => {
                let message_id = r.varint("message id")?;
                let total_len = r.varint("total length")?;
                let offset = r.varint_at_most(total_len, "fragment offset")?;
                let flags = r.u8("fragment flags")?;
                if flags & !(FRAGMENT_RELIABLE | FRAGMENT_REPORT) != 0 {
                    return Err(DecodeError::ReservedBitsSet {
                        field: "fragment flags",
                        value: flags,
                    });
                }
                let data = r.bytes("data")?;
                let end = offset.saturating_add(data.len() as u64);
                if end > total_len {
                    return Err(DecodeError::OutOfRange {
                        field: "fragment end",
                        value: end,
                        max: total_len,
                    });
                }
                Frame::Fragment {
                    message_id,
                    total_len,
                    offset,
                    reliable: flags & FRAGMENT_RELIABLE != 0,
                    report: flags & FRAGMENT_REPORT != 0,
                    data,
                }
            }
            FrameType::FragmentAck => {
                let fragment_id = r.varint("fragment id")?;
                let start = r.varint("span start")?;
                let end = start
                    .checked_add(r.varint("span length")?)
                    .ok_or(DecodeError::InvalidAckRanges)?;
                let held = AckRanges::parse(r)?;
                let outside = held
                    .ranges()
                    .iter()
                    .any(|range| *range.start() < start || *range.end() >= end);
                if outside {
                    return Err(DecodeError::InvalidAckRanges);
                }
                Frame::FragmentAck {
                    fragment_id,
                    span: start..end,
                    held,
                }
            }
            FrameType::Topics => {
                let flags = r.u8("topics flags")?;
                if flags & !TOPICS_ASKING != 0 {
                    return Err(DecodeError::ReservedBitsSet {
                        field: "topics flags",
                        value: flags,
                    });
                }
                // A fingerprint and a name's length at least.
                let count = r.count(9, "topic count")?;
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push((r.u64("fingerprint")?, r.str("topic name")?));
                }
                Frame::Topics {
                    asking: flags & TOPICS_ASKING != 0,
                    topics,
                }
            }
            FrameType::Ping => Frame::Ping {
                ping_id: r.varint("ping id")?,
                sent_at_us: r.u64("sent at")?,
            },
            FrameType::Pong => {
                let ping_id = r.varint("ping id")?;
                let ping_sent_at_us = r.u64("ping sent at")?;
                let ping_received_at_us = r.u64("ping received at")?;
                let sent_at_us = r.u64("sent at")?;
                let flags = r.u8("pong flags")?;
                if flags & !(PONG_HEARS_YOUR_GROUP | PONG_KNOWS_YOU_FRESH) != 0 {
                    return Err(DecodeError::ReservedBitsSet {
                        field: "pong flags",
                        value: flags,
                    });
                }
                Frame::Pong {
                    ping_id,
                    ping_sent_at_us,
                    ping_received_at_us,
                    sent_at_us,
                    hears_your_group: flags & PONG_HEARS_YOUR_GROUP != 0,
                    knows_you_fresh: flags & PONG_KNOWS_YOU_FRESH != 0,
                    incarnation: r.u64("incarnation")?,
                    epoch_ms: r.u64("epoch start")?,
                    epoch_counter: r.varint("epoch counter")?,
                }
            }
            FrameType::Timestamp => Frame::Timestamp {
                sent_at_us: r.u64("sent at")?,
            },
            FrameType::Peers => Frame::Peers(parse_peers(r)?),
            FrameType::SessionUnknown => Frame::SessionUnknown {
                index: r.u32("session index")?,
            },
            FrameType::To => Frame::To {
                peer: PeerId(r.array("recipient")?),
            },
        })
    }
}

fn parse_peers(r: &mut Reader<'_>) -> Result<Vec<PeerAddr>, DecodeError> {
    // The smallest entry: an id, an IPv4 address and a port.
    let count = r.count(16 + 1 + 4 + 2, "peer count")?;
    let mut peers = Vec::with_capacity(count);
    for _ in 0..count {
        let id = PeerId(r.array("peer id")?);
        let ip = match r.u8("address family")? {
            4 => std::net::IpAddr::from(r.array::<4>("ipv4 address")?),
            6 => std::net::IpAddr::from(r.array::<16>("ipv6 address")?),
            other => {
                return Err(DecodeError::OutOfRange {
                    field: "address family",
                    value: u64::from(other),
                    max: 6,
                });
            }
        };
        let port = r.u16("port")?;
        peers.push(PeerAddr {
            id,
            addr: std::net::SocketAddr::new(ip, port),
        });
    }
    Ok(peers)
}

fn parse_beacon<'a>(r: &mut Reader<'a>) -> Result<Beacon<'a>, DecodeError> {
    let peer_id = PeerId(r.array("peer id")?);
    let version = r.u8("version")?;
    let flags = r.u8("beacon flags")?;
    if flags & !(Beacon::LEAVING | Beacon::WANTS_REPLY) != 0 {
        return Err(DecodeError::ReservedBitsSet {
            field: "beacon flags",
            value: flags,
        });
    }
    let unicast_ip = match r.u8("address family")? {
        0 => None,
        4 => Some(std::net::IpAddr::from(r.array::<4>("ipv4 address")?)),
        6 => Some(std::net::IpAddr::from(r.array::<16>("ipv6 address")?)),
        other => {
            return Err(DecodeError::OutOfRange {
                field: "address family",
                value: u64::from(other),
                max: 6,
            });
        }
    };
    let unicast_port = r.u16("unicast port")?;
    // Fits: bounded by u32::MAX.
    let interval_ms = r.varint_at_most(u64::from(u32::MAX), "beacon interval")? as u32;
    let incarnation = r.u64("incarnation")?;
    let topic_count = r.count(8, "topic count")?;
    let mut topics = Vec::with_capacity(topic_count);
    for _ in 0..topic_count {
        topics.push(TopicId(r.u64("topic id")?));
    }
    let entry_count = r.count(2, "metadata count")?;
    let mut metadata = Vec::with_capacity(entry_count);
    for _ in 0..entry_count {
        metadata.push((r.str("metadata key")?, r.str("metadata value")?));
    }
    Ok(Beacon {
        peer_id,
        version,
        leaving: flags & Beacon::LEAVING != 0,
        wants_reply: flags & Beacon::WANTS_REPLY != 0,
        unicast_ip,
        unicast_port,
        interval_ms,
        incarnation,
        topics,
        metadata,
    })
}

/// The frames of a packet body, in order.
///
/// Yields each frame, or one error and then nothing: after a malformed frame the rest of the body
/// cannot be delimited.
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// The frames in `body`.
    pub fn new(body: &'a [u8]) -> Frames<'a> {
        Frames {
            reader: Reader::new(body),
            failed: false,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let frame = Frame::parse(&mut self.reader);
        self.failed = frame.is_err();
        Some(frame)
    }
}

#[cfg(test)]
mod tests;
