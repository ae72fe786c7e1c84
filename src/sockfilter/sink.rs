//! Where delivered frames go: one line each, JSON lines, or a capture file.
use std::io::{self, BufWriter, Write};
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use serde::Serialize;

use crate::capture::write::CaptureFile;
use crate::report::decode;

/// A frame the filter let through, from a live socket or a replay.
pub struct Delivered<'a> {
    /// Since the Unix epoch.
    pub time: Duration,
    /// The frame's length on the wire.
    pub len: u32,
    /// What the filter kept of it.
    pub data: &'a [u8],
    /// Where a live socket saw it: the interface and `In` or `Out`.
    pub seen_at: Option<(&'a str, &'static str)>,
}

/// One delivered frame as a JSON line.
#[derive(Serialize)]
struct PacketEvent<'a> {
    event: &'static str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iface: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'static str>,
    #[serde(flatten)]
    summary: decode::Summary,
    len: u32,
    caplen: usize,
}

/// Where delivered frames go.
pub enum Sink {
    Lines(BufWriter<io::Stdout>),
    Json(BufWriter<io::Stdout>),
    Pcap(CaptureFile),
    Discard,
}

impl Sink {
    pub fn write(&mut self, f: &Delivered<'_>) -> io::Result<()> {
        let time = SystemTime::UNIX_EPOCH + f.time;
        match self {
            Sink::Lines(out) => {
                let stamp = humantime::format_rfc3339_micros(time).to_string();
                let s = decode::summarize(f.data);
                // The time of day, UTC, as tcpdump prints it; where a live
                // socket saw the frame; then what tcpdump says of TCP flags
                // and ICMP messages.
                let seen_at = f
                    .seen_at
                    .map(|(iface, dir)| format!(" {iface} {dir:<3}"))
                    .unwrap_or_default();
                let info = s
                    .info
                    .as_deref()
                    .map(|i| format!(": {i},"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{}{seen_at} {} {}{info} length {}",
                    &stamp[11..26],
                    s.proto,
                    s.endpoints(),
                    f.len
                )
            }
            Sink::Json(out) => {
                let event = PacketEvent {
                    event: "packet",
                    time: humantime::format_rfc3339_nanos(time).to_string(),
                    iface: f.seen_at.map(|(i, _)| i),
                    direction: f.seen_at.map(|(_, d)| d),
                    summary: decode::summarize(f.data),
                    len: f.len,
                    caplen: f.data.len(),
                };
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")
            }
            Sink::Pcap(c) => c.write(f.time, f.len, f.data),
            Sink::Discard => Ok(()),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Lines(out) | Sink::Json(out) => out.flush(),
            Sink::Pcap(c) => c.flush(),
            Sink::Discard => Ok(()),
        }
    }

    /// Frames written whole so far, if that can differ from frames handed
    /// to the sink (a capture file takes them in batches).
    pub fn whole_frames(&self) -> Option<u64> {
        match self {
            Sink::Pcap(c) => Some(c.whole_records()),
            _ => None,
        }
    }

    /// What to tell the user about a failed write; a capture file is cut
    /// back to its last whole record first, so that it stays readable.
    pub fn failed(&mut self, e: io::Error) -> anyhow::Error {
        match self {
            Sink::Pcap(c) => c.failed(e),
            _ => anyhow!("writing to stdout: {e}"),
        }
    }
}
