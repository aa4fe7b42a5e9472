//! The crate's error type.

use std::io;

/// Everything a call on the bus can fail with.
///
/// Each variant's documentation says who is at fault and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given a configuration that cannot work. The caller is at fault: the message
    /// names the setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A socket could not be created, configured or bound. The environment is at fault (a port in
    /// use, a missing interface, a permission); the message says which step failed.
    #[error("socket setup failed: {what}: {source}")]
    Socket {
        /// The step that failed.
        what: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bus was started outside an actix system. The caller is at fault: start it from within
    /// `actix::System` (for example under `#[actix::main]`).
    #[error("the bus must be started inside a running actix system")]
    NoSystem,
    /// The bus has been shut down. The caller is at fault: do not use a bus after `shutdown`.
    #[error("the bus is shut down")]
    ShutDown,
    /// A reliable message was not acknowledged by every subscriber before its deadline. The
    /// subscribers named are at fault (unreachable, overloaded, or cut off); the others got it
    /// exactly once. The report says who acknowledged, who left, and who is missing.
    #[error("reliable message on {topic} not acknowledged in time by {}", missing(&report.missing))]
    Undelivered {
        /// The topic.
        topic: &'static str,
        /// What happened, peer by peer.
        report: bus_core::reliability::DeliveryReport,
    },
    /// A reliable message had nobody to go to: no subscriber of its topic, remote or local, is
    /// known. Nobody is at fault, but nothing was delivered: publish again once there is one
    /// (see [`Bus::wait_for_subscribers`](crate::Bus::wait_for_subscribers)).
    #[error("reliable message on {topic}: no subscriber")]
    NoSubscribers {
        /// The topic.
        topic: &'static str,
    },
    /// This recipient already subscribes to this topic. The caller is at fault: a second
    /// subscription would deliver every message to it twice. Subscribe another actor, or keep
    /// the one subscription.
    #[error("this recipient already subscribes to {topic}")]
    AlreadySubscribed {
        /// The topic.
        topic: &'static str,
    },
    /// What a call waited for did not happen in time.
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        /// What was awaited.
        waiting_for: String,
        /// How long.
        after: std::time::Duration,
    },
    /// A message is larger than the bus sends. The caller is at fault: send less, or raise the
    /// limit on every peer of the cluster (`BusBuilder::max_message_size`; a receiver refuses
    /// what is over its own). Messages may be as large as that limit (16 MiB by default): one
    /// larger than a datagram is split into fragments.
    #[error("message on {topic} is {len} bytes encoded, over the limit of {max} bytes ({limit})")]
    MessageTooLarge {
        /// The topic.
        topic: &'static str,
        /// Its encoded size, frame header included.
        len: usize,
        /// The limit it is over.
        max: usize,
        /// Which limit that is.
        limit: &'static str,
    },
    /// No peer with this id is known: it never joined, it left, or it was forgotten as
    /// unreachable. The caller is at fault for the id, or the peer is gone.
    #[error("no peer {peer} is known")]
    UnknownPeer {
        /// The id.
        peer: bus_core::PeerId,
    },
    /// A group call found no peer serving its procedure. Nobody is at fault: servers may not
    /// have started, or not beaconed yet.
    #[error("no peer is known to serve procedure {procedure}")]
    NoServers {
        /// The procedure.
        procedure: u16,
    },
    /// A call could not be made: the peer is not known (or not confirmed yet), too many calls
    /// are in flight, or the call is larger than the largest message
    /// (`BusBuilder::max_message_size`; one larger than a datagram goes as fragments). The
    /// reason says which.
    #[error("cannot call {peer}: {reason}")]
    Call {
        /// The peer.
        peer: bus_core::PeerId,
        /// Why.
        reason: String,
    },
    /// A call got no answer: none came before its deadline, or the peer went away. The peer,
    /// or the network, is at fault; the call may or may not have run.
    #[error("call to {peer} failed: {failure:?}")]
    CallFailed {
        /// The peer.
        peer: bus_core::PeerId,
        /// What happened.
        failure: bus_core::endpoint::CallFailure,
    },
    /// The server answered a call with an error status of [`bus_core::rpc`]: no such
    /// procedure, an undecodable request, or a failure it does not detail. The server (or the
    /// call's argument) is at fault.
    #[error("{peer} answered with status {status}: {message}")]
    Remote {
        /// The server.
        peer: bus_core::PeerId,
        /// Its status code (see `STATUS_*`).
        status: u8,
        /// Its message.
        message: String,
    },
    /// The handler of a call refused it, with its own code and message: the server's
    /// application decided so.
    #[error("{peer} refused the call (code {code}): {message}")]
    Refused {
        /// The server.
        peer: bus_core::PeerId,
        /// The handler's code.
        code: u16,
        /// The handler's message.
        message: String,
    },
    /// A procedure of the bus's own range ([`bus_core::rpc::RESERVED_PROCEDURES`]) cannot be
    /// served by an application: the caller of `serve` is at fault.
    #[error("procedure {0:#06x} is reserved for the bus itself (0xff00 and up)")]
    ReservedProcedure(u16),
    /// A window of reliable messages in flight is full (`try_publish_reliable` only). Nobody is
    /// at fault: the subscriber named is slower than the publisher; wait, or use
    /// `publish_reliable`, which waits.
    #[error("busy: {0}")]
    Busy(bus_core::reliability::Busy),
    /// Encoding a message, building a frame or a name check failed; the inner error says by whose
    /// fault.
    #[error(transparent)]
    Core(#[from] bus_core::Error),
}

impl From<bus_core::PayloadError> for Error {
    fn from(e: bus_core::PayloadError) -> Error {
        Error::Core(e.into())
    }
}

impl From<bus_core::FrameTooLarge> for Error {
    fn from(e: bus_core::FrameTooLarge) -> Error {
        Error::Core(e.into())
    }
}

pub(crate) fn socket_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Socket { what, source }
}

fn missing(peers: &[bus_core::PeerId]) -> String {
    peers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
