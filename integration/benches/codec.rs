//! Frame codec: the hand-written varint codec of `bus_core::wire` against MessagePack (rmp-serde)
//! for the same fields, to back the choice recorded in the book's wire-format chapter.

use std::hint::black_box;

use bus_core::TopicId;
use bus_core::wire::{AckRanges, Frame, Reader};
use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

/// The reliable-publish frame's fields as a MessagePack record.
#[derive(Deserialize, Serialize)]
struct ReliablePublishRecord<'a> {
    topic: u64,
    fingerprint: u64,
    message_id: u64,
    window: u64,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

fn codec(c: &mut Criterion) {
    let payload = [0x5a; 64];
    let mut encoded = Vec::new();
    bus_core::wire::Payloads::push(&mut encoded, &payload);
    let frame = Frame::ReliablePublish {
        topic: TopicId::from_name("plant/boiler/temperature"),
        fingerprint: 0x1234_5678_9abc_def0,
        message_id: 123_456,
        window: 12,
        payloads: bus_core::wire::Payloads::encoded(1, &encoded),
    };
    let record = ReliablePublishRecord {
        topic: TopicId::from_name("plant/boiler/temperature").0,
        fingerprint: 0x1234_5678_9abc_def0,
        message_id: 123_456,
        window: 12,
        payload: &payload,
    };
    let mut buf = Vec::with_capacity(256);

    c.bench_function("varint/reliable_publish_64/encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&frame).emit(&mut buf);
            black_box(buf.len())
        })
    });
    let encoded = {
        let mut v = Vec::new();
        frame.emit(&mut v);
        v
    };
    c.bench_function("varint/reliable_publish_64/decode", |b| {
        b.iter(|| Frame::parse(&mut Reader::new(black_box(&encoded))).map(|f| f.frame_type()))
    });

    c.bench_function("msgpack/reliable_publish_64/encode", |b| {
        b.iter(|| {
            buf.clear();
            rmp_serde::encode::write(&mut buf, black_box(&record)).map(|_| buf.len())
        })
    });
    let packed = rmp_serde::to_vec(&record).unwrap_or_default();
    c.bench_function("msgpack/reliable_publish_64/decode", |b| {
        b.iter(|| {
            rmp_serde::from_slice::<ReliablePublishRecord<'_>>(black_box(&packed))
                .map(|r| r.message_id)
        })
    });
    println!(
        "encoded sizes: varint {} bytes, msgpack {} bytes",
        encoded.len(),
        packed.len()
    );

    let ack = Frame::Ack(AckRanges::from_ranges(
        (0..16u64).map(|i| i * 10..=i * 10 + 5),
    ));
    c.bench_function("varint/ack_16_ranges/encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&ack).emit(&mut buf);
            black_box(buf.len())
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
