//! The crate's error type.

use crate::FrameTooLarge;
use crate::topic::{PayloadError, TopicNameError};
use crate::wire::DecodeError;

/// Everything that can go wrong in `bus-core`.
///
/// Each variant's documentation says who is at fault and what to do.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes from the network could not be decoded. The remote sender is at fault: drop the
    /// datagram, count it under [`DecodeError::reason`], and carry on.
    #[error("malformed input: {0}")]
    Decode(#[from] DecodeError),
    /// A message could not be encoded or decoded; [`PayloadError`] says by whose fault.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A message is too large for one datagram. The caller is at fault: send smaller messages or
    /// raise the maximum datagram size.
    #[error(transparent)]
    FrameTooLarge(#[from] FrameTooLarge),
    /// A topic name given at run time is not valid. The caller is at fault: fix the name.
    #[error("invalid topic name: {0}")]
    TopicName(#[from] TopicNameError),
}
