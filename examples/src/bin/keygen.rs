//! Generates a key file: 32 random bytes, written as 64 hex digits to a file only its owner can
//! read. Use it as a pre-shared key (`.cluster_psk` / `.peer_psk`) or as an X25519 private key
//! (`.public_key_mode`): the public key printed is what other peers `.trust`.
//!
//! ```sh
//! cargo run -p examples --bin keygen -- cluster.key
//! ```

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: keygen FILE   (writes a new 32-byte key, hex, mode 600)");
        return ExitCode::from(2);
    };
    let key = bus_actors::keys::random_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&path)
        .and_then(|mut file| writeln!(file, "{}", bus_actors::keys::format_key(&key)));
    match written {
        Ok(()) => {
            println!("wrote a new key to {path}; load it with bus_actors::keys::load_key");
            if let Ok(pair) = bus_actors::keys::Keypair::from_private(key) {
                println!(
                    "as an X25519 private key, its public key is {}",
                    bus_actors::keys::format_key(pair.public())
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
