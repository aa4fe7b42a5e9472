//! A transport that loses and duplicates datagrams on purpose, wrapped around another: for
//! testing reliability over real sockets.

use std::cell::RefCell;
use std::net::SocketAddr;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Datagram, SendReport, Target, Transport};

/// What [`FaultyTransport`] does to outgoing datagrams. Probabilities are in `0.0..=1.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is silently not sent.
    pub loss: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is sent after the next one of its batch instead of before.
    pub reorder: f64,
    /// Seed of the random choices.
    pub seed: u64,
    /// Whether to drop every plaintext datagram that carries an acknowledgement: a subscriber
    /// that receives and answers pings but never acknowledges (a laggard, for tests and
    /// benchmarks). Encrypted datagrams cannot be told apart and are left alone.
    pub drop_acks: bool,
}

impl Faults {
    /// No faults: nothing lost, duplicated or dropped.
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        seed: 0,
        drop_acks: false,
    };
}

/// Whether `datagram` is a plaintext packet with an ack frame in it.
fn carries_ack(datagram: &[u8]) -> bool {
    use bus_core::wire::{Frame, Frames, Header};
    let Ok(header) = Header::new_checked(datagram) else {
        return false;
    };
    let body = datagram.get(header.header_len()..).unwrap_or_default();
    Frames::new(body).any(|frame| matches!(frame, Ok(Frame::Ack(_))))
}

/// Wraps a transport and drops, duplicates or reorders what it sends, as [`Faults`] says. Dropped
/// datagrams count as sent: the sender cannot tell, as on a real lossy network.
pub struct FaultyTransport<T> {
    inner: T,
    faults: Faults,
    rng: RefCell<ChaCha8Rng>,
}

impl<T> std::fmt::Debug for FaultyTransport<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyTransport")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> FaultyTransport<T> {
    /// `inner`, made unreliable.
    pub fn new(inner: T, faults: Faults) -> FaultyTransport<T> {
        FaultyTransport {
            inner,
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(faults.seed)),
            faults,
        }
    }
}

impl<T: Transport> Transport for FaultyTransport<T> {
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn recv_buffer(&self) -> Option<usize> {
        self.inner.recv_buffer()
    }

    fn incoming(&mut self) -> LocalBoxStream<'static, Datagram> {
        self.inner.incoming()
    }

    fn send_batch(&self, batch: Vec<(Target, Vec<u8>)>) -> LocalBoxFuture<'static, SendReport> {
        let mut rng = self.rng.borrow_mut();
        let mut kept = Vec::with_capacity(batch.len());
        let mut dropped = SendReport::default();
        for (target, datagram) in batch {
            if rng.random_bool(self.faults.loss)
                || (self.faults.drop_acks && carries_ack(&datagram))
            {
                dropped.sent += 1;
                dropped.bytes += datagram.len();
                continue;
            }
            if rng.random_bool(self.faults.duplicate) {
                kept.push((target, datagram.clone()));
            }
            kept.push((target, datagram));
        }
        // A datagram chosen goes after the one behind it.
        let mut i = 0;
        while i + 1 < kept.len() {
            if rng.random_bool(self.faults.reorder) {
                kept.swap(i, i + 1);
                i += 1;
            }
            i += 1;
        }
        let sending = self.inner.send_batch(kept);
        Box::pin(async move {
            let mut report = sending.await;
            report.sent += dropped.sent;
            report.bytes += dropped.bytes;
            report
        })
    }
}
