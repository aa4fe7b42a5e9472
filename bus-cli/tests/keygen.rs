//! `bus keygen` as a user runs it: a new key file that loads, never an overwrite, and
//! flags that are flags.

#![allow(clippy::expect_used)] // In helpers outside #[test] functions too: a panic fails the test.

use std::process::Command;

use bus_actors::keys;

fn keygen(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bus"))
        .arg("keygen")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("bus keygen runs")
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keygen-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn writes_a_key_that_loads_and_prints_its_public_key_and_peer_id() {
    let dir = scratch_dir("new");
    let out = keygen(&["cluster.key"], &dir);
    assert!(out.status.success(), "{out:?}");
    let key = keys::load_key(dir.join("cluster.key")).expect("loads");
    let pair = keys::Keypair::from_private(key).expect("a key pair");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&keys::format_key(pair.public())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&keys::peer_id_of(pair.public()).to_string()),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("cluster.key"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = keygen(&["cluster.key"], &dir);
    assert_eq!(again.status.code(), Some(1), "refuses to overwrite");
    assert_eq!(keys::load_key(dir.join("cluster.key")).ok(), Some(key));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_and_unknown_flags_write_nothing() {
    let dir = scratch_dir("flags");
    let help = keygen(&["--help"], &dir);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: bus keygen"));
    let typo = keygen(&["--sise", "64"], &dir);
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("--sise"));
    let none = keygen(&[], &dir);
    assert_eq!(none.status.code(), Some(2));
    let written: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert!(written.is_empty(), "{written:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
