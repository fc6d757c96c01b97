//! The import graph among Portico's top-level modules, read from the sources: it has no cycle,
//! and the arrows run the way the README's "Architecture" section draws them (config imports
//! only the model; compile never imports the data plane; the data plane never imports compile).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names as `crate::X`, unit tests included
/// (which may also use the fixtures).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("main.rs") || path.ends_with("lib.rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let module = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            // A `tests.rs` file (compile's semantics tests) may also use the manifests parser.
            if path.file_name().is_some_and(|f| f == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Code only: no comment (doc links name modules too).
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let (main, tests) = code.split_once("#[cfg(test)]").unwrap_or((&code, ""));
            let names = g.entry(module.clone()).or_default();
            for (part, is_test) in [(main, false), (tests, true)] {
                for (i, _) in part.match_indices("crate::") {
                    let rest = &part[i + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    // Unit tests may build their input with the fixtures; any other arrow of
                    // theirs counts like the code's own (a test across layers goes to tests/).
                    let test_input = is_test && name == "fixture";
                    if !name.is_empty() && name != module && !test_input && rest[name.len()..].starts_with("::") {
                        names.insert(name);
                    }
                }
            }
        }
    }
    g
}

#[test]
fn the_import_graph_has_no_cycle() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == n) {
            panic!("import cycle: {} -> {n}", path[at..].join(" -> "));
        }
        path.push(n);
        for m in g.get(n).into_iter().flatten() {
            visit(m, g, path, done);
        }
        path.pop();
        done.insert(n);
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        visit(n, &g, &mut Vec::new(), &mut done);
    }
    assert!(g.len() >= 8, "modules found: {:?}", g.keys());
}

#[test]
fn the_arrows_run_as_the_design_says() {
    let g = graph();
    let imports = |m: &str| g.get(m).cloned().unwrap_or_default();
    assert_eq!(
        imports("config").into_iter().collect::<Vec<_>>(),
        ["model"],
        "config is plain data over the model"
    );
    for pure in ["compile", "config", "model"] {
        for dataplane in ["proxy", "balance", "source", "admin", "metrics"] {
            assert!(!imports(pure).contains(dataplane), "{pure} imports {dataplane}");
        }
    }
    for dataplane in ["proxy", "balance"] {
        for control in ["compile", "source"] {
            assert!(!imports(dataplane).contains(control), "{dataplane} imports {control}");
        }
    }
    assert!(!imports("balance").contains("proxy"), "balance imports proxy");
}
