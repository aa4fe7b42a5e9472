//! The sans-IO core of the bus: wire format, codec and protocol state machines.
//!
//! Nothing here opens a socket, reads a clock or spawns a task. Inputs are bytes and
//! [`Instant`]s the caller supplies, randomness comes from an RNG the caller supplies, and outputs
//! are values the caller acts on. `bus-actors` drives this crate with real sockets and timers; the
//! [`sim`] module (feature `sim`) drives it over a simulated network in virtual time, which is
//! how its protocol logic is tested.
//!
//! | module | what it holds |
//! |---|---|
//! | [`wire`] | packet header views and frames: parse and emit, byte for byte as in the book |
//! | [`time`] | the caller-supplied [`Instant`] and [`Duration`] |
//! | [`sim`] | the deterministic network simulator (tests only) |
//!
//! # Example
//!
//! Build a plain packet carrying two frames, then parse it back.
//!
//! ```
//! use bus_core::wire::{Frame, Frames, Header, HeaderExtension, HeaderFlags, HeaderRepr};
//! use bus_core::{PeerId, TopicId};
//!
//! let mut datagram = Vec::new();
//! HeaderRepr {
//!     suite: 0,
//!     flags: HeaderFlags::empty(),
//!     session_index: 0,
//!     counter: 1,
//!     extension: HeaderExtension::Plain { sender: PeerId([7; 16]) },
//! }
//! .emit(&mut datagram);
//! let topic = TopicId::from_name("plant/boiler/temperature");
//! Frame::Publish { topic, fingerprint: 0, payload: b"\x92\x07\xcb@T`\x00\x00\x00\x00\x00" }
//!     .emit(&mut datagram);
//! Frame::Ping { ping_id: 1, sent_at_us: 42 }.emit(&mut datagram);
//!
//! let header = Header::new_checked(&datagram[..])?;
//! assert_eq!(header.sender(), Some(PeerId([7; 16])));
//! let frames = Frames::new(header.payload()).collect::<Result<Vec<_>, _>>()?;
//! assert_eq!(frames.len(), 2);
//! # Ok::<(), bus_core::wire::DecodeError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod id;
pub mod time;
pub mod wire;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use error::Error;
pub use id::{PeerId, TopicId, fnv1a64};
pub use time::{Duration, Instant};
