//! The soak for 60 s (the binary `soak` runs it for 15 minutes): three peers on loopback at 5%
//! loss, mixed traffic; every reliable message delivered at most once, every one reported
//! delivered reached who acknowledged it, every other reported `Undelivered`; memory flat.

use std::time::Duration;

use integration::soak::{SoakConfig, soak};

#[actix::test]
async fn a_minute_at_five_percent_loss_keeps_every_guarantee() {
    let report = soak(SoakConfig {
        duration: Duration::from_secs(60),
        loss: 0.05,
        reliable_per_sec: 200,
        best_effort_per_sec: 1000,
        min_rto: None,
    })
    .await;
    assert!(
        report.violations.is_empty(),
        "{:#?}",
        &report.violations[..report.violations.len().min(20)]
    );
    assert!(report.reliable > 30_000, "{report:?}");
    assert_eq!(report.reliable, report.delivered + report.undelivered);
    assert!(report.best_effort_received > 0);
    assert!(
        report.rss_flat(),
        "{} KB after warm-up, {} KB at the end",
        report.rss_warm / 1024,
        report.rss_end / 1024
    );
}
