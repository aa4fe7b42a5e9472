//! One actor per reliable message in flight: it owns the message's acknowledgement set and
//! retransmission schedule (`bus_core::reliability::ReliableSend`), retransmits by unicast to
//! the peers still missing, and resolves the publisher's future when everyone owed the message
//! has acknowledged it, left, or the deadline has passed. It stops then: no pending actor
//! outlives its message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use bus_core::PeerId;
use bus_core::reliability::{DeliveryReport, ReliableSend};
use bus_core::wire::FrameType;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::messages::{AckFrom, PeerGone, PendingFinished, StartReliable};
use crate::metrics::ReliableCounters;
use crate::shared::{Shared, lock};
use crate::transport::Target;

pub(crate) struct PendingMessageActor {
    shared: Arc<Shared>,
    send: ReliableSend,
    frame: Bytes,
    payload_len: usize,
    addrs: BTreeMap<PeerId, SocketAddr>,
    reply: Option<oneshot::Sender<DeliveryReport>>,
    timer: Option<SpawnHandle>,
}

impl PendingMessageActor {
    pub(crate) fn new(shared: Arc<Shared>, start: StartReliable) -> PendingMessageActor {
        let now = shared.clock.now();
        let send = ReliableSend::new(
            now,
            start.message_id,
            start.owed.iter().map(|(peer, _, rto)| (*peer, *rto)),
            now + start.deadline,
            shared.config.max_rto,
        );
        PendingMessageActor {
            addrs: start.owed.iter().map(|(p, a, _)| (*p, *a)).collect(),
            send,
            frame: start.frame,
            payload_len: start.payload_len,
            reply: Some(start.reply),
            timer: None,
            shared,
        }
    }

    fn send_copy(&self, target: Target) {
        if let Err(e) = self
            .shared
            .enqueue_encoded(target, FrameType::ReliablePublish, &self.frame)
        {
            tracing::error!("reliable frame not queued: {e}");
        }
    }

    fn release(&self, peer: PeerId) {
        lock(&self.shared.send_window).release_peer(peer, self.payload_len);
        // One slot freed, one waiter woken (waking them all would make every release cost as
        // much as there are publishers waiting).
        self.shared.window_space.notify_one();
    }

    /// Finishes if there is an outcome; otherwise re-arms the timer.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        let now = self.shared.clock.now();
        if let Some(report) = self.send.outcome(now) {
            let counters = &self.shared.metrics.reliable;
            if !report.missing.is_empty() {
                ReliableCounters::bump(&counters.expired, 1);
            }
            for peer in &report.missing {
                self.release(*peer);
            }
            lock(&self.shared.send_window).close(self.send.id());
            self.shared.window_space.notify_one();
            if let Some(reply) = self.reply.take() {
                // The publisher may have stopped waiting; the outcome is counted either way.
                let _ = reply.send(report);
            }
            ctx.stop();
            return;
        }
        // An early wake-up finds nothing due and re-arms; re-arming on every ack would cost more.
        if self.timer.is_some() {
            return;
        }
        if let Some(at) = self.send.poll_timeout() {
            let delay = self.shared.clock.until(at);
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                let now = act.shared.clock.now();
                let due = act.send.poll_retransmits(now);
                ReliableCounters::bump(
                    &act.shared.metrics.reliable.retransmitted,
                    due.len() as u64,
                );
                for peer in due {
                    if let Some(addr) = act.addrs.get(&peer) {
                        act.send_copy(Target::Unicast(*addr));
                    }
                }
                act.settle(ctx);
            }));
        }
    }
}

impl Actor for PendingMessageActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let counters = &self.shared.metrics.reliable;
        let pending = counters.pending.fetch_add(1, Ordering::Relaxed) + 1;
        counters.pending_peak.fetch_max(pending, Ordering::Relaxed);
        ReliableCounters::bump(&counters.sent, 1);
        let first = match self.addrs.values().collect::<Vec<_>>().as_slice() {
            [only] => Target::Unicast(**only),
            _ => Target::Group,
        };
        self.send_copy(first);
        self.settle(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.shared
            .metrics
            .reliable
            .pending
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(socket) = self.shared.socket.get() {
            socket.do_send(PendingFinished(self.send.id()));
        }
    }
}

impl Handler<AckFrom> for PendingMessageActor {
    type Result = ();

    fn handle(&mut self, AckFrom(peer): AckFrom, ctx: &mut Self::Context) {
        if self.send.on_ack(peer) {
            ReliableCounters::bump(&self.shared.metrics.reliable.acked, 1);
            self.release(peer);
            self.settle(ctx);
        }
    }
}

impl Handler<PeerGone> for PendingMessageActor {
    type Result = ();

    fn handle(&mut self, PeerGone(peer): PeerGone, ctx: &mut Self::Context) {
        if self.send.on_peer_left(peer) {
            self.release(peer);
            self.settle(ctx);
        }
    }
}
