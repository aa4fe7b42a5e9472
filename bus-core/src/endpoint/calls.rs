//! Remote procedure calls: a call is retransmitted to its peer until it is answered or its
//! deadline passes, and a server runs each call once however often it arrives. The server
//! keeps each answer for `EndpointConfig::dedup_retention` and answers a retransmitted call
//! with it; a call that arrives while its handler runs is ignored (the answer will come).
//!
//! A call to a peer that leaves, falls silent past its liveness timeout or restarts fails at
//! once: whether it ran is then unknown, and running it again in the peer's new life could
//! run it twice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bytes::Bytes;

use super::{Endpoint, Event, Target};
use crate::PeerId;
use crate::TopicId;
use crate::batch::FrameTooLarge;
use crate::metrics::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::{Frame, FrameType};

/// Calls in flight from one endpoint at most.
pub const MAX_CALLS_IN_FLIGHT: usize = 4096;

/// Answers kept per caller at most: a caller with more calls in flight than this could see
/// one run twice, so the bus's own callers never have that many to one peer.
const MAX_ANSWERS_PER_CALLER: usize = 8192;

/// Why a call failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CallFailure {
    /// No answer came before the deadline (the peer may or may not have run it).
    Timeout,
    /// The peer left, fell silent past its liveness timeout, or restarted before answering
    /// (it may or may not have run it).
    PeerGone,
}

/// Why a call could not be made.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The peer is not known (or not answering our pings yet).
    #[error("peer {0} is not known")]
    UnknownPeer(PeerId),
    /// [`MAX_CALLS_IN_FLIGHT`] calls are in flight already.
    #[error("{MAX_CALLS_IN_FLIGHT} calls are in flight already")]
    TooManyCalls,
    /// The call is larger than the largest message (one larger than a datagram goes as
    /// fragments).
    #[error(transparent)]
    TooLarge(#[from] FrameTooLarge),
}

#[derive(Debug)]
struct OutgoingCall {
    peer: PeerId,
    /// The encoded call frame (or register read or write), sent again as it is.
    frame: Bytes,
    /// Its fragment id, if it is larger than a datagram.
    fragment_id: Option<u64>,
    kind: FrameType,
    deadline: Instant,
    /// Copies go until then at most: one arriving later could find its answer forgotten
    /// (answers are kept for `dedup_retention`) and run again.
    resend_until: Instant,
    next_send: Instant,
    rto: Duration,
}

#[derive(Debug)]
enum Answer {
    /// Its handler runs.
    Running,
    /// Its answer, given at `at`, kept for retransmitted calls.
    Done {
        status: u8,
        payload: Bytes,
        at: Instant,
        /// The fragment id the answer goes under, if it is larger than a datagram.
        fragment_id: Option<u64>,
    },
}

/// The calls this endpoint makes and serves.
#[derive(Debug, Default)]
pub(super) struct Calls {
    next_id: u64,
    outgoing: HashMap<u64, OutgoingCall>,
    /// When each outgoing call is next due: to send again, or to fail.
    wakes: BinaryHeap<Reverse<(Instant, u64)>>,
    /// What each caller's calls got, by call id, with the order they came in for pruning.
    answers: HashMap<PeerId, CallerAnswers>,
}

#[derive(Debug, Default)]
struct CallerAnswers {
    by_id: HashMap<u64, Answer>,
    /// (when it came, or was answered, id), oldest first.
    order: VecDeque<(Instant, u64)>,
}

impl Calls {
    pub(super) fn new(first_id: u64) -> Calls {
        Calls {
            next_id: first_id,
            ..Calls::default()
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.wakes.peek().map(|Reverse((at, _))| *at)
    }
}

impl Endpoint {
    /// Calls procedure `method` of `peer` with `payload`; its answer comes as
    /// [`Event::Replied`] with the id returned, or its failure as [`Event::CallFailed`] at
    /// `deadline` at the latest.
    ///
    /// # Errors
    /// [`CallError`] if the peer is not known, too many calls are in flight, or the call is
    /// larger than the largest message (one larger than a datagram goes as fragments).
    pub fn call(
        &mut self,
        now: Instant,
        peer: PeerId,
        method: u64,
        payload: &[u8],
        deadline: Duration,
    ) -> Result<u64, CallError> {
        self.start_request(now, peer, deadline, |request_id, incarnation| Frame::Call {
            request_id,
            method,
            incarnation,
            payload,
        })
    }

    /// Reads register `register` of `peer`, expecting a value of the type `fingerprint` is
    /// of: its answer comes as [`Event::Replied`] (the value, or an error status), or its
    /// failure as [`Event::CallFailed`], like a call's.
    ///
    /// # Errors
    /// As [`Endpoint::call`].
    pub fn read_register(
        &mut self,
        now: Instant,
        peer: PeerId,
        (register, fingerprint): (TopicId, u64),
        deadline: Duration,
    ) -> Result<u64, CallError> {
        self.start_request(now, peer, deadline, |request_id, incarnation| {
            Frame::RegisterRead {
                request_id,
                register: register.0,
                fingerprint,
                incarnation,
            }
        })
    }

    /// Writes `value` (of the type `fingerprint` is of) to register `register` of `peer`,
    /// applied at most once: its answer (empty once applied, or an error status) comes as
    /// [`Event::Replied`], or its failure as [`Event::CallFailed`], like a call's.
    ///
    /// # Errors
    /// As [`Endpoint::call`].
    pub fn write_register(
        &mut self,
        now: Instant,
        peer: PeerId,
        (register, fingerprint): (TopicId, u64),
        value: &[u8],
        deadline: Duration,
    ) -> Result<u64, CallError> {
        self.start_request(now, peer, deadline, |request_id, incarnation| {
            Frame::RegisterWrite {
                request_id,
                register: register.0,
                fingerprint,
                incarnation,
                payload: value,
            }
        })
    }

    /// Writes `value` to register `register` of `peer` once, with no answer and no
    /// retransmission: lost if its datagram is.
    ///
    /// # Errors
    /// As [`Endpoint::call`], except that nothing counts against the calls in flight.
    pub fn write_register_unreliable(
        &mut self,
        peer: PeerId,
        (register, fingerprint): (TopicId, u64),
        value: &[u8],
    ) -> Result<(), CallError> {
        let (addr, incarnation) = self.callee(peer)?;
        let frame = Frame::RegisterUnreliableWrite {
            register: register.0,
            fingerprint,
            incarnation,
            payload: value,
        };
        let encoded = self.encode_request(&frame)?;
        let fragment_id = self.fragment_id_for(encoded.len());
        self.queue_whole(
            Target::Unicast(addr),
            frame.frame_type(),
            (&encoded, fragment_id),
        )?;
        Ok(())
    }

    /// `frame`, encoded, if it is no larger than the largest message (a request larger than
    /// a datagram goes as fragments).
    fn encode_request(&self, frame: &Frame<'_>) -> Result<Bytes, CallError> {
        let (len, max) = (frame.encoded_len(), self.config.reassembly.max_message);
        if len > max {
            return Err(FrameTooLarge { len, max }.into());
        }
        let mut encoded = Vec::with_capacity(len);
        frame.emit(&mut encoded);
        Ok(Bytes::from(encoded))
    }

    /// How long after its first copy a request may be sent again: while every copy still
    /// arrives within the server's retention of its answer (`dedup_retention`, the same on the
    /// peers of a cluster), less a retransmission interval for the copies in flight.
    fn resend_span(&self) -> Duration {
        self.config
            .dedup_retention
            .saturating_sub(self.config.max_rto)
    }

    /// The address and life of `peer`, if it may be called.
    fn callee(&self, peer: PeerId) -> Result<(std::net::SocketAddr, u64), CallError> {
        self.table
            .get(&peer)
            .filter(|_| self.confirmed(peer))
            .map(|p| (p.addr, p.incarnation))
            .ok_or(CallError::UnknownPeer(peer))
    }

    /// Sends the request `frame` makes of its id and the peer's incarnation, and keeps
    /// sending it until it is answered or `deadline` passes.
    fn start_request<'a>(
        &mut self,
        now: Instant,
        peer: PeerId,
        deadline: Duration,
        frame: impl FnOnce(u64, u64) -> Frame<'a>,
    ) -> Result<u64, CallError> {
        let (addr, incarnation) = self.callee(peer)?;
        if self.calls.outgoing.len() >= MAX_CALLS_IN_FLIGHT {
            return Err(CallError::TooManyCalls);
        }
        let id = self.calls.next_id;
        let frame = frame(id, incarnation);
        let kind = frame.frame_type();
        let encoded = self.encode_request(&frame)?;
        self.calls.next_id = id.wrapping_add(1);
        let rto = self.timing(peer).rto;
        let fragment_id = self.fragment_id_for(encoded.len());
        let _ = self.queue_whole(Target::Unicast(addr), kind, (&encoded, fragment_id));
        let call = OutgoingCall {
            peer,
            frame: encoded,
            fragment_id,
            kind,
            deadline: now + deadline,
            resend_until: now + self.resend_span(),
            next_send: now + rto,
            rto,
        };
        self.calls
            .wakes
            .push(Reverse((call.next_send.min(call.deadline), id)));
        self.calls.outgoing.insert(id, call);
        Ok(id)
    }

    /// Answers call `call_id` of `peer` (given by [`Event::Request`]): status 0 and the
    /// result, or an error status and a short message. Kept, and sent again to a caller that
    /// did not get it.
    pub fn reply(&mut self, now: Instant, peer: PeerId, call_id: u64, status: u8, payload: &[u8]) {
        let awaited = self
            .calls
            .answers
            .get(&peer)
            .is_some_and(|a| a.by_id.contains_key(&call_id));
        if !awaited {
            return;
        }
        // An answer larger than the caller can take back says so instead.
        let max = self.config.reassembly.max_message;
        let whole = Frame::Reply {
            request_id: call_id,
            status,
            payload,
        };
        let (status, payload) = if whole.encoded_len() > max {
            let message = format!("an answer of {} bytes is over {max}", payload.len());
            (crate::rpc::STATUS_UNENCODABLE_REPLY, Bytes::from(message))
        } else {
            (status, Bytes::copy_from_slice(payload))
        };
        let sent = Frame::Reply {
            request_id: call_id,
            status,
            payload: &payload,
        };
        let fragment_id = self.fragment_id_for(sent.encoded_len());
        if let Some(answers) = self.calls.answers.get_mut(&peer) {
            answers.by_id.insert(
                call_id,
                Answer::Done {
                    status,
                    payload,
                    at: now,
                    fragment_id,
                },
            );
            answers.order.push_back((now, call_id));
        }
        self.send_reply(peer, call_id);
    }

    /// Sends the answer kept for `peer`'s call `call_id` again, if there is one.
    pub(super) fn send_reply(&mut self, peer: PeerId, call_id: u64) {
        let Some(addr) = self.table.get(&peer).map(|p| p.addr) else {
            return;
        };
        let Some(Answer::Done {
            status,
            payload,
            fragment_id,
            ..
        }) = self
            .calls
            .answers
            .get(&peer)
            .and_then(|a| a.by_id.get(&call_id))
        else {
            return;
        };
        let frame = Frame::Reply {
            request_id: call_id,
            status: *status,
            payload,
        };
        let mut encoded = Vec::with_capacity(frame.encoded_len());
        frame.emit(&mut encoded);
        if self
            .queue_whole(
                Target::Unicast(addr),
                FrameType::Reply,
                (&Bytes::from(encoded), *fragment_id),
            )
            .is_err()
        {
            self.metrics.dropped(DropReason::SendFailed);
        }
    }

    /// A call (or register read or write) `call_id` from `from` meant for our life
    /// `incarnation`: passed on once, as the event `request` makes, and answered again if it
    /// was answered.
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        from: PeerId,
        (call_id, incarnation): (u64, u64),
        request: impl FnOnce() -> Event,
    ) {
        if !self.for_this_life(incarnation) {
            return;
        }
        if self.table.get(&from).is_none() {
            // An answer could not be sent, nor kept for long.
            self.metrics.dropped(DropReason::UnknownPeer);
            return;
        }
        let answers = self.calls.answers.entry(from).or_default();
        match answers.by_id.get(&call_id) {
            Some(Answer::Running) => {}
            Some(Answer::Done { .. }) => self.send_reply(from, call_id),
            None => {
                if answers.by_id.len() >= MAX_ANSWERS_PER_CALLER {
                    // Its oldest answers go first: it has long stopped retransmitting those.
                    prune_oldest(answers);
                }
                answers.by_id.insert(call_id, Answer::Running);
                answers.order.push_back((now, call_id));
                self.events.push_back(request());
            }
        }
    }

    /// Whether a request meant for our life `incarnation` is for this one; one for a life
    /// before ours, which may have run it, is dropped (its caller learns of our restart from
    /// our beacons and fails it).
    pub(super) fn for_this_life(&self, incarnation: u64) -> bool {
        if incarnation != self.incarnation {
            self.metrics.dropped(DropReason::Misdirected);
            return false;
        }
        true
    }

    /// An answer from `from` to call `call_id` of ours.
    pub(super) fn on_reply(&mut self, from: PeerId, call_id: u64, status: u8, payload: Bytes) {
        match self.calls.outgoing.get(&call_id) {
            Some(call) if call.peer == from => {
                self.calls.outgoing.remove(&call_id);
                self.events.push_back(Event::Replied {
                    call_id,
                    status,
                    payload,
                });
            }
            // Answered already (a duplicate), or not ours to answer.
            _ => {}
        }
    }

    /// Sends again the calls that are due, and fails those past their deadline; forgets
    /// answers kept past their retention.
    pub(super) fn calls_due(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.calls.wakes.peek().copied() {
            if at > now {
                break;
            }
            self.calls.wakes.pop();
            let Some(call) = self.calls.outgoing.get_mut(&id) else {
                continue;
            };
            if now >= call.deadline {
                self.calls.outgoing.remove(&id);
                self.events.push_back(Event::CallFailed {
                    call_id: id,
                    reason: CallFailure::Timeout,
                });
                continue;
            }
            if now < call.next_send {
                // An earlier wake of this call, already rescheduled.
                continue;
            }
            if now >= call.resend_until {
                // It may still be answered (its handler runs long); it is not sent again.
                call.next_send = call.deadline;
                self.calls.wakes.push(Reverse((call.deadline, id)));
                continue;
            }
            call.rto = (call.rto * 2).min(self.config.max_rto);
            call.next_send = now + call.rto;
            let (peer, next) = (call.peer, call.next_send.min(call.deadline));
            let (frame, kind, fragment_id) = (call.frame.clone(), call.kind, call.fragment_id);
            self.calls.wakes.push(Reverse((next, id)));
            if let Some(addr) = self.addr_of(peer) {
                let _ = self.queue_whole(Target::Unicast(addr), kind, (&frame, fragment_id));
            }
        }
        let retention = self.config.dedup_retention;
        for answers in self.calls.answers.values_mut() {
            while let Some((at, id)) = answers.order.front().copied() {
                if now.saturating_duration_since(at) < retention {
                    break;
                }
                answers.order.pop_front();
                // An answer given later has an entry of its own, further on.
                let expired = match answers.by_id.get(&id) {
                    Some(Answer::Done { at, .. }) => {
                        now.saturating_duration_since(*at) >= retention
                    }
                    // Never answered: its caller gave up long ago.
                    Some(Answer::Running) => true,
                    None => false,
                };
                if expired {
                    answers.by_id.remove(&id);
                }
            }
        }
        self.calls.answers.retain(|_, a| !a.by_id.is_empty());
    }

    /// `peer` left, fell silent or restarted: its calls in flight fail now; what it called
    /// here stays answered (a restarted caller uses new call ids).
    pub(super) fn calls_to_gone_peer(&mut self, peer: PeerId) {
        let gone: Vec<u64> = self
            .calls
            .outgoing
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for call_id in gone {
            self.calls.outgoing.remove(&call_id);
            self.events.push_back(Event::CallFailed {
                call_id,
                reason: CallFailure::PeerGone,
            });
        }
    }
}

fn prune_oldest(answers: &mut CallerAnswers) {
    while answers.by_id.len() >= MAX_ANSWERS_PER_CALLER {
        let Some((_, id)) = answers.order.pop_front() else {
            return;
        };
        answers.by_id.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeSet;
    use std::rc::Rc;

    use super::super::sim::SimEndpoint;
    use super::super::{EndpointConfig, Security};
    use super::CallFailure;
    use crate::endpoint::tests::{dead, lossy, peer_of, psk};
    use crate::sim::{LinkConfig, NodeId, Simulation};
    use crate::time::{Duration, Instant};

    const INCREMENT: u64 = 1;

    fn config(node: usize, security: &Security) -> EndpointConfig {
        EndpointConfig {
            // Membership does not flap at 30% loss: these tests are about calls.
            liveness_factor: 1000,
            ..EndpointConfig::new(peer_of(node), security.clone())
        }
    }

    /// Node 0 calls node 1's counter `calls` times, ten every 10 ms once node 1 is confirmed;
    /// node 1 counts how often its handler runs. Returns the simulation and that count.
    fn counter(
        security: &Security,
        link: LinkConfig,
        calls: u64,
    ) -> (Simulation<SimEndpoint>, Rc<Cell<u64>>) {
        let runs = Rc::new(Cell::new(0u64));
        let counted = runs.clone();
        let server =
            SimEndpoint::new(NodeId(1), config(1, security), [21; 32]).serving(move |method, _| {
                assert_eq!(method, INCREMENT);
                counted.set(counted.get() + 1);
                (0, counted.get().to_le_bytes().to_vec())
            });
        let made = Rc::new(Cell::new(0u64));
        let next_batch = Rc::new(Cell::new(Instant::ZERO));
        let caller = SimEndpoint::new(NodeId(0), config(0, security), [20; 32]).with_app(
            move |endpoint, now| {
                if !endpoint.confirmed(peer_of(1)) || now < next_batch.get() {
                    return;
                }
                next_batch.set(now + Duration::from_millis(10));
                for _ in 0..10 {
                    if made.get() == calls {
                        return;
                    }
                    let deadline = Duration::from_secs(60);
                    let call = endpoint.call(now, peer_of(1), INCREMENT, b"+1", deadline);
                    assert!(call.is_ok(), "{call:?}");
                    made.set(made.get() + 1);
                }
            },
        );
        (Simulation::new(9, link, vec![caller, server]), runs)
    }

    /// Issue 16, acceptance 1 (the simulator's half): a procedure that increments a counter,
    /// called 1,000 times through 30% loss, 10% duplication and reordering, runs exactly 1,000
    /// times, and every call gets its own answer; in plaintext and encrypted.
    #[test]
    fn a_counter_called_a_thousand_times_through_loss_counts_a_thousand() {
        for security in [Security::Insecure, psk()] {
            let (mut sim, runs) = counter(&security, lossy(0.3), 1000);
            sim.drive_until(Instant::from_millis(60_000));
            assert_eq!(runs.get(), 1000, "{security:?}");
            let replies = &sim.nodes[0].replies;
            assert_eq!(replies.len(), 1000, "{security:?}");
            let values: BTreeSet<u64> = replies
                .iter()
                .map(|(_, outcome)| match outcome {
                    Ok((0, result)) => u64::from_le_bytes(result[..].try_into().unwrap()),
                    other => panic!("{other:?}"),
                })
                .collect();
            // Each call saw its own increment: every count from 1 to 1000, once.
            assert_eq!(values, (1..=1000).collect(), "{security:?}");
            let ids: BTreeSet<u64> = replies.iter().map(|(id, _)| *id).collect();
            assert_eq!(ids.len(), 1000);
            // The path under test was taken: calls came more than once, and were answered
            // again rather than run again.
            let came = sim.nodes[1].endpoint.metrics().snapshot();
            let calls_in = came.frames_in(crate::wire::FrameType::Call);
            assert!(calls_in > 1200, "{security:?}: {calls_in} calls arrived");
        }
    }

    /// A call to a peer that never answers fails at its deadline; one to a peer that leaves
    /// fails at once.
    #[test]
    fn calls_fail_at_their_deadline_or_when_their_peer_goes() {
        let (mut sim, _) = counter(&Security::Insecure, LinkConfig::default(), 0);
        sim.drive_until(Instant::from_millis(2_000));
        let dead = LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        };
        sim.network.set_link(NodeId(0), NodeId(1), dead);
        let now = Instant::from_millis(2_000);
        let call = sim.nodes[0]
            .endpoint
            .call(now, peer_of(1), INCREMENT, b"", Duration::from_millis(500))
            .unwrap();
        sim.drive_until(Instant::from_millis(2_499));
        assert!(sim.nodes[0].replies.is_empty());
        sim.drive_until(Instant::from_millis(2_600));
        assert_eq!(sim.nodes[0].replies, [(call, Err(CallFailure::Timeout))]);

        sim.network
            .set_link(NodeId(0), NodeId(1), LinkConfig::default());
        let now = Instant::from_millis(2_600);
        let pending = sim.nodes[0]
            .endpoint
            .call(now, peer_of(1), INCREMENT, b"", Duration::from_secs(60))
            .unwrap();
        // The server is slow: it does not answer. It leaves instead.
        sim.nodes[1].endpoint.leave();
        sim.drive_until(Instant::from_millis(2_700));
        assert_eq!(
            sim.nodes[0].replies[1],
            (pending, Err(CallFailure::PeerGone))
        );
    }

    /// A server that counts its runs in `runs` across its lives.
    fn counting_server(
        security: &Security,
        runs: &Rc<Cell<u64>>,
        seed: u8,
        now: Instant,
    ) -> SimEndpoint {
        let counted = runs.clone();
        SimEndpoint::started_at(NodeId(1), config(1, security), [seed; 32], now).serving(
            move |_, _| {
                counted.set(counted.get() + 1);
                (0, counted.get().to_le_bytes().to_vec())
            },
        )
    }

    /// A server that ran a call and whose answer was lost restarts: the caller's retransmission
    /// is not run by its new life (which has no memory of it), and the call fails as
    /// `PeerGone` once the restart is seen, well before its deadline; in plaintext and
    /// encrypted.
    #[test]
    fn a_call_to_a_server_that_restarts_fails_and_never_runs_twice() {
        for security in [Security::Insecure, psk()] {
            let runs = Rc::new(Cell::new(0u64));
            let caller = SimEndpoint::new(NodeId(0), config(0, &security), [20; 32]);
            let server = counting_server(&security, &runs, 21, Instant::ZERO);
            let mut sim = Simulation::new(3, LinkConfig::default(), vec![caller, server]);
            sim.drive_until(Instant::from_millis(2_000));
            assert!(sim.nodes[0].endpoint.confirmed(peer_of(1)));
            // The answer is lost: the server ran the call, the caller does not know.
            sim.network.set_link(NodeId(1), NodeId(0), dead());
            let now = sim.now();
            let deadline = Duration::from_secs(60);
            let call = sim.nodes[0]
                .endpoint
                .call(now, peer_of(1), INCREMENT, b"+1", deadline)
                .unwrap();
            sim.drive_until(now + Duration::from_millis(300));
            assert_eq!(runs.get(), 1, "{security:?}");
            let restart = sim.now();
            sim.nodes[1] = counting_server(&security, &runs, 22, restart);
            sim.network
                .set_link(NodeId(1), NodeId(0), LinkConfig::default());
            sim.drive_until(restart + Duration::from_secs(5));
            assert_eq!(
                sim.nodes[0].replies,
                [(call, Err(CallFailure::PeerGone))],
                "{security:?}"
            );
            assert_eq!(runs.get(), 1, "{security:?}: run again by the new life");
            // The new life serves new calls.
            let now = sim.now();
            let again = sim.nodes[0]
                .endpoint
                .call(now, peer_of(1), INCREMENT, b"+1", deadline)
                .unwrap();
            sim.drive_until(now + Duration::from_secs(1));
            assert_eq!(sim.nodes[0].replies[1].0, again);
            assert!(matches!(sim.nodes[0].replies[1].1, Ok((0, _))));
            assert_eq!(runs.get(), 2, "{security:?}");
        }
    }

    /// A partition shorter than the call's deadline delays the call; it runs once and is
    /// answered once after the partition heals, however many times it was sent meanwhile.
    #[test]
    fn a_call_through_a_partition_shorter_than_its_deadline_runs_once() {
        for security in [Security::Insecure, psk()] {
            let runs = Rc::new(Cell::new(0u64));
            let caller = SimEndpoint::new(NodeId(0), config(0, &security), [20; 32]);
            let server = counting_server(&security, &runs, 21, Instant::ZERO);
            let mut sim = Simulation::new(4, LinkConfig::default(), vec![caller, server]);
            sim.drive_until(Instant::from_millis(2_000));
            // First the answers are cut (the server runs it), then everything, for 3 s.
            sim.network.set_link(NodeId(1), NodeId(0), dead());
            let now = sim.now();
            let call = sim.nodes[0]
                .endpoint
                .call(now, peer_of(1), INCREMENT, b"+1", Duration::from_secs(10))
                .unwrap();
            sim.drive_until(now + Duration::from_millis(100));
            sim.network.set_link(NodeId(0), NodeId(1), dead());
            sim.drive_until(now + Duration::from_secs(3));
            assert!(sim.nodes[0].replies.is_empty());
            for (from, to) in [(0, 1), (1, 0)] {
                sim.network
                    .set_link(NodeId(from), NodeId(to), LinkConfig::default());
            }
            sim.drive_until(now + Duration::from_secs(12));
            assert_eq!(sim.nodes[0].replies.len(), 1, "{security:?}");
            let (id, outcome) = &sim.nodes[0].replies[0];
            assert_eq!(*id, call);
            assert_eq!(outcome, &Ok((0, 1u64.to_le_bytes().to_vec().into())));
            assert_eq!(runs.get(), 1, "{security:?}");
        }
    }

    /// An attacker records a call on the wire and replays it, once its answer is long
    /// forgotten (past the retention) and again into the server's next life: it is never run
    /// again; the replays are dropped and counted.
    #[test]
    fn a_replayed_call_is_not_run_again() {
        let runs = Rc::new(Cell::new(0u64));
        let security = psk();
        let caller = SimEndpoint::new(NodeId(0), config(0, &security), [20; 32]);
        let server = counting_server(&security, &runs, 21, Instant::ZERO).capturing();
        let mut sim = Simulation::new(5, LinkConfig::default(), vec![caller, server]);
        sim.drive_until(Instant::from_millis(2_000));
        let now = sim.now();
        let _ = sim.nodes[1].take_captured(NodeId(0), crate::wire::PacketType::Data);
        sim.nodes[1].captured = Some(Vec::new());
        sim.nodes[0]
            .endpoint
            .call(now, peer_of(1), INCREMENT, b"+1", Duration::from_secs(5))
            .unwrap();
        sim.drive_until(now + Duration::from_millis(50));
        assert_eq!(runs.get(), 1);
        let recorded = sim.nodes[1].take_captured(NodeId(0), crate::wire::PacketType::Data);
        assert!(!recorded.is_empty());
        let replay = |sim: &mut Simulation<SimEndpoint>| {
            use crate::sim::Node;
            let now = sim.now();
            let before = sim.nodes[1].endpoint.metrics().snapshot();
            for bytes in &recorded {
                sim.nodes[1].handle_datagram(now, NodeId(0), bytes);
            }
            let after = sim.nodes[1].endpoint.metrics().snapshot();
            after.total_drops() - before.total_drops()
        };
        // Past the answer's retention.
        let retention = sim.nodes[1].endpoint.config.dedup_retention;
        sim.drive_until(sim.now() + retention + Duration::from_secs(1));
        assert_eq!(replay(&mut sim), recorded.len() as u64);
        sim.drive_until(sim.now() + Duration::from_millis(100));
        assert_eq!(runs.get(), 1, "the replay ran");
        // Into the server's next life.
        let restart = sim.now();
        sim.nodes[1] = counting_server(&security, &runs, 22, restart);
        sim.drive_until(restart + Duration::from_secs(3));
        assert_eq!(replay(&mut sim), recorded.len() as u64);
        sim.drive_until(sim.now() + Duration::from_millis(100));
        assert_eq!(runs.get(), 1, "the replay ran in the new life");
    }

    /// Another peer answering a call made to someone else is ignored: the call gets its own
    /// server's answer.
    #[test]
    fn an_answer_from_another_peer_is_ignored() {
        let runs = Rc::new(Cell::new(0u64));
        let security = Security::Insecure;
        let caller = SimEndpoint::new(NodeId(0), config(0, &security), [20; 32]);
        let server = counting_server(&security, &runs, 21, Instant::ZERO);
        let forger = SimEndpoint::new(NodeId(2), config(2, &security), [23; 32]);
        let mut sim = Simulation::new(6, LinkConfig::default(), vec![caller, server, forger]);
        sim.drive_until(Instant::from_millis(2_000));
        // The server's answers are late; the forger answers first.
        sim.network.set_link(NodeId(1), NodeId(0), dead());
        let now = sim.now();
        let call = sim.nodes[0]
            .endpoint
            .call(now, peer_of(1), INCREMENT, b"+1", Duration::from_secs(5))
            .unwrap();
        sim.drive_until(now + Duration::from_millis(10));
        let forger = &mut sim.nodes[2].endpoint;
        forger
            .calls
            .answers
            .entry(peer_of(0))
            .or_default()
            .by_id
            .insert(call, super::Answer::Running);
        forger.reply(now, peer_of(0), call, 0, b"forged");
        sim.drive_until(now + Duration::from_millis(100));
        assert!(
            sim.nodes[0].replies.is_empty(),
            "{:?}",
            sim.nodes[0].replies
        );
        sim.network
            .set_link(NodeId(1), NodeId(0), LinkConfig::default());
        sim.drive_until(now + Duration::from_secs(2));
        assert_eq!(
            sim.nodes[0].replies,
            [(call, Ok((0, 1u64.to_le_bytes().to_vec().into())))]
        );
    }

    /// The same through 30% loss, duplication and reordering, with the restart at 200 points
    /// in the call's retransmission schedule: a retransmission reaching the new life before the
    /// caller has seen the restart is dropped there (it names the old life), never run. Before
    /// calls named the server's life, 6 of 300 plaintext runs ran a call twice.
    #[test]
    fn a_call_retransmitted_into_a_restarted_server_is_never_run() {
        for security in [Security::Insecure, psk()] {
            for seed in 0..200u64 {
                let runs = Rc::new(Cell::new(0u64));
                let caller = SimEndpoint::new(NodeId(0), config(0, &security), [20; 32]);
                let server = counting_server(&security, &runs, 21, Instant::ZERO);
                let mut sim = Simulation::new(seed, lossy(0.3), vec![caller, server]);
                sim.drive_until(Instant::from_millis(3_000));
                if !sim.nodes[0].endpoint.confirmed(peer_of(1)) {
                    continue;
                }
                sim.network.set_link(NodeId(1), NodeId(0), dead());
                let now = sim.now();
                let deadline = Duration::from_secs(60);
                let call = sim.nodes[0]
                    .endpoint
                    .call(now, peer_of(1), INCREMENT, b"+1", deadline)
                    .unwrap();
                sim.drive_until(now + Duration::from_millis(5 + seed * 7 % 700));
                let restart = sim.now();
                let ran = runs.get();
                sim.nodes[1] = counting_server(&security, &runs, 22, restart);
                sim.network.set_link(NodeId(1), NodeId(0), lossy(0.3));
                sim.drive_until(restart + Duration::from_secs(10));
                let outcome = &sim.nodes[0].replies;
                assert_eq!(runs.get(), ran, "{security:?}, seed {seed}: {outcome:?}");
                assert_eq!(outcome, &[(call, Err(CallFailure::PeerGone))]);
            }
        }
    }

    /// Calls and answers larger than a datagram go as fragments: twenty 200 kB echoes through
    /// 30% loss, 10% duplication and reordering each run once and come back whole; each copy
    /// sent again completes the pieces the receiver holds.
    #[test]
    fn large_calls_and_answers_go_as_fragments_through_loss() {
        for security in [Security::Insecure, psk()] {
            let runs = Rc::new(Cell::new(0u64));
            let counted = runs.clone();
            // Calls on a network this lossy need a longer reliable deadline, as messages do.
            let config = |node| EndpointConfig {
                dedup_retention: Duration::from_secs(60),
                ..config(node, &security)
            };
            let server =
                SimEndpoint::new(NodeId(1), config(1), [21; 32]).serving(move |_, argument| {
                    counted.set(counted.get() + 1);
                    (0, argument.to_vec())
                });
            let caller = SimEndpoint::new(NodeId(0), config(0), [20; 32]);
            let mut sim = Simulation::new(12, lossy(0.3), vec![caller, server]);
            let mut at = Instant::from_millis(1_000);
            while !sim.nodes[0].endpoint.confirmed(peer_of(1)) && at < Instant::from_millis(20_000)
            {
                at += Duration::from_millis(500);
                sim.drive_until(at);
            }
            assert!(sim.nodes[0].endpoint.confirmed(peer_of(1)));
            let now = sim.now();
            let arguments: Vec<Vec<u8>> = (0..20u8)
                .map(|i| (0..200_000u32).map(|b| (b as u8) ^ i).collect())
                .collect();
            let ids: Vec<u64> = arguments
                .iter()
                .map(|argument| {
                    sim.nodes[0]
                        .endpoint
                        .call(
                            now,
                            peer_of(1),
                            INCREMENT,
                            argument,
                            Duration::from_secs(120),
                        )
                        .unwrap()
                })
                .collect();
            sim.drive_until(now + Duration::from_secs(120));
            let replies = &sim.nodes[0].replies;
            let answered = |(id, argument): (&u64, &Vec<u8>)| {
                replies.iter().any(|(i, outcome)| {
                    i == id && matches!(outcome, Ok((0, back)) if back[..] == argument[..])
                })
            };
            let whole = ids.iter().zip(&arguments).filter(|c| answered(*c)).count();
            let failed: Vec<_> = replies
                .iter()
                .filter_map(|(_, r)| r.as_ref().err())
                .collect();
            assert_eq!(
                (runs.get(), replies.len(), whole),
                (20, 20, 20),
                "{security:?}: {failed:?}"
            );
        }
    }

    /// A call whose deadline is longer than the server keeps answers for is sent again only
    /// while its answer is kept: its answer lost for longer, it times out, and never runs a
    /// second time (before, a copy sent after the answer was forgotten ran it again).
    #[test]
    fn a_call_outliving_the_answer_retention_never_runs_twice() {
        for security in [Security::Insecure, psk()] {
            let runs = Rc::new(Cell::new(0u64));
            let caller = SimEndpoint::new(NodeId(0), config(0, &security), [20; 32]);
            let server = counting_server(&security, &runs, 21, Instant::ZERO);
            let mut sim = Simulation::new(13, LinkConfig::default(), vec![caller, server]);
            sim.drive_until(Instant::from_millis(2_000));
            let retention = sim.nodes[1].endpoint.config.dedup_retention;
            sim.network.set_link(NodeId(1), NodeId(0), dead());
            let now = sim.now();
            let deadline = retention * 4;
            let call = sim.nodes[0]
                .endpoint
                .call(now, peer_of(1), INCREMENT, b"+1", deadline)
                .unwrap();
            sim.drive_until(now + retention * 2);
            sim.network
                .set_link(NodeId(1), NodeId(0), LinkConfig::default());
            sim.drive_until(now + deadline + Duration::from_secs(1));
            assert_eq!(runs.get(), 1, "{security:?}");
            assert_eq!(sim.nodes[0].replies, [(call, Err(CallFailure::Timeout))]);
        }
    }
}
