//! The bus's counters through the `metrics` facade, for whatever exporter the application
//! installs (Prometheus, StatsD, OpenTelemetry...): copied from the endpoint's counters once a
//! period, never on the datagram path. Without a recorder installed, each call is a no-op.
//!
//! Every series has the label `bus` (the peer id), so that several buses in one process stay
//! apart. Counters (`_total`): `bus_datagrams_total` and `bus_bytes_total` by `direction`
//! (`in`, `out`), `bus_frames_total` by `direction` and `kind`, `bus_drops_total` by `reason`
//! (every reason, zeros included), `bus_reliable_total` by `event` (`sent`, `events_sent`,
//! `retransmitted`, `acked`, `expired`, `received`, `events_received`, `duplicates`,
//! `window_full`, `given_up`), `bus_handshakes_total`. Gauges: `bus_peers`,
//! `bus_reliable_pending`, `bus_reassembly_bytes`, `bus_socket_recv_buffer_bytes`. Histogram:
//! `bus_rtt_seconds`, a sample per pong. Per topic: `bus_received_total` by `topic` (its name),
//! the messages that arrived from peers for this bus's subscriptions.

use bus_core::metrics::{DropReason, MetricsSnapshot};
use bus_core::{Duration, PeerId};

/// How often the counters are copied out.
pub(crate) const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// Copies `snapshot` (and the number of peers known) into the facade.
pub(crate) fn export(bus: PeerId, snapshot: &MetricsSnapshot, peers: usize) {
    let bus = bus.to_string();
    let counter = |name: &'static str, labels: &[(&'static str, String)], value: u64| {
        let mut all = vec![("bus", bus.clone())];
        all.extend(labels.iter().cloned());
        metrics::counter!(name, &all).absolute(value);
    };
    let dir = |d: &str| vec![("direction", d.to_owned())];
    counter("bus_datagrams_total", &dir("in"), snapshot.datagrams_in);
    counter("bus_datagrams_total", &dir("out"), snapshot.datagrams_out);
    counter("bus_bytes_total", &dir("in"), snapshot.bytes_in);
    counter("bus_bytes_total", &dir("out"), snapshot.bytes_out);
    for (direction, frames) in [("in", &snapshot.frames_in), ("out", &snapshot.frames_out)] {
        for (kind, count) in frames {
            let labels = [
                ("direction", direction.to_owned()),
                ("kind", (*kind).to_owned()),
            ];
            counter("bus_frames_total", &labels, *count);
        }
    }
    for reason in DropReason::ALL {
        let labels = [("reason", reason.name().to_owned())];
        counter("bus_drops_total", &labels, snapshot.drops(reason));
    }
    let reliable = &snapshot.reliable;
    for (event, value) in [
        ("sent", reliable.sent),
        ("events_sent", reliable.events_sent),
        ("retransmitted", reliable.retransmitted),
        ("acked", reliable.acked),
        ("expired", reliable.expired),
        ("received", reliable.received),
        ("events_received", reliable.events_received),
        ("duplicates", reliable.duplicates),
        ("window_full", reliable.window_full),
        ("given_up", reliable.given_up),
    ] {
        counter("bus_reliable_total", &[("event", event.to_owned())], value);
    }
    counter("bus_handshakes_total", &[], snapshot.handshakes);
    let gauge = |name: &'static str, value: f64| {
        metrics::gauge!(name, "bus" => bus.clone()).set(value);
    };
    gauge("bus_peers", peers as f64);
    gauge("bus_reliable_pending", reliable.pending as f64);
    gauge("bus_reassembly_bytes", snapshot.reassembly_bytes as f64);
    gauge(
        "bus_socket_recv_buffer_bytes",
        snapshot.socket_recv_buffer as f64,
    );
}

/// A round-trip sample to a peer.
pub(crate) fn rtt_sample(bus: PeerId, rtt: std::time::Duration) {
    metrics::histogram!("bus_rtt_seconds", "bus" => bus.to_string()).record(rtt.as_secs_f64());
}

/// Messages received from peers, by topic name.
pub(crate) fn received_by_topic(bus: PeerId, received: &[(String, u64)]) {
    let bus = bus.to_string();
    for (topic, count) in received {
        metrics::counter!("bus_received_total", "bus" => bus.clone(), "topic" => topic.clone())
            .absolute(*count);
    }
}
