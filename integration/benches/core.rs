//! Hot paths of the core: packet seal/open, the replay and dedup windows, and the retransmission
//! schedule of a reliable message.

#![allow(clippy::expect_used)] // A benchmark that cannot set up has nothing to measure.

use std::hint::black_box;

use bus_core::crypto::ReplayWindow;
use bus_core::crypto::handshake::{Credentials, Initiation, PresharedKey, respond};
use bus_core::reliability::{DedupWindow, ReliableSend};
use bus_core::{Duration, Instant, PeerId};
use criterion::{Criterion, criterion_group, criterion_main};

fn sessions() -> (bus_core::crypto::Session, bus_core::crypto::Session) {
    let psk = Credentials::Psk {
        key: PresharedKey([7; 32]),
        responder: PeerId([2; 16]),
    };
    let (initiation, init) =
        Initiation::start(PeerId([1; 16]), &psk, 1, 1, fresh()).expect("initiation");
    let accepted = respond(&init, &psk, 2, Instant::ZERO, fresh()).expect("response");
    let a = initiation
        .finish(&accepted.response, Instant::ZERO)
        .expect("session");
    (a, accepted.session)
}

fn crypto(c: &mut Criterion) {
    for size in [64usize, 1200, 16_384] {
        let (mut a, mut b) = sessions();
        let body = vec![0x5a; size];
        let mut packet = Vec::with_capacity(size + 64);
        c.bench_function(&format!("session/seal+open/{size}"), |bench| {
            bench.iter(|| {
                packet.clear();
                a.seal(black_box(&body), &mut packet).expect("seal");
                b.open(&mut packet).map(<[u8]>::len)
            })
        });
    }
}

fn windows(c: &mut Criterion) {
    c.bench_function("replay_window/accept_in_order", |bench| {
        let mut window = ReplayWindow::default();
        let mut counter = 0u64;
        bench.iter(|| {
            counter += 1;
            window.accept(black_box(counter))
        })
    });
    c.bench_function("dedup_window/arrival_in_order", |bench| {
        let mut window = DedupWindow::new(0);
        let mut id = 0u64;
        bench.iter(|| {
            id += 1;
            window.on_arrival(black_box(id), id.saturating_sub(100))
        })
    });
}

fn retransmission(c: &mut Criterion) {
    let peers: Vec<(PeerId, Duration)> = (0..3u8)
        .map(|i| (PeerId([i; 16]), Duration::from_millis(5)))
        .collect();
    c.bench_function("reliable_send/new+3_acks+outcome", |bench| {
        bench.iter(|| {
            let mut send = ReliableSend::new(
                Instant::ZERO,
                1,
                peers.iter().copied(),
                Instant::from_millis(5000),
                Duration::from_millis(500),
            );
            for (peer, _) in &peers {
                send.on_ack(*peer);
            }
            send.outcome(Instant::ZERO).map(|r| r.acked.len())
        })
    });
}

criterion_group!(benches, crypto, windows, retransmission);
criterion_main!(benches);

fn fresh() -> bus_core::crypto::noise::Keypair {
    bus_core::crypto::noise::Keypair::generate(&mut rand::rng()).expect("key pair")
}
