//! Crafted Ethernet frames with correct lengths and checksums.
#![allow(dead_code)]
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];
pub const IP4_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const IP4_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const IP6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 1);
pub const IP6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 2);

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ICMPV6: u8 = 58;

/// Ethernet header (with VLAN tags `(tpid, vid)`, outermost first) and payload.
pub fn eth_tagged(
    dst: [u8; 6],
    src: [u8; 6],
    tags: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A frame from A to B.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    eth_tagged(MAC_B, MAC_A, &[], ethertype, payload)
}

/// The Internet checksum (RFC 1071) of `data`, starting from `sum`.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut bytes = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
            bytes.extend_from_slice(&[0, proto]);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
            bytes.extend_from_slice(&(len as u32).to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum()
}

/// IPv4 header (with `options`, a multiple of 4 bytes) and payload.
pub fn ipv4_opts(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    frag_off: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let hlen = 20 + options.len();
    let total = hlen + payload.len();
    let mut h = vec![0u8; 20];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[6..8].copy_from_slice(&frag_off.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let sum = checksum(&h, 0);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_opts(src, dst, proto, 0, &[], payload)
}

/// IPv6 header and payload; `next` is the first next-header value.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 options-style extension header (hop-by-hop, routing, destination
/// options) of `8 * (units + 1)` bytes, followed by `rest`.
pub fn ipv6_ext(next: u8, units: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, units];
    h.resize(8 * (usize::from(units) + 1), 0);
    if h.len() >= 8 {
        // PadN option filling the header, so it is well formed.
        h[2] = 1;
        h[3] = (h.len() - 4) as u8;
    }
    h.extend_from_slice(rest);
    h
}

/// An IPv6 fragment header at fragment `offset` (in 8-byte units).
pub fn ipv6_frag(next: u8, offset: u16, more: bool, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&0xabcdu32.to_be_bytes());
    h.extend_from_slice(rest);
    h
}

/// An authentication header of `4 * (len + 2)` bytes.
pub fn ipv6_ah(next: u8, len: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, len];
    h.resize(4 * (usize::from(len) + 2), 0);
    h.extend_from_slice(rest);
    h
}

pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut h = Vec::with_capacity(len);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&(len as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    let mut sum = checksum(&h, pseudo_header_sum(src, dst, PROTO_UDP, len));
    if sum == 0 {
        sum = 0xffff;
    }
    h[6..8].copy_from_slice(&sum.to_be_bytes());
    h
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&1000u32.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&65535u16.to_be_bytes());
    h.extend_from_slice(payload);
    let sum = checksum(&h, pseudo_header_sum(src, dst, PROTO_TCP, h.len()));
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

/// ICMP (IPv4) echo request with `payload`.
pub fn icmp_echo(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![8, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(payload);
    let sum = checksum(&h, 0);
    h[2..4].copy_from_slice(&sum.to_be_bytes());
    h
}

/// ICMPv6 echo request with `payload`.
pub fn icmpv6_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![128, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(payload);
    let sum = checksum(
        &h,
        pseudo_header_sum(src.into(), dst.into(), PROTO_ICMPV6, h.len()),
    );
    h[2..4].copy_from_slice(&sum.to_be_bytes());
    h
}

/// ARP request for Ethernet/IPv4: who has `target`, tell `sender`.
pub fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&sender_mac);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    a
}

// Complete frames from A to B, the kinds the tests send most.

pub fn ip4_frame(proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(ETH_IPV4, &ipv4(IP4_A, IP4_B, proto, l4))
}

pub fn ip6_frame(proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(ETH_IPV6, &ipv6(IP6_A, IP6_B, proto, l4))
}

fn fill(len: usize) -> Vec<u8> {
    vec![0x5a; len]
}

pub fn udp4_frame(dport: u16, payload_len: usize) -> Vec<u8> {
    ip4_frame(
        PROTO_UDP,
        &udp(IP4_A.into(), IP4_B.into(), 40000, dport, &fill(payload_len)),
    )
}

pub fn tcp4_frame(dport: u16, payload_len: usize) -> Vec<u8> {
    ip4_frame(
        PROTO_TCP,
        &tcp(
            IP4_A.into(),
            IP4_B.into(),
            40000,
            dport,
            TCP_SYN,
            &fill(payload_len),
        ),
    )
}

pub fn icmp4_frame(payload_len: usize) -> Vec<u8> {
    ip4_frame(PROTO_ICMP, &icmp_echo(7, 1, &fill(payload_len)))
}

pub fn udp6_frame(dport: u16, payload_len: usize) -> Vec<u8> {
    ip6_frame(
        PROTO_UDP,
        &udp(IP6_A.into(), IP6_B.into(), 40000, dport, &fill(payload_len)),
    )
}

pub fn tcp6_frame(dport: u16, payload_len: usize) -> Vec<u8> {
    ip6_frame(
        PROTO_TCP,
        &tcp(
            IP6_A.into(),
            IP6_B.into(),
            40000,
            dport,
            TCP_SYN,
            &fill(payload_len),
        ),
    )
}

pub fn icmp6_frame(payload_len: usize) -> Vec<u8> {
    ip6_frame(
        PROTO_ICMPV6,
        &icmpv6_echo(IP6_A, IP6_B, 7, 1, &fill(payload_len)),
    )
}

pub fn arp_frame() -> Vec<u8> {
    eth_tagged(
        [0xff; 6],
        MAC_A,
        &[],
        ETH_ARP,
        &arp_request(MAC_A, IP4_A, IP4_B),
    )
}
