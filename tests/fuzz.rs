//! Differential fuzzing through BPF_PROG_TEST_RUN: a million generated and
//! mutated frames through the XDP program, each classified again by an
//! independent classifier in Rust that reads headers with etherparse; and
//! random rule sets (table rules, clauses and libpcap's programs mixed)
//! over random frames, each verdict of the XDP program and of the socket
//! filter checked against the rules' meaning, libpcap's programs for them.
//! Every disagreement fails with the frame in hex and the seed
//! (`NETPROBE_FUZZ_SEED=N` replays a run).
mod common;

use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::cbpf::accepts;
use common::corpus::untagged;
use etherparse::{
    Ethernet2Header, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6Header, Ipv6RawExtHeaderSlice,
    SingleVlanHeader, TcpHeaderSlice, UdpHeaderSlice,
};
use libbpf_rs::{OpenObject, ProgramInput};
use netprobe::filter::capacity::Capacity;
use netprobe::filter::compile::{MAX_CELLS, MAX_PROGRAMS};
use netprobe::filter::model::Rule;
use netprobe::filter::pcap::{self, Insn};
use netprobe::filter::tables::RuleState;
use netprobe::filter::{parse, Action, Compiled};
use netprobe::kernel::counters::{Stats, PROTOCOLS};
use netprobe::skel::sockfilter::SockfilterSkel;
use netprobe::skel::xdp::XdpSkel;
use netprobe::sockfilter;
use netprobe::xdp::{load, program, read_stats, rule_tables, LoadOptions};

/// Frames through the classifier per run.
const FRAMES: usize = 1_000_000;
/// Rule sets, and frames through each, for the matcher.
const RULE_SETS: usize = 200;
const FRAMES_PER_RULE_SET: usize = 500;

/// xorshift64*: small, fast, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn seed() -> u64 {
    std::env::var("NETPROBE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- The independent classifier ------------------------------------------
//
// netprobe's documented classes (README "What is counted"): every frame is
// one of ipv4, ipv6, arp, other, malformed; an IP frame whose transport
// header was parsed is also one of tcp, udp, icmp, icmpv6. Headers are read
// with etherparse; the rules that decide are netprobe's: up to two VLAN
// tags, Ethernet padding allowed after the IP packet, a later fragment has
// no transport header, up to eight IPv6 extension headers are followed (the
// AH length as the kernel reads it, (len + 2) * 4, which etherparse refuses
// for len 0), and a truncated or inconsistent header anywhere is malformed.

const MALFORMED: &str = "malformed";

/// What a frame is: its network class and its transport class if any.
#[derive(Clone, Debug, PartialEq)]
struct Classified {
    l3: &'static str,
    l4: Option<&'static str>,
}

fn malformed() -> Classified {
    Classified {
        l3: MALFORMED,
        l4: None,
    }
}

/// The transport header of `proto` at the start of `l4` (which ends where
/// the IP packet ends).
fn transport(mut c: Classified, proto: u8, l4: &[u8]) -> Classified {
    let v6 = c.l3 == "ipv6";
    match proto {
        6 => match TcpHeaderSlice::from_slice(l4) {
            Ok(_) => c.l4 = Some("tcp"),
            Err(_) => return malformed(),
        },
        17 => match UdpHeaderSlice::from_slice(l4) {
            Ok(u) if u.length() >= 8 => {
                c.l4 = Some("udp");
            }
            _ => return malformed(),
        },
        // Every ICMP message has at least 8 bytes; types are not checked.
        1 if !v6 => {
            if l4.len() < 8 {
                return malformed();
            }
            c.l4 = Some("icmp");
        }
        58 if v6 => {
            if l4.len() < 8 {
                return malformed();
            }
            c.l4 = Some("icmpv6");
        }
        _ => {}
    }
    c
}

fn ipv4(rest: &[u8]) -> Classified {
    let Ok(h) = Ipv4HeaderSlice::from_slice(rest) else {
        return malformed();
    };
    // etherparse reads the header; that the packet holds it and fits the
    // frame is netprobe's rule.
    let total = usize::from(h.total_len());
    if total < h.slice().len() || total > rest.len() {
        return malformed();
    }
    let c = Classified {
        l3: "ipv4",
        l4: None,
    };
    if h.fragments_offset().value() != 0 {
        return c;
    }
    transport(c, h.protocol().0, &rest[h.slice().len()..total])
}

fn ipv6(rest: &[u8]) -> Classified {
    let Ok((h, _)) = Ipv6Header::from_slice(rest) else {
        return malformed();
    };
    let end = 40 + usize::from(h.payload_length);
    if end > rest.len() {
        return malformed();
    }
    let c = Classified {
        l3: "ipv6",
        l4: None,
    };
    let mut payload = &rest[40..end];
    let mut next = h.next_header.0;
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 | 135 => match Ipv6RawExtHeaderSlice::from_slice(payload) {
                Ok(e) => {
                    next = e.next_header().0;
                    e.slice().len()
                }
                Err(_) => return malformed(),
            },
            44 => match Ipv6FragmentHeaderSlice::from_slice(payload) {
                Ok(f) if f.fragment_offset().value() != 0 => return c,
                Ok(f) => {
                    next = f.next_header().0;
                    8
                }
                Err(_) => return malformed(),
            },
            51 => {
                let len = payload.get(1).map(|&l| (usize::from(l) + 2) * 4);
                match len {
                    Some(len) if len <= payload.len() => {
                        next = payload[0];
                        len
                    }
                    _ => return malformed(),
                }
            }
            proto => return transport(c, proto, payload),
        };
        payload = &payload[len..];
    }
    c
}

fn arp(rest: &[u8]) -> Classified {
    if rest.len() < 8 {
        return malformed();
    }
    let (hln, pln) = (usize::from(rest[4]), usize::from(rest[5]));
    if rest.len() < 8 + 2 * (hln + pln) {
        return malformed();
    }
    Classified {
        l3: "arp",
        l4: None,
    }
}

fn classify_reference(frame: &[u8]) -> Classified {
    let Ok((eth, mut rest)) = Ethernet2Header::from_slice(frame) else {
        return malformed();
    };
    let mut ethertype = eth.ether_type.0;
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        let Ok((vlan, after)) = SingleVlanHeader::from_slice(rest) else {
            return malformed();
        };
        ethertype = vlan.ether_type.0;
        rest = after;
    }
    match ethertype {
        0x0800 => ipv4(rest),
        0x86dd => ipv6(rest),
        0x0806 => arp(rest),
        _ => Classified {
            l3: "other",
            l4: None,
        },
    }
}

// ---- Frames ----------------------------------------------------------------

const ADDRS4: [[u8; 4]; 4] = [
    [198, 18, 0, 1],
    [198, 18, 0, 2],
    [198, 18, 1, 7],
    [10, 0, 0, 1],
];
const ADDRS6: [[u16; 8]; 3] = [
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 9],
];
const PORTS: [u16; 7] = [0, 9, 53, 80, 443, 1500, 40000];
const MACS: [[u8; 6]; 3] = [
    [0x02, 0, 0, 0, 0, 0x0a],
    [0xff; 6],
    [0x01, 0, 0x5e, 0, 0, 0xfb],
];

fn v6(a: [u16; 8]) -> [u8; 16] {
    std::net::Ipv6Addr::from(a).octets()
}

/// A length field: mostly right, sometimes an edge value.
fn length(rng: &mut Rng, right: usize) -> u16 {
    if rng.chance(85) {
        return right as u16;
    }
    let random = rng.next() as usize;
    rng.pick(&[
        0,
        1,
        7,
        8,
        right.saturating_sub(1),
        right + 1,
        0xffff,
        random,
    ]) as u16
}

fn transport_bytes(rng: &mut Rng, proto: u8) -> Vec<u8> {
    let n = rng.pick(&[0, 1, 4, 18, 64]);
    let payload = rng.bytes(n);
    match proto {
        6 => {
            let mut h = rng.bytes(20);
            h[0..2].copy_from_slice(&rng.pick(&PORTS).to_be_bytes());
            h[2..4].copy_from_slice(&rng.pick(&PORTS).to_be_bytes());
            let opts = rng.pick(&[0, 0, 4, 12]);
            let doff = if rng.chance(85) {
                (20 + opts) / 4
            } else {
                rng.below(16)
            };
            h[12] = (doff as u8) << 4;
            h.extend(rng.bytes(opts));
            h.extend(payload);
            h
        }
        17 => {
            let mut h = rng.bytes(8);
            h[0..2].copy_from_slice(&rng.pick(&PORTS).to_be_bytes());
            h[2..4].copy_from_slice(&rng.pick(&PORTS).to_be_bytes());
            let len = length(rng, 8 + payload.len());
            h[4..6].copy_from_slice(&len.to_be_bytes());
            h.extend(payload);
            h
        }
        1 | 58 => {
            let mut h = vec![rng.pick(&[0, 3, 8, 128, 129, 135]), 0];
            let n = rng.pick(&[2, 6, 6, 6, 20]);
            h.extend(rng.bytes(n));
            h.extend(payload);
            h
        }
        _ => payload,
    }
}

fn ipv4_bytes(rng: &mut Rng) -> Vec<u8> {
    let random = rng.next() as u8;
    let proto = rng.pick(&[6, 17, 1, 1, 58, 47, random]);
    let l4 = transport_bytes(rng, proto);
    let opts = rng.pick(&[0, 0, 0, 4, 8, 40]);
    let hlen = 20 + opts;
    let mut h = rng.bytes(hlen);
    let ihl = if rng.chance(90) {
        hlen / 4
    } else {
        rng.below(16)
    };
    h[0] = if rng.chance(97) {
        0x40
    } else {
        (rng.next() as u8) & 0xf0
    } | ihl as u8;
    h[2..4].copy_from_slice(&length(rng, hlen + l4.len()).to_be_bytes());
    let frag: u16 = match rng.below(10) {
        0 => 0x2000,                              // first fragment
        1 => rng.below(0x1fff) as u16 + 1,        // a later one
        2 => 0x2000 | (rng.below(0x1fff) as u16), // either
        _ => 0x4000,                              // DF
    };
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[9] = proto;
    h[12..16].copy_from_slice(&rng.pick(&ADDRS4));
    h[16..20].copy_from_slice(&rng.pick(&ADDRS4));
    h.extend(l4);
    h
}

fn ipv6_bytes(rng: &mut Rng) -> Vec<u8> {
    let random = rng.next() as u8;
    let proto = rng.pick(&[6, 17, 58, 58, 1, 47, random]);
    let mut chain: Vec<u8> = Vec::new();
    let mut next = proto;
    // Extension headers, innermost first, each pointing at what follows.
    let n = rng.pick(&[0, 0, 0, 1, 2, 3, 7, 8, 9]);
    let mut headers: Vec<Vec<u8>> = Vec::new();
    for _ in 0..n {
        let kind = rng.pick(&[0u8, 43, 60, 135, 44, 51]);
        let mut e = match kind {
            44 => {
                let mut f = rng.bytes(8);
                let off: u16 = if rng.chance(70) {
                    0
                } else {
                    (rng.below(0x1fff) as u16) << 3
                };
                f[2..4].copy_from_slice(&(off | rng.below(2) as u16).to_be_bytes());
                f
            }
            51 => {
                let units = rng.pick(&[0, 1, 2, 4]);
                let mut a = rng.bytes((units + 2) * 4);
                a[1] = units as u8;
                a
            }
            _ => {
                let units = rng.pick(&[0, 0, 1, 3]);
                let mut o = rng.bytes((units + 1) * 8);
                o[1] = units as u8;
                o
            }
        };
        e[0] = next;
        if rng.chance(5) {
            e[1] = rng.next() as u8; // a length that lies
        }
        next = kind;
        headers.push(e);
    }
    for e in headers.iter().rev() {
        chain.extend(e);
    }
    chain.extend(transport_bytes(rng, proto));
    let mut h = rng.bytes(40);
    h[0] = if rng.chance(97) {
        0x60
    } else {
        rng.next() as u8
    };
    h[4..6].copy_from_slice(&length(rng, chain.len()).to_be_bytes());
    h[6] = next;
    h[8..24].copy_from_slice(&v6(rng.pick(&ADDRS6)));
    h[24..40].copy_from_slice(&v6(rng.pick(&ADDRS6)));
    h.extend(chain);
    h
}

fn arp_bytes(rng: &mut Rng) -> Vec<u8> {
    let (hln, pln) = if rng.chance(85) {
        (6, 4)
    } else {
        (rng.pick(&[0, 6, 8, 255]), rng.pick(&[0, 4, 16, 255]))
    };
    let mut a = vec![0, 1, 8, 0, hln, pln, 0, 1];
    a.extend(rng.bytes(2 * (usize::from(hln) + usize::from(pln))));
    if hln == 6 && pln == 4 {
        a[14..18].copy_from_slice(&rng.pick(&ADDRS4));
        a[24..28].copy_from_slice(&rng.pick(&ADDRS4));
    }
    a
}

/// A frame: Ethernet, 0-3 VLAN tags, a network layer and what it carries;
/// then, sometimes, truncated or with bits flipped.
fn frame(rng: &mut Rng) -> Vec<u8> {
    let mut f = rng.bytes(12);
    // Now and then the addresses and VLAN ids the rules name.
    for at in [0, 6] {
        if rng.chance(30) {
            f[at..at + 6].copy_from_slice(&rng.pick(&MACS));
        }
    }
    for _ in 0..rng.pick(&[0, 0, 0, 1, 2, 3]) {
        f.extend_from_slice(&rng.pick(&[0x8100u16, 0x88a8]).to_be_bytes());
        let random = rng.below(4096) as u16;
        f.extend_from_slice(&rng.pick(&[10, 20, random]).to_be_bytes());
    }
    let (ethertype, l3) = match rng.below(10) {
        0..=3 => (0x0800u16, ipv4_bytes(rng)),
        4..=6 => (0x86dd, ipv6_bytes(rng)),
        7 => (0x0806, arp_bytes(rng)),
        8 => (0x88cc, rng.bytes(46)),
        _ => {
            let n = rng.below(80);
            (rng.next() as u16, rng.bytes(n))
        }
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    let l3_at = f.len();
    f.extend(l3);
    if rng.chance(15) {
        let n = rng.below(40);
        f.extend(rng.bytes(n)); // Ethernet padding
    }
    if rng.chance(15) {
        f.truncate(rng.below(f.len() + 1));
    } else if rng.chance(8) {
        // Into the addresses, where libpcap compares the words a frame
        // has of a prefix.
        f.truncate(l3_at + 8 + rng.below(33));
    }
    if rng.chance(15) {
        for _ in 0..1 + rng.below(3) {
            if !f.is_empty() {
                let at = rng.below(f.len());
                f[at] ^= 1 << rng.below(8);
            }
        }
    }
    f
}

// ---- Running frames through the program ------------------------------------

fn run(skel: &XdpSkel<'_>, frame: &[u8]) -> u32 {
    program(skel)
        .test_run(ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

/// Whether the socket filter lets `frame` through (returns a length), run
/// as an AF_PACKET socket runs it: BPF_PROG_TEST_RUN pulls an Ethernet
/// header first, as the stack does before AF_PACKET pushes it back, so the
/// frame gets one extra header in front. Its EtherType is an experimental
/// one: the kernel refuses an IPv4 or IPv6 one with less than an IP header
/// behind it.
fn captures(skel: &SockfilterSkel<'_>, frame: &[u8]) -> bool {
    let mut input = vec![0u8; 14];
    input[12..].copy_from_slice(&0x88b5u16.to_be_bytes());
    input.extend_from_slice(frame);
    skel.progs
        .sockfilter_netprobe
        .test_run(ProgramInput {
            data_in: Some(&input),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN {}: {e}", frame.len()))
        .return_value
        > 0
}

/// The classes a frame counted in, by name, from the change in the stats.
fn counted_classes(delta: &Stats) -> Vec<&'static str> {
    delta
        .protocols()
        .iter()
        .zip(PROTOCOLS)
        .filter(|(c, _)| c.packets > 0)
        .map(|(_, name)| name)
        .collect()
}

#[test]
fn the_frame_parser_agrees_with_an_independent_classifier() {
    common::require_root();
    let seed = seed();
    let mut rng = Rng(seed);
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &LoadOptions::default()).expect("loading the XDP program");
    let started = Instant::now();
    let mut before = read_stats(&skel).unwrap();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    // Frames too short for the kernel's test run (it needs an Ethernet
    // header) are classified by the reference only.
    for i in 0..FRAMES {
        let f = frame(&mut rng);
        let want = classify_reference(&f);
        if f.len() < 14 {
            assert_eq!(want.l3, MALFORMED, "frame {}", hex(&f));
            continue;
        }
        assert_eq!(run(&skel, &f), 2, "XDP_PASS for {}", hex(&f));
        let after = read_stats(&skel).unwrap();
        let got = counted_classes(&after.since(&before));
        before = after;
        let mut expected: Vec<&str> = vec![want.l3];
        expected.extend(want.l4);
        let order = |v: &mut Vec<&str>| v.sort_by_key(|n| PROTOCOLS.iter().position(|p| p == n));
        order(&mut expected);
        assert_eq!(
            got,
            expected,
            "frame {i} of seed {seed} ({} bytes): netprobe counted {got:?}, the reference says \
             {expected:?}\n{}",
            f.len(),
            hex(&f)
        );
        *seen.entry(expected.join("+")).or_default() += 1;
    }
    eprintln!(
        "fuzz: {FRAMES} frames, seed {seed}, {:.1}s; classes: {seen:?}",
        started.elapsed().as_secs_f64()
    );
    // The generator reaches every class.
    for class in PROTOCOLS {
        assert!(
            seen.keys().any(|k| k.split('+').any(|c| c == class)),
            "no frame of class {class}"
        );
    }
}

// ---- The rule matcher --------------------------------------------------------

fn random_rule(rng: &mut Rng) -> String {
    let addr = |rng: &mut Rng| -> String {
        if rng.chance(50) {
            IpAddr::from(rng.pick(&ADDRS4)).to_string()
        } else {
            IpAddr::from(v6(rng.pick(&ADDRS6))).to_string()
        }
    };
    let net = |rng: &mut Rng| -> String {
        // Lengths on both sides of the address slots' 16 bits and the
        // IPv4 blocks' 24 (src/filter/addr.rs).
        rng.pick(&[
            "198.18.0.0/15",
            "198.18.0.0/16",
            "198.18.0.0/23",
            "198.18.1.0/24",
            "198.18.1.0/25",
            "198.18.0.0/30",
            "10.0.0.0/8",
            "10.0.0.0/12",
            "2000::/3",
            "2001:db8::/32",
            "2001:db8::/40",
            "2001:db8:1::/48",
            "2001:db8::/64",
            "2001:db8::/96",
            "2001:db8::/127",
            // Masks no word: libpcap reads no address.
            "0.0.0.0/0",
            "::/0",
        ])
        .to_string()
    };
    let dir = |rng: &mut Rng| rng.pick(&["", "src ", "dst "]);
    let qualifier = |rng: &mut Rng| rng.pick(&["", "", "ip ", "ip6 ", "arp ", "rarp "]);
    let primitive = |rng: &mut Rng| -> String {
        match rng.below(11) {
            // Beyond the tables: libpcap's programs, run beside them.
            10 => rng
                .pick(&[
                    "vlan",
                    "vlan 10",
                    "vlan 20 and vlan 10",
                    "ether host 02:00:00:00:00:0a",
                    "ether src 02:00:00:00:00:0a",
                    "ether broadcast",
                    "ether multicast",
                    "ip multicast",
                    "ip6 multicast",
                    "ether proto \\ip6",
                    "ip6 protochain 6",
                    "greater 100",
                    "less 64",
                    "len >= 60",
                    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
                    "icmp[icmptype] == icmp-echo",
                    "icmp6[icmp6type] == icmp6-echo",
                    "ip[8] < 64",
                    "udp[2:2] == 53",
                    "net 10.0",
                    "port domain",
                ])
                .to_string(),
            0 => rng
                .pick(&[
                    "tcp",
                    "udp",
                    "icmp",
                    "icmp6",
                    "arp",
                    "rarp",
                    "ip",
                    "ip6",
                    "sctp",
                    "igmp",
                    "esp",
                    "ah",
                    "gre",
                    "proto 17",
                    "ip proto 6",
                    "ip6 proto 58",
                    "ip6 proto 44",
                ])
                .to_string(),
            1 | 2 => format!("{}{}host {}", qualifier(rng), dir(rng), addr(rng)),
            3 => format!("{}{}net {}", qualifier(rng), dir(rng), net(rng)),
            9 => format!(
                "{}src or dst port {}",
                rng.pick(&["", "tcp ", "udp ", "sctp "]),
                rng.pick(&PORTS)
            ),
            4 => format!("{}port {}", dir(rng), rng.pick(&PORTS)),
            // A bare value after `or`/`and` takes the qualifiers before it.
            5 => format!(
                "{}{}port {} {} {}",
                rng.pick(&["", "tcp ", "udp "]),
                dir(rng),
                rng.pick(&PORTS),
                rng.pick(&["or", "and", "||"]),
                rng.pick(&PORTS)
            ),
            7 => format!(
                "{}{}host {} or {}",
                qualifier(rng),
                dir(rng),
                addr(rng),
                addr(rng)
            ),
            6 => format!(
                "{}portrange {}",
                dir(rng),
                rng.pick(&["0-9", "1-100", "53-443", "1000-50000"])
            ),
            _ => rng.pick(&["tcp", "udp"]).to_string(),
        }
    };
    let words = (0..1 + rng.below(3))
        .map(|_| primitive(rng))
        .collect::<Vec<_>>();
    // `and` and `or` in every grouping; now and then a `not`, which the
    // tables cannot hold.
    let last = words.len() - 1;
    match rng.below(8) {
        0 => format!("not ({})", words.join(" and ")),
        1 | 2 => words.join(rng.pick(&[" or ", " || "])),
        3 if last > 0 => format!("{} and not ({})", words[0], words[1..].join(" or ")),
        4 if last > 0 => format!("({}) and {}", words[..last].join(" or "), words[last]),
        5 if last > 0 => format!("{} or ({})", words[0], words[1..].join(" && ")),
        6 => words[1..].iter().fold(words[0].clone(), |rule, word| {
            format!("{rule} {} {word}", rng.pick(&["and", "or"]))
        }),
        _ => words.join(" and "),
    }
}

/// A rule's meaning: tcpdump's program for it. Where libpcap's optimizer
/// wrongly finds that a rule rejects every packet (tcpdump then refuses
/// it; netprobe's tables match what it says), the unoptimized program.
fn reference_program(rule: &str) -> Result<Vec<Insn>, String> {
    match pcap::compile(rule) {
        Err(m) if m == "expression rejects all packets" => pcap::compile_unoptimized(rule),
        compiled => compiled,
    }
}

/// The rules' meaning, tcpdump's: the first rule whose libpcap program
/// accepts the frame. A rule made of fields looks through up to two VLAN
/// tags (README: where netprobe differs from tcpdump), so its reference is
/// the frame without them.
fn first_match(rules: &[Rule], programs: &[Vec<Insn>], frame: &[u8]) -> Option<usize> {
    let plain = untagged(frame);
    rules.iter().zip(programs).position(|(rule, program)| {
        let seen = if rule.looks_through_vlan() {
            &plain[..]
        } else {
            frame
        };
        accepts(program, seen)
    })
}

/// Loading options with room for `rules` rules and as many programs, any
/// rows a shape may read, and blocks and entries to spare.
fn options_for(rules: u32) -> LoadOptions {
    LoadOptions {
        rules: Some(Capacity {
            rules,
            entries: 1 << 16,
            programs: rules,
            cells: MAX_CELLS as u32,
            blocks: 256,
            addr_rows: 4096,
            row_fields: 0xf,
        }),
        ..Default::default()
    }
}

#[test]
fn the_rule_matcher_agrees_with_the_rules_meaning() {
    common::require_root();
    let seed = seed();
    let mut rng = Rng(seed);
    let opts = options_for(64);
    let mut storage = MaybeUninit::uninit();
    let roomy = load(&mut storage, &opts).expect("loading the XDP program with rules");
    // Room for two blocks, where the addresses below (198.18, 10.0 and
    // 2001:db8) would take more: two slots get a block by the next byte,
    // and every longer prefix that block and the other slots do not hold
    // goes to the hash.
    let mut tight_opts = options_for(64);
    tight_opts.rules.as_mut().unwrap().blocks = 2;
    let mut tight_storage = MaybeUninit::uninit();
    let tight = load(&mut tight_storage, &tight_opts).expect("loading the XDP program with rules");
    let caps = [opts.rules.unwrap(), tight_opts.rules.unwrap()];
    let mut states = caps.map(RuleState::new);
    // The socket filter over the same tables and frames: it has no direct
    // path, and copies only the headers unless some rule runs a libpcap
    // program (as `netprobe sockfilter` loads it). Roomy and tight, each
    // copying headers or whole frames.
    let mut sock_storage: Vec<MaybeUninit<OpenObject>> =
        (0..4).map(|_| MaybeUninit::uninit()).collect();
    let socks: Vec<SockfilterSkel<'_>> = sock_storage
        .iter_mut()
        .enumerate()
        .map(|(i, storage)| {
            let opts = sockfilter::LoadOptions {
                rules: Some(caps[i % 2]),
                whole_frames: i >= 2,
                ..Default::default()
            };
            sockfilter::load(storage, &opts).expect("loading the socket filter with rules")
        })
        .collect();
    let mut sock_states: Vec<RuleState> = (0..4).map(|i| RuleState::new(caps[i % 2])).collect();
    let (mut matched, mut checked, mut split) = (0, 0, 0);
    let (mut direct_sets, mut clause_sets, mut program_sets) = (0, 0, 0);
    for set in 0..RULE_SETS {
        // Every other set netprobe lays out itself is small enough for
        // the direct path, as its rules allow.
        let most = if set % 6 == 0 { 3 } else { 12 };
        let rules: Vec<Rule> = (0..1 + rng.below(most))
            .filter_map(|_| parse(&random_rule(&mut rng), Action::Drop).ok())
            .collect();
        let programs: Vec<Vec<Insn>> = rules
            .iter()
            .map(|r| reference_program(&r.text).unwrap_or_else(|m| {
                panic!("rule set {set} of seed {seed}: libpcap refuses {:?}, which netprobe took: {m}", r.text)
            }))
            .collect();
        let unoptimized: Vec<Vec<Insn>> = rules
            .iter()
            .map(|r| pcap::compile_unoptimized(&r.text).unwrap())
            .collect();
        // Each set in one of three layouts, in turn: as netprobe lays it
        // out (small sets are matched directly, not through the tables);
        // through the tables; through the tables with shape classes of
        // their own wherever a field can have them.
        let compiled = match set % 3 {
            0 => Compiled::compile(&rules),
            1 => Compiled::compile_tables_only(&rules),
            _ => Compiled::compile_with_own_classes(&rules),
        }
        .unwrap();
        direct_sets += usize::from(!compiled.direct.is_empty());
        clause_sets += usize::from(compiled.programs.iter().any(|p| p.held));
        program_sets += usize::from(compiled.programs.iter().any(|p| !p.held));
        let texts: Vec<&str> = rules.iter().map(|r| r.text.as_str()).collect();
        // Each layout with the tables roomy and tight, in turn.
        let skel = if set % 2 == 0 { &roomy } else { &tight };
        states[set % 2]
            .install(&rule_tables(skel), &rules, &compiled)
            .unwrap_or_else(|e| panic!("rule set {set} of seed {seed} {texts:?}: {e:#}"));
        let sock = set % 2 + 2 * usize::from(!compiled.programs.is_empty());
        sock_states[sock]
            .install(&sockfilter::rule_tables(&socks[sock]), &rules, &compiled)
            .unwrap_or_else(|e| panic!("rule set {set} of seed {seed} {texts:?}: {e:#}"));
        for _ in 0..FRAMES_PER_RULE_SET {
            let f = frame(&mut rng);
            if f.len() < 14 {
                continue;
            }
            let want = first_match(&rules, &programs, &f);
            // Where libpcap's optimizer changes whether the set matches
            // this frame, tcpdump and `tcpdump -O` disagree, and netprobe
            // sides with one of them (README: libpcap's optimizer errors).
            if first_match(&rules, &unoptimized, &f).is_some() != want.is_some() {
                split += 1;
                continue;
            }
            let verdict = run(skel, &f);
            assert_eq!(
                verdict,
                if want.is_some() { 1 } else { 2 },
                "rule set {set} of seed {seed} {texts:?}: tcpdump's filters say rule {want:?} \
                 for frame {}",
                hex(&f)
            );
            assert_eq!(
                captures(&socks[sock], &f),
                want.is_some(),
                "rule set {set} of seed {seed} {texts:?}, socket filter: tcpdump's filters say \
                 rule {want:?} for frame {}",
                hex(&f)
            );
            checked += 1;
            matched += usize::from(want.is_some());
        }
    }
    eprintln!(
        "fuzz: {checked} frames against {RULE_SETS} rule sets ({direct_sets} matched directly, \
         {clause_sets} of them with clauses; {program_sets} with a rule of libpcap's alone), \
         {matched} matched, {split} left out where libpcap's optimizer changes the answer, seed \
         {seed}"
    );
    assert!(
        program_sets > RULE_SETS / 10,
        "the generator should give the programs work beside the tables: {program_sets} of \
         {RULE_SETS} sets"
    );
    assert!(
        split < checked / 100,
        "libpcap's optimizer should rarely change the answer: {split} frames of {checked}"
    );
    assert!(
        clause_sets > RULE_SETS / 40,
        "the generator should give the direct path clauses (`not`, `or` of different fields): \
         {clause_sets} of {RULE_SETS} sets"
    );
    assert!(
        direct_sets > RULE_SETS / 10,
        "the generator should give the direct path work: {direct_sets} of {RULE_SETS} sets"
    );
    assert!(
        matched > checked / 20 && matched < checked * 19 / 20,
        "the generator should both hit and miss: {matched} of {checked}"
    );
}

/// Checks each rule of `texts`, alone, on the direct path and through the
/// tables, against libpcap's program for it on every frame of `frames`,
/// which must both match and miss.
fn check_each_rule(texts: &[&str], frames: &[Vec<u8>]) {
    let sets: Vec<Vec<&str>> = texts.iter().map(|t| vec![*t]).collect();
    check_rule_sets(&sets, frames);
}

/// The same for each rule set of `sets`: the first rule whose program
/// accepts a frame is the one that matches it.
fn check_rule_sets(sets: &[Vec<&str>], frames: &[Vec<u8>]) {
    let opts = LoadOptions {
        rules: Some(Capacity {
            rules: 8,
            entries: 1 << 12,
            programs: 8,
            cells: MAX_CELLS as u32,
            blocks: 16,
            addr_rows: 64,
            row_fields: 0,
        }),
        ..Default::default()
    };
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &opts).expect("loading the XDP program with rules");
    let mut state = RuleState::new(opts.rules.unwrap());
    let (mut checked, mut matched) = (0, 0);
    for set in sets {
        let text = set.join("; ");
        let rules: Vec<Rule> = set
            .iter()
            .map(|t| parse(t, Action::Drop).unwrap())
            .collect();
        let programs: Vec<Vec<Insn>> = set.iter().map(|t| reference_program(t).unwrap()).collect();
        for (layout, compiled) in [
            ("direct", Compiled::compile(&rules).unwrap()),
            ("tables", Compiled::compile_tables_only(&rules).unwrap()),
        ] {
            assert_eq!(layout == "direct", !compiled.direct.is_empty(), "{text}");
            state
                .install(&rule_tables(&skel), &rules, &compiled)
                .unwrap();
            for f in frames {
                let want = first_match(&rules, &programs, f).is_some();
                assert_eq!(
                    run(&skel, f),
                    if want { 1 } else { 2 },
                    "{text} ({layout}): tcpdump's filters say {want} for frame {}",
                    hex(f)
                );
                checked += 1;
                matched += usize::from(want);
            }
        }
    }
    assert!(
        matched > checked / 10 && matched < checked * 9 / 10,
        "the frames should both match and miss: {matched} of {checked}"
    );
}

/// libpcap 1.10's optimizer drops the test of a UDP frame's source port
/// against 80 from `udp port 1500 or 53 or port 1500 or 80` (the fuzz test
/// met it); the rule means what it says, as `tcpdump -O` has it, on the
/// direct path and through the tables (README: libpcap's optimizer errors).
#[test]
fn a_rule_of_fields_means_what_it_says_where_libpcaps_optimizer_errs() {
    common::require_root();
    let text = "udp port 1500 or 53 or port 1500 or 80";
    let mut ip4 = vec![
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip4.extend([0, 80, 0, 9, 0, 8, 0, 0]);
    let frame = cut_frames(0x0800, &ip4, 0, 14 + ip4.len()).remove(0);
    let meaning = pcap::compile_unoptimized(text).unwrap();
    assert!(accepts(&meaning, &frame), "tcpdump -O {text} should match");
    let opts = options_for(1);
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &opts).expect("loading the XDP program with rules");
    let mut state = RuleState::new(opts.rules.unwrap());
    let rules = vec![parse(text, Action::Drop).unwrap()];
    for compiled in [
        Compiled::compile(&rules).unwrap(),
        Compiled::compile_tables_only(&rules).unwrap(),
    ] {
        state
            .install(&rule_tables(&skel), &rules, &compiled)
            .unwrap();
        assert_eq!(
            run(&skel, &frame),
            1,
            "{text} (direct: {})",
            !compiled.direct.is_empty()
        );
    }
}

/// An Ethernet frame of `ethertype` and `l3`, behind `tags` VLAN tags, and
/// each of its heads from `from` bytes on.
fn cut_frames(ethertype: u16, l3: &[u8], tags: usize, from: usize) -> Vec<Vec<u8>> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for _ in 0..tags {
        f.extend([0x81, 0, 0, 10]);
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(l3);
    (from..=f.len()).map(|n| f[..n].to_vec()).collect()
}

/// Every frame length through the addresses, for a prefix of every word
/// count, on the direct path and through the tables: libpcap compares an
/// address a 32-bit word at a time, only the words a prefix masks, and
/// rejects a frame that ends before one of them.
#[test]
fn addresses_cut_short_match_the_words_libpcap_compares() {
    common::require_root();
    // 2001:db8::... with zeros where the longer prefixes' words are, so
    // that a word read as zero past the frame's end would match.
    let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    ip6.extend(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]));
    ip6.extend(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]));
    ip6.extend([0, 9, 0, 9, 0, 8, 0, 0]);
    let mut ip4 = vec![
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 0, 10, 0, 0, 0,
    ];
    ip4.extend([0, 9, 0, 9, 0, 8, 0, 0]);
    let mut frames = cut_frames(0x86dd, &ip6, 0, 14);
    frames.extend(cut_frames(0x0800, &ip4, 0, 14));
    let texts: Vec<String> = [
        "2001::/16",
        "2001:db8::/32",
        "2001:db8::/40",
        "2001:db8::/64",
        "2001:db8::/80",
        "2001:db8::/96",
        "2001:db8::/112",
        "2001:db8::/128",
        "10.0.0.0/8",
        "10.0.0.0/32",
    ]
    .iter()
    .flat_map(|net| ["src", "dst"].map(|dir| format!("{dir} net {net}")))
    .collect();
    check_each_rule(
        &texts.iter().map(String::as_str).collect::<Vec<_>>(),
        &frames,
    );
    // Nested prefixes: through the tables, the walk of a frame cut after
    // the address's first word ends on an entry naming a block for the /48.
    check_rule_sets(
        &[
            vec!["src net 2001:db8::/48", "src net 2001:db8::/32"],
            vec!["dst net 2001:db8::/48", "dst net 2001:db8::/32"],
        ],
        &frames,
    );
}

/// Rules of clauses (`not`) on TCP frames cut anywhere in the IPv4 header
/// and the ports, with and without a VLAN tag: a cut frame's verdict is its
/// program's, which rejects a frame whose end it reads past, even where no
/// comparison of the clauses reads that field (a conjunction that matches
/// nothing, `not` of it everything).
#[test]
fn clauses_on_frames_cut_short_match_as_their_programs() {
    common::require_root();
    let mut frames = Vec::new();
    for (sport, dport) in [(22u16, 80u16), (100, 22), (1000, 443)] {
        let mut ip4 = vec![
            0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip4.extend(sport.to_be_bytes());
        ip4.extend(dport.to_be_bytes());
        ip4.extend([0; 16]);
        for tags in [0, 1] {
            frames.extend(cut_frames(0x0800, &ip4, tags, 14 + 4 * tags + 8));
        }
    }
    let texts = [
        "not port 22",
        "not src portrange 53-443",
        "not (src portrange 53-443 and src port 40000)",
        "tcp and not dst port 80",
        "src net 10.0.0.0/8 and not tcp",
        "not (port 22 or port 443) and not udp",
    ];
    check_each_rule(&texts, &frames);
}

/// Rules of clauses on frames that lack what their terms read: of another
/// EtherType, ARP, IPv4 of protocol 0 (which a frame without an IP header
/// reads as too), IPv6 behind a fragment header, UDP without ports (a
/// later fragment). Through the tables, such a frame reads a cell of its
/// own l3 and of class 0 for each field it lacks.
#[test]
fn clauses_meet_frames_without_their_fields() {
    common::require_root();
    let ip4 = |proto: u8, frag: u8| {
        let mut h = vec![
            0x45, 0, 0, 28, 0, 1, frag, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        h.extend([0, 53, 0, 22, 0, 8, 0, 0]);
        h
    };
    let mut ip6 = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
    ip6.extend(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]));
    ip6.extend(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]));
    ip6.extend([6, 0, 0, 0, 0, 0, 0, 1, 0, 53, 0, 22, 0, 0, 0, 0]);
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1];
    arp.extend([0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    let mut frames = Vec::new();
    for (ethertype, l3) in [
        (0x88cc, vec![0u8; 46]),
        (0x0806, arp),
        (0x0800, ip4(0, 0)),
        (0x0800, ip4(17, 0)),
        (0x0800, ip4(17, 1)),
        (0x86dd, ip6),
    ] {
        let len = 14 + l3.len();
        frames.extend(cut_frames(ethertype, &l3, 0, len));
    }
    let texts = [
        "not ip",
        "not arp",
        "not ip proto 0",
        "not tcp",
        "not port 22",
        "not src host 10.0.0.1",
        "not (ip6 and tcp)",
        "udp and not dst port 22",
        "host 10.0.0.1 or port 53",
    ];
    check_each_rule(&texts, &frames);
}

/// More rules of clauses than the programs that may run on every frame
/// (`MAX_PROGRAMS`), with rules of libpcap's alone among them: the
/// clauses' programs are held, and XDP runs them only on frames cut short,
/// passing over each run of them in one step. On whole and cut frames, tagged or not, the first rule that matches is
/// the first whose libpcap program accepts the frame (drop and redirect
/// rules in turn, which the verdicts tell apart).
#[test]
fn more_rules_of_clauses_than_programs_match_as_their_programs() {
    common::require_root();
    let texts: Vec<String> = (0..200)
        .map(|i| match i % 4 {
            0 => format!("src host 10.0.0.{i} and not tcp"),
            1 => format!("src host 10.0.0.{} and not port 22", i - 1),
            2 => format!("dst host 10.1.0.{i} and not udp"),
            _ => format!(
                "src net 10.0.0.{}/25 and not dst port {}",
                i / 4 % 2 * 128,
                22 + i
            ),
        })
        .collect();
    // Rules of libpcap's alone amid them, and last.
    let texts: Vec<String> = [&texts[..100], &["vlan and udp".to_string()], &texts[100..]]
        .concat()
        .into_iter()
        .chain(["vlan 10 and tcp".to_string()])
        .collect();
    let rules: Vec<Rule> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let action = if i % 2 == 0 {
                Action::Drop
            } else {
                Action::Redirect
            };
            parse(t, action).unwrap()
        })
        .collect();
    let programs: Vec<Vec<Insn>> = texts
        .iter()
        .map(|t| reference_program(t).unwrap())
        .collect();
    let mut frames = Vec::new();
    for (src, dst, proto, dport) in [
        (4u8, 1u8, 17u8, 80u16),
        (4, 1, 6, 80),
        (5, 6, 6, 22),
        (8, 2, 6, 80),
        (9, 6, 17, 25),
        (200, 3, 17, 22),
        (200, 3, 6, 49),
        (9, 9, 17, 53),
        // From 10.0.1.9, which only the rules of libpcap's take.
        (0, 9, 17, 53),
        (0, 9, 6, 80),
    ] {
        let src = if src == 0 { [1, 9] } else { [0, src] };
        let mut ip4 = vec![
            0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, src[0], src[1], 10, 1, 0, dst,
        ];
        ip4.extend(1234u16.to_be_bytes());
        ip4.extend(dport.to_be_bytes());
        ip4.extend([0; 16]);
        for tags in [0, 1] {
            frames.extend(cut_frames(0x0800, &ip4, tags, 14 + 4 * tags + 8));
        }
    }
    let opts = options_for(256);
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &opts).expect("loading the XDP program with rules");
    let mut state = RuleState::new(opts.rules.unwrap());
    let (mut checked, mut by_rule) = (0, std::collections::BTreeSet::new());
    for compiled in [
        Compiled::compile(&rules).unwrap(),
        Compiled::compile_with_own_classes(&rules).unwrap(),
    ] {
        let held = compiled.programs.iter().filter(|p| p.held).count();
        assert!(
            held > MAX_PROGRAMS && held == compiled.programs.len() - 2,
            "{held}"
        );
        state
            .install(&rule_tables(&skel), &rules, &compiled)
            .unwrap();
        for f in &frames {
            let want = first_match(&rules, &programs, f);
            let verdict = match want.map(|i| rules[i].action) {
                Some(Action::Drop) => 1,
                Some(_) => 0,
                None => 2,
            };
            assert_eq!(
                run(&skel, f),
                verdict,
                "tcpdump's filters say rule {:?} for frame {}",
                want.map(|i| &texts[i]),
                hex(f)
            );
            checked += 1;
            by_rule.insert(want);
        }
    }
    assert!(
        by_rule.len() >= 8 && by_rule.contains(&None),
        "the frames should meet many rules and none: {by_rule:?} of {checked}"
    );
}
