//! A one-line, tcpdump-like summary of an Ethernet frame, for people. The
//! BPF parser classifies for counting; this only describes what was
//! delivered, and never trusts a length it has not checked.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// What a frame is, as far as its captured bytes tell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub proto: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saddr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daddr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// What tcpdump says after the addresses: TCP flags (`Flags [S.]`) or
    /// the ICMP message (`ICMP echo request, id 7, seq 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

pub fn summarize(frame: &[u8]) -> Summary {
    let Some(mut ethertype) = be16(frame, 12) else {
        return Summary {
            proto: "truncated",
            ..Default::default()
        };
    };
    let mut off = 14;
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        let Some(inner) = be16(frame, off + 2) else {
            return Summary {
                proto: "truncated",
                ..Default::default()
            };
        };
        ethertype = inner;
        off += 4;
    }
    let l3 = &frame[off.min(frame.len())..];
    match ethertype {
        0x0800 => ipv4(l3),
        0x86dd => ipv6(l3),
        0x0806 => arp(l3),
        _ => Summary {
            proto: "other",
            ..Default::default()
        },
    }
}

fn with_l4(mut s: Summary, proto: u8, l4: &[u8], v6: bool) -> Summary {
    s.proto = match (proto, v6) {
        (6, _) => "tcp",
        (17, _) => "udp",
        (1, false) => "icmp",
        (58, true) => "icmp6",
        _ => s.proto,
    };
    if matches!(proto, 6 | 17) {
        if let (Some(sport), Some(dport)) = (be16(l4, 0), be16(l4, 2)) {
            s.sport = Some(sport);
            s.dport = Some(dport);
        }
    }
    s.info = match s.proto {
        "tcp" => l4.get(13).map(|&f| format!("Flags [{}]", tcp_flags(f))),
        "icmp" => icmp(l4),
        "icmp6" => icmp6(l4),
        _ => None,
    };
    s
}

/// TCP flags as tcpdump writes them: `S`, `S.` (SYN-ACK), `R.`, `P.`.
fn tcp_flags(f: u8) -> String {
    let mut out: String = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ]
    .iter()
    .filter(|(bit, _)| f & bit != 0)
    .map(|&(_, c)| c)
    .collect();
    if f & 0x10 != 0 {
        out.push('.');
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

/// `id 7, seq 1` of an echo message.
fn echo_ids(m: &[u8]) -> Option<String> {
    Some(format!("id {}, seq {}", be16(m, 4)?, be16(m, 6)?))
}

/// An ICMP message as tcpdump names it.
fn icmp(m: &[u8]) -> Option<String> {
    let (&kind, &code) = (m.first()?, m.get(1)?);
    Some(match kind {
        0 => format!("ICMP echo reply, {}", echo_ids(m)?),
        8 => format!("ICMP echo request, {}", echo_ids(m)?),
        3 => {
            let what = [
                "net",
                "host",
                "protocol",
                "port",
                "need to frag",
                "source route failed",
            ];
            match what.get(usize::from(code)) {
                Some(w) => format!("ICMP {w} unreachable"),
                None => format!("ICMP unreachable, code {code}"),
            }
        }
        5 => "ICMP redirect".into(),
        11 => "ICMP time exceeded in-transit".into(),
        12 => "ICMP parameter problem".into(),
        13 => "ICMP time stamp query".into(),
        14 => "ICMP time stamp reply".into(),
        t => format!("ICMP type-#{t}"),
    })
}

/// An ICMPv6 message as tcpdump names it.
fn icmp6(m: &[u8]) -> Option<String> {
    let kind = *m.first()?;
    Some(match kind {
        1 => "ICMP6, destination unreachable".into(),
        2 => "ICMP6, packet too big".into(),
        3 => "ICMP6, time exceeded in-transit".into(),
        4 => "ICMP6, parameter problem".into(),
        128 => format!("ICMP6, echo request, {}", echo_ids(m)?),
        129 => format!("ICMP6, echo reply, {}", echo_ids(m)?),
        133 => "ICMP6, router solicitation".into(),
        134 => "ICMP6, router advertisement".into(),
        135 => "ICMP6, neighbor solicitation".into(),
        136 => "ICMP6, neighbor advertisement".into(),
        143 => "ICMP6, multicast listener report v2".into(),
        t => format!("ICMP6, type-#{t}"),
    })
}

fn ipv4(b: &[u8]) -> Summary {
    if b.len() < 20 || b[0] >> 4 != 4 {
        return Summary {
            proto: "ip",
            ..Default::default()
        };
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let s = Summary {
        proto: "ip",
        saddr: Some(Ipv4Addr::new(b[12], b[13], b[14], b[15]).to_string()),
        daddr: Some(Ipv4Addr::new(b[16], b[17], b[18], b[19]).to_string()),
        ..Default::default()
    };
    let first_fragment = be16(b, 6).is_some_and(|f| f & 0x1fff == 0);
    if !first_fragment || ihl < 20 {
        return s;
    }
    with_l4(s, b[9], b.get(ihl..).unwrap_or(&[]), false)
}

fn ipv6(b: &[u8]) -> Summary {
    if b.len() < 40 {
        return Summary {
            proto: "ip6",
            ..Default::default()
        };
    }
    let addr = |at: usize| {
        IpAddr::from(Ipv6Addr::from(
            <[u8; 16]>::try_from(&b[at..at + 16]).unwrap(),
        ))
        .to_string()
    };
    let s = Summary {
        proto: "ip6",
        saddr: Some(addr(8)),
        daddr: Some(addr(24)),
        ..Default::default()
    };
    // Only the transport right after the fixed header; extension headers are
    // described as plain ip6.
    with_l4(s, b[6], &b[40..], true)
}

fn arp(b: &[u8]) -> Summary {
    let mut s = Summary {
        proto: "arp",
        ..Default::default()
    };
    if b.len() >= 28 && b[4] == 6 && b[5] == 4 {
        s.saddr = Some(Ipv4Addr::new(b[14], b[15], b[16], b[17]).to_string());
        s.daddr = Some(Ipv4Addr::new(b[24], b[25], b[26], b[27]).to_string());
    }
    s
}

impl Summary {
    /// `198.18.0.1.40000 > 198.18.0.2.9` (tcpdump's address.port form).
    pub fn endpoints(&self) -> String {
        let side = |a: &Option<String>, p: Option<u16>| match (a, p) {
            (Some(a), Some(p)) => format!("{a}.{p}"),
            (Some(a), None) => a.clone(),
            (None, _) => "?".into(),
        };
        if self.saddr.is_none() {
            return String::new();
        }
        format!(
            "{} > {}",
            side(&self.saddr, self.sport),
            side(&self.daddr, self.dport)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4_udp() -> Vec<u8> {
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        ip.extend_from_slice(&[0x9c, 0x40, 0, 9, 0, 8, 0, 0]);
        ip
    }

    #[test]
    fn udp_over_ipv4() {
        let s = summarize(&eth(0x0800, &ipv4_udp()));
        assert_eq!(s.proto, "udp");
        assert_eq!(s.endpoints(), "198.18.0.1.40000 > 198.18.0.2.9");
        assert_eq!(s.info, None);
    }

    fn ipv4_with(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        ip.extend_from_slice(l4);
        let len = ip.len() as u16;
        ip[2..4].copy_from_slice(&len.to_be_bytes());
        eth(0x0800, &ip)
    }

    #[test]
    fn icmp_messages_and_tcp_flags_as_tcpdump_names_them() {
        let echo = summarize(&ipv4_with(1, &[8, 0, 0, 0, 0, 7, 0, 1]));
        assert_eq!(echo.info.as_deref(), Some("ICMP echo request, id 7, seq 1"));
        let reply = summarize(&ipv4_with(1, &[0, 0, 0, 0, 0, 7, 0, 2]));
        assert_eq!(reply.info.as_deref(), Some("ICMP echo reply, id 7, seq 2"));
        let unreachable = summarize(&ipv4_with(1, &[3, 3, 0, 0, 0, 0, 0, 0]));
        assert_eq!(unreachable.info.as_deref(), Some("ICMP port unreachable"));
        let tcp = |flags: u8| {
            let mut h = vec![
                0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff,
            ];
            h.extend_from_slice(&[0, 0, 0, 0]);
            summarize(&ipv4_with(6, &h)).info
        };
        assert_eq!(tcp(0x02).as_deref(), Some("Flags [S]"));
        assert_eq!(tcp(0x12).as_deref(), Some("Flags [S.]"));
        assert_eq!(tcp(0x14).as_deref(), Some("Flags [R.]"));
        assert_eq!(tcp(0x18).as_deref(), Some("Flags [P.]"));
        assert_eq!(tcp(0x04).as_deref(), Some("Flags [R]"));
    }

    #[test]
    fn vlan_tagged_and_truncated() {
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        tagged.extend_from_slice(&ipv4_udp());
        assert_eq!(summarize(&tagged).proto, "udp");
        assert_eq!(summarize(&[0u8; 10]).proto, "truncated");
        let cut = eth(0x0800, &ipv4_udp()[..22]);
        let s = summarize(&cut);
        assert_eq!((s.proto, s.sport, s.dport), ("udp", None, None));
        assert_eq!(s.endpoints(), "198.18.0.1 > 198.18.0.2");
    }

    #[test]
    fn ipv6_arp_and_other() {
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        ip6.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip6.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip6.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
        let s = summarize(&eth(0x86dd, &ip6));
        assert_eq!(
            (s.proto, s.endpoints().as_str()),
            ("icmp6", "2001:2::1 > 2001:2::2")
        );
        assert_eq!(s.info.as_deref(), Some("ICMP6, echo request, id 1, seq 1"));
        let arp = [
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 10, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0,
            2,
        ];
        assert_eq!(
            summarize(&eth(0x0806, &arp)).endpoints(),
            "198.18.0.1 > 198.18.0.2"
        );
        assert_eq!(summarize(&eth(0x88cc, &[0; 40])).proto, "other");
    }
}
