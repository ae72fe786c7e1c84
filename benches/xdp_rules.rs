//! `make bench` for `netprobe xdp` rules: prints Markdown for BENCHMARKS.md.
//!
//! 1. BPF_PROG_TEST_RUN with 0, 1, 100 and 10,000 rules on matching and
//!    non-matching frames, beside the empty program and xdp-tools'
//!    `xdpfilt_dny_all.o`, in one run; and how long 10,000 rules take to load.
//! 2. Live drop through a veth: `netprobe xdp --drop` against a minimal
//!    drop-everything XDP program and the same rule in nftables' netdev
//!    ingress hook.
#[path = "../tests/common/mod.rs"]
mod common;

use std::env;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::frames::*;
use common::netns::Pair;
use common::process::{verdict, Running};
use common::traffic::{blast, ns_per_packet, with_program, TrafgenConf};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, ObjectBuilder, OpenObject};
use netprobe::filter::capacity::Capacity;
use netprobe::filter::tables::RuleState;
use netprobe::filter::{self, Action, Compiled, Rule};
use netprobe::skel::xdp::XdpSkel;
use netprobe::skel::xdp_drop::XdpDropSkelBuilder;
use netprobe::skel::xdp_pass::XdpPassSkelBuilder;
use netprobe::xdp::{load, rule_tables, LoadOptions};
use nix::sys::signal::Signal;

/// Each BPF_PROG_TEST_RUN call has a fixed cost (about 15 ms here): spread thin.
const REPEAT: u32 = 20_000_000;
const ROUNDS: usize = 5;
const LIVE_FRAMES: u64 = 1_000_000;
const LIVE_ROUNDS: usize = 5;
/// Rules in the mixed set.
const MIXED: u32 = 10_000;
/// The label's end for a small rule set matched through the tables, not
/// directly.
const THROUGH_TABLES: &str = "through the tables";
/// Rows whose frames go to an address beside listed hosts.
const BESIDE_HOSTS: &str =
    "frames from the last rule's network and from 198.18.0.1 to an address beside listed hosts";
/// Rows whose tables hold no block past the third byte: every IPv4 prefix
/// longer than /24 is in the hash, as before those blocks.
const HOSTS_HASHED: &str = "the hosts in the hash (no room for blocks by the fourth byte)";
const XDP_FILTER_OBJ: &str = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_dny_all.o";

/// Rule `i`: one /24 source network, UDP, one destination port.
fn rule_text(i: u32) -> String {
    format!(
        "src net 10.{}.{}.0/24 and udp and dst port 9",
        i / 256,
        i % 256
    )
}

/// Rules of clauses a rule set may hold at most (each holds its libpcap
/// program for frames cut short), and the rule they are made of.
const HELD: u32 = 500;
/// Rows whose frames are cut short run every held program: so many fewer
/// repeats that the row takes as long as the others.
const CUT_SHORT: &str = "frames cut short";
const CUT_REPEAT: u32 = REPEAT / 1000;
const HELD_RULE: &str = "`src net 10.<i/256>.<i%256>.0/24 and not tcp`";

fn held_rules() -> Vec<Rule> {
    parsed((0..HELD).map(|i| format!("src net 10.{}.{}.0/24 and not tcp", i / 256, i % 256)))
}

/// A host in the last of `held_rules()`' networks.
fn held_net_host() -> Ipv4Addr {
    Ipv4Addr::new(10, ((HELD - 1) / 256) as u8, ((HELD - 1) % 256) as u8, 5)
}

fn rule_set(n: u32) -> Vec<Rule> {
    parsed((0..n).map(rule_text))
}

fn parsed(texts: impl Iterator<Item = String>) -> Vec<Rule> {
    texts
        .map(|t| filter::parse(&t, Action::Drop).unwrap())
        .collect()
}

/// A block list of `n` rules: /32 hosts and /16 to /24 networks, IPv4
/// and IPv6, and ports; its last rule is `rule_text(0)`, which the
/// matching frame (from 10.0.0.5) hits.
fn block_list(n: u32) -> Vec<String> {
    let mut texts: Vec<String> = (1..n)
        .map(|i| {
            let (a, b, c) = (i >> 16 & 255, i >> 8 & 255, i & 255);
            match i % 10 {
                0..=3 => format!("src host 172.{}.{b}.{c}", 16 + a),
                4 => format!("src net 100.{b}.{c}.0/24"),
                5 => format!("src net 101.{b}.{}.0/20", c & 0xf0),
                6 => format!("src net {}.{b}.0.0/16", 102 + a),
                7 => format!("src net 2001:db8:{b:x}{c:02x}::/48"),
                8 => format!("src host 2001:db8::{:x}:{:x}", i >> 16, i & 0xffff),
                _ => format!("tcp and dst port {}", 1 + i % 60_000),
            }
        })
        .collect();
    texts.push(rule_text(0));
    texts
}

/// Rule `i` of the mixed set: three shapes in turn.
fn mixed_text(i: u32) -> String {
    match i % 3 {
        0 => rule_text(i),
        1 => format!("dst host {} and tcp", mixed_host(i)),
        _ => format!("udp and dst port {}", mixed_port(i)),
    }
}

fn mixed_host(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, (i / 256) as u8, (i % 256) as u8)
}

fn mixed_port(i: u32) -> u16 {
    10_000 + i as u16
}

/// The first `n` rules of the mixed set; with 10,000, the last is of the
/// first shape: the matching frame's network (10.39.15.0/24, rule 9,999).
fn mixed_rules(n: u32) -> Vec<Rule> {
    parsed((0..n).map(mixed_text))
}

/// xdp-filter as `xdp-filter load` deploys it, deny policy, on a veth of a
/// namespace of its own, holding the host and port entries of the mixed
/// set's first `n` rules (its other shape, a network, xdp-filter has no
/// entry for). Unloaded, with its pins, when dropped.
struct DeployedXdpFilter {
    net: Pair,
    prog: std::os::fd::OwnedFd,
    xdp_dir_existed: bool,
    /// Whether bpffs was mounted here for libxdp (a bare machine has none).
    mounted_bpffs: bool,
}

const BPFFS: &str = "/sys/fs/bpf";
const LIBXDP_PIN_DIR: &str = "/sys/fs/bpf/xdp";

/// Mounts bpffs where libxdp pins, unless it is there; whether it did.
fn mount_bpffs() -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("reading /proc/mounts");
    if mounts.lines().any(|l| l.split(' ').nth(1) == Some(BPFFS)) {
        return false;
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf", BPFFS])
        .status()
        .expect("running mount");
    assert!(status.success(), "mounting bpffs on {BPFFS}");
    true
}

impl DeployedXdpFilter {
    fn new(n: u32) -> DeployedXdpFilter {
        let net = Pair::quiet();
        let mounted_bpffs = mount_bpffs();
        let xdp_dir_existed = std::path::Path::new(LIBXDP_PIN_DIR).exists();
        let xdp_filter = |args: &[&str]| {
            let out = xdp_filter_in(&net, args);
            assert!(
                out.status.success(),
                "xdp-filter {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        xdp_filter(&["load", "-p", "deny", &net.a_if]);
        for i in 0..n {
            match i % 3 {
                1 => xdp_filter(&["ip", &mixed_host(i).to_string(), "-m", "dst"]),
                2 => xdp_filter(&["port", &mixed_port(i).to_string(), "-m", "dst", "-p", "udp"]),
                _ => {}
            }
        }
        let link = net.a.sh(&["ip", "-d", "-j", "link", "show", &net.a_if]);
        let link: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
        let id = link[0]["xdp"]["prog"]["id"]
            .as_u64()
            .expect("the XDP program xdp-filter attached");
        // SAFETY: a plain syscall wrapper; a negative result is an error.
        let fd = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_fd_by_id(id as u32) };
        assert!(fd >= 0, "opening program {id}");
        // SAFETY: a new descriptor that nothing else owns.
        let prog = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        DeployedXdpFilter {
            net,
            prog,
            xdp_dir_existed,
            mounted_bpffs,
        }
    }

    /// Nanoseconds per run of the attached program on `frame`, measured
    /// as `ns_per_packet` measures a loaded one.
    fn ns_per_packet(&self, frame: &[u8], repeat: u32) -> f64 {
        use std::os::fd::AsRawFd;
        let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            repeat: repeat as i32,
            ..Default::default()
        };
        let start = Instant::now();
        // SAFETY: opts points at `frame`, which outlives the call.
        let ret = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts)
        };
        assert_eq!(ret, 0, "BPF_PROG_TEST_RUN on xdp-filter's program");
        start.elapsed().as_nanos() as f64 / f64::from(repeat)
    }
}

/// Runs xdp-filter with `args` in namespace A of `net`. nsenter keeps the
/// host's /sys/fs/bpf, where xdp-filter pins its maps.
fn xdp_filter_in(net: &Pair, args: &[&str]) -> std::process::Output {
    std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.a.name))
        .arg("xdp-filter")
        .args(args)
        .output()
        .expect("running xdp-filter (package xdp-tools)")
}

impl Drop for DeployedXdpFilter {
    fn drop(&mut self) {
        xdp_filter_in(&self.net, &["unload", &self.net.a_if]);
        if !self.xdp_dir_existed {
            // libxdp's directory, if it made it and left it empty.
            let _ = std::fs::remove_dir(LIBXDP_PIN_DIR);
        }
        if self.mounted_bpffs {
            let _ = std::process::Command::new("umount").arg(BPFFS).status();
        }
    }
}

/// A UDP frame to port 9 over IPv6, from 2001:2::1.
fn udp6() -> Vec<u8> {
    udp6_from(IP6_A)
}

/// A UDP frame to port 9 over IPv6, from `src`.
fn udp6_from(src: Ipv6Addr) -> Vec<u8> {
    eth(
        ETH_IPV6,
        &ipv6(
            src,
            IP6_B,
            PROTO_UDP,
            &udp(src.into(), IP6_B.into(), 40000, 9, &[0x5a; 18]),
        ),
    )
}

fn udp_from(src: Ipv4Addr) -> Vec<u8> {
    udp_between(src, IP4_B)
}

/// A frame cut short: IPv4 from `src` with 40 bytes of options (74
/// bytes in all), protocol UDP but no room for its ports, which libpcap's
/// port tests would read.
fn udp_cut_from(src: Ipv4Addr) -> Vec<u8> {
    let mut f = udp_from(src);
    f.truncate(34);
    f[14] = 0x4f;
    f[16..18].copy_from_slice(&60u16.to_be_bytes());
    f.extend_from_slice(&[1; 40]);
    f
}

/// A 60-byte UDP frame from `src` to `dst`, port 9.
fn udp_between(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = eth(
        ETH_IPV4,
        &ipv4(
            src,
            dst,
            PROTO_UDP,
            &udp(src.into(), dst.into(), 40000, 9, &[0x5a; 18]),
        ),
    );
    f.resize(60, 0);
    f
}

fn test_run_section() {
    let mut pass_storage = MaybeUninit::uninit();
    let pass = XdpPassSkelBuilder::default()
        .open(&mut pass_storage)
        .and_then(|o| o.load())
        .unwrap();
    let mut xdp_filter = ObjectBuilder::default()
        .open_file(XDP_FILTER_OBJ)
        .expect("opening xdp-tools' xdpfilt_dny_all.o (package xdp-tools)");
    // The object pins its maps by name in /sys/fs/bpf: that would leave
    // them behind, and share them with a real xdp-filter. Keep them private.
    for map in xdp_filter.maps_mut() {
        // SAFETY: a valid map of an open object; NULL clears the pin path.
        let ret = unsafe {
            libbpf_rs::libbpf_sys::bpf_map__set_pin_path(
                map.as_libbpf_object().as_ptr(),
                std::ptr::null(),
            )
        };
        assert_eq!(ret, 0, "clearing the pin path of {:?}", map.name());
    }
    let xdp_filter = xdp_filter
        .load()
        .expect("loading xdp-tools' xdpfilt_dny_all.o");
    let filter_prog = xdp_filter
        .progs_mut()
        .find(|p| p.name() == "xdpfilt_dny_all")
        .expect("program xdpfilt_dny_all");

    let no_match = udp_from(IP4_A);
    let last_net_frame = |n: u32| {
        udp_from(Ipv4Addr::new(
            10,
            ((n - 1) / 256) as u8,
            ((n - 1) % 256) as u8,
            5,
        ))
    };
    // Every program is loaded (or deployed) first, and then each round runs
    // each of them once in turn: the machine's drift over the minutes the
    // section takes falls on every row alike.
    let deployed = DeployedXdpFilter::new(MIXED);
    // Its matching frame is one to a port it denies.
    let mut to_port = udp_from(IP4_A);
    to_port[36..38].copy_from_slice(&mixed_port(2).to_be_bytes());
    let counting = load(
        Box::leak(Box::new(MaybeUninit::uninit())),
        &LoadOptions::default(),
    )
    .unwrap();
    // Sets of at most 8 alternatives are compared directly; the rows
    // marked "through the tables" are the same sets as a larger one would
    // be matched (`Compiled::compile_tables_only`).
    // A frame to 172.16.0.2 is beside the mixed set's hosts (its /24 holds
    // them), one from 172.16.0.4 beside the block list's.
    let beside = mixed_host(2);
    let mut sets: Vec<(String, u32, Vec<Rule>, Vec<u8>)> = [1u32, 100, 10_000]
        .into_iter()
        .map(|n| {
            (
                "netprobe `--drop` (`xdp_np_rules`)".to_string(),
                n,
                rule_set(n),
                last_net_frame(n),
            )
        })
        .chain([
            (
                format!("netprobe `--drop` (`xdp_np_rules`), {THROUGH_TABLES}"),
                1,
                rule_set(1),
                last_net_frame(1),
            ),
            (
                "netprobe `--drop`, the three shapes of the mixed set, one rule each".to_string(),
                3,
                mixed_rules(3),
                last_net_frame(1),
            ),
            (
                format!(
                    "netprobe `--drop`, the three shapes of the mixed set, one rule each, \
                     {THROUGH_TABLES}"
                ),
                3,
                mixed_rules(3),
                last_net_frame(1),
            ),
            (
                "netprobe `--drop`, the mixed set: three shapes".to_string(),
                MIXED,
                mixed_rules(MIXED),
                last_net_frame(MIXED),
            ),
            (
                "netprobe `--drop`, the mixed set, then 16 rules with `not` (`src net \
                 10.<200+i>.0.0/16 and not tcp`): clauses in the tables"
                    .to_string(),
                MIXED + 16,
                parsed((0..MIXED).map(mixed_text).chain(
                    (0..16).map(|i| format!("src net 10.{}.0.0/16 and not tcp", 200 + i)),
                )),
                last_net_frame(MIXED),
            ),
            (
                "netprobe `--drop`, a block list (hosts, /16-/24 nets, IPv4 and IPv6, ports)"
                    .to_string(),
                100_000,
                parsed(block_list(100_000).into_iter()),
                last_net_frame(1),
            ),
            (
                "netprobe `--drop`, one IPv6 rule (`src net 2001:2::/32`), on an IPv6 frame from \
                 2001:2::1"
                    .to_string(),
                1,
                parsed(["src net 2001:2::/32".to_string()].into_iter()),
                udp6(),
            ),
            (
                "netprobe `--drop`, one IPv6 rule (`src net 2001:2::/64`), on an IPv6 frame from \
                 2001:2::1"
                    .to_string(),
                1,
                parsed(["src net 2001:2::/64".to_string()].into_iter()),
                udp6(),
            ),
            (
                "netprobe `--drop`, one IPv6 host (`src host 2001:2::1`), on an IPv6 frame from \
                 2001:2::1"
                    .to_string(),
                1,
                parsed(["src host 2001:2::1".to_string()].into_iter()),
                udp6(),
            ),
            (
                "netprobe `--drop`, one rule `not port 22` (both frames match it): clauses, compared \
                 directly"
                    .to_string(),
                1,
                parsed(["not port 22".to_string()].into_iter()),
                last_net_frame(1),
            ),
            (
                "netprobe `--drop`, one rule with `not` (`src net 10.0.0.0/8 and not tcp`): \
                 clauses, compared directly"
                    .to_string(),
                1,
                parsed(["src net 10.0.0.0/8 and not tcp".to_string()].into_iter()),
                last_net_frame(1),
            ),
            (
                "netprobe `--drop`, one libpcap program (`src net 10.0.0.0/8 and len >= 60`)"
                    .to_string(),
                1,
                parsed(["src net 10.0.0.0/8 and len >= 60".to_string()].into_iter()),
                last_net_frame(1),
            ),
        ])
        .collect();
    let mut frames: Vec<(Vec<u8>, Vec<u8>)> = sets
        .iter()
        .map(|(_, _, _, matching)| (matching.clone(), no_match.clone()))
        .collect();
    for (label, count, rules, matching, other) in [
        (
            format!("netprobe `--drop`, the mixed set, {BESIDE_HOSTS} (`{beside}`)"),
            MIXED,
            mixed_rules(MIXED),
            udp_between(Ipv4Addr::new(10, 39, 15, 5), beside),
            udp_between(IP4_A, beside),
        ),
        (
            format!(
                "netprobe `--drop`, the mixed set, {BESIDE_HOSTS} (`{beside}`), {HOSTS_HASHED}"
            ),
            MIXED,
            mixed_rules(MIXED),
            udp_between(Ipv4Addr::new(10, 39, 15, 5), beside),
            udp_between(IP4_A, beside),
        ),
        (
            format!(
                "netprobe `--drop`, {HELD} rules with `not` ({HELD_RULE}): clauses in the tables"
            ),
            HELD,
            held_rules(),
            udp_from(held_net_host()),
            udp_from(IP4_A),
        ),
        (
            format!(
                "netprobe `--drop`, {HELD} rules with `not` ({HELD_RULE}), {CUT_SHORT} (IPv4 \
                 with 40 bytes of options, no room for its UDP ports): every rule's libpcap program"
            ),
            HELD,
            held_rules(),
            udp_cut_from(held_net_host()),
            udp_cut_from(IP4_A),
        ),
        (
            "netprobe `--drop`, the block list, frames from a listed host (`172.16.0.1`) and \
             from beside it (`172.16.0.4`)"
                .to_string(),
            100_000,
            parsed(block_list(100_000).into_iter()),
            udp_from(Ipv4Addr::new(172, 16, 0, 1)),
            udp_from(Ipv4Addr::new(172, 16, 0, 4)),
        ),
        (
            "netprobe `--drop`, the block list, IPv6 frames from a listed /48 (`2001:db8:7::1`) \
             and from beside it (`2001:db8:ffff::1`)"
                .to_string(),
            100_000,
            parsed(block_list(100_000).into_iter()),
            udp6_from("2001:db8:7::1".parse().unwrap()),
            udp6_from("2001:db8:ffff::1".parse().unwrap()),
        ),
        (
            "netprobe `--drop`, 1,000 IPv6 hosts in one /64 (`src host 2001:db8::<i>`), frames \
             from the last (`2001:db8::3e8`) and from beside them (`2001:db8::ffff`): past /64, a \
             hash lookup"
                .to_string(),
            1000,
            parsed((1..=1000).map(|i| format!("src host 2001:db8::{i:x}"))),
            udp6_from("2001:db8::3e8".parse().unwrap()),
            udp6_from("2001:db8::ffff".parse().unwrap()),
        ),
    ] {
        frames.push((matching.clone(), other));
        sets.push((label, count, rules, matching));
    }
    let with_rules: Vec<(String, u32, XdpSkel<'static>)> = sets
        .into_iter()
        .map(|(label, count, rules, _)| {
            let compiled = if label.ends_with(THROUGH_TABLES) {
                Compiled::compile_tables_only(&rules)
            } else {
                Compiled::compile(&rules)
            }
            .unwrap();
            let mut cap = Capacity::for_rules(&rules, &compiled, false);
            if label.ends_with(HOSTS_HASHED) {
                // Room for the blocks by the third byte only.
                cap.blocks = compiled
                    .addr
                    .slots
                    .iter()
                    .filter(|(_, s)| s.block != 0)
                    .count() as u32;
            }
            let skel = load_with_rules(Box::leak(Box::new(MaybeUninit::uninit())), cap);
            RuleState::new(cap)
                .install(&rule_tables(&skel), &rules, &compiled)
                .unwrap();
            (label, count, skel)
        })
        .collect();
    type Run<'a> = Box<dyn Fn(&[u8]) -> f64 + 'a>;
    // A row: its program, its rule count, its matching and non-matching
    // frames, and how to run it.
    type Row<'a> = (String, String, (Vec<u8>, Vec<u8>), Run<'a>);
    let mut rows: Vec<Row<'_>> = vec![
        (
            "empty `return XDP_PASS`".into(),
            "-".into(),
            (last_net_frame(1), no_match.clone()),
            Box::new(|frame| ns_per_packet(&pass.progs.xdp_pass, frame, REPEAT)),
        ),
        (
            "xdp-tools `xdpfilt_dny_all.o`, maps empty".into(),
            "-".into(),
            (last_net_frame(1), no_match.clone()),
            Box::new(|frame| ns_per_packet(&filter_prog, frame, REPEAT)),
        ),
        (
            "xdp-filter as `xdp-filter load -p deny` deploys it, the mixed set's host and port \
             entries (`ip Y -m dst`, `port N -m dst -p udp`)"
                .into(),
            (MIXED * 2 / 3).to_string(),
            (to_port, no_match.clone()),
            Box::new(|frame| deployed.ns_per_packet(frame, REPEAT)),
        ),
        (
            "netprobe, counting only (`xdp_netprobe`)".into(),
            "0".into(),
            (last_net_frame(1), no_match.clone()),
            Box::new(|frame| ns_per_packet(netprobe::xdp::program(&counting), frame, REPEAT)),
        ),
        (
            "netprobe, counting only (`xdp_netprobe`), the IPv6 frame".into(),
            "0".into(),
            (udp6(), no_match.clone()),
            Box::new(|frame| ns_per_packet(netprobe::xdp::program(&counting), frame, REPEAT)),
        ),
    ];
    for ((label, count, skel), pair) in with_rules.iter().zip(frames) {
        let repeat = if label.contains(CUT_SHORT) {
            CUT_REPEAT
        } else {
            REPEAT
        };
        rows.push((
            label.clone(),
            count.to_string(),
            pair,
            Box::new(move |frame| ns_per_packet(netprobe::xdp::program(skel), frame, repeat)),
        ));
    }
    let mut times = vec![(Vec::new(), Vec::new()); rows.len()];
    for _ in 0..ROUNDS {
        for ((_, _, (matching, other), run), (m, n)) in rows.iter().zip(&mut times) {
            m.push(run(matching));
            n.push(run(other));
        }
    }
    println!("## XDP rules, BPF_PROG_TEST_RUN\n");
    println!(
        "ns/packet, the best of {ROUNDS} rounds of {REPEAT} repeats, one run: every program is \
loaded first, and each round runs each of them in turn on both frames. Rule i is \
`{}`; the matching frame comes from the last rule's network, the other from 198.18.0.1. \
The mixed set's rule i is, by i mod 3: that rule; `{}`; `{}`. \
xdp-tools' `xdpfilt_dny_all.o` runs with its maps empty, on the same frames; xdp-filter, as \
deployed, with the mixed set's host and port entries, its matching frame one to a port it denies \
(on this host libxdp loads it without its dispatcher: the kernel refuses the dispatcher's \
freplace programs, as it refuses fentry). A rule set of at most 8 alternatives or clauses \
is compared field by field, not looked up; \"through the tables\" is the same set \
matched as a larger one is, for the like-for-like comparison. The IPv6 rows' matching frame is \
UDP from 2001:2::1 to port 9, their non-matching one the IPv4 frame; compare them with counting \
only on the IPv6 frame. Rows that name their frames use those instead: an address beside listed \
hosts shares a /24 with them, where a /24 of hosts takes a block by the fourth byte, or, \
past the blocks the tables hold, a hash lookup. Rows of {CUT_SHORT} run {CUT_REPEAT} repeats.\n",
        rule_text(0).replace("10.0.0.0", "10.<i/256>.<i%256>.0"),
        mixed_text(1).replace("172.16.0.1", "172.16.<i/256>.<i%256>"),
        mixed_text(2).replace("10002", "<10000+i>"),
    );
    println!("| program | rules | matching frame ns/pkt | ratio to empty | non-matching frame ns/pkt | ratio to empty |");
    println!("|---|---:|---:|---:|---:|---:|");
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let base = (best(&times[0].0), best(&times[0].1));
    for ((name, count, _, _), (m, n)) in rows.iter().zip(&times) {
        let (m, n) = (best(m), best(n));
        println!(
            "| {name} | {count} | {m:.2} | {:.2}x | {n:.2} | {:.2}x |",
            m / base.0,
            n / base.1
        );
    }
    drop(rows);
    drop(deployed);

    // Load time: parse, compile, create the maps, load the program, write
    // the tables; and the kernel memory the maps take.
    println!();
    for (what, texts) in [
        (
            "10,000 rules (one shape)",
            (0..10_000).map(rule_text).collect::<Vec<_>>(),
        ),
        ("100,000 rules (the block list)", block_list(100_000)),
    ] {
        let text: String = texts.iter().map(|t| format!("{t}\n")).collect();
        let start = Instant::now();
        let rules = filter::parse_file("bench", &text, Action::Drop)
            .unwrap()
            .rules;
        let compiled = Compiled::compile(&rules).unwrap();
        let parsed = start.elapsed();
        let cap = Capacity::for_rules(&rules, &compiled, true);
        let mut storage = MaybeUninit::uninit();
        let skel = load_with_rules(&mut storage, cap);
        let loaded = start.elapsed();
        RuleState::new(cap)
            .install(&rule_tables(&skel), &rules, &compiled)
            .unwrap();
        let installed = start.elapsed();
        let memlock: u64 = skel.object().maps().map(|m| map_memlock(m.as_fd())).sum();
        println!(
            "{what} from text to in force (reloadable, room for twice as many): {:.0} ms (parse and \
compile {:.0} ms, load the program {:.0} ms, write {} table entries {:.0} ms); the maps take {:.1} MiB \
of kernel memory (memlock).",
            ms(installed),
            ms(parsed),
            ms(loaded - parsed),
            compiled.entries.len()
                + compiled.cells.len()
                + compiled.addr.long.len()
                + compiled.addr.slots.len()
                + compiled.port_classes.iter().filter(|c| **c != 0).count(),
            ms(installed - loaded),
            memlock as f64 / f64::from(1 << 20),
        );
    }
    println!("\nReproduce: `make bench` (section 1 of `benches/xdp_rules.rs`).\n");
}

/// The XDP program with rule tables of capacity `cap`, loaded.
fn load_with_rules(storage: &mut MaybeUninit<OpenObject>, cap: Capacity) -> XdpSkel<'_> {
    let opts = LoadOptions {
        rules: Some(cap),
        ..Default::default()
    };
    load(storage, &opts).unwrap()
}

/// The kernel memory a map is charged for (`memlock` in its fdinfo).
fn map_memlock(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    use std::os::fd::AsRawFd;
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn nft(net: &Pair, script: &str) {
    net.b.sh(&["nft", script]);
}

/// netprobe dropping `udp and dst port 9` on B while `LIVE_FRAMES` frames
/// go through: the rate, the frames it dropped, and its own run time per
/// packet if `cost` (BPF statistics, which add their own cost).
fn netprobe_drop(net: &Pair, conf: &TrafgenConf, cost: bool) -> (f64, u64, f64) {
    let mut args = vec![
        "xdp",
        &net.b_if,
        "--drop",
        "udp and dst port 9",
        "--json",
        "--interval",
        "1s",
    ];
    if cost {
        args.push("--cost");
    }
    let np = Running::start(Some(&net.b.name), &args);
    let rate = blast(net, conf, LIVE_FRAMES);
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.expect("netprobe's final line");
    let ns = last["cost_ns_per_packet"].as_f64().unwrap_or(f64::NAN);
    (rate, verdict(&last, "drop").0, ns)
}

/// nftables dropping the same on B's netdev ingress: the rate and the
/// frames its counter saw.
fn nft_drop(net: &Pair, conf: &TrafgenConf) -> (f64, u64) {
    nft(net, &format!(
        "add table netdev npbench; add chain netdev npbench in {{ type filter hook ingress device {} priority 0; }}; \
         add rule netdev npbench in udp dport 9 counter drop",
        net.b_if
    ));
    let rate = blast(net, conf, LIVE_FRAMES);
    let listing = String::from_utf8_lossy(
        &net.b
            .sh(&["nft", "list", "table", "netdev", "npbench"])
            .stdout,
    )
    .into_owned();
    nft(net, "delete table netdev npbench");
    let dropped = listing
        .split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (rate, dropped)
}

fn live_section() {
    let net = Pair::addressed();
    let conf = TrafgenConf::new(&udp_from(IP4_A));
    blast(&net, &conf, LIVE_FRAMES); // warm-up

    let mut drop_storage = MaybeUninit::uninit();
    let drop_all = XdpDropSkelBuilder::default()
        .open(&mut drop_storage)
        .and_then(|o| o.load())
        .unwrap();
    // Rounds of the three in turn, the best rate of each: the sender's
    // rate drifts by a third from one second to the next here.
    let (mut minimal, mut ours, mut nft_rate) = (0f64, 0f64, 0f64);
    let (mut dropped, mut nft_dropped) = (u64::MAX, u64::MAX);
    for _ in 0..LIVE_ROUNDS {
        let rate = with_program(&net, drop_all.progs.xdp_drop.as_fd(), || {
            blast(&net, &conf, LIVE_FRAMES)
        });
        minimal = minimal.max(rate);
        let (rate, n, _) = netprobe_drop(&net, &conf, false);
        ours = ours.max(rate);
        dropped = dropped.min(n);
        let (rate, n) = nft_drop(&net, &conf);
        nft_rate = nft_rate.max(rate);
        nft_dropped = nft_dropped.min(n);
    }
    let (_, _, cost) = netprobe_drop(&net, &conf, true);

    println!("## XDP drop, live traffic through a veth pair\n");
    println!(
        "{LIVE_FRAMES} UDP frames of 60 bytes to port 9 from one trafgen core in namespace A, dropped in namespace \
B; {LIVE_ROUNDS} rounds of the three droppers in turn, the best rate of each, one run. A single trafgen \
core bounds every figure here; on a veth, XDP has no edge over nftables' netdev hook because the veth \
must copy each AF_PACKET frame into XDP's headroom. The edge shows on real NIC drivers. \
\"frames dropped\" is the fewest of any round. A ratio above 1.00 says the sender's drift \
between rounds was larger than the difference between the programs.\n"
    );
    println!("| dropper on B | frames/s sent | ratio to minimal XDP drop | frames dropped |");
    println!("|---|---:|---:|---:|");
    println!("| minimal XDP program (`return XDP_DROP`, native) | {minimal:.0} | 1.000 | all (no counter) |");
    println!(
        "| `netprobe xdp --drop 'udp and dst port 9'` (native) | {ours:.0} | {:.3} | {dropped} |",
        ours / minimal
    );
    println!(
        "| nftables netdev ingress `udp dport 9 counter drop` | {nft_rate:.0} | {:.3} | {nft_dropped} |",
        nft_rate / minimal
    );
    println!("\nnetprobe's own run time per packet during that traffic, from one more run with `--cost` (kernel BPF statistics): {cost:.1} ns.\n");
    println!("Reproduce: `make bench` (section 2 of `benches/xdp_rules.rs`).\n");
}

fn main() {
    common::require_root();
    if env::args().any(|a| a == "--list") {
        return;
    }
    test_run_section();
    live_section();
}
