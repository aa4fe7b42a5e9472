//! Key files: 32-byte keys written as 64 hex digits (or 44 characters of standard base64), on
//! a line of their own.

use std::path::Path;

pub use bus_core::crypto::handshake::PresharedKey;
pub use bus_core::crypto::noise::Keypair;
pub use bus_core::crypto::peer_id_of;

use rand::TryRngCore;

use crate::error::Error;

/// A fresh 32-byte key from the operating system's random source: a new cluster pre-shared key
/// or X25519 private key.
pub fn random_key() -> [u8; 32] {
    bus_core::crypto::random_key(&mut rand::rngs::OsRng.unwrap_err())
}

/// A fresh X25519 key pair from the operating system's random source, for
/// [`BusBuilder::public_key_mode`](crate::BusBuilder::public_key_mode).
///
/// # Errors
/// [`Error::Config`] in the negligible case that the drawn key is unusable.
pub fn generate_keypair() -> Result<Keypair, Error> {
    Keypair::generate(&mut rand::rngs::OsRng.unwrap_err())
        .map_err(|e| Error::Config(format!("no key pair could be made: {e}")))
}

/// Reads a 32-byte key (a pre-shared key, or an X25519 private key) from `path`.
///
/// On Unix a file that its group or others may read is refused: a key everyone on the machine
/// can read protects nothing.
///
/// # Errors
/// [`Error::Config`] naming the file and what is wrong with it.
pub fn load_key(path: impl AsRef<Path>) -> Result<[u8; 32], Error> {
    let path = path.as_ref();
    let bad = |why: &str| Error::Config(format!("key file {}: {why}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| bad(&e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(bad(&format!(
                "readable by others (mode {:o}); chmod 600 it",
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
    parse_key(text.trim()).ok_or_else(|| bad("not 32 bytes of hex or base64"))
}

/// Parses 64 hex digits or 44 characters of standard base64 into a key.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    if text.len() == 64 {
        return hex::decode_to_slice(text, &mut key).ok().map(|()| key);
    }
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    (decoded.len() == 32).then(|| {
        key.copy_from_slice(&decoded);
        key
    })
}

/// Formats a key as 64 hex digits.
pub fn format_key(key: &[u8; 32]) -> String {
    hex::encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_parse_to_the_same_key() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let hex = format_key(&key);
        assert_eq!(parse_key(&hex), Some(key));
        // base64 of 00 01 02 ... 1f
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(parse_key(b64), Some(key));
        assert_eq!(parse_key("zz"), None);
        assert_eq!(parse_key(&hex[..62]), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bus-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        std::fs::write(&path, format_key(&[7; 32]) + "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key(&path).unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_key(&path).unwrap(), [7; 32]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
