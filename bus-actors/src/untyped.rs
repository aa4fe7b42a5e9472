//! Topics known by name at run time, their payloads as MessagePack bytes: for tools (the `bus`
//! CLI), bridges and gateways that move messages without knowing their Rust types.
//!
//! An untyped subscriber gets every payload of its topic, whatever its fingerprint, with the
//! fingerprint it came with; an untyped publisher says which fingerprint its payloads have (a
//! typed subscriber decodes only its own; peers describe theirs, see
//! [`PeerSnapshot::described`](crate::PeerSnapshot::described)). Names are interned: each
//! distinct name used costs its length once for the life of the process.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use bus_core::reliability::DeliveryReport;
use bus_core::{Instant, PeerId, TopicId};
use bytes::Bytes;

use crate::bus::{Bus, TopicKey, recipient_key};
use crate::error::Error;
use crate::messages::RawMessages;
use crate::shared::Shared;
use crate::subscription::{Subscription, SubscriptionCounters, remove_from_registry};

/// A topic by name, with the fingerprint its payloads are published with.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct UntypedTopic {
    key: TopicKey,
}

impl UntypedTopic {
    /// Topic `name`, whose payloads are published with `fingerprint` (the one subscribers'
    /// type has: see [`PeerSnapshot::described`](crate::PeerSnapshot::described)).
    ///
    /// # Errors
    /// [`Error::Core`] with [`bus_core::Error::TopicName`] if `name` is not a valid topic name.
    pub fn new(name: &str, fingerprint: u64) -> Result<UntypedTopic, Error> {
        bus_core::validate_topic_name(name).map_err(bus_core::Error::from)?;
        Ok(UntypedTopic {
            key: TopicKey {
                name: intern(name),
                id: TopicId::from_name(name),
                fingerprint,
            },
        })
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.key.name
    }

    /// Its id on the wire.
    pub fn id(&self) -> TopicId {
        self.key.id
    }

    /// The fingerprint its payloads are published with.
    pub fn fingerprint(&self) -> u64 {
        self.key.fingerprint
    }
}

impl PartialEq for TopicKey {
    fn eq(&self, other: &TopicKey) -> bool {
        (self.id, self.fingerprint) == (other.id, other.fingerprint)
    }
}

impl Eq for TopicKey {}

/// The one copy of `name` this process keeps: error values name topics as `&'static str`.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    match names.get(name) {
        Some(interned) => interned,
        None => {
            let interned: &'static str = Box::leak(name.into());
            names.insert(interned);
            interned
        }
    }
}

/// A message of an untyped subscription: its payload, undecoded.
#[derive(Clone, Debug, Message, PartialEq)]
#[rtype(result = "()")]
pub struct RawEvent {
    /// The topic's name.
    pub topic: &'static str,
    /// The schema fingerprint the publisher sent it with (0 from an untyped publisher that
    /// knew none).
    pub fingerprint: u64,
    /// The MessagePack payload.
    pub payload: Bytes,
    /// Who published it.
    pub from: PeerId,
    /// When it arrived, on this peer's clock.
    pub received_at: Instant,
    /// When the sender sent it, on this peer's clock, once the clock offset is measured.
    pub sent_at: Option<Instant>,
}

impl Bus {
    /// Publishes `payload` (MessagePack bytes) on `topic` best effort, as
    /// [`Bus::publish_best_effort`] does a typed message.
    ///
    /// # Errors
    /// As [`Bus::publish_best_effort`].
    pub async fn publish_untyped(&self, topic: &UntypedTopic, payload: &[u8]) -> Result<(), Error> {
        self.check_running()?;
        self.publish_encoded(topic.key, payload).await
    }

    /// Publishes `payload` (MessagePack bytes) on `topic` reliably, as
    /// [`Bus::publish_reliable`] does a typed message, with the bus's deadline for the topic.
    ///
    /// # Errors
    /// As [`Bus::publish_reliable`].
    pub async fn publish_untyped_reliable(
        &self,
        topic: &UntypedTopic,
        payload: &[u8],
    ) -> Result<DeliveryReport, Error> {
        self.check_running()?;
        let deadline = self.deadline_of(topic.key.id);
        let report = self
            .start_reliable(topic.key, payload, deadline, true)
            .await?;
        Bus::reliable_outcome(topic.key, report).await
    }

    /// Subscribes `recipient` to topic `name`: it gets every message of the topic, of any
    /// fingerprint, undecoded, as a [`RawEvent`]. Peers learn the topic is taken here, and that
    /// this subscription takes any schema (unless a typed subscription of the topic describes
    /// it). Ends as a typed subscription does.
    ///
    /// # Errors
    /// [`Error::Core`] if `name` is not a valid topic name; [`Error::AlreadySubscribed`] if the
    /// recipient subscribes to it already; [`Error::ShutDown`] after [`Bus::shutdown`].
    pub async fn subscribe_untyped(
        &self,
        name: &str,
        recipient: Recipient<RawEvent>,
    ) -> Result<Subscription, Error> {
        let key = UntypedTopic::new(name, 0)?.key;
        let shared = self.shared.clone();
        let recipient_key = recipient_key(&recipient);
        self.register(key, None, recipient_key, |id, counters| {
            RawSubscriptionActor {
                shared,
                topic: key,
                id,
                recipient,
                counters,
            }
            .start()
            .recipient()
        })
    }
}

/// Forwards a topic's payloads to an untyped subscriber.
struct RawSubscriptionActor {
    shared: Arc<Shared>,
    topic: TopicKey,
    id: u64,
    recipient: Recipient<RawEvent>,
    counters: Arc<SubscriptionCounters>,
}

impl Actor for RawSubscriptionActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.counters.end();
        remove_from_registry(&self.shared, self.topic.id, self.id);
    }
}

impl Handler<RawMessages> for RawSubscriptionActor {
    type Result = ();

    fn handle(&mut self, raw: RawMessages, ctx: &mut Self::Context) {
        if self.counters.ended() || !self.recipient.connected() {
            ctx.stop();
            return;
        }
        for (fingerprint, payload) in raw.payloads.iter() {
            self.recipient.do_send(RawEvent {
                topic: self.topic.name,
                fingerprint: *fingerprint,
                payload: payload.clone(),
                from: raw.from,
                received_at: raw.received_at,
                sent_at: raw.sent_at,
            });
            self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
