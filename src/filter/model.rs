//! What rules mean: the fields a packet is matched on, the constraints a
//! rule puts on them, and the reference semantics (`Conjunction::matches`)
//! that the BPF tables must agree with.
use std::fmt;
use std::net::IpAddr;

/// `enum np_l3` values.
pub const L3_IPV4: u8 = 0;
pub const L3_IPV6: u8 = 1;
pub const L3_ARP: u8 = 2;
/// `enum np_l4` values.
pub const L4_TCP: u8 = 0;
pub const L4_UDP: u8 = 1;
pub const L4_ICMP: u8 = 2;
pub const L4_ICMPV6: u8 = 3;
pub const L4_NONE: u8 = 4;

/// Shape bits: which fields an alternative constrains (`NP_SHAPE_*`).
pub const SHAPE_L3: u8 = 1;
pub const SHAPE_L4: u8 = 2;
pub const SHAPE_SRC: u8 = 4;
pub const SHAPE_DST: u8 = 8;
pub const SHAPE_SPORT: u8 = 16;
pub const SHAPE_DPORT: u8 = 32;

/// What a matching packet gets (`enum np_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Drop = 1,
    Redirect = 2,
    Capture = 3,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Redirect => "redirect",
            Action::Capture => "capture",
        }
    }
}

/// An address prefix: family 4 or 6, address bytes, prefix length in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub family: u8,
    pub addr: [u8; 16],
    pub len: u8,
}

impl Prefix {
    pub fn bits(family: u8) -> u8 {
        if family == 4 {
            32
        } else {
            128
        }
    }

    pub fn host(ip: IpAddr) -> Prefix {
        let (family, addr) = family_bytes(ip);
        Prefix {
            family,
            addr,
            len: Prefix::bits(family),
        }
    }

    /// Whether `self` lies inside `outer` (same family, at least as long,
    /// same leading bits).
    pub fn within(&self, outer: &Prefix) -> bool {
        self.family == outer.family
            && self.len >= outer.len
            && leading_bits_equal(&self.addr, &outer.addr, outer.len)
    }

    pub fn contains_addr(&self, family: u8, addr: &[u8; 16]) -> bool {
        self.family == family && leading_bits_equal(addr, &self.addr, self.len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip: IpAddr = if self.family == 4 {
            IpAddr::from([self.addr[0], self.addr[1], self.addr[2], self.addr[3]])
        } else {
            IpAddr::from(self.addr)
        };
        write!(f, "{ip}/{}", self.len)
    }
}

fn family_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    let mut addr = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (4, addr)
        }
        IpAddr::V6(v6) => (6, v6.octets()),
    }
}

fn leading_bits_equal(a: &[u8; 16], b: &[u8; 16], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn intersect(self, other: PortRange) -> Option<PortRange> {
        let (lo, hi) = (self.lo.max(other.lo), self.hi.min(other.hi));
        (lo <= hi).then_some(PortRange { lo, hi })
    }

    /// The prefix-aligned blocks `(first port, prefix length)` covering the range.
    pub fn blocks(self) -> Vec<(u16, u8)> {
        let mut out = Vec::new();
        let (mut lo, hi) = (u32::from(self.lo), u32::from(self.hi));
        while lo <= hi {
            let mut size = if lo == 0 {
                1 << 16
            } else {
                lo & lo.wrapping_neg()
            };
            while lo + size - 1 > hi {
                size >>= 1;
            }
            out.push((lo as u16, 16 - size.trailing_zeros() as u8));
            lo += size;
        }
        out
    }
}

/// One alternative of a rule: every field it constrains must match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conjunction {
    pub l3: Option<u8>,
    pub l4: Option<u8>,
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
}

impl Conjunction {
    pub fn shape(&self) -> u8 {
        [
            (self.l3.is_some(), SHAPE_L3),
            (self.l4.is_some(), SHAPE_L4),
            (self.src.is_some(), SHAPE_SRC),
            (self.dst.is_some(), SHAPE_DST),
            (self.sport.is_some(), SHAPE_SPORT),
            (self.dport.is_some(), SHAPE_DPORT),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    /// Adds the implications between fields and checks they agree; `Err`
    /// says why no packet can match.
    pub(super) fn normalize(mut self) -> Result<Conjunction, String> {
        let implied_l3 = match self.l4 {
            Some(L4_ICMP) => Some(L3_IPV4),
            Some(L4_ICMPV6) => Some(L3_IPV6),
            _ => None,
        };
        if let Some(l3) = implied_l3 {
            match self.l3 {
                Some(have) if have != l3 => return Err("icmp needs ip, icmp6 needs ip6".into()),
                _ => self.l3 = Some(l3),
            }
        }
        let has_ports = self.sport.is_some() || self.dport.is_some();
        if has_ports {
            match self.l4 {
                Some(L4_ICMP | L4_ICMPV6) => return Err("icmp has no ports".into()),
                _ if self.l3 == Some(L3_ARP) => return Err("arp has no ports".into()),
                _ => {}
            }
        }
        for prefix in [self.src, self.dst].into_iter().flatten() {
            let fits = match self.l3 {
                Some(L3_IPV6) => prefix.family == 6,
                Some(L3_IPV4 | L3_ARP) => prefix.family == 4,
                _ => true,
            };
            if !fits {
                return Err(format!("{prefix} does not fit the protocol"));
            }
        }
        if let (Some(a), Some(b)) = (self.src, self.dst) {
            if a.family != b.family {
                return Err("source and destination are of different address families".into());
            }
        }
        if self.l3 == Some(L3_ARP) && self.l4.is_some() {
            return Err("arp has no transport protocol".into());
        }
        Ok(self)
    }

    /// Whether a packet with these fields matches (the reference semantics).
    pub fn matches(&self, p: &PacketFields) -> bool {
        let addr_ok = |want: Option<Prefix>, have: Option<[u8; 16]>| match want {
            None => true,
            Some(prefix) => have.is_some_and(|a| prefix.contains_addr(p.family, &a)),
        };
        let port_ok = |want: Option<PortRange>, have: Option<u16>| match want {
            None => true,
            Some(r) => have.is_some_and(|port| r.lo <= port && port <= r.hi),
        };
        self.l3.is_none_or(|l3| p.l3 == l3)
            && self.l4.is_none_or(|l4| p.l4 == Some(l4))
            && addr_ok(self.src, p.saddr)
            && addr_ok(self.dst, p.daddr)
            && port_ok(self.sport, p.sport)
            && port_ok(self.dport, p.dport)
    }
}

/// A parsed rule: its text, its action, and the alternatives it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub text: String,
    pub action: Action,
    pub alternatives: Vec<Conjunction>,
}

/// The fields of one packet that rules look at (the reference model of
/// what the BPF parser extracts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketFields {
    pub l3: u8,
    pub l4: Option<u8>,
    pub family: u8,
    pub saddr: Option<[u8; 16]>,
    pub daddr: Option<[u8; 16]>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}
