//! Architecture checks over presenced's own sources, as rust-analyzer's
//! tidy tests do: they fail when a change breaks a rule that no compiler
//! checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules each module's non-test code names as `crate::x`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, root: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) {
        for entry in std::fs::read_dir(dir).expect("the sources are readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, graph);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).expect("under the root");
            let top = relative
                .components()
                .next()
                .and_then(|part| part.as_os_str().to_str())
                .unwrap_or_default()
                .trim_end_matches(".rs")
                .to_string();
            if matches!(top.as_str(), "lib" | "main" | "tidy") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let uses = graph.entry(top.clone()).or_default();
            for (index, _) in code.match_indices("crate::") {
                let name: String = code[index + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    uses.insert(name);
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    walk(&root, &root, &mut graph);
    graph
}

/// A path `from -> ... -> from`, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    while let Some(path) = stack.pop() {
        let last = path.last().expect("never empty");
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if !path.contains(next) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = module_graph();
    assert!(graph.contains_key("notify") && graph.contains_key("http"));
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            panic!("a module cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn only_the_binary_and_the_server_know_the_command_line() {
    let graph = module_graph();
    for (module, uses) in &graph {
        assert!(
            !uses.contains("cli"),
            "{module} imports cli; settings belong to the modules that use them"
        );
    }
}

#[test]
fn only_http_knows_the_error_envelope() {
    let graph = module_graph();
    for (module, uses) in &graph {
        // `fuzzing` drives the HTTP layer's parsers from outside, as the
        // server runs them.
        if !matches!(module.as_str(), "http" | "server" | "state" | "fuzzing") {
            assert!(
                !uses.contains("http"),
                "{module} imports http; it should answer in its own domain errors"
            );
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_through(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
