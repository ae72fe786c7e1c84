//! The snapshot's JSON shape and the table's layout.
use std::time::{Duration, SystemTime};

use super::snapshot::*;
use super::table::*;
use crate::kernel::counters::Counter;

fn snapshot(is_final: bool) -> Snapshot {
    Snapshot {
        source: Source::Xdp {
            iface: "veth0".into(),
            mode: "native",
        },
        time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        interval: Duration::from_millis(1000),
        elapsed: Duration::from_millis(3000),
        protocols: Some(Named::new(vec![
            (
                "ipv4",
                Rate::new(
                    Counter {
                        packets: 10,
                        bytes: 600,
                    },
                    Counter {
                        packets: 4,
                        bytes: 240,
                    },
                    2.0,
                ),
            ),
            (
                "udp",
                Rate::new(
                    Counter {
                        packets: 1,
                        bytes: 60,
                    },
                    Counter::default(),
                    3.0,
                ),
            ),
        ])),
        functions: None,
        events_lost: None,
        rules: None,
        top_sources: None,
        verdicts: Some(Named::new(vec![("pass", Counter::new(10, 600))])),
        capture: None,
        cost_ns_per_packet: None,
        is_final,
        by_protocol_verdict: None,
    }
}

#[test]
fn json_has_the_documented_shape_and_order() {
    let line = serde_json::to_string(&snapshot(true)).unwrap();
    assert_eq!(
        line,
        r#"{"hook":"xdp","iface":"veth0","mode":"native","time":"2023-11-14T22:13:20.123Z","interval_s":1.0,"elapsed_s":3.0,"protocols":{"ipv4":{"packets":10,"bytes":600,"pps":3.0,"bps":1440.0},"udp":{"packets":1,"bytes":60,"pps":0.333,"bps":160.0}},"verdicts":{"pass":{"packets":10,"bytes":600}},"final":true}"#
    );
}

#[test]
fn cost_appears_only_when_measured() {
    let mut s = snapshot(false);
    s.cost_ns_per_packet = Some(Some(31.5));
    let v: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(v["cost_ns_per_packet"], 31.5);
    assert_eq!(v["final"], false);
    let v = serde_json::to_value(snapshot(false)).unwrap();
    assert!(v.get("cost_ns_per_packet").is_none());
}

#[test]
fn capture_counts_flatten_into_the_object() {
    let mut s = snapshot(false);
    s.source = Source::Sockfilter {
        iface: "all".into(),
    };
    s.verdicts = None;
    s.capture = Some(CaptureCounts {
        seen: 9,
        matched: 5,
        delivered: 4,
        socket_drops: 1,
        captured: 4,
    });
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["hook"], "sockfilter");
    assert_eq!(v["iface"], "all");
    assert!(v.get("verdicts").is_none());
    assert_eq!(
        (
            v["seen"].as_u64(),
            v["delivered"].as_u64(),
            v["socket_drops"].as_u64()
        ),
        (Some(9), Some(4), Some(1))
    );
    let text = TablePrinter::render(&s);
    assert!(
        text.contains(
            "9 seen by the filter, 5 matched, 4 delivered, 1 dropped by the socket, 4 captured"
        ),
        "{text}"
    );
}

#[test]
fn latency_buckets_span_first_to_last_non_empty() {
    let mut slots = [0u64; 64];
    slots[3] = 2;
    slots[6] = 5;
    let b = latency_buckets(&slots);
    assert_eq!(b.len(), 4);
    assert_eq!((b[0].lo_ns, b[0].hi_ns, b[0].count), (8, 15, 2));
    assert_eq!((b[3].lo_ns, b[3].hi_ns, b[3].count), (64, 127, 5));
    assert_eq!(b.iter().map(|x| x.count).sum::<u64>(), 7);
    assert!(latency_buckets(&[0; 64]).is_empty());
}

#[test]
fn function_table_looks_like_funclatency() {
    let mut s = snapshot(true);
    s.protocols = None;
    s.verdicts = None;
    s.source = Source::Kprobe {
        backend: "kprobe".into(),
    };
    let mut slots = [0u64; 64];
    slots[10] = 4;
    s.functions = Some(Named::new(vec![(
        "tcp_v4_connect",
        FunctionReport {
            calls: 4,
            per_sec: 1.0,
            returns: Some(Named::new(vec![("0", 3), ("ECONNREFUSED", 1)])),
            latency: Some(latency_buckets(&slots)),
        },
    )]));
    let text = TablePrinter::render(&s);
    assert!(text.contains("tcp_v4_connect"), "{text}");
    assert!(text.contains("ECONNREFUSED"), "{text}");
    assert!(
        text.contains(
            "        1024 -> 2047         : 4         |****************************************|"
        ),
        "{text}"
    );
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["hook"], "kprobe");
    assert_eq!(v["backend"], "kprobe");
    assert_eq!(v["functions"]["tcp_v4_connect"]["calls"], 4);
    assert_eq!(
        v["functions"]["tcp_v4_connect"]["returns"]["ECONNREFUSED"],
        1
    );
    assert_eq!(
        v["functions"]["tcp_v4_connect"]["latency"][0]["lo_ns"],
        1024
    );
}

#[test]
fn si_prefixes() {
    assert_eq!(si(0.0), "0");
    assert_eq!(si(999.0), "999");
    assert_eq!(si(12.5), "12.5");
    assert_eq!(si(1234.0), "1.23k");
    assert_eq!(si(12_345_678.0), "12.3M");
    assert_eq!(si(580_000.0), "580k");
    assert_eq!(si(4.2e9), "4.20G");
}

#[test]
fn table_shows_every_row() {
    let text = TablePrinter::render(&snapshot(true));
    assert!(text.contains("final summary"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ipv4") && l.contains(" 10 ") && l.contains(" 600 ")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("pass")), "{text}");
}

#[test]
fn rules_that_only_counted_say_would_drop() {
    let mut s = snapshot(true);
    s.rules = Some(vec![RuleHits {
        rule: "udp and dst port 9".into(),
        action: "would_drop",
        packets: 40,
        bytes: 2400,
    }]);
    let text = TablePrinter::render(&s);
    assert!(
        text.lines()
            .any(|l| l.starts_with("would drop") && l.ends_with("udp and dst port 9")),
        "{text}"
    );
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["rules"][0]["action"], "would_drop");
}
