//! The socket actor: the driver of the bus's [`Endpoint`](bus_core::endpoint::Endpoint), and
//! the only owner of the transport. It feeds the endpoint datagrams, timeouts and the results
//! of handshake computations; sends what `poll_transmit` gives; re-arms one timer from
//! `poll_timeout`; and carries out `poll_event` by messaging the other actors. It makes no
//! protocol decision of its own.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use crate::shared::{FastHash, lock};
use actix::prelude::*;
use bus_core::Instant;
use bus_core::discovery::{MembershipEvent, PeerInfo};
use bus_core::endpoint::{Endpoint, Event, HandshakeDone};
use bus_core::metrics::DropReason;
use bus_core::{PeerId, TopicId, WallClock};

use crate::messages::{
    BusEvent, Finished, Flush, PeerSnapshot, PongReceived, RawMessages, Shutdown,
};
use crate::peer::PeerActor;
use crate::pending::PendingMessageActor;
use crate::register::{RegisterOp, ServedRegister};
use crate::shared::Shared;
use crate::transport::{Datagram, Transport};

/// Transmits taken from the endpoint per batch handed to the transport (one GSO call holds at
/// most 64 segments anyway).
const MAX_TRANSMITS_PER_BATCH: usize = 64;

pub(crate) struct SocketActor {
    shared: Arc<Shared>,
    transport: Rc<dyn Transport>,
    incoming: Option<futures_util::stream::LocalBoxStream<'static, Datagram>>,
    peers: BTreeMap<PeerId, Addr<PeerActor>>,
    /// The actors of reliable messages in flight, by id.
    pending: HashMap<u64, Addr<PendingMessageActor>>,
    flushing: bool,
    /// The one timer over the endpoint's `poll_timeout`, and when it fires.
    timer: Option<(Instant, SpawnHandle)>,
    /// A shutdown waiting for the reliable messages in flight to finish.
    drained: Option<tokio::sync::oneshot::Sender<()>>,
    /// What the bus logs is in this span: which bus said it.
    span: tracing::Span,
    /// Drops by reason at the last export, for the summary of the drops since.
    drops_logged: BTreeMap<&'static str, u64>,
    /// Messages that arrived from peers for the local subscriptions, by topic.
    received_by_topic: HashMap<TopicId, u64, FastHash>,
}

/// What is known of a peer, for the application.
pub(crate) fn snapshot(info: &PeerInfo, endpoint: &Endpoint) -> PeerSnapshot {
    let timing = endpoint.timing(info.id);
    PeerSnapshot {
        id: info.id,
        addr: info.addr,
        topics: info.topics.clone(),
        described: info.described.clone(),
        metadata: info.metadata.clone(),
        rtt: timing.rtt,
        clock_offset_us: timing.clock_offset_us,
        last_seen: info.last_seen,
        rto: timing.rto,
        hears_our_multicast: endpoint.hears_our_multicast(info.id),
        confirmed: endpoint.confirmed(info.id),
    }
}

impl SocketActor {
    pub(crate) fn new(shared: Arc<Shared>, mut transport: Box<dyn Transport>) -> Self {
        SocketActor {
            incoming: Some(transport.incoming()),
            shared: shared.clone(),
            transport: Rc::from(transport),
            peers: BTreeMap::new(),
            pending: HashMap::new(),
            flushing: false,
            timer: None,
            drained: None,
            // At warning level, so that it shows under the usual filter (a span has no level of its
            // own to speak of: this only says when it is recorded).
            span: tracing::warn_span!("bus", id = %shared.local_id),
            drops_logged: BTreeMap::new(),
            received_by_topic: HashMap::default(),
        }
    }

    /// Feeds the endpoint one input, then carries out everything it asks.
    fn input(
        &mut self,
        ctx: &mut Context<Self>,
        input: impl FnOnce(&mut Endpoint, Instant, WallClock),
    ) {
        input(
            &mut self.shared.endpoint(),
            self.shared.clock.now(),
            self.shared.clock.wall(),
        );
        self.handle_events(ctx);
        self.flush(ctx);
    }

    fn handle_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        // Not for deliveries: they are the hot path, and log nothing.
        let span = (!matches!(event, Event::Deliver(_))).then(|| self.span.clone());
        let _in_span = span.as_ref().map(tracing::Span::enter);
        match event {
            Event::Deliver(delivery) => {
                *self.received_by_topic.entry(delivery.topic).or_default() +=
                    delivery.payloads.len() as u64;
                let Some(subscriptions) = self.shared.registry.get(&delivery.topic) else {
                    return;
                };
                for sub in subscriptions.iter() {
                    sub.raw.do_send(RawMessages {
                        from: delivery.from,
                        payloads: delivery.payloads.clone(),
                        received_at: delivery.received_at,
                        sent_at: delivery.sent_at,
                    });
                }
            }
            Event::Membership(event) => self.membership(event),
            Event::SubscriberJoined { topic, peer } => {
                self.shared.subscribers_changed.notify_waiters();
                self.shared
                    .emit_event(&BusEvent::SubscriberJoined { topic, peer });
            }
            Event::SubscriberLeft { topic, peer } => {
                self.shared.subscribers_changed.notify_waiters();
                self.shared
                    .emit_event(&BusEvent::SubscriberLeft { topic, peer });
            }
            Event::SubscriberBehind { peer, in_flight } => {
                tracing::warn!("subscriber {peer} is behind: {in_flight} messages in flight");
                self.shared
                    .emit_event(&BusEvent::SubscriberBehind { peer, in_flight });
            }
            Event::SubscriberGivenUp { peer, missed } => {
                tracing::warn!(
                    "subscriber {peer} missed {missed} reliable messages in a row: given up on for a while"
                );
                self.shared
                    .emit_event(&BusEvent::SubscriberGivenUp { peer, missed });
            }
            Event::Misconfigured {
                from,
                what,
                packets,
            } => {
                tracing::warn!(
                    "{packets} packets from {from} were dropped: {what:?}; {}",
                    what.likely_cause()
                );
                self.shared.emit_event(&BusEvent::Misconfigured {
                    from,
                    what,
                    packets,
                });
            }
            Event::Pong { peer, sample } => {
                if let Some(actor) = self.peers.get(&peer) {
                    actor.do_send(PongReceived(sample));
                }
            }
            Event::Sent {
                message_id,
                topic,
                events,
            } => {
                // Every event's reply was registered with it: the message is closed.
                let replies = lock(&self.shared.replies)
                    .remove(&message_id)
                    .unwrap_or_default();
                let actor = PendingMessageActor::new(self.shared.clone(), topic, events, replies);
                self.pending.insert(message_id, actor.start());
            }
            Event::Finished {
                message_id, report, ..
            } => {
                if !report.missing.is_empty() {
                    tracing::warn!(message_id, missing = ?report.missing, retransmissions = report.retransmissions, "reliable message not acknowledged by its deadline");
                } else if report.retransmissions > 0 {
                    tracing::debug!(
                        message_id,
                        retransmissions = report.retransmissions,
                        "reliable message delivered after retransmissions"
                    );
                }
                // Sent comes first, from the same queue of events.
                if let Some(actor) = self.pending.remove(&message_id) {
                    actor.do_send(Finished(report));
                }
                self.check_drained();
            }
            Event::WindowRoom(freed) => {
                // One waiter per freed slot (waking them all would make every release cost as
                // much as there are publishers waiting).
                for _ in 0..freed {
                    self.shared.window_space.notify_one();
                }
            }
            Event::Request {
                from,
                call_id,
                method,
                payload,
            } => self.serve_call(ctx, from, call_id, method, payload),
            Event::RegisterRequest {
                from,
                call_id,
                register,
                fingerprint,
                write,
            } => self.serve_register(ctx, (from, call_id), (register, fingerprint), write),
            Event::RegisterWritten {
                from,
                register,
                fingerprint,
                value,
            } => self.written_unreliably(ctx, from, (register, fingerprint), value),
            Event::Replied {
                call_id,
                status,
                payload,
            } => {
                if let Some(call) = lock(&self.shared.calls).remove(&call_id) {
                    call.do_send(crate::rpc::CallOutcome(Ok((status, payload))));
                }
            }
            Event::CallFailed { call_id, reason } => {
                if let Some(call) = lock(&self.shared.calls).remove(&call_id) {
                    call.do_send(crate::rpc::CallOutcome(Err(reason)));
                }
            }
            Event::Handshake(job) => {
                tracing::debug!("computing a handshake message");
                let ticket = job.ticket();
                let work = tokio::task::spawn_blocking(move || job.run());
                ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
                    // A computation that panicked made nothing; the endpoint accounts for it.
                    let done = result.unwrap_or_else(|_| HandshakeDone::lost(ticket));
                    act.input(ctx, |endpoint, now, _| endpoint.handle_handshake(now, done));
                }));
            }
            _ => {}
        }
    }

    fn membership(&mut self, event: MembershipEvent) {
        let bus_event = match event {
            MembershipEvent::Joined(info) => {
                tracing::info!(peer = %info.id, addr = %info.addr, "peer joined");
                let actor = PeerActor::new(self.shared.clone(), info.id).start();
                self.peers.insert(info.id, actor);
                BusEvent::PeerJoined(snapshot(&info, &self.shared.endpoint()))
            }
            MembershipEvent::Updated(info) => {
                let peer = snapshot(&info, &self.shared.endpoint());
                tracing::debug!(peer = %info.id, addr = %info.addr, topics = ?peer.topic_names(), "peer updated");
                BusEvent::PeerUpdated(peer)
            }
            MembershipEvent::Restarted(info) => {
                tracing::info!(peer = %info.id, addr = %info.addr, "peer restarted");
                BusEvent::PeerRestarted(snapshot(&info, &self.shared.endpoint()))
            }
            MembershipEvent::DuplicateId { id, refused } => {
                tracing::warn!(peer = %id, refused = %refused, "two processes claim one peer id: the second one is ignored");
                BusEvent::DuplicateId { id, refused }
            }
            MembershipEvent::Left(id) => {
                tracing::info!(peer = %id, "peer left");
                // Dropping the last address stops the actor once its mailbox drains.
                self.peers.remove(&id);
                BusEvent::PeerLeft(id)
            }
            MembershipEvent::Unreachable(info) => {
                tracing::warn!(peer = %info.id, addr = %info.addr, "peer unreachable: no beacon within its liveness timeout");
                self.peers.remove(&info.id);
                BusEvent::PeerUnreachable(info.id)
            }
        };
        self.shared.emit_event(&bus_event);
    }

    /// Sends what the endpoint has to send (unless a send is under way: it keeps going until
    /// the endpoint has nothing left), and re-arms the timer.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flushing {
            self.flushing = true;
            let work = send_transmits(self.shared.clone(), self.transport.clone());
            // Commands that arrived meanwhile rang no bell (the endpoint was not idle) but may
            // have set a timer: re-arm once the endpoint has nothing left to send.
            ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
                act.flushing = false;
                act.handle_events(ctx);
                act.rearm(ctx);
            }));
        }
        self.rearm(ctx);
    }

    fn rearm(&mut self, ctx: &mut Context<Self>) {
        let next = self.shared.endpoint().poll_timeout();
        self.rearm_at(next, ctx);
    }

    /// Arms the timer for `next` unless it is armed for no later: a timer that fires early
    /// finds nothing due and re-arms, which costs less than re-arming after every datagram
    /// that pushed a deadline back.
    fn rearm_at(&mut self, next: Option<Instant>, ctx: &mut Context<Self>) {
        let Some(at) = next else { return };
        if self.timer.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(self.shared.clock.until(at), |act, ctx| {
            act.timer = None;
            act.input(ctx, Endpoint::handle_timeout);
        });
        self.timer = Some((at, handle));
    }

    fn check_drained(&mut self) {
        if self.drained.is_some()
            && self.shared.endpoint().pending_messages() == 0
            && let Some(drained) = self.drained.take()
        {
            let _ = drained.send(());
        }
    }

    /// Carries out the events the endpoint has queued since the last input (sending closes
    /// reliable messages, which the pending actors must learn of).
    fn handle_events(&mut self, ctx: &mut Context<Self>) {
        let events: Vec<Event> = {
            let mut endpoint = self.shared.endpoint();
            std::iter::from_fn(|| endpoint.poll_event()).collect()
        };
        for event in events {
            self.handle_event(event, ctx);
        }
    }

    /// Hands a call to the actor serving its procedure, off the receive path, and answers it
    /// when the actor does.
    fn serve_call(
        &mut self,
        ctx: &mut Context<Self>,
        from: PeerId,
        call_id: u64,
        method: u64,
        payload: bytes::Bytes,
    ) {
        let (procedure, bits) = bus_core::rpc::split_method(method);
        let served = lock(&self.shared.procedures).get(&procedure).cloned();
        let Some(served) = served else {
            let (status, answer) = crate::rpc::no_such_procedure();
            self.shared.command(|endpoint, now| {
                endpoint.reply(now, from, call_id, status, &answer);
            });
            return;
        };
        ctx.spawn(served.run(from, bits, payload).into_actor(self).map(
            move |(status, bytes), act, ctx| {
                act.input(ctx, |endpoint, now, _| {
                    endpoint.reply(now, from, call_id, status, &bytes);
                });
            },
        ));
    }

    /// Hands `from`'s read (`write` is `None`) or write of a register to the register's
    /// actor, and its answer to the endpoint; one for no register here, or of another type,
    /// is answered at once.
    fn serve_register(
        &mut self,
        ctx: &mut Context<Self>,
        (from, call_id): (PeerId, u64),
        (register, fingerprint): (TopicId, u64),
        write: Option<bytes::Bytes>,
    ) {
        let served = lock(&self.shared.registers).get(&register).cloned();
        let register = match ServedRegister::check(served, fingerprint) {
            Ok(register) => register,
            Err((status, answer)) => {
                self.shared.command(|endpoint, now| {
                    endpoint.reply(now, from, call_id, status, &answer);
                });
                return;
            }
        };
        let op = register.send(RegisterOp { from, write });
        ctx.spawn(op.into_actor(self).map(move |answer, act, ctx| {
            let (status, bytes) = answer.unwrap_or_else(|_| crate::rpc::remote_failure());
            act.input(ctx, |endpoint, now, _| {
                endpoint.reply(now, from, call_id, status, &bytes);
            });
        }));
    }

    /// Applies `from`'s unreliable write of a register; one that cannot be applied is
    /// counted, as nobody is told.
    fn written_unreliably(
        &mut self,
        ctx: &mut Context<Self>,
        from: PeerId,
        (register, fingerprint): (TopicId, u64),
        value: bytes::Bytes,
    ) {
        let served = lock(&self.shared.registers).get(&register).cloned();
        let Ok(register) = ServedRegister::check(served, fingerprint) else {
            self.shared.metrics.dropped(DropReason::RegisterRefused);
            return;
        };
        let op = register.send(RegisterOp {
            from,
            write: Some(value),
        });
        let metrics = self.shared.metrics.clone();
        ctx.spawn(
            async move {
                if !matches!(op.await, Ok((0, _))) {
                    metrics.dropped(DropReason::RegisterRefused);
                }
            }
            .into_actor(self),
        );
    }

    /// Copies the counters out to the `metrics` facade, and logs what was dropped since the
    /// last time (once a period at most, however many were).
    fn export(&mut self) {
        let metrics = crate::Bus::metrics_of(&self.shared);
        let (peers, received) = {
            let endpoint = self.shared.endpoint();
            let received: Vec<(String, u64)> = self
                .received_by_topic
                .iter()
                .map(|(topic, count)| {
                    let name = endpoint
                        .local_description(*topic)
                        .map_or_else(|| format!("{:016x}", topic.0), |d| d.name.clone());
                    (name, *count)
                })
                .collect();
            (endpoint.peers().count(), received)
        };
        crate::export::export(self.shared.local_id, &metrics, peers);
        crate::export::received_by_topic(self.shared.local_id, &received);
        let since: Vec<String> = metrics
            .drops
            .iter()
            .filter_map(|(reason, count)| {
                let new = count.saturating_sub(self.drops_logged.get(reason).copied().unwrap_or(0));
                (new > 0).then(|| format!("{reason}={new}"))
            })
            .collect();
        if !since.is_empty() {
            let _in_span = self.span.enter();
            tracing::debug!(dropped = %since.join(" "), "packets dropped since the last report");
        }
        self.drops_logged = metrics.drops;
    }
}

/// Sends everything the endpoint has to send, batch after batch, until it has nothing left.
async fn send_transmits(shared: Arc<Shared>, transport: Rc<dyn Transport>) {
    loop {
        let batch: Vec<_> = {
            let mut endpoint = shared.endpoint();
            let now = shared.clock.now();
            std::iter::from_fn(|| endpoint.poll_transmit(now))
                .take(MAX_TRANSMITS_PER_BATCH)
                .map(|t| (t.target, t.bytes))
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        let report = transport.send_batch(batch).await;
        for _ in 0..report.failed {
            shared.metrics.dropped(DropReason::SendFailed);
        }
        shared.metrics.datagrams_out(report.sent, report.bytes);
        shared.outbox_space.notify_waiters();
    }
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // An actor whose system ended before it first ran (`main` returned right after
        // `Bus::start`) is started by actix from its drop, outside any runtime, where a timer
        // cannot be made: there is nothing to start then.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if let Some(incoming) = self.incoming.take() {
            ctx.add_stream(incoming);
        }
        ctx.run_interval(crate::export::EXPORT_EVERY, |act, _| act.export());
        // The first beacon is due at once.
        self.flush(ctx);
    }
}

impl StreamHandler<Datagram> for SocketActor {
    fn handle(&mut self, datagram: Datagram, ctx: &mut Self::Context) {
        let (events, next): (Vec<Event>, _) = {
            let mut endpoint = self.shared.endpoint();
            let (now, wall) = (self.shared.clock.now(), self.shared.clock.wall());
            endpoint.handle_datagram(now, wall, datagram.from, datagram.bytes);
            // Sent with the next flush, so the datagrams that arrived together share their
            // acknowledgements.
            if endpoint.poll_wakeup() {
                ctx.notify(Flush);
            }
            let events = std::iter::from_fn(|| endpoint.poll_event()).collect();
            (events, endpoint.poll_timeout())
        };
        for event in events {
            self.handle_event(event, ctx);
        }
        self.rearm_at(next, ctx);
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // The transport closed its receive side; keep sending until shut down.
    }
}

impl Handler<Flush> for SocketActor {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.flush(ctx);
    }
}

impl Handler<Shutdown> for SocketActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Lets the reliable messages in flight finish (each within its deadline), then says
    /// goodbye, sends what is queued, and stops.
    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let (drained_tx, drained) = tokio::sync::oneshot::channel();
        self.drained = Some(drained_tx);
        self.check_drained();
        Box::pin(
            async move {
                let _ = drained.await;
            }
            .into_actor(self)
            .then(|(), act, _ctx| {
                act.shared.endpoint().leave();
                act.peers.clear();
                send_transmits(act.shared.clone(), act.transport.clone()).into_actor(act)
            })
            .map(|(), _act, ctx| ctx.stop()),
        )
    }
}
