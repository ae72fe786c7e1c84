//! The fields' grammar: a rule made only of fields, as the alternatives
//! ("conjunctions") the tables hold, or as clauses with `not` the direct
//! path holds (see `FieldRule`); `Err` for anything else, which then
//! goes to libpcap.
//!
//! ```text
//! rule      := term (("and" | "&&" | "or" | "||") (term | VALUE))*
//! term      := "(" rule ")" | ("not" | "!") term | primitive
//! primitive := tcp | udp | sctp | icmp | icmp6 | igmp | gre | esp | ah
//!            | arp | rarp | ip | ip6 | [ip|ip6] proto N
//!            | [ip|ip6|arp|rarp] [src|dst|src or dst] host ADDR | ... net CIDR
//!            | [tcp|udp|sctp] [src|dst|src or dst] port N | ... portrange N-M
//! ```
//!
//! As in libpcap: `and` and `or` have the same precedence and group from
//! the left (`A or B and C` is `(A or B) and C`); `tcp port 80` is one
//! primitive, `tcp and port 80`, and `ip host X` is `ip and host X`; a bare
//! VALUE after `and`/`or` takes the qualifiers of the primitive before it
//! (`host A or B`, `tcp port 80 or 443`); `not` binds tighter than both.
//! A VALUE just inside or after parentheses, or after a negated term, is
//! left to libpcap, whose rules for it are subtler.
use std::net::IpAddr;

use super::boolean::{both, clauses, either, negation, qualify};
use super::model::{
    Clause, Conjunction, PortRange, Prefix, L3_ARP, L3_IPV4, L3_IPV6, L3_RARP, PROTO_AH, PROTO_ESP,
    PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_IGMP, PROTO_IPV6_FRAGMENT, PROTO_SCTP, PROTO_TCP,
    PROTO_UDP,
};
use super::words::{tokens, RuleError, Word};

/// Alternatives one rule may expand into (`host A and port N` is four;
/// `host A or host B or host C` six).
pub const MAX_ALTERNATIVES_PER_RULE: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    Either,
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

/// `[src|dst] host|net|port|portrange VALUE`, as alternatives.
fn value_alternatives(kind: &str, dir: Dir, value: &str) -> Result<Vec<Conjunction>, String> {
    let set = |apply: &dyn Fn(&mut Conjunction, bool)| {
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
    };
    let prefix = |p: Prefix| {
        set(&|c, src| {
            if src {
                c.src = Some(p)
            } else {
                c.dst = Some(p)
            }
        })
    };
    let ports = |r: PortRange| {
        set(&|c, src| {
            if src {
                c.sport = Some(r)
            } else {
                c.dport = Some(r)
            }
        })
    };
    Ok(match kind {
        "host" => {
            let ip: IpAddr = value
                .parse()
                .map_err(|_| format!("'{value}' is not an IPv4 or IPv6 address"))?;
            prefix(Prefix::host(ip))
        }
        "net" => prefix(parse_prefix(value)?),
        "port" => {
            let port = parse_port(value)?;
            ports(PortRange { lo: port, hi: port })
        }
        _ => ports(parse_range(value)?),
    })
}

/// An alternative with a prefix of length 0 as tcpdump's program reads
/// it: the prefix masks no word of an address, and libpcap's optimizer
/// drops the read, so only the frame's protocol is tested (IPv4, ARP or
/// RARP for an IPv4 prefix, IPv6 for an IPv6 one).
fn without_empty_prefix(c: Conjunction) -> Vec<Conjunction> {
    let Some(empty) = [c.src, c.dst].into_iter().flatten().find(|p| p.len == 0) else {
        return vec![c];
    };
    let bare = Conjunction {
        src: c.src.filter(|p| p.len > 0),
        dst: c.dst.filter(|p| p.len > 0),
        ..c
    };
    let l3s: &[u8] = match (c.l3, empty.family) {
        // A qualifier's: it fits the family (Parser::qualified).
        (Some(_), _) => return vec![bare],
        (None, 6) => &[L3_IPV6],
        (None, _) => &[L3_IPV4, L3_ARP, L3_RARP],
    };
    l3s.iter()
        .map(|&l3| Conjunction {
            l3: Some(l3),
            ..bare
        })
        .collect()
}

/// A protocol word alone, as libpcap reads it: tcp, udp and sctp over IPv4
/// or IPv6, icmp over IPv4 only, icmp6 over IPv6 only.
fn protocol_word(word: &str) -> Option<Conjunction> {
    let (l3, proto) = match word {
        "tcp" => (None, Some(PROTO_TCP)),
        "udp" => (None, Some(PROTO_UDP)),
        "sctp" => (None, Some(PROTO_SCTP)),
        // libpcap 1.10 has no `gre` keyword; this is its `proto gre`.
        "gre" => (None, Some(PROTO_GRE)),
        "icmp" => (Some(L3_IPV4), Some(PROTO_ICMP)),
        "igmp" => (Some(L3_IPV4), Some(PROTO_IGMP)),
        "esp" => (None, Some(PROTO_ESP)),
        "ah" => (None, Some(PROTO_AH)),
        "icmp6" => (Some(L3_IPV6), Some(PROTO_ICMPV6)),
        "arp" => (Some(L3_ARP), None),
        "rarp" => (Some(L3_RARP), None),
        "ip" => (Some(L3_IPV4), None),
        "ip6" => (Some(L3_IPV6), None),
        _ => return None,
    };
    Some(Conjunction {
        l3,
        proto,
        ..Default::default()
    })
}

/// How many words a direction takes at the start of `words`: `src`,
/// `dst`, `src or dst` (libpcap's default: either), or none.
fn direction_words(words: &[Word<'_>]) -> usize {
    let texts: Vec<&str> = words.iter().take(3).map(|w| w.text).collect();
    match texts.as_slice() {
        ["src", "or", "dst", ..] => 3,
        ["src" | "dst", ..] => 1,
        _ => 0,
    }
}

/// Whether the protocol word `qualifier` qualifies the primitive the words
/// begin, as libpcap reads `tcp port 80`, `ip host X`, `ip6 net N`,
/// `arp host X` and `ip proto 47`: the same as joining them with `and`.
fn qualifies(qualifier: &str, words: &[Word<'_>]) -> bool {
    let at = direction_words(words);
    let Some(next) = words.get(at).map(|w| w.text) else {
        return false;
    };
    match qualifier {
        "tcp" | "udp" | "sctp" => matches!(next, "port" | "portrange"),
        "ip" | "ip6" => matches!(next, "host" | "net") || (at == 0 && next == "proto"),
        "arp" | "rarp" => matches!(next, "host" | "net"),
        _ => false,
    }
}

/// What a primitive with a value was qualified by, for a bare value after
/// it (libpcap's `host A or B`).
#[derive(Clone, Copy)]
struct Qualifiers<'a> {
    protocol: Option<&'a str>,
    dir: Dir,
    kind: &'a str,
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Word<'a>>,
    at: usize,
    /// The qualifiers a bare value takes here, if it may have any.
    last: Option<Qualifiers<'a>>,
    /// Whether the rule has an `or`.
    or: bool,
    /// Whether a term was dropped for contradicting another.
    dropped: bool,
    /// Whether the rule has a `not`.
    negated: bool,
}

impl<'a> Parser<'a> {
    fn err(&self, message: String, column: Option<usize>) -> RuleError {
        RuleError {
            rule: self.text.to_string(),
            message,
            column,
        }
    }

    fn peek(&self) -> Option<&Word<'a>> {
        self.tokens.get(self.at)
    }

    /// Terms joined by `and`/`or`, from the left, up to a `)` or the end.
    fn rule(&mut self) -> Result<Vec<Clause>, RuleError> {
        let mut alternatives = self.term(false)?;
        while let Some(op) = self.peek() {
            let (op, column) = (op.text, op.column);
            let and = match op {
                "and" | "&&" => true,
                "or" | "||" => false,
                ")" => break,
                other => {
                    return Err(self.err(
                        format!("expected 'and' or 'or' before '{other}'"),
                        Some(column),
                    ))
                }
            };
            self.at += 1;
            if self.peek().is_none() {
                return Err(self.err(format!("the rule ends after '{op}'"), Some(column)));
            }
            let next = self.term(true)?;
            alternatives = if and {
                let (alternatives, dropped) = both(&alternatives, &next);
                self.dropped |= dropped;
                alternatives
            } else {
                self.or = true;
                either(alternatives, next)
            };
            if alternatives.len() > MAX_ALTERNATIVES_PER_RULE {
                return Err(self.err(
                    format!(
                        "the rule expands into more than {MAX_ALTERNATIVES_PER_RULE} \
                         alternatives of the tables' fields"
                    ),
                    Some(column),
                ));
            }
        }
        Ok(alternatives)
    }

    /// A parenthesized rule, a negated term, a primitive, or (after
    /// `and`/`or`) a bare value that takes the last primitive's qualifiers.
    fn term(&mut self, after_operator: bool) -> Result<Vec<Clause>, RuleError> {
        let Some(word) = self.peek() else {
            return Err(self.err("the rule ends inside parentheses".into(), None));
        };
        let (text, column) = (word.text, word.column);
        match text {
            "(" => {
                self.at += 1;
                self.last = None;
                let inner = self.rule()?;
                if self.peek().map(|w| w.text) != Some(")") {
                    return Err(self.err("'(' is not closed".into(), Some(column)));
                }
                self.at += 1;
                self.last = None;
                Ok(inner)
            }
            ")" => Err(self.err("')' closes nothing".into(), Some(column))),
            "not" | "!" => {
                self.at += 1;
                if self.peek().is_none() {
                    return Err(self.err(format!("the rule ends after '{text}'"), Some(column)));
                }
                self.negated = true;
                let inner = self.term(false)?;
                // A bare value after a negated term is left to libpcap.
                self.last = None;
                negation(&inner, MAX_ALTERNATIVES_PER_RULE).ok_or_else(|| {
                    self.err(
                        format!(
                            "the rule expands into more than {MAX_ALTERNATIVES_PER_RULE} \
                             alternatives of the tables' fields"
                        ),
                        Some(column),
                    )
                })
            }
            _ if after_operator && !starts_primitive(text) => {
                let Some(q) = self.last else {
                    return Err(self.err(
                        format!("'{text}' is beyond the tables' language"),
                        Some(column),
                    ));
                };
                self.at += 1;
                self.qualified(q, text, column).map(clauses)
            }
            _ => self.primitive().map(clauses),
        }
    }

    /// The alternatives of a primitive with a value, its protocol
    /// qualifier included.
    fn qualified(
        &self,
        q: Qualifiers<'a>,
        value: &str,
        column: usize,
    ) -> Result<Vec<Conjunction>, RuleError> {
        let alternatives =
            value_alternatives(q.kind, q.dir, value).map_err(|m| self.err(m, Some(column)))?;
        let qualified = match q.protocol.and_then(protocol_word) {
            None => alternatives,
            Some(protocol) => qualify(&protocol, &alternatives),
        };
        // libpcap refuses `ip6 host 10.0.0.1` (while `ip6 and host
        // 10.0.0.1` only never matches), so the whole rule is refused.
        if let Some(reason) = qualified.iter().find_map(|c| c.normalize().err()) {
            return Err(self.err(
                format!(
                    "'{}' cannot qualify {} {value}: {reason}",
                    q.protocol.unwrap_or_default(),
                    q.kind
                ),
                Some(column),
            ));
        }
        let mut unique = Vec::new();
        for c in qualified.into_iter().flat_map(without_empty_prefix) {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        Ok(unique)
    }

    fn primitive(&mut self) -> Result<Vec<Conjunction>, RuleError> {
        let tokens = &self.tokens;
        let first = &tokens[self.at];
        // `tcp port 80`, `ip host X`, `ip6 net N`, `ip proto 47`.
        let protocol = qualifies(first.text, &tokens[self.at + 1..]).then_some(first.text);
        if protocol.is_some() {
            self.at += 1;
        }
        let start = &tokens[self.at];
        let dir_words = direction_words(&tokens[self.at..]);
        let dir = match (start.text, dir_words) {
            ("src", 1) => Dir::Src,
            ("dst", 1) => Dir::Dst,
            _ => Dir::Either,
        };
        if dir_words > 0 {
            self.at += dir_words;
            let Some(next) = tokens.get(self.at) else {
                return Err(self.err(
                    format!(
                        "'{}' needs host, net, port or portrange after it",
                        start.text
                    ),
                    Some(start.column),
                ));
            };
            if !matches!(next.text, "host" | "net" | "port" | "portrange") {
                return Err(self.err(
                    format!(
                        "'{}' can only be followed by host, net, port or portrange, not '{}'",
                        start.text, next.text
                    ),
                    Some(next.column),
                ));
            }
        }
        let word = &tokens[self.at];
        self.at += 1;
        self.last = None;
        match word.text {
            "host" | "net" | "port" | "portrange" => {
                let Some(value) = tokens.get(self.at) else {
                    return Err(self.err(
                        format!("'{}' needs a value after it", word.text),
                        Some(word.column),
                    ));
                };
                self.at += 1;
                let q = Qualifiers {
                    protocol,
                    dir,
                    kind: word.text,
                };
                self.last = Some(q);
                self.qualified(q, value.text, value.column)
            }
            // `proto N`; 44 (an IPv6 fragment header) is left to libpcap,
            // whose IPv6 test for it differs from that for every other
            // protocol.
            "proto" => {
                let number = tokens
                    .get(self.at)
                    .and_then(|w| w.text.parse::<u8>().ok())
                    .filter(|n| *n != PROTO_IPV6_FRAGMENT)
                    .ok_or_else(|| {
                        self.err(
                            "'proto' takes a protocol number here".into(),
                            Some(word.column),
                        )
                    })?;
                self.at += 1;
                let alternatives = [Conjunction {
                    proto: Some(number),
                    ..Default::default()
                }];
                Ok(match protocol.and_then(protocol_word) {
                    Some(p) => qualify(&p, &alternatives),
                    None => alternatives.to_vec(),
                })
            }
            other => protocol_word(other).map(|c| vec![c]).ok_or_else(|| {
                self.err(
                    format!(
                        "'{other}' is beyond the tables' language (tcp, udp, sctp, icmp, icmp6, \
                         arp, rarp, ip, ip6, [src|dst] host, net, port or portrange)"
                    ),
                    Some(word.column),
                )
            }),
        }
    }
}

/// Whether a word begins a primitive (else, after `and`/`or`, it is a bare
/// value).
fn starts_primitive(word: &str) -> bool {
    protocol_word(word).is_some()
        || matches!(
            word,
            "src" | "dst" | "host" | "net" | "port" | "portrange" | "proto"
        )
}

/// A rule made only of fields, as the tables or the direct path hold it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FieldRule {
    /// Alternatives the tables hold: no `not`, and an `or` only of terms
    /// reading the same fields ([`read_alike`]).
    Table(Vec<Conjunction>),
    /// Any other: clauses the direct path matches on frames long enough
    /// for every field libpcap's program may read, with that program for
    /// the others.
    Clauses(Vec<Clause>),
}

/// The rule as fields: `Err` when it uses anything else, or can never match.
pub(super) fn field_rule(text: &str) -> Result<FieldRule, RuleError> {
    let mut parser = Parser {
        text,
        tokens: tokens(text),
        at: 0,
        last: None,
        or: false,
        dropped: false,
        negated: false,
    };
    if parser.tokens.is_empty() {
        return Ok(FieldRule::Table(vec![Conjunction::default()]));
    }
    let parsed = parser.rule()?;
    if let Some(extra) = parser.peek() {
        return Err(parser.err("')' closes nothing".into(), Some(extra.column)));
    }
    let mut last_reason = String::from("its terms contradict each other");
    let count = parsed.len();
    // A clause whose `must` no packet meets is dropped; a `must_not` no
    // packet meets rules nothing out.
    let parsed: Vec<Clause> = parsed
        .into_iter()
        .filter_map(|c| {
            let must = c.must.normalize().map_err(|e| last_reason = e).ok()?;
            let must_not = c
                .must_not
                .into_iter()
                .filter(|n| n.normalize().is_ok())
                .collect();
            Some(Clause { must, must_not })
        })
        .collect();
    if parsed.is_empty() {
        return Err(parser.err(format!("the rule can never match: {last_reason}"), None));
    }
    if parser.negated || parsed.iter().any(|c| !c.must_not.is_empty()) {
        return Ok(FieldRule::Clauses(parsed));
    }
    let alternatives: Vec<Conjunction> = parsed.iter().map(|c| c.must).collect();
    if parser.or && (parser.dropped || alternatives.len() < count || !read_alike(&alternatives)) {
        return Ok(FieldRule::Clauses(parsed));
    }
    Ok(FieldRule::Table(alternatives))
}

/// Whether every alternative reads the same fields of a frame of its
/// family: the same shape, and of each address the same number of 32-bit
/// words (those its prefix masks).
///
/// This is what lets an `or` go to the tables. libpcap's program reads a
/// field only to test it, and an alternative matches only if each of its
/// fields is in the frame. A read past the end of a frame makes the whole
/// program reject it; if every alternative needs whatever that read
/// wanted, none of them matches either, in whatever order the program
/// (optimized or not) reads. Alternatives reading different fields could
/// disagree with tcpdump on a frame cut between them: `dst port 53 or src
/// port 80` reads the destination port first.
fn read_alike(alternatives: &[Conjunction]) -> bool {
    let reads = |c: &Conjunction| {
        let words = |p: Option<Prefix>| p.map(|p| (p.family, p.len.div_ceil(32)));
        (c.shape(), words(c.src), words(c.dst))
    };
    let family = |c: &Conjunction| c.src.or(c.dst).map(|p| p.family);
    let first = &alternatives[0];
    alternatives.iter().all(|c| {
        c.shape() == first.shape()
            && alternatives
                .iter()
                .filter(|other| family(other) == family(c))
                .all(|other| reads(other) == reads(c))
    })
}
