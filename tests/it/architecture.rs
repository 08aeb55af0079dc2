//! The module graph, checked: data flows one way (STYLE.md §1: listener → auth → forward →
//! {winrm, rest → bridge} → token), so the crate's top-level modules must form a DAG, and the
//! simulators must not borrow the logic they are there to check.
//!
//! The graph is read from the source: every `crate::<module>` path in code (comments and doc
//! links are skipped, since a doc link is not a dependency). Coarse by design: a path that
//! names a module counts as an edge whatever it imports, which is the point.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its code names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        let mut parts = rel.iter();
        let first = parts.next().expect("a path").to_string_lossy().into_owned();
        let top = match parts.next() {
            Some(_) => first,
            None => first.trim_end_matches(".rs").to_owned(),
        };
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let deps = graph.entry(top.clone()).or_default();
        for line in text.lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let code = code.split("//").next().unwrap_or("");
            for name in crate_paths(code) {
                if name != top {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// Module names after `crate::`, including inside `use crate::{a::x, b::y}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if item.trim().starts_with(&format!("{name}::")) || item.trim() == name {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::serve(...)`: a function of lib.rs, not a module.
            if rest[name.len()..].starts_with("::") {
                out.push(name);
            }
        }
    }
    out.retain(|n| !n.is_empty() && n.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("src is a directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// A cycle in `graph`, if any, as the list of modules on it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn top_level_modules_form_a_dag() {
    let graph = module_graph();
    assert!(graph.contains_key("listener") && graph.contains_key("token"));
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = graph
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k} -> {}",
                    v.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!(
            "module cycle: {}\n\nthe graph:\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::{forward::Route, errors, token::AccessToken};"),
        vec!["forward", "errors", "token"]
    );
    assert_eq!(
        crate_paths("crate::serve(x); crate::bridge::rest::X"),
        vec!["bridge"]
    );
}

#[test]
fn simulators_share_no_logic_with_what_they_check() {
    // `sandbox/{mod,world,running}.rs` assemble the real proxy between the simulators
    // (config, token engine, `crate::serve`); every other file of the sandbox is a simulator,
    // written from the references, and must not borrow the logic it is there to check.
    let assembly = ["mod.rs", "world.rs", "running.rs"];
    let checked = ["bridge", "forward", "listener", "token", "onboarding"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sandbox");
    let mut offenders = Vec::new();
    for file in rust_files(&src) {
        let name = file
            .strip_prefix(&src)
            .expect("under sandbox")
            .to_string_lossy()
            .into_owned();
        if assembly.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if crate_paths(code)
                .iter()
                .any(|d| checked.contains(&d.as_str()))
            {
                offenders.push(format!("src/sandbox/{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the simulators must be written from the references, not from the code they check:\n{}",
        offenders.join("\n")
    );
}
