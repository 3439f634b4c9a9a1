//! The dependency rule of docs/ARCHITECTURE.md holds: every `crate::` path in `src/` goes from a
//! module to one its line in the `dependencies` block allows, and that block has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Rules = BTreeMap<String, BTreeSet<String>>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ```` ```dependencies ```` block: `module -> a, b, c` per line.
fn rules(doc: &str) -> Rules {
    let block = doc
        .split("```dependencies\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/ARCHITECTURE.md has a ```dependencies block");
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (from, to) = line.split_once("->").expect("`module -> deps` lines");
            let deps = to
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect();
            (from.trim().to_string(), deps)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `src/run/plan.rs` → `run::plan`, `src/graph/mod.rs` → `graph`.
fn module_path(file: &Path) -> String {
    let rel = file.strip_prefix(root().join("src")).expect("under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The rule node a module path belongs to: the longest node name that is a prefix of it
/// (`graph::model` for `graph::model`, `graph` for `graph::client`).
fn node<'a>(rules: &'a Rules, module: &str) -> Option<&'a str> {
    rules
        .keys()
        .filter(|name| module == name.as_str() || module.starts_with(&format!("{name}::")))
        .max_by_key(|name| name.len())
        .map(String::as_str)
}

/// The `crate::a::b` (or `signin_export::a::b`) paths of a file's code, comments left out.
/// `super::x` inside a file is resolved against the file's own module path.
fn imports(file: &Path, text: &str) -> Vec<(usize, String)> {
    let module = module_path(file);
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for prefix in ["crate::", "signin_export::", "super::"] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                assert!(
                    prefix == "super::" || !rest.starts_with('{'),
                    "{}:{}: spell the module out (`{prefix}module::{{…}}`) so the dependency rule can read it",
                    file.display(),
                    number + 1
                );
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let path = path.trim_end_matches(':').to_string();
                let target = if prefix == "super::" {
                    // The parent of the file's module (a `mod.rs` file is its module).
                    let is_mod_file = file.file_name().is_some_and(|n| n == "mod.rs");
                    let mut parent: Vec<&str> = module.split("::").collect();
                    if !is_mod_file || parent.len() > 1 {
                        parent.pop();
                    }
                    if parent.is_empty() {
                        continue;
                    }
                    // `super::{a, b}` and `super::*` name items of the parent itself.
                    match path.as_str() {
                        "" | "*" => parent.join("::"),
                        _ => format!("{}::{path}", parent.join("::")),
                    }
                } else {
                    path
                };
                found.push((number + 1, target));
            }
        }
    }
    found
}

fn check(rules: &Rules) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in files {
        let module = module_path(&file);
        if module == "lib" {
            continue;
        }
        let from = node(rules, &module).unwrap_or_else(|| {
            panic!(
                "{module} ({}) has no line in the dependencies block of docs/ARCHITECTURE.md",
                file.display()
            )
        });
        let text = std::fs::read_to_string(&file).expect("read source");
        // Unit tests may reach anywhere (they are not part of the shipped layering).
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        for (line, target) in imports(&file, code) {
            let Some(to) = node(rules, &target) else {
                continue; // an item of lib.rs or an external path spelled like a module
            };
            if to == from || rules[from].contains(to) {
                continue;
            }
            violations.push(format!(
                "{}:{line}: {from} -> {to} (`{target}`) is not allowed",
                file.strip_prefix(root()).unwrap_or(&file).display()
            ));
        }
    }
    violations
}

/// Depth-first search for a cycle among the allowed edges.
fn cycle(rules: &Rules) -> Option<Vec<String>> {
    fn visit(
        rules: &Rules,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == at) {
            let mut found = path[start..].to_vec();
            found.push(at.to_string());
            return Some(found);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in rules.get(at).into_iter().flatten() {
            if let Some(found) = visit(rules, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    rules
        .keys()
        .find_map(|start| visit(rules, start, &mut Vec::new(), &mut done))
}

fn documented_rules() -> Rules {
    rules(&std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md"))
}

#[test]
fn every_module_imports_only_what_the_dependency_rule_allows() {
    let violations = check(&documented_rules());
    assert!(
        violations.is_empty(),
        "modules import from a layer the rule in docs/ARCHITECTURE.md does not allow \
         (move the shared thing lower instead):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_dependency_rule_is_acyclic_and_names_only_known_modules() {
    let rules = documented_rules();
    assert_eq!(cycle(&rules), None, "the dependency rule has a cycle");
    for deps in rules.values() {
        for dep in deps {
            assert!(rules.contains_key(dep), "{dep} has no line of its own");
        }
    }
}

#[test]
fn the_checker_catches_an_upward_import() {
    // Guards the guard: the real rules with one edge taken away must report that edge.
    let mut rules = documented_rules();
    rules
        .get_mut("state")
        .expect("state has a line")
        .remove("sink");
    let violations = check(&rules);
    assert!(
        violations.iter().any(|v| v.contains("state -> sink")),
        "{violations:?}"
    );
    let mut cyclic = documented_rules();
    cyclic
        .get_mut("credential")
        .expect("credential has a line")
        .insert("run".into());
    assert!(cycle(&cyclic).is_some());
}
