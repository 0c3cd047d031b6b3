//! The layout rules of docs/ARCHITECTURE.md, checked on the source tree: the CLI never sees
//! burn and stays thin, no crate file grows past 600 lines, and no two files of a crate import
//! each other, directly or around a circle.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The code of a file without its `#[cfg(test)]` tail and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_cli_never_sees_burn_and_stays_thin() {
    let files = rust_files(&root().join("src"));
    let mut lines = 0;
    for f in &files {
        let c = code(f);
        assert!(!c.contains("burn::"), "{} uses burn", f.display());
        lines += std::fs::read_to_string(f).unwrap().lines().count();
    }
    assert!(lines < 1500, "src/ has {lines} lines");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|d| d.split("\n[").next())
        .unwrap();
    assert!(!deps.contains("burn"), "the CLI depends on burn");
}

#[test]
fn no_crate_file_is_over_600_lines() {
    for f in rust_files(&root().join("crates")) {
        let n = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(n <= 600, "{} has {n} lines", f.display());
    }
}

/// The module path of `file` below `src` (`lib.rs`/`mod.rs` name their folder).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// The file that holds module `parts`, if any.
fn file_of(src: &Path, parts: &[String]) -> Option<PathBuf> {
    if parts.is_empty() {
        return ["lib.rs", "main.rs"]
            .iter()
            .map(|n| src.join(n))
            .find(|p| p.exists());
    }
    let base = parts.iter().fold(src.to_path_buf(), |p, x| p.join(x));
    [base.with_extension("rs"), base.join("mod.rs")]
        .into_iter()
        .find(|p| p.exists())
}

/// Paths named by `use` items, with `{…}` groups expanded.
fn use_paths(code: &str) -> Vec<String> {
    fn expand(u: &str, out: &mut Vec<String>) {
        let Some(open) = u.find('{') else {
            out.push(u.to_string());
            return;
        };
        let (pre, inner) = (&u[..open], &u[open + 1..u.len() - 1]);
        let (mut depth, mut cur) = (0, String::new());
        for ch in inner.chars() {
            match ch {
                ',' if depth == 0 => {
                    expand(&format!("{pre}{cur}"), out);
                    cur.clear();
                    continue;
                }
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            cur.push(ch);
        }
        if !cur.is_empty() {
            expand(&format!("{pre}{cur}"), out);
        }
    }
    let mut out = Vec::new();
    for item in code.split("use ").skip(1) {
        let Some(end) = item.find(';') else { continue };
        let u: String = item[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if u.starts_with("crate::") || u.starts_with("super::") {
            expand(&u, &mut out);
        }
    }
    // Paths written out in code (`crate::a::b(…)`).
    for (i, _) in code.match_indices("crate::") {
        let rest: String = code[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(rest);
    }
    out
}

#[test]
fn no_import_circles_between_files() {
    let mut srcs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("src"))
        .collect();
    srcs.push(root().join("src"));
    for src in srcs {
        let files = rust_files(&src);
        let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for f in &files {
            let me = module_of(&src, f);
            let c = code(f);
            let edges = graph.entry(f.clone()).or_default();
            for u in use_paths(&c) {
                let mut segs: Vec<&str> = u.split("::").filter(|s| !s.is_empty()).collect();
                let mut base: Vec<String> = if segs.first() == Some(&"crate") {
                    segs.remove(0);
                    Vec::new()
                } else {
                    me.clone()
                };
                while segs.first() == Some(&"super") {
                    segs.remove(0);
                    base.pop();
                }
                let parts: Vec<String> = base
                    .into_iter()
                    .chain(segs.iter().map(|s| s.to_string()))
                    .filter(|s| s != "self" && s != "*")
                    .collect();
                // The longest prefix that is a module file; an item re-exported from lib.rs
                // (`crate::Name`) counts as lib.rs, which only lists modules.
                let target = (1..=parts.len())
                    .rev()
                    .find_map(|k| file_of(&src, &parts[..k]));
                if let Some(t) = target {
                    if &t != f {
                        edges.insert(t);
                    }
                }
            }
        }
        // Depth-first search for a back edge.
        fn visit(
            v: &PathBuf,
            g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
            state: &mut BTreeMap<PathBuf, u8>,
            stack: &mut Vec<PathBuf>,
        ) {
            state.insert(v.clone(), 1);
            stack.push(v.clone());
            for w in g.get(v).into_iter().flatten() {
                match state.get(w).copied().unwrap_or(0) {
                    1 => {
                        let i = stack.iter().position(|x| x == w).unwrap();
                        panic!("import circle: {:?}", &stack[i..]);
                    }
                    0 => visit(w, g, state, stack),
                    _ => {}
                }
            }
            stack.pop();
            state.insert(v.clone(), 2);
        }
        let mut state = BTreeMap::new();
        for v in graph.keys() {
            if !state.contains_key(v) {
                visit(v, &graph, &mut state, &mut Vec::new());
            }
        }
    }
}
