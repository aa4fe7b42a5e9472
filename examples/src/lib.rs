//! What the examples share: the plant's topics and its sensors' behaviour, so that the demo,
//! the sensor example and the `bus` CLI's tests speak of the same things.

/// Logs what the bus says to standard error, as `RUST_LOG` asks (`RUST_LOG=bus_actors=debug`
/// shows peers coming and going, handshakes and drops); warnings only by default.
pub fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub mod plant {
    //! A plant whose boilers report their temperatures.

    use std::time::Duration;

    use bus_actors::{Bus, Error, Topic};
    use serde::{Deserialize, Serialize};

    /// A reading from one of the plant's thermometers.
    #[derive(Clone, Debug, Deserialize, PartialEq, Serialize, Topic)]
    #[topic(name = "plant/boiler/temperature")]
    pub struct Temperature {
        /// Which thermometer.
        pub sensor: String,
        /// What it read.
        pub celsius: f64,
    }

    /// The `i`th reading of a sensor that starts at `base` °C: a slow sawtooth, so that a live
    /// view shows it move.
    pub fn reading(sensor: &str, base: f64, i: u64) -> Temperature {
        Temperature {
            sensor: sensor.to_owned(),
            celsius: base + (i % 20) as f64 * 0.5,
        }
    }

    /// Publishes a reading of `sensor` every `every`, `count` of them (for ever if `None`).
    ///
    /// # Errors
    /// What publishing returns: the bus was shut down.
    pub async fn publish_readings(
        bus: &Bus,
        sensor: &str,
        base: f64,
        every: Duration,
        count: Option<u64>,
    ) -> Result<(), Error> {
        let mut tick = tokio::time::interval(every);
        for i in 0..count.unwrap_or(u64::MAX) {
            tick.tick().await;
            bus.publish(reading(sensor, base, i)).await?;
        }
        Ok(())
    }
}
