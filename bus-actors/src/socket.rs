//! The socket actor: the only owner of the transport. It decodes what arrives, feeds beacons to
//! the membership table, hands publish payloads to subscription actors, answers pings, and sends
//! what the outbox holds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, PoisonError};

use actix::prelude::*;
use bus_core::crypto::EpochReceiver;
use bus_core::crypto::handshake::{self, CookieSecret, Initiation};
use bus_core::discovery::{BeaconIgnored, MembershipEvent, PeerInfo, PeerTable, next_beacon_at};
use bus_core::reliability::{Arrival, SenderWindows};
use bus_core::wire::{
    AckRanges, Beacon, Frame, Frames, Header, HeaderExtension, HeaderRepr, PROTOCOL_VERSION,
    PacketType,
};
use bus_core::{PeerId, TopicId};
use bytes::{Bytes, BytesMut};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::messages::{
    AckFrom, BusEvent, Flush, PeerGone, PeerMoved, PeerSnapshot, PendingFinished, PongReceived,
    RawMessages, RetransmitDue, Shutdown, StartReliable, StartReliableBatch, TopicsChanged,
};
use crate::metrics::{DropReason, ReliableCounters};
use crate::peer::PeerActor;
use crate::pending::PendingMessageActor;
use crate::sessions::Outstanding;
use crate::shared::{FastHash, Route, Shared};
use crate::transport::{Datagram, Target, Transport};

pub(crate) struct SocketActor {
    shared: Arc<Shared>,
    transport: Rc<dyn Transport>,
    incoming: Option<futures_util::stream::LocalBoxStream<'static, Datagram>>,
    table: PeerTable,
    peers: BTreeMap<PeerId, Addr<PeerActor>>,
    rng: ChaCha8Rng,
    flushing: bool,
    liveness_timer: Option<SpawnHandle>,
    /// Reliable messages in flight, by id.
    pending: BTreeMap<u64, Addr<PendingMessageActor>>,
    /// When each pending message next needs its actor woken, earliest first. Entries of
    /// messages that finished meanwhile are skipped when they come up.
    wakes: BinaryHeap<Reverse<(bus_core::Instant, u64)>>,
    /// The one timer over `wakes`, and when it fires.
    wake_timer: Option<(bus_core::Instant, SpawnHandle)>,
    /// What each sender's reliable messages we have received.
    senders: HashMap<PeerId, SenderWindows, FastHash>,
    /// Message ids to acknowledge, by the address of their sender.
    acks_owed: BTreeMap<SocketAddr, Vec<u64>>,
    /// Multicast epoch keys of the senders heard from.
    epochs: EpochReceiver,
    /// Handshake computations under way, off this actor's thread.
    handshakes_in_flight: usize,
    /// The timestamp of our last initiation: each must be greater than the one before.
    last_initiation: u64,
    /// The secret of our cookies, made when first under load.
    cookies: Option<CookieSecret>,
    /// Peers whose initiation is being computed, so that beacons meanwhile start no other.
    initiations_starting: std::collections::BTreeSet<SocketAddr>,
    /// A shutdown waiting for the reliable messages in flight to finish.
    drained: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Senders whose reliable-message windows are kept at once; beyond that the oldest is forgotten
/// (in plaintext mode anyone can claim to be a sender, so this must be bounded).
const MAX_SENDERS: usize = 4096;

/// Handshakes computed at once; more are dropped and counted (a flood cannot queue work).
const MAX_HANDSHAKES_IN_FLIGHT: usize = 16;

/// How long an initiation may wait for its response before another is sent.
const HANDSHAKE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Multicast epochs cached: two per sender for a large cluster.
const MAX_EPOCHS: usize = 2048;

/// Ranges per ack frame: a few hundred bytes at worst (the ids of one sender lie within its
/// window, so gaps and lengths take a few bytes each), well inside a datagram.
const RANGES_PER_ACK: usize = 64;

impl SocketActor {
    pub(crate) fn new(shared: Arc<Shared>, mut transport: Box<dyn Transport>, seed: u64) -> Self {
        let incoming = Some(transport.incoming());
        SocketActor {
            table: PeerTable::new(shared.local_id, shared.config.liveness_factor),
            shared,
            transport: Rc::from(transport),
            incoming,
            peers: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            flushing: false,
            liveness_timer: None,
            pending: BTreeMap::new(),
            wakes: BinaryHeap::new(),
            wake_timer: None,
            senders: HashMap::default(),
            acks_owed: BTreeMap::new(),
            epochs: EpochReceiver::new(MAX_EPOCHS),
            handshakes_in_flight: 0,
            last_initiation: 0,
            initiations_starting: std::collections::BTreeSet::new(),
            cookies: None,
            drained: None,
        }
    }

    fn beacon(&self, leaving: bool) -> Vec<u8> {
        let mut topics: Vec<TopicId> = self
            .shared
            .registry
            .iter()
            .filter(|e| !e.value().is_empty())
            .map(|e| *e.key())
            .collect();
        topics.sort_unstable();
        let config = &self.shared.config;
        let frame = Frame::Beacon(Beacon {
            peer_id: self.shared.local_id,
            version: PROTOCOL_VERSION,
            leaving,
            unicast_port: self.shared.local_addr.port(),
            interval_ms: u32::try_from(config.beacon_interval.as_millis()).unwrap_or(u32::MAX),
            topics,
            metadata: config
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        });
        let mut bytes = Vec::new();
        frame.emit(&mut bytes);
        bytes
    }

    /// Sends our beacon to the group and every seed (or to one peer, to introduce ourselves).
    fn send_beacon(&self, targets: &[Target], leaving: bool) {
        let beacon = self.beacon(leaving);
        for target in targets {
            if let Err(e) =
                self.shared
                    .enqueue_encoded(*target, bus_core::wire::FrameType::Beacon, &beacon)
            {
                tracing::error!("beacon does not fit in a datagram: {e}");
                return;
            }
        }
    }

    fn beacon_targets(&self) -> Vec<Target> {
        std::iter::once(Target::Group)
            .chain(self.shared.config.seeds.iter().map(|s| Target::Unicast(*s)))
            .collect()
    }

    fn schedule_beacon(&mut self, ctx: &mut Context<Self>) {
        let now = self.shared.clock.now();
        let at = next_beacon_at(now, self.shared.config.beacon_interval, &mut self.rng);
        ctx.run_later(self.shared.clock.until(at), |act, ctx| {
            let targets = act.beacon_targets();
            act.send_beacon(&targets, false);
            act.flush(ctx);
            act.schedule_beacon(ctx);
        });
    }

    fn rearm_liveness(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.liveness_timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = self.table.poll_timeout() {
            let delay = self.shared.clock.until(at);
            self.liveness_timer = Some(ctx.run_later(delay, |act, ctx| {
                act.liveness_timer = None;
                let now = act.shared.clock.now();
                act.table.handle_timeout(now);
                act.process_membership(ctx);
            }));
        }
    }

    /// Turns the acknowledgements owed into ack frames, batched per sender: the ids merged into
    /// ranges first, so a run of consecutive ids costs one range whatever its length.
    fn queue_acks(&mut self) {
        for (to, ids) in std::mem::take(&mut self.acks_owed) {
            let all = AckRanges::from_ranges(ids.iter().map(|id| *id..=*id));
            for chunk in all.ranges().chunks(RANGES_PER_ACK) {
                let ranges = AckRanges::from_ranges(chunk.iter().cloned());
                if self
                    .shared
                    .enqueue(Target::Unicast(to), &Frame::Ack(ranges))
                    .is_err()
                {
                    self.shared.metrics.dropped(DropReason::SendFailed);
                }
            }
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.queue_acks();
        if self.flushing {
            return;
        }
        self.flushing = true;
        let work = send_outbox(self.shared.clone(), self.transport.clone());
        ctx.spawn(work.into_actor(self).map(|(), act, _| act.flushing = false));
    }

    /// Schedules pending message `id` to be woken at `at`.
    fn wake_pending_at(&mut self, id: u64, at: Option<bus_core::Instant>, ctx: &mut Context<Self>) {
        let Some(at) = at else { return };
        self.wakes.push(Reverse((at, id)));
        if self
            .wake_timer
            .as_ref()
            .is_some_and(|(armed, _)| *armed <= at)
        {
            return;
        }
        if let Some((_, handle)) = self.wake_timer.take() {
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(self.shared.clock.until(at), |act, ctx| {
            act.wake_timer = None;
            act.wake_due_pending(ctx);
        });
        self.wake_timer = Some((at, handle));
    }

    /// Wakes every pending message whose time has come, and re-arms for the next.
    fn wake_due_pending(&mut self, ctx: &mut Context<Self>) {
        let now = self.shared.clock.now();
        while let Some(Reverse((at, id))) = self.wakes.peek().copied() {
            if at > now {
                break;
            }
            self.wakes.pop();
            // A message that finished meanwhile has nothing left to do.
            if let Some(actor) = self.pending.get(&id) {
                ctx.spawn(
                    actor
                        .send(RetransmitDue)
                        .into_actor(self)
                        .map(move |next, act, ctx| {
                            if let Ok(next) = next {
                                act.wake_pending_at(id, next, ctx);
                            }
                        }),
                );
            }
        }
        if let Some(Reverse((next, id))) = self.wakes.pop() {
            self.wake_pending_at(id, Some(next), ctx);
        }
    }

    fn snapshot(&self, info: &PeerInfo) -> PeerSnapshot {
        let previous = self.shared.peers.get(&info.id);
        PeerSnapshot {
            id: info.id,
            addr: info.addr,
            topics: info.topics.clone(),
            metadata: info.metadata.clone(),
            rtt: previous.as_ref().and_then(|p| p.rtt),
            clock_offset_us: previous.as_ref().and_then(|p| p.clock_offset_us),
            last_seen: info.last_seen,
            rto: previous
                .as_ref()
                .map_or_else(|| bus_core::RttEstimator::default().rto(), |p| p.rto),
        }
    }

    fn process_membership(&mut self, ctx: &mut Context<Self>) {
        let mut changed = false;
        while let Some(event) = self.table.poll_event() {
            changed = true;
            let bus_event = match event {
                MembershipEvent::Joined(info) => {
                    let snapshot = self.snapshot(&info);
                    self.shared.peers.insert(info.id, snapshot.clone());
                    let actor = PeerActor::new(self.shared.clone(), info.id, info.addr).start();
                    self.peers.insert(info.id, actor);
                    // Introduce ourselves at once rather than at our next beacon.
                    self.send_beacon(&[Target::Unicast(info.addr)], false);
                    BusEvent::PeerJoined(snapshot)
                }
                MembershipEvent::Updated(info) => {
                    let snapshot = self.snapshot(&info);
                    self.shared.peers.insert(info.id, snapshot.clone());
                    if let Some(actor) = self.peers.get(&info.id) {
                        actor.do_send(PeerMoved(info.addr));
                    }
                    BusEvent::PeerUpdated(snapshot)
                }
                MembershipEvent::Left(id) => {
                    self.forget(id);
                    BusEvent::PeerLeft(id)
                }
                MembershipEvent::Unreachable(id) => {
                    self.forget(id);
                    BusEvent::PeerUnreachable(id)
                }
            };
            self.shared.emit_event(&bus_event);
        }
        if changed {
            self.update_routes();
            self.flush(ctx);
        }
        self.rearm_liveness(ctx);
    }

    fn forget(&mut self, id: PeerId) {
        if let Some(peer) = self.shared.peers.get(&id) {
            crate::shared::lock(&self.shared.sessions).forget(peer.addr);
        }
        self.shared.peers.remove(&id);
        self.senders.remove(&id);
        for pending in self.pending.values() {
            pending.do_send(PeerGone(id));
        }
        if let Some(actor) = self.peers.remove(&id) {
            // Dropping the last address stops the actor once its mailbox drains.
            drop(actor);
        }
    }

    fn update_routes(&self) {
        let mut subscribers: HashMap<TopicId, Vec<&PeerInfo>> = HashMap::new();
        for peer in self.table.peers() {
            for topic in &peer.topics {
                subscribers.entry(*topic).or_default().push(peer);
            }
        }
        let routes = subscribers
            .into_iter()
            .map(|(topic, peers)| {
                let target = match peers.as_slice() {
                    [only] => Target::Unicast(only.addr),
                    _ => Target::Group,
                };
                // The table yields peers by id, so these are sorted.
                let subscribers = peers.iter().map(|p| p.id).collect();
                (
                    topic,
                    Route {
                        target,
                        subscribers,
                    },
                )
            })
            .collect();
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = routes;
    }

    /// Authenticates and decrypts a datagram as the security mode requires: its sender and its
    /// body of frames, or `None` (dropped and counted). Nothing unauthenticated gets further.
    fn unwrap(&mut self, datagram: Datagram, ctx: &mut Context<Self>) -> Option<(PeerId, Bytes)> {
        let metrics = &self.shared.metrics;
        let packet_type = match PacketType::of_datagram(&datagram.bytes) {
            Ok(t) => t,
            Err(e) => {
                metrics.dropped(DropReason::of_decode_error(&e));
                return None;
            }
        };
        let insecure = self.shared.security().is_insecure();
        match (packet_type, insecure) {
            (PacketType::Plain, true) => {
                let header = match Header::new_checked(&datagram.bytes[..]) {
                    Ok(header) => header,
                    Err(e) => {
                        metrics.dropped(DropReason::of_decode_error(&e));
                        return None;
                    }
                };
                if header.suite() != 0 {
                    metrics.dropped(DropReason::BadSuite);
                    return None;
                }
                let sender = header.sender()?;
                let body = datagram.bytes.slice(header.header_len()..);
                Some((sender, body))
            }
            (PacketType::MulticastData, false) => self.open_epoch(datagram.bytes),
            (PacketType::Data, false) => self.open_session(datagram.bytes),
            (PacketType::HandshakeInit, false) => {
                self.handle_initiation(&datagram, ctx);
                None
            }
            (PacketType::HandshakeResponse, false) => {
                self.handle_response(&datagram);
                None
            }
            (PacketType::CookieReply, false) => {
                self.handle_cookie(&datagram);
                None
            }
            // Plaintext on a secure bus, or encrypted packets on an insecure one.
            _ => {
                metrics.dropped(DropReason::UnsupportedPacket);
                None
            }
        }
    }

    fn open_epoch(&mut self, bytes: Bytes) -> Option<(PeerId, Bytes)> {
        let metrics = &self.shared.metrics;
        let header = match Header::new_checked(&bytes[..]) {
            Ok(header) => header,
            Err(e) => {
                metrics.dropped(DropReason::of_decode_error(&e));
                return None;
            }
        };
        if let HeaderExtension::MulticastData {
            epoch_timestamp_ms, ..
        } = HeaderRepr::parse(&header).extension
            && !self.shared.epoch_is_fresh(epoch_timestamp_ms)
        {
            metrics.dropped(DropReason::StaleTimestamp);
            return None;
        }
        let mut packet = writable(bytes);
        let security = self.shared.security();
        let opened = self
            .epochs
            .open_range(&mut packet, |sender, material, timestamp_ms| {
                security.epoch_key(sender, material, timestamp_ms)
            });
        match opened {
            Ok((sender, range)) => Some((sender, packet.freeze().slice(range))),
            Err(e) => {
                metrics.dropped(DropReason::of_open_error(e));
                None
            }
        }
    }

    fn open_session(&mut self, bytes: Bytes) -> Option<(PeerId, Bytes)> {
        let metrics = &self.shared.metrics;
        let index = match Header::new_checked(&bytes[..]) {
            Ok(header) => header.session_index(),
            Err(e) => {
                metrics.dropped(DropReason::of_decode_error(&e));
                return None;
            }
        };
        let mut packet = writable(bytes);
        let now = self.shared.clock.now();
        let opened = crate::shared::lock(&self.shared.sessions).open(index, &mut packet, now);
        match opened {
            Ok((peer, range)) => {
                metrics.session_datagram_in();
                Some((peer, packet.freeze().slice(range)))
            }
            Err(e) => {
                metrics.dropped(DropReason::of_open_error(e));
                None
            }
        }
    }

    /// Answers a handshake initiation, computing it off this thread; at most
    /// `MAX_HANDSHAKES_IN_FLIGHT` at once.
    fn handle_initiation(&mut self, datagram: &Datagram, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        let header = match handshake::peek_init(&datagram.bytes) {
            Ok(header) => header,
            Err(_) => return metrics.dropped(DropReason::Malformed),
        };
        let local = self.shared.local_id;
        let Some(credentials) = self
            .shared
            .security()
            .credentials(local, header.client, local)
        else {
            return metrics.dropped(DropReason::UnknownPeer);
        };
        // mac1 costs one keyed hash: junk stops here, before it can take a handshake slot.
        if let Err(e) = handshake::check_initiation(&datagram.bytes, &credentials) {
            return metrics.dropped(DropReason::of_handshake_error(e));
        }
        if self.handshakes_in_flight >= self.shared.config.handshake_load_threshold
            && !self.has_cookie(datagram)
        {
            // Under load: no work for an initiator that has not proved its address.
            let reply = self.cookies.as_ref().and_then(|c| {
                c.reply(
                    &datagram.bytes,
                    datagram.from,
                    &credentials,
                    &mut rand::rng(),
                )
                .ok()
            });
            if let Some(reply) = reply {
                self.shared
                    .send_raw(Target::Unicast(datagram.from), reply.to_vec());
            }
            return self.shared.metrics.dropped(DropReason::CookieSent);
        }
        if self.handshakes_in_flight >= MAX_HANDSHAKES_IN_FLIGHT {
            return metrics.dropped(DropReason::RateLimited);
        }
        self.handshakes_in_flight += 1;
        let initiation = datagram.bytes.clone();
        let from = datagram.from;
        let local_index = self.rng.next_u32();
        let now = self.shared.clock.now();
        let Ok(ephemeral) = bus_core::crypto::noise::Keypair::generate(&mut rand::rng()) else {
            self.handshakes_in_flight -= 1;
            return self.shared.metrics.dropped(DropReason::AuthFailure);
        };
        let work = tokio::task::spawn_blocking(move || {
            handshake::respond(&initiation, &credentials, local_index, now, ephemeral)
        });
        ctx.spawn(work.into_actor(self).map(move |result, act, _| {
            act.handshakes_in_flight -= 1;
            let metrics = &act.shared.metrics;
            let accepted = match result {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(e)) => return metrics.dropped(DropReason::of_handshake_error(e)),
                // The computation panicked: nothing came of this initiation.
                Err(_) => return metrics.dropped(DropReason::AuthFailure),
            };
            let mut sessions = crate::shared::lock(&act.shared.sessions);
            let last = sessions.last_timestamp.get(&accepted.client).copied();
            if last.is_some_and(|last| accepted.timestamp <= last) {
                // A replayed (or reordered, older) initiation.
                return metrics.dropped(DropReason::StaleTimestamp);
            }
            sessions
                .last_timestamp
                .insert(accepted.client, accepted.timestamp);
            sessions.install(from, accepted.client, accepted.session, false);
            drop(sessions);
            act.shared
                .send_raw(Target::Unicast(from), accepted.response.to_vec());
        }));
    }

    /// Whether an initiation carries a valid mac2 for its source address (making the cookie
    /// secret, and rotating it, as needed).
    fn has_cookie(&mut self, datagram: &Datagram) -> bool {
        let now = self.shared.clock.now();
        if self.cookies.is_none() {
            self.cookies = Some(CookieSecret::new(now, &mut rand::rng()));
        }
        match &mut self.cookies {
            Some(secret) => {
                secret.rotate_if_due(now, &mut rand::rng());
                secret.check_mac2(&datagram.bytes, datagram.from)
            }
            None => false,
        }
    }

    /// A responder under load sent a cookie: send the initiation again with it.
    fn handle_cookie(&mut self, datagram: &Datagram) {
        let metrics = &self.shared.metrics;
        let Some(index) = handshake::response_index(&datagram.bytes) else {
            return metrics.dropped(DropReason::Malformed);
        };
        let mut sessions = crate::shared::lock(&self.shared.sessions);
        let Some(outstanding) = sessions.outstanding.get_mut(&index) else {
            return metrics.dropped(DropReason::UnknownPeer);
        };
        match outstanding.initiation.accept_cookie(&datagram.bytes) {
            Ok(packet) => {
                outstanding.sent_at = self.shared.clock.now();
                let addr = outstanding.addr;
                drop(sessions);
                self.shared.send_raw(Target::Unicast(addr), packet.to_vec());
            }
            Err(e) => metrics.dropped(DropReason::of_handshake_error(e)),
        }
    }

    fn handle_response(&mut self, datagram: &Datagram) {
        let metrics = &self.shared.metrics;
        let Some(index) = handshake::response_index(&datagram.bytes) else {
            return metrics.dropped(DropReason::Malformed);
        };
        let mut sessions = crate::shared::lock(&self.shared.sessions);
        let Some(outstanding) = sessions.outstanding.remove(&index) else {
            return metrics.dropped(DropReason::UnknownPeer);
        };
        let now = self.shared.clock.now();
        match outstanding.initiation.finish(&datagram.bytes, now) {
            Ok(session) => sessions.install(outstanding.addr, outstanding.peer, session, true),
            Err(e) => metrics.dropped(DropReason::of_handshake_error(e)),
        }
    }

    /// Starts a handshake with `peer` if we are the side that initiates (the lower id), the
    /// bus is in PSK mode, and there is no session younger than the rekey interval nor an
    /// initiation waiting.
    fn maybe_initiate(&mut self, peer: PeerId, addr: SocketAddr, ctx: &mut Context<Self>) {
        if self.shared.local_id >= peer {
            return;
        }
        let local = self.shared.local_id;
        let Some(credentials) = self.shared.security().credentials(local, local, peer) else {
            return;
        };
        let now = self.shared.clock.now();
        {
            let sessions = crate::shared::lock(&self.shared.sessions);
            let fresh = sessions
                .current_since(addr)
                .is_some_and(|since| now - since < self.shared.config.rekey_after);
            if fresh
                || sessions.initiating(addr, now, HANDSHAKE_PATIENCE)
                || !self.initiations_starting.insert(addr)
            {
                return;
            }
        }
        let wall_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.last_initiation = wall_ns.max(self.last_initiation + 1);
        let timestamp = self.last_initiation;
        let index = self.rng.next_u32();
        let local_id = self.shared.local_id;
        let Ok(ephemeral) = bus_core::crypto::noise::Keypair::generate(&mut rand::rng()) else {
            self.initiations_starting.remove(&addr);
            return;
        };
        let work = tokio::task::spawn_blocking(move || {
            Initiation::start(local_id, &credentials, index, timestamp, ephemeral)
        });
        ctx.spawn(work.into_actor(self).map(move |result, act, _| {
            act.initiations_starting.remove(&addr);
            let Ok(Ok((initiation, packet))) = result else {
                tracing::error!("could not start a handshake with {peer}");
                return;
            };
            crate::shared::lock(&act.shared.sessions)
                .outstanding
                .insert(
                    index,
                    Outstanding {
                        initiation,
                        peer,
                        addr,
                        sent_at: act.shared.clock.now(),
                    },
                );
            act.shared.send_raw(Target::Unicast(addr), packet.to_vec());
        }));
    }

    fn handle_datagram(&mut self, datagram: Datagram, ctx: &mut Context<Self>) {
        self.shared.metrics.datagram_in(datagram.bytes.len());
        let from = datagram.from;
        let Some((sender, body)) = self.unwrap(datagram, ctx) else {
            return;
        };
        let metrics = &self.shared.metrics;
        if sender == self.shared.local_id {
            // Our own multicast, looped back.
            return;
        }
        // Validate every frame before acting on any: a datagram is taken whole or not at all.
        if let Some(Err(e)) = Frames::new(&body).find(Result::is_err) {
            return metrics.dropped(DropReason::of_decode_error(&e));
        }
        let now = self.shared.clock.now();
        let mut membership_changed = false;
        let mut initiate_with = None;
        let mut acks_owed = false;
        let mut sent_at = None;
        // Payloads to hand to local subscriptions, delivered together after the loop.
        let mut arrived: Vec<(TopicId, u64, Bytes)> = Vec::new();
        for frame in Frames::new(&body).flatten() {
            metrics.frame_in(frame.frame_type());
            match frame {
                Frame::Padding { .. } => {}
                Frame::Timestamp { sent_at_us } => {
                    sent_at = self
                        .shared
                        .peers
                        .get(&sender)
                        .and_then(|p| p.clock_offset_us)
                        .map(|offset| bus_core::remote_to_local(sent_at_us, offset));
                }
                Frame::Beacon(beacon) => {
                    if beacon.peer_id != sender {
                        metrics.dropped(DropReason::SpoofedSender);
                        continue;
                    }
                    match self.table.handle_beacon(now, from, &beacon) {
                        Ok(()) => {
                            membership_changed = true;
                            if let Some(addr) = self.table.get(&sender).map(|p| p.addr) {
                                initiate_with = Some(addr);
                            }
                        }
                        Err(BeaconIgnored::OwnBeacon) => {}
                        Err(BeaconIgnored::WrongVersion(_)) => {
                            metrics.dropped(DropReason::WrongVersion);
                        }
                    }
                }
                Frame::Publish {
                    topic,
                    fingerprint,
                    payload,
                } => arrived.push((topic, fingerprint, body.slice_ref(payload))),
                Frame::ReliablePublish {
                    topic,
                    fingerprint,
                    message_id,
                    window,
                    payload,
                } => {
                    if self.senders.len() >= MAX_SENDERS
                        && !self.senders.contains_key(&sender)
                        && let Some(evicted) = self.senders.keys().next().copied()
                    {
                        self.senders.remove(&evicted);
                    }
                    let windows = self.senders.entry(sender).or_default();
                    match windows.on_arrival(message_id, message_id - window) {
                        Arrival::New => {
                            ReliableCounters::bump(&metrics.reliable.received, 1);
                            arrived.push((topic, fingerprint, body.slice_ref(payload)));
                        }
                        Arrival::Duplicate => {
                            ReliableCounters::bump(&metrics.reliable.duplicates, 1);
                        }
                        Arrival::OutOfWindow => {
                            metrics.dropped(DropReason::OutOfWindow);
                            continue;
                        }
                    }
                    // Duplicates too: our first acknowledgement may have been lost.
                    self.acks_owed.entry(from).or_default().push(message_id);
                    acks_owed = true;
                }
                Frame::Ack(ranges) => {
                    for range in ranges.ranges() {
                        for pending in self.pending.range(range.clone()).map(|(_, a)| a) {
                            pending.do_send(AckFrom(sender));
                        }
                    }
                }
                Frame::Ping {
                    ping_id,
                    sent_at_us,
                } => {
                    let pong = Frame::Pong {
                        ping_id,
                        ping_sent_at_us: sent_at_us,
                        ping_received_at_us: now.as_micros(),
                        sent_at_us: self.shared.clock.now().as_micros(),
                    };
                    let reply_to = self.table.get(&sender).map_or(from, |info| info.addr);
                    if self
                        .shared
                        .enqueue(Target::Unicast(reply_to), &pong)
                        .is_err()
                    {
                        metrics.dropped(DropReason::SendFailed);
                    }
                }
                Frame::Pong {
                    ping_sent_at_us,
                    ping_received_at_us,
                    sent_at_us,
                    ..
                } => {
                    if let Some(actor) = self.peers.get(&sender) {
                        actor.do_send(PongReceived {
                            ping_sent_at_us,
                            ping_received_at_us,
                            sent_at_us,
                            received_at: now,
                        });
                    }
                }
                _ => metrics.dropped(DropReason::UnsupportedFrame),
            }
        }
        if !arrived.is_empty() {
            self.deliver(sender, arrived, now, sent_at);
        }
        if membership_changed {
            self.process_membership(ctx);
        }
        if let Some(addr) = initiate_with
            && !self.shared.security().is_insecure()
        {
            self.maybe_initiate(sender, addr, ctx);
        }
        if acks_owed {
            ctx.notify(Flush);
        }
    }

    /// Hands the payloads of a datagram to the local subscriptions of their topics: one
    /// mailbox message per run of payloads of one topic.
    fn deliver(
        &self,
        from: PeerId,
        arrived: Vec<(TopicId, u64, Bytes)>,
        received_at: bus_core::Instant,
        sent_at: Option<bus_core::Instant>,
    ) {
        for run in arrived.chunk_by(|a, b| a.0 == b.0) {
            let topic = run[0].0;
            let Some(subscriptions) = self.shared.registry.get(&topic) else {
                continue;
            };
            let payloads: Arc<[(u64, Bytes)]> = run
                .iter()
                .map(|(_, fingerprint, payload)| (*fingerprint, payload.clone()))
                .collect();
            for sub in subscriptions.iter() {
                sub.raw.do_send(RawMessages {
                    from,
                    payloads: payloads.clone(),
                    received_at,
                    sent_at,
                });
            }
        }
    }
}

/// Sends everything the outbox holds, batch after batch, until it is empty.
async fn send_outbox(shared: Arc<Shared>, transport: Rc<dyn Transport>) {
    while let Some(batch) = shared.drain_outbox() {
        let report = transport.send_batch(batch).await;
        for _ in 0..report.failed {
            shared.metrics.dropped(DropReason::SendFailed);
        }
        shared.metrics.datagrams_out(report.sent, report.bytes);
    }
}

/// The datagram's bytes, writable for decryption in place: without a copy when the transport
/// handed over the only reference, as it does.
fn writable(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(incoming) = self.incoming.take() {
            ctx.add_stream(incoming);
        }
        let targets = self.beacon_targets();
        self.send_beacon(&targets, false);
        self.flush(ctx);
        self.schedule_beacon(ctx);
    }
}

impl StreamHandler<Datagram> for SocketActor {
    fn handle(&mut self, datagram: Datagram, ctx: &mut Self::Context) {
        self.handle_datagram(datagram, ctx);
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

impl SocketActor {
    fn start_pending(&mut self, start: StartReliable, ctx: &mut Context<Self>) {
        let id = start.message_id;
        let pending = PendingMessageActor::new(self.shared.clone(), start);
        let wake = pending.next_wake();
        self.pending.insert(id, pending.start());
        self.wake_pending_at(id, wake, ctx);
    }
}

impl Handler<StartReliable> for SocketActor {
    type Result = ();
    fn handle(&mut self, start: StartReliable, ctx: &mut Self::Context) {
        self.start_pending(start, ctx);
    }
}

impl Handler<StartReliableBatch> for SocketActor {
    type Result = ();
    fn handle(&mut self, StartReliableBatch(batch): StartReliableBatch, ctx: &mut Self::Context) {
        for start in batch {
            self.start_pending(start, ctx);
        }
    }
}

impl Handler<PendingFinished> for SocketActor {
    type Result = ();
    fn handle(&mut self, PendingFinished(id): PendingFinished, _: &mut Self::Context) {
        self.pending.remove(&id);
        if self.pending.is_empty()
            && let Some(drained) = self.drained.take()
        {
            let _ = drained.send(());
        }
    }
}

impl Handler<TopicsChanged> for SocketActor {
    type Result = ();
    fn handle(&mut self, _: TopicsChanged, ctx: &mut Self::Context) {
        let targets = self.beacon_targets();
        self.send_beacon(&targets, false);
        let known: Vec<Target> = self
            .table
            .peers()
            .map(|p| Target::Unicast(p.addr))
            .collect();
        // Peers that know us learn the new topics without waiting for the multicast to loop.
        self.send_beacon(&known, false);
        self.flush(ctx);
    }
}

impl Handler<Shutdown> for SocketActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Lets the reliable messages in flight finish (each within its deadline), then says
    /// goodbye, sends what is queued, and stops.
    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let (drained_tx, drained) = tokio::sync::oneshot::channel();
        if self.pending.is_empty() {
            let _ = drained_tx.send(());
        } else {
            self.drained = Some(drained_tx);
        }
        Box::pin(
            async move {
                let _ = drained.await;
            }
            .into_actor(self)
            .then(|(), act, _ctx| {
                let targets = act.beacon_targets();
                act.send_beacon(&targets, true);
                act.peers.clear();
                send_outbox(act.shared.clone(), act.transport.clone()).into_actor(act)
            })
            .map(|(), _act, ctx| ctx.stop()),
        )
    }
}
