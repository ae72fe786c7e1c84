//! Every error a user can make gets one line, a non-zero exit, no panic, and
//! leaves nothing attached.
mod common;

use common::netns::{has_xdp, Netns};
use common::process::run;

fn one_line_error(out: &common::process::Finished, code: i32, needle: &str) {
    common::process::expect_error(out, code, needle);
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

/// Durations that do not fit a clock are refused before anything loads, in
/// every hook and for every flag that takes one; bare numbers are seconds.
#[test]
fn durations_that_do_not_fit_are_refused() {
    let hooks: [&[&str]; 3] = [
        &["xdp", "eth9"],
        &["sockfilter"],
        &["kprobe", "tcp_v4_connect"],
    ];
    for hook in hooks {
        for (flag, value, needle) in [
            ("--duration", "18446744073709551615s", "ten-year maximum"),
            ("--duration", "18446744073709551615", "ten-year maximum"),
            ("--interval", "18446744073709551615s", "ten-year maximum"),
            ("--duration", "-1s", "'-1s' is negative"),
            ("--interval", "-1", "'-1' is negative"),
            ("--interval", "0.001", "10ms minimum"),
        ] {
            let mut args = hook.to_vec();
            args.extend([flag, value]);
            let out = run(None, &args);
            one_line_error(&out, 2, needle);
        }
    }
    let out = run(None, &["xdp", "eth9", "--for", "99999999999d"]);
    one_line_error(&out, 2, "ten-year maximum");
}

#[test]
fn a_mistyped_flag_keeps_clap_layout() {
    let out = run(None, &["xdp", "eth9", "--dorp", "udp and dst port 9"]);
    assert_eq!(out.code, Some(2));
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[0], "error: unexpected argument '--dorp' found");
    assert!(
        lines.contains(&"  tip: a similar argument exists: '--drop'"),
        "{}",
        out.stderr
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Usage: netprobe xdp")),
        "{}",
        out.stderr
    );
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

#[test]
fn bad_rules_and_action_options() {
    common::require_root();
    let ns = Netns::new();
    ns.sh(&["ip", "link", "add", "br0", "type", "bridge"]);
    let dir = std::env::temp_dir().join(common::netns::unique("rules"));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_file = dir.join("bad.txt");
    std::fs::write(&bad_file, "tcp\n# fine\nudp and port\n").unwrap();
    let bad_file = bad_file.to_str().unwrap().to_string();
    let missing = dir.join("missing.txt").to_str().unwrap().to_string();
    for (args, code, needle) in [
        (
            vec!["--drop", "udp and dst prot 9"],
            2,
            "bad rule 'udp and dst prot 9': unknown host 'prot' at column 13",
        ),
        (
            vec!["--drop", "tcp and udp"],
            2,
            "bad rule 'tcp and udp': expression rejects all packets",
        ),
        (vec!["--drop", "net 10.1.2.3/8"], 2, "non-network bits set"),
        (
            vec!["--drop", "tcp or or udp"],
            2,
            "bad rule 'tcp or or udp': syntax error",
        ),
        (
            vec!["--drop", ""],
            2,
            "empty rule: it would match every packet",
        ),
        (vec!["--redirect", "br0", "--match", " "], 2, "empty rule"),
        (
            vec!["--rules-file", &bad_file],
            2,
            "bad.txt:3: bad rule 'udp and port': syntax error at column 9",
        ),
        (vec!["--rules-file", &missing], 1, "reading rules file"),
        (vec!["--match", "udp"], 2, "--redirect <IFACE2>"),
        (
            vec!["--redirect", "nosuch0"],
            1,
            "no interface named 'nosuch0'",
        ),
        (
            vec!["--reply", "icmp"],
            2,
            "br0 has no IPv4 or IPv6 address",
        ),
        (vec!["--reply", "tcp"], 2, "invalid value 'tcp'"),
        (vec!["--dry-run"], 2, "--dry-run needs drop rules"),
        (vec!["--top", "0"], 2, "--top <N>"),
        (vec!["--for", "0s"], 2, "longer than zero"),
    ] {
        let mut full = vec!["xdp", "br0", "--mode", "skb"];
        full.extend(args.iter().copied());
        let out = run(Some(&ns.name), &full);
        one_line_error(&out, code, needle);
        assert!(
            !has_xdp(&ns.name, "br0"),
            "{args:?} left a program attached"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
