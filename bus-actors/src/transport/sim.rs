//! The simulated network as a transport: many buses in one actix system, over
//! `bus_core::sim::Network`, in tokio's (ideally paused) time.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use bus_core::sim::{Destination, LinkConfig, Network, NodeId};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{LocalBoxStream, StreamExt};
use tokio::sync::{Notify, mpsc};

use super::{Datagram, SendReport, Target, Transport};
use crate::clock::Clock;

struct HubState {
    network: Network,
    inboxes: Vec<Option<mpsc::UnboundedSender<Datagram>>>,
    clock: Clock,
}

/// A simulated network that hands out one [`SimTransport`] per node.
///
/// Create it inside the actix system that runs the buses (it spawns its delivery task there),
/// preferably on a runtime with paused time, where delays cost no wall time. Nodes get the
/// addresses 127.0.0.1:40000, :40001, and so on; nothing is sent on a real socket.
#[derive(Clone)]
pub struct SimHub {
    state: Rc<RefCell<HubState>>,
    wake: Rc<Notify>,
}

impl std::fmt::Debug for SimHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHub").finish_non_exhaustive()
    }
}

fn node_addr(node: usize) -> SocketAddr {
    let port = 40_000 + u16::try_from(node).unwrap_or(u16::MAX - 40_000);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn node_of(addr: SocketAddr, nodes: usize) -> Option<NodeId> {
    let index = usize::from(addr.port().checked_sub(40_000)?);
    (addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) && index < nodes).then_some(NodeId(index))
}

impl SimHub {
    /// A network of `nodes` nodes, links configured as `config`, randomness from `seed`.
    pub fn new(seed: u64, nodes: usize, config: LinkConfig) -> SimHub {
        let hub = SimHub {
            state: Rc::new(RefCell::new(HubState {
                network: Network::new(seed, nodes, config),
                inboxes: (0..nodes).map(|_| None).collect(),
                clock: Clock::new(),
            })),
            wake: Rc::new(Notify::new()),
        };
        actix_rt::spawn(hub.clone().deliver());
        hub
    }

    /// The transport of node `node`.
    ///
    /// # Panics
    /// If `node` is out of range or its transport was already taken: a test bug.
    pub fn transport(&self, node: usize) -> SimTransport {
        let mut state = self.state.borrow_mut();
        assert!(
            node < state.inboxes.len(),
            "no node {node} in the simulated network"
        );
        assert!(
            state.inboxes[node].is_none(),
            "node {node} already has a transport"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        state.inboxes[node] = Some(tx);
        SimTransport {
            hub: self.clone(),
            node,
            incoming: Some(rx),
        }
    }

    /// Runs `f` on the underlying network: to change links, partition, or read its trace.
    pub fn with_network<R>(&self, f: impl FnOnce(&mut Network) -> R) -> R {
        let mut state = self.state.borrow_mut();
        let now = state.clock.now();
        state.network.advance_to(now);
        f(&mut state.network)
    }

    async fn deliver(self) {
        loop {
            let next = self.state.borrow().network.next_arrival();
            let wake = self.wake.notified();
            match next {
                Some(at) => {
                    let deadline = {
                        let state = self.state.borrow();
                        tokio::time::Instant::now() + state.clock.until(at)
                    };
                    tokio::select! {
                        // Deterministic: the same seed must give the same run.
                        biased;
                        () = tokio::time::sleep_until(deadline) => {}
                        () = wake => continue,
                    }
                }
                None => {
                    wake.await;
                    continue;
                }
            }
            let mut state = self.state.borrow_mut();
            let now = state.clock.now();
            let nodes = state.inboxes.len();
            while let Some(d) = state.network.poll_delivery(now) {
                if let Some(Some(inbox)) = state.inboxes.get(d.to.0) {
                    let _ = inbox.send(Datagram {
                        from: node_addr(d.from.0),
                        bytes: Bytes::from(d.bytes),
                    });
                }
                debug_assert!(d.to.0 < nodes);
            }
        }
    }
}

/// One node's end of a [`SimHub`].
#[derive(Debug)]
pub struct SimTransport {
    hub: SimHub,
    node: usize,
    incoming: Option<mpsc::UnboundedReceiver<Datagram>>,
}

impl Transport for SimTransport {
    fn local_addr(&self) -> SocketAddr {
        node_addr(self.node)
    }

    fn incoming(&mut self) -> LocalBoxStream<'static, Datagram> {
        match self.incoming.take() {
            Some(mut rx) => futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed_local(),
            None => futures_util::stream::empty().boxed_local(),
        }
    }

    fn send_batch(&self, batch: Vec<(Target, Vec<u8>)>) -> LocalBoxFuture<'static, SendReport> {
        let mut report = SendReport::default();
        {
            let mut state = self.hub.state.borrow_mut();
            let now = state.clock.now();
            let nodes = state.inboxes.len();
            state.network.advance_to(now);
            for (target, datagram) in batch {
                let destination = match target {
                    Target::Group => Destination::Multicast,
                    Target::Unicast(addr) => match node_of(addr, nodes) {
                        Some(node) => Destination::Unicast(node),
                        None => {
                            report.failed += 1;
                            continue;
                        }
                    },
                };
                report.sent += 1;
                report.bytes += datagram.len();
                state.network.send(NodeId(self.node), destination, datagram);
            }
        }
        self.hub.wake.notify_one();
        Box::pin(async move { report })
    }
}
