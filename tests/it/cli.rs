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

/// Runs the binary with `args`, killing it after 60 s (a test failure then).
#[cfg(unix)]
fn run_bounded(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "{args:?} still running after 60 s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 12: `serve` and `check` name a configuration file and an app key that other users
/// can read, once each, with the `chmod` that fixes it, and then go on (here `serve` finds
/// its port taken and `check` finds no Entra ID, so both stop on their own).
#[cfg(unix)]
#[test]
fn r12_serve_and_check_warn_once_about_secrets_others_can_read() {
    use std::ffi::OsStr;
    use std::os::unix::fs::PermissionsExt;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.key");
    std::fs::write(dir.path().join("app.pem"), "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let config = dir.path().join("exo.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "state"

[listen]
address = "{}"

[entra]
authority = "https://127.0.0.1:1"
client_id = "6a8ff8e6-0000-4000-8000-00000000a11c"
certificate = "app.pem"
private_key = "app.key"

[exchange]
mode = "winrm"

[[tenant]]
name = "contoso"
tenant_id = "0f9c3b1e-1111-2222-3333-444455556666"
organization = "contoso.onmicrosoft.com"
"#,
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let chmod = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(&config, 0o644);
    chmod(&key, 0o640);
    chmod(&dir.path().join("app.pem"), 0o644);
    let fix_config = format!("chmod 600 {}", config.display());
    let fix_key = format!("chmod 600 {}", key.display());
    for command in ["serve", "check"] {
        let out = run_bounded(&[
            OsStr::new(command),
            OsStr::new("--config"),
            config.as_os_str(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command}: {stderr}");
        assert_eq!(
            stderr.matches(&fix_config).count(),
            1,
            "{command}: {stderr}"
        );
        assert_eq!(stderr.matches(&fix_key).count(), 1, "{command}: {stderr}");
        assert!(!stderr.contains("app.pem is readable"), "{stderr}");
        // Issue 14: log lines written to a pipe (or a file) carry no ANSI colour codes.
        assert!(
            !stderr.contains('\u{1b}'),
            "{command}: colour codes in {stderr:?}"
        );
    }
    // Owner-only: silence.
    chmod(&config, 0o600);
    chmod(&key, 0o600);
    let out = run_bounded(&[
        OsStr::new("serve"),
        OsStr::new("--config"),
        config.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn version_names_the_release_and_the_git_commit() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!("exo-authproxy {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim()
        .strip_prefix(&expected)
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        // Built in this checkout: build.rs reruns when HEAD moves, so it is HEAD's commit.
        Some(head) if std::env::var_os("EXO_AUTHPROXY_GIT_COMMIT").is_none() => {
            assert_eq!(commit, head, "{text}");
        }
        _ => assert!(!commit.is_empty(), "{text}"),
    }
}
