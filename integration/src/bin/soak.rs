//! The soak, for as long as asked (see `integration::soak`):
//!
//! ```text
//! soak [--secs S] [--loss P] [--reliable-per-sec N] [--best-effort-per-sec N] [--min-rto-ms M]
//! ```
//!
//! Prints a summary line; exits non-zero if a guarantee broke or memory grew after warm-up.
//! Loopback only.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Duration;

use integration::soak::{SoakConfig, soak};

fn main() -> ExitCode {
    let mut config = SoakConfig {
        duration: Duration::from_secs(900),
        loss: 0.05,
        reliable_per_sec: 200,
        best_effort_per_sec: 1000,
        min_rto: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let parsed = match flag.as_str() {
            "--secs" => value
                .parse()
                .map(|s| config.duration = Duration::from_secs(s))
                .is_ok(),
            "--loss" => value.parse().map(|l| config.loss = l).is_ok(),
            "--reliable-per-sec" => value.parse().map(|n| config.reliable_per_sec = n).is_ok(),
            "--best-effort-per-sec" => value
                .parse()
                .map(|n| config.best_effort_per_sec = n)
                .is_ok(),
            "--min-rto-ms" => value
                .parse()
                .map(|ms| config.min_rto = Some(Duration::from_millis(ms)))
                .is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("soak: bad argument {flag} {value}");
            return ExitCode::from(2);
        }
    }
    let report = actix::System::new().block_on(soak(config));
    println!(
        "soak secs={} loss={} reliable={} delivered={} undelivered={} best_effort_sent={} \
         best_effort_received={} retransmitted={} rss_warm_kb={} rss_end_kb={} violations={}",
        config.duration.as_secs(),
        config.loss,
        report.reliable,
        report.delivered,
        report.undelivered,
        report.best_effort_sent,
        report.best_effort_received,
        report.retransmitted,
        report.rss_warm / 1024,
        report.rss_end / 1024,
        report.violations.len(),
    );
    for violation in report.violations.iter().take(20) {
        println!("violation: {violation}");
    }
    if report.violations.is_empty() && report.rss_flat() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
