//! The seam under the socket actor: real UDP sockets, or the simulated network in tests.

#[cfg(feature = "sim")]
mod fault;
mod registration;
#[cfg(feature = "sim")]
mod sim;
mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;

#[cfg(feature = "sim")]
pub use fault::{Faults, FaultyTransport};
#[cfg(feature = "sim")]
pub use sim::{SimHub, SimTransport};
pub(crate) use udp::{UdpOptions, UdpTransport};

pub use bus_core::endpoint::Target;

/// The interface the bus joins its group on and sends from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Interface {
    /// An IPv4 interface, by its address. The default is 127.0.0.1: nothing leaves the host.
    V4(Ipv4Addr),
    /// An IPv6 interface, by its address and index (`ip link` shows the index).
    V6 {
        /// The interface's address; the unicast socket binds to it.
        addr: std::net::Ipv6Addr,
        /// The interface index, for joining the group and sending multicast.
        index: u32,
    },
}

impl Interface {
    /// Why its address cannot be an interface's own: `None` if it can.
    pub(crate) fn not_unicast(&self) -> Option<&'static str> {
        match self {
            Interface::V4(ip) if ip.is_unspecified() => Some("unspecified (every interface)"),
            Interface::V4(ip) if ip.is_multicast() => Some("a multicast address"),
            Interface::V4(ip) if ip.is_broadcast() => Some("the broadcast address"),
            Interface::V6 { addr, .. } if addr.is_unspecified() => {
                Some("unspecified (every interface)")
            }
            Interface::V6 { addr, .. } if addr.is_multicast() => Some("a multicast address"),
            _ => None,
        }
    }

    pub(crate) fn ip(&self) -> IpAddr {
        match *self {
            Interface::V4(ip) => IpAddr::V4(ip),
            Interface::V6 { addr, .. } => IpAddr::V6(addr),
        }
    }
}

/// A datagram that arrived.
#[derive(Clone, Debug)]
pub struct Datagram {
    /// Its source address.
    pub from: SocketAddr,
    /// Its bytes.
    pub bytes: Bytes,
}

/// What a batch of sends achieved.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct SendReport {
    /// Datagrams handed to the network.
    pub sent: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Datagrams that could not be sent.
    pub failed: usize,
}

/// Moves datagrams between the socket actor and a network.
///
/// Implemented by the UDP sockets the bus opens by default and, with the `sim` feature, by
/// [`SimTransport`]. Everything runs on the socket actor's thread, so nothing here needs `Send`.
pub trait Transport: 'static {
    /// The address peers reach this one's unicast socket at (advertised in beacons).
    fn local_addr(&self) -> SocketAddr;

    /// Bytes of datagrams the kernel holds for this transport's sockets before it drops what
    /// arrives (the smallest of its sockets'), if it has sockets.
    fn recv_buffer(&self) -> Option<usize> {
        None
    }

    /// Every datagram that arrives, from now on. Called once, when the socket actor starts.
    fn incoming(&mut self) -> LocalBoxStream<'static, Datagram>;

    /// Sends a batch of datagrams, in order.
    fn send_batch(&self, batch: Vec<(Target, Vec<u8>)>) -> LocalBoxFuture<'static, SendReport>;
}
