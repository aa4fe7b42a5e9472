//! Remote procedure calls. A peer serves a procedure with an actor: typed, handling
//! [`Request<Q>`] for a request type `Q` derived with `#[derive(Rpc)]`, or by number, bytes in
//! and bytes out, handling [`CallRequest`] (for clients in other languages). Another peer
//! calls it with [`Bus::call`] or [`Bus::call_procedure`].
//!
//! Each call runs at most once however the network treats it (see the endpoint's calls), off
//! the receive path: a handler's work is its actor's, and a slow one delays only the calls
//! waiting for it. Each call in flight is a [`PendingCallActor`], which keeps the caller's
//! promise when the endpoint reports the outcome.
//!
//! What a caller can be told: the reply; [`Error::Refused`] with the handler's code and
//! message; [`Error::Remote`] with a status of [`bus_core::rpc`] (no such procedure, an
//! undecodable request, a remote failure); never a backtrace or detail of the server's.

use std::sync::Arc;

use actix::prelude::*;
use bus_core::endpoint::CallFailure;
use bus_core::rpc::{
    self as wire, RESERVED_PROCEDURES, STATUS_NO_SUCH_PROCEDURE, STATUS_REFUSED,
    STATUS_REMOTE_FAILURE, STATUS_UNDECODABLE, STATUS_UNENCODABLE_REPLY,
};
use bus_core::{Duration, PeerId, Rpc, TopicId};
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::bus::Bus;
use crate::error::Error;
use crate::shared::lock;

/// How long a call waits for its answer unless told otherwise ([`Bus::call_within`]).
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(5);

/// A handler's refusal of a call: a code of the application's and a short message, both
/// sent to the caller as they are (so they should say nothing the caller must not know).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Refusal {
    /// The application's code for it.
    pub code: u16,
    /// What to tell the caller.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<String> for Refusal {
    /// A refusal with code 0.
    fn from(message: String) -> Refusal {
        Refusal::new(0, message)
    }
}

impl From<&str> for Refusal {
    /// A refusal with code 0.
    fn from(message: &str) -> Refusal {
        Refusal::new(0, message)
    }
}

/// A call of a procedure this peer serves by number.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Vec<u8>, Refusal>")]
pub struct CallRequest {
    /// The caller.
    pub from: PeerId,
    /// The procedure's number.
    pub procedure: u16,
    /// The argument.
    pub payload: Bytes,
}

/// A typed call of `Q`'s procedure, decoded.
#[derive(Debug)]
pub struct Request<Q> {
    /// The caller.
    pub from: PeerId,
    /// What it asks.
    pub request: Q,
}

impl<Q: Rpc> Message for Request<Q> {
    type Result = Result<Q::Reply, Refusal>;
}

/// One server's answer to a group call of `Q`: who it is, and its reply or why there is none.
pub type ServerAnswer<Q> = (PeerId, Result<<Q as Rpc>::Reply, Error>);

/// The status and payload of an answer.
pub(crate) type Answer = (u8, Vec<u8>);

/// Runs a call of a served procedure: (caller, fingerprint bits of its method, argument).
type Procedure = Arc<dyn Fn(PeerId, u64, Bytes) -> BoxFuture<'static, Answer> + Send + Sync>;

/// A procedure this peer serves.
#[derive(Clone)]
pub(crate) struct Served {
    handler: Procedure,
    /// Calls of it run at once at most, if limited; the others wait their turn.
    limit: Option<Arc<tokio::sync::Semaphore>>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("limit", &self.limit.as_ref().map(|l| l.available_permits()))
            .finish_non_exhaustive()
    }
}

impl Served {
    /// The answer to a call of it, once its handler gives one (after its turn, if limited).
    pub(crate) fn run(
        &self,
        from: PeerId,
        bits: u64,
        payload: Bytes,
    ) -> BoxFuture<'static, Answer> {
        let (handler, limit) = (self.handler.clone(), self.limit.clone());
        Box::pin(async move {
            let _turn = match limit {
                // Never closed: a closed limit would mean no turn, so the call fails.
                Some(limit) => match limit.acquire_owned().await {
                    Ok(turn) => Some(turn),
                    Err(_) => return remote_failure(),
                },
                None => None,
            };
            handler(from, bits, payload).await
        })
    }
}

/// The answer to a call of a procedure nobody serves here.
pub(crate) fn no_such_procedure() -> Answer {
    (STATUS_NO_SUCH_PROCEDURE, b"no such procedure".to_vec())
}

pub(crate) fn remote_failure() -> Answer {
    (STATUS_REMOTE_FAILURE, b"remote failure".to_vec())
}

pub(crate) fn refused(refusal: &Refusal) -> Answer {
    (
        STATUS_REFUSED,
        wire::encode_refusal(refusal.code, &refusal.message),
    )
}

/// One actor per call in flight: holds the caller's promise and keeps it when the endpoint
/// reports the outcome, then stops.
pub(crate) struct PendingCallActor {
    waiter: Option<tokio::sync::oneshot::Sender<Result<(u8, Bytes), CallFailure>>>,
}

impl Actor for PendingCallActor {
    type Context = Context<Self>;
}

/// A call's outcome, from the endpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CallOutcome(pub(crate) Result<(u8, Bytes), CallFailure>);

impl Handler<CallOutcome> for PendingCallActor {
    type Result = ();

    fn handle(&mut self, CallOutcome(outcome): CallOutcome, ctx: &mut Self::Context) {
        if let Some(waiter) = self.waiter.take() {
            // The caller may have stopped waiting.
            let _ = waiter.send(outcome);
        }
        ctx.stop();
    }
}

impl Bus {
    /// Serves procedure `procedure` by number with `handler` from now on (a second handler for
    /// the same number replaces the first, and its limit). The handler's `Ok` bytes go back to
    /// the caller; an `Err` reaches it as [`Error::Refused`].
    ///
    /// # Errors
    /// [`Error::ReservedProcedure`] for a number of the bus's own range.
    pub fn serve(&self, procedure: u16, handler: Recipient<CallRequest>) -> Result<(), Error> {
        let handler: Procedure = Arc::new(move |from, _, payload| {
            let call = handler.send(CallRequest {
                from,
                procedure,
                payload,
            });
            Box::pin(async move {
                match call.await {
                    Ok(Ok(result)) => (0, result),
                    Ok(Err(refusal)) => refused(&refusal),
                    // Its actor stopped, or panicked: nothing of that leaves this peer.
                    Err(_) => remote_failure(),
                }
            })
        });
        self.add_procedure(procedure, handler)
    }

    /// Serves procedure `procedure` by number with a plain function of the caller and the
    /// argument (Pavillion's `registers[401] = f`). Each call runs on the blocking thread
    /// pool, never on the bus's own thread, so the function may take its time or block; a
    /// panic in it reaches the caller as [`Error::Remote`] with `STATUS_REMOTE_FAILURE` and
    /// nothing more. `Ok` bytes go back to the caller; an `Err` reaches it as
    /// [`Error::Refused`].
    ///
    /// # Errors
    /// As [`Bus::serve`].
    pub fn serve_fn(
        &self,
        procedure: u16,
        function: impl Fn(PeerId, &[u8]) -> Result<Vec<u8>, Refusal> + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let function = Arc::new(function);
        let handler: Procedure = Arc::new(move |from, _, payload| {
            let function = function.clone();
            let run = tokio::task::spawn_blocking(move || function(from, &payload));
            Box::pin(async move {
                match run.await {
                    Ok(Ok(result)) => (0, result),
                    Ok(Err(refusal)) => refused(&refusal),
                    // It panicked: nothing of that leaves this peer.
                    Err(_) => remote_failure(),
                }
            })
        });
        self.add_procedure(procedure, handler)
    }

    /// Serves `Q`'s procedure with `handler` from now on: each call is decoded into a `Q`
    /// (one that is not, or was built from another definition of `Q`, is answered as
    /// undecodable without reaching the handler) and the handler's reply encoded back.
    ///
    /// # Errors
    /// As [`Bus::serve`].
    pub fn serve_rpc<Q: Rpc>(&self, handler: Recipient<Request<Q>>) -> Result<(), Error> {
        let handler: Procedure = Arc::new(move |from, bits, payload| {
            if !wire::fingerprint_matches::<Q>(bits) {
                let message = format!(
                    "request built from another definition of procedure {}",
                    Q::PROCEDURE
                );
                return Box::pin(std::future::ready((
                    STATUS_UNDECODABLE,
                    message.into_bytes(),
                )));
            }
            let request = match wire::decode::<Q>("request", &payload) {
                Ok(request) => request,
                Err(_) => {
                    let message = format!("undecodable request for procedure {}", Q::PROCEDURE);
                    return Box::pin(std::future::ready((
                        STATUS_UNDECODABLE,
                        message.into_bytes(),
                    )));
                }
            };
            let call = handler.send(Request { from, request });
            Box::pin(async move {
                match call.await {
                    Ok(Ok(reply)) => match wire::encode("reply", &reply) {
                        Ok(bytes) => (0, bytes),
                        Err(_) => (STATUS_UNENCODABLE_REPLY, b"unencodable reply".to_vec()),
                    },
                    Ok(Err(refusal)) => refused(&refusal),
                    Err(_) => remote_failure(),
                }
            })
        });
        self.add_procedure(Q::PROCEDURE, handler)
    }

    /// Lets at most `calls` calls of `procedure` run at once from now on (it must be served);
    /// the others wait their turn, and their callers retransmit meanwhile as they would for
    /// any call not yet answered.
    ///
    /// # Errors
    /// [`Error::Config`] if `calls` is zero or `procedure` is not served.
    pub fn limit_concurrency(&self, procedure: u16, calls: usize) -> Result<(), Error> {
        if calls == 0 {
            return Err(Error::Config(format!(
                "procedure {procedure}: a concurrency limit of 0 would never run a call"
            )));
        }
        let mut procedures = lock(&self.shared.procedures);
        let served = procedures.get_mut(&procedure).ok_or_else(|| {
            Error::Config(format!(
                "procedure {procedure} is not served here; serve it before limiting it"
            ))
        })?;
        served.limit = Some(Arc::new(tokio::sync::Semaphore::new(calls)));
        Ok(())
    }

    /// Stops serving `procedure`: calls of it are answered as calls of no procedure, and
    /// group calls stop coming here once peers hear of it.
    pub fn unserve(&self, procedure: u16) {
        if lock(&self.shared.procedures).remove(&procedure).is_some() {
            let topic = TopicId::from_name(&wire::servers_topic(procedure));
            self.shared
                .command(|endpoint, _| endpoint.unsubscribe(topic));
        }
    }

    fn add_procedure(&self, procedure: u16, handler: Procedure) -> Result<(), Error> {
        if RESERVED_PROCEDURES.contains(&procedure) {
            return Err(Error::ReservedProcedure(procedure));
        }
        let served = Served {
            handler,
            limit: None,
        };
        lock(&self.shared.procedures).insert(procedure, served);
        // Announced, for group calls.
        let name = wire::servers_topic(procedure);
        self.shared
            .command(|endpoint, _| endpoint.subscribe_named(&name, None));
        Ok(())
    }

    /// The peers known to serve `procedure` (from their beacons), by id.
    pub fn servers_of(&self, procedure: u16) -> Vec<PeerId> {
        let topic = TopicId::from_name(&wire::servers_topic(procedure));
        self.shared
            .command(|endpoint, _| endpoint.subscribers(topic).to_vec())
    }

    /// Calls `Q`'s procedure on every peer known to serve it, at once, and returns what each
    /// answered within `window`: one entry per server, its reply or why there is none (a
    /// server that did not answer in time is [`Error::CallFailed`] with a timeout). Each call
    /// runs at most once on its server.
    ///
    /// # Errors
    /// [`Error::NoServers`] if no peer is known to serve it; [`Error::Core`] if the request
    /// cannot be encoded; [`Error::ShutDown`] after shutdown.
    pub async fn call_group<Q: Rpc>(
        &self,
        request: &Q,
        window: Duration,
    ) -> Result<Vec<ServerAnswer<Q>>, Error> {
        let calls = self.group_calls(request, window)?;
        let answers = futures_util::future::join_all(calls).await;
        Ok(answers)
    }

    /// Calls `Q`'s procedure on every peer known to serve it, at once, and returns the first
    /// reply that comes back, with who sent it; the other calls are left to finish on their
    /// own (each may still run on its server, once). For a procedure any server answers
    /// alike: the nearest or least loaded answers first.
    ///
    /// # Errors
    /// [`Error::NoServers`] as [`Bus::call_group`]; if no server replies within `deadline`,
    /// the last of their errors (all of them failed).
    pub async fn call_first<Q: Rpc>(
        &self,
        request: &Q,
        deadline: Duration,
    ) -> Result<(PeerId, Q::Reply), Error> {
        let mut calls: futures_util::stream::FuturesUnordered<_> =
            self.group_calls(request, deadline)?.into_iter().collect();
        let mut last = None;
        while let Some((peer, answer)) = futures_util::StreamExt::next(&mut calls).await {
            match answer {
                Ok(reply) => return Ok((peer, reply)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::NoServers {
            procedure: Q::PROCEDURE,
        }))
    }

    /// One call of `request` to each server of its procedure, each with who it is to.
    fn group_calls<'a, Q: Rpc>(
        &'a self,
        request: &'a Q,
        deadline: Duration,
    ) -> Result<Vec<BoxFuture<'a, ServerAnswer<Q>>>, Error> {
        self.check_running()?;
        let servers = self.servers_of(Q::PROCEDURE);
        if servers.is_empty() {
            return Err(Error::NoServers {
                procedure: Q::PROCEDURE,
            });
        }
        let payload = Arc::new(wire::encode("request", request)?);
        let method = wire::method_of::<Q>();
        Ok(servers
            .into_iter()
            .map(|peer| {
                let payload = payload.clone();
                let call: BoxFuture<'a, _> = Box::pin(async move {
                    let answer = self
                        .call_method(peer, method, &payload, deadline)
                        .await
                        .and_then(|reply| Ok(wire::decode("reply", &reply)?));
                    (peer, answer)
                });
                call
            })
            .collect())
    }

    /// Calls `Q`'s procedure on `peer` with `request` and waits for its reply, at most
    /// [`DEFAULT_CALL_DEADLINE`]. The call runs at most once there, however often it is sent.
    ///
    /// # Errors
    /// As [`Bus::call_within`].
    pub async fn call<Q: Rpc>(&self, peer: PeerId, request: &Q) -> Result<Q::Reply, Error> {
        self.call_within(peer, request, DEFAULT_CALL_DEADLINE).await
    }

    /// [`Bus::call`], waiting at most `deadline`. The call is sent again (until answered) only
    /// within the cluster's reliable deadline ([`BusBuilder::reliable_deadline`]): its server
    /// keeps answers that long, and a copy arriving later could run it a second time. A longer
    /// `deadline` waits longer for a slow handler's answer; on a lossy network, raise the
    /// reliable deadline instead.
    ///
    /// [`BusBuilder::reliable_deadline`]: crate::BusBuilder::reliable_deadline
    ///
    /// # Errors
    /// [`Error::Refused`] with the handler's code and message; [`Error::Remote`] with the
    /// server's status (no such procedure, an undecodable request, a remote failure);
    /// [`Error::Core`] if the request cannot be encoded or the reply decoded; otherwise as
    /// [`Bus::call_procedure`].
    pub async fn call_within<Q: Rpc>(
        &self,
        peer: PeerId,
        request: &Q,
        deadline: Duration,
    ) -> Result<Q::Reply, Error> {
        let payload = wire::encode("request", request)?;
        let method = wire::method_of::<Q>();
        let reply = self.call_method(peer, method, &payload, deadline).await?;
        Ok(wire::decode("reply", &reply)?)
    }

    /// Calls procedure `procedure` of `peer` by number with `payload` and waits for its
    /// answer, at most `deadline`. The call runs at most once there, however often it is sent.
    ///
    /// # Errors
    /// [`Error::Refused`] or [`Error::Remote`] as the server answered; [`Error::CallFailed`] if
    /// no answer came in time or the peer went away (it may or may not have run);
    /// [`Error::Call`] if the peer is not known or the call is larger than the largest message;
    /// [`Error::ShutDown`] after shutdown.
    pub async fn call_procedure(
        &self,
        peer: PeerId,
        procedure: u16,
        payload: &[u8],
        deadline: Duration,
    ) -> Result<Bytes, Error> {
        self.call_method(peer, u64::from(procedure), payload, deadline)
            .await
    }

    async fn call_method(
        &self,
        peer: PeerId,
        method: u64,
        payload: &[u8],
        deadline: Duration,
    ) -> Result<Bytes, Error> {
        self.request(peer, |endpoint, now| {
            endpoint.call(now, peer, method, payload, deadline)
        })
        .await
    }

    /// Makes the request `start` starts (a call, or a register read or write) and waits for
    /// its answer: the payload of a success, or the error it stands for.
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        start: impl FnOnce(
            &mut bus_core::endpoint::Endpoint,
            bus_core::Instant,
        ) -> Result<u64, bus_core::endpoint::CallError>,
    ) -> Result<Bytes, Error> {
        self.check_running()?;
        let (waiter, outcome) = tokio::sync::oneshot::channel();
        self.shared
            .command(|endpoint, now| {
                let call_id = start(endpoint, now)?;
                let pending = PendingCallActor {
                    waiter: Some(waiter),
                };
                // Under the endpoint's lock: registered before its answer can be handled.
                lock(&self.shared.calls).insert(call_id, pending.start());
                Ok::<(), bus_core::endpoint::CallError>(())
            })
            .map_err(|e| Error::Call {
                peer,
                reason: e.to_string(),
            })?;
        match outcome.await.map_err(|_| Error::ShutDown)? {
            Ok((0, result)) => Ok(result),
            Ok((STATUS_REFUSED, payload)) => {
                let (code, message) = wire::decode_refusal(&payload);
                Err(Error::Refused {
                    peer,
                    code,
                    message,
                })
            }
            Ok((status, message)) => Err(Error::Remote {
                peer,
                status,
                message: String::from_utf8_lossy(&message).into_owned(),
            }),
            Err(failure) => Err(Error::CallFailed { peer, failure }),
        }
    }
}
