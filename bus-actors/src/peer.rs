//! One actor per remote peer: it pings the peer to measure round-trip time and clock offset,
//! and publishes what it learns to the bus's peer view.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bus_core::wire::Frame;
use bus_core::{ClockOffset, PeerId, PingSample, RttEstimator};

use crate::messages::{PeerMoved, PongReceived};
use crate::shared::Shared;
use crate::transport::Target;

pub(crate) struct PeerActor {
    shared: Arc<Shared>,
    id: PeerId,
    addr: SocketAddr,
    rtt: RttEstimator,
    offset: ClockOffset,
    next_ping_id: u64,
}

impl PeerActor {
    pub(crate) fn new(shared: Arc<Shared>, id: PeerId, addr: SocketAddr) -> PeerActor {
        PeerActor {
            shared,
            id,
            addr,
            rtt: RttEstimator::default(),
            offset: ClockOffset::default(),
            next_ping_id: 0,
        }
    }

    fn ping(&mut self) {
        let frame = Frame::Ping {
            ping_id: self.next_ping_id,
            sent_at_us: self.shared.clock.now().as_micros(),
        };
        self.next_ping_id += 1;
        if let Err(e) = self.shared.enqueue(Target::Unicast(self.addr), &frame) {
            tracing::debug!("ping to {} not queued: {e}", self.id);
        }
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

    fn handle(&mut self, pong: PongReceived, _: &mut Self::Context) {
        let sample = PingSample {
            t1: pong.ping_sent_at_us,
            t2: pong.ping_received_at_us,
            t3: pong.sent_at_us,
            t4: pong.received_at.as_micros(),
        };
        if sample.t4 < sample.t1 {
            // Not a pong for a ping of ours; ignore rather than poison the estimate.
            return;
        }
        self.rtt.on_sample(sample.rtt());
        self.offset.on_sample(&sample);
        if let Some(mut snapshot) = self.shared.peers.get_mut(&self.id) {
            snapshot.rtt = self.rtt.srtt();
            snapshot.rto = self.rtt.rto();
            snapshot.clock_offset_us = self.offset.offset_us();
        }
    }
}

impl Handler<PeerMoved> for PeerActor {
    type Result = ();

    fn handle(&mut self, PeerMoved(addr): PeerMoved, _: &mut Self::Context) {
        self.addr = addr;
    }
}
