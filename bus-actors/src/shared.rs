//! State shared by the facade and the actors of one bus: the endpoint, behind one lock (as
//! quinn shares a connection between its driver and its handles), and what only the actor side
//! keeps (local subscriptions, event subscribers, the wake-ups of waiting publishers).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use actix::Recipient;
use bus_core::endpoint::Endpoint;
use bus_core::metrics::Metrics;
use bus_core::{Instant, PeerId, TopicId};
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::messages::{BusEvent, Flush, RawMessages, ReportTo};

#[derive(Debug)]
pub(crate) struct LocalSubscription {
    pub(crate) id: u64,
    pub(crate) raw: Recipient<RawMessages>,
    /// Which recipient it delivers to (a hash of its address): one subscribes once a topic.
    pub(crate) recipient: u64,
}

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
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) endpoint: Mutex<Endpoint>,
    /// Local subscriptions by topic.
    pub(crate) registry: DashMap<TopicId, Vec<LocalSubscription>, FastHash>,
    /// Signalled when the driver has sent a batch: best-effort publishers waiting for room.
    pub(crate) outbox_space: Notify,
    /// Signalled once per freed slot of the reliable window; a woken publisher that still does
    /// not fit waits again.
    pub(crate) window_space: Notify,
    /// Signalled when a remote peer begins or stops subscribing to a topic.
    pub(crate) subscribers_changed: Notify,
    pub(crate) event_subscribers: Mutex<Vec<Recipient<BusEvent>>>,
    /// Who awaits the outcome of each reliable message still taking events or not yet handed
    /// to its pending actor. Written under the endpoint's lock (an event and its reply are
    /// registered together), so every reply is here when its message is sent.
    pub(crate) replies: Mutex<HashMap<u64, Vec<ReportTo>, FastHash>>,
    pub(crate) next_subscription_id: AtomicU64,
    /// The procedures this peer serves, by number.
    pub(crate) procedures: Mutex<HashMap<u16, crate::rpc::Served, FastHash>>,
    /// The registers this peer serves, by the id of their topic.
    pub(crate) registers: Mutex<HashMap<TopicId, crate::register::ServedRegister, FastHash>>,
    /// Who awaits each call in flight, by call id. Written under the endpoint's lock.
    pub(crate) calls: Mutex<HashMap<u64, actix::Addr<crate::rpc::PendingCallActor>, FastHash>>,
    /// The driver's doorbell: rung when a command queued work while it was idle.
    pub(crate) driver: OnceLock<Recipient<Flush>>,
    pub(crate) shut_down: AtomicBool,
}

impl Shared {
    /// The shared state of a bus whose endpoint was created at `clock`'s now.
    pub(crate) fn new(
        config: Config,
        local_addr: SocketAddr,
        clock: Clock,
        endpoint: Endpoint,
    ) -> Shared {
        Shared {
            local_id: endpoint.local_id(),
            local_addr,
            clock,
            metrics: endpoint.metrics().clone(),
            endpoint: Mutex::new(endpoint),
            registry: DashMap::default(),
            outbox_space: Notify::new(),
            window_space: Notify::new(),
            subscribers_changed: Notify::new(),
            event_subscribers: Mutex::new(Vec::new()),
            replies: Mutex::new(HashMap::default()),
            next_subscription_id: AtomicU64::new(1),
            procedures: Mutex::new(HashMap::default()),
            registers: Mutex::new(HashMap::default()),
            calls: Mutex::new(HashMap::default()),
            driver: OnceLock::new(),
            shut_down: AtomicBool::new(false),
            config,
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    pub(crate) fn endpoint(&self) -> MutexGuard<'_, Endpoint> {
        lock(&self.endpoint)
    }

    /// Runs a command from outside the driver on the endpoint, and wakes the driver if the
    /// command queued work while it was idle.
    pub(crate) fn command<R>(&self, command: impl FnOnce(&mut Endpoint, Instant) -> R) -> R {
        let mut endpoint = self.endpoint();
        let result = command(&mut endpoint, self.clock.now());
        let wake = endpoint.poll_wakeup();
        drop(endpoint);
        if wake {
            self.wake_driver();
        }
        result
    }

    pub(crate) fn wake_driver(&self) {
        if let Some(driver) = self.driver.get() {
            driver.do_send(Flush);
        }
    }

    pub(crate) fn emit_event(&self, event: &BusEvent) {
        let mut subscribers = lock(&self.event_subscribers);
        subscribers.retain(|r| r.connected());
        for r in subscribers.iter() {
            r.do_send(event.clone());
        }
    }
}
