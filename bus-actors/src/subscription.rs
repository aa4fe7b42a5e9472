//! One actor per subscription: it decodes payloads into the topic's type and delivers them to
//! the subscriber's actor, counting what it could not deliver and why.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use bus_core::{Envelope, PayloadError, Topic};

use crate::messages::{BusEvent, Event, RawMessages, Unsubscribe};
use crate::shared::Shared;

/// A subscription's counters.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionCounters {
    delivered: AtomicU64,
    undecodable: AtomicU64,
    schema_mismatched: AtomicU64,
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
        let now_empty = match self.shared.registry.get_mut(&T::ID) {
            Some(mut subs) => {
                subs.retain(|s| s.id != self.id);
                subs.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.shared
                .registry
                .remove_if(&T::ID, |_, subs| subs.is_empty());
            if let Some(socket) = self.shared.socket.get() {
                socket.do_send(crate::messages::TopicsChanged);
            }
        }
    }
}

impl<T: Topic> Handler<RawMessages> for SubscriptionActor<T> {
    type Result = ();

    fn handle(&mut self, raw: RawMessages, ctx: &mut Self::Context) {
        if !self.recipient.connected() {
            // The subscriber stopped (or panicked): this subscription ends, no other.
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
                self.counters
                    .schema_mismatched
                    .fetch_add(1, Ordering::Relaxed);
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

impl<T: Topic> Handler<Unsubscribe> for SubscriptionActor<T> {
    type Result = ();

    fn handle(&mut self, _: Unsubscribe, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// A live subscription. Dropping it leaves the subscription running; [`Subscription::unsubscribe`]
/// ends it.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) topic: &'static str,
    pub(crate) counters: Arc<SubscriptionCounters>,
    pub(crate) control: Recipient<Unsubscribe>,
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
        self.control.connected()
    }

    /// Ends the subscription; messages still queued for it are dropped.
    pub fn unsubscribe(self) {
        self.control.do_send(Unsubscribe);
    }
}
