//! UDP sockets: one unicast socket per peer (which also sends to the group) and one socket bound
//! to the group's port, shared by every peer on the host.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Interface;
use super::registration::register;
use super::{Datagram, SendReport, Target, Transport};
use crate::error::{Error, socket_error};

/// The largest datagram the receive loop accepts.
const RECV_BUFFER: usize = 64 * 1024;

/// What the sockets are bound and tuned with (from the bus's configuration).
#[derive(Clone, Debug)]
pub(crate) struct UdpOptions {
    pub(crate) interface: Interface,
    pub(crate) group: SocketAddr,
    pub(crate) unicast_port: u16,
    pub(crate) recv_buffer: usize,
    pub(crate) send_buffer: usize,
    pub(crate) multicast_ttl: u32,
    pub(crate) busy_poll: std::time::Duration,
}

#[derive(Debug)]
pub(crate) struct UdpTransport {
    unicast: Arc<BatchSocket>,
    group_socket: Arc<BatchSocket>,
    group: SocketAddr,
    local: SocketAddr,
    /// The smaller of the two sockets' receive buffers, as the kernel granted them.
    recv_buffer: usize,
}

impl UdpTransport {
    /// Binds the unicast socket on the configured interface and joins the group there.
    pub(crate) fn bind(config: &UdpOptions) -> Result<UdpTransport, Error> {
        let domain = match config.interface {
            Interface::V4(_) => Domain::IPV4,
            Interface::V6 { .. } => Domain::IPV6,
        };
        let (unicast, unicast_buffer) = new_socket(domain, config)?;
        match config.interface {
            Interface::V4(ip) => {
                unicast
                    .set_multicast_if_v4(&ip)
                    .map_err(socket_error(format!("IP_MULTICAST_IF {ip}")))?;
                unicast
                    .set_multicast_loop_v4(true)
                    .map_err(socket_error("IP_MULTICAST_LOOP"))?;
                unicast
                    .set_multicast_ttl_v4(config.multicast_ttl)
                    .map_err(socket_error("IP_MULTICAST_TTL"))?;
            }
            Interface::V6 { index, .. } => {
                unicast
                    .set_multicast_if_v6(index)
                    .map_err(socket_error(format!("IPV6_MULTICAST_IF {index}")))?;
                unicast
                    .set_multicast_loop_v6(true)
                    .map_err(socket_error("IPV6_MULTICAST_LOOP"))?;
                unicast
                    .set_multicast_hops_v6(config.multicast_ttl)
                    .map_err(socket_error("IPV6_MULTICAST_HOPS"))?;
            }
        }
        let unicast_addr = SocketAddr::new(config.interface.ip(), config.unicast_port);
        unicast
            .bind(&SockAddr::from(unicast_addr))
            .map_err(socket_error(format!(
                "bind unicast socket to {unicast_addr}"
            )))?;

        // A link-local IPv6 group is only meaningful with its interface as the scope.
        let group = match (config.group, config.interface) {
            (SocketAddr::V6(g), Interface::V6 { index, .. }) => {
                SocketAddr::V6(SocketAddrV6::new(*g.ip(), g.port(), 0, index))
            }
            (group, _) => group,
        };
        let (group_socket, group_buffer) = new_socket(domain, config)?;
        group_socket
            .set_reuse_address(true)
            .map_err(socket_error("SO_REUSEADDR"))?;
        #[cfg(unix)]
        group_socket
            .set_reuse_port(true)
            .map_err(socket_error("SO_REUSEPORT"))?;
        // Bound to the group address itself, so this socket receives that group's traffic only.
        group_socket
            .bind(&SockAddr::from(group))
            .map_err(socket_error(format!("bind group socket to {group}")))?;
        match (config.group.ip(), config.interface) {
            (IpAddr::V4(group), Interface::V4(ip)) => group_socket.join_multicast_v4(&group, &ip),
            (IpAddr::V6(group), Interface::V6 { index, .. }) => {
                group_socket.join_multicast_v6(&group, index)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "group and interface are of different IP versions",
            )),
        }
        .map_err(socket_error(format!(
            "join {} on {:?}",
            config.group, config.interface
        )))?;

        let unicast: std::net::UdpSocket = unicast.into();
        let local = unicast
            .local_addr()
            .map_err(socket_error("unicast local address"))?;
        Ok(UdpTransport {
            unicast: Arc::new(BatchSocket::new(unicast, config.busy_poll)?),
            group_socket: Arc::new(BatchSocket::new(group_socket.into(), config.busy_poll)?),
            group,
            local,
            recv_buffer: unicast_buffer.min(group_buffer),
        })
    }
}

/// A UDP socket for the bus, and the receive buffer the kernel granted it (bytes of datagrams).
fn new_socket(domain: Domain, config: &UdpOptions) -> Result<(Socket, usize), Error> {
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_error("create UDP socket"))?;
    socket
        .set_nonblocking(true)
        .map_err(socket_error("O_NONBLOCK"))?;
    // The kernel caps these (net.core.rmem_max, wmem_max); a smaller buffer only costs burst
    // tolerance, so it is said, not refused.
    let _ = socket.set_recv_buffer_size(config.recv_buffer);
    let _ = socket.set_send_buffer_size(config.send_buffer);
    let granted = socket.recv_buffer_size().map(usable_buffer).unwrap_or(0);
    if granted < config.recv_buffer {
        tracing::warn!(
            "socket receive buffer is {granted} bytes, {} asked for: the kernel caps it \
             (net.core.rmem_max); a burst larger than that (a large message's fragments) \
             loses datagrams",
            config.recv_buffer
        );
    }
    Ok((socket, granted))
}

/// The part of a buffer size as the kernel reports it that holds datagrams: Linux doubles what
/// it grants, for its bookkeeping, and reports the double.
fn usable_buffer(reported: usize) -> usize {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

/// One socket with its quinn-udp state: batched receive (`recvmmsg`, GRO) and segmented send
/// (GSO) where the platform has them, one datagram per call elsewhere.
///
/// The socket is registered with the runtime for reading only. Registered for writing too (as a
/// tokio `UdpSocket` is), every datagram the receiver consumed woke this process with a
/// writability edge, a needless wake-up per message (a ping-pong on one core went from 23 to
/// 20 µs without them). Sends are tried directly, and only a send that would block waits for
/// writability.
#[derive(Debug)]
struct BatchSocket {
    io: AsyncFd<std::net::UdpSocket>,
    state: UdpSocketState,
    /// How long to keep polling for the next datagram before waiting for readiness.
    busy_poll: std::time::Duration,
}

impl BatchSocket {
    fn new(
        socket: std::net::UdpSocket,
        busy_poll: std::time::Duration,
    ) -> Result<BatchSocket, Error> {
        let state =
            UdpSocketState::new((&socket).into()).map_err(socket_error("quinn-udp state"))?;
        let io = register(socket, Interest::READABLE)
            .map_err(socket_error("register socket with tokio"))?;
        Ok(BatchSocket {
            io,
            state,
            busy_poll,
        })
    }

    /// Waits until the socket can take a datagram again, registered for writability only
    /// meanwhile (through a duplicate of the descriptor: one registration per descriptor).
    async fn writable(&self) -> io::Result<()> {
        let duplicate = register(self.io.get_ref().try_clone()?, Interest::WRITABLE)?;
        duplicate.writable().await.map(drop)
    }

    /// Waits for datagrams and returns every one a single batched call yields, GRO segments
    /// split apart. With busy polling on, it first keeps asking the socket, yielding to the
    /// other tasks in between, for up to `busy_poll`.
    async fn recv_batch(&self, bufs: &mut [Vec<u8>], out: &mut VecDeque<Datagram>) {
        let mut meta = [RecvMeta::default(); quinn_udp::BATCH_SIZE];
        if !self.busy_poll.is_zero() {
            let until = std::time::Instant::now() + self.busy_poll;
            loop {
                match self.recv_into(self.io.get_ref(), bufs, &mut meta, out) {
                    Ok(count) if count > 0 => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => tracing::debug!("receive error: {e}"),
                }
                if std::time::Instant::now() >= until {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        loop {
            let mut ready = match self.io.readable().await {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::debug!("socket readiness failed: {e}");
                    continue;
                }
            };
            let received = match ready
                .try_io(|socket| self.recv_into(socket.get_ref(), bufs, &mut meta, out))
            {
                Ok(received) => received,
                Err(_would_block) => continue,
            };
            match received {
                Ok(count) => {
                    if count < bufs.len() {
                        // The queue is drained: wait for the next datagram's edge instead of
                        // asking again only to hear `EAGAIN`. The runtime keeps an edge that
                        // arrived meanwhile.
                        ready.clear_ready();
                    }
                    if count > 0 {
                        return;
                    }
                }
                // ICMP errors from earlier sends and interrupted calls: keep receiving.
                Err(e) => tracing::debug!("receive error: {e}"),
            }
        }
    }

    /// One batched receive without waiting: the datagrams it yields go to `out`, GRO segments
    /// split apart. Returns how many datagrams the call returned.
    fn recv_into(
        &self,
        socket: &std::net::UdpSocket,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        out: &mut VecDeque<Datagram>,
    ) -> io::Result<usize> {
        let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let count = self.state.recv(socket.into(), &mut slices, meta)?;
        for (m, buf) in meta.iter().zip(bufs.iter()).take(count) {
            // GRO may have coalesced several datagrams, `stride` bytes apart; an empty datagram
            // is still a datagram (and gets counted as malformed).
            let stride = if m.stride == 0 { m.len } else { m.stride };
            let data = &buf[..m.len];
            let segments = data.chunks(stride.max(1));
            let empty = m.len == 0;
            for segment in segments.chain(empty.then_some(data)) {
                out.push_back(Datagram {
                    from: m.addr,
                    bytes: Bytes::copy_from_slice(segment),
                });
            }
        }
        Ok(count)
    }

    /// Sends `contents` (one datagram, or `segment_size` segments of one) to `to`.
    async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            match self.state.try_send(self.io.get_ref().into(), &transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                result => return result,
            }
        }
    }
}

/// How many datagrams from the front of `batch` can go in one segmented send: same target, same
/// size as the first, except that the last may be shorter.
fn gso_run(batch: &[(Target, Vec<u8>)], max_segments: usize) -> usize {
    let Some((target, first)) = batch.first() else {
        return 0;
    };
    let mut run = 1;
    while let Some((t, d)) = batch.get(run) {
        if run == max_segments || t != target || d.len() > first.len() {
            break;
        }
        run += 1;
        if d.len() < first.len() {
            break;
        }
    }
    run
}

fn receive(socket: Arc<BatchSocket>) -> LocalBoxStream<'static, Datagram> {
    let bufs = vec![vec![0u8; RECV_BUFFER]; quinn_udp::BATCH_SIZE];
    stream::unfold(
        (socket, bufs, VecDeque::new()),
        |(socket, mut bufs, mut ready)| async move {
            while ready.is_empty() {
                socket.recv_batch(&mut bufs, &mut ready).await;
            }
            let next = ready.pop_front()?;
            Some((next, (socket, bufs, ready)))
        },
    )
    .boxed_local()
}

impl Transport for UdpTransport {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn recv_buffer(&self) -> Option<usize> {
        Some(self.recv_buffer)
    }

    fn incoming(&mut self) -> LocalBoxStream<'static, Datagram> {
        stream::select(
            receive(self.unicast.clone()),
            receive(self.group_socket.clone()),
        )
        .boxed_local()
    }

    fn send_batch(&self, batch: Vec<(Target, Vec<u8>)>) -> LocalBoxFuture<'static, SendReport> {
        let socket = self.unicast.clone();
        let group = self.group;
        Box::pin(async move {
            let max_segments = socket.state.max_gso_segments().max(1);
            let mut report = SendReport::default();
            let mut joined = Vec::new();
            let mut rest = &batch[..];
            while let Some(((target, first), _)) = rest.split_first() {
                let run = gso_run(rest, max_segments);
                let (group_of, tail) = rest.split_at(run);
                rest = tail;
                let to = match target {
                    Target::Group => group,
                    Target::Unicast(addr) => *addr,
                };
                let bytes: usize = group_of.iter().map(|(_, d)| d.len()).sum();
                let result = if run == 1 {
                    socket.send(to, first, None).await
                } else {
                    joined.clear();
                    for (_, d) in group_of {
                        joined.extend_from_slice(d);
                    }
                    match socket.send(to, &joined, Some(first.len())).await {
                        // Segmentation refused (no GSO after all): one datagram per call.
                        Err(_) => {
                            let mut last = Ok(());
                            for (_, d) in group_of {
                                last = socket.send(to, d, None).await;
                            }
                            last
                        }
                        ok => ok,
                    }
                };
                match result {
                    Ok(()) => {
                        report.sent += run;
                        report.bytes += bytes;
                    }
                    Err(e) => {
                        tracing::debug!("send to {to} failed: {e}");
                        report.failed += run;
                    }
                }
            }
            report
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_runs_are_equal_sized_to_one_target_with_a_shorter_tail() {
        let a = Target::Group;
        let b = Target::Unicast("127.0.0.1:9".parse().unwrap());
        let batch = vec![
            (a, vec![0; 10]),
            (a, vec![0; 10]),
            (a, vec![0; 4]),
            (a, vec![0; 10]),
            (b, vec![0; 10]),
            (b, vec![0; 12]),
        ];
        assert_eq!(gso_run(&batch, 64), 3);
        assert_eq!(gso_run(&batch[3..], 64), 1);
        assert_eq!(gso_run(&batch[4..], 64), 1);
        assert_eq!(gso_run(&batch, 2), 2);
        assert_eq!(gso_run(&[], 2), 0);
    }
}
