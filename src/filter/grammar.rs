//! The rule language's grammar: words to rules, every error naming the
//! word and its column.
//!
//! The tables hold rules of this grammar; every other expression goes to
//! libpcap ([`super::pcap`]), which also judges its validity as tcpdump
//! does:
//!
//! ```text
//! rule      := primitive ("and" primitive)*
//! primitive := tcp | udp | sctp | icmp | icmp6 | igmp | gre | esp | ah
//!            | arp | rarp | ip | ip6 | [ip|ip6] proto N
//!            | [ip|ip6|arp|rarp] [src|dst] host ADDR
//!            | [ip|ip6|arp|rarp] [src|dst] net CIDR
//!            | [tcp|udp|sctp] [src|dst] port N | [tcp|udp|sctp] [src|dst] portrange N-M
//! ```
//!
//! As in libpcap, `tcp port 80` is `tcp and port 80`: a port matches TCP,
//! UDP and SCTP, and the protocol before it narrows it to one; `ip host X`
//! is `ip and host X`; `src or dst` is either direction.
use std::fmt;
use std::net::IpAddr;

use super::model::{
    Action, Conjunction, PortRange, Prefix, Rule, L3_ARP, L3_IPV4, L3_IPV6, L3_RARP, PROTO_AH,
    PROTO_ESP, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_IGMP, PROTO_IPV6_FRAGMENT, PROTO_SCTP,
    PROTO_TCP, PROTO_UDP,
};
use super::pcap;

/// The longest rule taken, in bytes.
pub const MAX_RULE_BYTES: usize = 64 << 10;
/// Alternatives one rule may expand into (`host A and port N` is four).
pub const MAX_ALTERNATIVES_PER_RULE: usize = 16;

/// A parse or validation error, naming the offending word and its column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub message: String,
    /// 1-based character column of the offending word, if there is one.
    pub column: Option<usize>,
}

/// Characters of a long rule shown around the word an error names.
const EXCERPT_CHARS: usize = 30;
/// Characters of an error message shown at most (it may quote a long word).
const MESSAGE_CHARS: usize = 200;

/// At most `n` characters of `s`, with `...` where some were left out.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

impl RuleError {
    /// The rule as shown: whole if short, else the part around the column.
    fn excerpt(&self) -> String {
        let len = self.rule.chars().count();
        if len <= 2 * EXCERPT_CHARS {
            return self.rule.clone();
        }
        let at = self.column.unwrap_or(1).saturating_sub(1);
        let from = at.saturating_sub(EXCERPT_CHARS);
        let shown: String = self
            .rule
            .chars()
            .skip(from)
            .take(2 * EXCERPT_CHARS)
            .collect();
        let before = if from > 0 { "..." } else { "" };
        let after = if from + 2 * EXCERPT_CHARS < len {
            "..."
        } else {
            ""
        };
        format!("{before}{shown}{after}")
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad rule '{}': {}",
            self.excerpt(),
            clip(&self.message, MESSAGE_CHARS)
        )?;
        if let Some(col) = self.column {
            write!(f, " at column {col}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}

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

/// The words of a rule with their 1-based character columns, in one pass.
fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    // (byte offset, column) where the current word began.
    let mut start = None;
    let chars = text.char_indices().chain([(text.len(), ' ')]);
    for (column, (i, ch)) in (1..).zip(chars) {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some((i, column)),
            (true, Some((s, col))) => {
                out.push(Word {
                    text: &text[s..i],
                    column: col,
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
        proto: same(a.proto, b.proto)?,
        src: narrower(a.src, b.src)?,
        dst: narrower(a.dst, b.dst)?,
        sport: overlap(a.sport, b.sport)?,
        dport: overlap(a.dport, b.dport)?,
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

/// Parses and validates one rule. The empty rule matches every packet.
///
/// A rule the tables can hold becomes table alternatives; any other is
/// compiled by libpcap, which then also decides whether it is valid.
pub fn parse(text: &str, action: Action) -> Result<Rule, RuleError> {
    let err = |message: String, column: Option<usize>| RuleError {
        rule: text.to_string(),
        message,
        column,
    };
    if text.len() > MAX_RULE_BYTES {
        return Err(err(
            format!(
                "the rule is {} bytes long; a rule may be at most {MAX_RULE_BYTES}",
                text.len()
            ),
            None,
        ));
    }
    let (alternatives, program) = match table_alternatives(text) {
        Ok(alternatives) => (alternatives, None),
        Err(table_error) => match pcap::compile(text) {
            Ok(program) => {
                pcap::validate(&program).map_err(|m| err(m, None))?;
                (Vec::new(), Some(program))
            }
            Err(m) if m == pcap::MISSING => {
                return Err(err(
                    format!("{}; {m}", table_error.message),
                    table_error.column,
                ))
            }
            Err(m) => {
                let m = m.trim_start_matches("can't parse filter expression: ");
                let column = if m.starts_with("syntax error") {
                    syntax_error_column(text)
                } else {
                    quoted_word_column(text, m)
                };
                return Err(err(m.to_string(), column.or(table_error.column)));
            }
        },
    };
    Ok(Rule {
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        action,
        alternatives,
        program,
    })
}

/// The column of the word a libpcap message quotes ('word'), if the rule
/// has that word.
fn quoted_word_column(text: &str, message: &str) -> Option<usize> {
    let quoted = message.split('\'').nth(1)?;
    words(text)
        .iter()
        .find(|w| w.text == quoted || w.text.contains(quoted))
        .map(|w| w.column)
}

/// Where libpcap's "syntax error" (which names no place) is: the first word
/// after which no expression can go on, found by asking libpcap whether
/// the words up to there, followed by one of a few endings, compile. That
/// holds for every prefix up to the error and for none after it, so a
/// binary search takes a few compiles, however long the rule.
fn syntax_error_column(text: &str) -> Option<usize> {
    const FILLERS: [&str; 7] = [
        "",
        " tcp",
        " 1",
        " = 1",
        " 1 = 1",
        " 1.2.3.4",
        " host 1.2.3.4",
    ];
    let words = words(text);
    let completable = |n: usize| {
        let prefix = words[..n]
            .iter()
            .map(|w| w.text)
            .collect::<Vec<_>>()
            .join(" ");
        let open = prefix.matches('(').count();
        let closes = " )".repeat(open.saturating_sub(prefix.matches(')').count()));
        FILLERS
            .iter()
            .any(|fill| pcap::compile(&format!("{prefix}{fill}{closes}")).is_ok())
    };
    // completable(lo) holds, completable(hi) does not.
    let (mut lo, mut hi) = (0, words.len());
    if completable(hi) {
        return words.last().map(|w| w.column);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if completable(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(words[hi - 1].column)
}

/// The rule as alternatives of the tables' fields; `Err` when it uses
/// anything else, or can never match.
pub(super) fn table_alternatives(text: &str) -> Result<Vec<Conjunction>, RuleError> {
    let err = |message: String, column: Option<usize>| RuleError {
        rule: text.to_string(),
        message,
        column,
    };
    let words = words(text);
    let mut alternatives = vec![Conjunction::default()];
    // The last primitive was tcp or udp, which may qualify a port after it.
    // The last primitive, if it is a protocol word that may qualify the
    // primitive after it.
    let mut qualifier: Option<&str> = None;
    let mut i = 0;
    while i < words.len() {
        if i > 0 {
            match words[i].text {
                "and" | "&&" => i += 1,
                _ if qualifier.is_some_and(|q| qualifies(q, &words[i..])) => {}
                "or" | "||" => {
                    return Err(err(
                        "'or' is beyond the tables' language".into(),
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
        let dir_words = direction_words(&words[i..]);
        if dir_words > 0 {
            dir = match (start.text, dir_words) {
                ("src", 1) => Dir::Src,
                ("dst", 1) => Dir::Dst,
                _ => Dir::Either,
            };
            i += dir_words;
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
        let proto = |l3: Option<u8>, proto: Option<u8>| {
            vec![Conjunction {
                l3,
                proto,
                ..Default::default()
            }]
        };
        // As libpcap reads them: tcp, udp and sctp over IPv4 or IPv6, icmp
        // over IPv4 only, icmp6 over IPv6 only.
        let alts = match word.text {
            "tcp" => proto(None, Some(PROTO_TCP)),
            "udp" => proto(None, Some(PROTO_UDP)),
            "sctp" => proto(None, Some(PROTO_SCTP)),
            // libpcap 1.10 has no `gre` keyword; this is its `proto gre`.
            "gre" => proto(None, Some(PROTO_GRE)),
            "icmp" => proto(Some(L3_IPV4), Some(PROTO_ICMP)),
            "igmp" => proto(Some(L3_IPV4), Some(PROTO_IGMP)),
            "esp" => proto(None, Some(PROTO_ESP)),
            "ah" => proto(None, Some(PROTO_AH)),
            // `proto N`; 44 (an IPv6 fragment header) is left to libpcap,
            // whose IPv6 test for it differs from that for every other
            // protocol.
            "proto" => {
                let arg = words
                    .get(i + 1)
                    .and_then(|w| w.text.parse::<u8>().ok())
                    .filter(|n| *n != PROTO_IPV6_FRAGMENT)
                    .ok_or_else(|| {
                        err(
                            "'proto' takes a protocol number here".into(),
                            Some(word.column),
                        )
                    })?;
                i += 1;
                proto(None, Some(arg))
            }
            "icmp6" => proto(Some(L3_IPV6), Some(PROTO_ICMPV6)),
            "arp" => proto(Some(L3_ARP), None),
            "rarp" => proto(Some(L3_RARP), None),
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
                return Err(err(
                    "'not' is beyond the tables' language".into(),
                    Some(word.column),
                ));
            }
            other => {
                return Err(err(
                    format!(
                        "'{other}' is beyond the tables' language (tcp, udp, sctp, icmp, icmp6, \
                         arp, rarp, ip, ip6, [src|dst] host, net, port or portrange)"
                    ),
                    Some(word.column),
                ))
            }
        };
        qualifier = (dir_words == 0
            && matches!(
                word.text,
                "tcp" | "udp" | "sctp" | "ip" | "ip6" | "arp" | "rarp"
            ))
        .then_some(word.text);
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
    Ok(alternatives)
}
