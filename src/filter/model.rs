//! What rules mean: the fields a packet is matched on, the constraints a
//! rule puts on them, and the reference semantics (`Conjunction::matches`)
//! that the BPF tables must agree with.
use std::fmt;
use std::net::IpAddr;

use super::pcap::Insn;

/// `enum np_match_l3` values: the EtherType after up to two VLAN tags.
pub const L3_IPV4: u8 = 0;
pub const L3_IPV6: u8 = 1;
pub const L3_ARP: u8 = 2;
pub const L3_RARP: u8 = 3;
/// No l3 of those: a frame of another EtherType (`NP_MATCH_NONE`).
pub const L3_NONE: u8 = 4;
/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IGMP: u8 = 2;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6_FRAGMENT: u8 = 44;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_AH: u8 = 51;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// Shape bits: which fields an alternative constrains (`NP_SHAPE_*`).
pub const SHAPE_L3: u8 = 1;
pub const SHAPE_PROTO: u8 = 2;
pub const SHAPE_SRC: u8 = 4;
pub const SHAPE_DST: u8 = 8;
pub const SHAPE_SPORT: u8 = 16;
pub const SHAPE_DPORT: u8 = 32;
/// Marks a shape of clauses with a `not` (src/filter/clause_cells.rs)
/// apart from the shape of alternatives on the same fields.
pub const SHAPE_CLAUSE: u8 = 64;
/// The field bits of a shape.
pub const SHAPE_FIELDS: u8 = 63;

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

/// A rule by its place in the rule set, and its action: what a table
/// entry or a direct comparison points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub rule: u32,
    pub action: Action,
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
    /// IP protocol, as libpcap's `ip proto` and `ip6 proto` read it.
    pub proto: Option<u8>,
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
}

impl Conjunction {
    pub fn shape(&self) -> u8 {
        [
            (self.l3.is_some(), SHAPE_L3),
            (self.proto.is_some(), SHAPE_PROTO),
            (self.src.is_some(), SHAPE_SRC),
            (self.dst.is_some(), SHAPE_DST),
            (self.sport.is_some(), SHAPE_SPORT),
            (self.dport.is_some(), SHAPE_DPORT),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    /// Checks that some packet can match; `Err` says why none can.
    pub(super) fn normalize(self) -> Result<Conjunction, String> {
        let link_only = matches!(self.l3, Some(L3_ARP | L3_RARP));
        if self.sport.is_some() || self.dport.is_some() {
            if link_only {
                return Err("arp and rarp have no ports".into());
            }
            if self
                .proto
                .is_some_and(|p| !matches!(p, PROTO_TCP | PROTO_UDP | PROTO_SCTP))
            {
                return Err("ports are TCP, UDP and SCTP only".into());
            }
        }
        if link_only && self.proto.is_some() {
            return Err("arp and rarp have no IP protocol".into());
        }
        for prefix in [self.src, self.dst].into_iter().flatten() {
            let fits = match self.l3 {
                Some(L3_IPV6) => prefix.family == 6,
                Some(_) => prefix.family == 4,
                None => true,
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
        self.l3.is_none_or(|l3| p.l3 == Some(l3))
            && self.proto.is_none_or(|proto| p.proto == Some(proto))
            && addr_ok(self.src, p.saddr)
            && addr_ok(self.dst, p.daddr)
            && port_ok(self.sport, p.sport)
            && port_ok(self.dport, p.dport)
    }
}

/// One alternative of a rule made of fields that the tables cannot hold
/// (a `not`, or an `or` of terms reading different fields): a packet
/// matches it if it matches `must` and none of `must_not`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clause {
    pub must: Conjunction,
    pub must_not: Vec<Conjunction>,
}

impl Clause {
    /// Whether a packet with these fields matches, reading every field
    /// as present or absent: what libpcap's program says of a frame that
    /// holds every field the program reads.
    pub fn matches(&self, p: &PacketFields) -> bool {
        self.must.matches(p) && !self.must_not.iter().any(|c| c.matches(p))
    }
}

/// A parsed rule: its text, its action, and what it matches: the
/// alternatives the tables hold, or else the program libpcap compiled.
/// A rule with a program that is made only of fields also has it as
/// `clauses`: the direct path matches it by them on every frame long
/// enough for each field libpcap's program may read, and runs the program
/// (on the frame without its VLAN tags) on the others, where a read past
/// the end makes libpcap reject the frame even under `not`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub text: String,
    pub action: Action,
    pub alternatives: Vec<Conjunction>,
    pub program: Option<Vec<Insn>>,
    pub clauses: Vec<Clause>,
}

impl Rule {
    /// Whether the rule looks through up to two VLAN tags (README: where
    /// netprobe differs from tcpdump): every rule made of fields does.
    pub fn looks_through_vlan(&self) -> bool {
        self.program.is_none() || !self.clauses.is_empty()
    }
}

/// The fields of one packet that the tables look at, each `None` when the
/// frame lacks it (the reference model of rules.h's np_match_fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketFields {
    pub l3: Option<u8>,
    pub proto: Option<u8>,
    pub family: u8,
    pub saddr: Option<[u8; 16]>,
    pub daddr: Option<[u8; 16]>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}
