//! One actor per subscription: it decodes payloads into the topic's type and delivers them to
//! the subscriber's actor, counting what it could not deliver and why.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use actix::prelude::*;
use bus_core::{Envelope, PayloadError, Topic, TopicId};

use crate::messages::{BusEvent, Event, RawMessages};
use crate::shared::Shared;

/// A subscription's counters.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionCounters {
    pub(crate) delivered: AtomicU64,
    undecodable: AtomicU64,
    schema_mismatched: AtomicU64,
    /// Unsubscribed, or its actor stopped: nothing more is delivered.
    ended: AtomicBool,
}

impl SubscriptionCounters {
    /// Marks the subscription ended: nothing more is delivered to it.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// Whether it ended.
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// A copy of one subscription's counters.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct SubscriptionStats {
    /// Messages handed to the subscriber.
    pub delivered: u64,
    /// Messages whose payload was not a valid encoding of the topic's type.
    pub undecodable: u64,
    /// Messages from peers whose type for the topic has another schema fingerprint.
    pub schema_mismatched: u64,
}

pub(crate) struct SubscriptionActor<T: Topic> {
    shared: Arc<Shared>,
    id: u64,
    recipient: Recipient<Event<T>>,
    counters: Arc<SubscriptionCounters>,
    topic: PhantomData<fn() -> T>,
}

impl<T: Topic> SubscriptionActor<T> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: u64,
        recipient: Recipient<Event<T>>,
        counters: Arc<SubscriptionCounters>,
    ) -> Self {
        SubscriptionActor {
            shared,
            id,
            recipient,
            counters,
            topic: PhantomData,
        }
    }
}

impl<T: Topic> Actor for SubscriptionActor<T> {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.counters.end();
        remove_from_registry(&self.shared, T::ID, self.id);
    }
}

impl<T: Topic> Handler<RawMessages> for SubscriptionActor<T> {
    type Result = ();

    fn handle(&mut self, raw: RawMessages, ctx: &mut Self::Context) {
        if self.counters.ended() || !self.recipient.connected() {
            // Unsubscribed, or the subscriber stopped (or panicked): this subscription ends,
            // no other.
            ctx.stop();
            return;
        }
        for (fingerprint, payload) in raw.payloads.iter() {
            self.decode_and_deliver(&raw, *fingerprint, payload);
        }
    }
}

impl<T: Topic> SubscriptionActor<T> {
    fn decode_and_deliver(&self, raw: &RawMessages, fingerprint: u64, payload: &[u8]) {
        match T::decode(fingerprint, payload) {
            Ok(message) => {
                self.recipient.do_send(Event(Envelope {
                    message,
                    from: raw.from,
                    received_at: raw.received_at,
                    sent_at: raw.sent_at,
                }));
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(PayloadError::SchemaMismatch { local, remote, .. }) => {
                let before = self
                    .counters
                    .schema_mismatched
                    .fetch_add(1, Ordering::Relaxed);
                if before == 0 {
                    // Once a subscription: the counter says how many more.
                    tracing::warn!(topic = T::NAME, from = %raw.from, local = format_args!("{local:016x}"), remote = format_args!("{remote:016x}"), "a peer publishes this topic with another schema: its messages are dropped (see SubscriptionStats::schema_mismatched)");
                }
                self.shared.emit_event(&BusEvent::SchemaMismatch {
                    topic: T::NAME,
                    from: raw.from,
                    local,
                    remote,
                });
            }
            Err(e) => {
                self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("dropped a message from {}: {e}", raw.from);
            }
        }
    }
}

/// Takes subscription `id` of `topic` out of the registry; if it was the topic's last, peers are
/// told. Dropping the registry's address of the subscription actor, its only one, stops it.
pub(crate) fn remove_from_registry(shared: &Shared, topic: TopicId, id: u64) {
    let now_empty = match shared.registry.get_mut(&topic) {
        Some(mut subs) => {
            let before = subs.len();
            subs.retain(|s| s.id != id);
            subs.is_empty() && subs.len() < before
        }
        None => false,
    };
    if now_empty {
        shared.registry.remove_if(&topic, |_, subs| subs.is_empty());
        shared.command(|endpoint, _| endpoint.unsubscribe(topic));
    }
}

/// A live subscription. Dropping it leaves the subscription running; [`Subscription::unsubscribe`]
/// ends it.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) topic: &'static str,
    pub(crate) topic_id: TopicId,
    pub(crate) id: u64,
    pub(crate) counters: Arc<SubscriptionCounters>,
    pub(crate) shared: Arc<Shared>,
}

impl Subscription {
    /// The topic's name.
    pub fn topic(&self) -> &'static str {
        self.topic
    }

    /// Its counters so far.
    pub fn stats(&self) -> SubscriptionStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SubscriptionStats {
            delivered: read(&self.counters.delivered),
            undecodable: read(&self.counters.undecodable),
            schema_mismatched: read(&self.counters.schema_mismatched),
        }
    }

    /// Whether it is still running (it ends when its subscriber actor stops).
    pub fn is_active(&self) -> bool {
        !self.counters.ended()
    }

    /// Ends the subscription at once: nothing more is delivered to it, messages still queued
    /// for it included, and peers stop sending its topic here if it was the last one.
    pub fn unsubscribe(self) {
        self.counters.end();
        remove_from_registry(&self.shared, self.topic_id, self.id);
    }
}
