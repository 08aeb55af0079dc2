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

/// Typed at a terminal, the password is not echoed, and no `stty` is needed for that (it is
/// missing on Windows; here `PATH` is emptied so the binary cannot find it). The terminal is a
/// real pseudo-terminal made by python's `pty`; the password is typed only once echo is off,
/// or after 10 s if it never goes off (then the echo shows and the test fails).
#[cfg(unix)]
#[test]
fn r12_hash_password_typed_at_a_terminal_is_not_echoed_without_stty() {
    const TYPER: &str = r#"
import os, pty, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execve(sys.argv[1], [sys.argv[1], "hash-password"], {"PATH": ""})
seen = b""
def read_some():
    global seen
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        return False
    seen += chunk
    return bool(chunk)
while b"Password:" not in seen:
    if not read_some():
        break
deadline = time.monotonic() + 10
while time.monotonic() < deadline and termios.tcgetattr(fd)[3] & termios.ECHO:
    time.sleep(0.01)
os.write(fd, b"correct horse\r")
while read_some():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .args(["-c", TYPER])
        .arg(env!("CARGO_BIN_EXE_exo-authproxy"))
        .output()
        .expect("python3 runs the pseudo-terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{screen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(screen.contains("Password:"), "{screen}");
    assert!(!screen.contains("correct horse"), "echoed: {screen}");
    let phc = screen
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no PHC string on the screen: {screen}"));
    use argon2::PasswordVerifier;
    let hash = argon2::PasswordHash::new(phc).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse", &hash)
            .is_ok()
    );
}
