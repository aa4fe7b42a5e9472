//! One actor per reliable message in flight: the application's side of a pending message. The
//! endpoint owns the protocol side (acknowledgement set, retransmission schedule, deadline, the
//! window); this actor holds the promises made to the publishers of the events the message
//! carries and keeps them when the endpoint reports the outcome (events published without a
//! promise have a failure reported as a bus event), then stops: no pending actor outlives its
//! message.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use bus_core::TopicId;

use crate::messages::{BusEvent, Finished, ReportTo};
use crate::shared::Shared;

pub(crate) struct PendingMessageActor {
    shared: Arc<Shared>,
    topic: TopicId,
    replies: Vec<ReportTo>,
    /// Events published without awaiting their outcome.
    detached: usize,
}

impl PendingMessageActor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        topic: TopicId,
        events: usize,
        replies: Vec<ReportTo>,
    ) -> PendingMessageActor {
        PendingMessageActor {
            shared,
            topic,
            detached: events.saturating_sub(replies.len()),
            replies,
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
        if self.detached > 0 {
            let (topic, events, report) = (self.topic, self.detached, report.clone());
            if !report.is_complete() {
                self.shared.emit_event(&BusEvent::Undelivered {
                    topic,
                    events,
                    report,
                });
            } else if self.shared.config.report_reliable_successes {
                self.shared.emit_event(&BusEvent::Delivered {
                    topic,
                    events,
                    report,
                });
            }
        }
        // A publisher may have stopped waiting; the outcome is counted either way.
        for reply in self.replies.drain(..) {
            reply.send(report.clone());
        }
        ctx.stop();
    }
}
