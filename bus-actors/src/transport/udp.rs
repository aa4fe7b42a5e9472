//! UDP sockets: one unicast socket per peer (which also sends to the group) and one socket bound
//! to the group's port, shared by every peer on the host.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;

use super::{Datagram, SendReport, Target, Transport};
use crate::config::{Config, Interface};
use crate::error::{Error, socket_error};

/// The largest datagram the receive loop accepts.
const RECV_BUFFER: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct UdpTransport {
    unicast: Arc<UdpSocket>,
    group_socket: Arc<UdpSocket>,
    group: SocketAddr,
    local: SocketAddr,
}

impl UdpTransport {
    /// Binds the unicast socket on the configured interface and joins the group there.
    pub(crate) fn bind(config: &Config) -> Result<UdpTransport, Error> {
        let domain = match config.interface {
            Interface::V4(_) => Domain::IPV4,
            Interface::V6 { .. } => Domain::IPV6,
        };
        let unicast = new_socket(domain, config)?;
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

        let group_socket = new_socket(domain, config)?;
        group_socket
            .set_reuse_address(true)
            .map_err(socket_error("SO_REUSEADDR"))?;
        #[cfg(unix)]
        group_socket
            .set_reuse_port(true)
            .map_err(socket_error("SO_REUSEPORT"))?;
        // Bound to the group address itself, so this socket receives that group's traffic only.
        group_socket
            .bind(&SockAddr::from(config.group))
            .map_err(socket_error(format!(
                "bind group socket to {}",
                config.group
            )))?;
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

        let unicast = into_tokio(unicast)?;
        let local = unicast
            .local_addr()
            .map_err(socket_error("unicast local address"))?;
        Ok(UdpTransport {
            unicast: Arc::new(unicast),
            group_socket: Arc::new(into_tokio(group_socket)?),
            group: config.group,
            local,
        })
    }
}

fn new_socket(domain: Domain, config: &Config) -> Result<Socket, Error> {
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_error("create UDP socket"))?;
    socket
        .set_nonblocking(true)
        .map_err(socket_error("O_NONBLOCK"))?;
    // The kernel caps these (net.core.rmem_max); a smaller buffer only costs burst tolerance.
    let _ = socket.set_recv_buffer_size(config.recv_buffer);
    let _ = socket.set_send_buffer_size(config.send_buffer);
    Ok(socket)
}

fn into_tokio(socket: Socket) -> Result<UdpSocket, Error> {
    UdpSocket::from_std(socket.into()).map_err(socket_error("register socket with tokio"))
}

fn receive(socket: Arc<UdpSocket>) -> LocalBoxStream<'static, Datagram> {
    stream::unfold(
        (socket, BytesMut::with_capacity(RECV_BUFFER)),
        |(socket, mut buf)| async move {
            loop {
                buf.clear();
                buf.reserve(RECV_BUFFER);
                match socket.recv_buf_from(&mut buf).await {
                    Ok((_, from)) => {
                        let bytes = buf.split().freeze();
                        return Some((Datagram { from, bytes }, (socket, buf)));
                    }
                    // ICMP errors from earlier sends and interrupted calls: keep receiving.
                    Err(e) => tracing::debug!("receive error: {e}"),
                }
            }
        },
    )
    .boxed_local()
}

impl Transport for UdpTransport {
    fn local_addr(&self) -> SocketAddr {
        self.local
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
            let mut report = SendReport::default();
            for (target, datagram) in batch {
                let to = match target {
                    Target::Group => group,
                    Target::Unicast(addr) => addr,
                };
                match socket.send_to(&datagram, to).await {
                    Ok(_) => {
                        report.sent += 1;
                        report.bytes += datagram.len();
                    }
                    Err(e) => {
                        tracing::debug!("send to {to} failed: {e}");
                        report.failed += 1;
                    }
                }
            }
            report
        })
    }
}
