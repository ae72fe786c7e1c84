//! What a probe counted, as every hook reports it, and the interface every
//! printer implements. The printers know nothing about hooks beyond a
//! snapshot's header.
use std::borrow::Cow;
use std::io;
use std::time::{Duration, SystemTime};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::filter::Rule;
use crate::kernel::counters::{Counter, Stats, PROTOCOLS};

/// What produced a snapshot; flattened into the JSON object.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "hook", rename_all = "lowercase")]
pub enum Source {
    Xdp {
        iface: String,
        mode: &'static str,
    },
    /// `netprobe xdp --replay FILE`.
    #[serde(rename = "xdp")]
    XdpReplay {
        replay: String,
    },
    Sockfilter {
        iface: String,
    },
    /// `netprobe sockfilter --replay FILE`.
    #[serde(rename = "sockfilter")]
    SockfilterReplay {
        replay: String,
    },
    Kprobe {
        /// The backends in use, `+`-joined when several (`fentry+tp_btf`).
        backend: String,
    },
}

impl Source {
    pub fn title(&self) -> String {
        match self {
            Source::Xdp { iface, mode } => format!("netprobe xdp {iface} ({mode} mode)"),
            Source::Sockfilter { iface } => format!("netprobe sockfilter on {iface}"),
            Source::XdpReplay { replay } => format!("netprobe xdp --replay {replay}"),
            Source::SockfilterReplay { replay } => format!("netprobe sockfilter --replay {replay}"),
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
pub fn protocol_rates(now: &Stats, before: &Stats, secs: f64) -> Named<Rate> {
    let (now, before) = (now.protocols(), before.protocols());
    Named::new(
        PROTOCOLS
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, Rate::new(now[i], before[i], secs))),
    )
}

/// Rule rows for a snapshot: each rule with its hits.
pub fn rule_hits(rules: &[Rule], hits: Vec<Counter>) -> Vec<RuleHits> {
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
