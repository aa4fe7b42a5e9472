use super::*;

fn noisy() -> LinkConfig {
    LinkConfig {
        loss: 0.1,
        duplicate: 0.1,
        latency: Duration::from_millis(1),
        jitter: Duration::from_micros(500),
        reorder: 0.1,
        reorder_delay: Duration::from_millis(3),
    }
}

/// Three nodes; node 0 multicasts a numbered datagram every 100 µs and node 1 answers each one it
/// receives by unicast. Returns the trace.
fn run(seed: u64) -> Trace {
    let mut net = Network::new(seed, 3, noisy());
    for i in 0u32..500 {
        net.send(NodeId(0), Destination::Multicast, i.to_le_bytes().to_vec());
        let until = net.now() + Duration::from_micros(100);
        while let Some(d) = net.poll_delivery(until) {
            if d.to == NodeId(1) {
                net.send(NodeId(1), Destination::Unicast(d.from), d.bytes);
            }
        }
        net.advance_to(until);
    }
    while net.poll_delivery(Instant::MAX).is_some() {}
    net.trace().clone()
}

#[test]
fn same_seed_gives_the_same_trace() {
    let a = run(7);
    assert!(a.len() > 1000);
    assert_eq!(a, run(7));
}

#[test]
fn different_seed_gives_a_different_trace() {
    assert_ne!(run(7), run(8));
}

#[test]
fn loss_of_30_percent_drops_25_to_35_percent() {
    let config = LinkConfig {
        loss: 0.3,
        ..LinkConfig::default()
    };
    let mut net = Network::new(1, 2, config);
    for i in 0u32..10_000 {
        net.send(
            NodeId(0),
            Destination::Unicast(NodeId(1)),
            i.to_le_bytes().to_vec(),
        );
    }
    let mut delivered = 0;
    while net.poll_delivery(Instant::MAX).is_some() {
        delivered += 1;
    }
    let stats = net.stats();
    assert_eq!(stats.sent, 10_000);
    assert_eq!(stats.lost + delivered, 10_000);
    assert!(
        (2_500..=3_500).contains(&stats.lost),
        "lost {} of 10000",
        stats.lost
    );
}

#[test]
fn duplication_delivers_extra_copies() {
    let config = LinkConfig {
        duplicate: 0.2,
        ..LinkConfig::default()
    };
    let mut net = Network::new(3, 2, config);
    for i in 0u32..5_000 {
        net.send(
            NodeId(0),
            Destination::Unicast(NodeId(1)),
            i.to_le_bytes().to_vec(),
        );
    }
    while net.poll_delivery(Instant::MAX).is_some() {}
    let stats = net.stats();
    assert!((800..=1_200).contains(&stats.duplicated), "{stats:?}");
    assert_eq!(stats.delivered, 5_000 + stats.duplicated);
}

#[test]
fn jitter_and_reordering_let_datagrams_overtake() {
    let config = LinkConfig {
        jitter: Duration::from_millis(2),
        reorder: 0.05,
        ..LinkConfig::default()
    };
    let mut net = Network::new(5, 2, config);
    for i in 0u32..1_000 {
        net.send(
            NodeId(0),
            Destination::Unicast(NodeId(1)),
            i.to_le_bytes().to_vec(),
        );
        let next = net.now() + Duration::from_micros(50);
        net.advance_to(next);
    }
    let mut order = Vec::new();
    while let Some(d) = net.poll_delivery(Instant::MAX) {
        order.push(u32::from_le_bytes(d.bytes.try_into().unwrap()));
    }
    assert_eq!(order.len(), 1_000);
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 50, "only {inversions} inversions");
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1_000).collect::<Vec<_>>());
}

#[test]
fn arrivals_are_in_time_order_and_respect_latency() {
    let mut net = Network::new(9, 2, noisy());
    for i in 0u32..200 {
        net.send(
            NodeId(0),
            Destination::Unicast(NodeId(1)),
            i.to_le_bytes().to_vec(),
        );
    }
    let mut last = Instant::ZERO;
    while let Some(d) = net.poll_delivery(Instant::MAX) {
        assert!(d.at >= last);
        assert!(d.at >= Instant::ZERO + Duration::from_millis(1));
        last = d.at;
    }
}

#[test]
fn partition_cuts_both_ways_until_healed() {
    let mut net = Network::new(2, 3, LinkConfig::default());
    net.partition(&[NodeId(0)], &[NodeId(1)]);
    net.send(NodeId(0), Destination::Multicast, vec![1]);
    net.send(NodeId(1), Destination::Unicast(NodeId(0)), vec![2]);
    let mut got = Vec::new();
    while let Some(d) = net.poll_delivery(Instant::MAX) {
        got.push((d.from, d.to));
    }
    assert_eq!(got, [(NodeId(0), NodeId(2))]);
    assert_eq!(net.stats().partitioned, 2);

    net.heal();
    net.send(NodeId(1), Destination::Unicast(NodeId(0)), vec![3]);
    assert_eq!(
        net.poll_delivery(Instant::MAX).map(|d| d.bytes),
        Some(vec![3])
    );
}

/// A node that pings its peer every 10 ms and answers pings with pongs; it counts pongs.
#[derive(Debug, Default)]
struct Pinger {
    peer: usize,
    next_ping: Instant,
    outbox: Vec<Transmit>,
    pongs: u32,
}

impl Node for Pinger {
    fn handle_datagram(&mut self, _now: Instant, from: NodeId, bytes: &[u8]) {
        match bytes {
            b"ping" => self.outbox.push(Transmit {
                destination: Destination::Unicast(from),
                bytes: b"pong".to_vec(),
            }),
            _ => self.pongs += 1,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.outbox.push(Transmit {
            destination: Destination::Unicast(NodeId(self.peer)),
            bytes: b"ping".to_vec(),
        });
        self.next_ping = now + Duration::from_millis(10);
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_ping)
    }
}

#[test]
fn simulation_drives_timers_and_deliveries() {
    let nodes = vec![
        Pinger {
            peer: 1,
            ..Pinger::default()
        },
        Pinger {
            peer: 0,
            next_ping: Instant::MAX,
            ..Pinger::default()
        },
    ];
    let mut sim = Simulation::new(4, LinkConfig::default(), nodes);
    sim.drive_until(Instant::from_millis(95));
    // Pings at 0, 10, ..., 90 ms, each answered 200 µs later.
    assert_eq!(sim.nodes[0].pongs, 10);
    assert_eq!(sim.now(), Instant::from_millis(95));
    assert_eq!(sim.network.stats().delivered, 20);
}

#[test]
fn drive_bounded_reports_a_node_that_never_goes_idle() {
    let nodes = vec![Pinger {
        peer: 0,
        ..Pinger::default()
    }];
    let mut sim = Simulation::new(4, LinkConfig::default(), nodes);
    assert!(!sim.drive_bounded(100));
}
