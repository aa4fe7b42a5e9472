//! Arbitrary, truncated and corrupted datagrams never panic the decoders: they decode or they
//! return an error, and the receiver drops them.

use bus_core::wire::{
    AckRanges, Beacon, DecodeError, Frame, Frames, Header, HeaderExtension, HeaderFlags,
    HeaderRepr, PacketType, Payloads,
};
use bus_core::{PeerId, TopicId};
use proptest::collection::vec;
use proptest::prelude::*;

/// Decodes a datagram the way a receiver does; the count of frames, or the first error.
fn decode(datagram: &[u8]) -> Result<usize, DecodeError> {
    let header = Header::new_checked(datagram)?;
    let mut count = 0;
    for frame in Frames::new(header.payload()) {
        frame?;
        count += 1;
    }
    Ok(count)
}

/// A plain packet holding one frame of every kind but padding: 17 frames.
fn valid_packet() -> Vec<u8> {
    let mut out = Vec::new();
    HeaderRepr {
        suite: 0,
        flags: HeaderFlags::empty(),
        session_index: 0,
        counter: 99,
        extension: HeaderExtension::Plain {
            sender: PeerId([5; 16]),
        },
    }
    .emit(&mut out);
    let frames = [
        Frame::Timestamp { sent_at_us: 42 },
        Frame::Beacon(Box::new(Beacon {
            peer_id: PeerId([5; 16]),
            version: 1,
            leaving: false,
            wants_reply: false,
            unicast_ip: None,
            unicast_port: 40000,
            interval_ms: 1000,
            incarnation: 7,
            topics: vec![TopicId(1), TopicId(2)],
            metadata: vec![("role", "sensor")],
        })),
        Frame::Publish {
            topic: TopicId(1),
            fingerprint: 2,
            payload: b"hello",
        },
        Frame::ReliablePublish {
            topic: TopicId(1),
            fingerprint: 2,
            message_id: 1 << 40,
            window: 3,
            payloads: Payloads::encoded(2, b"\x05world\x01!"),
        },
        Frame::Ack(AckRanges::from_ranges([1..=5, 9..=9, 300..=310])),
        Frame::Call {
            request_id: 7,
            method: 401,
            incarnation: 3,
            payload: b"arg",
        },
        Frame::Reply {
            request_id: 7,
            status: 0,
            payload: b"ret",
        },
        Frame::RegisterRead {
            request_id: 8,
            register: 3,
            fingerprint: 4,
            incarnation: 5,
        },
        Frame::RegisterWrite {
            request_id: 9,
            register: 3,
            fingerprint: 4,
            incarnation: 5,
            payload: b"v",
        },
        Frame::RegisterUnreliableWrite {
            register: 3,
            fingerprint: 4,
            incarnation: 5,
            payload: b"v",
        },
        Frame::StreamOpen {
            stream_id: 1,
            window: 65536,
        },
        Frame::StreamData {
            stream_id: 1,
            offset: 0,
            fin: true,
            data: b"bytes",
        },
        Frame::StreamAck {
            stream_id: 1,
            received: 5,
            window: 65536,
        },
        Frame::StreamClose {
            stream_id: 1,
            code: 0,
        },
        Frame::Fragment {
            message_id: 3,
            total_len: 3000,
            offset: 1200,
            reliable: true,
            report: true,
            data: &[0xab; 32],
        },
        Frame::FragmentAck {
            fragment_id: 3,
            span: 0..3000,
            held: AckRanges::from_ranges([0..=1199, 2400..=2999]),
        },
        Frame::Ping {
            ping_id: 1,
            sent_at_us: 123,
        },
        Frame::Pong {
            ping_id: 1,
            ping_sent_at_us: 123,
            ping_received_at_us: 456,
            sent_at_us: 789,
            hears_your_group: false,
            knows_you_fresh: true,
            incarnation: 7,
            epoch_ms: 8,
            epoch_counter: 9,
        },
    ];
    for frame in &frames {
        frame.emit(&mut out);
    }
    out
}

#[test]
fn the_valid_packet_decodes() {
    assert_eq!(decode(&valid_packet()), Ok(18));
}

#[test]
fn every_truncation_of_a_valid_packet_is_handled() {
    let packet = valid_packet();
    let mut complete = 0;
    for len in 0..packet.len() {
        // Cut inside the header: an error. Cut between frames: fewer frames. Never a panic.
        if let Ok(frames) = decode(&packet[..len]) {
            assert!(len >= 32 && frames < 18, "len {len}: {frames} frames");
            complete += 1;
        }
    }
    // One clean cut after the header and after each of the first 17 frames.
    assert_eq!(complete, 18);
}

#[test]
fn every_single_byte_corruption_is_handled() {
    let packet = valid_packet();
    let mut corrupted = packet.clone();
    let mut rejected = 0;
    for i in 0..packet.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
            corrupted[i] = value;
            rejected += usize::from(decode(&corrupted).is_err());
        }
        corrupted[i] = packet[i];
    }
    // Payload bytes may take any value, structural bytes may not: a good share are rejected.
    assert!(rejected > packet.len(), "only {rejected} rejected");
}

#[test]
fn handshake_sizes_are_exact() {
    for (t, len) in [(0x01u8, 116usize), (0x02, 92), (0x03, 64)] {
        for actual in [len - 1, len, len + 1] {
            let mut bytes = vec![0; actual];
            bytes[0] = t;
            assert_eq!(PacketType::of_datagram(&bytes).is_ok(), actual == len);
        }
    }
}

proptest! {
    // 100k random datagrams, each also decoded as a bare frame body.
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
        for frame in Frames::new(&bytes) {
            let _ = frame;
        }
        let _ = PacketType::of_datagram(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Random edits of a valid packet reach deep into the frame decoders, where purely random
    /// bytes rarely get.
    #[test]
    fn mutated_valid_packets_never_panic(
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut packet = valid_packet();
        for (at, value) in edits {
            let i = at.index(packet.len());
            packet[i] = value;
        }
        let len = cut.index(packet.len() + 1);
        let _ = decode(&packet[..len]);
    }
}
