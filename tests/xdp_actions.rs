//! `netprobe xdp` acting on real traffic between namespaces: drop rules,
//! dry run, echo replies, redirect to a third namespace, SIGHUP reloads,
//! 10,000 rules, --for and --top.
mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::frames::*;
use common::netns::{has_xdp, link_veth, send_frames, Netns, Pair};
use common::process::{proto, run, verdict, Running};
use nix::sys::signal::Signal;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(20);

fn rule_hits(json: &Value, rule: &str) -> (u64, u64) {
    let r = json["rules"]
        .as_array()
        .expect("rules in JSON")
        .iter()
        .find(|r| r["rule"] == rule)
        .unwrap_or_else(|| panic!("rule {rule:?} not in {}", json["rules"]));
    (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())
}

fn total_udp(json: &Value) -> u64 {
    proto(json, "udp").0
}

/// N frames to UDP port 9 and M to port 10, then wait until netprobe saw all.
fn send_udp_9_and_10(net: &Pair, np: &mut Running, n: usize, m: usize) -> (Vec<u8>, Vec<u8>) {
    let (nine, ten) = (udp4_frame(9, 18), udp4_frame(10, 18));
    send_frames(
        &net.a.name,
        &net.a_if,
        &[(nine.clone(), n), (ten.clone(), m)],
    );
    let want = (n + m) as u64;
    np.json_until(TIMEOUT, |v| total_udp(v) >= want);
    (nine, ten)
}

#[test]
fn drop_rule_drops_exactly_the_matching_packets() {
    common::require_root();
    for mode in ["native", "skb"] {
        let net = Pair::addressed();
        let before = net.b.udp_counters();
        let mut np = Running::start(
            Some(&net.b.name),
            &[
                "xdp",
                &net.b_if,
                "--mode",
                mode,
                "--drop",
                "udp and dst port 9",
                "--json",
                "--interval",
                "100ms",
            ],
        );
        let (nine, _) = send_udp_9_and_10(&net, &mut np, 50, 30);
        let (code, last) = np.stop(Signal::SIGINT);
        let last = last.unwrap();
        assert_eq!(code, Some(0));
        assert_eq!(
            rule_hits(&last, "udp and dst port 9"),
            (50, 50 * nine.len() as u64),
            "{mode}"
        );
        assert_eq!(verdict(&last, "drop").0, 50, "{mode}");
        assert_eq!(verdict(&last, "pass").0, 30, "{mode}");
        assert_eq!(last["rules"][0]["action"], "drop");
        // The stack on B saw only the 30 packets to port 10 (no listener there).
        let after = net.b.udp_counters();
        assert_eq!(after.1 - before.1, 30, "{mode}: NoPorts on B");
        assert_eq!(after.0, before.0, "{mode}: InDatagrams on B");
    }
}

#[test]
fn dry_run_drops_nothing_and_counts_what_it_would() {
    common::require_root();
    let net = Pair::addressed();
    let before = net.b.udp_counters();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--drop",
            "udp and dst port 9",
            "--dry-run",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    assert!(
        np.stderr_seen.iter().any(|l| l.contains("dry run")),
        "{:?}",
        np.stderr_seen
    );
    send_udp_9_and_10(&net, &mut np, 40, 25);
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(verdict(&last, "would_drop").0, 40);
    assert_eq!(verdict(&last, "drop").0, 0);
    assert_eq!(verdict(&last, "pass").0, 25);
    assert_eq!(rule_hits(&last, "udp and dst port 9").0, 40);
    assert_eq!(last["rules"][0]["action"], "would_drop", "it only counted");
    assert_eq!(
        net.b.udp_counters().1 - before.1,
        65,
        "every packet reached B's stack"
    );
}

/// Pings B from A with B's own echo replies off: every reply comes from XDP.
fn ping_answered(mode: &str, peer_program: bool) {
    let net = Pair::addressed();
    net.b
        .sh(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"]);
    let np = Running::start(
        Some(&net.b.name),
        &[
            "xdp", &net.b_if, "--mode", mode, "--reply", "icmp", "--json",
        ],
    );
    // Native mode on a veth says at start where the replies go.
    let warned = np
        .stderr_seen
        .iter()
        .any(|l| l.contains("is a veth in native mode: the echo replies go to its peer"));
    assert_eq!(warned, mode == "native", "{mode}: {:?}", np.stderr_seen);
    // A veth delivers frames sent back in native mode only to a peer that
    // has an XDP program itself; a second netprobe there counts the replies.
    let peer =
        peer_program.then(|| Running::start(Some(&net.a.name), &["xdp", &net.a_if, "--json"]));
    let out = net
        .a
        .sh(&["ping", "-c", "5", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 received"),
        "{mode}"
    );
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(
        verdict(&last, "tx"),
        (5, 5 * 98),
        "{mode}: five echo requests answered"
    );
    if let Some(peer) = peer {
        let (_, peer_last) = peer.stop(Signal::SIGINT);
        assert_eq!(
            proto(&peer_last.unwrap(), "icmp"),
            (5, 5 * 98),
            "{mode}: replies at A"
        );
    }
}

#[test]
fn ping_is_answered_from_xdp() {
    common::require_root();
    ping_answered("skb", false);
    ping_answered("native", true);
}

#[test]
fn redirect_delivers_to_a_third_namespace() {
    common::require_root();
    // A --- B ==redirect==> C
    let net = Pair::addressed();
    let c = Netns::new();
    let (b_out, c_in) = (common::netns::unique("vo"), common::netns::unique("vc"));
    link_veth(&net.b, &b_out, &c, &c_in);
    net.b.quiet(&b_out);
    c.quiet(&c_in);
    let mut at_c = Running::start(
        Some(&c.name),
        &["xdp", &c_in, "--json", "--interval", "100ms"],
    );
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--redirect",
            &b_out,
            "--match",
            "udp and dst port 9",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    send_udp_9_and_10(&net, &mut np, 60, 20);
    at_c.json_until(TIMEOUT, |v| total_udp(v) >= 60);
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(verdict(&last, "redirect").0, 60);
    assert_eq!(verdict(&last, "pass").0, 20);
    assert_eq!(rule_hits(&last, "udp and dst port 9").0, 60);
    assert_eq!(last["rules"][0]["action"], "redirect");
    thread::sleep(Duration::from_millis(200));
    let (_, at_c_last) = at_c.stop(Signal::SIGINT);
    let at_c_last = at_c_last.unwrap();
    assert_eq!(
        proto(&at_c_last, "udp"),
        (60, 60 * udp4_frame(9, 18).len() as u64),
        "exactly the redirected packets reach C"
    );
}

#[test]
fn sighup_swaps_the_rule_set() {
    common::require_root();
    let net = Pair::addressed();
    let dir = std::env::temp_dir().join(common::netns::unique("rules"));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.txt");
    fs::write(&file, "# block discard\nudp and dst port 9\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--rules-file",
            file_arg,
            "--json",
            "--interval",
            "100ms",
        ],
    );
    send_udp_9_and_10(&net, &mut np, 20, 10);
    let v = np.json_until(TIMEOUT, |v| verdict(v, "drop").0 == 20);
    assert_eq!(rule_hits(&v, "udp and dst port 9").0, 20);

    fs::write(&file, "udp and dst port 10\n").unwrap();
    np.signal(Signal::SIGHUP);
    np.wait_stderr("SIGHUP: 1 rule in force");
    send_frames(
        &net.a.name,
        &net.a_if,
        &[(udp4_frame(9, 18), 15), (udp4_frame(10, 18), 25)],
    );
    let v = np.json_until(TIMEOUT, |v| total_udp(v) >= 70);
    assert_eq!(
        rule_hits(&v, "udp and dst port 10").0,
        25,
        "the new rule counts from zero"
    );
    assert!(
        v["rules"].as_array().unwrap().len() == 1,
        "the old rule is gone: {}",
        v["rules"]
    );
    assert_eq!(verdict(&v, "drop").0, 45);

    // A broken file keeps the rules in force.
    fs::write(&file, "udp and dst prot 10\n").unwrap();
    np.signal(Signal::SIGHUP);
    let line = np.wait_stderr("SIGHUP:");
    assert!(
        line.contains("column 13") && line.contains("previous rules stay in force"),
        "{line}"
    );
    send_frames(&net.a.name, &net.a_if, &[(udp4_frame(10, 18), 5)]);
    let v = np.json_until(TIMEOUT, |v| total_udp(v) >= 75);
    assert_eq!(rule_hits(&v, "udp and dst port 10").0, 30);
    let (code, _) = np.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ten_thousand_rules_load_and_match() {
    common::require_root();
    let net = Pair::addressed();
    let dir = std::env::temp_dir().join(common::netns::unique("rules"));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.txt");
    let mut text = String::new();
    for i in 0..10_000u32 {
        text += &format!(
            "src net 10.{}.{}.0/24 and udp and dst port {}\n",
            i / 256,
            i % 256,
            1000 + i % 50
        );
    }
    // The last rule matches A's frames to port 9.
    text += "src host 198.18.0.1 and udp and dst port 9\n";
    fs::write(&file, text).unwrap();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--rules-file",
            file.to_str().unwrap(),
            "--json",
            "--interval",
            "200ms",
        ],
    );
    assert!(
        np.stderr_seen
            .iter()
            .any(|l| l.contains("with 10001 rules")),
        "{:?}",
        np.stderr_seen
    );
    send_udp_9_and_10(&net, &mut np, 30, 10);
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(last["rules"].as_array().unwrap().len(), 10_001);
    assert_eq!(
        rule_hits(&last, "src host 198.18.0.1 and udp and dst port 9").0,
        30
    );
    assert_eq!(verdict(&last, "drop").0, 30);
    assert_eq!(verdict(&last, "pass").0, 10);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn for_detaches_by_itself() {
    common::require_root();
    let net = Pair::quiet();
    let start = Instant::now();
    let out = run(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--drop", "udp", "--for", "1s", "--json"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(out.stderr.contains("after --for 1s"), "{}", out.stderr);
    assert!(out
        .stdout
        .lines()
        .last()
        .unwrap()
        .contains("\"final\":true"));
    assert!(!has_xdp(&net.b.name, &net.b_if));
}

#[test]
fn for_detaches_even_when_nobody_reads_the_output() {
    common::require_root();
    let net = Pair::quiet();
    // stdout is a pipe nobody reads: after 64 KiB of JSON the main loop
    // blocks on write, and only the watchdog can detach.
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.b.name,
            common::process::BIN,
            "xdp",
            &net.b_if,
            "--drop",
            "udp",
        ])
        .args(["--for", "1500ms", "--json", "--interval", "10ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_xdp(&net.b.name, &net.b_if) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(3000));
    assert!(
        child.try_wait().unwrap().is_none(),
        "netprobe should still be blocked on its output"
    );
    assert!(
        !has_xdp(&net.b.name, &net.b_if),
        "the watchdog detached the program"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn top_ranks_sources_by_packets() {
    common::require_root();
    let net = Pair::quiet();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--top",
            "2",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    let from = |last: u8| {
        let src = std::net::Ipv4Addr::new(198, 18, 1, last);
        eth(
            ETH_IPV4,
            &ipv4(
                src,
                IP4_B,
                PROTO_UDP,
                &udp(src.into(), IP4_B.into(), 1, 9, b""),
            ),
        )
    };
    send_frames(
        &net.a.name,
        &net.a_if,
        &[(from(1), 5), (from(2), 30), (from(3), 12)],
    );
    let v = np.json_until(TIMEOUT, |v| total_udp(v) >= 47);
    let top = v["top_sources"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(
        (
            top[0]["addr"].as_str().unwrap(),
            top[0]["packets"].as_u64().unwrap()
        ),
        ("198.18.1.2", 30)
    );
    assert_eq!(
        (
            top[1]["addr"].as_str().unwrap(),
            top[1]["packets"].as_u64().unwrap()
        ),
        ("198.18.1.3", 12)
    );
    assert_eq!(top[0]["bytes"].as_u64().unwrap(), 30 * from(2).len() as u64);
}
