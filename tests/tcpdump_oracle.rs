//! The filter language against its reference, tcpdump: a corpus of crafted
//! frames (tests/common/corpus.rs: every class, broken, fragmented, tagged
//! and cut short) and a list of expressions, each run through `tcpdump -r`,
//! `netprobe sockfilter` and `netprobe xdp --drop`, over the capture
//! (`--replay`) and live on a veth pair. Every (expression, frame) pair
//! must agree. The one difference allowed is the documented one: a rule
//! made of fields looks through up to two VLAN tags, so for such a rule
//! the reference is what tcpdump says of the frame without them.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::process::Command;
use std::time::Duration;

use common::corpus::{corpus, untagged};
use common::netns::{send_frames, Pair};
use common::process::{run, Running};
use common::TempDir;
use netprobe::capture::write::{CaptureWriter, Format};
use netprobe::filter::{self, Action};
use nix::sys::signal::Signal;

/// What users type, construct by construct (pcap-filter(7)).
const EXPRESSIONS: &[&str] = &[
    // Protocols.
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "igmp",
    "gre",
    "esp",
    "ah",
    "not gre",
    "igmp or gre",
    // Hosts and networks.
    "host 198.18.0.1",
    "src host 198.18.0.1",
    "dst host 198.18.0.2",
    "host 2001:2::1",
    "ip6 host 2001:2::2",
    "ip host 198.18.0.1",
    // A name, resolved when the rule is compiled, as tcpdump does.
    "host localhost",
    "arp host 198.18.0.2",
    "net 198.18.0.0/15",
    "src net 10.1",
    "net 10.1 mask 255.255.0.0",
    "dst net 192.168.1.0/24",
    "net 10",
    "ip6 net 2001:db8::/32",
    "net 2001:2::/64",
    "src net 2001:db8::/48",
    // A prefix of length 0 reads no address: libpcap tests the protocol.
    "net 0.0.0.0/0",
    "net ::/0",
    "not net 0.0.0.0/0",
    "net 0.0.0.0/0 and port 53",
    // Ports.
    "port 53",
    "port 80",
    "src port 53",
    "dst port 80",
    "tcp port 80",
    "udp dst port 53",
    "sctp port 80",
    "tcp dst port 80",
    "src or dst port 53",
    "portrange 1000-2000",
    "tcp portrange 1-1024",
    "udp src portrange 1024-65535",
    "port domain",
    "port http",
    "tcp port https",
    // Boolean combinations and qualifier inheritance.
    "not port 22",
    "not tcp",
    "tcp or udp",
    "host 198.18.0.1 or host 10.1.2.3",
    "host 198.18.0.1 or 198.18.0.2",
    "port 80 or 443",
    "(tcp or udp) and not port 53",
    "not (icmp or icmp6)",
    "tcp and (port 80 or port 443)",
    "! arp",
    // Operators joined to words, as libpcap's lexer splits them.
    "!tcp",
    "udp&&!port 53",
    "!gre",
    "udp && dst port 53",
    "tcp || icmp",
    "ip and src host 198.18.0.1 and dst port 53",
    "tcp and not dst port 80",
    "ip6 and tcp",
    "ip6 and not tcp",
    "host 198.18.0.1 and port 53",
    // `not`, and `or` of terms reading different fields: compared by their
    // fields on whole frames, by libpcap's program on frames cut short.
    "host 198.18.0.1 or port 53",
    "not host 198.18.0.1 and not port 80",
    "udp or not ip",
    "not (src net 10.1 or dst port 53)",
    "tcp and not src port 80",
    "not ip6 net 2001:db8::/32",
    "port 53 or arp",
    "not dst host 2001:2::2 and ip6",
    // `or` the tables hold: terms that read the same fields.
    "src host 198.18.0.1 or 198.18.0.2",
    "dst host 198.18.0.2 or 2001:2::2",
    "tcp dst port 80 or 443",
    "(tcp or udp) and dst port 53",
    "udp src port 53 or 1024 || 5353",
    "ip6 dst net 2001:db8::/32 or 2001:2::/32",
    "sctp or udp || tcp",
    "ip or ip6",
    // Link layer.
    "ether host 02:00:00:00:00:0a",
    "ether src 02:00:00:00:00:0a",
    "ether dst ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "ether multicast",
    "ether proto 0x88cc",
    "ether proto \\ip",
    "ether proto \\arp",
    "vlan",
    "vlan 10",
    "vlan 100",
    "vlan and vlan 10",
    "vlan 10 and ip",
    "vlan and udp",
    // IP protocol numbers.
    "ip proto 47",
    "ip proto \\tcp",
    "ip6 proto 17",
    "proto 17",
    "ip6 protochain 17",
    "ip6 protochain 6",
    // Lengths, broadcast and multicast.
    "greater 1000",
    "less 60",
    "len > 100",
    "len <= 64",
    "ip broadcast",
    "ip multicast",
    "ip6 multicast",
    // Packet data.
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & (tcp-rst|tcp-fin) != 0",
    "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] != icmp-echoreply",
    "icmp6[icmp6type] == icmp6-echo",
    "icmp6[icmp6type] == icmp6-neighborsolicit",
    "ip[8] < 64",
    "udp[2:2] == 53",
    "tcp[13] & 2 != 0",
    "ip[6:2] & 0x1fff != 0",
    "ether[12:2] = 0x0800",
    // Combinations: every kind of primitive under `and`, `or`, `not` and
    // parentheses, as users put them together.
    "not (tcp and port 80) and not (udp and port 53)",
    "(src host 198.18.0.1 and dst port 80) or (dst host 198.18.0.1 and src port 80)",
    "not src net 198.18.0.0/15 or not dst net 198.18.0.0/15",
    "ip and not (tcp or udp or icmp)",
    "ip6 and not (tcp or udp or icmp6)",
    "not (ip or ip6 or arp)",
    "port 53 and not (udp or tcp)",
    "(tcp or sctp) and dst portrange 1-100",
    "src portrange 53-53 or dst portrange 80-80",
    "not portrange 1-1023",
    "tcp and not portrange 1024-65535",
    "udp and not (src port 53 or dst port 53) and not src host 198.18.0.2",
    "host 2001:2::1 or host 198.18.0.1",
    "not host 2001:2::1 and ip6",
    "ip6 src net 2001:2::/48 and not dst net 2001:2::/48",
    "net 2001::/16 and port 53",
    "dst net 10.0.0.0/8 or src net 172.16.0.0/12 or net 192.168.0.0/16",
    "not (net 10 or net 172.16 or net 192.168)",
    "net 198.18.0.0 mask 255.255.255.0",
    "src net 198.18.0.0 mask 255.254.0.0 and udp",
    "(icmp or udp) and src host 198.18.0.1 and not dst host 198.18.0.9",
    "not (src host 198.18.0.1 and dst host 198.18.0.2)",
    "not (host 198.18.0.1 and port 53) and ip",
    "tcp port 22 or tcp port 80 or tcp port 443 or udp port 53",
    "not (tcp port 22 or tcp port 80 or tcp port 443 or udp port 53)",
    "sctp and not port 80",
    "arp and not host 198.18.0.1",
    "rarp or arp or ip6",
    "vlan and not udp",
    "vlan 10 or vlan 20",
    "not vlan 10",
    "vlan and ip6",
    "ether src 02:00:00:00:00:0a or port 53",
    "ether broadcast and arp",
    "not ether multicast and ip",
    "greater 64 and udp port 53",
    "less 80 and not tcp",
    "len > 60 and (tcp or udp)",
    "tcp[tcpflags] & tcp-syn != 0 and dst port 80",
    "tcp[tcpflags] & tcp-push != 0 or udp",
    "icmp[icmptype] == icmp-echo and src host 198.18.0.1",
    "icmp[icmptype] = icmp-unreach or icmp[icmptype] = icmp-timxceed",
    "ip[1] & 0xfc != 0",
    "ip[2:2] > 40",
    "ip6[4:2] > 20",
    "udp[4:2] < 16",
    "tcp[12] & 0xf0 > 0x50",
    "ether[6:4] = 0x02000000",
    "ip proto 17 and not dst port 53",
    "ip6 proto 6 or ip6 proto 17",
    "proto \\udp and src port 53",
    "ip6 protochain 44",
    "ip6 protochain 60",
    "ip proto 6 or ip proto 132",
    "(port 53 or port 80) and (src host 198.18.0.1 or dst host 198.18.0.1)",
    "not (port 53 or port 80) or not ip",
    "udp src port 1024 or tcp dst port 1024",
    "dst port 9 and udp and not src net 10.0.0.0/8",
    "ip6 and (src net 2001:db8::/32 or dst net 2001:db8::/32) and not tcp",
    "src host 198.18.0.1 and src host 198.18.0.1",
    "not not not tcp",
    "(((tcp)))",
    "tcp or (udp and (port 53 or (port 80 and not src host 198.18.0.1)))",
];

const START: Duration = Duration::from_secs(1_700_000_000);
const STEP: Duration = Duration::from_millis(1);

/// Writes frames as a pcap, frame `i` stamped START + i * STEP, so that
/// any tool's output names its frames by their time stamps.
fn write_pcap(path: &str, frames: &[Vec<u8>]) {
    let mut w = CaptureWriter::new(File::create(path).unwrap(), Format::Pcap, 262_144).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(START + STEP * i as u32, f.len() as u32, f).unwrap();
    }
    w.flush().unwrap();
}

/// The indices of the frames in a capture written from write_pcap's.
fn indices(path: &str) -> BTreeSet<usize> {
    let data = std::fs::read(path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let mut out = BTreeSet::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        out.insert(((p.timestamp - START).as_micros() / STEP.as_micros()) as usize);
    }
    out
}

/// The bytes of every frame in a capture (a multiset, sorted).
fn frames_in(path: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out.sort();
    out
}

/// What tcpdump is asked for an expression: the same words, but for the
/// one netprobe adds (libpcap 1.10 has no `gre` keyword).
fn tcpdump_words(expr: &str) -> &str {
    match expr {
        "gre" => "proto gre",
        "not gre" => "not proto gre",
        "igmp or gre" => "igmp or proto gre",
        "!gre" => "!proto gre",
        other => other,
    }
}

fn tcpdump(input: &str, expr: &str, output: &str) -> BTreeSet<usize> {
    let expr = tcpdump_words(expr);
    let out = Command::new("tcpdump")
        .args(["-r", input, "-w", output, expr])
        .output()
        .expect("tcpdump");
    assert!(out.status.success(), "tcpdump {expr}: {out:?}");
    indices(output)
}

/// Whether netprobe matches the expression by its fields (which looks
/// through VLAN tags) rather than as libpcap's program alone.
fn by_fields(expr: &str) -> bool {
    filter::parse(expr, Action::Drop)
        .unwrap_or_else(|e| panic!("{e}"))
        .looks_through_vlan()
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// Disagreements of `got` with `want` over `frames`, one line each.
fn disagreements(
    expr: &str,
    hook: &str,
    frames: &[Vec<u8>],
    want: &BTreeSet<usize>,
    got: &BTreeSet<usize>,
) -> Vec<String> {
    want.symmetric_difference(got)
        .map(|&i| {
            format!(
                "{hook} '{expr}': frame {i} {} (tcpdump: {}) {}",
                if got.contains(&i) {
                    "matched"
                } else {
                    "missed"
                },
                if want.contains(&i) {
                    "match"
                } else {
                    "no match"
                },
                hex(&frames[i])
            )
        })
        .collect()
}

fn assert_none(mut bad: Vec<String>, pairs: usize) {
    let total = bad.len();
    bad.truncate(30);
    assert!(
        bad.is_empty(),
        "{total} of {pairs} (expression, frame) pairs disagree with tcpdump:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_corpus_and_expressions_are_big_enough() {
    assert!(corpus().len() >= 400, "{} frames", corpus().len());
    assert!(EXPRESSIONS.len() >= 80, "{} expressions", EXPRESSIONS.len());
}

/// Both hooks over the capture, every expression, every frame.
#[test]
fn replayed_frames_match_as_tcpdump_matches_them() {
    common::require_root();
    replays_agree_with_tcpdump(EXPRESSIONS);
}

/// An expression libpcap compiles into about a thousand instructions (a
/// host list joined by `or`) runs whole and matches as tcpdump's.
#[test]
fn a_long_expression_matches_as_tcpdump_matches_it() {
    common::require_root();
    let hosts: Vec<String> = (0..200)
        .map(|i| format!("host 10.0.{}.{}", i / 256, i % 256))
        .chain(["host 198.18.0.2".to_string()])
        .collect();
    let long = hosts.join(" or ");
    let program = filter::parse(&long, Action::Drop).unwrap().program.unwrap();
    assert!(program.len() > 512, "{} instructions", program.len());
    replays_agree_with_tcpdump(&[long.as_str()]);
}

/// Every expression, replayed through both hooks, against tcpdump -r.
fn replays_agree_with_tcpdump(expressions: &[&str]) {
    let dir = TempDir::new("oracle");
    let frames = corpus();
    let (input, plain) = (dir.path("in.pcap"), dir.path("untagged.pcap"));
    write_pcap(&input, &frames);
    write_pcap(
        &plain,
        &frames.iter().map(|f| untagged(f)).collect::<Vec<_>>(),
    );
    let mut bad = Vec::new();
    for (n, expr) in expressions.iter().enumerate() {
        let reference = if by_fields(expr) { &plain } else { &input };
        // No hook sees a frame shorter than an Ethernet header, and the
        // replay skips them (a note says so).
        let want: BTreeSet<usize> = tcpdump(reference, expr, &dir.path(&format!("t{n}.pcap")))
            .into_iter()
            .filter(|&i| frames[i].len() >= 14)
            .collect();
        let (sock, dropped) = (
            dir.path(&format!("s{n}.pcap")),
            dir.path(&format!("x{n}.pcap")),
        );
        let out = run(
            None,
            &[
                "sockfilter",
                "--replay",
                &input,
                "--filter",
                expr,
                "-w",
                &sock,
            ],
        );
        assert_eq!(out.code, Some(0), "{expr}: {}", out.stderr);
        bad.extend(disagreements(
            expr,
            "sockfilter",
            &frames,
            &want,
            &indices(&sock),
        ));
        let out = run(
            None,
            &[
                "xdp",
                "--replay",
                &input,
                "--drop",
                expr,
                "--write-dropped",
                &dropped,
            ],
        );
        assert_eq!(out.code, Some(0), "{expr}: {}", out.stderr);
        bad.extend(disagreements(
            expr,
            "xdp --drop",
            &frames,
            &want,
            &indices(&dropped),
        ));
    }
    assert_none(bad, 2 * expressions.len() * frames.len());
}

/// tcpdump capturing everything on `iface` in `ns` into `path`.
fn capture(ns: &str, iface: &str, path: &str) -> Running {
    Running::start_tool(
        ns,
        &[
            "tcpdump",
            "-Z",
            "root",
            "--immediate-mode",
            "-i",
            iface,
            "-U",
            // Room for every frame sent: in immediate mode a ring slot is a
            // snap length, so a small one gives many slots.
            "-s",
            "4096",
            "-w",
            path,
        ],
        "listening on",
    )
}

/// Sends the frames from A, in bursts that B's backlog queue (1,000
/// frames) takes whole.
fn send(pair: &Pair, frames: &[(Vec<u8>, usize)]) {
    for burst in frames.chunks(200) {
        send_frames(&pair.a.name, &pair.a_if, burst);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets the receiving end catch up with what was sent, then stops.
fn stop_after_settling(running: Vec<Running>) {
    std::thread::sleep(Duration::from_millis(400));
    for r in running {
        let out = r.finish_after(Signal::SIGINT);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
}

/// What tcpdump matches among `seen` (the frames as B's taps saw them, in
/// `seen.pcap`, and without their VLAN tags in `untagged.pcap`), as a
/// sorted multiset of frames.
fn expected(dir: &TempDir, seen: &[Vec<u8>], expr: &str, n: usize) -> Vec<Vec<u8>> {
    let reference = if by_fields(expr) {
        dir.path("untagged.pcap")
    } else {
        dir.path("seen.pcap")
    };
    let mut want: Vec<Vec<u8>> = tcpdump(&reference, expr, &dir.path(&format!("t{n}.pcap")))
        .into_iter()
        .map(|i| seen[i].clone())
        .collect();
    want.sort();
    want
}

/// Frames in `got` and not in `want` and the other way round, one line each.
fn multiset_disagreements(
    hook: &str,
    expr: &str,
    want: &[Vec<u8>],
    got: &[Vec<u8>],
) -> Vec<String> {
    let mut count: BTreeMap<&[u8], i64> = BTreeMap::new();
    for f in want {
        *count.entry(f).or_default() += 1;
    }
    for f in got {
        *count.entry(f).or_default() -= 1;
    }
    count
        .into_iter()
        .filter(|(_, c)| *c != 0)
        .map(|(f, c)| {
            let what = if c > 0 { "missed" } else { "matched" };
            format!("{hook} live '{expr}': {what} {}x {}", c.abs(), hex(f))
        })
        .collect()
}

/// Sends the corpus from A to B once with only tcpdump listening on B:
/// the frames B's taps see (as tcpdump writes them, tags restored).
fn frames_b_sees(pair: &Pair, dir: &TempDir, sent: &[(Vec<u8>, usize)]) -> Vec<Vec<u8>> {
    let path = dir.path("seen-live.pcap");
    let tap = capture(&pair.b.name, &pair.b_if, &path);
    send(pair, sent);
    stop_after_settling(vec![tap]);
    let data = std::fs::read(&path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let mut seen = Vec::new();
    while let Some(p) = reader.next_packet() {
        seen.push(p.unwrap().data.into_owned());
    }
    write_pcap(&dir.path("seen.pcap"), &seen);
    write_pcap(
        &dir.path("untagged.pcap"),
        &seen.iter().map(|f| untagged(f)).collect::<Vec<_>>(),
    );
    seen
}

/// Live on a veth pair: the socket filter on B (the kernel takes VLAN tags
/// off into the packet's metadata before it runs) and XDP on B (which sees
/// the frame as sent) match every expression as tcpdump does.
#[test]
fn live_frames_match_as_tcpdump_matches_them() {
    common::require_root();
    let dir = TempDir::new("oracle-live");
    let sent: Vec<(Vec<u8>, usize)> = corpus()
        .into_iter()
        .filter(|f| f.len() >= 14)
        .map(|f| (f, 1))
        .collect();
    let pair = Pair::quiet();
    let seen = frames_b_sees(&pair, &dir, &sent);
    // A frame whose VLAN tag is cut short is dropped by the kernel before
    // any tap (skb_vlan_untag); every other frame reaches B.
    for (f, _) in &sent {
        let tag_cut = f.len() < 22 && untagged(f).len() < f.len();
        assert!(seen.contains(f) || tag_cut, "B never saw {}", hex(f));
    }
    let mut bad = Vec::new();
    // Socket filters, ten at a time, all on the same frames.
    for (batch, exprs) in EXPRESSIONS.chunks(10).enumerate() {
        let running: Vec<Running> = exprs
            .iter()
            .enumerate()
            .map(|(k, expr)| {
                let out = dir.path(&format!("live-s{batch}-{k}.pcap"));
                Running::start(
                    Some(&pair.b.name),
                    &["sockfilter", "-i", &pair.b_if, "--filter", expr, "-w", &out],
                )
            })
            .collect();
        send(&pair, &sent);
        stop_after_settling(running);
        for (k, expr) in exprs.iter().enumerate() {
            let n = batch * 10 + k;
            let want = expected(&dir, &seen, expr, n);
            let got = frames_in(&dir.path(&format!("live-s{batch}-{k}.pcap")));
            bad.extend(multiset_disagreements("sockfilter", expr, &want, &got));
        }
    }
    // XDP: what passes reaches B's taps; what it drops must be what tcpdump
    // matches.
    let mut all_seen = seen.clone();
    all_seen.sort();
    for (n, expr) in EXPRESSIONS.iter().enumerate() {
        let path = dir.path(&format!("live-x{n}.pcap"));
        let xdp = Running::start(
            Some(&pair.b.name),
            &[
                "xdp",
                &pair.b_if,
                "--drop",
                expr,
                "--json",
                "--interval",
                "1h",
            ],
        );
        let tap = capture(&pair.b.name, &pair.b_if, &path);
        send(&pair, &sent);
        stop_after_settling(vec![tap, xdp]);
        let want_dropped = expected(&dir, &seen, expr, n);
        let passed = frames_in(&path);
        // dropped = seen - passed, as multisets.
        let mut dropped = all_seen.clone();
        for f in &passed {
            if let Ok(i) = dropped.binary_search(f) {
                dropped.remove(i);
            }
        }
        bad.extend(multiset_disagreements(
            "xdp --drop",
            expr,
            &want_dropped,
            &dropped,
        ));
    }
    assert_none(bad, 2 * EXPRESSIONS.len() * seen.len());
}
