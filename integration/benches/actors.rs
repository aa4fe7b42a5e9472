//! The floor of the actor-per-message model: what one pending-message actor's life costs in
//! actix alone (start it, deliver one acknowledgement to it, let it answer its publisher and
//! stop), with none of the bus's work. `bus-bench thr --reliability reliable` spends its time
//! in this plus the protocol; this bench says how much of a reliable message is the model's.
//!
//! Beside it, the same life as an entry in one table instead of an actor (the message's
//! `ReliableSend`, its publisher's oneshot, its retransmission wake-up in a heap): what a pending
//! message would cost if the design kept pending messages as data, for the decision between the
//! two.

#![allow(clippy::expect_used)] // A benchmark that cannot set up has nothing to measure.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bus_core::PeerId;
use bus_core::reliability::{DeliveryReport, ReliableSend};

use actix::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::sync::oneshot;

#[derive(Message)]
#[rtype(result = "()")]
struct Ack;

/// The shape of a pending-message actor, minus the protocol: a reply to resolve on the ack.
struct Pending {
    reply: Option<oneshot::Sender<()>>,
}

impl Actor for Pending {
    type Context = Context<Self>;
}

impl Handler<Ack> for Pending {
    type Result = ();
    fn handle(&mut self, _: Ack, ctx: &mut Context<Self>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(());
        }
        ctx.stop();
    }
}

/// `n` lives, `in_flight` at a time as in `bus-bench` (the window keeps thousands alive).
async fn lives(n: u64, in_flight: usize) -> Duration {
    let started = Instant::now();
    let mut live = std::collections::VecDeque::with_capacity(in_flight);
    for _ in 0..n {
        let (reply, done) = oneshot::channel();
        let actor = Pending { reply: Some(reply) }.start();
        live.push_back((actor, done));
        if live.len() == in_flight
            && let Some((actor, done)) = live.pop_front()
        {
            actor.do_send(Ack);
            drop(actor);
            done.await.expect("the actor answers");
        }
    }
    while let Some((actor, done)) = live.pop_front() {
        actor.do_send(Ack);
        drop(actor);
        done.await.expect("the actor answers");
    }
    started.elapsed()
}

/// `n` lives of a pending message kept as table entries, `in_flight` at a time.
async fn entries(n: u64, in_flight: usize) -> Duration {
    type Entry = (ReliableSend, oneshot::Sender<DeliveryReport>);
    let peer = PeerId([1; 16]);
    let rto = bus_core::Duration::from_millis(200);
    let now = bus_core::Instant::ZERO;
    let mut table: HashMap<u64, Entry> = HashMap::with_capacity(in_flight);
    let mut wakes = BinaryHeap::with_capacity(in_flight);
    let mut live = std::collections::VecDeque::with_capacity(in_flight);
    let started = Instant::now();
    let ack = |id: u64, table: &mut HashMap<u64, Entry>| {
        if let Some((mut send, reply)) = table.remove(&id) {
            send.on_ack(peer);
            if let Some(report) = send.outcome(now) {
                let _ = reply.send(report);
            }
        }
    };
    for id in 0..n {
        let (reply, done) = oneshot::channel();
        let send = ReliableSend::new(now, id, [(peer, rto)], now + rto * 25, rto);
        wakes.push(Reverse((send.poll_timeout(), id)));
        table.insert(id, (send, reply));
        live.push_back((id, done));
        if live.len() == in_flight
            && let Some((id, done)) = live.pop_front()
        {
            ack(id, &mut table);
            done.await.expect("the entry answers");
        }
    }
    while let Some((id, done)) = live.pop_front() {
        ack(id, &mut table);
        done.await.expect("the entry answers");
    }
    // Finished messages' wake-ups are skipped when they come up; here they are all stale.
    wakes.clear();
    started.elapsed()
}

fn actor_per_message(c: &mut Criterion) {
    for in_flight in [1usize, 4096] {
        c.bench_function(&format!("pending_actor_life/in_flight_{in_flight}"), |b| {
            b.iter_custom(|n| System::new().block_on(lives(n, in_flight)));
        });
        c.bench_function(&format!("pending_entry_life/in_flight_{in_flight}"), |b| {
            b.iter_custom(|n| System::new().block_on(entries(n, in_flight)));
        });
    }
}

criterion_group!(benches, actor_per_message);
criterion_main!(benches);
