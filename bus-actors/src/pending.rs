//! One actor per reliable message in flight: the application's side of a pending message. The
//! endpoint owns the protocol side (acknowledgement set, retransmission schedule, deadline, the
//! window); this actor holds the promise made to the publisher and keeps it when the endpoint
//! reports the outcome, then stops: no pending actor outlives its message.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use crate::messages::{Finished, ReportTo};
use crate::shared::Shared;

pub(crate) struct PendingMessageActor {
    shared: Arc<Shared>,
    reply: Option<ReportTo>,
}

impl PendingMessageActor {
    pub(crate) fn new(shared: Arc<Shared>, reply: ReportTo) -> PendingMessageActor {
        PendingMessageActor {
            shared,
            reply: Some(reply),
        }
    }
}

impl Actor for PendingMessageActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        let counters = &self.shared.metrics.reliable;
        let pending = counters.pending.fetch_add(1, Ordering::Relaxed) + 1;
        counters.pending_peak.fetch_max(pending, Ordering::Relaxed);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.shared
            .metrics
            .reliable
            .pending
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handler<Finished> for PendingMessageActor {
    type Result = ();

    fn handle(&mut self, Finished(report): Finished, ctx: &mut Self::Context) {
        if let Some(reply) = self.reply.take() {
            // The publisher may have stopped waiting; the outcome is counted either way.
            reply.send(report);
        }
        ctx.stop();
    }
}
