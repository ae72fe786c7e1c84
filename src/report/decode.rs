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
    s
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
