//! Every error a user can make gets one line, a non-zero exit, no panic, and
//! leaves nothing attached.
mod common;

use common::netns::{has_xdp, Netns};
use common::process::run;

fn one_line_error(out: &common::process::Finished, code: i32, needle: &str) {
    assert_eq!(out.code, Some(code), "exit code; stderr: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr.starts_with("netprobe: "), "{:?}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
}

#[test]
fn unknown_interface() {
    common::require_root();
    let ns = Netns::new();
    let out = run(Some(&ns.name), &["xdp", "nosuchif0"]);
    one_line_error(&out, 1, "no interface named 'nosuchif0'");
}

#[test]
fn invalid_interface_name() {
    let out = run(None, &["xdp", "a/b"]);
    one_line_error(&out, 1, "'a/b' is not a valid interface name");
}

#[test]
fn not_root() {
    common::require_root();
    let ns = Netns::new();
    // Changing uid away from 0 drops every capability.
    let out = common::process::run_as(
        &ns.name,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &["xdp", "lo"],
    );
    one_line_error(&out, 1, "permission denied");
    assert!(out.stderr.contains("CAP_BPF"), "{}", out.stderr);
}

#[test]
fn native_mode_on_a_driver_without_it() {
    common::require_root();
    let ns = Netns::new();
    ns.sh(&["ip", "link", "add", "br0", "type", "bridge"]);
    ns.sh(&["ip", "link", "set", "br0", "up"]);
    let out = run(Some(&ns.name), &["xdp", "br0", "--mode", "native"]);
    one_line_error(&out, 1, "br0 does not support native XDP");
    assert!(!has_xdp(&ns.name, "br0"));

    // auto falls back to skb and says so.
    let out = run(
        Some(&ns.name),
        &[
            "xdp",
            "br0",
            "--mode",
            "auto",
            "--duration",
            "300ms",
            "--json",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("lacks native XDP on br0; using skb mode"),
        "{}",
        out.stderr
    );
    let last: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["mode"], "skb");
    assert!(!has_xdp(&ns.name, "br0"));
}

#[test]
fn bad_flag_values() {
    for (args, needle) in [
        (
            &["xdp", "eth9", "--mode", "fast"][..],
            "invalid value 'fast' for '--mode <MODE>'",
        ),
        (
            &["xdp", "eth9", "--interval", "0s"][..],
            "must be longer than zero",
        ),
        (&["xdp", "eth9", "--interval", "5ms"][..], "10ms minimum"),
        (
            &["xdp", "eth9", "--duration", "soon"][..],
            "'soon' is not a duration",
        ),
        (
            &["xdp", "eth9", "--bogus"][..],
            "unexpected argument '--bogus'",
        ),
        (&["xdp"][..], "required arguments were not provided"),
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
    ] {
        let out = run(None, args);
        one_line_error(&out, 2, needle);
    }
}

#[test]
fn help_teaches() {
    let out = run(None, &["xdp", "--help"]);
    assert_eq!(out.code, Some(0));
    for needle in [
        "--mode",
        "native",
        "--replace",
        "--cost",
        "--json",
        "--duration",
        "malformed",
        "Examples",
    ] {
        assert!(out.stdout.contains(needle), "{needle} missing from --help");
    }
}
