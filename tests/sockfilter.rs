//! `netprobe sockfilter`: the filter's decisions and return values through
//! BPF_PROG_TEST_RUN, and real captures between namespaces checked against
//! what was sent, tcpdump's reading of the pcap, and the kernel's counters.
mod common;

use std::fs;
use std::mem::MaybeUninit;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::frames::*;
use common::netns::{send_frames, Netns, Pair};
use common::process::{proto, run, Running};
use libbpf_rs::ProgramInput;
use netprobe::filter::capacity::Capacity;
use netprobe::filter::tables::RuleState;
use netprobe::filter::{self, Action, Compiled};
use netprobe::kernel::counters::{Counter, PROTOCOLS};
use netprobe::skel::sockfilter::SockfilterSkel;
use netprobe::sockfilter::{load, read_stats, rule_tables, LoadOptions};
use nix::sys::signal::Signal;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the filter on `frame` as an AF_PACKET socket would: BPF_PROG_TEST_RUN
/// pulls an Ethernet header first (as the stack does on receive, before
/// AF_PACKET pushes it back), so it gets one extra header to pull.
fn filter(skel: &SockfilterSkel<'_>, frame: &[u8]) -> u32 {
    let mut input = eth(0x0800, &[]);
    input.extend_from_slice(frame);
    skel.progs
        .sockfilter_netprobe
        .test_run(ProgramInput {
            data_in: Some(&input),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

fn with_rules(texts: &[&str], opts: LoadOptions, f: impl FnOnce(&SockfilterSkel<'_>)) {
    let rules: Vec<_> = texts
        .iter()
        .map(|t| filter::parse(t, Action::Capture).unwrap())
        .collect();
    let compiled = Compiled::compile(&rules).unwrap();
    let cap = Capacity {
        rules: 16,
        entries: 256,
        programs: 64,
        cells: 1 << 16,
        blocks: 256,
        addr_rows: 4096,
        row_fields: 0xf,
    };
    let mut storage = MaybeUninit::uninit();
    let skel = load(
        &mut storage,
        &LoadOptions {
            rules: (!rules.is_empty()).then_some(cap),
            ..opts
        },
    )
    .unwrap();
    if !rules.is_empty() {
        RuleState::new(cap)
            .install(&rule_tables(&skel), &rules, &compiled)
            .unwrap();
    }
    f(&skel);
}

#[test]
fn returns_the_snap_length_for_matches_and_zero_otherwise() {
    common::require_root();
    let (udp9, udp10, tcp9) = (udp4_frame(9, 40), udp4_frame(10, 40), tcp4_frame(9, 0));
    with_rules(&[], LoadOptions::default(), |s| {
        assert_eq!(filter(s, &udp9), u32::MAX, "no filter: the whole frame");
        assert_eq!(filter(s, &arp_frame()), u32::MAX);
    });
    with_rules(
        &[],
        LoadOptions {
            snaplen: 64,
            ..Default::default()
        },
        |s| {
            assert_eq!(filter(s, &udp9), 64);
        },
    );
    with_rules(
        &["udp and dst port 9", "icmp6"],
        LoadOptions {
            snaplen: 100,
            ..Default::default()
        },
        |s| {
            assert_eq!(filter(s, &udp9), 100);
            assert_eq!(filter(s, &icmp6_frame(8)), 100);
            assert_eq!(filter(s, &udp10), 0);
            assert_eq!(filter(s, &tcp9), 0);
            assert_eq!(filter(s, &arp_frame()), 0);
            let verdicts = read_stats(s).unwrap().verdicts();
            assert_eq!(
                verdicts[2],
                Counter::new(2, (udp9.len() + icmp6_frame(8).len()) as u64),
                "passed"
            );
            assert_eq!(verdicts[1].packets, 3, "filtered out");
        },
    );
    with_rules(
        &[],
        LoadOptions {
            counts_only: true,
            ..Default::default()
        },
        |s| {
            for f in [&udp9, &tcp9, &udp10] {
                assert_eq!(filter(s, f), 0, "--counts-only delivers nothing");
            }
            let p = read_stats(s).unwrap().protocols();
            assert_eq!(
                (p[0].packets, p[3].packets, p[4].packets),
                (3, 1, 2),
                "ipv4, tcp, udp still counted"
            );
        },
    );
}

#[test]
fn classifies_like_the_xdp_program() {
    common::require_root();
    let good = ipv4(
        IP4_A,
        IP4_B,
        PROTO_UDP,
        &udp(IP4_A.into(), IP4_B.into(), 1, 2, &[0; 20]),
    );
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (udp4_frame(9, 18), &["ipv4", "udp"]),
        (tcp6_frame(80, 10), &["ipv6", "tcp"]),
        (icmp4_frame(8), &["ipv4", "icmp"]),
        (icmp6_frame(8), &["ipv6", "icmpv6"]),
        (arp_frame(), &["arp"]),
        (
            eth_tagged(MAC_B, MAC_A, &[(ETH_VLAN, 3)], ETH_IPV4, &good),
            &["ipv4", "udp"],
        ),
        (eth(0x88cc, &[0; 46]), &["other"]),
        (eth(ETH_IPV4, &good[..good.len() - 4]), &["malformed"]),
        (
            eth(ETH_IPV6, &ipv6(IP6_A, IP6_B, PROTO_UDP, &[0; 4])),
            &["malformed"],
        ),
    ];
    with_rules(&[], LoadOptions::default(), |s| {
        for (frame, classes) in &cases {
            let before = read_stats(s).unwrap();
            filter(s, frame);
            let delta = read_stats(s).unwrap().since(&before).protocols();
            for (i, name) in PROTOCOLS.iter().enumerate() {
                let want = if classes.contains(name) {
                    Counter::new(1, frame.len() as u64)
                } else {
                    Counter::default()
                };
                assert_eq!(delta[i], want, "{name} for {classes:?}");
            }
        }
    });
}

/// (captured length, length on the wire) of every record in a pcap file.
fn pcap_records(bytes: &[u8]) -> Vec<(u32, u32)> {
    assert_eq!(&bytes[0..4], &[0x4d, 0x3c, 0xb2, 0xa1], "nanosecond pcap");
    let mut out = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let word = |o: usize| u32::from_le_bytes(bytes[at + o..at + o + 4].try_into().unwrap());
        let (incl, orig) = (word(8), word(12));
        out.push((incl, orig));
        at += 16 + incl as usize;
    }
    assert_eq!(at, bytes.len(), "records fill the file exactly");
    out
}

fn tcpdump_count(file: &str, filter: &[&str]) -> usize {
    let out = Command::new("tcpdump")
        .args(["-nr", file])
        .args(filter)
        .output()
        .expect("tcpdump");
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn mixed(n_matching: usize) -> Vec<(Vec<u8>, usize)> {
    vec![
        (udp4_frame(9, 58), n_matching),
        (udp4_frame(10, 58), 7),
        (tcp4_frame(9, 0), 6),
        (icmp6_frame(16), 5),
        (arp_frame(), 4),
    ]
}

fn seen(json: &Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {json}"))
}

#[test]
fn writes_exactly_the_matching_frames_to_pcap() {
    common::require_root();
    let net = Pair::quiet();
    let dir = std::env::temp_dir().join(common::netns::unique("cap"));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("out.pcap");
    let file = file.to_str().unwrap();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "sockfilter",
            "-i",
            &net.b_if,
            "--filter",
            "udp and dst port 9",
            "-s",
            "64",
            "-w",
            file,
            "--json",
            "--interval",
            "100ms",
        ],
    );
    send_frames(&net.a.name, &net.a_if, &mixed(25));
    np.json_until(TIMEOUT, |v| seen(v, "seen") >= 47);
    let (code, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(last["hook"], "sockfilter");
    assert_eq!(last["iface"], net.b_if.as_str());
    for (key, want) in [
        ("seen", 47),
        ("matched", 25),
        ("delivered", 25),
        ("socket_drops", 0),
        ("captured", 25),
    ] {
        assert_eq!(seen(&last, key), want, "{key}");
    }
    let frame_len = udp4_frame(9, 58).len() as u32;
    assert_eq!(proto(&last, "udp"), (32, 32 * u64::from(frame_len)));
    assert_eq!(proto(&last, "tcp").0, 6);
    assert_eq!(proto(&last, "icmpv6").0, 5);
    assert_eq!(proto(&last, "arp").0, 4);
    assert_eq!(last["rules"][0]["packets"], 25);

    let records = pcap_records(&fs::read(file).unwrap());
    assert_eq!(
        records,
        vec![(64, frame_len); 25],
        "snap length 64 of {frame_len}-byte frames"
    );
    assert_eq!(tcpdump_count(file, &[]), 25);
    assert_eq!(tcpdump_count(file, &["udp", "dst", "port", "9"]), 25);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prints_one_line_per_frame_and_stops_after_count() {
    common::require_root();
    let net = Pair::quiet();
    // Frames go out once netprobe says it is attached: a frame sent before
    // would be missed, and the run would wait for it.
    let np = Running::start(
        Some(&net.b.name),
        &[
            "sockfilter",
            "-i",
            &net.b_if,
            "--filter",
            "udp and dst port 9",
            "-c",
            "5",
        ],
    );
    send_frames(&net.a.name, &net.a_if, &mixed(8));
    let out = np.finish();
    assert_eq!(out.code, Some(0));
    let stdout = &out.stdout;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for line in &lines {
        assert!(
            line.contains(&format!(
                " {} In  udp 198.18.0.1.40000 > 198.18.0.2.9 length 100",
                net.b_if
            )),
            "{line}"
        );
    }
    // The summary goes to stderr, so stdout stays frames only.
    assert!(out.stderr.contains("5 captured"), "{}", out.stderr);
}

#[test]
fn pcap_to_stdout_feeds_tcpdump() {
    common::require_root();
    let net = Pair::quiet();
    let (pcap_in, pcap_out) = std::io::pipe().unwrap();
    let tcpdump = Command::new("tcpdump")
        .args(["-nr", "-"])
        .stdin(pcap_in)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Frames go out once netprobe says it is attached (see above).
    let np = Running::start_with_stdout(
        Some(&net.b.name),
        &[
            "sockfilter",
            "-i",
            &net.b_if,
            "--filter",
            "tcp",
            "-w",
            "-",
            "-c",
            "6",
        ],
        pcap_out.into(),
    );
    send_frames(&net.a.name, &net.a_if, &mixed(3));
    assert_eq!(np.finish().code, Some(0));
    let out = tcpdump.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("198.18.0.1.40000 > 198.18.0.2.9: Flags [S]")),
        "{text}"
    );
}

#[test]
fn counts_only_delivers_nothing_and_counts_everything() {
    common::require_root();
    let net = Pair::quiet();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "sockfilter",
            "-i",
            &net.b_if,
            "--counts-only",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    send_frames(&net.a.name, &net.a_if, &mixed(10));
    np.json_until(TIMEOUT, |v| seen(v, "seen") >= 32);
    let (_, last) = np.stop(Signal::SIGTERM);
    let last = last.unwrap();
    for (key, want) in [
        ("seen", 32),
        ("matched", 0),
        ("delivered", 0),
        ("captured", 0),
    ] {
        assert_eq!(seen(&last, key), want, "{key}");
    }
    assert_eq!(proto(&last, "udp").0, 17);
    assert_eq!(proto(&last, "ipv4").0, 23);
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    common::require_root();
    let ns = Netns::new();
    let dir = std::env::temp_dir().join(common::netns::unique("cap"));
    fs::create_dir_all(&dir).unwrap();
    let never = dir.join("never.pcap");
    let never = never.to_str().unwrap();
    for (args, code, needle) in [
        (
            vec!["--filter", "udp and dst prot 9", "-w", never],
            2,
            "at column 13",
        ),
        (vec!["--filter", "", "-w", never], 2, "empty rule"),
        (
            vec!["-i", "nosuch0", "-w", never],
            1,
            "no interface named 'nosuch0'",
        ),
        (
            vec!["-w", "/proc/netprobe.pcap"],
            1,
            "cannot write /proc/netprobe.pcap",
        ),
        (vec!["-w", dir.to_str().unwrap()], 1, "cannot write"),
        (vec!["--counts-only", "-w", never], 2, "cannot be used with"),
        (vec!["-c", "0"], 2, "'--count <N>': must be at least 1"),
    ] {
        let mut full = vec!["sockfilter"];
        full.extend(args.iter().copied());
        let out = run(Some(&ns.name), &full);
        common::process::expect_error(&out, code, needle);
    }
    assert!(
        !std::path::Path::new(never).exists(),
        "no file for a run that never started"
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// Sends `bytes` of 'A' over TCP from A (198.18.0.1) to B (198.18.0.2).
fn tcp_stream(net: &Pair, bytes: usize) {
    let in_ns = |ns: &str| {
        let file = fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    };
    let listener = {
        let ns = net.b.name.clone();
        std::thread::spawn(move || {
            in_ns(&ns);
            std::net::TcpListener::bind("198.18.0.2:5001").expect("listening on B")
        })
        .join()
        .unwrap()
    };
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accepting on B");
        std::io::copy(&mut conn, &mut std::io::sink()).expect("reading on B")
    });
    let ns = net.a.name.clone();
    std::thread::spawn(move || {
        in_ns(&ns);
        let mut conn = std::net::TcpStream::connect("198.18.0.2:5001").expect("connecting from A");
        std::io::Write::write_all(&mut conn, &vec![b'A'; bytes]).expect("sending from A");
    })
    .join()
    .unwrap();
    assert_eq!(receiver.join().unwrap(), bytes as u64);
}

/// A frame longer than the copy the rules read (a GSO or GRO buffer, up to
/// 64 KiB) is read as far as it goes, as tcpdump's filter reads it: a TCP
/// stream of 'A's over the veth pair reaches B in frames of more than
/// 20,000 bytes, and a test of their data 20,000 bytes into the TCP header
/// matches exactly the frames tcpdump's matches, in the socket filter and
/// in generic XDP (which sees the buffer whole).
#[test]
fn packet_data_past_the_copy_matches_as_tcpdump_matches_it() {
    common::require_root();
    let expr = "tcp and greater 20000 and tcp[20000:4] = 0x41414141";
    for hook in [
        &["sockfilter", "--filter", expr][..],
        &["xdp", "--mode", "skb", "--dry-run", "--drop", expr][..],
    ] {
        let net = Pair::addressed();
        let dir = common::TempDir::new("long");
        let mut args = vec![hook[0], "-i", &net.b_if];
        if hook[0] == "xdp" {
            args.pop();
            args.pop();
            args.push(&net.b_if);
        }
        args.extend(&hook[1..]);
        args.extend(["--json", "--interval", "100ms"]);
        let np = Running::start(Some(&net.b.name), &args);
        let tcpdump = Running::start_tool(
            &net.b.name,
            &[
                "tcpdump",
                "-Z",
                "root",
                "-n",
                "-i",
                &net.b_if,
                "-w",
                &dir.path("tcpdump.pcap"),
                expr,
            ],
            "listening on",
        );
        tcp_stream(&net, 4 << 20);
        std::thread::sleep(Duration::from_millis(400));
        let tcpdump = tcpdump.finish_after(Signal::SIGINT);
        // What its filter passed, whether or not its ring had room for it.
        let want: u64 = tcpdump
            .stderr
            .lines()
            .find_map(|l| l.strip_suffix(" packets received by filter"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("tcpdump's count: {}", tcpdump.stderr));
        let (code, last) = np.stop(Signal::SIGINT);
        assert_eq!(code, Some(0));
        assert!(
            want > 0,
            "no frame of more than 20,000 bytes reached B: {}",
            tcpdump.stderr
        );
        let last = last.unwrap();
        assert_eq!(last["rules"][0]["packets"], want, "{}: {last}", hook[0]);
    }
}

/// A filter larger than the kernel lets a socket have (net.core.optmem_max,
/// 20,480 bytes by default on Linux 6.1) is one line that names the setting.
#[test]
fn a_filter_over_the_socket_memory_limit_names_the_setting() {
    common::require_root();
    let ns = Netns::new();
    ns.sh(&["sysctl", "-q", "-w", "net.core.optmem_max=4096"]);
    ns.sh(&["ip", "link", "set", "lo", "up"]);
    let out = run(
        Some(&ns.name),
        &[
            "sockfilter",
            "-i",
            "lo",
            "--filter",
            "not tcp",
            "-w",
            "/dev/null",
        ],
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("at most net.core.optmem_max (4096 bytes) and this one is larger"),
        "{}",
        out.stderr
    );
}
