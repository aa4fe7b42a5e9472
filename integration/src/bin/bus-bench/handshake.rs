//! `handshake`: handshakes per second, PSK and public-key.

use super::*;

/// What `handshake` measures.
#[derive(clap::Args)]
pub(super) struct HandshakeArgs {
    /// Seconds per mode.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
}

/// Complete handshakes per second (both sides' work, on one core), PSK and public-key mode.
pub(super) fn handshakes(args: &HandshakeArgs) -> Res<()> {
    use bus_core::crypto::handshake::{Credentials, Initiation, PresharedKey, respond};
    use bus_core::crypto::noise::Keypair;
    let secs = args.secs;
    let client = Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?;
    let server = Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?;
    let modes = [
        (
            "psk",
            Credentials::Psk {
                key: PresharedKey(BENCH_KEY),
                responder: bus_actors::PeerId([2; 16]),
            },
            Credentials::Psk {
                key: PresharedKey(BENCH_KEY),
                responder: bus_actors::PeerId([2; 16]),
            },
        ),
        (
            "public_key",
            Credentials::PublicKey {
                local: client.clone(),
                remote: *server.public(),
            },
            Credentials::PublicKey {
                local: server.clone(),
                remote: *client.public(),
            },
        ),
    ];
    let id = bus_actors::PeerId([1; 16]);
    for (name, initiator, responder) in modes {
        let started = Instant::now();
        let mut done = 0u64;
        while started.elapsed().as_secs_f64() < secs {
            let (initiation, init) = Initiation::start(
                id,
                &initiator,
                1,
                done,
                Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let accepted = respond(
                &init,
                &responder,
                2,
                bus_actors::Instant::ZERO,
                Keypair::generate(&mut rand::rng()).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            initiation
                .finish(&accepted.response, bus_actors::Instant::ZERO)
                .map_err(|e| e.to_string())?;
            done += 1;
        }
        let rate = done as f64 / started.elapsed().as_secs_f64();
        println!("peer=bus mode=handshake kind={name} handshakes_per_s={rate:.0}");
    }
    Ok(())
}
