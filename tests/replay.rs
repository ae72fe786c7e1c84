//! `--replay FILE`: the hook programs over captures. A live run and a replay
//! of what it saw give the same numbers; every frame class replays as a
//! single BPF_PROG_TEST_RUN classifies it; pcapng with several interfaces,
//! nanosecond time stamps and comments is read; frames split by verdict;
//! every bad capture is one line.
mod common;

use std::borrow::Cow;
use std::fs::{self, File};
use std::mem::MaybeUninit;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::frames::*;
use common::netns::{send_frames, Netns, Pair};
use common::process::{run, verdict, Running, BIN};
use common::TempDir;
use libbpf_rs::ProgramInput;
use netprobe::capture::read::CaptureReader;
use netprobe::capture::write::{CaptureWriter, Format};
use netprobe::kernel::counters::PROTOCOLS;
use netprobe::xdp::LoadOptions;
use nix::sys::signal::Signal;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use serde_json::Value;

/// Writes `frames` as a pcap, one every `step` from a fixed start.
fn write_pcap(path: &str, frames: &[Vec<u8>], step: Duration) {
    let mut w = CaptureWriter::new(File::create(path).unwrap(), Format::Pcap, 65535).unwrap();
    let start = Duration::from_secs(1_700_000_000);
    for (i, f) in frames.iter().enumerate() {
        w.write(start + step * i as u32, f.len() as u32, f).unwrap();
    }
    w.flush().unwrap();
}

/// The final JSON line of a run.
fn final_json(out: &common::process::Finished) -> Value {
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["final"], true);
    v
}

/// packets and bytes of every protocol class.
fn protocols(v: &Value) -> Vec<(String, u64, u64)> {
    PROTOCOLS
        .iter()
        .map(|p| {
            let c = &v["protocols"][p];
            (
                p.to_string(),
                c["packets"].as_u64().unwrap(),
                c["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Frames of every class a test network carries, none VLAN-tagged (a veth
/// takes the tag off before an AF_PACKET socket sees the frame).
fn mixed_frames() -> Vec<(Vec<u8>, usize)> {
    let mut broken_tcp = tcp4_frame(80, 0);
    broken_tcp[14 + 20 + 12] = 3 << 4; // data offset 3
    vec![
        (udp4_frame(9, 18), 40),
        (udp4_frame(10, 100), 25),
        (tcp4_frame(80, 0), 15),
        (icmp4_frame(56), 10),
        (udp6_frame(53, 10), 7),
        (tcp6_frame(443, 20), 6),
        (icmp6_frame(8), 5),
        (arp_frame(), 4),
        (eth(0x88cc, &[0u8; 46]), 3),
        (broken_tcp, 2),
    ]
}

/// A live xdp run with dry-run drop rules and --top, and live socket
/// filters capturing the same frames; then the capture replayed through
/// both hooks: every number is the same.
#[test]
fn a_live_run_and_its_replay_agree() {
    common::require_root();
    let net = Pair::quiet();
    let dir = TempDir::new("replay");
    // Written live as pcapng (by its name), read back by the replays.
    let capture = dir.path("live.pcapng");
    let rules = ["--drop", "udp and dst port 9", "--drop", "tcp", "--dry-run"];
    let mut xdp_args = vec!["xdp", &net.b_if, "--json", "--top", "3"];
    xdp_args.extend(rules);
    let xdp = Running::start(Some(&net.b.name), &xdp_args);
    let capturing = Running::start(
        Some(&net.b.name),
        &["sockfilter", "-i", &net.b_if, "-w", &capture, "--json"],
    );
    let filter = [
        "--filter",
        "udp and dst port 10",
        "-w",
        "/dev/null",
        "--json",
    ];
    let mut filtered_args = vec!["sockfilter", "-i", &net.b_if];
    filtered_args.extend(filter);
    let filtered = Running::start(Some(&net.b.name), &filtered_args);
    let frames = mixed_frames();
    let total: usize = frames.iter().map(|(_, n)| n).sum();
    send_frames(&net.a.name, &net.a_if, &frames);
    std::thread::sleep(Duration::from_millis(500));
    let (_, live_xdp) = xdp.stop(Signal::SIGINT);
    let (_, live_capture) = capturing.stop(Signal::SIGINT);
    let (_, live_filtered) = filtered.stop(Signal::SIGINT);
    let (live_xdp, live_capture, live_filtered) = (
        live_xdp.unwrap(),
        live_capture.unwrap(),
        live_filtered.unwrap(),
    );
    assert_eq!(live_capture["captured"], total as u64, "{live_capture}");

    let mut replay_args = vec!["xdp", "--replay", &capture, "--json", "--top", "3"];
    replay_args.extend(rules);
    let replayed = final_json(&run(None, &replay_args));
    assert_eq!(replayed["replay"], capture.as_str());
    assert_eq!(protocols(&replayed), protocols(&live_xdp));
    assert_eq!(replayed["verdicts"], live_xdp["verdicts"]);
    assert_eq!(replayed["rules"], live_xdp["rules"]);
    assert_eq!(replayed["top_sources"], live_xdp["top_sources"]);
    // `tcp` is libpcap's `ip proto 6 or ip6 proto 6`: the broken TCP
    // header counts too.
    assert_eq!(verdict(&replayed, "would_drop").0, 40 + 15 + 6 + 2);

    for (live, args) in [
        (&live_capture, vec!["--json"]),
        (&live_filtered, filter.to_vec()),
    ] {
        let mut full = vec!["sockfilter", "--replay", &capture];
        full.extend(args);
        let replayed = final_json(&run(None, &full));
        assert_eq!(protocols(&replayed), protocols(live), "{full:?}");
        for key in ["seen", "matched", "captured", "rules"] {
            assert_eq!(replayed[key], live[key], "{full:?}: {key}");
        }
    }
    assert_eq!(live_filtered["captured"], 25);
}

/// Every frame class of the classification tests replays into the classes
/// one BPF_PROG_TEST_RUN of that frame counts.
#[test]
fn replayed_frames_count_as_single_test_runs_classify_them() {
    common::require_root();
    let tagged = eth_tagged(
        MAC_B,
        MAC_A,
        &[(ETH_VLAN, 10)],
        ETH_IPV4,
        &ipv4(
            IP4_A,
            IP4_B,
            PROTO_UDP,
            &udp(IP4_A.into(), IP4_B.into(), 1, 2, b"x"),
        ),
    );
    let qinq = eth_tagged(
        MAC_B,
        MAC_A,
        &[(ETH_QINQ, 1), (ETH_VLAN, 2)],
        ETH_IPV6,
        &ipv6(
            IP6_A,
            IP6_B,
            PROTO_TCP,
            &tcp(IP6_A.into(), IP6_B.into(), 1, 2, TCP_SYN, b""),
        ),
    );
    let later_fragment = eth(
        ETH_IPV6,
        &ipv6(
            IP6_A,
            IP6_B,
            44,
            &ipv6_frag(PROTO_TCP, 10, false, &[0u8; 16]),
        ),
    );
    let mut frames: Vec<Vec<u8>> = vec![
        udp4_frame(53, 18),
        tcp4_frame(80, 0),
        icmp4_frame(56),
        udp6_frame(53, 10),
        tcp6_frame(80, 100),
        icmp6_frame(56),
        arp_frame(),
        eth(0x88cc, &[0u8; 46]),
        tagged,
        qinq,
        later_fragment,
        eth(ETH_IPV4, &[0x45, 0, 0]),
        eth(ETH_VLAN, &[0, 10]),
    ];
    frames.extend(frames.clone());
    let mut storage = MaybeUninit::uninit();
    let skel = netprobe::xdp::load(&mut storage, &LoadOptions::default()).unwrap();
    let before = netprobe::xdp::read_stats(&skel).unwrap();
    for f in &frames {
        netprobe::xdp::program(&skel)
            .test_run(ProgramInput {
                data_in: Some(f),
                ..Default::default()
            })
            .unwrap();
    }
    let single = netprobe::xdp::read_stats(&skel)
        .unwrap()
        .since(&before)
        .protocols();
    let dir = TempDir::new("replay");
    let file = dir.path("classes.pcap");
    write_pcap(&file, &frames, Duration::from_millis(10));
    let replayed = final_json(&run(None, &["xdp", "--replay", &file, "--json"]));
    let want: Vec<(String, u64, u64)> = PROTOCOLS
        .iter()
        .zip(single)
        .map(|(p, c)| (p.to_string(), c.packets, c.bytes))
        .collect();
    assert_eq!(protocols(&replayed), want);
    assert!(want.iter().find(|(p, _, _)| p == "malformed").unwrap().1 > 0);
}

/// pcapng: two interfaces, one in nanoseconds and one in the default
/// microseconds, comments on the section and on frames; and the same
/// frames through standard input.
#[test]
fn pcapng_with_interfaces_nanoseconds_and_comments() {
    common::require_root();
    let dir = TempDir::new("replay");
    let file = dir.path("two.pcapng");
    let mut w = PcapNgWriter::with_section_header(
        File::create(&file).unwrap(),
        SectionHeaderBlock {
            options: vec![SectionHeaderOption::Comment(Cow::Borrowed(
                "two interfaces",
            ))],
            ..Default::default()
        },
    )
    .unwrap();
    for (name, resol) in [("ns0", Some(9)), ("us1", None)] {
        let mut options = vec![InterfaceDescriptionOption::IfName(Cow::Borrowed(name))];
        options.extend(resol.map(InterfaceDescriptionOption::IfTsResol));
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 65535,
            options,
        })
        .unwrap();
    }
    let (udp, tcp) = (udp4_frame(9, 18), tcp4_frame(80, 0));
    // pcap-file writes the raw count its timestamp holds in nanoseconds:
    // for the microsecond interface, a count of microseconds.
    let frames = [
        (0, Duration::from_nanos(1_700_000_001_000_000_000), &udp),
        (1, Duration::from_nanos(1_700_000_001_500_000), &tcp), // 1.5 s in us
        (0, Duration::from_nanos(1_700_000_003_500_000_000), &udp),
    ];
    for (iface, raw, data) in frames {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: iface,
            timestamp: raw,
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![
                pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Comment(
                    Cow::Borrowed("a frame"),
                ),
            ],
        })
        .unwrap();
    }
    drop(w);
    let v = final_json(&run(None, &["xdp", "--replay", &file, "--json"]));
    assert_eq!(v["protocols"]["udp"]["packets"], 2);
    assert_eq!(v["protocols"]["tcp"]["packets"], 1);
    // From the first frame at ...001.0 s to the last at ...003.5 s.
    assert_eq!(v["elapsed_s"], 2.5, "{v}");

    let mut reader = CaptureReader::open(Path::new(&file)).unwrap();
    let mut times = Vec::new();
    while let Some(f) = reader.next_frame().unwrap() {
        times.push(f.time);
    }
    assert_eq!(
        times,
        [
            Duration::new(1_700_000_001, 0),
            Duration::new(1_700_000_001, 500_000_000),
            Duration::new(1_700_000_003, 500_000_000),
        ]
    );

    let out = Command::new(BIN)
        .args(["xdp", "--replay", "-", "--json"])
        .stdin(File::open(&file).unwrap())
        .output()
        .unwrap();
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["replay"], "standard input");
    assert_eq!(last["protocols"]["udp"]["packets"], 2);
}

/// --write-passed and --write-dropped split the frames by verdict, with the
/// bytes the program left: an echo request answered by --reply is written
/// as the reply.
#[test]
fn frames_are_written_by_verdict_as_the_program_left_them() {
    common::require_root();
    let net = Pair::addressed();
    let dir = TempDir::new("replay");
    let file = dir.path("in.pcap");
    let echo = eth_tagged(
        MAC_B,
        MAC_A,
        &[],
        ETH_IPV4,
        &ipv4(IP4_A, IP4_B, PROTO_ICMP, &icmp_echo(7, 1, &[0x5a; 56])),
    );
    write_pcap(
        &file,
        &[
            udp4_frame(9, 18),
            udp4_frame(10, 18),
            echo.clone(),
            udp4_frame(9, 18),
        ],
        Duration::from_millis(1),
    );
    let (passed, dropped) = (dir.path("passed.pcapng"), dir.path("dropped.pcap"));
    let out = run(
        Some(&net.b.name),
        &[
            "xdp",
            "--replay",
            &file,
            &net.b_if,
            "--drop",
            "udp and dst port 9",
            "--reply",
            "icmp",
            "--write-passed",
            &passed,
            "--write-dropped",
            &dropped,
            "--json",
        ],
    );
    let v = final_json(&out);
    assert_eq!(verdict(&v, "drop").0, 2);
    assert_eq!(verdict(&v, "tx").0, 1);
    assert_eq!(verdict(&v, "pass").0, 1);
    let read_all = |path: &str| {
        let mut r = CaptureReader::open(Path::new(path)).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            frames.push(f.data);
        }
        frames
    };
    let dropped = read_all(&dropped);
    assert_eq!(dropped, vec![udp4_frame(9, 18), udp4_frame(9, 18)]);
    let passed = read_all(&passed);
    assert_eq!(passed.len(), 2);
    assert_eq!(passed[0], udp4_frame(10, 18));
    let reply = &passed[1];
    assert_eq!(&reply[0..6], &MAC_A, "sent back to A");
    assert_eq!(&reply[14 + 12..14 + 16], &IP4_B.octets(), "from B");
    assert_eq!(reply[14 + 20], 0, "an echo reply");
}

/// A protocol before a port (`tcp port 9`) narrows it as in libpcap: the
/// frames matched are the frames `tcpdump -r` prints for the same words.
#[test]
fn protocol_qualified_ports_match_as_tcpdump_reads_them() {
    common::require_root();
    let dir = TempDir::new("replay");
    let file = dir.path("in.pcap");
    let mut frames = Vec::new();
    for (frame, n) in [
        (udp4_frame(9, 20), 5),
        (tcp4_frame(9, 0), 4),
        (udp6_frame(10, 20), 3),
        (tcp6_frame(10, 0), 2),
        (icmp6_frame(16), 1),
        (arp_frame(), 1),
    ] {
        frames.extend(std::iter::repeat_n(frame, n));
    }
    write_pcap(&file, &frames, Duration::from_millis(1));
    for expression in [
        "tcp port 9",
        "udp port 9",
        "udp dst port 10",
        "tcp src port 40000",
        "tcp portrange 9-10",
        "ip6 and udp dst portrange 1-10",
        "udp src port 9",
    ] {
        let words: Vec<&str> = expression.split(' ').collect();
        let tcpdump = Command::new("tcpdump")
            .args(["-nr", &file])
            .args(&words)
            .output()
            .expect("tcpdump");
        assert!(tcpdump.status.success(), "{expression}: {tcpdump:?}");
        let want = String::from_utf8_lossy(&tcpdump.stdout).lines().count();
        // Options may follow the expression, as tcpdump takes them.
        let mut args = vec!["sockfilter", "--replay", &file];
        args.extend(&words);
        args.push("--json");
        let v = final_json(&run(None, &args));
        assert_eq!(v["matched"], want, "{expression}");
    }
}

/// sockfilter: -s trims what is written, -c stops at a count.
#[test]
fn a_replayed_capture_is_trimmed_and_counted_as_live() {
    common::require_root();
    let dir = TempDir::new("replay");
    let file = dir.path("in.pcap");
    let frames: Vec<Vec<u8>> = (0..10).map(|i| udp4_frame(9 + i % 2, 100)).collect();
    write_pcap(&file, &frames, Duration::from_millis(1));
    let out_file = dir.path("out.pcap");
    let v = final_json(&run(
        None,
        &[
            "sockfilter",
            "--replay",
            &file,
            "--filter",
            "udp and dst port 9",
            "-s",
            "64",
            "-c",
            "3",
            "-w",
            &out_file,
            "--json",
        ],
    ));
    assert_eq!(v["captured"], 3);
    // The rule as tcpdump takes its expression: trailing words.
    let tcpdump_style = final_json(&run(
        None,
        &[
            "sockfilter",
            "--replay",
            &file,
            "--json",
            "udp",
            "and",
            "dst",
            "port",
            "9",
        ],
    ));
    assert_eq!(tcpdump_style["matched"], 5);
    assert_eq!(tcpdump_style["rules"][0]["rule"], "udp and dst port 9");
    let mut r = CaptureReader::open(Path::new(&out_file)).unwrap();
    let mut n = 0;
    while let Some(f) = r.next_frame().unwrap() {
        assert_eq!((f.data.len(), f.orig_len), (64, 142));
        n += 1;
    }
    assert_eq!(n, 3);
}

/// Every bad capture is one line and a non-zero exit.
#[test]
fn bad_captures_are_one_line() {
    common::require_root();
    let dir = TempDir::new("replay");
    let text = dir.path("notes.txt");
    fs::write(&text, "not a capture\n").unwrap();
    let empty = dir.path("empty.pcap");
    fs::write(&empty, "").unwrap();
    // A pcap header with link type 113 (Linux cooked capture).
    let sll = dir.path("sll.pcap");
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend([0u8; 8]);
    header.extend(65535u32.to_le_bytes());
    header.extend(113u32.to_le_bytes());
    fs::write(&sll, &header).unwrap();
    let cut = dir.path("cut.pcap");
    write_pcap(
        &cut,
        &[udp4_frame(9, 18), udp4_frame(9, 18)],
        Duration::from_millis(1),
    );
    let whole = fs::read(&cut).unwrap();
    fs::write(&cut, &whole[..whole.len() - 7]).unwrap();
    let missing = dir.path("missing.pcap");
    for (file, needle) in [
        (&missing, "cannot read"),
        (&text, "is not a pcap or pcapng capture"),
        (&empty, "is empty"),
        (
            &sll,
            "holds LINUX_SLL frames; netprobe replays Ethernet (EN10MB) frames only",
        ),
        (&dir.0.to_str().unwrap().to_string(), "is a directory"),
    ] {
        for hook in ["xdp", "sockfilter"] {
            let out = run(None, &[hook, "--replay", file]);
            common::process::expect_error(&out, 1, needle);
        }
    }
    // A cut last record: the whole ones are replayed and summed up, then one
    // line says so.
    let out = run(None, &["xdp", "--replay", &cut, "--json"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["protocols"]["udp"]["packets"], 1);
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains("the last record is cut short"),
        "{}",
        out.stderr
    );
    // Options that need an interface are refused with --replay.
    let out = run(None, &["xdp", "--replay", &cut, "--reply", "icmp"]);
    common::process::expect_error(&out, 2, "name IFACE too");
    let out = run(None, &["xdp", "--replay", &cut, "--mode", "skb"]);
    common::process::expect_error(&out, 2, "cannot be used with");
    let ns = Netns::new();
    let out = run(
        Some(&ns.name),
        &["sockfilter", "--replay", &cut, "-i", "lo"],
    );
    common::process::expect_error(&out, 2, "cannot be used with");
}

/// A big-endian pcap with microsecond time stamps (as written on a
/// big-endian machine) replays like any other.
#[test]
fn a_big_endian_pcap_replays() {
    common::require_root();
    let dir = TempDir::new("replay");
    let file = dir.path("be.pcap");
    let mut bytes = vec![0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4];
    bytes.extend([0u8; 8]);
    bytes.extend(65535u32.to_be_bytes());
    bytes.extend(1u32.to_be_bytes());
    let frames = [udp4_frame(9, 18), tcp4_frame(80, 0), udp4_frame(9, 18)];
    for (i, f) in frames.iter().enumerate() {
        bytes.extend((1_700_000_000 + i as u32).to_be_bytes());
        bytes.extend(250_000u32.to_be_bytes());
        bytes.extend((f.len() as u32).to_be_bytes());
        bytes.extend((f.len() as u32).to_be_bytes());
        bytes.extend(f);
    }
    fs::write(&file, &bytes).unwrap();
    let v = final_json(&run(None, &["xdp", "--replay", &file, "--json"]));
    assert_eq!(v["protocols"]["udp"]["packets"], 2);
    assert_eq!(v["protocols"]["tcp"]["packets"], 1);
    assert_eq!(v["elapsed_s"], 2.0);
    assert_eq!(v["time"], "2023-11-14T22:13:22.250Z");
}

/// A frame longer than the kernel's test run takes (a page, for a socket
/// buffer) is left out with a note, and the rest of the capture replays.
#[test]
fn a_frame_too_long_for_the_test_run_is_left_out_with_a_note() {
    common::require_root();
    let dir = TempDir::new("replay");
    let file = dir.path("long.pcap");
    let mut long = udp4_frame(9, 0);
    long.resize(6000, 0x5a);
    write_pcap(
        &file,
        &[udp4_frame(9, 18), long, udp4_frame(9, 18)],
        Duration::from_millis(1),
    );
    let out = run(None, &["sockfilter", "--replay", &file, "--json"]);
    let v = final_json(&out);
    assert_eq!(v["seen"], 2, "{v}");
    assert!(
        out.stderr
            .contains("not replayed: 1 frame longer than the kernel's test run takes"),
        "{}",
        out.stderr
    );
}
