//! What an attacker on the host sees: every UDP datagram on loopback, unicast included, read
//! from a packet socket (needs CAP_NET_RAW; the tests that use it are skipped without).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// A UDP datagram seen on the wire.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Seen {
    /// Where it came from.
    pub from: SocketAddr,
    /// Where it went.
    pub to: SocketAddr,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Records the IPv4 UDP datagrams to and from 127.0.0.0/8 until dropped.
#[derive(Debug)]
pub struct Sniffer {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

const ETH_P_IP: u16 = 0x0800;

impl Sniffer {
    /// Starts recording, or says why it cannot (no CAP_NET_RAW).
    ///
    /// # Errors
    /// The packet socket could not be opened.
    pub fn start() -> Result<Sniffer, String> {
        let protocol = Protocol::from(i32::from(ETH_P_IP.to_be()));
        let mut socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(protocol))
            .map_err(|e| format!("packet socket: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| format!("packet socket timeout: {e}"))?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stopped.load(Ordering::Relaxed) {
                let Ok(n) = socket.read(&mut buf) else {
                    continue;
                };
                if let Some(datagram) = parse_ipv4_udp(&buf[..n]) {
                    let mut seen = sink.lock().unwrap_or_else(|e| e.into_inner());
                    // On loopback each packet is seen leaving and arriving.
                    if seen.last() != Some(&datagram) {
                        seen.push(datagram);
                    }
                }
            }
        });
        Ok(Sniffer { seen, stop })
    }

    /// What was recorded so far from `from` to `to`, oldest first.
    pub fn between(&self, from: SocketAddr, to: SocketAddr) -> Vec<Vec<u8>> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|s| s.from == from && s.to == to)
            .map(|s| s.payload.clone())
            .collect()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The UDP datagram in an IPv4 packet between loopback addresses, if it is one (and whole).
fn parse_ipv4_udp(packet: &[u8]) -> Option<Seen> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || packet.get(9) != Some(&17) {
        return None;
    }
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let octets: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(octets))
    };
    let (src, dst) = (addr(12)?, addr(16)?);
    if !src.is_loopback() || !dst.is_loopback() {
        return None;
    }
    let udp = packet.get(header_len..)?;
    let port = |at: usize| Some(u16::from_be_bytes(udp.get(at..at + 2)?.try_into().ok()?));
    let len = usize::from(port(4)?);
    let payload = udp.get(8..len)?.to_vec();
    Some(Seen {
        from: SocketAddr::V4(SocketAddrV4::new(src, port(0)?)),
        to: SocketAddr::V4(SocketAddrV4::new(dst, port(2)?)),
        payload,
    })
}
