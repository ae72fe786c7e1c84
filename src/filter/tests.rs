//! The rule language against its plain meaning.
use super::addr::AddrTables;
use super::classes::block_range;
use super::compile::*;
use super::grammar::*;
use super::model::*;
use super::rules_file::parse_file;

pub(super) fn drop_rule(text: &str) -> Rule {
    parse(text, Action::Drop).unwrap_or_else(|e| panic!("{e}"))
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
    .unwrap()
    .rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].text, "udp and dst port 9");
    let err = parse_file("r.txt", "tcp\nudp and\n", Action::Drop).unwrap_err();
    assert!(err.starts_with("r.txt:2: bad rule 'udp and'"), "{err}");
}

#[test]
fn an_empty_rules_file_must_say_so() {
    for text in ["", "\n\n", "# nothing yet\n"] {
        let err = parse_file("r.txt", text, Action::Drop).unwrap_err();
        assert!(
            err.contains("holds no rules") && err.contains("'none'"),
            "{err}"
        );
    }
    let file = parse_file("r.txt", "# cleared on purpose\nnone\n", Action::Drop).unwrap();
    assert!(file.none && file.rules.is_empty());
    let err = parse_file("r.txt", "none\ntcp\n", Action::Drop).unwrap_err();
    assert!(err.contains("says 'none' but holds 1 rule too"), "{err}");
}

/// A small deterministic generator, so failures reproduce.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(super) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

// Lengths on both sides of the address slots' 16 bits and the IPv4
// blocks' 24 (src/filter/addr.rs).
const V4: [&str; 11] = [
    "10.0.0.0/8",
    "10.0.0.0/12",
    "10.1.0.0/16",
    "10.1.0.0/20",
    "10.1.2.0/24",
    "10.1.2.0/25",
    "10.1.2.0/30",
    "10.1.2.2/31",
    "10.1.2.3/32",
    "192.0.2.0/24",
    "0.0.0.0/0",
];
const V6: [&str; 6] = [
    "2000::/3",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1::/64",
    "2001:db8:1::4/126",
    "2001:db8:1::5/128",
];

pub(super) fn random_rule(rng: &mut Rng) -> String {
    let mut terms = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let dir = rng.pick(&["", "src ", "dst "]);
        terms.push(match rng.below(6) {
            0 => rng
                .pick(&[
                    "tcp", "udp", "icmp", "ip", "ip6", "arp", "icmp6", "sctp", "rarp",
                ])
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

pub(super) fn random_packet(rng: &mut Rng) -> PacketFields {
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
    let l3 = [L3_IPV4, L3_IPV6, L3_ARP, L3_RARP][rng.below(4) as usize];
    let family = if l3 == L3_IPV6 { 6 } else { 4 };
    let proto = match l3 {
        L3_ARP | L3_RARP => None,
        _ => [
            PROTO_TCP,
            PROTO_UDP,
            PROTO_ICMP,
            PROTO_ICMPV6,
            PROTO_SCTP,
            99,
        ]
        .get(rng.below(7) as usize)
        .copied(),
    };
    let ports = matches!(proto, Some(PROTO_TCP | PROTO_UDP | PROTO_SCTP)) && rng.below(8) != 0;
    let port = |rng: &mut Rng| [53u16, 80, 443, 1024, 1500, 65535, 0][rng.below(7) as usize];
    PacketFields {
        l3: Some(l3),
        proto,
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
            .filter(|r| r.program.is_none())
            .collect();
        let compiled = if round % 2 == 0 {
            Compiled::compile(&rules)
        } else {
            Compiled::compile_with_own_classes(&rules)
        }
        .unwrap();
        for _ in 0..200 {
            let p = random_packet(&mut rng);
            let want = rules
                .iter()
                .position(|r| r.alternatives.iter().any(|c| c.matches(&p)));
            check_lookup(&compiled, &rules, &p, want, round);
        }
    }
}

/// That the tables give packet `p` rule `want` of `rules`.
pub(super) fn check_lookup(
    compiled: &Compiled,
    rules: &[Rule],
    p: &PacketFields,
    want: Option<usize>,
    round: u64,
) {
    let got = compiled.lookup(p).map(|r| r.rule as usize);
    assert_eq!(
        got,
        want,
        "round {round}: packet {p:?}, rules {:?}",
        rules.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
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
    assert_eq!(compiled.entries.len() + compiled.cells.len(), 10_000);
    // 10,001 source classes times two protocol classes: dense cells.
    assert_eq!(compiled.cells.len(), 10_000);
    assert_eq!(compiled.addr_classes.len(), 10_000);
    // Hosts: a block by the third byte for each of the 1 + 10,000 / 65,536
    // leading 16 bits, and one by the fourth for each of the 40 /24s: none
    // in the hash.
    assert_eq!(compiled.addr.blocks.len(), 1 + 40);
    assert!(compiled.addr.long.is_empty());
}

/// The class of the longest of `classes` covering an address of which a
/// frame holds `words` 32-bit words: what the address tables must say,
/// however they are laid out.
fn longest_covering(classes: &[(Prefix, u32)], family: u8, addr: &[u8; 16], words: u8) -> u32 {
    classes
        .iter()
        .filter(|(p, _)| p.contains_addr(family, addr) && p.len <= 32 * words)
        .max_by_key(|(p, _)| p.len)
        .map_or(0, |(_, class)| *class)
}

#[test]
fn address_tables_in_fewer_blocks_keep_the_rest_in_the_hash() {
    let rules: Vec<Rule> = [
        "src net 10.1.0.0/16",
        "src net 10.1.2.0/24",
        "src net 10.1.2.128/25",
        "src net 10.1.2.4/30",
        "src host 10.1.2.5",
        "src host 10.1.2.200",
        "src host 10.1.3.1",
        "src host 10.1.3.2",
        "src net 10.1.4.0/31",
        "src host 10.2.9.9",
        "src net 2001:db8::/32",
        "src net 2001:db8:100::/40",
        "src net 2001:db8:1::/48",
        "src net 2001:db8:1:2::/64",
        "src net 2001:db8:1:2:3::/80",
        "src host 2001:db8:1:2::5",
    ]
    .iter()
    .map(|t| drop_rule(t))
    .collect();
    let classes = &Compiled::compile(&rules).unwrap().addr_classes;
    let all = AddrTables::build(classes).unwrap();
    // Blocks for IPv4 down to the last byte; for IPv6 to /64, past which
    // the /80 and the host are in the hash, and the /32 too (for frames cut
    // after its first word).
    assert_eq!(all.long.len(), 3);
    let v4 = (1..=2).flat_map(|b| (0..=9).flat_map(move |c| (0..=255).map(move |d| [10, b, c, d])));
    let v6: Vec<[u8; 16]> = [
        "2001:db8::1",
        "2001:db8:1::1",
        "2001:db8:1:2::5",
        "2001:db8:1:2::6",
        "2001:db8:1:2:3::1",
        "2001:db8:1:3::1",
        "2001:db8:100::1",
        "2001:db8:1ff::1",
        "2001:db9::1",
        "2002::1",
    ]
    .iter()
    .map(|a| a.parse::<std::net::Ipv6Addr>().unwrap().octets())
    .collect();
    for budget in 0..=all.blocks.len() {
        let tables = AddrTables::build_within(classes, budget).unwrap();
        assert_eq!(tables.blocks.len(), budget);
        if budget == 0 {
            let over16 = classes.iter().filter(|(p, _)| p.len > 16).count();
            assert_eq!(tables.long.len(), over16);
        }
        for a in v4.clone() {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&a);
            let want = longest_covering(classes, 4, &addr, 1);
            assert_eq!(tables.class(4, &addr, 1), want, "{a:?} in {budget} blocks");
        }
        for addr in &v6 {
            for words in 1..=4 {
                let want = longest_covering(classes, 6, addr, words);
                assert_eq!(
                    tables.class(6, addr, words),
                    want,
                    "{addr:?} ({words} words) in {budget} blocks"
                );
            }
        }
    }
}

#[test]
fn mixed_shapes_stay_dense_with_classes_of_their_own() {
    let rules: Vec<Rule> = (0..10_000u32)
        .map(|i| {
            drop_rule(&match i % 3 {
                0 => format!(
                    "src net 10.{}.{}.0/24 and udp and dst port 9",
                    i / 256,
                    i % 256
                ),
                1 => format!("dst host 172.16.{}.{} and tcp", i / 256, i % 256),
                _ => format!("udp and dst port {}", 10_000 + i),
            })
        })
        .collect();
    let compiled = Compiled::compile(&rules).unwrap();
    assert_eq!(compiled.shapes.len(), 3);
    // With the rule set's classes, the first shape would need 6,668
    // addresses x 3,335 ports x 3 protocols = 66M cells; with its own one
    // port class, 40,008 cells.
    assert!(compiled.dense.iter().all(Option::is_some));
    assert!(compiled.entries.is_empty());
    assert_eq!(compiled.columns[0], [0, 0, 0, 1]);
    assert_eq!(compiled.columns[1..], [[0; 4], [0; 4]]);
    assert_eq!(compiled.row_fields(), 1 << 3);
    assert!(compiled.addr_rows.is_empty());
    // Only the shapes with a rule for the frame's values are probed.
    let frame = |proto, src: &str, dst: &str, dport| PacketFields {
        l3: Some(L3_IPV4),
        proto: Some(proto),
        family: 4,
        saddr: Some(Prefix::host(src.parse().unwrap()).addr),
        daddr: Some(Prefix::host(dst.parse().unwrap()).addr),
        sport: Some(1234),
        dport: Some(dport),
    };
    for (p, probed, rule) in [
        (
            frame(PROTO_UDP, "10.39.15.1", "192.0.2.1", 9),
            0b001,
            Some(9999),
        ),
        (frame(PROTO_UDP, "198.18.0.1", "192.0.2.1", 9), 0, None),
        (frame(PROTO_TCP, "10.39.15.1", "192.0.2.1", 9), 0, None),
        (
            frame(PROTO_TCP, "198.18.0.1", "172.16.0.1", 9),
            0b010,
            Some(1),
        ),
        (frame(PROTO_UDP, "198.18.0.1", "172.16.0.1", 9), 0, None),
        (
            frame(PROTO_UDP, "198.18.0.1", "172.16.0.1", 10_002),
            0b100,
            Some(2),
        ),
        (frame(PROTO_TCP, "198.18.0.1", "192.0.2.1", 10_002), 0, None),
    ] {
        assert_eq!(compiled.candidates(&p).0, probed, "{p:?}");
        assert_eq!(compiled.lookup(&p).map(|r| r.rule), rule, "{p:?}");
    }
}

#[test]
fn a_large_shape_keys_the_field_that_shrinks_it_most_by_its_own_classes() {
    // The set of the kernel matrix's rules-file scenario.
    let mut rules: Vec<Rule> = (0..3000u32)
        .map(|i| {
            drop_rule(&format!(
                "src net 10.{}.{}.0/24 and icmp and dst host 198.18.0.9",
                i / 256,
                i % 256
            ))
        })
        .collect();
    rules.push(drop_rule(
        "src host 198.18.0.1 and icmp and dst host 198.18.0.2",
    ));
    let compiled = Compiled::compile(&rules).unwrap();
    assert_eq!(compiled.columns, [[0, 1, 0, 0]]);
    assert_eq!(compiled.addr_rows.len(), 3004);
    assert!(compiled.dense[0].is_some());
    let p = PacketFields {
        l3: Some(L3_IPV4),
        proto: Some(PROTO_ICMP),
        family: 4,
        saddr: Some(Prefix::host("198.18.0.1".parse().unwrap()).addr),
        daddr: Some(Prefix::host("198.18.0.2".parse().unwrap()).addr),
        ..Default::default()
    };
    assert_eq!(compiled.lookup(&p).unwrap().rule, 3000);
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
        l3: Some(L3_IPV4),
        proto: Some(PROTO_UDP),
        family: 4,
        sport: Some(53),
        dport: Some(1),
        ..Default::default()
    };
    assert_eq!(compiled.lookup(&p).unwrap().rule, 0);
}

/// The address layout (slots, IPv4 blocks, the hash per longer length)
/// gives every address the class of the longest rule prefix covering it,
/// on random prefixes of every length and addresses near them, whole or
/// cut to fewer 32-bit words as a short frame has them.
#[test]
fn address_classes_are_the_longest_covering_prefix() {
    use super::addr::AddrTables;
    let mut rng = Rng(0x2545f4914f6cdd1d);
    for _ in 0..200 {
        let family = if rng.below(2) == 0 { 4 } else { 6 };
        let bits = Prefix::bits(family);
        // Addresses that share leading bits, so that prefixes nest.
        let base: [u8; 16] = std::array::from_fn(|i| if i < 2 { 0x0a } else { rng.below(4) as u8 });
        let near = |rng: &mut Rng| -> [u8; 16] {
            let mut a = base;
            let i = rng.below(u64::from(bits / 8)) as usize;
            a[i] ^= 1 << rng.below(8);
            a
        };
        let mut prefixes: Vec<Prefix> = (0..1 + rng.below(40))
            .map(|_| {
                // IPv6 in steps of 4: at most 32 lengths over /16
                // (addr::MAX_LENS).
                let len = match family {
                    4 => rng.below(33) as u8,
                    _ => rng.below(33) as u8 * 4,
                };
                let addr = near(&mut rng);
                let addr = std::array::from_fn(|i| {
                    let keep = u32::from(len).saturating_sub(8 * i as u32).min(8);
                    addr[i] & (0xff00u16 >> keep) as u8
                });
                Prefix { family, addr, len }
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let classes: Vec<(Prefix, u32)> = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32 + 1))
            .collect();
        let tables = AddrTables::build(&classes).unwrap();
        for _ in 0..200 {
            let addr = near(&mut rng);
            let words = if family == 4 {
                1
            } else {
                1 + rng.below(4) as u8
            };
            let want = classes
                .iter()
                .filter(|(p, _)| p.contains_addr(family, &addr) && p.len <= 32 * words)
                .max_by_key(|(p, _)| p.len)
                .map_or(0, |(_, c)| *c);
            assert_eq!(
                tables.class(family, &addr, words),
                want,
                "{addr:?} in {prefixes:?}"
            );
        }
    }
}

#[test]
fn a_few_alternatives_are_compared_directly_more_go_through_the_tables() {
    let rules = |texts: &[String]| -> Vec<Rule> {
        texts
            .iter()
            .map(|t| parse(t, Action::Drop).unwrap())
            .collect()
    };
    let alternatives = |rules: &[Rule]| -> Vec<(u32, Conjunction)> {
        (0..)
            .zip(rules)
            .flat_map(|(i, r)| r.alternatives.iter().map(move |c| (i, *c)))
            .collect()
    };
    let direct = |c: &Compiled| -> Vec<(u32, Conjunction)> {
        c.direct
            .iter()
            .map(|t| (t.rule.rule, t.conjunction))
            .collect()
    };
    let few = rules(&["host 10.0.0.1".into(), "udp and dst port 9".into()]);
    let compiled = Compiled::compile(&few).unwrap();
    assert_eq!(
        direct(&compiled),
        alternatives(&few),
        "every alternative, in rule order"
    );
    assert!(
        !compiled.shapes.is_empty(),
        "the tables hold the rules too, for a hook without the direct path"
    );
    assert!(Compiled::compile_tables_only(&few)
        .unwrap()
        .direct
        .is_empty());
    assert!(Compiled::compile_with_own_classes(&few)
        .unwrap()
        .direct
        .is_empty());

    let texts = |n: u16| -> Vec<String> { (0..n).map(|i| format!("dst port {i}")).collect() };
    let eight = rules(&texts(8));
    assert_eq!(alternatives(&eight).len(), MAX_DIRECT);
    assert_eq!(
        direct(&Compiled::compile(&eight).unwrap()).len(),
        MAX_DIRECT
    );
    let nine = rules(&texts(9));
    assert!(Compiled::compile(&nine).unwrap().direct.is_empty());
    let ipv6 = rules(&["udp".into(), "src host 2001:db8::1".into()]);
    assert_eq!(
        direct(&Compiled::compile(&ipv6).unwrap()),
        alternatives(&ipv6)
    );
}
