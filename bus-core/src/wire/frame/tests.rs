use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn parse_one(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let frame = Frame::parse(&mut r)?;
    assert!(r.is_empty(), "{} bytes left over", r.remaining());
    Ok(frame)
}

fn emitted(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame.emit(&mut out);
    assert_eq!(out.len(), frame.encoded_len());
    out
}

static PUBLISH_BYTES: [u8; 21] = [
    0x02, // type
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // topic id 1
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // fingerprint 2
    0x03, 0x91, 0x2a, 0xc3, // payload: MessagePack [42, true]
];

#[test]
fn publish_fixture() {
    let frame = Frame::Publish {
        topic: TopicId(1),
        fingerprint: 2,
        payload: &[0x91, 0x2a, 0xc3],
    };
    assert_eq!(emitted(&frame), PUBLISH_BYTES);
    assert_eq!(parse_one(&PUBLISH_BYTES), Ok(frame));
}

static RELIABLE_BYTES: [u8; 24] = [
    0x03, //
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0xac, 0x02, // message id 300
    0x05, // window: ids down to 295 may still come
    0x02, // two events:
    0x01, 0xaa, // one byte,
    0x00, // and an empty one
];

/// `payloads` encoded as a reliable message's events (leaked: for tests only).
fn events(payloads: &[&[u8]]) -> Payloads<'static> {
    let mut encoded = Vec::new();
    for payload in payloads {
        Payloads::push(&mut encoded, payload);
    }
    Payloads::encoded(payloads.len() as u64, leak(encoded))
}

#[test]
fn reliable_publish_fixture() {
    let frame = Frame::ReliablePublish {
        topic: TopicId(1),
        fingerprint: 2,
        message_id: 300,
        window: 5,
        payloads: events(&[&[0xaa], &[]]),
    };
    assert_eq!(emitted(&frame), RELIABLE_BYTES);
    let parsed = parse_one(&RELIABLE_BYTES);
    assert_eq!(parsed, Ok(frame));
    let Ok(Frame::ReliablePublish { payloads, .. }) = parsed else {
        unreachable!()
    };
    assert_eq!(payloads.iter().collect::<Vec<_>>(), [&[0xaa][..], &[]]);
    // A window reaching below id 0 (301 below 300) is malformed.
    let mut below_zero = RELIABLE_BYTES[..19].to_vec();
    below_zero.extend_from_slice(&[0xad, 0x02, 0x01, 0x00]);
    assert!(matches!(
        parse_one(&below_zero),
        Err(DecodeError::OutOfRange {
            field: "reliable window",
            ..
        })
    ));
    // Fewer events than the count says, or more than the bytes could hold, are malformed.
    let mut short = RELIABLE_BYTES.to_vec();
    short[20] = 3;
    assert!(parse_one(&short).is_err());
    short[20] = 0x7f;
    assert!(parse_one(&short).is_err());
}

/// Acks for 10..=12, 5 and 0..=2: three ranges.
static ACK_BYTES: [u8; 8] = [
    0x04, 0x03, // type, three ranges
    0x0c, 0x02, // largest 12, first range 10..=12
    0x03, 0x00, // gap 3: next range ends at 10 - 3 - 2 = 5, length 0
    0x01, 0x02, // gap 1: ends at 5 - 1 - 2 = 2, spans 0..=2
];

#[test]
fn ack_fixture() {
    let ranges = AckRanges::from_ranges([0..=2, 5..=5, 10..=12]);
    assert_eq!(ranges.ranges(), &[10..=12, 5..=5, 0..=2]);
    let frame = Frame::Ack(ranges);
    assert_eq!(emitted(&frame), ACK_BYTES);
    assert_eq!(parse_one(&ACK_BYTES), Ok(frame));
}

#[test]
fn ack_ranges_merge_overlapping_and_adjacent() {
    #[allow(clippy::reversed_empty_ranges)] // An empty range is ignored.
    let ranges = AckRanges::from_ranges([4..=6, 0..=3, 9..=9, 5..=8, 20..=19]);
    assert_eq!(ranges.ranges(), &[0..=9]);
    assert!(ranges.contains(7));
    assert!(!ranges.contains(10));
    let ranges = AckRanges::from_ranges([7..=7, 3..=3, 5..=5]);
    assert_eq!(ranges.ids().collect::<Vec<_>>(), [7, 5, 3]);
}

#[test]
fn ack_ranges_that_underflow_or_touch_are_rejected() {
    // Range length larger than its end.
    assert_eq!(
        parse_one(&[0x04, 0x01, 0x02, 0x03]),
        Err(DecodeError::InvalidAckRanges)
    );
    // A gap that runs below zero.
    assert_eq!(
        parse_one(&[0x04, 0x02, 0x05, 0x00, 0x04, 0x00]),
        Err(DecodeError::InvalidAckRanges)
    );
}

#[test]
fn beacon_fixture() {
    let frame = Frame::Beacon(Box::new(Beacon {
        peer_id: PeerId([0x11; 16]),
        version: PROTOCOL_VERSION,
        leaving: true,
        wants_reply: false,
        unicast_ip: Some(std::net::Ipv4Addr::new(127, 0, 0, 2).into()),
        unicast_port: 0x1234,
        interval_ms: 1000,
        incarnation: 7,
        topics: vec![TopicId(0x0102_0304_0506_0708)],
        metadata: vec![("role", "pump")],
    }));
    let mut expected = vec![0x01];
    expected.extend_from_slice(&[0x11; 16]);
    expected.extend_from_slice(&[0x01, 0x01, 4, 127, 0, 0, 2, 0x34, 0x12, 0xe8, 0x07]);
    expected.extend_from_slice(&7u64.to_le_bytes());
    expected.extend_from_slice(&[0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
    expected.extend_from_slice(&[
        0x01, 0x04, b'r', b'o', b'l', b'e', 0x04, b'p', b'u', b'm', b'p',
    ]);
    assert_eq!(emitted(&frame), expected);
    assert_eq!(parse_one(&expected), Ok(frame));
}

#[test]
fn beacon_with_reserved_flag_or_bad_utf8_is_rejected() {
    let beacon = Frame::Beacon(Box::new(Beacon {
        peer_id: PeerId([0; 16]),
        version: 1,
        leaving: false,
        wants_reply: false,
        unicast_ip: None,
        unicast_port: 1783,
        interval_ms: 1,
        incarnation: 7,
        topics: vec![],
        metadata: vec![("k", "v")],
    }));
    let bytes = emitted(&beacon);
    let mut flagged = bytes.clone();
    flagged[18] = 0x04;
    assert!(matches!(
        parse_one(&flagged),
        Err(DecodeError::ReservedBitsSet {
            field: "beacon flags",
            ..
        })
    ));
    let mut bad_utf8 = bytes;
    let last = bad_utf8.len() - 1;
    bad_utf8[last] = 0xff;
    assert_eq!(
        parse_one(&bad_utf8),
        Err(DecodeError::InvalidUtf8 {
            field: "metadata value"
        })
    );
}

#[test]
fn ping_pong_fixtures() {
    let ping = Frame::Ping {
        ping_id: 1,
        sent_at_us: 2,
    };
    assert_eq!(emitted(&ping), [0x0f, 0x01, 2, 0, 0, 0, 0, 0, 0, 0]);
    let pong = Frame::Pong {
        ping_id: 1,
        ping_sent_at_us: 2,
        ping_received_at_us: 3,
        sent_at_us: 4,
        hears_your_group: true,
        knows_you_fresh: true,
        incarnation: 5,
        epoch_ms: 6,
        epoch_counter: 7,
    };
    let bytes = emitted(&pong);
    assert_eq!(bytes.len(), 2 + 24 + 1 + 8 + 8 + 1);
    assert_eq!(bytes[26], 3);
    assert_eq!(
        bytes[27..],
        [5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 7]
    );
    assert_eq!(parse_one(&bytes), Ok(pong));
    let mut reserved = bytes;
    reserved[26] = 4;
    assert!(matches!(
        parse_one(&reserved),
        Err(DecodeError::ReservedBitsSet {
            field: "pong flags",
            ..
        })
    ));
}

#[test]
fn timestamp_fixture() {
    let frame = Frame::Timestamp {
        sent_at_us: 0x0102_0304,
    };
    let bytes = emitted(&frame);
    assert_eq!(bytes, [0x11, 0x04, 0x03, 0x02, 0x01, 0, 0, 0, 0]);
    assert_eq!(parse_one(&bytes), Ok(frame));
}

#[test]
fn fragment_must_fit_its_total() {
    let frame = Frame::Fragment {
        message_id: 9,
        total_len: 4,
        offset: 2,
        reliable: false,
        report: false,
        data: &[1, 2],
    };
    let bytes = emitted(&frame);
    assert_eq!(bytes, [0x0e, 0x09, 0x04, 0x02, 0x00, 0x02, 1, 2]);
    assert_eq!(parse_one(&bytes), Ok(frame));
    assert_eq!(
        parse_one(&[0x0e, 0x09, 0x04, 0x02, 0x04, 0x02, 1, 2]),
        Err(DecodeError::ReservedBitsSet {
            field: "fragment flags",
            value: 0x04
        })
    );
    // Offset 3 with two bytes overruns a total of 4.
    assert_eq!(
        parse_one(&[0x0e, 0x09, 0x04, 0x03, 0x00, 0x02, 1, 2]),
        Err(DecodeError::OutOfRange {
            field: "fragment end",
            value: 5,
            max: 4
        })
    );
}

#[test]
fn padding_runs_to_the_end_and_must_be_zero() {
    assert_eq!(parse_one(&[0, 0, 0]), Ok(Frame::Padding { len: 3 }));
    assert_eq!(
        parse_one(&[0, 0, 7]),
        Err(DecodeError::ReservedBitsSet {
            field: "padding",
            value: 7
        })
    );
}

#[test]
fn peers_fixture() {
    let frame = Frame::Peers(vec![
        PeerAddr {
            id: PeerId([0x22; 16]),
            addr: "127.0.0.2:1783".parse().unwrap(),
        },
        PeerAddr {
            id: PeerId([0x33; 16]),
            addr: "[::1]:80".parse().unwrap(),
        },
    ]);
    let mut expected = vec![0x12, 0x02];
    expected.extend_from_slice(&[0x22; 16]);
    expected.extend_from_slice(&[4, 127, 0, 0, 2, 0xf7, 0x06]);
    expected.extend_from_slice(&[0x33; 16]);
    expected.push(6);
    expected.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    expected.extend_from_slice(&[80, 0]);
    assert_eq!(emitted(&frame), expected);
    assert_eq!(parse_one(&expected), Ok(frame));
    let mut bad_family = expected;
    bad_family[2 + 16] = 5;
    assert!(matches!(
        parse_one(&bad_family),
        Err(DecodeError::OutOfRange {
            field: "address family",
            ..
        })
    ));
}

#[test]
fn session_unknown_fixture() {
    let frame = Frame::SessionUnknown { index: 0x0403_0201 };
    let expected = [0x13, 0x01, 0x02, 0x03, 0x04];
    assert_eq!(emitted(&frame), expected);
    assert_eq!(parse_one(&expected), Ok(frame));
    assert!(parse_one(&expected[..4]).is_err(), "truncated");
}

#[test]
fn to_fixture() {
    let frame = Frame::To {
        peer: PeerId([0x42; 16]),
    };
    let mut expected = vec![0x14];
    expected.extend_from_slice(&[0x42; 16]);
    assert_eq!(emitted(&frame), expected);
    assert_eq!(parse_one(&expected), Ok(frame));
}

/// The second and last fragment of a 300-byte reliable frame, at offset 200, with its last
/// 100 bytes, asking for a report (as in the book's wire chapter).
#[test]
fn fragment_fixture() {
    let data = [0xab; 100];
    let frame = Frame::Fragment {
        message_id: 7,
        total_len: 300,
        offset: 200,
        reliable: true,
        report: true,
        data: &data,
    };
    let mut expected = vec![0x0e, 0x07, 0xac, 0x02, 0xc8, 0x01, 0x03, 0x64];
    expected.extend_from_slice(&data);
    assert_eq!(emitted(&frame), expected);
    assert_eq!(parse_one(&expected), Ok(frame));
}

/// A report on fragmented frame 7 of 1000 bytes: of all of them, bytes 0 to 199 and 400 to
/// 599 are held (as in the book's wire chapter).
#[test]
fn fragment_ack_fixture() {
    let frame = Frame::FragmentAck {
        fragment_id: 7,
        span: 0..1000,
        held: AckRanges::from_ranges([0..=199, 400..=599]),
    };
    // The span from 0, 1000 long; two ranges: the highest ends at 599 and spans 199 more; a
    // gap of 199 below its start (bytes 200 to 399: the gap counts from 2 below), then 199 more.
    let expected = [
        0x15, 0x07, 0x00, 0xe8, 0x07, 0x02, 0xd7, 0x04, 0xc7, 0x01, 0xc7, 0x01, 0xc7, 0x01,
    ];
    assert_eq!(emitted(&frame), expected);
    assert_eq!(parse_one(&expected), Ok(frame));
    // A range outside its span is malformed.
    assert_eq!(
        parse_one(&[0x15, 0x07, 0x00, 0xc8, 0x01, 0x01, 0xd7, 0x04, 0xc7, 0x01]),
        Err(DecodeError::InvalidAckRanges)
    );
}

/// A question carrying one typed description: fingerprint 42 of topic "a/b".
#[test]
fn topics_fixture() {
    let frame = Frame::Topics {
        asking: true,
        topics: vec![(42, "a/b")],
    };
    let expected = [
        0x16, 0x01, 0x01, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0x03, b'a', b'/', b'b',
    ];
    assert_eq!(emitted(&frame), expected);
    assert_eq!(parse_one(&expected), Ok(frame));
    assert_eq!(
        parse_one(&[0x16, 0x02, 0x00]),
        Err(DecodeError::ReservedBitsSet {
            field: "topics flags",
            value: 2
        })
    );
}

#[test]
fn unknown_frame_type_stops_the_packet() {
    let mut body = PUBLISH_BYTES.to_vec();
    body.push(0x17);
    body.extend_from_slice(&PUBLISH_BYTES);
    let frames: Vec<_> = Frames::new(&body).collect();
    assert_eq!(frames.len(), 2);
    assert!(frames[0].is_ok());
    assert_eq!(frames[1], Err(DecodeError::UnknownFrameType(0x17)));
}

#[test]
fn many_frames_share_one_body() {
    let frames = [
        Frame::Publish {
            topic: TopicId(1),
            fingerprint: 2,
            payload: b"a",
        },
        Frame::Ack(AckRanges::from_ranges([1..=3])),
        Frame::Ping {
            ping_id: 3,
            sent_at_us: 4,
        },
        Frame::Padding { len: 5 },
    ];
    let mut body = Vec::new();
    for frame in &frames {
        frame.emit(&mut body);
    }
    let parsed: Vec<_> = Frames::new(&body).collect::<Result<_, _>>().unwrap();
    assert_eq!(parsed, frames);
}

#[test]
fn frame_type_bytes_are_their_positions() {
    for (i, t) in FrameType::ALL.iter().enumerate() {
        assert_eq!(*t as usize, i);
        assert_eq!(FrameType::from_byte(i as u8), Ok(*t));
    }
    assert_eq!(
        FrameType::from_byte(0xff),
        Err(DecodeError::UnknownFrameType(0xff))
    );
}

fn leak(bytes: Vec<u8>) -> &'static [u8] {
    Box::leak(bytes.into_boxed_slice())
}

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn payload() -> impl Strategy<Value = &'static [u8]> {
    vec(any::<u8>(), 0..64).prop_map(leak)
}

fn any_frame() -> impl Strategy<Value = Frame<'static>> {
    let beacon = (
        any::<[u8; 16]>(),
        any::<u8>(),
        any::<bool>(),
        any::<u16>(),
        any::<u32>(),
        vec(any::<u64>(), 0..8),
        vec(("[a-z]{0,8}", "\\PC{0,8}"), 0..4),
    )
        .prop_map(|(id, version, leaving, port, interval, topics, meta)| {
            Frame::Beacon(Box::new(Beacon {
                peer_id: PeerId(id),
                version,
                leaving,
                wants_reply: !leaving,
                unicast_ip: None,
                unicast_port: port,
                interval_ms: interval,
                incarnation: 7,
                topics: topics.into_iter().map(TopicId).collect(),
                metadata: meta
                    .into_iter()
                    .map(|(k, v)| (leak_str(k), leak_str(v)))
                    .collect(),
            }))
        });
    let ack = vec((any::<u64>(), 0u64..1000), 0..10).prop_map(|rs| {
        Frame::Ack(AckRanges::from_ranges(
            rs.into_iter().map(|(s, len)| s..=s.saturating_add(len)),
        ))
    });
    let fragment = (
        any::<u64>(),
        payload(),
        (0u64..10_000, 0u64..10_000),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(message_id, data, (before, after), (reliable, report))| Frame::Fragment {
                message_id,
                total_len: before + data.len() as u64 + after,
                offset: before,
                reliable,
                report,
                data,
            },
        );
    let fragment_ack = (
        any::<u64>(),
        vec((1u64 << 20..1 << 40, 0u64..1000), 0..10),
        (0u64..1000, 0u64..1000),
    )
        .prop_map(|(fragment_id, rs, (before, after))| {
            let held = AckRanges::from_ranges(rs.into_iter().map(|(s, len)| s..=s + len));
            let lowest = held.ranges().last().map_or(1 << 20, |r| *r.start());
            let highest = held.ranges().first().map_or(1 << 20, |r| *r.end() + 1);
            Frame::FragmentAck {
                fragment_id,
                span: lowest - before..highest + after,
                held,
            }
        });
    prop_oneof![
        (1usize..100).prop_map(|len| Frame::Padding { len }),
        beacon,
        (any::<u64>(), any::<u64>(), payload()).prop_map(|(t, f, p)| Frame::Publish {
            topic: TopicId(t),
            fingerprint: f,
            payload: p
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            vec(payload(), 0..4)
        )
            .prop_map(|(t, f, id, w, p)| Frame::ReliablePublish {
                topic: TopicId(t),
                fingerprint: f,
                message_id: id,
                window: w.min(id),
                payloads: events(&p),
            }),
        ack,
        (any::<u64>(), any::<u64>(), any::<u64>(), payload()).prop_map(|(r, m, i, p)| {
            Frame::Call {
                request_id: r,
                method: m,
                incarnation: i,
                payload: p,
            }
        }),
        (any::<u64>(), any::<u8>(), payload()).prop_map(|(r, s, p)| Frame::Reply {
            request_id: r,
            status: s,
            payload: p
        }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(r, g, f, i)| {
            Frame::RegisterRead {
                request_id: r,
                register: g,
                fingerprint: f,
                incarnation: i,
            }
        }),
        (
            (any::<u64>(), any::<u64>()),
            (any::<u64>(), any::<u64>()),
            payload()
        )
            .prop_map(|((r, g), (f, i), p)| Frame::RegisterWrite {
                request_id: r,
                register: g,
                fingerprint: f,
                incarnation: i,
                payload: p
            }),
        (any::<u64>(), any::<u64>(), any::<u64>(), payload()).prop_map(|(g, f, i, p)| {
            Frame::RegisterUnreliableWrite {
                register: g,
                fingerprint: f,
                incarnation: i,
                payload: p,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(s, w)| Frame::StreamOpen {
            stream_id: s,
            window: w
        }),
        (any::<u64>(), any::<u64>(), any::<bool>(), payload()).prop_map(|(s, o, fin, d)| {
            Frame::StreamData {
                stream_id: s,
                offset: o,
                fin,
                data: d,
            }
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(s, r, w)| Frame::StreamAck {
            stream_id: s,
            received: r,
            window: w
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(s, c)| Frame::StreamClose {
            stream_id: s,
            code: c
        }),
        fragment,
        fragment_ack,
        (any::<bool>(), vec((any::<u64>(), "[a-z/]{1,20}"), 0..5)).prop_map(|(asking, t)| {
            Frame::Topics {
                asking,
                topics: t
                    .into_iter()
                    .map(|(f, n)| (f, &*Box::leak(n.into_boxed_str())))
                    .collect(),
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(p, t)| Frame::Ping {
            ping_id: p,
            sent_at_us: t
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            (any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(|(p, a, b, c, g, (i, e, n))| Frame::Pong {
                ping_id: p,
                ping_sent_at_us: a,
                ping_received_at_us: b,
                sent_at_us: c,
                hears_your_group: g,
                knows_you_fresh: !g,
                incarnation: i,
                epoch_ms: e,
                epoch_counter: n,
            }),
        any::<u64>().prop_map(|t| Frame::Timestamp { sent_at_us: t }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_frame_round_trips(frame in any_frame()) {
        let bytes = emitted(&frame);
        prop_assert_eq!(parse_one(&bytes), Ok(frame));
    }

    #[test]
    fn frame_sequences_round_trip(frames in vec(any_frame(), 0..8)) {
        // Padding claims the rest of a body, so it can only come last.
        let frames: Vec<_> = frames
            .into_iter()
            .filter(|f| !matches!(f, Frame::Padding { .. }))
            .collect();
        let mut body = Vec::new();
        for frame in &frames {
            frame.emit(&mut body);
        }
        let parsed: Vec<_> = Frames::new(&body).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(parsed, frames);
    }

    #[test]
    fn every_truncation_is_an_error(frame in any_frame()) {
        let bytes = emitted(&frame);
        for len in 0..bytes.len() {
            // Cutting a padding run shortens it; every other frame must notice.
            if matches!(frame, Frame::Padding { .. }) && len > 0 {
                continue;
            }
            prop_assert!(parse_one(&bytes[..len]).is_err(), "len {} of {:?}", len, frame);
        }
    }

    #[test]
    fn decode_then_encode_reproduces_the_input(bytes in vec(any::<u8>(), 0..128)) {
        let mut r = Reader::new(&bytes);
        if let Ok(frame) = Frame::parse(&mut r) {
            let consumed = r.consumed();
            prop_assert_eq!(&emitted(&frame)[..], &bytes[..consumed]);
        }
    }
}
