//! Snapshots of what a probe counted, and the printers that show them: a
//! live table for people, JSON lines for scripts. Every hook fills the same
//! [`Snapshot`]; the printers know nothing about hooks beyond its header.
use std::borrow::Cow;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::counters::Counter;

/// What produced a snapshot; flattened into the JSON object.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "hook", rename_all = "lowercase")]
pub enum Source {
    Xdp { iface: String, mode: &'static str },
    Sockfilter { iface: String },
    Kprobe { backend: &'static str },
}

impl Source {
    fn title(&self) -> String {
        match self {
            Source::Xdp { iface, mode } => format!("netprobe xdp {iface} ({mode} mode)"),
            Source::Sockfilter { iface } => format!("netprobe sockfilter on {iface}"),
            Source::Kprobe { backend } => format!("netprobe kprobe ({backend} backend)"),
        }
    }
}

/// Where frames went on their way to a capturing socket: how complete the
/// capture is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptureCounts {
    /// Frames the socket filter saw.
    pub seen: u64,
    /// Frames the filter passed on to the socket.
    pub matched: u64,
    /// Frames the socket queued for netprobe (matched less socket drops).
    pub delivered: u64,
    /// Frames the socket dropped because netprobe's ring was full.
    pub socket_drops: u64,
    /// Frames netprobe printed or wrote.
    pub captured: u64,
}

/// A cumulative counter and its rate over the snapshot's interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rate {
    pub packets: u64,
    pub bytes: u64,
    #[serde(serialize_with = "milli")]
    pub pps: f64,
    #[serde(serialize_with = "milli")]
    pub bps: f64,
}

/// Rates to three decimals: more digits are noise from the clock.
fn milli<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 1000.0).round() / 1000.0)
}

impl Rate {
    /// `now` with its rate since `before`, `secs` seconds ago.
    pub fn new(now: Counter, before: Counter, secs: f64) -> Rate {
        let delta = now.since(before);
        let per_sec = |v: u64| if secs > 0.0 { v as f64 / secs } else { 0.0 };
        Rate {
            packets: now.packets,
            bytes: now.bytes,
            pps: per_sec(delta.packets),
            bps: per_sec(delta.bytes) * 8.0,
        }
    }
}

/// Per-protocol totals now, with rates since `before`, `secs` seconds ago.
pub fn protocol_rates(
    now: &crate::counters::Stats,
    before: &crate::counters::Stats,
    secs: f64,
) -> Named<Rate> {
    let (now, before) = (now.protocols(), before.protocols());
    Named::new(
        crate::counters::PROTOCOLS
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, Rate::new(now[i], before[i], secs))),
    )
}

/// Rule rows for a snapshot: each rule with its hits.
pub fn rule_hits(rules: &[crate::rules::Rule], hits: Vec<Counter>) -> Vec<RuleHits> {
    rules
        .iter()
        .zip(hits)
        .map(|(rule, c)| RuleHits {
            rule: rule.text.clone(),
            action: rule.action.as_str(),
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect()
}

/// Named values that serialize as a JSON object in their given order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Named<T>(pub Vec<(Cow<'static, str>, T)>);

impl<T> Named<T> {
    pub fn new(items: impl IntoIterator<Item = (impl Into<Cow<'static, str>>, T)>) -> Named<T> {
        Named(items.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name.as_ref(), value)?;
        }
        map.end()
    }
}

fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    milli(&d.as_secs_f64(), s)
}

/// One poll's worth of counts. On the final snapshot the rates and the cost
/// cover the whole run, and `interval` equals `elapsed`.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    #[serde(flatten)]
    pub source: Source,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    #[serde(rename = "interval_s", serialize_with = "seconds")]
    pub interval: Duration,
    #[serde(rename = "elapsed_s", serialize_with = "seconds")]
    pub elapsed: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Named<Rate>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<Named<Counter>>,
    /// Per traced function (kprobe hook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub functions: Option<Named<FunctionReport>>,
    /// Events the ring buffer had no room for (kprobe hook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_lost: Option<u64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureCounts>,
    /// Hits per rule, in rule order (hooks with rules only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleHits>>,
    /// The busiest source addresses, busiest first (with `--top`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_sources: Option<Vec<SourceHits>>,
    /// `None` without `--cost`; `Some(None)` (JSON null) before the program first ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_ns_per_packet: Option<Option<f64>>,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Totals per (protocol, verdict), for the Prometheus exposition.
    #[serde(skip)]
    pub by_protocol_verdict: Option<Vec<(&'static str, &'static str, Counter)>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleHits {
    pub rule: String,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// One traced function: calls, and with --ret / --latency what they returned
/// and how long they took.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionReport {
    pub calls: u64,
    #[serde(serialize_with = "milli")]
    pub per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returns: Option<Named<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Vec<LatencyBucket>>,
}

/// Calls that took from `lo_ns` up to `hi_ns` nanoseconds (log2 buckets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LatencyBucket {
    pub lo_ns: u64,
    pub hi_ns: u64,
    pub count: u64,
}

/// The non-empty log2 buckets of a histogram, with the empty ones between
/// them, as funclatency prints them.
pub fn latency_buckets(slots: &[u64]) -> Vec<LatencyBucket> {
    let Some(last) = slots.iter().rposition(|&c| c > 0) else {
        return Vec::new();
    };
    let first = slots.iter().position(|&c| c > 0).unwrap_or(0);
    (first..=last)
        .map(|i| LatencyBucket {
            lo_ns: if i == 0 { 0 } else { 1 << i },
            hi_ns: (1u64 << (i + 1)) - 1,
            count: slots[i],
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceHits {
    pub addr: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Rules shown in the table at most; JSON has them all.
const TABLE_RULES: usize = 20;

impl Serialize for Counter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("packets", &self.packets)?;
        map.serialize_entry("bytes", &self.bytes)?;
        map.end()
    }
}

/// One printer per output format.
pub trait Printer {
    fn print(&mut self, snapshot: &Snapshot) -> io::Result<()>;
}

/// Picks the printer for the flags: JSON lines, or a table that refreshes
/// in place on a terminal and is appended otherwise.
pub fn printer(json: bool, out: Box<dyn Write + Send>, terminal: bool) -> Box<dyn Printer> {
    if json {
        Box::new(JsonPrinter { out })
    } else {
        Box::new(TablePrinter {
            out,
            terminal,
            lines_shown: 0,
        })
    }
}

pub struct JsonPrinter {
    out: Box<dyn Write + Send>,
}

impl Printer for JsonPrinter {
    fn print(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, snapshot)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

pub struct TablePrinter {
    out: Box<dyn Write + Send>,
    terminal: bool,
    lines_shown: usize,
}

/// `1234567` as `1.23M`: three significant digits and an SI prefix.
pub fn si(value: f64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, unit) in UNITS {
        if value >= scale {
            let v = value / scale;
            let digits = if v >= 100.0 {
                0
            } else if v >= 10.0 {
                1
            } else {
                2
            };
            return format!("{v:.digits$}{unit}");
        }
    }
    if value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

impl TablePrinter {
    fn render(snapshot: &Snapshot) -> String {
        let mut s = String::new();
        let what = if snapshot.is_final {
            "final summary"
        } else {
            "live"
        };
        s += &format!(
            "{}  {what}, {:.1}s\n",
            snapshot.source.title(),
            snapshot.elapsed.as_secs_f64()
        );
        match snapshot.cost_ns_per_packet {
            Some(Some(cost)) => s += &format!("program cost: {cost:.1} ns/packet\n"),
            Some(None) => s += "program cost: no packets yet\n",
            None => {}
        }
        let rate_label = if snapshot.is_final { "avg" } else { "now" };
        if let Some(protocols) = &snapshot.protocols {
            s += &format!(
                "{:<10} {:>14} {:>16} {:>12} {:>12}\n",
                "PROTOCOL",
                "PACKETS",
                "BYTES",
                format!("PKT/S {rate_label}"),
                format!("BIT/S {rate_label}")
            );
            for (name, r) in &protocols.0 {
                s += &format!(
                    "{name:<10} {:>14} {:>16} {:>12} {:>12}\n",
                    r.packets,
                    r.bytes,
                    si(r.pps),
                    si(r.bps)
                );
            }
        }
        if let Some(functions) = &snapshot.functions {
            s += &Self::render_functions(functions, rate_label);
        }
        if let Some(lost) = snapshot.events_lost.filter(|&n| n > 0) {
            s += &format!("events lost (ring buffer full): {lost}\n");
        }
        if let Some(verdicts) = &snapshot.verdicts {
            s += &format!("{:<10} {:>14} {:>16}\n", "VERDICT", "PACKETS", "BYTES");
            for (name, c) in &verdicts.0 {
                s += &format!("{name:<10} {:>14} {:>16}\n", c.packets, c.bytes);
            }
        }
        if let Some(c) = &snapshot.capture {
            s += &format!(
                "frames: {} seen by the filter, {} matched, {} delivered, {} dropped by the socket, {} captured\n",
                c.seen, c.matched, c.delivered, c.socket_drops, c.captured
            );
        }
        if let Some(rules) = &snapshot.rules {
            s += &format!(
                "{:<10} {:>14} {:>16}  {}\n",
                "ACTION", "PACKETS", "BYTES", "RULE"
            );
            for r in rules.iter().take(TABLE_RULES) {
                let text = if r.rule.is_empty() {
                    "(every packet)"
                } else {
                    &r.rule
                };
                s += &format!(
                    "{:<10} {:>14} {:>16}  {text}\n",
                    r.action, r.packets, r.bytes
                );
            }
            if rules.len() > TABLE_RULES {
                s += &format!(
                    "... and {} more rules (all of them in --json)\n",
                    rules.len() - TABLE_RULES
                );
            }
        }
        if let Some(top) = &snapshot.top_sources {
            s += &format!("{:<40} {:>14} {:>16}\n", "SOURCE", "PACKETS", "BYTES");
            for t in top {
                s += &format!("{:<40} {:>14} {:>16}\n", t.addr, t.packets, t.bytes);
            }
        }
        s
    }
}

impl TablePrinter {
    fn render_functions(functions: &Named<FunctionReport>, rate_label: &str) -> String {
        let mut s = format!(
            "{:<32} {:>14} {:>12}\n",
            "FUNCTION",
            "CALLS",
            format!("CALLS/S {rate_label}")
        );
        for (name, f) in &functions.0 {
            s += &format!("{name:<32} {:>14} {:>12}\n", f.calls, si(f.per_sec));
        }
        for (name, f) in &functions.0 {
            if let Some(returns) = &f.returns {
                s += &format!("\n{name} returned:\n");
                for (value, count) in &returns.0 {
                    s += &format!("  {value:<20} {count:>12}\n");
                }
            }
            if let Some(buckets) = &f.latency {
                let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
                s += &format!(
                    "\n{name} latency:\n{:>26}     : count     distribution\n",
                    "nsecs"
                );
                for b in buckets {
                    let stars = (b.count * 40).div_ceil(max) as usize;
                    s += &format!(
                        "{:>12} -> {:<12} : {:<9} |{:<40}|\n",
                        b.lo_ns,
                        b.hi_ns,
                        b.count,
                        "*".repeat(stars.min(40))
                    );
                }
            }
        }
        s
    }
}

impl Printer for TablePrinter {
    fn print(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        let text = Self::render(snapshot);
        if self.terminal && self.lines_shown > 0 {
            // Back to the first line of the previous table, clear to the end.
            write!(self.out, "\x1b[{}F\x1b[J", self.lines_shown)?;
        } else if !self.terminal && self.lines_shown > 0 {
            writeln!(self.out)?;
        }
        self.out.write_all(text.as_bytes())?;
        self.lines_shown = text.lines().count();
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        s.source = Source::Kprobe { backend: "kprobe" };
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
        assert!(text.contains("        1024 -> 2047         : 4         |****************************************|"), "{text}");
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
}
