//! The bus's only `unsafe`: registering a UDP socket with the runtime for the readiness we
//! choose. tokio's `UdpSocket` always registers for reading and writing, and a socket registered
//! for writing is woken every time a receiver frees its send buffer; the safe constructors that
//! take an interest are deprecated (they cannot check what they are given).

#![allow(unsafe_code)]

use std::io;
use std::net::UdpSocket;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers `socket` with the current runtime for `interest` only.
pub(super) fn register(socket: UdpSocket, interest: Interest) -> io::Result<AsyncFd<UdpSocket>> {
    // SAFETY: tokio requires the descriptor to stay open, and to be the same one, for as long as
    // the `AsyncFd` lives. A `UdpSocket` owns its descriptor and never changes it; it is moved
    // into the `AsyncFd`, lent out only by reference from there, and closed when the `AsyncFd`
    // drops it, after deregistering.
    Ok(unsafe { AsyncFd::register_with_interest(socket, interest) }?)
}
