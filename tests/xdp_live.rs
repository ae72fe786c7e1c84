//! `netprobe xdp` on a veth pair between two namespaces: exact counts of real
//! frames, in native and skb mode, and nothing left attached after any exit.
mod common;

use std::time::{Duration, Instant};

use common::frames::*;
use common::netns::{has_xdp, send_frames, Pair};
use common::process::{proto, run, total_frames, verdict, Running};
use nix::sys::signal::Signal;

const TIMEOUT: Duration = Duration::from_secs(20);

/// One kind of frame, how many to send, and the classes it must count in.
struct Kind {
    frame: Vec<u8>,
    count: u64,
    classes: &'static [&'static str],
}

fn kind(frame: Vec<u8>, count: u64, classes: &'static [&'static str]) -> Kind {
    Kind {
        frame,
        count,
        classes,
    }
}

fn mixed_traffic() -> Vec<Kind> {
    let vlan_udp4 = eth_tagged(
        MAC_B,
        MAC_A,
        &[(ETH_VLAN, 7)],
        ETH_IPV4,
        &ipv4(
            IP4_A,
            IP4_B,
            PROTO_UDP,
            &udp(IP4_A.into(), IP4_B.into(), 1, 9, b"tagged"),
        ),
    );
    let cut_ipv4 = eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_UDP, &[0u8; 30])[..16]);
    vec![
        kind(udp4_frame(9, 18), 100, &["ipv4", "udp"]),
        kind(tcp4_frame(80, 0), 70, &["ipv4", "tcp"]),
        kind(icmp4_frame(56), 50, &["ipv4", "icmp"]),
        kind(udp6_frame(9, 100), 40, &["ipv6", "udp"]),
        kind(tcp6_frame(80, 10), 30, &["ipv6", "tcp"]),
        kind(icmp6_frame(32), 20, &["ipv6", "icmpv6"]),
        kind(arp_frame(), 10, &["arp"]),
        kind(vlan_udp4, 25, &["ipv4", "udp"]),
        kind(cut_ipv4, 15, &["malformed"]),
        kind(eth(0x88b5, &[1u8; 50]), 5, &["other"]),
    ]
}

fn exact_counts(mode: &str) {
    common::require_root();
    let net = Pair::quiet();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--mode",
            mode,
            "--json",
            "--interval",
            "100ms",
        ],
    );
    assert!(
        np.stderr_seen
            .iter()
            .any(|l| l.contains(&format!("in {mode} mode"))),
        "{:?}",
        np.stderr_seen
    );

    let kinds = mixed_traffic();
    let frames: Vec<(Vec<u8>, usize)> = kinds
        .iter()
        .map(|k| (k.frame.clone(), k.count as usize))
        .collect();
    send_frames(&net.a.name, &net.a_if, &frames);
    let sent: u64 = kinds.iter().map(|k| k.count).sum();
    np.json_until(TIMEOUT, |v| total_frames(v) >= sent);
    let (code, last) = np.stop(Signal::SIGINT);
    let last = last.expect("a final JSON line");

    assert_eq!(code, Some(0));
    assert_eq!(last["final"], true);
    assert_eq!(last["hook"], "xdp");
    assert_eq!(last["iface"], net.b_if.as_str());
    assert_eq!(last["mode"], mode);
    for class in netprobe::kernel::counters::PROTOCOLS {
        let want = kinds
            .iter()
            .filter(|k| k.classes.contains(&class))
            .fold((0, 0), |(p, b), k| {
                (p + k.count, b + k.count * k.frame.len() as u64)
            });
        assert_eq!(proto(&last, class), want, "{class} in {mode} mode");
    }
    let bytes: u64 = kinds.iter().map(|k| k.count * k.frame.len() as u64).sum();
    assert_eq!(verdict(&last, "pass"), (sent, bytes));
    for v in ["drop", "tx", "redirect", "aborted"] {
        assert_eq!(verdict(&last, v), (0, 0), "verdict {v}");
    }
    assert!(
        !has_xdp(&net.b.name, &net.b_if),
        "XDP program left on {}",
        net.b_if
    );
}

#[test]
fn counts_every_kind_exactly_in_native_mode() {
    exact_counts("native");
}

#[test]
fn counts_every_kind_exactly_in_skb_mode() {
    exact_counts("skb");
}

#[test]
fn counts_real_pings_exactly() {
    common::require_root();
    let net = Pair::addressed();
    let np = Running::start(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--json", "--interval", "100ms"],
    );
    net.a
        .sh(&["ping", "-c", "7", "-i", "0.05", "-q", "198.18.0.2"]);
    let (code, last) = np.stop(Signal::SIGTERM);
    let last = last.unwrap();
    assert_eq!(code, Some(0));
    // Seven echo requests of 98 bytes (14 + 20 + 8 + 56) reach B.
    assert_eq!(proto(&last, "icmp"), (7, 7 * 98));
    assert_eq!(proto(&last, "malformed").0, 0);
}

#[test]
fn refuses_a_second_program_and_replaces_on_request() {
    common::require_root();
    let net = Pair::quiet();
    let ns = net.b.name.as_str();
    let mut first = Running::start(
        Some(ns),
        &["xdp", &net.b_if, "--json", "--interval", "100ms"],
    );

    let refused = run(Some(ns), &["xdp", &net.b_if]);
    assert_eq!(refused.code, Some(1));
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("already has an XDP program"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("name 'xdp_netprobe' in native mode"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--replace"), "{}", refused.stderr);
    first.json_until(TIMEOUT, |v| v["final"] == false);

    let second = Running::start(
        Some(ns),
        &[
            "xdp",
            &net.b_if,
            "--replace",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    assert!(
        second
            .stderr_seen
            .iter()
            .any(|l| l.contains("detached XDP program")),
        "{:?}",
        second.stderr_seen
    );
    // The replaced netprobe notices, prints its summary and says why it stopped.
    let last = first.json_until(TIMEOUT, |v| v["final"] == true);
    assert_eq!(total_frames(&last), 0);
    first.wait_stderr("detached from");

    send_frames(&net.a.name, &net.a_if, &[(udp4_frame(9, 18), 33)]);
    let (code, last) = second.stop(Signal::SIGINT);
    assert_eq!(code, Some(0));
    assert_eq!(proto(&last.unwrap(), "udp").0, 33);
    assert!(!has_xdp(ns, &net.b_if));
}

#[test]
fn replaces_a_program_attached_through_netlink() {
    common::require_root();
    let net = Pair::quiet();
    let ns = net.b.name.as_str();
    // A program attached the old way (no bpf_link), as `ip link` does it.
    let dispatcher = "/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o";
    net.b.sh(&[
        "ip",
        "link",
        "set",
        "dev",
        &net.b_if,
        "xdpgeneric",
        "obj",
        dispatcher,
        "sec",
        "xdp",
    ]);
    let refused = run(Some(ns), &["xdp", &net.b_if, "--mode", "skb"]);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("name 'xdp_dispatcher' in skb mode"),
        "{}",
        refused.stderr
    );

    let np = Running::start(
        Some(ns),
        &["xdp", &net.b_if, "--mode", "skb", "--replace", "--json"],
    );
    assert!(
        np.stderr_seen
            .iter()
            .any(|l| l.contains("detached XDP program")),
        "{:?}",
        np.stderr_seen
    );
    send_frames(&net.a.name, &net.a_if, &[(arp_frame(), 12)]);
    let (code, last) = np.stop(Signal::SIGINT);
    assert_eq!(code, Some(0));
    assert_eq!(proto(&last.unwrap(), "arp").0, 12);
    assert!(
        !has_xdp(ns, &net.b_if),
        "the replaced program is not restored"
    );
}

fn leaves_nothing_after(sig: Signal) {
    common::require_root();
    let net = Pair::quiet();
    let np = Running::start(Some(&net.b.name), &["xdp", &net.b_if, "--json"]);
    assert!(has_xdp(&net.b.name, &net.b_if));
    let (code, last) = np.stop(sig);
    if sig == Signal::SIGKILL {
        assert_eq!(code, None, "killed by a signal");
    } else {
        assert_eq!(code, Some(0));
        assert_eq!(last.expect("final summary")["final"], true);
    }
    // The kernel releases the link when the process's fds close.
    let deadline = Instant::now() + Duration::from_secs(5);
    while has_xdp(&net.b.name, &net.b_if) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !has_xdp(&net.b.name, &net.b_if),
        "XDP program left after {sig}"
    );
}

#[test]
fn ctrl_c_detaches() {
    leaves_nothing_after(Signal::SIGINT);
}

#[test]
fn sigterm_detaches() {
    leaves_nothing_after(Signal::SIGTERM);
}

#[test]
fn kill_9_detaches() {
    leaves_nothing_after(Signal::SIGKILL);
}

#[test]
fn duration_ends_the_run_with_a_summary() {
    common::require_root();
    let net = Pair::quiet();
    let start = Instant::now();
    let out = run(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--duration",
            "700ms",
            "--interval",
            "200ms",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(start.elapsed() >= Duration::from_millis(700));
    // Not a terminal: tables are appended, the last one is the summary.
    assert!(out.stdout.contains("final summary"), "{}", out.stdout);
    assert!(out.stdout.contains("live"), "{}", out.stdout);
    assert!(
        out.stdout.lines().any(|l| l.starts_with("malformed")),
        "{}",
        out.stdout
    );
    assert!(!has_xdp(&net.b.name, &net.b_if));
}

#[test]
fn cost_reports_the_programs_own_run_time() {
    common::require_root();
    let net = Pair::quiet();
    let np = Running::start(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--json", "--cost", "--interval", "100ms"],
    );
    send_frames(&net.a.name, &net.a_if, &[(udp4_frame(9, 18), 200)]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(proto(&last, "udp").0, 200);
    let cost = last["cost_ns_per_packet"]
        .as_f64()
        .expect("cost_ns_per_packet is a number");
    assert!(cost > 0.0 && cost < 100_000.0, "cost {cost} ns");
}
