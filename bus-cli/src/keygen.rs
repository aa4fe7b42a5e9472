//! `bus keygen`: 32 random bytes, written as 64 hex digits to a new file only its owner can
//! read (an existing file is never overwritten). Use it as a pre-shared key (`--psk-file`,
//! `.cluster_psk`) or as an X25519 private key (`--key-file`, `.public_key_mode`): the public
//! key printed is what other peers trust, and the peer id is the one that key pair gives.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use bus_actors::keys;

use crate::Failure;

/// Writes a new 32-byte key (hex, mode 600) to FILE, and prints the public key and peer id it
/// gives as an X25519 private key.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The key file to create; refused if it exists.
    file: PathBuf,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, Failure> {
    let key = keys::random_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let path = args.file.display();
    options
        .open(&args.file)
        .and_then(|mut file| writeln!(file, "{}", keys::format_key(&key)))
        .map_err(|e| Failure(format!("{path}: {e}")))?;
    println!("wrote a new key to {path}");
    let pair = keys::Keypair::from_private(key)?;
    println!("public key: {}", keys::format_key(pair.public()));
    println!("peer id:    {}", keys::peer_id_of(pair.public()));
    Ok(ExitCode::SUCCESS)
}
