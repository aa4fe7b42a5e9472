//! What the frames of an authenticated datagram body do.

use std::net::SocketAddr;

use bytes::Bytes;

use super::packet::Opened;
use super::{Delivery, Endpoint, Event, Target};
use crate::discovery::BeaconIgnored;
use crate::fragment::{CompletedTag, FragmentArrival};
use crate::metrics::DropReason;
use crate::reliability::Arrival;
use crate::rtt::{PingSample, remote_to_local};
use crate::time::Instant;
use crate::wire::{Frame, Frames};
use crate::{PeerId, TopicId};

impl Endpoint {
    /// Acts on the frames of `body`, which `sender` sent from `from`. The body is parsed once,
    /// whole, before anything is done: a datagram is taken whole or not at all, and only if it
    /// is for us and known fresh (or answers a challenge of ours, which proves it fresh).
    pub(super) fn handle_body(&mut self, now: Instant, from: SocketAddr, opened: &Opened) {
        let (sender, body) = (opened.sender, &opened.body);
        let frames = match Frames::new(body).collect::<Result<Vec<_>, _>>() {
            Ok(frames) => frames,
            Err(e) => return self.metrics.dropped(DropReason::of_decode_error(&e)),
        };
        let Some(bound) = self.recipient_check(opened, &frames) else {
            return self.metrics.dropped(DropReason::Misdirected);
        };
        if !self.is_fresh(opened) {
            match self.answer_in(&frames) {
                Some(answer) => self.on_answer(now, sender, from, answer),
                None => return self.refuse_unproven(now, from, sender, &frames),
            }
        }
        let mut membership_changed = false;
        let mut sent_at = None;
        // Payloads for the local subscriptions, delivered together after the loop.
        let mut arrived: Vec<(TopicId, u64, Bytes)> = Vec::new();
        for frame in frames {
            self.metrics.frame_in(frame.frame_type());
            match frame {
                Frame::Padding { .. } | Frame::To { .. } => {}
                Frame::Timestamp { sent_at_us } => {
                    sent_at = self
                        .timings
                        .get(&sender)
                        .and_then(|p| p.clock_offset_us)
                        .map(|offset| remote_to_local(sent_at_us, offset));
                }
                Frame::Beacon(beacon) => {
                    if beacon.peer_id != sender {
                        self.metrics.dropped(DropReason::SpoofedSender);
                        continue;
                    }
                    match self.table.handle_beacon(now, from, &beacon) {
                        Ok(()) => {
                            membership_changed = true;
                            self.beacon_life(opened, beacon.incarnation);
                            self.ask_for_descriptions(now, sender);
                            if beacon.wants_reply
                                && let Some(addr) = self.table.get(&sender).map(|p| p.addr)
                            {
                                // It has just come to know us fresh: tell it about us, and
                                // ask again whether it takes what we send.
                                self.send_beacon(&[Target::Unicast(addr)], false);
                                if !self.confirmed(sender) {
                                    self.ping(now, sender);
                                }
                            }
                            if opened.to_group {
                                // Its multicast reaches us: it will hear so in our pongs.
                                self.group_heard.insert(sender, now);
                            }
                        }
                        Err(BeaconIgnored::OwnBeacon) => {}
                        Err(BeaconIgnored::WrongVersion(_)) => {
                            self.metrics.dropped(DropReason::WrongVersion);
                        }
                        Err(BeaconIgnored::DuplicateId) => {
                            self.metrics.dropped(DropReason::DuplicateId);
                            // The first time, there is an event to report.
                            membership_changed = true;
                        }
                        Err(BeaconIgnored::TableFull) => {
                            self.metrics.dropped(DropReason::TableFull);
                        }
                    }
                }
                Frame::Publish { .. }
                | Frame::ReliablePublish { .. }
                | Frame::Ack(_)
                | Frame::Fragment { .. }
                | Frame::FragmentAck { .. }
                | Frame::Call { .. }
                | Frame::Reply { .. }
                | Frame::RegisterRead { .. }
                | Frame::RegisterWrite { .. }
                | Frame::RegisterUnreliableWrite { .. }
                    if !bound =>
                {
                    self.metrics.dropped(DropReason::Unbound);
                }
                Frame::Publish {
                    topic,
                    fingerprint,
                    payload,
                } => arrived.push((topic, fingerprint, body.slice_ref(payload))),
                frame @ Frame::ReliablePublish { .. } => {
                    self.reliable_arrived(now, (from, sender), &frame, body, &mut arrived);
                }
                Frame::Ack(ranges) => self.on_ack(now, sender, &ranges),
                Frame::Fragment {
                    message_id: fragment_id,
                    total_len,
                    offset,
                    reliable,
                    report,
                    data,
                } => {
                    let header = (fragment_id, total_len, offset);
                    let arrival = self.reassembler.on_fragment(now, sender, header, data);
                    for _ in 0..self.reassembler.take_evicted() {
                        self.metrics.dropped(DropReason::ReassemblyFull);
                    }
                    match arrival {
                        Ok(FragmentArrival::Complete(whole)) => {
                            let whole = Bytes::from(whole);
                            match reassembled_message(&whole) {
                                Some(Frame::Publish {
                                    topic,
                                    fingerprint,
                                    payload,
                                }) => arrived.push((topic, fingerprint, whole.slice_ref(payload))),
                                Some(frame @ Frame::ReliablePublish { .. }) => {
                                    let from = (from, sender);
                                    let acked = self.reliable_arrived(
                                        now,
                                        from,
                                        &frame,
                                        &whole,
                                        &mut arrived,
                                    );
                                    if let Some(message_id) = acked {
                                        self.reassembler.tag_completed(
                                            sender,
                                            fragment_id,
                                            CompletedTag::Acknowledged(message_id),
                                        );
                                    }
                                }
                                Some(
                                    frame @ (Frame::Call { .. }
                                    | Frame::Reply { .. }
                                    | Frame::RegisterRead { .. }
                                    | Frame::RegisterWrite { .. }
                                    | Frame::RegisterUnreliableWrite { .. }),
                                ) => {
                                    if let Some(request_id) = request_id_of(&frame) {
                                        let tag = CompletedTag::Request(request_id);
                                        self.reassembler.tag_completed(sender, fragment_id, tag);
                                    }
                                    self.on_request_frame(now, sender, frame, &whole);
                                }
                                _ => self.metrics.dropped(DropReason::FragmentInvalid),
                            }
                        }
                        // Asked for, or news for a sender that repairs: pieces went missing,
                        // or it sends what we hold (a probe, or our report was lost).
                        Ok(FragmentArrival::Held)
                            if report
                                || reliable
                                    && self.reassembler.opened_hole(sender, fragment_id) =>
                        {
                            self.reports_owed.insert((from, sender, fragment_id));
                            self.mark_busy();
                        }
                        Ok(FragmentArrival::Duplicate) if report || reliable => {
                            self.reports_owed.insert((from, sender, fragment_id));
                            self.mark_busy();
                        }
                        Ok(FragmentArrival::AlreadyComplete(Some(CompletedTag::Acknowledged(
                            message_id,
                        )))) => {
                            // Its sender did not get our acknowledgement.
                            self.acks_owed.entry(from).or_default().push(message_id);
                            self.mark_busy();
                        }
                        // A request sent again whole: its answer was lost, or is not ready.
                        // Once per copy (its first piece), not once per piece.
                        Ok(FragmentArrival::AlreadyComplete(Some(CompletedTag::Request(id))))
                            if offset == 0 =>
                        {
                            self.send_reply(sender, id);
                        }
                        Ok(_) => {}
                        Err(e) => self.metrics.dropped(DropReason::of_fragment_refused(e)),
                    }
                }
                Frame::FragmentAck {
                    fragment_id,
                    span,
                    held,
                } => self.on_fragment_report(now, sender, fragment_id, (span, &held)),
                Frame::Ping {
                    ping_id,
                    sent_at_us,
                } => {
                    let reply_to = self.table.get(&sender).map_or(from, |info| info.addr);
                    self.answer_ping(now, sender, reply_to, ping_id, sent_at_us);
                }
                Frame::Pong {
                    ping_id,
                    ping_sent_at_us,
                    ping_received_at_us,
                    sent_at_us,
                    hears_your_group,
                    knows_you_fresh,
                    incarnation,
                    epoch_ms,
                    epoch_counter,
                } => {
                    if self.pings.issued(ping_id) {
                        self.on_answer(now, sender, from, (incarnation, epoch_ms, epoch_counter));
                    }
                    // Only an answer to a ping we sent there proves the peer receives what we
                    // send there (a plaintext pong could come from anyone, from anywhere).
                    let answered = self.budgets.answered(from, ping_id);
                    if answered && self.table.get(&sender).is_some_and(|p| p.addr == from) {
                        // Routed to once it takes what we send: it opens our packets (it
                        // answered) and knows them fresh.
                        if knows_you_fresh {
                            self.reached_by_group(now, sender, hears_your_group);
                        }
                        self.events.push_back(Event::Pong {
                            peer: sender,
                            sample: PingSample {
                                t1: ping_sent_at_us,
                                t2: ping_received_at_us,
                                t3: sent_at_us,
                                t4: now.as_micros(),
                            },
                        });
                    }
                }
                Frame::SessionUnknown { index } => self.on_session_unknown(now, sender, index),
                frame @ (Frame::Call { .. }
                | Frame::Reply { .. }
                | Frame::RegisterRead { .. }
                | Frame::RegisterWrite { .. }
                | Frame::RegisterUnreliableWrite { .. }) => {
                    self.on_request_frame(now, sender, frame, body);
                }
                Frame::Topics { asking, topics } => {
                    self.on_descriptions(now, sender, asking, &topics);
                    membership_changed = true;
                }
                Frame::Peers(peers) => {
                    // Only a peer we know (whose beacon we authenticated) introduces others.
                    if self.table.get(&sender).is_some() {
                        self.introduce_to(now, from, &peers);
                    }
                }
                _ => self.metrics.dropped(DropReason::UnsupportedFrame),
            }
        }
        self.deliver(sender, &arrived, now, sent_at);
        if membership_changed {
            self.process_membership(now);
            if let Some(addr) = self.table.get(&sender).map(|p| p.addr) {
                self.maybe_initiate(now, sender, addr);
            }
        }
    }

    /// A reliable publish from `sender` at `from`, whose payloads lie in `body`: acknowledged
    /// and its events added to `arrived` if it is new and of a topic taken here. Returns its
    /// id if it is acknowledged.
    fn reliable_arrived(
        &mut self,
        now: Instant,
        (from, sender): (SocketAddr, PeerId),
        frame: &Frame<'_>,
        body: &Bytes,
        arrived: &mut Vec<(TopicId, u64, Bytes)>,
    ) -> Option<u64> {
        let Frame::ReliablePublish {
            topic,
            fingerprint,
            message_id,
            window,
            payloads,
        } = frame
        else {
            return None;
        };
        if !self.local_topics.contains(topic) {
            // An acknowledgement says "delivered": not for what nobody here takes.
            self.metrics.dropped(DropReason::NotSubscribed);
            return None;
        }
        let arrival = self.on_reliable(now, from, sender, (*message_id, *window), payloads)?;
        if arrival == Arrival::New {
            let events = payloads
                .iter()
                .map(|p| (*topic, *fingerprint, body.slice_ref(p)));
            arrived.extend(events);
        }
        Some(*message_id)
    }

    /// A call, a register read or write, or an answer to one, from `sender`: in a datagram, or
    /// reassembled from fragments; its payload lies in `body`.
    fn on_request_frame(&mut self, now: Instant, sender: PeerId, frame: Frame<'_>, body: &Bytes) {
        match frame {
            Frame::Call {
                request_id,
                method,
                incarnation,
                payload,
            } => {
                let payload = body.slice_ref(payload);
                self.on_request(now, sender, (request_id, incarnation), || Event::Request {
                    from: sender,
                    call_id: request_id,
                    method,
                    payload,
                });
            }
            Frame::RegisterRead {
                request_id,
                register,
                fingerprint,
                incarnation,
            } => {
                let read = || Event::RegisterRequest {
                    from: sender,
                    call_id: request_id,
                    register: TopicId(register),
                    fingerprint,
                    write: None,
                };
                self.on_request(now, sender, (request_id, incarnation), read);
            }
            Frame::RegisterWrite {
                request_id,
                register,
                fingerprint,
                incarnation,
                payload,
            } => {
                let value = body.slice_ref(payload);
                let write = || Event::RegisterRequest {
                    from: sender,
                    call_id: request_id,
                    register: TopicId(register),
                    fingerprint,
                    write: Some(value),
                };
                self.on_request(now, sender, (request_id, incarnation), write);
            }
            Frame::RegisterUnreliableWrite {
                register,
                fingerprint,
                incarnation,
                payload,
            } if self.for_this_life(incarnation) => {
                self.events.push_back(Event::RegisterWritten {
                    from: sender,
                    register: TopicId(register),
                    fingerprint,
                    value: body.slice_ref(payload),
                });
            }
            Frame::Reply {
                request_id,
                status,
                payload,
            } => self.on_reply(sender, request_id, status, body.slice_ref(payload)),
            _ => {}
        }
    }

    /// Whether the packet `opened`, of `frames`, is for us: `None` if it names another
    /// recipient (replayed from another peer's traffic); otherwise whether it may carry
    /// messages and acknowledgements. Group and session packets may; a unicast packet under the
    /// sender's epoch only if it names us (without a name, any key holder could have been meant,
    /// so it may carry control frames only). Plaintext proves nothing either way.
    pub(super) fn recipient_check(&self, opened: &Opened, frames: &[Frame<'_>]) -> Option<bool> {
        if opened.epoch.is_none() || opened.to_group {
            return Some(true);
        }
        match frames.iter().find_map(|f| match f {
            Frame::To { peer } => Some(*peer),
            _ => None,
        }) {
            Some(peer) if peer == self.config.local_id => Some(true),
            Some(_) => None,
            None => Some(false),
        }
    }

    /// `sender` says (authenticated) it does not have session `index`: if that is the one we
    /// send it on, we drop it; traffic goes under our epoch until a new handshake is done. Safe
    /// to act on even from a packet not known fresh: a replayed hint names a session that is
    /// no longer the current one.
    pub(super) fn on_session_unknown(&mut self, now: Instant, sender: PeerId, index: u32) {
        if let Some(addr) = self.table.get(&sender).map(|p| p.addr)
            && self.sessions.sends_on(addr, index)
        {
            self.sessions.drop_current(addr);
            self.maybe_initiate(now, sender, addr);
        }
    }

    /// Answers `sender`'s ping `ping_id` at `to`, with what the pinger needs to know our
    /// multicast fresh from now on.
    pub(super) fn answer_ping(
        &mut self,
        now: Instant,
        sender: PeerId,
        to: SocketAddr,
        ping_id: u64,
        sent_at_us: u64,
    ) {
        let (epoch_ms, epoch_counter) = self.epoch_position(now);
        let pong = Frame::Pong {
            ping_id,
            ping_sent_at_us: sent_at_us,
            ping_received_at_us: now.as_micros(),
            sent_at_us: now.as_micros(),
            hears_your_group: self.hears_group_of(sender, now),
            knows_you_fresh: self.knows_fresh(sender),
            incarnation: self.incarnation,
            epoch_ms,
            epoch_counter,
        };
        if self.queue(Target::Unicast(to), &pong).is_err() {
            self.metrics.dropped(DropReason::SendFailed);
        }
    }

    /// One [`Event::Deliver`] per run of payloads of one topic subscribed here.
    fn deliver(
        &mut self,
        from: PeerId,
        arrived: &[(TopicId, u64, Bytes)],
        received_at: Instant,
        sent_at: Option<Instant>,
    ) {
        for run in arrived.chunk_by(|a, b| a.0 == b.0) {
            if !self.local_topics.contains(&run[0].0) {
                continue;
            }
            self.events.push_back(Event::Deliver(Delivery {
                from,
                topic: run[0].0,
                payloads: run
                    .iter()
                    .map(|(_, fingerprint, payload)| (*fingerprint, payload.clone()))
                    .collect(),
                received_at,
                sent_at,
            }));
        }
    }
}

/// The message a reassembled frame carries: one publish, best effort or reliable, and
/// nothing else.
/// The id of a request that is answered (a call, a register read or write).
fn request_id_of(frame: &Frame<'_>) -> Option<u64> {
    match frame {
        Frame::Call { request_id, .. }
        | Frame::RegisterRead { request_id, .. }
        | Frame::RegisterWrite { request_id, .. } => Some(*request_id),
        _ => None,
    }
}

/// The one frame a reassembled frame is, if it is one that may be sent as fragments: a
/// message, or a call or register request or answer.
fn reassembled_message(whole: &Bytes) -> Option<Frame<'_>> {
    let mut frames = Frames::new(whole);
    let frame = frames.next()?.ok()?;
    let large = matches!(
        frame,
        Frame::Publish { .. }
            | Frame::ReliablePublish { .. }
            | Frame::Call { .. }
            | Frame::Reply { .. }
            | Frame::RegisterRead { .. }
            | Frame::RegisterWrite { .. }
            | Frame::RegisterUnreliableWrite { .. }
    );
    (large && frames.next().is_none()).then_some(frame)
}
