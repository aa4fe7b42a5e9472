//! One actor per remote peer: it pings the peer to measure round-trip time and clock offset,
//! and gives what it learns to the endpoint (retransmission timeouts, dating of messages) and
//! the bus's peer view.

use std::sync::Arc;

use actix::prelude::*;
use bus_core::endpoint::PeerTiming;
use bus_core::{ClockOffset, PeerId, RttEstimator};

use crate::messages::PongReceived;
use crate::shared::Shared;

pub(crate) struct PeerActor {
    shared: Arc<Shared>,
    id: PeerId,
    rtt: RttEstimator,
    offset: ClockOffset,
    next_ping_id: u64,
}

impl PeerActor {
    pub(crate) fn new(shared: Arc<Shared>, id: PeerId) -> PeerActor {
        PeerActor {
            rtt: RttEstimator::new(shared.config.min_rto, shared.config.max_rto),
            shared,
            id,
            offset: ClockOffset::default(),
            next_ping_id: 0,
        }
    }

    fn ping(&mut self) {
        let (id, ping_id) = (self.id, self.next_ping_id);
        self.next_ping_id += 1;
        self.shared
            .command(|endpoint, now| endpoint.ping(now, id, ping_id));
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.ping();
        ctx.run_interval(self.shared.config.ping_interval, |act, _| act.ping());
    }
}

impl Handler<PongReceived> for PeerActor {
    type Result = ();

    fn handle(&mut self, PongReceived(sample): PongReceived, _: &mut Self::Context) {
        if sample.t4 < sample.t1 {
            // Not a pong for a ping of ours; ignore rather than poison the estimate.
            return;
        }
        self.rtt.on_sample(sample.rtt());
        self.offset.on_sample(&sample);
        let timing = PeerTiming {
            rtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            clock_offset_us: self.offset.offset_us(),
        };
        let id = self.id;
        self.shared
            .command(|endpoint, _| endpoint.set_timing(id, timing));
    }
}
