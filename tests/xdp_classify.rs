//! The XDP classifier through BPF_PROG_TEST_RUN on crafted frames: every
//! class netprobe reports, and every way a frame can be truncated or broken.
mod common;

use std::mem::MaybeUninit;

use common::frames::*;
use libbpf_rs::ProgramInput;
use netprobe::kernel::counters::{Counter, Stats, PROTOCOLS};
use netprobe::xdp::LoadOptions;

/// Runs `frame` through the loaded program once and returns what it counted.
fn classify(skel: &netprobe::skel::xdp::XdpSkel<'_>, frame: &[u8]) -> (u32, Stats) {
    let before = netprobe::xdp::read_stats(skel).unwrap();
    let out = netprobe::xdp::program(skel)
        .test_run(ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    let after = netprobe::xdp::read_stats(skel).unwrap();
    (out.return_value, after.since(&before))
}

/// Asserts that `frame` counted once, with its full length, in exactly `classes`.
fn expect(skel: &netprobe::skel::xdp::XdpSkel<'_>, what: &str, frame: &[u8], classes: &[&str]) {
    let (ret, delta) = classify(skel, frame);
    assert_eq!(ret, 2, "{what}: verdict should be XDP_PASS");
    let one = Counter {
        packets: 1,
        bytes: frame.len() as u64,
    };
    let protocols = delta.protocols();
    for (i, name) in PROTOCOLS.iter().enumerate() {
        let want = if classes.contains(name) {
            one
        } else {
            Counter::default()
        };
        assert_eq!(
            protocols[i],
            want,
            "{what}: class {name} (frame {} bytes)",
            frame.len()
        );
    }
    assert_eq!(delta.verdicts()[2], one, "{what}: verdict pass");
}

fn ip4_udp(payload: &[u8]) -> Vec<u8> {
    udp(IP4_A.into(), IP4_B.into(), 1234, 53, payload)
}

fn ip6_udp(payload: &[u8]) -> Vec<u8> {
    udp(IP6_A.into(), IP6_B.into(), 1234, 53, payload)
}

fn ip6_tcp() -> Vec<u8> {
    tcp(IP6_A.into(), IP6_B.into(), 1234, 80, TCP_SYN, b"")
}

#[test]
fn classifies_every_protocol_and_rejects_every_broken_header() {
    common::require_root();
    // Counting alone and counting with actions are separate entry points,
    // each with the parser compiled into it: both must classify alike.
    let with_actions = LoadOptions {
        count_sources: true,
        ..Default::default()
    };
    for (opts, name) in [
        (LoadOptions::default(), "xdp_netprobe"),
        (with_actions, "xdp_np_actions"),
    ] {
        let mut storage = MaybeUninit::uninit();
        let skel = netprobe::xdp::load(&mut storage, &opts).expect("loading the XDP program");
        assert_eq!(netprobe::xdp::program(&skel).name(), name);
        classify_every_frame(&skel);
    }
}

fn classify_every_frame(s: &netprobe::skel::xdp::XdpSkel<'_>) {
    // Well-formed frames of every class.
    expect(s, "udp4", &udp4_frame(53, 18), &["ipv4", "udp"]);
    expect(s, "tcp4", &tcp4_frame(80, 0), &["ipv4", "tcp"]);
    expect(s, "icmp4", &icmp4_frame(56), &["ipv4", "icmp"]);
    expect(s, "udp6", &udp6_frame(53, 10), &["ipv6", "udp"]);
    expect(s, "tcp6", &tcp6_frame(80, 100), &["ipv6", "tcp"]);
    expect(s, "icmp6", &icmp6_frame(56), &["ipv6", "icmpv6"]);
    expect(s, "arp", &arp_frame(), &["arp"]);
    expect(s, "lldp", &eth(0x88cc, &[0u8; 46]), &["other"]);
    expect(
        s,
        "gre over ipv4",
        &eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_GRE, &[0u8; 8])),
        &["ipv4"],
    );
    expect(
        s,
        "icmp (v4 number) over ipv6",
        &eth(
            ETH_IPV6,
            &ipv6(IP6_A, IP6_B, PROTO_ICMP, &icmp_echo(1, 1, b"")),
        ),
        &["ipv6"],
    );

    // Ethernet padding after the IP packet is part of the frame, not an error.
    let mut padded = udp4_frame(53, 0);
    padded.resize(60, 0);
    expect(s, "udp4 padded to 60", &padded, &["ipv4", "udp"]);

    // IPv4 options and fragments.
    let opts = [1u8; 12]; // NOPs
    expect(
        s,
        "ipv4 with options",
        &eth(
            ETH_IPV4,
            &ipv4_opts(IP4_A, IP4_B, PROTO_UDP, 0, &opts, &ip4_udp(b"x")),
        ),
        &["ipv4", "udp"],
    );
    expect(
        s,
        "ipv4 first fragment",
        &eth(
            ETH_IPV4,
            &ipv4_opts(IP4_A, IP4_B, PROTO_UDP, 0x2000, &[], &ip4_udp(&[0; 32])),
        ),
        &["ipv4", "udp"],
    );
    expect(
        s,
        "ipv4 later fragment",
        &eth(
            ETH_IPV4,
            &ipv4_opts(IP4_A, IP4_B, PROTO_UDP, 100, &[], &[0u8; 3]),
        ),
        &["ipv4"],
    );

    // VLAN tags: one 802.1Q, and 802.1ad outer + 802.1Q inner.
    let udp4 = ipv4(IP4_A, IP4_B, PROTO_UDP, &ip4_udp(b"vlan"));
    expect(
        s,
        "vlan udp4",
        &eth_tagged(MAC_B, MAC_A, &[(ETH_VLAN, 10)], ETH_IPV4, &udp4),
        &["ipv4", "udp"],
    );
    let icmp6 = ipv6(
        IP6_A,
        IP6_B,
        PROTO_ICMPV6,
        &icmpv6_echo(IP6_A, IP6_B, 1, 1, b"qinq"),
    );
    expect(
        s,
        "qinq icmp6",
        &eth_tagged(
            MAC_B,
            MAC_A,
            &[(ETH_QINQ, 100), (ETH_VLAN, 10)],
            ETH_IPV6,
            &icmp6,
        ),
        &["ipv6", "icmpv6"],
    );
    expect(
        s,
        "vlan arp",
        &eth_tagged(
            [0xff; 6],
            MAC_A,
            &[(ETH_VLAN, 10)],
            ETH_ARP,
            &arp_request(MAC_A, IP4_A, IP4_B),
        ),
        &["arp"],
    );
    expect(
        s,
        "three tags (more than netprobe follows)",
        &eth_tagged(
            MAC_B,
            MAC_A,
            &[(ETH_QINQ, 1), (ETH_VLAN, 2), (ETH_VLAN, 3)],
            ETH_IPV4,
            &udp4,
        ),
        &["other"],
    );

    // IPv6 extension headers in front of the transport.
    let chain = ipv6_ext(
        43,
        0,
        &ipv6_ext(60, 1, &ipv6_ext(PROTO_UDP, 0, &ip6_udp(b"ext"))),
    );
    expect(
        s,
        "ipv6 hop-by-hop, routing, dst-opts, udp",
        &eth(ETH_IPV6, &ipv6(IP6_A, IP6_B, 0, &chain)),
        &["ipv6", "udp"],
    );
    expect(
        s,
        "ipv6 first fragment tcp",
        &eth(
            ETH_IPV6,
            &ipv6(IP6_A, IP6_B, 44, &ipv6_frag(PROTO_TCP, 0, true, &ip6_tcp())),
        ),
        &["ipv6", "tcp"],
    );
    expect(
        s,
        "ipv6 later fragment",
        &eth(
            ETH_IPV6,
            &ipv6(
                IP6_A,
                IP6_B,
                44,
                &ipv6_frag(PROTO_TCP, 10, false, &[0u8; 16]),
            ),
        ),
        &["ipv6"],
    );
    // A fragment header cut short is malformed, even one whose first bytes
    // say "later fragment" (found by tests/fuzz.rs).
    expect(
        s,
        "ipv6 fragment header cut",
        &eth(
            ETH_IPV6,
            &ipv6(IP6_A, IP6_B, 44, &ipv6_frag(PROTO_TCP, 10, false, &[])[..7]),
        ),
        &["malformed"],
    );
    expect(
        s,
        "ipv6 ah tcp",
        &eth(
            ETH_IPV6,
            &ipv6(IP6_A, IP6_B, 51, &ipv6_ah(PROTO_TCP, 4, &ip6_tcp())),
        ),
        &["ipv6", "tcp"],
    );
    let mut deep = ip6_udp(b"deep");
    for _ in 0..9 {
        deep = ipv6_ext(if deep.len() > 20 { 60 } else { PROTO_UDP }, 0, &deep);
    }
    expect(
        s,
        "ipv6 with more extension headers than followed",
        &eth(ETH_IPV6, &ipv6(IP6_A, IP6_B, 60, &deep)),
        &["ipv6"],
    );

    // Broken and truncated frames: counted as malformed, nothing else.
    let good4 = ipv4(IP4_A, IP4_B, PROTO_UDP, &ip4_udp(&[7; 20]));
    expect(
        s,
        "ethernet header only",
        &eth(ETH_IPV4, &[]),
        &["malformed"],
    );
    expect(
        s,
        "ipv4 header cut",
        &eth(ETH_IPV4, &good4[..12]),
        &["malformed"],
    );
    let mut bad = good4.clone();
    bad[0] = 0x44; // IHL 4
    expect(s, "ipv4 ihl < 5", &eth(ETH_IPV4, &bad), &["malformed"]);
    let mut bad = good4.clone();
    bad[0] = 0x65; // version 6 in an IPv4 ethertype
    expect(
        s,
        "ipv4 wrong version",
        &eth(ETH_IPV4, &bad),
        &["malformed"],
    );
    expect(
        s,
        "ipv4 total length past the frame",
        &eth(ETH_IPV4, &good4[..good4.len() - 4]),
        &["malformed"],
    );
    let mut bad = good4.clone();
    bad[0] = 0x4f; // IHL 15: 60 bytes, more than the packet's 48
    bad[2..4].copy_from_slice(&40u16.to_be_bytes());
    expect(
        s,
        "ipv4 header longer than the total length",
        &eth(ETH_IPV4, &bad),
        &["malformed"],
    );
    expect(
        s,
        "udp header cut",
        &eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_UDP, &[0u8; 6])),
        &["malformed"],
    );
    let mut bad_udp = ip4_udp(b"");
    bad_udp[4..6].copy_from_slice(&4u16.to_be_bytes());
    expect(
        s,
        "udp length < 8",
        &eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_UDP, &bad_udp)),
        &["malformed"],
    );
    expect(
        s,
        "tcp header cut",
        &eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_TCP, &[0u8; 12])),
        &["malformed"],
    );
    let mut bad_tcp = tcp(IP4_A.into(), IP4_B.into(), 1, 2, TCP_SYN, b"");
    bad_tcp[12] = 4 << 4;
    expect(
        s,
        "tcp data offset < 5",
        &eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_TCP, &bad_tcp)),
        &["malformed"],
    );
    let mut long_tcp = tcp(IP4_A.into(), IP4_B.into(), 1, 2, TCP_SYN, b"");
    long_tcp[12] = 15 << 4; // 60-byte header in a 20-byte segment
    expect(
        s,
        "tcp data offset past the packet",
        &eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_TCP, &long_tcp)),
        &["malformed"],
    );
    expect(
        s,
        "icmp cut",
        &eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, PROTO_ICMP, &[8, 0, 0, 0])),
        &["malformed"],
    );
    let good6 = ipv6(IP6_A, IP6_B, PROTO_UDP, &ip6_udp(b"six"));
    expect(
        s,
        "ipv6 header cut",
        &eth(ETH_IPV6, &good6[..30]),
        &["malformed"],
    );
    expect(
        s,
        "ipv6 payload length past the frame",
        &eth(ETH_IPV6, &good6[..good6.len() - 2]),
        &["malformed"],
    );
    let mut bad = good6.clone();
    bad[0] = 0x40;
    expect(
        s,
        "ipv6 wrong version",
        &eth(ETH_IPV6, &bad),
        &["malformed"],
    );
    let ext_too_long = ipv6_ext(PROTO_UDP, 0, &[]);
    let mut ext_too_long = ext_too_long;
    ext_too_long[1] = 20; // claims 168 bytes
    expect(
        s,
        "ipv6 extension header past the packet",
        &eth(ETH_IPV6, &ipv6(IP6_A, IP6_B, 0, &ext_too_long)),
        &["malformed"],
    );
    expect(
        s,
        "ipv6 extension header cut",
        &eth(ETH_IPV6, &ipv6(IP6_A, IP6_B, 60, &[PROTO_UDP, 0])),
        &["malformed"],
    );
    expect(
        s,
        "icmpv6 cut",
        &eth(
            ETH_IPV6,
            &ipv6(IP6_A, IP6_B, PROTO_ICMPV6, &[128, 0, 0, 0, 0]),
        ),
        &["malformed"],
    );
    let arp = arp_request(MAC_A, IP4_A, IP4_B);
    expect(s, "arp cut", &eth(ETH_ARP, &arp[..20]), &["malformed"]);
    expect(
        s,
        "arp header cut",
        &eth(ETH_ARP, &arp[..6]),
        &["malformed"],
    );
    expect(s, "vlan tag cut", &eth(ETH_VLAN, &[0, 10]), &["malformed"]);
    expect(
        s,
        "inner vlan tag cut",
        &eth_tagged(MAC_B, MAC_A, &[(ETH_QINQ, 1)], ETH_VLAN, &[0]),
        &["malformed"],
    );
}

#[test]
fn counts_repeated_runs_exactly() {
    common::require_root();
    let mut storage = MaybeUninit::uninit();
    let skel = netprobe::xdp::load(&mut storage, &Default::default()).unwrap();
    let frame = tcp4_frame(443, 100);
    let out = netprobe::xdp::program(&skel)
        .test_run(ProgramInput {
            data_in: Some(&frame),
            repeat: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.return_value, 2);
    let stats = netprobe::xdp::read_stats(&skel).unwrap();
    let want = Counter {
        packets: 1000,
        bytes: 1000 * frame.len() as u64,
    };
    let protocols = stats.protocols();
    assert_eq!(protocols[0], want, "ipv4");
    assert_eq!(protocols[3], want, "tcp");
    assert_eq!(stats.verdicts()[2], want, "pass");
    let others: u64 = [1, 2, 4, 5, 6, 7, 8]
        .iter()
        .map(|&i| protocols[i].packets)
        .sum();
    assert_eq!(others, 0);
}

#[test]
fn internet_checksum_of_a_known_header() {
    let h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(checksum(&h, 0), 0xb861);
}
