//! State shared by the facade and the actors of one bus.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use actix::{Addr, Recipient};
use bus_core::reliability::SendWindow;
use bus_core::wire::{Frame, FrameType, HeaderExtension, HeaderFlags, HeaderRepr, PacketType};
use bus_core::{FrameBatcher, PeerId, TopicId};
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::{Config, Security};
use crate::error::Error;
use crate::messages::{BusEvent, Flush, PeerSnapshot, RawMessages};
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::socket::SocketActor;
use crate::transport::Target;

/// Where a topic's messages go on the network, and who is owed its reliable ones.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    /// Unicast to the one remote subscriber; the group if there are several.
    pub(crate) target: Target,
    /// The remote subscribers, sorted by id.
    pub(crate) subscribers: Arc<[PeerId]>,
}

#[derive(Debug)]
pub(crate) struct LocalSubscription {
    pub(crate) id: u64,
    pub(crate) raw: Recipient<RawMessages>,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) batcher: FrameBatcher<Target>,
    flush_requested: bool,
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, duration_ms)
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A timestamp frame: every packet carries one, so bodies leave room for it.
const TIMESTAMP_FRAME: Frame<'static> = Frame::Timestamp {
    sent_at_us: u64::MAX,
};

/// Bodies sealed per batch handed to the transport (1 MiB of 16 KiB bodies; one GSO call holds
/// at most 64 segments anyway).
const MAX_BODIES_PER_BATCH: usize = 64;

/// The hasher of the maps on the hot paths: randomly seeded like std's SipHash, and much cheaper
/// on the 8- and 16-byte ids they hold (a lookup or two on every publish and every datagram).
pub(crate) type FastHash = foldhash::fast::RandomState;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) local_id: PeerId,
    pub(crate) local_addr: SocketAddr,
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) metrics: Metrics,
    /// Local subscriptions by topic.
    pub(crate) registry: DashMap<TopicId, Vec<LocalSubscription>, FastHash>,
    /// Remote subscribers by topic; absent means nobody remote subscribes.
    pub(crate) routes: RwLock<HashMap<TopicId, Route, FastHash>>,
    pub(crate) peers: DashMap<PeerId, PeerSnapshot, FastHash>,
    pub(crate) outbox: Mutex<Outbox>,
    pub(crate) outbox_space: Notify,
    pub(crate) event_subscribers: Mutex<Vec<Recipient<BusEvent>>>,
    pub(crate) next_subscription_id: AtomicU64,
    pub(crate) packet_counter: AtomicU64,
    pub(crate) socket: OnceLock<Addr<SocketActor>>,
    pub(crate) shut_down: AtomicBool,
    /// Unicast sessions from handshakes (secure modes).
    pub(crate) sessions: Mutex<Sessions>,
    /// Handshake messages to send as they are, ahead of the next batch.
    pub(crate) raw_out: Mutex<Vec<(Target, Vec<u8>)>>,
    /// Our multicast epoch (secure modes), and when it started on our clock.
    pub(crate) epoch: Mutex<Option<(bus_core::crypto::SenderEpoch, bus_core::Instant)>>,
    pub(crate) send_window: Mutex<SendWindow>,
    /// Signalled once per freed slot; a woken publisher that still does not fit waits again.
    pub(crate) window_space: Notify,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        local_id: PeerId,
        local_addr: SocketAddr,
        first_message_id: u64,
    ) -> Shared {
        // The largest header a packet of this mode carries, and its tag.
        let packet_type = if config.security.as_ref().is_some_and(Security::is_insecure) {
            PacketType::Plain
        } else {
            PacketType::MulticastData
        };
        let overhead = packet_type.header_len().unwrap_or(72) + packet_type.trailer_len();
        let max_body = config
            .max_datagram()
            .saturating_sub(overhead + TIMESTAMP_FRAME.encoded_len());
        Shared {
            local_id,
            local_addr,
            clock: Clock::new(),
            metrics: Metrics::default(),
            registry: DashMap::default(),
            routes: RwLock::new(HashMap::default()),
            peers: DashMap::default(),
            outbox: Mutex::new(Outbox {
                batcher: FrameBatcher::new(max_body).pad_full_bodies(),
                flush_requested: false,
            }),
            outbox_space: Notify::new(),
            event_subscribers: Mutex::new(Vec::new()),
            next_subscription_id: AtomicU64::new(1),
            packet_counter: AtomicU64::new(0),
            socket: OnceLock::new(),
            shut_down: AtomicBool::new(false),
            epoch: Mutex::new(None),
            sessions: Mutex::new(Sessions::new(config.rekey_after)),
            raw_out: Mutex::new(Vec::new()),
            send_window: Mutex::new(SendWindow::new(config.window, first_message_id)),
            window_space: Notify::new(),
            config,
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Where a message of `topic` goes; `None` if nobody remote subscribes.
    pub(crate) fn target_of(&self, topic: TopicId) -> Option<Target> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&topic)
            .map(|route| route.target)
    }

    /// The remote subscribers of `topic`, sorted by id; `None` if there are none.
    pub(crate) fn subscribers_of(&self, topic: TopicId) -> Option<Arc<[PeerId]>> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&topic)
            .map(|route| route.subscribers.clone())
    }

    /// Whether a frame of `len` bytes fits in a datagram.
    ///
    /// # Errors
    /// [`Error::Core`] naming both sizes if it does not.
    pub(crate) fn check_fits(&self, len: usize) -> Result<(), Error> {
        let max = lock(&self.outbox).batcher.max_body();
        if len > max {
            return Err(bus_core::FrameTooLarge { len, max }.into());
        }
        Ok(())
    }

    /// Queues a frame and makes sure a flush is coming.
    pub(crate) fn enqueue(&self, target: Target, frame: &Frame<'_>) -> Result<(), Error> {
        self.push(lock(&self.outbox), target, frame)
    }

    fn push(
        &self,
        mut outbox: MutexGuard<'_, Outbox>,
        target: Target,
        frame: &Frame<'_>,
    ) -> Result<(), Error> {
        outbox.batcher.push(&target, frame)?;
        self.metrics.frame_out(frame.frame_type());
        self.request_flush(outbox);
        Ok(())
    }

    /// Queues an encoded frame of type `frame_type` and makes sure a flush is coming.
    pub(crate) fn enqueue_encoded(
        &self,
        target: Target,
        frame_type: FrameType,
        frame: &[u8],
    ) -> Result<(), Error> {
        let mut outbox = lock(&self.outbox);
        outbox.batcher.push_encoded(&target, frame)?;
        self.metrics.frame_out(frame_type);
        self.request_flush(outbox);
        Ok(())
    }

    /// Queues a frame once the outbox has room (at most `outbox_limit` bytes queued).
    pub(crate) async fn enqueue_when_room(
        &self,
        target: Target,
        frame: &Frame<'_>,
    ) -> Result<(), Error> {
        {
            // The common case: room at once, without registering to wait.
            let outbox = lock(&self.outbox);
            if outbox.batcher.queued_bytes() < self.config.outbox_limit {
                return self.push(outbox, target, frame);
            }
        }
        loop {
            let space = self.outbox_space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let outbox = lock(&self.outbox);
                if outbox.batcher.queued_bytes() < self.config.outbox_limit {
                    return self.push(outbox, target, frame);
                }
                // Make sure someone is draining before we wait.
                self.request_flush(outbox);
            }
            space.await;
        }
    }

    fn request_flush(&self, mut outbox: MutexGuard<'_, Outbox>) {
        if !outbox.flush_requested {
            outbox.flush_requested = true;
            drop(outbox);
            if let Some(socket) = self.socket.get() {
                socket.do_send(Flush);
            }
        }
    }

    /// Takes every queued body, wrapped into packets, and the handshake messages waiting.
    ///
    /// Returns `None`, and marks the outbox idle, once nothing was queued. Each body is taken out
    /// under the lock and sealed outside it, so publishers on other threads need not wait for the
    /// encryption; and it is handed back right after, so the next body reuses a buffer still in
    /// the cache (taking them all out first halved 1 KiB throughput).
    pub(crate) fn drain_outbox(&self) -> Option<Vec<(Target, Vec<u8>)>> {
        let mut batch = std::mem::take(&mut *lock(&self.raw_out));
        let mut took = 0;
        // Bounded: with the lock let go while sealing, publishers may keep the outbox filling.
        while took < MAX_BODIES_PER_BATCH {
            let next = {
                let mut outbox = lock(&self.outbox);
                let next = outbox.batcher.poll_body();
                if next.is_none() && took == 0 && batch.is_empty() {
                    outbox.flush_requested = false;
                    return None;
                }
                next
            };
            let Some((target, body)) = next else { break };
            took += 1;
            let packet = self.seal(target, &body);
            lock(&self.outbox).batcher.recycle(body);
            if !packet.is_empty() {
                batch.push((target, packet));
            }
        }
        self.outbox_space.notify_waiters();
        Some(batch)
    }

    /// The security mode (validated at start: always set).
    pub(crate) fn security(&self) -> &Security {
        self.config.security.as_ref().unwrap_or(&Security::Insecure)
    }

    /// Whether a multicast epoch that started at `timestamp_ms` (the sender's wall clock) may
    /// still be in use: not older than the rekey interval plus the allowed clock skew, and not
    /// from further in the future than the skew. Bounds replays of recorded traffic to a
    /// restarted receiver without any state kept across restarts.
    pub(crate) fn epoch_is_fresh(&self, timestamp_ms: u64) -> bool {
        let now = wall_clock_ms();
        let skew = duration_ms(self.config.max_clock_skew);
        let oldest = now.saturating_sub(duration_ms(self.config.rekey_after) + skew);
        (oldest..=now.saturating_add(skew)).contains(&timestamp_ms)
    }

    /// Queues a handshake message, sent as it is with the next flush.
    pub(crate) fn send_raw(&self, target: Target, packet: Vec<u8>) {
        lock(&self.raw_out).push((target, packet));
        if let Some(socket) = self.socket.get() {
            socket.do_send(Flush);
        }
    }

    /// Wraps a body of frames into a packet: in insecure mode a plain header, a timestamp frame
    /// dating the frames, then the body; in PSK mode the same timestamp and body sealed under
    /// the session with the target if there is one, else under our current multicast epoch,
    /// started afresh every `rekey_after`.
    fn seal(&self, target: Target, body: &[u8]) -> Vec<u8> {
        let timestamp = Frame::Timestamp {
            sent_at_us: self.clock.now().as_micros(),
        };
        if !self.security().is_insecure() {
            let mut plaintext = Vec::with_capacity(timestamp.encoded_len() + body.len());
            timestamp.emit(&mut plaintext);
            plaintext.extend_from_slice(body);
            if let Target::Unicast(addr) = target {
                let mut packet = Vec::with_capacity(plaintext.len() + 32);
                let now = self.clock.now();
                if lock(&self.sessions).seal(addr, &plaintext, &mut packet, now) {
                    return packet;
                }
            }
            let now = self.clock.now();
            let mut epoch = lock(&self.epoch);
            let stale = epoch.as_ref().is_none_or(|(e, started)| {
                now - *started >= self.config.rekey_after || e.sent() >= 1 << 32
            });
            if stale {
                match self.security().new_epoch(self.local_id, wall_clock_ms()) {
                    Some(fresh) => *epoch = Some((fresh, now)),
                    None => tracing::error!("no new multicast epoch could be made"),
                }
            }
            let mut packet = Vec::with_capacity(plaintext.len() + 88);
            if let Some((epoch, _)) = epoch.as_mut()
                && epoch.seal(&plaintext, &mut packet).is_ok()
            {
                return packet;
            }
            tracing::error!("a packet could not be sealed and was not sent");
            return Vec::new();
        }
        let header = HeaderRepr {
            suite: 0,
            flags: HeaderFlags::empty(),
            session_index: 0,
            counter: self.packet_counter.fetch_add(1, Ordering::Relaxed),
            extension: HeaderExtension::Plain {
                sender: self.local_id,
            },
        };
        let mut packet =
            Vec::with_capacity(header.buffer_len() + timestamp.encoded_len() + body.len());
        header.emit(&mut packet);
        timestamp.emit(&mut packet);
        packet.extend_from_slice(body);
        packet
    }

    pub(crate) fn emit_event(&self, event: &BusEvent) {
        let mut subscribers = lock(&self.event_subscribers);
        subscribers.retain(|r| r.connected());
        for r in subscribers.iter() {
            r.do_send(event.clone());
        }
    }
}
