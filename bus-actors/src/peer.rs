//! One actor per remote peer: from the answers to the endpoint's pings it estimates round-trip
//! time and clock offset, and gives them to the endpoint (retransmission timeouts, dating of
//! messages) and the bus's peer view.

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
}

impl PeerActor {
    pub(crate) fn new(shared: Arc<Shared>, id: PeerId) -> PeerActor {
        PeerActor {
            rtt: RttEstimator::new(shared.config.min_rto, shared.config.max_rto),
            shared,
            id,
            offset: ClockOffset::default(),
        }
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;
}

impl Handler<PongReceived> for PeerActor {
    type Result = ();

    fn handle(&mut self, PongReceived(sample): PongReceived, _: &mut Self::Context) {
        if sample.t4 < sample.t1 {
            // Not a pong for a ping of ours; ignore rather than poison the estimate.
            return;
        }
        self.rtt.on_sample(sample.rtt());
        crate::export::rtt_sample(self.shared.local_id, sample.rtt());
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
