//! The binary's contract: exit codes and `hash-password` (README "Exit codes").

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_exo-authproxy"))
}

#[test]
fn hash_password_reads_stdin_and_prints_a_verifiable_argon2id_phc() {
    let mut child = bin()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    let phc = phc.trim();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(!phc.contains("correct horse"));
    use argon2::PasswordVerifier;
    let hash = argon2::PasswordHash::new(phc).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse", &hash)
            .is_ok()
    );
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse\n", &hash)
            .is_err(),
        "the newline is not part of it"
    );
}

#[test]
fn exit_codes_usage_2_config_64() {
    let usage = bin().args(["serve"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "state_dir = \"s\"\n[listen]\nadress = \"127.0.0.1:8443\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:"),
        "names the file and position: {stderr}"
    );
    let missing = bin()
        .args(["check", "--config", "/nonexistent/exo.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
}
