//! Reliable messages: acknowledged, retransmitted until acknowledged, delivered once, in any
//! order.
//!
//! | side | type | holds |
//! |---|---|---|
//! | sender | [`SendWindow`] | message ids; messages and bytes in flight per peer and overall |
//! | sender | [`ReliableSend`] | one message's acknowledgement set and retransmission schedule |
//! | receiver | [`SenderWindows`], [`DedupWindow`] | which ids of a sender arrived, from its floor up |
//!
//! The frames are `ReliablePublish` (message id and the sender's floor) and `Ack` (ranges).
//! Receivers always acknowledge duplicates: the first acknowledgement may have been lost.

mod recv;
mod send;

pub use recv::{Arrival, DedupWindow, MAX_WINDOW_SPAN, SenderWindows};
pub use send::{Busy, DeliveryReport, ReliableSend, SendWindow, WindowLimits};
