//! One actor per reliable message in flight: it owns the message's acknowledgement set and
//! retransmission schedule (`bus_core::reliability::ReliableSend`), retransmits by unicast to
//! the peers still missing when the socket actor says something is due, and resolves the
//! publisher's future when everyone owed the message has acknowledged it, left, or the deadline
//! has passed. It stops then: no pending actor outlives its message.
//!
//! The actor keeps no timer of its own: the socket actor holds one schedule for all of them
//! (a timer per message cost a tokio timer entry and its allocations on every publish, and
//! almost every message is acknowledged before its first retransmission would be due).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use bus_core::reliability::ReliableSend;
use bus_core::wire::FrameType;
use bus_core::{Instant, PeerId};
use bytes::Bytes;

use crate::messages::{AckFrom, PeerGone, PendingFinished, ReportTo, RetransmitDue, StartReliable};
use crate::metrics::ReliableCounters;
use crate::shared::{Shared, lock};
use crate::transport::Target;

pub(crate) struct PendingMessageActor {
    shared: Arc<Shared>,
    send: ReliableSend,
    frame: Bytes,
    payload_len: usize,
    /// Where the first copy goes: the one peer owed it, or the group.
    first: Target,
    reply: Option<ReportTo>,
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
        let first = match &start.owed[..] {
            [(_, addr, _)] => Target::Unicast(*addr),
            _ => Target::Group,
        };
        PendingMessageActor {
            send,
            frame: start.frame,
            payload_len: start.payload_len,
            first,
            reply: Some(start.reply),
            shared,
        }
    }

    /// When the socket actor should next send [`RetransmitDue`]: the next retransmission or
    /// the deadline; `None` once nobody is owed the message.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.send.poll_timeout()
    }

    fn send_copy(&self, target: Target) {
        if let Err(e) = self
            .shared
            .enqueue_encoded(target, FrameType::ReliablePublish, &self.frame)
        {
            tracing::error!("reliable frame not queued: {e}");
        }
    }

    /// `peer` is done with the message; finishes if that was the last one owed it.
    fn peer_done(&mut self, peer: PeerId, ctx: &mut Context<Self>) {
        if !self.finish_if_settled(Some(peer), ctx) {
            lock(&self.shared.send_window).release_peer(peer, self.payload_len);
            // One slot freed, one waiter woken (waking them all would make every release cost
            // as much as there are publishers waiting).
            self.shared.window_space.notify_one();
        }
    }

    /// Finishes if there is an outcome, releasing the window's room for `done` and for every
    /// peer still missing in one go. Returns whether it finished.
    fn finish_if_settled(&mut self, done: Option<PeerId>, ctx: &mut Context<Self>) -> bool {
        let Some(report) = self.send.outcome(self.shared.clock.now()) else {
            return false;
        };
        if !report.missing.is_empty() {
            ReliableCounters::bump(&self.shared.metrics.reliable.expired, 1);
        }
        {
            let mut window = lock(&self.shared.send_window);
            for peer in done.iter().chain(&report.missing) {
                window.release_peer(*peer, self.payload_len);
            }
            window.close(self.send.id());
        }
        self.shared.window_space.notify_one();
        if let Some(reply) = self.reply.take() {
            // The publisher may have stopped waiting; the outcome is counted either way.
            reply.send(report);
        }
        ctx.stop();
        true
    }
}

impl Actor for PendingMessageActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        let counters = &self.shared.metrics.reliable;
        let pending = counters.pending.fetch_add(1, Ordering::Relaxed) + 1;
        counters.pending_peak.fetch_max(pending, Ordering::Relaxed);
        ReliableCounters::bump(&counters.sent, 1);
        self.send_copy(self.first);
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

impl Handler<RetransmitDue> for PendingMessageActor {
    type Result = Option<Instant>;

    /// Sends a copy to every peer whose retransmission is due, finishes at the deadline, and
    /// says when to be woken next.
    fn handle(&mut self, _: RetransmitDue, ctx: &mut Self::Context) -> Option<Instant> {
        let due = self.send.poll_retransmits(self.shared.clock.now());
        ReliableCounters::bump(
            &self.shared.metrics.reliable.retransmitted,
            due.len() as u64,
        );
        for peer in due {
            // Its address now: a peer that moved is retransmitted to where it is.
            let addr = self.shared.peers.get(&peer).map(|p| p.addr);
            if let Some(addr) = addr {
                self.send_copy(Target::Unicast(addr));
            }
        }
        if self.finish_if_settled(None, ctx) {
            return None;
        }
        self.next_wake()
    }
}

impl Handler<AckFrom> for PendingMessageActor {
    type Result = ();

    fn handle(&mut self, AckFrom(peer): AckFrom, ctx: &mut Self::Context) {
        if self.send.on_ack(peer) {
            ReliableCounters::bump(&self.shared.metrics.reliable.acked, 1);
            self.peer_done(peer, ctx);
        }
    }
}

impl Handler<PeerGone> for PendingMessageActor {
    type Result = ();

    fn handle(&mut self, PeerGone(peer): PeerGone, ctx: &mut Self::Context) {
        if self.send.on_peer_left(peer) {
            self.peer_done(peer, ctx);
        }
    }
}
