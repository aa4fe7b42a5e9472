//! What an attacker on the wire sends to an insecure bus: plaintext packets claiming any sender.

use bus_actors::{PeerId, TopicId};
use bus_core::wire::{Beacon, Frame, HeaderExtension, HeaderFlags, HeaderRepr, PROTOCOL_VERSION};

/// A plaintext packet "from" `sender` (counter `counter`) carrying `frames`.
pub fn plain_packet(sender: PeerId, counter: u64, frames: &[Frame<'_>]) -> Vec<u8> {
    let mut packet = Vec::new();
    HeaderRepr {
        suite: 0,
        flags: HeaderFlags::empty(),
        session_index: 0,
        counter,
        extension: HeaderExtension::Plain { sender },
    }
    .emit(&mut packet);
    for frame in frames {
        frame.emit(&mut packet);
    }
    packet
}

/// A beacon of `peer` (life `incarnation`) whose unicast socket is `port` at the packet's
/// source, beaconing every `interval_ms`, subscribing to `topics`, asking for a reply if
/// `wants_reply`.
pub fn beacon(
    peer: PeerId,
    incarnation: u64,
    port: u16,
    interval_ms: u32,
    topics: Vec<TopicId>,
    wants_reply: bool,
) -> Frame<'static> {
    Frame::Beacon(Box::new(Beacon {
        peer_id: peer,
        version: PROTOCOL_VERSION,
        leaving: false,
        wants_reply,
        unicast_ip: None,
        unicast_port: port,
        interval_ms,
        incarnation,
        topics,
        metadata: Vec::new(),
    }))
}

/// The `i`th made-up peer id.
pub fn fake_peer(i: u64) -> PeerId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i + 1).to_be_bytes());
    PeerId(id)
}
