//! Each command runs with exactly the capabilities README names for it, as
//! an unprivileged user, and with any one of them missing it fails in one
//! line naming it, before anything is loaded.
mod common;

use common::netns::Netns;
use common::process::{run_as, Finished};

/// Runs netprobe in `ns` as nobody, holding exactly `caps` (setpriv's
/// `+bpf,+perfmon` form; empty for none).
fn run_with(ns: &Netns, caps: &[&str], args: &[&str]) -> Finished {
    let set = if caps.is_empty() {
        "-all".to_string()
    } else {
        format!("-all,{}", caps.join(","))
    };
    let inh = format!("--inh-caps={set}");
    let ambient = format!("--ambient-caps={set}");
    let bounding = format!("--bounding-set={set}");
    run_as(
        &ns.name,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &inh,
            &ambient,
            &bounding,
        ],
        args,
    )
}

/// setpriv's name of a capability: CAP_NET_ADMIN -> +net_admin.
fn setpriv_name(cap: &str) -> String {
    format!("+{}", cap.trim_start_matches("CAP_").to_lowercase())
}

fn exactly_and_each_removed(ns: &Netns, needed: &[&str], args: &[&str]) {
    let all: Vec<String> = needed.iter().map(|c| setpriv_name(c)).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = run_with(ns, &all, args);
    assert_eq!(out.code, Some(0), "{args:?} with {all:?}: {}", out.stderr);
    assert!(out.stdout.contains("\"final\":true"), "{}", out.stdout);
    for (i, cap) in needed.iter().enumerate() {
        let mut fewer = all.clone();
        fewer.remove(i);
        let out = run_with(ns, &fewer, args);
        assert_eq!(out.code, Some(1), "{args:?} without {cap}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
        assert!(
            out.stderr.contains("permission denied") && out.stderr.contains(cap),
            "{args:?} without {cap}: {}",
            out.stderr
        );
    }
}

#[test]
fn each_command_needs_exactly_its_capabilities() {
    common::require_root();
    let ns = Netns::new();
    ns.sh(&[
        "ip", "link", "add", "pv0", "type", "veth", "peer", "name", "pv1",
    ]);
    ns.sh(&["ip", "link", "set", "pv0", "up"]);
    ns.sh(&["ip", "link", "set", "pv1", "up"]);
    let quick = ["--duration", "0.3", "--json"];
    let with = |args: &[&'static str]| -> Vec<&'static str> {
        args.iter().chain(quick.iter()).copied().collect()
    };
    exactly_and_each_removed(
        &ns,
        &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"],
        &with(&["xdp", "pv0"]),
    );
    exactly_and_each_removed(
        &ns,
        &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"],
        &with(&["xdp", "pv0", "--drop", "udp", "--top", "3"]),
    );
    // --cost also needs CAP_SYS_ADMIN, which stands in for CAP_BPF and
    // CAP_PERFMON: its exact set is CAP_NET_ADMIN and CAP_SYS_ADMIN.
    exactly_and_each_removed(
        &ns,
        &["CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
        &with(&["xdp", "pv0", "--cost"]),
    );
    let out = run_with(
        &ns,
        &["+bpf", "+perfmon", "+net_admin"],
        &with(&["xdp", "pv0", "--cost"]),
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "netprobe xdp --cost needs CAP_NET_ADMIN and CAP_SYS_ADMIN, and this process lacks CAP_SYS_ADMIN;"
        ),
        "{}",
        out.stderr
    );
    exactly_and_each_removed(
        &ns,
        &["CAP_BPF", "CAP_PERFMON", "CAP_NET_RAW"],
        &with(&["sockfilter", "-i", "pv0", "--counts-only"]),
    );
    exactly_and_each_removed(
        &ns,
        &["CAP_BPF", "CAP_PERFMON", "CAP_NET_RAW"],
        &with(&[
            "sockfilter",
            "-i",
            "pv0",
            "--filter",
            "udp",
            "-w",
            "/dev/null",
        ]),
    );
    exactly_and_each_removed(
        &ns,
        &["CAP_BPF", "CAP_PERFMON"],
        &with(&["kprobe", "tcp_v4_connect"]),
    );
    // Replays attach nothing, and need what loading the program needs.
    let dir = common::TempDir::new("privileges");
    let capture = dir.path("one.pcap");
    let frame = common::frames::udp4_frame(9, 18);
    let mut w = netprobe::capture::write::CaptureWriter::new(
        std::fs::File::create(&capture).unwrap(),
        netprobe::capture::write::Format::Pcap,
        65535,
    )
    .unwrap();
    w.write(
        std::time::Duration::from_secs(1),
        frame.len() as u32,
        &frame,
    )
    .unwrap();
    w.flush().unwrap();
    exactly_and_each_removed(
        &ns,
        &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"],
        &["xdp", "--replay", &capture, "--json"],
    );
    exactly_and_each_removed(
        &ns,
        &["CAP_BPF", "CAP_PERFMON"],
        &["sockfilter", "--replay", &capture, "--json"],
    );
}

/// list and check need no capability at all.
#[test]
fn list_and_check_need_none() {
    common::require_root();
    let ns = Netns::new();
    for args in [&["list", "tcp_v4"][..], &["check", "--json"][..]] {
        let out = run_with(&ns, &[], args);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert!(!out.stdout.is_empty());
    }
}
