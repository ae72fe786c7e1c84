//! README against the binary, so the two cannot drift apart: every flag of
//! every command is documented, the rule grammar is the one `--help` gives,
//! the table and JSON examples have the rows and keys a real run prints, and
//! the completion shells are the ones the binary takes.
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::netns::Pair;
use common::process::run;
use serde_json::Value;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

fn help(args: &[&str]) -> String {
    let out = run(None, args);
    assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
    out.stdout
}

/// The long flags a help text lists (`  -q, --quiet`, `      --json`).
fn flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split([' ', ',', '='])
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches("...").to_string())
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The first fenced block after `heading` in README.
fn block_after(readme: &str, heading: &str) -> String {
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &readme[at..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

#[test]
fn every_flag_is_documented() {
    let readme = readme();
    let mut missing = Vec::new();
    for command in [
        "xdp",
        "sockfilter",
        "kprobe",
        "list",
        "check",
        "completions",
    ] {
        for flag in flags(&help(&[command, "--help"])) {
            let mentioned = [
                format!("`{flag}"),
                format!("[{flag}"),
                format!("|{flag} "),
                format!(" {flag} "),
            ]
            .iter()
            .any(|form| readme.contains(form.as_str()));
            if !mentioned {
                missing.push(format!("netprobe {command} {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "README does not mention: {missing:?}");
}

#[test]
fn the_rule_grammar_is_the_one_help_gives() {
    let readme = block_after(&readme(), "### The rule language");
    let help = help(&["xdp", "--help"]);
    let help_lines: Vec<&str> = help.lines().map(str::trim).collect();
    for line in readme.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            help_lines.contains(&line),
            "README's grammar line {line:?} is not in netprobe xdp --help"
        );
    }
}

#[test]
fn the_completion_shells_are_the_ones_the_binary_takes() {
    let help = help(&["completions", "--help"]);
    let values = help
        .split("[possible values: ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("possible values in completions --help");
    let mut shells: Vec<&str> = values.split(", ").collect();
    shells.sort_unstable();
    let readme = readme();
    assert!(
        readme.contains(&format!("`netprobe completions {}`", shells.join("|"))),
        "README should say `netprobe completions {}`",
        shells.join("|")
    );
}

/// Keys of a JSON object and of the objects named in `nested`, as paths.
fn key_paths(v: &Value, nested: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, inner) in v.as_object().unwrap() {
        out.insert(k.clone());
        if nested.contains(&k.as_str()) {
            for k2 in inner.as_object().unwrap().keys() {
                out.insert(format!("{k}.{k2}"));
            }
        }
    }
    out
}

/// README's xdp table and JSON examples have exactly the rows and keys a
/// real run prints.
#[test]
fn the_examples_match_a_real_run() {
    common::require_root();
    let net = Pair::quiet();
    let readme = readme();

    let json_example = block_after(&readme, "### JSON");
    let example: Value = serde_json::from_str(json_example.trim()).unwrap();
    let out = run(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--json", "--duration", "0.3"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let real: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    let nested = ["protocols", "verdicts"];
    assert_eq!(
        key_paths(&example, &nested),
        key_paths(&real, &nested),
        "README's JSON example against a real line"
    );

    let table_example = block_after(&readme, "A real run (`make demo`");
    let out = run(Some(&net.b.name), &["xdp", &net.b_if, "--duration", "0.3"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let first_words = |text: &str| -> Vec<String> {
        text.lines()
            .skip(1) // the title names the interface and the time
            .filter(|l| !l.starts_with("program cost"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    assert_eq!(
        first_words(&table_example),
        first_words(&out.stdout),
        "README's table example against a real final summary"
    );
}
