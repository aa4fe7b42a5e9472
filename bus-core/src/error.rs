//! The crate's error type.

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
}
