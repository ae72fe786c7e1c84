//! The rule language: a small tcpdump-flavoured expression, parsed and
//! validated here, and compiled into the lookup tables the BPF programs
//! match with (src/bpf/rules.h).
//!
//! ```text
//! rule      := primitive ("and" primitive)*
//! primitive := tcp | udp | icmp | icmp6 | arp | ip | ip6
//!            | [src|dst] host ADDR | [src|dst] net CIDR
//!            | [src|dst] port N    | [src|dst] portrange N-M
//! ```
//!
//! Several rules mean OR; a packet counts for the first rule it matches.
//! Without `src`/`dst`, `host`, `net`, `port` and `portrange` match either
//! direction. Addresses are IPv4 or IPv6; `host` and `net` match IP source
//! and destination, and the sender and target of Ethernet/IPv4 ARP. Ports
//! match TCP and UDP.
//!
//! Matching never scans rules. Addresses and ports each go through one
//! longest-prefix-match trie that maps a packet's field to the most specific
//! rule prefix covering it (port ranges are split into prefix-aligned
//! blocks). Each rule alternative ("conjunction") constrains some set of
//! fields, its *shape*; for every shape in use there is one hash lookup keyed
//! by the packet's trie results. The cost per packet grows with the number
//! of distinct shapes (at most [`MAX_SHAPES`]), not with the number of rules.
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// Distinct shapes a rule set may use; each costs one hash lookup per packet.
pub const MAX_SHAPES: usize = 64;
/// Alternatives one rule may expand into (`host A and port N` is four).
pub const MAX_ALTERNATIVES_PER_RULE: usize = 16;
/// Hash entries a rule set may compile into.
pub const MAX_ENTRIES: usize = 4 << 20;

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

/// A parse or validation error, naming the offending word and its column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub message: String,
    /// 1-based character column of the offending word, if there is one.
    pub column: Option<usize>,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad rule '{}': {}", self.rule, self.message)?;
        if let Some(col) = self.column {
            write!(f, " at column {col}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}

/// An address prefix: family 4 or 6, address bytes, prefix length in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub family: u8,
    pub addr: [u8; 16],
    pub len: u8,
}

impl Prefix {
    fn bits(family: u8) -> u8 {
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
    fn intersect(self, other: PortRange) -> Option<PortRange> {
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
    fn normalize(mut self) -> Result<Conjunction, String> {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    Either,
}

struct Word<'a> {
    text: &'a str,
    column: usize,
}

fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in text.char_indices().chain([(text.len(), ' ')]) {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push(Word {
                    text: &text[s..i],
                    column: text[..s].chars().count() + 1,
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 network"))?;
    let mut prefix = Prefix::host(ip);
    if let Some(len) = len {
        let max = Prefix::bits(prefix.family);
        prefix.len = len
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("'{len}' is not a prefix length from 0 to {max}"))?;
    }
    let mut masked = prefix.addr;
    for (i, byte) in masked.iter_mut().enumerate() {
        let keep = u32::from(prefix.len).saturating_sub(8 * i as u32).min(8);
        *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    if masked != prefix.addr {
        return Err(format!(
            "'{s}' has host bits set (did you mean {}?)",
            Prefix {
                addr: masked,
                ..prefix
            }
        ));
    }
    Ok(prefix)
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("'{s}' is not a port from 0 to 65535"))
}

fn parse_range(s: &str) -> Result<PortRange, String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a port range like 1024-2047"))?;
    let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
    if lo > hi {
        return Err(format!("'{s}' is an empty range"));
    }
    Ok(PortRange { lo, hi })
}

/// The alternatives one primitive allows.
fn primitive_alternatives(dir: Dir, apply: impl Fn(&mut Conjunction, bool)) -> Vec<Conjunction> {
    let one = |is_src: bool| {
        let mut c = Conjunction::default();
        apply(&mut c, is_src);
        c
    };
    match dir {
        Dir::Src => vec![one(true)],
        Dir::Dst => vec![one(false)],
        Dir::Either => vec![one(true), one(false)],
    }
}

/// `a and b`: both constraints at once, or `None` if no packet can meet both.
fn conjoin(a: &Conjunction, b: &Conjunction) -> Option<Conjunction> {
    fn same<T: PartialEq + Copy>(x: Option<T>, y: Option<T>) -> Option<Option<T>> {
        match (x, y) {
            (Some(x), Some(y)) if x != y => None,
            (x, y) => Some(x.or(y)),
        }
    }
    fn narrower(x: Option<Prefix>, y: Option<Prefix>) -> Option<Option<Prefix>> {
        match (x, y) {
            (Some(x), Some(y)) if x.within(&y) => Some(Some(x)),
            (Some(x), Some(y)) if y.within(&x) => Some(Some(y)),
            (Some(_), Some(_)) => None,
            (x, y) => Some(x.or(y)),
        }
    }
    fn overlap(x: Option<PortRange>, y: Option<PortRange>) -> Option<Option<PortRange>> {
        match (x, y) {
            (Some(x), Some(y)) => x.intersect(y).map(Some),
            (x, y) => Some(x.or(y)),
        }
    }
    Some(Conjunction {
        l3: same(a.l3, b.l3)?,
        l4: same(a.l4, b.l4)?,
        src: narrower(a.src, b.src)?,
        dst: narrower(a.dst, b.dst)?,
        sport: overlap(a.sport, b.sport)?,
        dport: overlap(a.dport, b.dport)?,
    })
}

/// Parses and validates one rule. The empty rule matches every packet.
pub fn parse(text: &str, action: Action) -> Result<Rule, RuleError> {
    let err = |message: String, column: Option<usize>| RuleError {
        rule: text.to_string(),
        message,
        column,
    };
    let words = words(text);
    let mut alternatives = vec![Conjunction::default()];
    let mut i = 0;
    while i < words.len() {
        if i > 0 {
            match words[i].text {
                "and" | "&&" => i += 1,
                "or" | "||" => {
                    return Err(err(
                        "'or' is not supported: give each alternative as its own rule".into(),
                        Some(words[i].column),
                    ))
                }
                other => {
                    return Err(err(
                        format!("expected 'and' before '{other}'"),
                        Some(words[i].column),
                    ))
                }
            }
            if i == words.len() {
                return Err(err(
                    "the rule ends after 'and'".into(),
                    Some(words[i - 1].column),
                ));
            }
        }
        let start = &words[i];
        let mut dir = Dir::Either;
        if matches!(start.text, "src" | "dst") {
            dir = if start.text == "src" {
                Dir::Src
            } else {
                Dir::Dst
            };
            i += 1;
            let Some(next) = words.get(i) else {
                return Err(err(
                    format!(
                        "'{}' needs host, net, port or portrange after it",
                        start.text
                    ),
                    Some(start.column),
                ));
            };
            if !matches!(next.text, "host" | "net" | "port" | "portrange") {
                return Err(err(
                    format!(
                        "'{}' can only be followed by host, net, port or portrange, not '{}'",
                        start.text, next.text
                    ),
                    Some(next.column),
                ));
            }
        }
        let word = &words[i];
        let proto = |l3: Option<u8>, l4: Option<u8>| {
            vec![Conjunction {
                l3,
                l4,
                ..Default::default()
            }]
        };
        let alts = match word.text {
            "tcp" => proto(None, Some(L4_TCP)),
            "udp" => proto(None, Some(L4_UDP)),
            "icmp" => proto(None, Some(L4_ICMP)),
            "icmp6" => proto(None, Some(L4_ICMPV6)),
            "arp" => proto(Some(L3_ARP), None),
            "ip" => proto(Some(L3_IPV4), None),
            "ip6" => proto(Some(L3_IPV6), None),
            "host" | "net" | "port" | "portrange" => {
                let Some(arg) = words.get(i + 1) else {
                    return Err(err(
                        format!("'{}' needs a value after it", word.text),
                        Some(word.column),
                    ));
                };
                i += 1;
                let bad = |m: String| err(m, Some(arg.column));
                match word.text {
                    "host" => {
                        let ip: IpAddr = arg.text.parse().map_err(|_| {
                            bad(format!("'{}' is not an IPv4 or IPv6 address", arg.text))
                        })?;
                        let p = Prefix::host(ip);
                        primitive_alternatives(dir, |c, s| {
                            if s {
                                c.src = Some(p)
                            } else {
                                c.dst = Some(p)
                            }
                        })
                    }
                    "net" => {
                        let p = parse_prefix(arg.text).map_err(bad)?;
                        primitive_alternatives(dir, |c, s| {
                            if s {
                                c.src = Some(p)
                            } else {
                                c.dst = Some(p)
                            }
                        })
                    }
                    "port" => {
                        let port = parse_port(arg.text).map_err(bad)?;
                        let r = PortRange { lo: port, hi: port };
                        primitive_alternatives(dir, |c, s| {
                            if s {
                                c.sport = Some(r)
                            } else {
                                c.dport = Some(r)
                            }
                        })
                    }
                    _ => {
                        let r = parse_range(arg.text).map_err(bad)?;
                        primitive_alternatives(dir, |c, s| {
                            if s {
                                c.sport = Some(r)
                            } else {
                                c.dport = Some(r)
                            }
                        })
                    }
                }
            }
            "not" | "!" => {
                return Err(err("'not' is not supported".into(), Some(word.column)));
            }
            other => {
                return Err(err(
                    format!(
                        "unknown word '{other}' (expected tcp, udp, icmp, icmp6, arp, ip, ip6, \
                         [src|dst] host, net, port or portrange)"
                    ),
                    Some(word.column),
                ))
            }
        };
        let mut next = Vec::new();
        for a in &alternatives {
            for b in &alts {
                if let Some(c) = conjoin(a, b) {
                    if !next.contains(&c) {
                        next.push(c);
                    }
                }
            }
        }
        if next.is_empty() {
            return Err(err(
                format!(
                    "'{}' contradicts what comes before it: the rule can never match",
                    word.text
                ),
                Some(start.column),
            ));
        }
        if next.len() > MAX_ALTERNATIVES_PER_RULE {
            return Err(err(
                format!("too many either-direction terms: the rule expands into more than {MAX_ALTERNATIVES_PER_RULE} alternatives; use src/dst"),
                Some(start.column),
            ));
        }
        alternatives = next;
        i += 1;
    }
    let mut last_reason = String::new();
    let alternatives: Vec<Conjunction> = alternatives
        .into_iter()
        .filter_map(|c| c.normalize().map_err(|e| last_reason = e).ok())
        .collect();
    if alternatives.is_empty() {
        return Err(err(
            format!("the rule can never match: {last_reason}"),
            None,
        ));
    }
    Ok(Rule {
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        action,
        alternatives,
    })
}

/// Parses rules given on the command line; a bad one is a usage error. An
/// empty one is refused too: it would match every packet, which an empty
/// shell variable must not do to a drop rule.
pub fn parse_args(texts: &[String], action: Action) -> anyhow::Result<Vec<Rule>> {
    texts
        .iter()
        .map(|t| {
            if t.trim().is_empty() {
                return Err(crate::cli::UsageError(
                    "empty rule: it would match every packet; give at least one primitive".into(),
                )
                .into());
            }
            parse(t, action).map_err(|e| crate::cli::UsageError(e.to_string()).into())
        })
        .collect()
}

/// Compiles rules; a rule set too complex to compile is a usage error.
pub fn compile_args(rules: &[Rule]) -> anyhow::Result<Compiled> {
    Compiled::compile(rules).map_err(|e| crate::cli::UsageError(e).into())
}

/// Reads a rules file: one rule per line; `#` starts a comment; blank lines
/// are skipped. Errors name the line.
pub fn parse_file(path: &str, contents: &str, action: Action) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (n, line) in contents.lines().enumerate() {
        let text = line.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        rules.push(parse(text, action).map_err(|e| format!("{path}:{}: {e}", n + 1))?);
    }
    Ok(rules)
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

/// The key of one hash entry: a shape and the trie results it constrains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeKey {
    pub shape: u8,
    pub l3: u8,
    pub l4: u8,
    pub src: u32,
    pub dst: u32,
    pub sport: u32,
    pub dport: u32,
}

/// What a hash entry points at: the first rule with that key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub rule: u32,
    pub action: Action,
}

/// A rule set compiled into trie and hash entries (generation-free; the
/// maps module adds the generation byte).
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// Address trie: prefix -> class id (1-based).
    pub addr_classes: Vec<(Prefix, u32)>,
    /// Port trie: (first port, prefix length) -> class id (1-based).
    pub port_classes: Vec<((u16, u8), u32)>,
    /// Shapes in use, in the order the program tries them.
    pub shapes: Vec<u8>,
    pub entries: HashMap<ShapeKey, RuleRef>,
}

/// Prefixes indexed so that "all prefixes inside P" is a range scan:
/// (group, first value, last value), where group keeps IPv4 and IPv6 apart.
struct PrefixIndex<K: Ord + Copy> {
    /// (group, first, last, key, class), sorted.
    sorted: Vec<(u8, u128, u128, K, u32)>,
}

impl<K: Ord + Copy> PrefixIndex<K> {
    fn new(items: impl Iterator<Item = (u8, u128, u128, K)>) -> PrefixIndex<K> {
        let mut sorted: Vec<(u8, u128, u128, K, u32)> =
            items.map(|(g, s, e, k)| (g, s, e, k, 0)).collect();
        sorted.sort();
        sorted.dedup_by(|a, b| a.3 == b.3);
        for (i, item) in sorted.iter_mut().enumerate() {
            item.4 = i as u32 + 1;
        }
        PrefixIndex { sorted }
    }

    /// Classes of the indexed prefixes lying within `(group, first, last)`.
    fn within(&self, (group, first, last): (u8, u128, u128)) -> impl Iterator<Item = u32> + '_ {
        let from = self
            .sorted
            .partition_point(|item| (item.0, item.1) < (group, first));
        self.sorted[from..]
            .iter()
            .take_while(move |item| item.0 == group && item.1 <= last)
            .filter(move |item| item.2 <= last)
            .map(|item| item.4)
    }

    fn classes(&self) -> Vec<(K, u32)> {
        self.sorted.iter().map(|item| (item.3, item.4)).collect()
    }
}

/// An address prefix as (family, first address, last address), addresses
/// read as 128-bit numbers (IPv4 in the top 32 bits, as stored).
fn prefix_range(p: &Prefix) -> (u8, u128, u128) {
    let first = u128::from_be_bytes(p.addr);
    let host_bits = u128::MAX.checked_shr(u32::from(p.len)).unwrap_or(0);
    (p.family, first, first | host_bits)
}

/// A port block as (0, first port, last port).
fn block_range(port: u16, len: u8) -> (u8, u128, u128) {
    let span = (1u32 << (16 - u32::from(len))) - 1;
    (0, u128::from(port), u128::from(u32::from(port) | span))
}

impl Compiled {
    pub fn compile(rules: &[Rule]) -> Result<Compiled, String> {
        let alternatives = || {
            rules
                .iter()
                .enumerate()
                .flat_map(|(i, r)| r.alternatives.iter().map(move |c| (i, r.action, c)))
        };
        let addr_index = PrefixIndex::new(
            alternatives()
                .flat_map(|(_, _, c)| [c.src, c.dst])
                .flatten()
                .map(|p| {
                    let (g, s, e) = prefix_range(&p);
                    (g, s, e, p)
                }),
        );
        let port_index = PrefixIndex::new(
            alternatives()
                .flat_map(|(_, _, c)| [c.sport, c.dport])
                .flatten()
                .flat_map(PortRange::blocks)
                .map(|(port, len)| {
                    let (g, s, e) = block_range(port, len);
                    (g, s, e, (port, len))
                }),
        );
        let addr_within = |p: &Prefix| -> Vec<u32> { addr_index.within(prefix_range(p)).collect() };
        let port_within = |r: &PortRange| -> Vec<u32> {
            let mut out: Vec<u32> = r
                .blocks()
                .iter()
                .flat_map(|&(port, len)| {
                    port_index
                        .within(block_range(port, len))
                        .collect::<Vec<_>>()
                })
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        };

        let mut shapes: BTreeMap<u8, usize> = BTreeMap::new();
        let mut entries: HashMap<ShapeKey, RuleRef> = HashMap::new();
        for (rule, action, c) in alternatives() {
            let shape = c.shape();
            let order = shapes.len();
            shapes.entry(shape).or_insert(order);
            if shapes.len() > MAX_SHAPES {
                return Err(format!(
                    "the rules use more than {MAX_SHAPES} different combinations of fields; \
                     netprobe matches at most {MAX_SHAPES}"
                ));
            }
            let any = vec![0u32];
            let src = c.src.as_ref().map_or_else(|| any.clone(), addr_within);
            let dst = c.dst.as_ref().map_or_else(|| any.clone(), addr_within);
            let sport = c.sport.as_ref().map_or_else(|| any.clone(), port_within);
            let dport = c.dport.as_ref().map_or_else(|| any.clone(), port_within);
            for &s in &src {
                for &d in &dst {
                    for &sp in &sport {
                        for &dp in &dport {
                            let key = ShapeKey {
                                shape,
                                l3: c.l3.unwrap_or(0),
                                l4: c.l4.unwrap_or(0),
                                src: s,
                                dst: d,
                                sport: sp,
                                dport: dp,
                            };
                            // The first rule wins a shared key.
                            entries.entry(key).or_insert(RuleRef {
                                rule: rule as u32,
                                action,
                            });
                            if entries.len() > MAX_ENTRIES {
                                return Err(format!(
                                    "the rules compile into more than {MAX_ENTRIES} table entries \
                                     (many nested prefixes or wide port ranges); split or simplify them"
                                ));
                            }
                        }
                    }
                }
            }
        }
        let mut shape_order: Vec<(usize, u8)> = shapes.into_iter().map(|(s, o)| (o, s)).collect();
        shape_order.sort();
        Ok(Compiled {
            addr_classes: addr_index.classes(),
            port_classes: port_index.classes(),
            shapes: shape_order.into_iter().map(|(_, s)| s).collect(),
            entries,
        })
    }

    /// What the BPF matcher does, in Rust: the first rule a packet matches.
    pub fn lookup(&self, p: &PacketFields) -> Option<RuleRef> {
        let addr_class = |addr: Option<[u8; 16]>| -> u32 {
            addr.and_then(|a| {
                self.addr_classes
                    .iter()
                    .filter(|(prefix, _)| prefix.contains_addr(p.family, &a))
                    .max_by_key(|(prefix, _)| prefix.len)
                    .map(|(_, class)| *class)
            })
            .unwrap_or(0)
        };
        let port_class = |port: Option<u16>| -> u32 {
            port.filter(|_| matches!(p.l4, Some(L4_TCP | L4_UDP)))
                .and_then(|port| {
                    self.port_classes
                        .iter()
                        .filter(|((first, len), _)| {
                            let (_, s, e) = block_range(*first, *len);
                            (s..=e).contains(&u128::from(port))
                        })
                        .max_by_key(|((_, len), _)| *len)
                        .map(|(_, class)| *class)
                })
                .unwrap_or(0)
        };
        let (src, dst) = (addr_class(p.saddr), addr_class(p.daddr));
        let (sport, dport) = (port_class(p.sport), port_class(p.dport));
        self.shapes
            .iter()
            .filter_map(|&shape| {
                let pick = |bit: u8, v: u32| if shape & bit != 0 { v } else { 0 };
                let key = ShapeKey {
                    shape,
                    l3: pick(SHAPE_L3, u32::from(p.l3)) as u8,
                    l4: pick(SHAPE_L4, u32::from(p.l4.unwrap_or(L4_NONE))) as u8,
                    src: pick(SHAPE_SRC, src),
                    dst: pick(SHAPE_DST, dst),
                    sport: pick(SHAPE_SPORT, sport),
                    dport: pick(SHAPE_DPORT, dport),
                };
                self.entries.get(&key).copied()
            })
            .min_by_key(|r| r.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop_rule(text: &str) -> Rule {
        parse(text, Action::Drop).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(text: &str) -> String {
        parse(text, Action::Drop).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_primitive() {
        let c = &drop_rule("udp and dst port 9").alternatives;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].l4, Some(L4_UDP));
        assert_eq!(c[0].dport, Some(PortRange { lo: 9, hi: 9 }));
        let c = &drop_rule("icmp6").alternatives[0];
        assert_eq!((c.l3, c.l4), (Some(L3_IPV6), Some(L4_ICMPV6)));
        let c =
            &drop_rule("src net 10.0.0.0/8 and tcp and dst portrange 1000-2000").alternatives[0];
        assert_eq!(c.src.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(c.dport, Some(PortRange { lo: 1000, hi: 2000 }));
        assert_eq!(
            drop_rule("dst host 2001:db8::1").alternatives[0]
                .dst
                .unwrap()
                .to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(drop_rule("arp").alternatives[0].l3, Some(L3_ARP));
        assert_eq!(drop_rule("ip").alternatives[0].l3, Some(L3_IPV4));
        assert_eq!(drop_rule("").alternatives, vec![Conjunction::default()]);
        assert_eq!(drop_rule("  tcp   and  port 80 ").text, "tcp and port 80");
    }

    #[test]
    fn either_direction_expands() {
        assert_eq!(drop_rule("host 198.18.0.1").alternatives.len(), 2);
        assert_eq!(
            drop_rule("host 198.18.0.1 and port 53").alternatives.len(),
            4
        );
        assert_eq!(
            drop_rule("src host 198.18.0.1 and port 53")
                .alternatives
                .len(),
            2
        );
        // `net A and host B` with B inside A keeps only consistent pairs.
        let r = drop_rule("net 10.0.0.0/8 and src host 10.1.2.3");
        assert!(r
            .alternatives
            .iter()
            .all(|c| c.src.unwrap().to_string() == "10.1.2.3/32"));
    }

    #[test]
    fn errors_name_the_word_and_column() {
        assert_eq!(
            error("udp and dst prot 9"),
            "bad rule 'udp and dst prot 9': 'dst' can only be followed by host, net, port or portrange, not 'prot' at column 13"
        );
        assert!(error("udp and frob").contains("unknown word 'frob'"));
        assert!(error("udp and frob").ends_with("at column 9"));
        assert!(error("tcp port 80").contains("expected 'and' before 'port' at column 5"));
        assert!(error("tcp and").contains("ends after 'and'"));
        assert!(error("host").contains("'host' needs a value"));
        assert!(error("host 1.2.3").contains("'1.2.3' is not an IPv4 or IPv6 address at column 6"));
        assert!(error("net 10.1.2.3/8").contains("host bits set (did you mean 10.0.0.0/8?)"));
        assert!(error("net 10.0.0.0/33").contains("prefix length from 0 to 32"));
        assert!(error("port 70000").contains("not a port"));
        assert!(error("portrange 9-1").contains("empty range"));
        assert!(error("portrange 9").contains("not a port range"));
        assert!(error("tcp or udp").contains("'or' is not supported"));
        assert!(error("not tcp").contains("'not' is not supported"));
        assert!(error("src").contains("'src' needs host"));
    }

    #[test]
    fn contradictions_are_rejected() {
        for text in [
            "tcp and udp",
            "ip and ip6",
            "icmp and ip6",
            "icmp and port 80",
            "arp and port 80",
            "arp and tcp",
            "ip6 and host 1.2.3.4",
            "src host 1.1.1.1 and src host 2.2.2.2",
            "dst port 1 and dst port 2",
            "src host 1.1.1.1 and dst host ::1",
        ] {
            let e = error(text);
            assert!(
                e.contains("never match") || e.contains("contradicts"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn port_ranges_split_into_exact_blocks() {
        for (lo, hi) in [
            (0, 65535),
            (1, 65535),
            (5, 5),
            (1000, 2000),
            (0, 0),
            (65535, 65535),
            (3, 17),
        ] {
            let blocks = PortRange { lo, hi }.blocks();
            let mut covered = Vec::new();
            for (first, len) in &blocks {
                let (_, s, e) = block_range(*first, *len);
                covered.extend(s..=e);
            }
            let want: Vec<u128> = (u128::from(lo)..=u128::from(hi)).collect();
            assert_eq!(covered, want, "{lo}-{hi}");
            assert!(blocks.len() <= 32);
        }
        assert_eq!(PortRange { lo: 0, hi: 65535 }.blocks(), vec![(0, 0)]);
    }

    #[test]
    fn rules_file_skips_comments_and_names_bad_lines() {
        let rules = parse_file(
            "r.txt",
            "# header\n\nudp and dst port 9  # discard\ntcp\n",
            Action::Drop,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].text, "udp and dst port 9");
        let err = parse_file("r.txt", "tcp\nudp and\n", Action::Drop).unwrap_err();
        assert!(err.starts_with("r.txt:2: bad rule 'udp and'"), "{err}");
    }

    /// A small deterministic generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    const V4: [&str; 6] = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.0/24",
        "10.1.2.3/32",
        "192.0.2.0/24",
        "0.0.0.0/0",
    ];
    const V6: [&str; 3] = ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::5/128"];

    fn random_rule(rng: &mut Rng) -> String {
        let mut terms = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let dir = rng.pick(&["", "src ", "dst "]);
            terms.push(match rng.below(6) {
                0 => rng
                    .pick(&["tcp", "udp", "icmp", "ip", "ip6", "arp", "icmp6"])
                    .to_string(),
                1 => format!("{dir}net {}", rng.pick(&V4)),
                2 => format!("{dir}net {}", rng.pick(&V6)),
                3 => format!("{dir}port {}", rng.pick(&["53", "80", "443", "1024"])),
                4 => format!(
                    "{dir}portrange {}",
                    rng.pick(&["1-1023", "1000-2000", "0-65535", "443-443"])
                ),
                _ => format!(
                    "{dir}host {}",
                    rng.pick(&["10.1.2.3", "10.9.9.9", "2001:db8:1::5"])
                ),
            });
        }
        terms.join(" and ")
    }

    fn random_packet(rng: &mut Rng) -> PacketFields {
        let v4 = [
            "10.1.2.3",
            "10.1.2.4",
            "10.1.9.9",
            "10.9.9.9",
            "192.0.2.1",
            "8.8.8.8",
        ];
        let v6 = [
            "2001:db8:1::5",
            "2001:db8:1::6",
            "2001:db8:2::1",
            "2001:db9::1",
        ];
        let addr = |rng: &mut Rng, family: u8| {
            let text = if family == 4 {
                rng.pick(&v4)
            } else {
                rng.pick(&v6)
            };
            Prefix::host(text.parse().unwrap()).addr
        };
        let l3 = [L3_IPV4, L3_IPV6, L3_ARP][rng.below(3) as usize];
        let family = if l3 == L3_IPV6 { 6 } else { 4 };
        let l4 = match l3 {
            L3_ARP => None,
            L3_IPV4 => [Some(L4_TCP), Some(L4_UDP), Some(L4_ICMP), None][rng.below(4) as usize],
            _ => [Some(L4_TCP), Some(L4_UDP), Some(L4_ICMPV6), None][rng.below(4) as usize],
        };
        let ports = matches!(l4, Some(L4_TCP | L4_UDP));
        let port = |rng: &mut Rng| [53u16, 80, 443, 1024, 1500, 65535, 0][rng.below(7) as usize];
        PacketFields {
            l3,
            l4,
            family,
            saddr: Some(addr(rng, family)),
            daddr: Some(addr(rng, family)),
            sport: ports.then(|| port(rng)),
            dport: ports.then(|| port(rng)),
        }
    }

    #[test]
    fn compiled_tables_match_like_the_rules_say() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for round in 0..300 {
            let rules: Vec<Rule> = (0..1 + rng.below(8))
                .filter_map(|_| parse(&random_rule(&mut rng), Action::Drop).ok())
                .collect();
            let compiled = Compiled::compile(&rules).unwrap();
            for _ in 0..200 {
                let p = random_packet(&mut rng);
                let want = rules
                    .iter()
                    .position(|r| r.alternatives.iter().any(|c| c.matches(&p)));
                let got = compiled.lookup(&p).map(|r| r.rule as usize);
                assert_eq!(
                    got,
                    want,
                    "round {round}: packet {p:?}, rules {:?}",
                    rules.iter().map(|r| &r.text).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn ten_thousand_rules_compile_to_one_shape() {
        let rules: Vec<Rule> = (0..10_000u32)
            .map(|i| {
                drop_rule(&format!(
                    "src host 10.{}.{}.{} and udp",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ))
            })
            .collect();
        let compiled = Compiled::compile(&rules).unwrap();
        assert_eq!(compiled.shapes.len(), 1);
        assert_eq!(compiled.entries.len(), 10_000);
        assert_eq!(compiled.addr_classes.len(), 10_000);
    }

    #[test]
    fn first_rule_wins_a_shared_key() {
        let rules = vec![
            drop_rule("udp"),
            drop_rule("udp and port 53"),
            drop_rule("udp"),
        ];
        let compiled = Compiled::compile(&rules).unwrap();
        let p = PacketFields {
            l3: L3_IPV4,
            l4: Some(L4_UDP),
            family: 4,
            sport: Some(53),
            dport: Some(1),
            ..Default::default()
        };
        assert_eq!(compiled.lookup(&p).unwrap().rule, 0);
    }
}
