//! Build script: records the git commit for `--version`.
//!
//! `exo-authproxy --version` prints `0.1.0 (abc1234)`, so a bug report names the exact build.
//! The commit comes from `EXO_AUTHPROXY_GIT_COMMIT` when set (builds from a source tarball or
//! a CI that knows it), else from `git rev-parse --short HEAD`, else it is "unknown": this
//! script never fails the build (no git, not a checkout, a git too old for a worktree).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=EXO_AUTHPROXY_GIT_COMMIT");
    let commit = std::env::var("EXO_AUTHPROXY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points to (a
    // commit). `--git-path` finds both in a worktree too, where `.git` is a file.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    // A path that does not exist (no `packed-refs` in a fresh clone) would make cargo rerun
    // this script, and relink the binary, on every build.
    .filter(|path| std::path::Path::new(path).exists())
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rustc-env=EXO_AUTHPROXY_GIT_COMMIT={commit}");
}
