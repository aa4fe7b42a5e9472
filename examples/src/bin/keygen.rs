//! Generates a key file: a pre-shared key for `.cluster_psk` / `.peer_psk`, written as 64 hex
//! digits to a file only its owner can read.
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
    let key = match bus_core::crypto::random_key() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("keygen: {e}");
            return ExitCode::FAILURE;
        }
    };
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
