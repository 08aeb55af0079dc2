//! The documentation matches the code (issue 15): every `X-Exo-Authproxy-Error` code the proxy
//! can send is in docs/troubleshooting.md's table and every code in that table exists; the
//! docs and README point only to files that exist in the repository, never outside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The quoted strings after `=>` in the body of the function whose signature starts with
/// `signature` in `path`.
fn match_arm_strings(path: &str, signature: &str) -> BTreeSet<String> {
    let text = read(path);
    let start = text
        .find(signature)
        .unwrap_or_else(|| panic!("{path}: no `{signature}`"));
    // The body ends at the first line that closes the function (four-space indent).
    let body = &text[start..];
    let end = body.find("\n    }\n").unwrap_or(body.len());
    quoted_after(&body[..end], "=> \"")
}

/// Every `"…"` right after `marker` in `text`.
fn quoted_after(text: &str, marker: &str) -> BTreeSet<String> {
    text.split(marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every code the proxy can put in `X-Exo-Authproxy-Error`: [`ProxyError::code`], the
/// remoting endpoint's codes by WSManFault code, and each fault that names its own.
///
/// [`ProxyError::code`]: exo_authproxy::errors::ProxyError::code
fn emitted_codes() -> BTreeSet<String> {
    let mut codes = match_arm_strings("src/errors.rs", "pub fn code(&self) -> &'static str");
    assert!(
        codes.contains("bad-credentials") && codes.len() > 20,
        "the extraction from src/errors.rs works: {codes:?}"
    );
    codes.extend(match_arm_strings(
        "src/remoting/wsman/fault.rs",
        "pub fn of_wsman(",
    ));
    assert!(codes.contains("remoting-fault"), "{codes:?}");
    let mut files = Vec::new();
    rust_files(&repo("src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        codes.extend(quoted_after(&text, "with_code(\""));
    }
    assert!(codes.contains("shell-wrong-tenant"), "{codes:?}");
    codes
}

/// The codes in the first column of troubleshooting.md's `X-Exo-Authproxy-Error` table.
fn documented_codes() -> BTreeSet<String> {
    let text = read("docs/troubleshooting.md");
    let section = text
        .split("## `X-Exo-Authproxy-Error` codes")
        .nth(1)
        .expect("docs/troubleshooting.md has the `X-Exo-Authproxy-Error` codes section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or_default();
            quoted_after(first, "`")
                .into_iter()
                .filter(|c| !c.trim().is_empty() && !c.contains(' '))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_error_code_is_documented_and_every_documented_code_exists() {
    let emitted = emitted_codes();
    let documented = documented_codes();
    let missing: Vec<_> = emitted.difference(&documented).collect();
    let invented: Vec<_> = documented.difference(&emitted).collect();
    assert!(
        missing.is_empty(),
        "codes the proxy sends that docs/troubleshooting.md does not explain: {missing:?}"
    );
    assert!(
        invented.is_empty(),
        "codes in docs/troubleshooting.md that the proxy never sends: {invented:?}"
    );
}

#[test]
fn the_common_aadsts_codes_are_explained() {
    let text = read("docs/troubleshooting.md");
    for code in [
        "700016", "7000215", "700027", "7000112", "90002", "65001", "500011", "700024", "1000031",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("| {code}"))),
            "AADSTS{code} has no row in docs/troubleshooting.md"
        );
    }
}

/// Markdown link targets and `deploy/…`/`docs/…` mentions in README and docs/*.md exist, and
/// none points outside the repository.
#[test]
fn docs_point_only_to_files_that_exist_here() {
    let mut pages = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(repo("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    for required in [
        "docs/migration.md",
        "docs/onboarding.md",
        "docs/troubleshooting.md",
    ] {
        assert!(pages.iter().any(|p| p == required), "{required} exists");
    }
    for page in &pages {
        let text = read(page);
        assert!(
            !text.contains("../shared"),
            "{page} points outside the repository (../shared)"
        );
        let base = Path::new(page).parent().unwrap();
        for target in quoted_after(&text, "](") {
            let target = target.split(')').next().unwrap().split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            assert!(
                repo(base.join(target).to_str().unwrap()).exists(),
                "{page} links to {target}, which does not exist"
            );
        }
        for mention in quoted_after(&text, "`deploy/") {
            let file = mention.split([' ', '`']).next().unwrap();
            assert!(
                repo(&format!("deploy/{file}")).exists(),
                "{page} mentions deploy/{file}, which does not exist"
            );
        }
    }
}

/// README's "Running it as a service" section names only files that tests exercise.
#[test]
fn running_it_as_a_service_points_to_tested_files() {
    let readme = read("README.md");
    let section = readme
        .split("## Running it as a service")
        .nth(1)
        .expect("README has \"Running it as a service\"")
        .split("\n## ")
        .next()
        .unwrap();
    let tests = [
        read("tests/it/deploy.rs"),
        read("tests/it/docs.rs"),
        read("deploy/container-test.sh"),
        read(".ci/run"),
    ]
    .join("\n");
    let mut named = BTreeSet::new();
    for prefix in ["deploy/", "docs/"] {
        for mention in quoted_after(section, &format!("`{prefix}")) {
            named.insert(format!("{prefix}{}", mention.split('`').next().unwrap()));
        }
    }
    assert!(named.len() >= 6, "{named:?}");
    for file in &named {
        assert!(repo(file).exists(), "{file} does not exist");
        let stem = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert!(
            tests.contains(stem) || file == "deploy/windows-service.ps1",
            "README's service section names {file}, which no test exercises"
        );
    }
}
