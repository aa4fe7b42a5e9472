//! The facade applications hold: start, publish, subscribe, inspect, shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use bus_core::endpoint::{Endpoint, PublishError, Security};
use bus_core::metrics::MetricsSnapshot;
use bus_core::reliability::DeliveryReport;
use bus_core::{Duration, PeerId, Topic, TopicId};
use bytes::Bytes;
use rand::{RngCore, SeedableRng, TryRngCore};
use rand_chacha::ChaCha8Rng;

use crate::config::BusBuilder;
use crate::error::Error;
use crate::messages::{BusEvent, Event, PeerSnapshot, RawMessages, ReportTo, Shutdown};
use crate::scratch::Scratch;
use crate::shared::{LocalSubscription, Shared, lock};
use crate::socket::{SocketActor, snapshot};
use crate::subscription::{Subscription, SubscriptionActor, SubscriptionCounters};
use crate::transport::UdpTransport;

/// What the publish and subscribe paths need of a topic, typed or not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopicKey {
    pub(crate) name: &'static str,
    pub(crate) id: TopicId,
    pub(crate) fingerprint: u64,
}

impl TopicKey {
    pub(crate) const fn of<T: Topic>() -> TopicKey {
        TopicKey {
            name: T::NAME,
            id: T::ID,
            fingerprint: T::FINGERPRINT,
        }
    }
}

/// Which recipient a subscription delivers to: one subscribes once to a topic.
pub(crate) fn recipient_key<M>(recipient: &Recipient<M>) -> u64
where
    M: Message + Send,
    M::Result: Send,
{
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    recipient.hash(&mut hasher);
    hasher.finish()
}

/// The report of a reliable message that nobody remote was owed: local subscribers have it.
fn nobody_owed() -> DeliveryReport {
    DeliveryReport {
        message_id: 0,
        acked: Vec::new(),
        left: Vec::new(),
        missing: Vec::new(),
        retransmissions: 0,
    }
}

/// A running bus: one peer. Cheap to clone; every clone drives the same peer.
///
/// A bus runs until [`Bus::shutdown`]: dropping every handle does not stop it (its actors keep
/// beaconing, acknowledging and delivering to their subscribers, as long as the actix system
/// runs). Shut it down to leave the cluster gracefully.
///
/// # Examples
///
/// ```no_run
/// use actix::prelude::*;
/// use bus_actors::{Bus, Event, Topic};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Deserialize, Serialize, Topic)]
/// #[topic(name = "plant/boiler/temperature")]
/// struct Temperature { sensor: u32, celsius: f64 }
///
/// struct Dashboard;
/// impl Actor for Dashboard { type Context = Context<Self>; }
/// impl Handler<Event<Temperature>> for Dashboard {
///     type Result = ();
///     fn handle(&mut self, ev: Event<Temperature>, _: &mut Context<Self>) {
///         println!("{}: {} °C from {}", ev.message.sensor, ev.message.celsius, ev.from);
///     }
/// }
///
/// #[actix::main]
/// async fn main() -> Result<(), bus_actors::Error> {
///     let bus = Bus::builder().insecure().start().await?;   // loopback unless told otherwise
///     bus.subscribe::<Temperature>(Dashboard.start().recipient()).await?;
///     bus.publish(Temperature { sensor: 7, celsius: 81.5 }).await?;
///     bus.shutdown().await
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Bus {
    pub(crate) shared: Arc<Shared>,
    socket: Addr<SocketActor>,
}

impl BusBuilder {
    /// Opens the sockets (or the configured transport) and starts the bus's actors.
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration that cannot work, [`Error::Socket`] if a socket
    /// cannot be set up, [`Error::NoSystem`] outside an actix system.
    pub async fn start(self) -> Result<Bus, Error> {
        self.validate()?;
        if System::try_current().is_none() {
            return Err(Error::NoSystem);
        }
        let BusBuilder { config, transport } = self;
        if config.security.as_ref().is_some_and(Security::is_insecure) {
            tracing::warn!(
                "bus running in INSECURE mode: traffic is neither encrypted nor authenticated"
            );
        }
        // The endpoint's randomness, keys included, all comes from this seed: drawn from the
        // operating system unless a test fixed it.
        let mut seed = [0u8; 32];
        match config.rng_seed {
            Some(fixed) => ChaCha8Rng::seed_from_u64(fixed).fill_bytes(&mut seed),
            None => rand::rngs::OsRng
                .try_fill_bytes(&mut seed)
                .map_err(|e| Error::Config(format!("no random source: {e}")))?,
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        let local_id = config.peer_id.unwrap_or_else(|| match &config.security {
            Some(Security::PublicKey { identity, .. }) => {
                bus_core::crypto::peer_id_of(identity.public())
            }
            _ => PeerId::random(&mut rng),
        });
        if let Some(security @ Security::Psk { .. }) = &config.security
            && security.psk_of(local_id).is_none()
        {
            return Err(Error::Config(format!(
                "no pre-shared key for this peer ({local_id}): set a cluster key or a peer key for it"
            )));
        }
        let transport = match transport {
            Some(factory) => factory(&config)?,
            None => Box::new(UdpTransport::bind(&config.udp_options())?),
        };
        let local_addr = transport.local_addr();
        let mut endpoint_seed = [0u8; 32];
        rng.fill_bytes(&mut endpoint_seed);
        let clock = crate::clock::Clock::new();
        let endpoint = Endpoint::new(
            config.endpoint_config(local_id, local_addr),
            endpoint_seed,
            clock.now(),
            clock.wall(),
        );
        if let Some(bytes) = transport.recv_buffer() {
            endpoint.metrics().socket_recv_buffer(bytes);
        }
        let shared = Arc::new(Shared::new(config, local_addr, clock, endpoint));
        let socket = SocketActor::new(shared.clone(), transport).start();
        // Invariant: the cell was created empty just above and is set only here.
        let _ = shared.driver.set(socket.clone().recipient());
        Ok(Bus { shared, socket })
    }
}

impl Bus {
    /// A builder with the defaults: loopback, group 239.255.28.12:1783, 1 s beacons.
    pub fn builder() -> BusBuilder {
        BusBuilder::new()
    }

    /// This peer's id.
    pub fn local_id(&self) -> PeerId {
        self.shared.local_id
    }

    /// The address of this peer's unicast socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub(crate) fn check_running(&self) -> Result<(), Error> {
        if self.shared.is_shut_down() {
            return Err(Error::ShutDown);
        }
        Ok(())
    }

    /// Publishes a message with the topic's default reliability: reliably (as
    /// [`Bus::publish_reliable`], waiting for every acknowledgement) for topics derived with
    /// `#[topic(reliable)]`, best effort (as [`Bus::publish_best_effort`]) otherwise.
    ///
    /// # Errors
    /// As the method it stands for.
    pub async fn publish<T: Topic>(&self, message: T) -> Result<(), Error> {
        if T::RELIABLE {
            self.publish_reliable(message).await.map(drop)
        } else {
            self.publish_best_effort(message).await
        }
    }

    /// Publishes a message best-effort: at most once to every subscriber, local and remote, with
    /// no acknowledgement (in the insecure mode, twice if the network duplicates its datagram). Messages published together share datagrams. With no remote
    /// subscriber nothing is sent.
    ///
    /// Waits only if the outbox is full (the network is slower than the publisher).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if it is over `BusBuilder::max_message_size` (a message
    /// larger than a datagram goes as fragments); [`Error::Core`] if it cannot be encoded;
    /// [`Error::ShutDown`] after [`Bus::shutdown`].
    pub async fn publish_best_effort<T: Topic>(&self, message: T) -> Result<(), Error> {
        self.check_running()?;
        let payload = Scratch::encode(&message)?;
        self.publish_encoded(TopicKey::of::<T>(), &payload).await
    }

    /// [`Bus::publish_best_effort`] of a payload already encoded.
    pub(crate) async fn publish_encoded(&self, key: TopicKey, payload: &[u8]) -> Result<(), Error> {
        // Queued unless the outbox is full and someone would be sent it; a message too large
        // is refused whether or not anyone is listening yet.
        let try_publish = || {
            self.shared.command(|endpoint, _| {
                (endpoint.outbox_has_room() || endpoint.subscribers(key.id).is_empty())
                    .then(|| endpoint.publish(key.id, key.fingerprint, payload))
            })
        };
        // The common case: room at once, without registering to wait.
        let mut published = try_publish();
        while published.is_none() {
            let space = self.shared.outbox_space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            published = try_publish();
            if published.is_none() {
                // The driver is sending (the outbox is not idle while it holds anything).
                space.await;
            }
        }
        if let Some(Err(too_large)) = published {
            return Err(Error::MessageTooLarge {
                topic: key.name,
                len: too_large.len,
                max: too_large.max,
                limit: "BusBuilder::max_message_size",
            });
        }
        self.deliver_locally(key, payload);
        Ok(())
    }

    /// Publishes a message reliably: it is delivered exactly once to every subscriber known
    /// now, in any order, retransmitted to each until it acknowledges. Resolves when every one
    /// has acknowledged (or left gracefully, or stopped subscribing), with a report; local
    /// subscribers get it at once. `Ok` means delivered: a subscriber that fell silent is
    /// retried until the deadline (it may come back) and named if it never acknowledges.
    ///
    /// Waits while a subscriber's window of messages in flight is full: a publisher faster than
    /// its slowest subscriber is slowed to its pace, and nothing accepted is dropped.
    ///
    /// # Errors
    /// [`Error::Undelivered`] naming the subscribers that did not acknowledge before the
    /// deadline (the topic's, or the bus's: 5 s by default); [`Error::NoSubscribers`] if no
    /// subscriber, remote or local, is known (see [`Bus::wait_for_subscribers`]);
    /// [`Error::MessageTooLarge`] if it is over `BusBuilder::max_message_size`; [`Error::Core`]
    /// if it cannot be encoded; [`Error::ShutDown`] after
    /// [`Bus::shutdown`].
    pub async fn publish_reliable<T: Topic>(&self, message: T) -> Result<DeliveryReport, Error> {
        let deadline = self.deadline_of(T::ID);
        self.send_reliable(message, deadline, true).await
    }

    /// [`Bus::publish_reliable`] with a deadline of its own for this message. Receivers keep
    /// what they need to deliver each message once for the longest deadline they are
    /// configured with: a deadline longer than the cluster's configured ones
    /// ([`BusBuilder::reliable_deadline`], [`BusBuilder::topic_deadline`]) can outlive it.
    ///
    /// # Errors
    /// As [`Bus::publish_reliable`].
    pub async fn publish_reliable_within<T: Topic>(
        &self,
        message: T,
        deadline: Duration,
    ) -> Result<DeliveryReport, Error> {
        self.send_reliable(message, deadline, true).await
    }

    /// [`Bus::publish_reliable`], except that when a window is full it fails at once with
    /// [`Error::Busy`] instead of waiting.
    ///
    /// # Errors
    /// [`Error::Busy`] naming the full window; otherwise as [`Bus::publish_reliable`].
    pub async fn try_publish_reliable<T: Topic>(
        &self,
        message: T,
    ) -> Result<DeliveryReport, Error> {
        let deadline = self.deadline_of(T::ID);
        self.send_reliable(message, deadline, false).await
    }

    pub(crate) fn deadline_of(&self, topic: TopicId) -> Duration {
        let config = &self.shared.config;
        config
            .topic_deadlines
            .get(&topic)
            .copied()
            .unwrap_or(config.reliable_deadline)
    }

    async fn send_reliable<T: Topic>(
        &self,
        message: T,
        deadline: Duration,
        wait_for_room: bool,
    ) -> Result<DeliveryReport, Error> {
        self.check_running()?;
        let payload = Scratch::encode(&message)?;
        let key = TopicKey::of::<T>();
        let report = self
            .start_reliable(key, &payload, deadline, wait_for_room)
            .await?;
        // Back to the thread's scratch before waiting for acknowledgements.
        drop(payload);
        Self::reliable_outcome(key, report).await
    }

    /// Hands a reliable event to the endpoint and this bus's own subscribers; the report of
    /// the message that carries it comes on the receiver, if anyone remote is owed it.
    pub(crate) async fn start_reliable(
        &self,
        key: TopicKey,
        payload: &[u8],
        deadline: Duration,
        wait_for_room: bool,
    ) -> Result<Result<tokio::sync::oneshot::Receiver<DeliveryReport>, DeliveryReport>, Error> {
        let (reply, report) = tokio::sync::oneshot::channel();
        let reply = ReportTo::Caller(reply);
        if !self
            .open_reliable(key, payload, deadline, wait_for_room, Some(reply))
            .await?
        {
            return self
                .deliver_only_locally(key, payload)
                .map(|()| Err(nobody_owed()));
        }
        self.deliver_locally(key, payload);
        Ok(Ok(report))
    }

    /// The outcome of a reliable event [`Bus::start_reliable`] started: `Ok` if delivered.
    pub(crate) async fn reliable_outcome(
        key: TopicKey,
        report: Result<tokio::sync::oneshot::Receiver<DeliveryReport>, DeliveryReport>,
    ) -> Result<DeliveryReport, Error> {
        let report = match report {
            Ok(pending) => pending.await.map_err(|_| Error::ShutDown)?,
            Err(nobody_owed) => return Ok(nobody_owed),
        };
        if report.is_complete() {
            Ok(report)
        } else {
            Err(Error::Undelivered {
                topic: key.name,
                report,
            })
        }
    }

    /// Publishes every message of `messages` reliably, as [`Bus::publish_reliable`] would each,
    /// and resolves when all of them have an outcome, with their reports in order. A burst
    /// published this way costs less per message than as many `publish_reliable` calls: one
    /// future and one wait for the lot.
    ///
    /// A message that is not acknowledged by everyone owed it before the deadline is not an
    /// error here: its report names the subscribers missing
    /// ([`DeliveryReport::is_complete`] is false).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if a message is over `BusBuilder::max_message_size`;
    /// [`Error::Core`] if it cannot be encoded; [`Error::NoSubscribers`] when a message has no subscriber at all;
    /// [`Error::ShutDown`] after [`Bus::shutdown`]. The messages before the one that failed are published all the
    /// same, but their reports are not returned.
    pub async fn publish_reliable_batch<T: Topic>(
        &self,
        messages: impl IntoIterator<Item = T>,
    ) -> Result<Vec<DeliveryReport>, Error> {
        self.check_running()?;
        let deadline = self.deadline_of(T::ID);
        let key = TopicKey::of::<T>();
        let (to, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let mut reports: Vec<Option<DeliveryReport>> = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            reports.push(None);
            let payload = Scratch::encode(&message)?;
            let reply = ReportTo::Batch {
                index,
                to: to.clone(),
            };
            if !self
                .open_reliable(key, &payload, deadline, true, Some(reply))
                .await?
            {
                self.deliver_only_locally(key, &payload)?;
                reports[index] = Some(nobody_owed());
                continue;
            }
            self.deliver_locally(key, &payload);
        }
        drop(to);
        while let Some((index, report)) = outcomes.recv().await {
            if let Some(slot) = reports.get_mut(index) {
                *slot = Some(report);
            }
        }
        reports
            .into_iter()
            .map(|report| report.ok_or(Error::ShutDown))
            .collect()
    }

    /// A handle that publishes reliable messages of `T` one by one without a future per
    /// message waiting for its outcome: each is accepted into the window (or refused as busy),
    /// and the outcome of the reliable message that carries it is reported on the bus's event
    /// stream if it fails, as [`BusEvent::Undelivered`] (and, with
    /// [`BusBuilder::report_reliable_successes`], as [`BusEvent::Delivered`] if it does not).
    /// For high-rate producers; [`Bus::publish_reliable`] gives each message its report.
    pub fn reliable_publisher<T: Topic>(&self) -> ReliablePublisher<T> {
        ReliablePublisher {
            deadline: self.deadline_of(T::ID),
            bus: self.clone(),
            _topic: std::marker::PhantomData,
        }
    }

    /// Hands a reliable event of `T` to the endpoint, waiting for room in the window if asked
    /// to, and registers `reply` for the outcome of the message that carries it (under the
    /// endpoint's lock, so before that message can finish). Returns whether anyone remote is
    /// owed it.
    async fn open_reliable(
        &self,
        key: TopicKey,
        payload: &[u8],
        deadline: Duration,
        wait_for_room: bool,
        reply: Option<ReportTo>,
    ) -> Result<bool, Error> {
        self.open_reliable_to(None, key, payload, (deadline, wait_for_room), reply)
            .await
    }

    /// [`Bus::open_reliable`] to `to` alone if it is given, otherwise to the topic's
    /// subscribers.
    pub(crate) async fn open_reliable_to(
        &self,
        to: Option<PeerId>,
        key: TopicKey,
        payload: &[u8],
        (deadline, wait_for_room): (Duration, bool),
        mut reply: Option<ReportTo>,
    ) -> Result<bool, Error> {
        loop {
            let room = self.shared.window_space.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let opened = self.shared.command(|endpoint, now| {
                let topic = (key.id, key.fingerprint);
                let opened = match to {
                    Some(peer) => endpoint
                        .send_reliable_to(now, peer, topic, payload, deadline)
                        .map(Some),
                    None => {
                        endpoint.publish_reliable(now, key.id, key.fingerprint, payload, deadline)
                    }
                };
                if let Ok(Some(message_id)) = &opened
                    && let Some(reply) = reply.take()
                {
                    lock(&self.shared.replies)
                        .entry(*message_id)
                        .or_default()
                        .push(reply);
                }
                opened
            });
            match opened {
                Ok(opened) => return Ok(opened.is_some()),
                Err(PublishError::Busy(_)) if wait_for_room => {}
                Err(refused) => return Err(crate::direct::refusal(key, refused)),
            }
            room.await;
            self.check_running()?;
        }
    }

    /// Delivers a reliable message nobody remote is owed to this bus's own subscribers of `T`.
    ///
    /// # Errors
    /// [`Error::NoSubscribers`] if there are none either: nothing was delivered, and `Ok`
    /// would say otherwise.
    pub(crate) fn deliver_only_locally(&self, key: TopicKey, payload: &[u8]) -> Result<(), Error> {
        let local = self
            .shared
            .registry
            .get(&key.id)
            .is_some_and(|subscriptions| !subscriptions.is_empty());
        if !local {
            return Err(Error::NoSubscribers { topic: key.name });
        }
        self.deliver_locally(key, payload);
        Ok(())
    }

    /// Waits until at least `count` remote peers subscribe to `T` (for example before a first
    /// reliable publish, which is owed only to the subscribers known when it is sent).
    ///
    /// # Errors
    /// [`Error::Timeout`] if there are fewer after `timeout`; [`Error::ShutDown`] after
    /// [`Bus::shutdown`].
    pub async fn wait_for_subscribers<T: Topic>(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.subscribers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            self.check_running()?;
            if self.shared.endpoint().subscribers(T::ID).len() >= count {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(Error::Timeout {
                    waiting_for: format!("{count} remote subscribers of {}", T::NAME),
                    after: timeout,
                });
            }
        }
    }

    /// Hands a payload to this bus's own subscribers of a topic, copying it only if there are
    /// any.
    pub(crate) fn deliver_locally(&self, key: TopicKey, payload: &[u8]) {
        if let Some(subscriptions) = self.shared.registry.get(&key.id) {
            let payloads: Arc<[(u64, Bytes)]> =
                Arc::new([(key.fingerprint, Bytes::copy_from_slice(payload))]);
            let now = self.shared.clock.now();
            for sub in subscriptions.iter() {
                sub.raw.do_send(RawMessages {
                    from: self.shared.local_id,
                    payloads: payloads.clone(),
                    received_at: now,
                    sent_at: Some(now),
                });
            }
        }
    }

    /// Subscribes `recipient` to topic `T`: a subscription actor is spawned that decodes each
    /// message and delivers it as an [`Event<T>`]. The subscription ends when the recipient's
    /// actor stops, or with [`Subscription::unsubscribe`]. A recipient subscribes once to a
    /// topic (a second subscription would deliver everything to it twice); once its
    /// subscription ended, it may subscribe again.
    ///
    /// # Errors
    /// [`Error::ShutDown`] after [`Bus::shutdown`]; [`Error::AlreadySubscribed`] if the
    /// recipient subscribes to `T` already.
    pub async fn subscribe<T: Topic>(
        &self,
        recipient: Recipient<Event<T>>,
    ) -> Result<Subscription, Error> {
        let shared = self.shared.clone();
        let recipient_key = recipient_key(&recipient);
        self.register(
            TopicKey::of::<T>(),
            Some(T::FINGERPRINT),
            recipient_key,
            |id, counters| {
                SubscriptionActor::<T>::new(shared, id, recipient, counters)
                    .start()
                    .recipient()
            },
        )
    }

    /// Adds a subscription to the registry, its actor made by `make` from its id and counters,
    /// and tells the endpoint (which describes the topic to peers with `fingerprint`: `None`
    /// for an untyped subscription, which does not replace a typed one's).
    pub(crate) fn register(
        &self,
        key: TopicKey,
        fingerprint: Option<u64>,
        recipient_key: u64,
        make: impl FnOnce(u64, Arc<SubscriptionCounters>) -> Recipient<RawMessages>,
    ) -> Result<Subscription, Error> {
        self.check_running()?;
        let id = self
            .shared
            .next_subscription_id
            .fetch_add(1, Ordering::Relaxed);
        let counters = Arc::new(SubscriptionCounters::default());
        // The registry holds the actor's only address from here on.
        let first_of_topic = {
            let mut subscriptions = self.shared.registry.entry(key.id).or_default();
            if subscriptions.iter().any(|s| s.recipient == recipient_key) {
                return Err(Error::AlreadySubscribed { topic: key.name });
            }
            subscriptions.push(LocalSubscription {
                id,
                raw: make(id, counters.clone()),
                recipient: recipient_key,
            });
            subscriptions.len() == 1
        };
        // Peers learn of a topic once, and of its type from its first typed subscription.
        if first_of_topic || fingerprint.is_some() {
            self.shared
                .command(|endpoint, _| endpoint.subscribe_named(key.name, fingerprint));
        }
        Ok(Subscription {
            topic: key.name,
            topic_id: key.id,
            id,
            shared: self.shared.clone(),
            counters,
        })
    }

    /// Delivers every [`BusEvent`] (peers joining, leaving, becoming unreachable; schema
    /// mismatches) to `recipient` from now on. Peers already known are announced to it as
    /// joined.
    pub fn subscribe_events(&self, recipient: Recipient<BusEvent>) {
        for peer in self.peers() {
            recipient.do_send(BusEvent::PeerJoined(peer));
        }
        lock(&self.shared.event_subscribers).push(recipient);
    }

    /// The peers known now, by id; none once the bus is shut down (it hears nobody then, and
    /// what it knew goes stale).
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        if self.shared.is_shut_down() {
            return Vec::new();
        }
        let endpoint = self.shared.endpoint();
        endpoint
            .peers()
            .map(|(info, _)| snapshot(info, &endpoint))
            .collect()
    }

    /// How many peers are known now (without taking a snapshot of each); 0 once shut down.
    pub fn peer_count(&self) -> usize {
        if self.shared.is_shut_down() {
            return 0;
        }
        self.shared.endpoint().peers().count()
    }

    /// When `instant` (of this bus's clock: an event's `received_at`, a peer's `last_seen`)
    /// was on the wall clock, for people to read.
    pub fn wall_time(&self, instant: bus_core::Instant) -> std::time::SystemTime {
        self.shared.clock.wall_time_of(instant)
    }

    /// The bus's counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        Bus::metrics_of(&self.shared)
    }

    pub(crate) fn metrics_of(shared: &Shared) -> MetricsSnapshot {
        let mut snapshot = shared.metrics.snapshot();
        let endpoint = shared.endpoint();
        snapshot.handshakes = endpoint.handshakes();
        let (entries, bytes) = endpoint.reassembly();
        (snapshot.reassembly_entries, snapshot.reassembly_bytes) = (entries as u64, bytes as u64);
        snapshot
    }

    /// Leaves gracefully: lets the reliable messages in flight finish (each within its
    /// deadline), announces the departure, sends everything queued, and stops the bus's actors.
    /// New work is refused from the moment it is called: later calls on any clone return
    /// [`Error::ShutDown`].
    ///
    /// # Errors
    /// [`Error::ShutDown`] if the bus was already shut down.
    pub async fn shutdown(&self) -> Result<(), Error> {
        if self.shared.shut_down.swap(true, Ordering::AcqRel) {
            return Err(Error::ShutDown);
        }
        self.socket
            .send(Shutdown)
            .await
            .map_err(|_| Error::ShutDown)
    }
}

/// Publishes reliable messages of one topic without a future per message waiting for its
/// outcome (see [`Bus::reliable_publisher`]). Cheap to clone.
#[derive(Debug)]
pub struct ReliablePublisher<T> {
    bus: Bus,
    deadline: Duration,
    _topic: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for ReliablePublisher<T> {
    fn clone(&self) -> Self {
        ReliablePublisher {
            bus: self.bus.clone(),
            deadline: self.deadline,
            _topic: std::marker::PhantomData,
        }
    }
}

impl<T: Topic> ReliablePublisher<T> {
    /// Publishes `message` reliably, waiting only for room in the window: it is delivered
    /// exactly once to every subscriber known now, or the failure is reported as
    /// [`BusEvent::Undelivered`]. Local subscribers get it at once.
    ///
    /// # Errors
    /// [`Error::NoSubscribers`] if nobody, remote or local, subscribes;
    /// [`Error::MessageTooLarge`] if it is over `BusBuilder::max_message_size`; [`Error::Core`]
    /// if it cannot be encoded; [`Error::ShutDown`] after [`Bus::shutdown`].
    pub async fn send(&self, message: &T) -> Result<(), Error> {
        self.publish(message, true).await
    }

    /// [`ReliablePublisher::send`], except that when a window is full it fails at once with
    /// [`Error::Busy`] instead of waiting.
    ///
    /// # Errors
    /// [`Error::Busy`] naming the full window; otherwise as [`ReliablePublisher::send`].
    pub async fn try_send(&self, message: &T) -> Result<(), Error> {
        self.publish(message, false).await
    }

    async fn publish(&self, message: &T, wait_for_room: bool) -> Result<(), Error> {
        let bus = &self.bus;
        bus.check_running()?;
        let payload = Scratch::encode(message)?;
        let key = TopicKey::of::<T>();
        if bus
            .open_reliable(key, &payload, self.deadline, wait_for_room, None)
            .await?
        {
            bus.deliver_locally(key, &payload);
            Ok(())
        } else {
            bus.deliver_only_locally(key, &payload)
        }
    }
}
