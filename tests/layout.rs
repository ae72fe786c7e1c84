//! The shape of the source tree: imports run down the layers, no two source
//! files import each other (directly or through others), README's map names
//! every file under `src/`, and no file is long without saying why. Needs no
//! root and no kernel.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What each top-level module may import from the crate. Hooks use the
/// shared layers and never each other (`check` reports what `kprobe` can
/// load, so it sits above the hooks); nothing below a hook knows a hook.
const HOOK: &[&str] = &[
    "capture", "cli", "console", "error", "filter", "kernel", "report", "session", "skel",
];
const LAYERS: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("console", &[]),
    ("capture", &["console"]),
    ("skel", &[]),
    ("kernel", &["skel"]),
    ("filter", &["console", "error", "kernel", "skel"]),
    ("report", &["console", "filter", "kernel"]),
    ("cli", &["error"]),
    (
        "session",
        &["capture", "cli", "console", "kernel", "report"],
    ),
    ("xdp", HOOK),
    ("sockfilter", HOOK),
    ("kprobe", HOOK),
    ("check", &["cli", "console", "error", "kernel", "kprobe"]),
];

/// Longest a source file may be without a reason at its top.
const MAX_LINES: usize = 600;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, relative to `src/`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(src_dir()).unwrap().to_path_buf());
        }
    }
}

/// A file's module path: `xdp/mod.rs` is `["xdp"]`, `xdp/program.rs` is
/// `["xdp", "program"]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source without comments and without a trailing `#[cfg(test)] mod
/// tests { ... }` (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` and `super::a` path in `code`, with `use` groups
/// (`use crate::a::{b, c::d}`) expanded, as absolute module paths.
fn referenced_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut flat = code.to_string();
    // Expand one level of braces after a path: `x::{a, b::c}` -> `x::a x::b::c`.
    while let Some(open) = flat.find("::{") {
        let start = flat[..open]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '$'))
            .map_or(0, |i| i + 1);
        let Some(close_rel) = flat[open..].find('}') else {
            break;
        };
        let close = open + close_rel;
        let prefix = flat[start..open].to_string();
        let items: Vec<String> = flat[open + 3..close]
            .split(',')
            .map(|i| i.split(" as ").next().unwrap_or("").trim().to_string())
            .filter(|i| !i.is_empty())
            .map(|i| {
                if i == "self" {
                    prefix.clone()
                } else {
                    format!("{prefix}::{i}")
                }
            })
            .collect();
        flat.replace_range(start..=close, &items.join(" "));
    }
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for token in flat.split(|c: char| !word(c)) {
        let segs: Vec<&str> = token.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segs.first() else { continue };
        let mut path: Vec<String> = match *first {
            "crate" => Vec::new(),
            "super" => {
                // `super` of a (a/mod.rs) is the crate; of a::b (a/b.rs), a.
                let mut base = module.to_vec();
                base.pop();
                base
            }
            _ => continue,
        };
        let mut rest = &segs[1..];
        while rest.first() == Some(&"super") {
            path.pop();
            rest = &rest[1..];
        }
        path.extend(rest.iter().map(|s| s.to_string()));
        out.push(path);
    }
    out
}

/// Which of our modules each module references.
struct Tree {
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn tree() -> Tree {
    let mut paths = Vec::new();
    rust_files(&src_dir(), &mut paths);
    let files: BTreeMap<Vec<String>, PathBuf> = paths
        .into_iter()
        .map(|p| (module_of(&p), p))
        .filter(|(m, _)| m != &["lib"] && m != &["main"])
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &files {
        let text = fs::read_to_string(src_dir().join(file)).unwrap();
        let mut targets = BTreeSet::new();
        for path in referenced_paths(module, &code_of(&text)) {
            // The longest prefix of the path that is a file of ours.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| files.contains_key(p));
            if let Some(t) = target.filter(|t| t != module) {
                targets.insert(t);
            }
        }
        edges.insert(module.clone(), targets);
    }
    Tree { edges }
}

#[test]
fn imports_follow_the_layers() {
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let tree = tree();
    let mut wrong = Vec::new();
    for (module, targets) in &tree.edges {
        let top = module[0].as_str();
        let allowed = layers
            .get(top)
            .unwrap_or_else(|| panic!("src/{top} is in no layer of tests/layout.rs"));
        for t in targets {
            let to = t[0].as_str();
            if to != top && !allowed.contains(&to) {
                wrong.push(format!("{} imports {}", module.join("::"), t.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycles() {
    let tree = tree();
    // Depth-first search; a back edge is a cycle.
    fn visit(
        m: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for t in &edges[m] {
            match state.get(t).copied().unwrap_or(0) {
                0 => visit(t, edges, state, stack, cycles),
                1 => {
                    let from = stack.iter().position(|s| s == t).unwrap();
                    let names: Vec<String> = stack[from..].iter().map(|s| s.join("::")).collect();
                    cycles.push(format!("{} -> {}", names.join(" -> "), t.join("::")));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for m in tree.edges.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            visit(m, &tree.edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    // The checker itself sees edges: xdp's program module uses the kernel layer.
    assert!(tree.edges[&vec!["xdp".to_string(), "program".to_string()]]
        .contains(&vec!["kernel".to_string(), "counters".to_string()]));
}

#[test]
fn readme_map_names_every_source_file() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("## How it is built")
        .expect("README has the map")..];
    let start = section.find("```\n").unwrap() + 4;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let mut named = BTreeSet::new();
    let mut dir = String::new();
    for line in block.lines() {
        let names = line.trim_start().split("  ").next().unwrap_or("");
        let indented = line.starts_with(' ');
        for name in names.split_whitespace() {
            let path = if indented {
                format!("{dir}{name}")
            } else {
                name.to_string()
            };
            if !indented && name.ends_with('/') {
                dir = name.to_string();
            }
            named.insert(path);
        }
    }
    let mut actual = Vec::new();
    rust_files(&src_dir(), &mut actual);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in &actual {
        let path = format!("src/{}", file.display());
        assert!(named.contains(&path), "README's map does not name {path}");
    }
    for path in named.iter().filter(|p| p.starts_with("src/")) {
        assert!(
            root.join(path).exists(),
            "README's map names {path}, which does not exist"
        );
    }
}

#[test]
fn long_files_say_why() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    for file in files {
        let text = fs::read_to_string(src_dir().join(&file)).unwrap();
        let lines = text.lines().count();
        let says_why = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .any(|l| l.contains("Long because"));
        assert!(
            lines <= MAX_LINES || says_why,
            "src/{} has {lines} lines (over {MAX_LINES}) and no \"Long because\" at its top",
            file.display()
        );
    }
}

#[test]
fn readme_lists_every_test_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    for entry in fs::read_dir(root.join("tests")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") {
            let path = format!("`tests/{name}`");
            assert!(readme.contains(&path), "README's test list lacks {path}");
        }
    }
}

/// `1.85` or `1.85.0` as (1, 85).
fn version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The `rust-version` line of a Cargo.toml, if it has one.
fn rust_version(manifest: &str) -> Option<(u32, u32)> {
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| version(v.trim_end_matches('"')))
}

/// Cargo.toml's `rust-version` is the oldest toolchain the locked
/// dependencies build with: the highest `rust-version` among them.
#[test]
fn the_declared_rust_version_is_what_the_locked_dependencies_need() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = rust_version(&fs::read_to_string(root.join("Cargo.toml")).unwrap())
        .expect("rust-version in Cargo.toml");
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let sources: Vec<PathBuf> = fs::read_dir(home.join("registry/src"))
        .map(|dirs| dirs.map(|d| d.unwrap().path()).collect())
        .unwrap_or_default();
    let lock = fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let mut needed = (0, 0);
    let mut read = 0;
    for package in lock.split("[[package]]").skip(1) {
        let field = |name: &str| {
            package
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let (Some(name), Some(ver), Some(_)) = (field("name"), field("version"), field("source"))
        else {
            continue;
        };
        // Packages for other platforms are never downloaded here.
        let Some(manifest) = sources
            .iter()
            .map(|s| s.join(format!("{name}-{ver}/Cargo.toml")))
            .find(|p| p.exists())
        else {
            continue;
        };
        read += 1;
        if let Some(v) = rust_version(&fs::read_to_string(manifest).unwrap()) {
            assert!(v <= ours, "{name} {ver} needs Rust {}.{}", v.0, v.1);
            needed = needed.max(v);
        }
    }
    assert!(
        read > 20,
        "only {read} locked packages found under {}",
        home.display()
    );
    assert_eq!(
        ours, needed,
        "rust-version should be the oldest that builds them all"
    );
}
