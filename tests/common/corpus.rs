//! A corpus of frames for differential tests against tcpdump: every class
//! the filter language can name, well formed, broken, fragmented, tagged
//! and cut short at every header boundary.
#![allow(dead_code)]
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::frames::*;

const BROADCAST: [u8; 6] = [0xff; 6];
const MULTICAST4: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
const ETH_RARP: u16 = 0x8035;
const ETH_LLDP: u16 = 0x88cc;
const PROTO_SCTP: u8 = 132;
const PROTO_IGMP: u8 = 2;
const PROTO_ESP: u8 = 50;
const PROTO_AH: u8 = 51;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

fn v4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    // An INIT chunk header.
    h.extend_from_slice(&[1, 0, 0, 4]);
    h
}

fn icmp(kind: u8, code: u8, len: usize) -> Vec<u8> {
    let mut h = vec![kind, code, 0, 0];
    h.resize(len, 0x55);
    let sum = checksum(&h, 0);
    h[2..4].copy_from_slice(&sum.to_be_bytes());
    h
}

fn icmp6(kind: u8) -> Vec<u8> {
    let mut h = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    h.extend_from_slice(&IP6_B.octets());
    h
}

fn tcp_raw(sport: u16, dport: u16, flags: u8, doff: u8) -> Vec<u8> {
    let mut h = tcp(IP4_A.into(), IP4_B.into(), sport, dport, flags, &[]);
    h[12] = doff << 4;
    h
}

fn frame4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(ETH_IPV4, &ipv4(src, dst, proto, l4))
}

fn frame6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, rest: &[u8]) -> Vec<u8> {
    eth(ETH_IPV6, &ipv6(src, dst, next, rest))
}

/// A UDP datagram to a link-layer `mac` (broadcast, multicast).
fn udp4_to(mac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let (s, d) = (v4(src), v4(dst));
    let l4 = udp(s.into(), d.into(), sport, dport, &[0; 8]);
    eth_tagged(mac, MAC_A, &[], ETH_IPV4, &ipv4(s, d, PROTO_UDP, &l4))
}

/// Whole frames, one of each kind.
pub fn base_frames() -> Vec<Vec<u8>> {
    let (a, b) = (IpAddr::from(IP4_A), IpAddr::from(IP4_B));
    let (a6, b6) = (IpAddr::from(IP6_A), IpAddr::from(IP6_B));
    let mut out = vec![
        frame4(IP4_A, IP4_B, PROTO_UDP, &udp(a, b, 1053, 53, &[7; 20])),
        frame4(IP4_B, IP4_A, PROTO_UDP, &udp(b, a, 53, 1053, &[7; 40])),
        frame4(IP4_A, IP4_B, PROTO_UDP, &udp(a, b, 40000, 1500, &[7; 4])),
        frame4(IP4_A, IP4_B, PROTO_TCP, &tcp(a, b, 40000, 80, TCP_SYN, &[])),
        frame4(
            IP4_B,
            IP4_A,
            PROTO_TCP,
            &tcp(b, a, 80, 40000, TCP_SYN | TCP_ACK, &[]),
        ),
        frame4(
            IP4_A,
            IP4_B,
            PROTO_TCP,
            &tcp(a, b, 50000, 22, TCP_ACK, &[1; 30]),
        ),
        frame4(
            IP4_A,
            IP4_B,
            PROTO_TCP,
            &tcp(a, b, 443, 50001, TCP_RST, &[]),
        ),
        frame4(
            IP4_A,
            IP4_B,
            PROTO_TCP,
            &tcp(a, b, 8080, 9, TCP_FIN | TCP_ACK, &[]),
        ),
        // Broken transport headers behind a valid IP header.
        frame4(IP4_A, IP4_B, PROTO_TCP, &tcp_raw(40000, 80, TCP_SYN, 3)),
        frame4(
            IP4_A,
            IP4_B,
            PROTO_TCP,
            &tcp_raw(40000, 80, TCP_SYN, 0)[..10],
        ),
        frame4(IP4_A, IP4_B, PROTO_UDP, &{
            let mut u = udp(a, b, 1053, 53, &[]);
            u[4..6].copy_from_slice(&4u16.to_be_bytes());
            u
        }),
        frame4(IP4_A, IP4_B, PROTO_ICMP, &icmp(8, 0, 4)),
        frame4(IP4_A, IP4_B, PROTO_ICMP, &icmp_echo(1, 1, &[0; 16])),
        frame4(IP4_B, IP4_A, PROTO_ICMP, &icmp(0, 0, 24)),
        frame4(IP4_B, IP4_A, PROTO_ICMP, &icmp(3, 3, 36)),
        frame4(IP4_A, IP4_B, PROTO_SCTP, &sctp(5000, 80)),
        frame4(
            IP4_A,
            v4([224, 0, 0, 1]),
            PROTO_IGMP,
            &[0x11, 0, 0xee, 0x9b, 0, 0, 0, 0],
        ),
        frame4(IP4_A, IP4_B, PROTO_GRE, &[0, 0, 0x08, 0x00]),
        frame4(IP4_A, IP4_B, PROTO_ESP, &[0, 0, 1, 0, 0, 0, 0, 1]),
        frame4(
            IP4_A,
            IP4_B,
            PROTO_AH,
            &[17, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
        ),
        frame4(IP4_A, IP4_B, 255, &[1, 2, 3, 4]),
        // Fragments: a first one with only 8 bytes of TCP, later ones.
        eth(
            ETH_IPV4,
            &ipv4_opts(
                IP4_A,
                IP4_B,
                PROTO_TCP,
                0x2000,
                &[],
                &tcp_raw(40000, 80, TCP_SYN, 5)[..8],
            ),
        ),
        eth(
            ETH_IPV4,
            &ipv4_opts(
                IP4_A,
                IP4_B,
                PROTO_TCP,
                185,
                &[],
                &[0, 80, 0, 80, 1, 2, 3, 4],
            ),
        ),
        eth(
            ETH_IPV4,
            &ipv4_opts(
                IP4_A,
                IP4_B,
                PROTO_UDP,
                0x2000 | 7,
                &[],
                &[0, 53, 0, 53, 0, 8, 0, 0],
            ),
        ),
        // Options; and an IHL below 5.
        eth(
            ETH_IPV4,
            &ipv4_opts(
                IP4_A,
                IP4_B,
                PROTO_UDP,
                0,
                &[1, 1, 1, 0],
                &udp(a, b, 1053, 53, &[]),
            ),
        ),
        eth(ETH_IPV4, &{
            let mut h = ipv4(IP4_A, IP4_B, PROTO_UDP, &udp(a, b, 53, 53, &[]));
            h[0] = 0x44;
            h
        }),
        eth(ETH_IPV4, &{
            let mut h = ipv4(IP4_A, IP4_B, PROTO_TCP, &tcp(a, b, 80, 80, TCP_SYN, &[]));
            h[0] = 0x65;
            h
        }),
        frame4(
            v4([10, 1, 2, 3]),
            v4([192, 168, 1, 255]),
            PROTO_UDP,
            &udp(a, b, 138, 138, &[0; 8]),
        ),
        udp4_to(BROADCAST, [10, 1, 0, 1], [255, 255, 255, 255], 68, 67),
        udp4_to(MULTICAST4, [10, 2, 0, 1], [224, 0, 0, 251], 5353, 5353),
        frame4(IP4_A, IP4_B, PROTO_UDP, &udp(a, b, 1053, 9, &[9; 1200])),
        // IPv6.
        frame6(IP6_A, IP6_B, PROTO_UDP, &udp(a6, b6, 1053, 53, &[6; 12])),
        frame6(
            IP6_B,
            IP6_A,
            PROTO_TCP,
            &tcp(b6, a6, 80, 40000, TCP_SYN | TCP_ACK, &[]),
        ),
        frame6(
            IP6_A,
            IP6_B,
            PROTO_TCP,
            &tcp(a6, b6, 40000, 443, TCP_SYN, &[]),
        ),
        frame6(
            IP6_A,
            IP6_B,
            PROTO_ICMPV6,
            &icmpv6_echo(IP6_A, IP6_B, 1, 1, &[0; 8]),
        ),
        frame6(IP6_A, v6("ff02::1:ff00:2"), PROTO_ICMPV6, &icmp6(135)),
        frame6(IP6_A, IP6_B, PROTO_SCTP, &sctp(80, 5000)),
        frame6(
            v6("2001:db8::1"),
            v6("2001:db8:1::2"),
            PROTO_UDP,
            &udp(a6, b6, 5000, 5001, &[]),
        ),
        frame6(
            IP6_A,
            IP6_B,
            0,
            &ipv6_ext(PROTO_UDP, 0, &udp(a6, b6, 1053, 53, &[])),
        ),
        frame6(
            IP6_A,
            IP6_B,
            43,
            &ipv6_ext(PROTO_TCP, 1, &tcp(a6, b6, 40000, 80, TCP_SYN, &[])),
        ),
        frame6(
            IP6_A,
            IP6_B,
            44,
            &ipv6_frag(PROTO_UDP, 0, true, &udp(a6, b6, 1053, 53, &[1; 8])),
        ),
        frame6(
            IP6_A,
            IP6_B,
            44,
            &ipv6_frag(PROTO_TCP, 100, false, &[0, 80, 0, 80, 0, 0, 0, 0]),
        ),
        frame6(IP6_A, IP6_B, 60, &ipv6_ext(PROTO_ICMPV6, 0, &icmp6(128))),
        frame6(
            IP6_A,
            IP6_B,
            51,
            &ipv6_ah(PROTO_UDP, 1, &udp(a6, b6, 1, 53, &[])),
        ),
        frame6(IP6_A, v6("ff02::1"), PROTO_UDP, &udp(a6, b6, 547, 547, &[])),
        // Link layer: ARP, RARP, others.
        eth_tagged(
            BROADCAST,
            MAC_A,
            &[],
            ETH_ARP,
            &arp_request(MAC_A, IP4_A, IP4_B),
        ),
        eth(ETH_ARP, &{
            let mut r = arp_request(MAC_B, IP4_B, IP4_A);
            r[7] = 2;
            r
        }),
        eth_tagged(BROADCAST, MAC_A, &[], ETH_RARP, &{
            let mut r = arp_request(MAC_A, v4([0, 0, 0, 0]), IP4_A);
            r[7] = 3;
            r
        }),
        eth(ETH_ARP, &{
            let mut r = arp_request(MAC_A, IP4_A, IP4_B);
            r[4] = 8;
            r
        }),
        eth_tagged(
            [0x01, 0x80, 0xc2, 0, 0, 0x0e],
            MAC_A,
            &[],
            ETH_LLDP,
            &[2, 7, 4, 0, 0, 0, 0, 0, 1],
        ),
        eth(0x0026, &[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]),
        eth(0x9000, &[0; 10]),
    ];
    out.push(eth(ETH_IPV6, &[0x60, 0, 0]));
    out
}

/// Up to `tags` VLAN tags pushed in front of the EtherType.
fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

/// Lengths to cut a frame at: every header boundary netprobe or libpcap
/// reads at, and one byte short of the whole frame.
const CUTS: [usize; 14] = [13, 14, 16, 20, 23, 24, 30, 34, 36, 38, 42, 50, 55, 58];

/// The whole corpus: every base frame as is, with one tag (VLAN 10), two
/// (QinQ 100 over 10) and three, and each cut short.
pub fn corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for base in base_frames() {
        let variants = [
            base.clone(),
            tagged(&base, &[(ETH_VLAN, 10)]),
            tagged(&base, &[(ETH_QINQ, 100), (ETH_VLAN, 10)]),
            tagged(&base, &[(ETH_QINQ, 100), (ETH_VLAN, 10), (ETH_VLAN, 20)]),
        ];
        for (i, v) in variants.iter().enumerate() {
            out.push(v.clone());
            // Cut the untagged and single-tagged ones at every boundary.
            if i < 2 {
                for cut in CUTS.iter().map(|c| c + 4 * i).chain([v.len() - 1]) {
                    if cut < v.len() {
                        out.push(v[..cut].to_vec());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The frame without the VLAN tags netprobe's tables look through (up to
/// two, 802.1Q or 802.1ad): what tcpdump must match for the frame to agree
/// with a table rule.
pub fn untagged(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    for _ in 0..2 {
        if f.len() < 14 || !matches!(u16::from_be_bytes([f[12], f[13]]), ETH_VLAN | ETH_QINQ) {
            break;
        }
        let end = f.len().min(16);
        f.drain(12..end);
    }
    f
}
