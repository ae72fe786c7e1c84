//! The XDP program's actions through BPF_PROG_TEST_RUN: every rule
//! primitive for IPv4 and IPv6, matching and not, rule reloads, dry run,
//! redirect, and the ICMP/ICMPv6 echo reply checked byte for byte.
mod common;

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::frames::*;
use libbpf_rs::{MapCore, MapFlags, ProgramInput};
use netprobe::filter::capacity::Capacity;
use netprobe::filter::tables::RuleState;
use netprobe::filter::{self, Action, Compiled, Rule};
use netprobe::kernel::counters::Counter;
use netprobe::skel::xdp::XdpSkel;
use netprobe::xdp::{addr_key, load, read_stats, rule_tables, LoadOptions};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

fn run(skel: &XdpSkel<'_>, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let result = netprobe::xdp::program(skel)
        .test_run(ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    let (ret, len) = (result.return_value, result.data.map_or(0, |d| d.len()));
    out.truncate(len);
    (ret, out)
}

fn parse_all(texts: &[&str], action: Action) -> Vec<Rule> {
    texts
        .iter()
        .map(|t| filter::parse(t, action).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn install(skel: &XdpSkel<'_>, state: &mut RuleState, rules: &[Rule]) {
    let compiled = Compiled::compile(rules).unwrap();
    state.install(&rule_tables(skel), rules, &compiled).unwrap();
}

fn rules_options() -> LoadOptions {
    LoadOptions {
        rules: Some(Capacity {
            rules: 64,
            entries: 4096,
            programs: 64,
            cells: 1 << 16,
            blocks: 256,
            addr_rows: 4096,
            row_fields: 0xf,
        }),
        ..Default::default()
    }
}

/// A frame, what it is, and whether the rule under test must match it.
type Probe = (&'static str, Vec<u8>, bool);

fn udp4_between(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    eth(
        ETH_IPV4,
        &ipv4(
            src,
            dst,
            PROTO_UDP,
            &udp(src.into(), dst.into(), sport, dport, b"payload"),
        ),
    )
}

fn tcp6_between(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    eth(
        ETH_IPV6,
        &ipv6(
            src,
            dst,
            PROTO_TCP,
            &tcp(src.into(), dst.into(), sport, dport, TCP_SYN, b""),
        ),
    )
}

#[test]
fn every_primitive_matches_and_misses_for_ipv4_and_ipv6() {
    common::require_root();
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &rules_options()).expect("loading with rules");
    let mut state = RuleState::new(Capacity {
        rules: 64,
        entries: 4096,
        programs: 64,
        cells: 1 << 16,
        blocks: 256,
        addr_rows: 4096,
        row_fields: 0xf,
    });

    let other4 = Ipv4Addr::new(203, 0, 113, 7);
    let other6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let a_to_b4 = udp4_frame(9, 18); // 198.18.0.1:40000 -> 198.18.0.2:9
    let b_to_a4 = udp4_between(IP4_B, IP4_A, 9, 40000);
    let elsewhere4 = udp4_between(other4, other4, 1, 2);
    let a_to_b6 = udp6_frame(9, 18); // 2001:2::1:40000 -> 2001:2::2:9
    let tcp_a_to_b6 = tcp6_between(IP6_A, IP6_B, 40000, 9);
    let elsewhere6 = tcp6_between(other6, other6, 1, 2);

    let cases: Vec<(&str, Vec<Probe>)> = vec![
        (
            "udp",
            vec![
                ("udp4", a_to_b4.clone(), true),
                ("udp6", a_to_b6.clone(), true),
                ("tcp6", tcp_a_to_b6.clone(), false),
            ],
        ),
        (
            "tcp",
            vec![
                ("tcp4", tcp4_frame(9, 0), true),
                ("tcp6", tcp_a_to_b6.clone(), true),
                ("udp4", a_to_b4.clone(), false),
            ],
        ),
        (
            "icmp",
            vec![
                ("icmp4", icmp4_frame(8), true),
                ("icmp6", icmp6_frame(8), false),
                ("udp4", a_to_b4.clone(), false),
            ],
        ),
        (
            "icmp6",
            vec![
                ("icmp6", icmp6_frame(8), true),
                ("icmp4", icmp4_frame(8), false),
            ],
        ),
        (
            "arp",
            vec![("arp", arp_frame(), true), ("udp4", a_to_b4.clone(), false)],
        ),
        (
            "ip",
            vec![
                ("udp4", a_to_b4.clone(), true),
                ("udp6", a_to_b6.clone(), false),
                ("arp", arp_frame(), false),
            ],
        ),
        (
            "ip6",
            vec![
                ("udp6", a_to_b6.clone(), true),
                ("udp4", a_to_b4.clone(), false),
            ],
        ),
        (
            "host 198.18.0.1",
            vec![
                ("A->B", a_to_b4.clone(), true),
                ("B->A", b_to_a4.clone(), true),
                ("arp from A", arp_frame(), true),
                ("elsewhere", elsewhere4.clone(), false),
            ],
        ),
        (
            "src host 198.18.0.1",
            vec![
                ("A->B", a_to_b4.clone(), true),
                ("B->A", b_to_a4.clone(), false),
            ],
        ),
        (
            "dst host 198.18.0.2",
            vec![
                ("A->B", a_to_b4.clone(), true),
                ("B->A", b_to_a4.clone(), false),
            ],
        ),
        (
            "net 198.18.0.0/24",
            vec![
                ("A->B", a_to_b4.clone(), true),
                ("elsewhere", elsewhere4.clone(), false),
                ("udp6", a_to_b6.clone(), false),
            ],
        ),
        (
            "src net 198.18.0.0/31",
            vec![
                ("A->B", a_to_b4.clone(), true),
                ("B->A", b_to_a4.clone(), false),
            ],
        ),
        (
            "dst net 198.18.0.0/31",
            vec![
                ("A->B", a_to_b4.clone(), false),
                ("B->A", b_to_a4.clone(), true),
            ],
        ),
        (
            "host 2001:2::1",
            vec![
                ("A->B", a_to_b6.clone(), true),
                ("elsewhere", elsewhere6.clone(), false),
                ("udp4", a_to_b4.clone(), false),
            ],
        ),
        (
            "src host 2001:2::1",
            vec![
                ("A->B", a_to_b6.clone(), true),
                ("B->A", tcp6_between(IP6_B, IP6_A, 9, 40000), false),
            ],
        ),
        (
            "dst host 2001:2::2",
            vec![
                ("A->B", tcp_a_to_b6.clone(), true),
                ("B->A", tcp6_between(IP6_B, IP6_A, 9, 40000), false),
            ],
        ),
        (
            "net 2001:2::/64",
            vec![
                ("A->B", a_to_b6.clone(), true),
                ("elsewhere", elsewhere6.clone(), false),
            ],
        ),
        (
            "src net 2001:2::/127",
            vec![("A->B", a_to_b6.clone(), true)],
        ),
        (
            "dst net 2001:2::/127",
            vec![("A->B", a_to_b6.clone(), false)],
        ),
        (
            "port 9",
            vec![
                ("udp4 dport 9", a_to_b4.clone(), true),
                ("udp4 sport 9", b_to_a4.clone(), true),
                ("tcp6 dport 9", tcp_a_to_b6.clone(), true),
                ("dport 10", udp4_frame(10, 0), false),
            ],
        ),
        (
            "src port 40000",
            vec![
                ("A->B", a_to_b4.clone(), true),
                ("B->A", b_to_a4.clone(), false),
            ],
        ),
        (
            "dst port 40000",
            vec![
                ("A->B", a_to_b4.clone(), false),
                ("B->A", b_to_a4.clone(), true),
            ],
        ),
        (
            "portrange 1-1023",
            vec![
                ("dport 9", a_to_b4.clone(), true),
                ("ports 1, 2", elsewhere4.clone(), true),
                ("dport 2000", udp4_frame(2000, 0), false),
            ],
        ),
        (
            "dst portrange 10-20",
            vec![
                ("dport 9", a_to_b4.clone(), false),
                ("dport 15", udp4_frame(15, 0), true),
            ],
        ),
        (
            "src portrange 39000-41000",
            vec![
                ("sport 40000", a_to_b6.clone(), true),
                ("sport 9", b_to_a4.clone(), false),
            ],
        ),
        (
            "udp and dst port 9",
            vec![
                ("udp4", a_to_b4.clone(), true),
                ("udp6", a_to_b6.clone(), true),
                ("tcp4", tcp4_frame(9, 0), false),
            ],
        ),
        (
            "ip6 and src net 2001:2::/64 and tcp and dst portrange 1-100",
            vec![
                ("tcp6", tcp_a_to_b6.clone(), true),
                ("udp6", a_to_b6.clone(), false),
                ("tcp4", tcp4_frame(9, 0), false),
            ],
        ),
        // Ports only exist for TCP and UDP: an ICMP frame never matches a port rule.
        (
            "port 2048",
            vec![("icmp echo (type 8, code 0)", icmp4_frame(8), false)],
        ),
        (
            "",
            vec![("udp4", a_to_b4.clone(), true), ("arp", arp_frame(), true)],
        ),
    ];

    for (rule_text, frames) in &cases {
        // A decoy rule first, so a hit proves the right rule matched.
        let rules = parse_all(&["src host 192.0.2.99 and udp", rule_text], Action::Drop);
        install(&skel, &mut state, &rules);
        for (what, frame, should_match) in frames {
            let before = state.hits(&rule_tables(&skel)).unwrap();
            let (ret, _) = run(&skel, frame);
            let after = state.hits(&rule_tables(&skel)).unwrap();
            let want = if *should_match { XDP_DROP } else { XDP_PASS };
            assert_eq!(ret, want, "rule {rule_text:?} on {what}");
            let hits = after[1].since(before[1]);
            let expected = if *should_match {
                Counter::new(1, frame.len() as u64)
            } else {
                Counter::default()
            };
            assert_eq!(hits, expected, "rule {rule_text:?} hits on {what}");
            assert_eq!(after[0], before[0], "decoy rule hit on {what}");
        }
    }
}

#[test]
fn reload_swaps_the_whole_rule_set() {
    common::require_root();
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &rules_options()).unwrap();
    let mut state = RuleState::new(Capacity {
        rules: 64,
        entries: 4096,
        programs: 64,
        cells: 1 << 16,
        blocks: 256,
        addr_rows: 4096,
        row_fields: 0xf,
    });
    let udp9 = udp4_frame(9, 0);
    let udp10 = udp4_frame(10, 0);
    for round in 0..5 {
        // Table rules and libpcap programs take turns, through both
        // generations.
        let (drop9, keep) = if round % 2 == 0 {
            ("udp and dst port 9", &udp10)
        } else {
            ("udp and dst port 10 and not src host 192.0.2.1", &udp9)
        };
        let rules = parse_all(&[drop9, "src net 10.0.0.0/8"], Action::Drop);
        install(&skel, &mut state, &rules);
        let dropped = if round % 2 == 0 { &udp9 } else { &udp10 };
        assert_eq!(run(&skel, dropped).0, XDP_DROP, "round {round}");
        assert_eq!(run(&skel, keep).0, XDP_PASS, "round {round}");
        // Counters start from zero with each rule set.
        assert_eq!(
            state.hits(&rule_tables(&skel)).unwrap(),
            vec![Counter::new(1, dropped.len() as u64), Counter::default()]
        );
    }
    // An empty rule set passes everything.
    install(&skel, &mut state, &[]);
    assert_eq!(run(&skel, &udp9).0, XDP_PASS);
}

#[test]
fn dry_run_passes_and_counts_would_drop() {
    common::require_root();
    let mut storage = MaybeUninit::uninit();
    let skel = load(
        &mut storage,
        &LoadOptions {
            dry_run: true,
            ..rules_options()
        },
    )
    .unwrap();
    let mut state = RuleState::new(Capacity {
        rules: 64,
        entries: 4096,
        programs: 64,
        cells: 1 << 16,
        blocks: 256,
        addr_rows: 4096,
        row_fields: 0xf,
    });
    install(&skel, &mut state, &parse_all(&["udp"], Action::Drop));
    let frame = udp4_frame(9, 0);
    for _ in 0..3 {
        assert_eq!(run(&skel, &frame).0, XDP_PASS);
    }
    assert_eq!(run(&skel, &tcp4_frame(9, 0)).0, XDP_PASS);
    let verdicts = read_stats(&skel).unwrap().verdicts();
    assert_eq!(
        verdicts[5],
        Counter::new(3, 3 * frame.len() as u64),
        "would_drop"
    );
    assert_eq!(verdicts[1], Counter::default(), "drop");
    assert_eq!(verdicts[2].packets, 1, "pass");
    assert_eq!(state.hits(&rule_tables(&skel)).unwrap()[0].packets, 3);
}

#[test]
fn redirect_rules_pick_the_devmap() {
    common::require_root();
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &rules_options()).unwrap();
    let mut state = RuleState::new(Capacity {
        rules: 64,
        entries: 4096,
        programs: 64,
        cells: 1 << 16,
        blocks: 256,
        addr_rows: 4096,
        row_fields: 0xf,
    });
    let mut rules = parse_all(&["udp and dst port 9"], Action::Drop);
    rules.extend(parse_all(&["udp"], Action::Redirect));
    install(&skel, &mut state, &rules);
    // No target yet: bpf_redirect_map falls back to XDP_ABORTED.
    assert_eq!(run(&skel, &udp4_frame(53, 0)).0, XDP_ABORTED);
    let lo = nix::net::if_::if_nametoindex("lo").unwrap();
    skel.maps
        .redirect_port
        .update(&0u32.to_ne_bytes(), &lo.to_ne_bytes(), MapFlags::ANY)
        .unwrap();
    assert_eq!(run(&skel, &udp4_frame(53, 0)).0, XDP_REDIRECT);
    // Drop rules come first.
    assert_eq!(run(&skel, &udp4_frame(9, 0)).0, XDP_DROP);
    assert_eq!(run(&skel, &tcp4_frame(53, 0)).0, XDP_PASS);
}

fn reply_skel(storage: &mut MaybeUninit<libbpf_rs::OpenObject>) -> XdpSkel<'_> {
    let skel = load(
        storage,
        &LoadOptions {
            reply_icmp: true,
            ..Default::default()
        },
    )
    .unwrap();
    for ip in [IpAddr::V4(IP4_B), IpAddr::V6(IP6_B)] {
        skel.maps
            .reply_addrs
            .update(&addr_key(ip), &[1], MapFlags::ANY)
            .unwrap();
    }
    skel
}

#[test]
fn echo_reply_is_correct_byte_for_byte() {
    common::require_root();
    let mut storage = MaybeUninit::uninit();
    let skel = reply_skel(&mut storage);

    // IPv4: 198.18.0.1 -> 198.18.0.2, TTL 64 on the way in.
    let payload: Vec<u8> = (0..56u8).collect();
    let request = eth(
        ETH_IPV4,
        &ipv4(IP4_A, IP4_B, PROTO_ICMP, &icmp_echo(0x1234, 7, &payload)),
    );
    let (ret, reply) = run(&skel, &request);
    assert_eq!(ret, XDP_TX);
    let mut want_ip = ipv4(IP4_B, IP4_A, PROTO_ICMP, &[]);
    want_ip[8] = 64;
    let mut want_icmp = icmp_echo(0x1234, 7, &payload);
    want_icmp[0] = 0; // echo reply
    want_icmp[2..4].copy_from_slice(&[0, 0]);
    let sum = checksum(&want_icmp, 0);
    want_icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut want = eth_tagged(
        MAC_A,
        MAC_B,
        &[],
        ETH_IPV4,
        &ipv4(IP4_B, IP4_A, PROTO_ICMP, &want_icmp),
    );
    want[14 + 8] = 64;
    want[24..26].copy_from_slice(&[0, 0]);
    let ip_sum = checksum(&want[14..34], 0);
    want[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    assert_eq!(reply, want, "IPv4 echo reply");
    assert_eq!(checksum(&reply[14..34], 0), 0, "IPv4 header checksum");
    assert_eq!(checksum(&reply[34..], 0), 0, "ICMP checksum");

    // The same with a TTL that changes (the header checksum must follow).
    let mut low_ttl = request.clone();
    low_ttl[14 + 8] = 3;
    low_ttl[24..26].copy_from_slice(&[0, 0]);
    let s = checksum(&low_ttl[14..34], 0);
    low_ttl[24..26].copy_from_slice(&s.to_be_bytes());
    let (ret, reply) = run(&skel, &low_ttl);
    assert_eq!(ret, XDP_TX);
    assert_eq!(reply, want, "IPv4 echo reply to a TTL-3 request");

    // IPv6.
    let request6 = eth(
        ETH_IPV6,
        &ipv6(
            IP6_A,
            IP6_B,
            PROTO_ICMPV6,
            &icmpv6_echo(IP6_A, IP6_B, 0x4321, 9, &payload),
        ),
    );
    let (ret, reply6) = run(&skel, &request6);
    assert_eq!(ret, XDP_TX);
    let mut want_icmp6 = icmpv6_echo(IP6_B, IP6_A, 0x4321, 9, &payload);
    want_icmp6[0] = 129;
    want_icmp6[2..4].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&IP6_B.octets());
    pseudo.extend_from_slice(&IP6_A.octets());
    pseudo.extend_from_slice(&(want_icmp6.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, PROTO_ICMPV6]);
    pseudo.extend_from_slice(&want_icmp6);
    let sum6 = checksum(&pseudo, 0);
    want_icmp6[2..4].copy_from_slice(&sum6.to_be_bytes());
    let want6 = eth_tagged(
        MAC_A,
        MAC_B,
        &[],
        ETH_IPV6,
        &ipv6(IP6_B, IP6_A, PROTO_ICMPV6, &want_icmp6),
    );
    assert_eq!(reply6, want6, "IPv6 echo reply");

    // Not for us, not a request, or a fragment: passed untouched.
    let elsewhere = eth(
        ETH_IPV4,
        &ipv4(
            IP4_A,
            Ipv4Addr::new(198, 18, 0, 9),
            PROTO_ICMP,
            &icmp_echo(1, 1, b""),
        ),
    );
    let mut echo_reply = icmp_echo(1, 1, b"");
    echo_reply[0] = 0;
    let not_request = eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_ICMP, &echo_reply));
    let fragment = eth(
        ETH_IPV4,
        &ipv4_opts(
            IP4_A,
            IP4_B,
            PROTO_ICMP,
            0x2000,
            &[],
            &icmp_echo(1, 1, &[0; 16]),
        ),
    );
    for (what, frame) in [
        ("other address", &elsewhere),
        ("echo reply", &not_request),
        ("first fragment", &fragment),
    ] {
        let (ret, out) = run(&skel, frame);
        assert_eq!(ret, XDP_PASS, "{what}");
        assert_eq!(&out, frame, "{what} unchanged");
    }
    let verdicts = read_stats(&skel).unwrap().verdicts();
    assert_eq!(verdicts[3].packets, 3, "tx");
}
