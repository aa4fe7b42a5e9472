//! Round-trip time, retransmission timeout and clock offset to one peer, from ping/pong samples.

use crate::time::{Duration, Instant};

/// RFC 6298 smoothed round-trip time and retransmission timeout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    /// The RTO before any sample (RFC 6298 says 1 s; a LAN bus starts lower).
    pub const INITIAL_RTO: Duration = Duration::from_millis(200);

    /// An estimator whose RTO stays within `min_rto..=max_rto`.
    pub fn new(min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rto,
            max_rto: max_rto.max(min_rto),
        }
    }

    /// Feeds one measured round trip.
    pub fn on_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout: SRTT + 4·RTTVAR, clamped.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => Self::INITIAL_RTO.clamp(self.min_rto, self.max_rto),
            Some(srtt) => (srtt + self.rttvar * 4).clamp(self.min_rto, self.max_rto),
        }
    }
}

impl Default for RttEstimator {
    /// RTO bounds of 1 ms and 2 s: a LAN bus measures sub-millisecond round trips.
    fn default() -> RttEstimator {
        RttEstimator::new(Duration::from_millis(1), Duration::from_secs(2))
    }
}

/// One ping/pong exchange, with the four clock readings of NTP: `t1` ping sent and `t4` pong
/// received on our clock, `t2` ping received and `t3` pong sent on the peer's clock, all in
/// microseconds.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PingSample {
    /// Ping sent, our clock.
    pub t1: u64,
    /// Ping received, the peer's clock.
    pub t2: u64,
    /// Pong sent, the peer's clock.
    pub t3: u64,
    /// Pong received, our clock.
    pub t4: u64,
}

impl PingSample {
    /// The round trip, less the time the peer held the ping.
    pub fn rtt(&self) -> Duration {
        let total = self.t4.saturating_sub(self.t1);
        let held = self.t3.saturating_sub(self.t2);
        Duration::from_micros(total.saturating_sub(held))
    }

    /// The peer's clock minus ours, in microseconds: ((t2 − t1) + (t3 − t4)) / 2.
    pub fn offset_us(&self) -> i64 {
        let a = i128::from(self.t2) - i128::from(self.t1);
        let b = i128::from(self.t3) - i128::from(self.t4);
        i64::try_from((a + b) / 2).unwrap_or(if a + b < 0 { i64::MIN } else { i64::MAX })
    }
}

/// The clock offset to a peer, taken from the recent sample with the smallest round trip (whose
/// one-way delays are least likely to be lopsided).
#[derive(Clone, Debug, Default)]
pub struct ClockOffset {
    recent: Vec<(Duration, i64)>,
}

impl ClockOffset {
    const WINDOW: usize = 8;

    /// Feeds one exchange.
    pub fn on_sample(&mut self, sample: &PingSample) {
        if self.recent.len() == Self::WINDOW {
            self.recent.remove(0);
        }
        self.recent.push((sample.rtt(), sample.offset_us()));
    }

    /// The peer's clock minus ours, in microseconds, once there is a sample.
    pub fn offset_us(&self) -> Option<i64> {
        self.recent
            .iter()
            .min_by_key(|(rtt, _)| *rtt)
            .map(|(_, offset)| *offset)
    }

    /// A reading of the peer's clock (microseconds) as an instant on ours.
    pub fn to_local(&self, remote_us: u64) -> Option<Instant> {
        Some(remote_to_local(remote_us, self.offset_us()?))
    }
}

/// A reading of a peer's clock (microseconds) as an instant on ours, given the offset (theirs
/// minus ours, as [`ClockOffset::offset_us`] gives it). Saturates at our epoch.
pub fn remote_to_local(remote_us: u64, offset_us: i64) -> Instant {
    let local = i128::from(remote_us) - i128::from(offset_us);
    Instant::from_micros(u64::try_from(local.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_sets_srtt_and_rto() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.rto(), RttEstimator::INITIAL_RTO);
        rtt.on_sample(Duration::from_millis(10));
        assert_eq!(rtt.srtt(), Some(Duration::from_millis(10)));
        // 10 + 4 * 5 ms.
        assert_eq!(rtt.rto(), Duration::from_millis(30));
    }

    #[test]
    fn steady_samples_converge_and_rto_is_clamped() {
        let mut rtt = RttEstimator::new(Duration::from_millis(5), Duration::from_millis(50));
        for _ in 0..100 {
            rtt.on_sample(Duration::from_micros(100));
        }
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(100)));
        assert_eq!(rtt.rto(), Duration::from_millis(5));
        rtt.on_sample(Duration::from_secs(10));
        assert_eq!(rtt.rto(), Duration::from_millis(50));
    }

    #[test]
    fn offset_and_rtt_from_four_readings() {
        // The peer's clock is 1000 µs ahead; 50 µs each way; the peer holds the ping 10 µs.
        let sample = PingSample {
            t1: 100,
            t2: 1150,
            t3: 1160,
            t4: 210,
        };
        assert_eq!(sample.rtt(), Duration::from_micros(100));
        assert_eq!(sample.offset_us(), 1000);
        let mut offset = ClockOffset::default();
        assert_eq!(offset.to_local(5000), None);
        offset.on_sample(&sample);
        assert_eq!(offset.to_local(5000), Some(Instant::from_micros(4000)));
    }

    #[test]
    fn the_fastest_recent_exchange_wins() {
        let mut offset = ClockOffset::default();
        // A slow, lopsided exchange suggests 4500; a fast one says 1000.
        offset.on_sample(&PingSample {
            t1: 0,
            t2: 5000,
            t3: 5000,
            t4: 1000,
        });
        offset.on_sample(&PingSample {
            t1: 2000,
            t2: 3050,
            t3: 3050,
            t4: 2100,
        });
        assert_eq!(offset.offset_us(), Some(1000));
    }
}
