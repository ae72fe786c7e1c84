//! Where delivered frames go: one line each, JSON lines, or pcap.
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::kernel::packet_socket::Frame;
use crate::report::decode;
use crate::report::pcap::PcapWriter;

/// pcap's customary "whole frame" snap length.
const WHOLE_FRAME: u32 = 262_144;

/// One delivered frame as a JSON line.
#[derive(Serialize)]
struct PacketEvent<'a> {
    event: &'static str,
    time: String,
    iface: &'a str,
    direction: &'static str,
    #[serde(flatten)]
    summary: decode::Summary,
    len: u32,
    caplen: usize,
}

/// Where delivered frames go.
pub enum Sink {
    Lines(BufWriter<io::Stdout>),
    Json(BufWriter<io::Stdout>),
    Pcap(PcapWriter<BufWriter<Box<dyn Write + Send>>>),
    Discard,
}

fn frame_time(f: &Frame<'_>) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(u64::from(f.sec), f.nsec)
}

impl Sink {
    pub fn write(&mut self, f: &Frame<'_>, iface: &str) -> io::Result<()> {
        let direction = if f.outgoing { "Out" } else { "In" };
        match self {
            Sink::Lines(out) => {
                let stamp = humantime::format_rfc3339_micros(frame_time(f)).to_string();
                let s = decode::summarize(f.data);
                // The time of day, UTC, as tcpdump prints it.
                writeln!(
                    out,
                    "{} {iface} {direction:<3} {} {} length {}",
                    &stamp[11..26],
                    s.proto,
                    s.endpoints(),
                    f.len
                )
            }
            Sink::Json(out) => {
                let event = PacketEvent {
                    event: "packet",
                    time: humantime::format_rfc3339_nanos(frame_time(f)).to_string(),
                    iface,
                    direction,
                    summary: decode::summarize(f.data),
                    len: f.len,
                    caplen: f.data.len(),
                };
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")
            }
            Sink::Pcap(w) => w.write(f.sec, f.nsec, f.len, f.data),
            Sink::Discard => Ok(()),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Lines(out) | Sink::Json(out) => out.flush(),
            Sink::Pcap(w) => w.flush(),
            Sink::Discard => Ok(()),
        }
    }
}

pub fn open_output(
    path: &Path,
    snaplen: u32,
) -> Result<PcapWriter<BufWriter<Box<dyn Write + Send>>>> {
    let out: Box<dyn Write + Send> = if path == Path::new("-") {
        Box::new(io::stdout())
    } else {
        Box::new(File::create(path).with_context(|| format!("cannot write {}", path.display()))?)
    };
    let snaplen = if snaplen == 0 { WHOLE_FRAME } else { snaplen };
    PcapWriter::new(BufWriter::with_capacity(1 << 16, out), snaplen)
        .context("writing the pcap header")
}
