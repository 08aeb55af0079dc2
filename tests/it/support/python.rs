//! The real third-party client: pypsrp, in a venv under `target/` that the tests create.
//!
//! `cargo test` is the one test command, so the venv is made here on first use, not by a
//! separate setup step. It is built in a private temporary directory and renamed into place,
//! so concurrent test processes never see a half-made venv; a marker file names the pinned
//! version, so changing `PYPSRP` makes a fresh one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The pinned client version (the reference documents 0.9).
pub const PYPSRP: &str = "pypsrp==0.9.1";

fn venv_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("interop-venv")
}

fn marker(root: &Path) -> PathBuf {
    root.join(format!(".ready-{}", PYPSRP.replace("==", "-")))
}

/// The venv's python, creating the venv if needed.
///
/// # Panics
/// When python3 or pip fail: the interop tests cannot run without them, and the message says
/// what to install.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = venv_root();
        let py = root.join("bin").join("python");
        if marker(&root).exists() && py.exists() {
            return py;
        }
        let tmp = root.with_file_name(format!("interop-venv.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.parent().expect("target/ has a parent")).expect("target/");
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&tmp),
            "python3 -m venv (install python3 and python3-venv)",
        );
        run(
            Command::new(tmp.join("bin").join("python")).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                PYPSRP,
            ]),
            "pip install pypsrp (needs PyPI)",
        );
        std::fs::write(marker(&tmp), PYPSRP).expect("write venv marker");
        let _ = std::fs::remove_dir_all(&root);
        if std::fs::rename(&tmp, &root).is_err() {
            // Another test process won the race; use its venv.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(
            marker(&root).exists(),
            "venv at {} is not ready",
            root.display()
        );
        py
    })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tests/interop/<script>` with the venv's python and the given environment, off the
/// async runtime's threads (the server under test runs on them). Returns the whole output.
pub async fn run_script(script: &str, env: Vec<(String, String)>) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
        .join(script);
    let py = python().to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(path)
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .expect("run python")
    })
    .await
    .expect("python runner task")
}
