//! Remote procedure calls by number, bytes in and bytes out: a peer serves procedure `n` with
//! an actor handling [`CallRequest`]; another calls it with [`Bus::call`]. Each call runs at
//! most once however the network treats it (see the endpoint's calls), off the receive path:
//! a handler's work is its actor's, and a slow one delays only the calls waiting for it.
//!
//! Status codes on the wire: 0 success; [`STATUS_NO_SUCH_PROCEDURE`];
//! [`STATUS_HANDLER_ERROR`] (the handler's own message follows); [`STATUS_REMOTE_FAILURE`]
//! (the handler's actor stopped or panicked: no detail leaves the server).

use actix::prelude::*;
use bus_core::endpoint::CallFailure;
use bus_core::{Duration, PeerId};
use bytes::Bytes;

use crate::bus::Bus;
use crate::error::Error;
use crate::shared::lock;

/// No procedure of that number is served there.
pub const STATUS_NO_SUCH_PROCEDURE: u8 = 1;
/// The handler answered with an error; its message follows.
pub const STATUS_HANDLER_ERROR: u8 = 2;
/// The handler could not answer (its actor stopped or panicked).
pub const STATUS_REMOTE_FAILURE: u8 = 3;

/// A call of a procedure this peer serves.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Vec<u8>, String>")]
pub struct CallRequest {
    /// The caller.
    pub from: PeerId,
    /// The procedure's number.
    pub procedure: u16,
    /// The argument.
    pub payload: Bytes,
}

/// What a call is owed: its outcome, when it comes.
pub(crate) type CallWaiter = tokio::sync::oneshot::Sender<Result<(u8, Bytes), CallFailure>>;

impl Bus {
    /// Serves procedure `procedure` with `handler` from now on (a second handler for the same
    /// number replaces the first). Its answer goes back to the caller: `Ok` bytes, or `Err`
    /// with a short message the caller gets as [`Error::Remote`].
    pub fn serve(&self, procedure: u16, handler: Recipient<CallRequest>) {
        lock(&self.shared.procedures).insert(procedure, handler);
    }

    /// Calls procedure `procedure` of `peer` with `payload` and waits for its answer, at most
    /// `deadline`. The call runs at most once there, however often it is sent.
    ///
    /// # Errors
    /// [`Error::Remote`] with the server's status and message (no such procedure, the
    /// handler's error, or a remote failure); [`Error::CallFailed`] if no answer came in time
    /// or the peer went away (it may or may not have run); [`Error::Core`] if the peer is not
    /// known or the call is larger than a datagram; [`Error::ShutDown`] after shutdown.
    pub async fn call(
        &self,
        peer: PeerId,
        procedure: u16,
        payload: &[u8],
        deadline: Duration,
    ) -> Result<Bytes, Error> {
        self.check_running()?;
        let (waiter, outcome) = tokio::sync::oneshot::channel();
        self.shared
            .command(|endpoint, now| {
                let call_id = endpoint.call(now, peer, u64::from(procedure), payload, deadline)?;
                // Under the endpoint's lock: registered before its answer can be handled.
                lock(&self.shared.calls).insert(call_id, waiter);
                Ok::<(), bus_core::endpoint::CallError>(())
            })
            .map_err(|e| Error::Call {
                peer,
                reason: e.to_string(),
            })?;
        match outcome.await.map_err(|_| Error::ShutDown)? {
            Ok((0, result)) => Ok(result),
            Ok((status, message)) => Err(Error::Remote {
                peer,
                status,
                message: String::from_utf8_lossy(&message).into_owned(),
            }),
            Err(failure) => Err(Error::CallFailed { peer, failure }),
        }
    }
}
