//! Rules of clauses (a `not`, or an `or` of terms reading different
//! fields): what they mean, and the tables' shapes of clauses against it.
use super::compile::*;
use super::grammar::*;
use super::model::*;
use super::tests::{check_lookup, drop_rule, random_packet, random_rule, Rng};

#[test]
fn not_and_or_of_different_fields_become_clauses() {
    if !super::pcap::available() {
        return;
    }
    let port = |n: u16| Some(PortRange { lo: n, hi: n });
    let not_ssh = drop_rule("not port 22");
    assert!(
        not_ssh.program.is_some(),
        "the program, for frames cut short"
    );
    assert!(not_ssh.looks_through_vlan());
    assert_eq!(
        not_ssh.clauses,
        vec![Clause {
            must: Conjunction::default(),
            must_not: vec![
                Conjunction {
                    sport: port(22),
                    ..Default::default()
                },
                Conjunction {
                    dport: port(22),
                    ..Default::default()
                },
            ],
        }]
    );
    // The direct path's steps for it (src/filter/direct.rs), and a shape
    // of clauses in the tables, on both ports.
    let compiled = Compiled::compile(&[not_ssh]).unwrap();
    assert!(compiled.programs[0].held && compiled.programs[0].untagged);
    assert!(!compiled.direct.is_empty());
    assert_eq!(compiled.shapes, [SHAPE_SPORT | SHAPE_DPORT | SHAPE_CLAUSE]);

    // De Morgan: not (tcp and dst port 80) is not tcp, or tcp to another port.
    let web = drop_rule("udp and not (tcp and dst port 80)");
    assert_eq!(web.clauses.len(), 1, "{:?}", web.clauses);
    let either = drop_rule("src host 10.0.0.1 or dst port 53");
    assert_eq!(either.clauses.len(), 2);
    assert!(either.alternatives.is_empty());
    // Through the tables (too many for the direct path) too, the program
    // runs only on frames cut short.
    let many: Vec<Rule> = (0..9)
        .map(|i| drop_rule(&format!("dst port {i}")))
        .chain([drop_rule("not port 22")])
        .collect();
    let compiled = Compiled::compile(&many).unwrap();
    assert!(compiled.direct.is_empty());
    assert!(compiled.programs[0].held && compiled.programs[0].untagged);
    let udp = |sport, dport| PacketFields {
        l3: Some(L3_IPV4),
        proto: Some(PROTO_UDP),
        family: 4,
        saddr: Some([0; 16]),
        daddr: Some([0; 16]),
        sport: Some(sport),
        dport: Some(dport),
    };
    let rule_of = |p| compiled.lookup(&p).map(|r| r.rule);
    assert_eq!(rule_of(udp(22, 3)), Some(3));
    assert_eq!(rule_of(udp(22, 80)), None);
    assert_eq!(rule_of(udp(80, 443)), Some(9));
    assert_eq!(rule_of(PacketFields::default()), Some(9));
    // A rule of libpcap's alone reads the frame as it is.
    let vlan = Compiled::compile(&[drop_rule("vlan 10")]).unwrap();
    assert!(!vlan.programs[0].untagged && !vlan.programs[0].held);
}

/// What a boolean form means, given whether each of its two terms matches.
type Meaning = fn(bool, bool) -> bool;

#[test]
fn clauses_mean_what_the_boolean_expression_says() {
    if !super::pcap::available() {
        return;
    }
    let mut rng = Rng(0x5eed_c1a5);
    // What a rule of the tables means, and what a rule of clauses means.
    let table = |rule: &Rule, p: &PacketFields| rule.alternatives.iter().any(|c| c.matches(p));
    let clauses = |rule: &Rule, p: &PacketFields| rule.clauses.iter().any(|c| c.matches(p));
    let (mut checked, mut of_clauses) = (0, 0);
    while checked < 300 {
        let (a, b) = (random_rule(&mut rng), random_rule(&mut rng));
        let (Ok(rule_a), Ok(rule_b)) = (parse(&a, Action::Drop), parse(&b, Action::Drop)) else {
            continue;
        };
        if rule_a.program.is_some() || rule_b.program.is_some() {
            // Terms that contradict each other (`tcp and udp`) go to libpcap.
            continue;
        }
        checked += 1;
        let forms: [(String, Meaning); 7] = [
            (format!("not ({a})"), |a, _| !a),
            (format!("({a}) and not ({b})"), |a, b| a && !b),
            (format!("not ({a}) or ({b})"), |a, b| !a || b),
            (format!("not (({a}) and ({b}))"), |a, b| !(a && b)),
            (format!("! (({a}) || ({b}))"), |a, b| !(a || b)),
            (format!("({a}) or ({b})"), |a, b| a || b),
            (format!("not (({a}) and not ({b}))"), |a, b| !a || b),
        ];
        for (text, meaning) in forms {
            let Ok(rule) = parse(&text, Action::Drop) else {
                // libpcap finds that it never matches, and refuses it.
                continue;
            };
            let by_tables = rule.program.is_none();
            if !by_tables && rule.clauses.is_empty() {
                // Only a rule too big to expand is libpcap's alone.
                let refusal = super::field_rules::field_rule(&text).unwrap_err();
                assert!(refusal.message.contains("more than"), "{text}: {refusal}");
                continue;
            }
            of_clauses += usize::from(!by_tables);
            for _ in 0..50 {
                let p = random_packet(&mut rng);
                let want = meaning(table(&rule_a, &p), table(&rule_b, &p));
                let got = if by_tables {
                    table(&rule, &p)
                } else {
                    clauses(&rule, &p)
                };
                assert_eq!(got, want, "{text} on {p:?}");
            }
        }
    }
    assert!(
        of_clauses > 1000,
        "only {of_clauses} of the rules became clauses"
    );
}

#[test]
fn the_tables_match_rules_of_clauses_as_their_clauses_say() {
    if !super::pcap::available() {
        return;
    }
    let mut rng = Rng(0xc1a0_5e5d);
    let mut clause_rules = 0;
    for round in 0..300 {
        let rules: Vec<Rule> = (0..1 + rng.below(10))
            .filter_map(|_| {
                let (a, b) = (random_rule(&mut rng), random_rule(&mut rng));
                let text = match rng.below(5) {
                    0 => format!("not ({a})"),
                    1 => format!("({a}) and not ({b})"),
                    2 => format!("({a}) or ({b})"),
                    3 => format!("not (({a}) or ({b}))"),
                    _ => a,
                };
                parse(&text, Action::Drop).ok()
            })
            // Not the rules of libpcap's alone (`tcp and udp`).
            .filter(|r| r.program.is_none() || !r.clauses.is_empty())
            .collect();
        let compiled = match round % 3 {
            0 => Compiled::compile(&rules),
            1 => Compiled::compile_tables_only(&rules),
            _ => Compiled::compile_with_own_classes(&rules),
        }
        .unwrap();
        assert!(compiled.programs.iter().all(|p| p.held), "round {round}");
        clause_rules += compiled.programs.len();
        for _ in 0..200 {
            // Now and then a frame of another EtherType: no field but l3.
            let p = if rng.below(16) == 0 {
                PacketFields::default()
            } else {
                random_packet(&mut rng)
            };
            let want = rules.iter().position(|r| {
                r.alternatives.iter().any(|c| c.matches(&p))
                    || r.clauses.iter().any(|c| c.matches(&p))
            });
            check_lookup(&compiled, &rules, &p, want, round);
        }
    }
    assert!(clause_rules > 500, "only {clause_rules} rules of clauses");
}

/// Programs held for frames cut short do not count against the programs
/// that run on every frame: 200 rules with `not` and 64 of libpcap's alone
/// compile; one more of libpcap's, or more rules than program slots, do
/// not, each refusal saying which.
#[test]
fn held_programs_count_apart_from_those_run_on_every_frame() {
    if !super::pcap::available() {
        return;
    }
    let rules = |clauses: usize, programs: usize| -> Vec<Rule> {
        (0..clauses)
            .map(|i| format!("src host 10.0.{}.{} and not tcp", i / 256, i % 256))
            .chain((0..programs).map(|i| format!("vlan {i}")))
            .map(|t| drop_rule(&t))
            .collect()
    };
    let compiled = Compiled::compile(&rules(200, MAX_PROGRAMS)).unwrap();
    let held = compiled.programs.iter().filter(|p| p.held).count();
    assert_eq!((held, compiled.programs.len()), (200, 200 + MAX_PROGRAMS));
    let every_frame = Compiled::compile(&rules(200, MAX_PROGRAMS + 1)).unwrap_err();
    assert!(
        every_frame.starts_with("65 rules need a libpcap program on every frame"),
        "{every_frame}"
    );
    let slots = Compiled::compile(&rules(MAX_PROGRAM_SLOTS, 1)).unwrap_err();
    assert!(
        slots.starts_with("513 rules need a libpcap program")
            && slots.contains(&format!("at most {MAX_PROGRAM_SLOTS}")),
        "{slots}"
    );
}
