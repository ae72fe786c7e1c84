//! The grammars: every primitive, qualifiers, `and`/`or` and parentheses
//! into the tables' alternatives, and what goes to libpcap and its errors.
use super::field_rules::*;
use super::grammar::*;
use super::model::*;
use super::tests::drop_rule;

fn error(text: &str) -> String {
    parse(text, Action::Drop).unwrap_err().to_string()
}

#[test]
fn parses_every_primitive() {
    let c = &drop_rule("udp and dst port 9").alternatives;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].proto, Some(PROTO_UDP));
    assert_eq!(c[0].dport, Some(PortRange { lo: 9, hi: 9 }));
    let c = &drop_rule("icmp6").alternatives[0];
    assert_eq!((c.l3, c.proto), (Some(L3_IPV6), Some(PROTO_ICMPV6)));
    let c = &drop_rule("icmp").alternatives[0];
    assert_eq!((c.l3, c.proto), (Some(L3_IPV4), Some(PROTO_ICMP)));
    assert_eq!(drop_rule("rarp").alternatives[0].l3, Some(L3_RARP));
    assert_eq!(drop_rule("sctp").alternatives[0].proto, Some(PROTO_SCTP));
    let c = &drop_rule("src net 10.0.0.0/8 and tcp and dst portrange 1000-2000").alternatives[0];
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

/// libpcap's `tcp port 80` is `tcp and port 80`: the protocol narrows the
/// port, which alone matches TCP and UDP.
#[test]
fn a_protocol_qualifies_the_port_after_it() {
    for (qualified, spelled_out) in [
        ("tcp port 80", "tcp and port 80"),
        ("udp src port 53", "udp and src port 53"),
        (
            "tcp dst portrange 1000-2000",
            "tcp and dst portrange 1000-2000",
        ),
        (
            "host 198.18.0.1 and udp port 53",
            "host 198.18.0.1 and udp and port 53",
        ),
    ] {
        assert_eq!(
            drop_rule(qualified).alternatives,
            drop_rule(spelled_out).alternatives,
            "{qualified}"
        );
    }
}

/// `or`, parentheses and a bare value after `and`/`or` are libpcap's:
/// `and` and `or` group from the left at the same precedence, and the
/// value takes the qualifiers of the primitive before it.
#[test]
fn boolean_combinations_compile_into_alternatives() {
    for (short, spelled_out) in [
        (
            "src host 198.18.0.1 or 198.18.0.2",
            "src host 198.18.0.1 or src host 198.18.0.2",
        ),
        (
            "src host 198.18.0.1 or 198.18.0.2 and udp",
            "(src host 198.18.0.1 or src host 198.18.0.2) and udp",
        ),
        (
            "tcp dst port 80 or 443",
            "(tcp and dst port 80) or (tcp and dst port 443)",
        ),
        (
            "udp dst port 53 or 5353",
            "udp and (dst port 53 or dst port 5353)",
        ),
        ("tcp or udp and dst port 53", "(tcp or udp) and dst port 53"),
        (
            "ip6 dst net 2001:db8::/32 or 2001:db9::/32",
            "ip6 and (dst net 2001:db8::/32 or dst net 2001:db9::/32)",
        ),
        ("((tcp)) || (udp) || sctp", "sctp or udp or tcp"),
        ("(tcp or udp)and(dst port 9)", "(tcp or udp) and dst port 9"),
        ("ip or ip6", "ip6 or ip"),
    ] {
        let rule = drop_rule(short);
        assert!(rule.program.is_none(), "{short}");
        let mut got = rule.alternatives;
        let mut want = drop_rule(spelled_out).alternatives;
        assert!(drop_rule(spelled_out).program.is_none(), "{spelled_out}");
        let key = |c: &Conjunction| format!("{c:?}");
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got, want, "{short}");
    }
    assert_eq!(drop_rule("tcp or udp or tcp").alternatives.len(), 2);
    // Not for the tables: an `or` whose terms read different fields (on a
    // frame cut short, tcpdump's answer then depends on its program's
    // order) and `not` become clauses, matched directly on whole frames;
    // values whose qualifiers libpcap takes from across parentheses or a
    // `not` are left to libpcap.
    for text in [
        "host 198.18.0.1 or 198.18.0.2",
        "port 80 or 443",
        "tcp or ip",
        "dst port 53 or src port 80",
        "ip6 dst net 2001:db8::/32 or 2001:db8:1::/48",
        "tcp and udp or sctp",
        "icmp and dst port 9 or udp and dst port 9",
        "not tcp",
        "tcp or ! udp",
        "! (host 10.0.0.1 or port 53) and tcp",
    ] {
        assert!(
            matches!(field_rule(text), Ok(FieldRule::Clauses(_))),
            "{text}"
        );
    }
    for text in [
        "host 10.0.0.1 and (10.0.0.2 or 10.0.0.3)",
        "(src host 10.0.0.1) or 10.0.0.2",
        "tcp or 80",
        "not host 10.0.0.1 or 10.0.0.2",
        "host 10.0.0.1 and not 10.0.0.2",
    ] {
        assert!(field_rule(text).is_err(), "{text}");
    }
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

fn table_error(text: &str) -> String {
    field_rule(text).unwrap_err().to_string()
}

/// What the tables cannot hold is said precisely, with a column: that is
/// the message when libpcap is missing.
#[test]
fn table_errors_name_the_word_and_column() {
    assert_eq!(
        table_error("udp and dst prot 9"),
        "bad rule 'udp and dst prot 9': 'dst' can only be followed by host, net, port or portrange, not 'prot' at column 13"
    );
    assert!(table_error("udp and frob").contains("'frob' is beyond the tables' language"));
    assert!(table_error("udp and frob").ends_with("at column 9"));
    assert!(table_error("tcp host 1.1.1.1")
        .contains("expected 'and' or 'or' before 'host' at column 5"));
    assert!(table_error("tcp port 80 port 81")
        .contains("expected 'and' or 'or' before 'port' at column 13"));
    assert!(table_error("(tcp or udp").contains("'(' is not closed at column 1"));
    assert!(table_error("tcp)").contains("')' closes nothing at column 4"));
    assert!(table_error("tcp or (udp").contains("'(' is not closed at column 8"));
    assert!(table_error("tcp and udp").contains("can never match"));
    assert!(table_error("host 10.0.0.1 or (10.0.0.2)").contains("'10.0.0.2' is beyond"));
    assert!(table_error("tcp and").contains("ends after 'and'"));
    assert!(table_error("host").contains("'host' needs a value"));
    assert!(
        table_error("host 1.2.3").contains("'1.2.3' is not an IPv4 or IPv6 address at column 6")
    );
    assert!(table_error("net 10.1.2.3/8").contains("host bits set (did you mean 10.0.0.0/8?)"));
    assert!(table_error("net 10.0.0.0/33").contains("prefix length from 0 to 32"));
    assert!(table_error("port 70000").contains("not a port"));
    assert!(table_error("portrange 9-1").contains("empty range"));
    assert!(table_error("tcp and not").contains("the rule ends after 'not' at column 9"));
    assert!(table_error("src").contains("'src' needs host"));
}

/// Everything else goes to libpcap, whose verdict on validity is tcpdump's;
/// its errors get the column of the word they quote.
#[test]
fn libpcap_takes_the_rest_and_says_what_is_wrong() {
    if !super::pcap::available() {
        panic!(
            "libpcap is not installed: the filter language needs it (apt-get install libpcap0.8)"
        );
    }
    for text in [
        "not port 22",
        "tcp or not udp",
        "host 198.18.0.1 and (198.18.0.2 or 198.18.0.3)",
        "vlan 10 and ip",
        "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
        "port http",
        "host 1.2.3",
        "portrange 9-1",
        "ip6 protochain 17",
    ] {
        let rule = drop_rule(text);
        assert!(rule.alternatives.is_empty(), "{text}");
        let program = rule.program.expect("a program");
        super::pcap::validate(&program).unwrap();
    }
    assert_eq!(
        error("udp and dst prot 9"),
        "bad rule 'udp and dst prot 9': unknown host 'prot' at column 13"
    );
    assert!(error("tcp port 80 port 81").ends_with("syntax error at column 13"));
    // libpcap names no place for a syntax error: netprobe finds the word.
    assert!(error("tcp or or udp").ends_with("syntax error at column 8"));
    assert!(error("(tcp or udp))").ends_with("syntax error at column 9"));
    assert!(error("tcp and").ends_with("syntax error at column 5"));
    assert!(error("net 10.1.2.3/8").contains("non-network bits set"));
    assert!(error("port 70000").contains("illegal port number 70000 > 65535"));
    assert!(error("port nosuchservice").contains("unknown port 'nosuchservice' at column 6"));
    assert!(error("tcp and").contains("syntax error"));
}

/// netprobe's `gre` (libpcap 1.10 has no such keyword) is libpcap's `proto
/// gre` in the programs of rules that need one too, wherever a primitive
/// begins with it; elsewhere the word is libpcap's.
#[test]
fn gre_is_proto_gre_in_libpcap_programs() {
    let program = |text: &str| drop_rule(text).program.expect("a program");
    let libpcap = |text: &str| super::pcap::compile(text).unwrap();
    for (ours, theirs) in [
        ("not gre", "not proto gre"),
        ("igmp or gre", "igmp or proto gre"),
        ("(gre) or icmp", "(proto gre) or icmp"),
        ("!(gre and host 10.0.0.1)", "!(proto gre and host 10.0.0.1)"),
        ("vlan and gre", "vlan and proto gre"),
        ("!gre", "! proto gre"),
        ("icmp||!gre", "icmp || ! proto gre"),
    ] {
        assert_eq!(program(ours), libpcap(theirs), "{ours}");
    }
    assert_eq!(
        program("vlan and ip proto gre"),
        libpcap("vlan and ip proto 47")
    );
    assert!(error("host gre").contains("unknown host 'gre'"));
}

#[test]
fn long_rules_parse_in_one_pass_and_errors_stay_short() {
    // The longest rule taken parses, and its columns are right at the end.
    let long = "udp and ".repeat(MAX_RULE_BYTES / 8 - 2) + "dst port 9";
    assert!(long.len() <= MAX_RULE_BYTES);
    assert_eq!(drop_rule(&long).alternatives.len(), 1);
    let bad = "udp and ".repeat(MAX_RULE_BYTES / 8 - 2) + "dst prot 9";
    let err = parse(&bad, Action::Drop).unwrap_err();
    assert_eq!(err.column, Some(bad.chars().count() - 5));
    let shown = err.to_string();
    assert!(shown.len() < 300, "{} bytes: {shown}", shown.len());
    assert!(
        shown.starts_with("bad rule '...") && shown.contains("udp and dst prot 9'"),
        "{shown}"
    );
    // Longer rules are refused by length, and a huge word is not echoed whole.
    let err = parse(&"udp and ".repeat(MAX_RULE_BYTES), Action::Drop).unwrap_err();
    assert!(
        err.to_string().contains("a rule may be at most 65536"),
        "{err}"
    );
    let err = parse(&"x".repeat(60_000), Action::Drop)
        .unwrap_err()
        .to_string();
    assert!(err.len() < 400 && err.starts_with("bad rule"), "{err}");
}

/// libpcap's protocol qualifiers (`ip host X`, `arp host X`, `ip6 net N`,
/// `ip proto N`) and `src or dst` are the tables' too; `proto 44`, whose
/// IPv6 test differs, is libpcap's.
#[test]
fn qualified_primitives_are_table_rules() {
    for (qualified, spelled_out) in [
        ("ip host 198.18.0.1", "ip and host 198.18.0.1"),
        ("arp host 198.18.0.2", "arp and host 198.18.0.2"),
        ("ip6 net 2001:db8::/32", "ip6 and net 2001:db8::/32"),
        ("ip src host 10.1.2.3", "ip and src host 10.1.2.3"),
        ("ip proto 47", "ip and proto 47"),
        ("ip6 proto 17", "ip6 and udp"),
        ("src or dst port 53", "port 53"),
        ("udp src or dst port 53", "udp and port 53"),
    ] {
        let rule = drop_rule(qualified);
        assert!(rule.program.is_none(), "{qualified}");
        assert_eq!(
            rule.alternatives,
            drop_rule(spelled_out).alternatives,
            "{qualified}"
        );
    }
    for word in ["igmp", "esp", "ah", "proto 17", "rarp"] {
        assert!(drop_rule(word).program.is_none(), "{word}");
    }
    for text in ["proto 44", "ip6 proto 44", "tcp host 1.2.3.4", "ip port 80"] {
        assert!(field_rule(text).is_err(), "{text}");
    }
}

/// A prefix of length 0 masks no address word, and tcpdump's program reads
/// none: `net 0.0.0.0/0` is a frame of IPv4, ARP or RARP, `net ::/0` one of
/// IPv6, however short.
#[test]
fn a_prefix_of_length_0_is_its_protocols() {
    let l3s = |text: &str| {
        let rule = drop_rule(text);
        assert!(rule.program.is_none(), "{text}");
        rule.alternatives
            .iter()
            .map(|c| {
                assert_eq!((c.src, c.dst, c.proto), (None, None, None), "{text}");
                c.l3.expect("an l3")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(l3s("net 0.0.0.0/0"), [L3_IPV4, L3_ARP, L3_RARP]);
    assert_eq!(l3s("src net 0.0.0.0/0"), [L3_IPV4, L3_ARP, L3_RARP]);
    assert_eq!(l3s("arp dst net 0.0.0.0/0"), [L3_ARP]);
    assert_eq!(l3s("net ::/0"), [L3_IPV6]);
    assert_eq!(l3s("net ::/0 or ip"), [L3_IPV6, L3_IPV4]);
}

/// Operators split words as libpcap's lexer splits them: `!tcp` is the
/// rule of fields `! tcp`, `udp&&dst port 53` that of `udp && dst port 53`,
/// and `!=` stays one comparison.
#[test]
fn operators_split_words_as_libpcap_splits_them() {
    for (joined, spaced) in [
        ("!tcp", "! tcp"),
        ("udp&&dst port 53", "udp && dst port 53"),
        ("tcp||udp", "tcp || udp"),
        (
            "!(host 10.0.0.1||port 53)",
            "! ( host 10.0.0.1 || port 53 )",
        ),
    ] {
        assert_eq!(
            drop_rule(joined).clauses,
            drop_rule(spaced).clauses,
            "{joined}"
        );
        assert_eq!(
            drop_rule(joined).alternatives,
            drop_rule(spaced).alternatives,
            "{joined}"
        );
    }
    assert!(drop_rule("!tcp").looks_through_vlan());
    let texts = |t: &str| -> Vec<String> {
        super::words::tokens(t)
            .iter()
            .map(|w| w.text.to_string())
            .collect()
    };
    assert_eq!(texts("tcp[13]&2!=0"), ["tcp[13]&2!=0"]);
    assert_eq!(texts("!(a)&&b"), ["!", "(", "a", ")", "&&", "b"]);
}
