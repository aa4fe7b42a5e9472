//! The actor-based event bus.
//!
//! This crate owns the sockets, the timers and the actors (socket, peer, pending message,
//! subscription) and drives the sans-IO state machines of [`bus_core`]. It is the one crate an
//! application depends on; the core types it needs are re-exported here.

#![warn(missing_docs)]

pub use bus_core::{Duration, Instant, PeerId, TopicId};
