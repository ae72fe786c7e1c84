//! Where delivered frames go: one line each, JSON lines, or pcap.
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::console;
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
    Pcap(PcapCapture),
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
                // The time of day, UTC, as tcpdump prints it; then what
                // tcpdump says of TCP flags and ICMP messages.
                let info = s
                    .info
                    .as_deref()
                    .map(|i| format!(": {i},"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{} {iface} {direction:<3} {} {}{info} length {}",
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
            Sink::Pcap(c) => c.writer.write(f.sec, f.nsec, f.len, f.data),
            Sink::Discard => Ok(()),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Lines(out) | Sink::Json(out) => out.flush(),
            Sink::Pcap(c) => c.writer.flush(),
            Sink::Discard => Ok(()),
        }
    }

    /// Frames written whole so far, if that can differ from frames handed
    /// to the sink (a capture file takes them in batches).
    pub fn whole_frames(&self) -> Option<u64> {
        match self {
            Sink::Pcap(c) => Some(c.writer.whole_records()),
            _ => None,
        }
    }

    /// What to tell the user about a failed write; a capture file is cut
    /// back to its last whole record first, so that it stays readable.
    pub fn failed(&mut self, e: io::Error) -> anyhow::Error {
        match self {
            Sink::Pcap(c) => {
                let whole = c.writer.whole_records();
                let cut = match &c.target {
                    CaptureTarget::File(file) => file
                        .set_len(c.writer.whole_bytes())
                        .map(|()| ", and the file ends after the last of them".to_string())
                        .unwrap_or_else(|cut| {
                            format!(", but cutting the file after them failed: {cut}")
                        }),
                    CaptureTarget::Stdout => String::new(),
                };
                anyhow!(
                    "writing {}: {e}; {} written whole{cut}",
                    c.name,
                    console::count(whole, "frame")
                )
            }
            _ => anyhow!("writing to stdout: {e}"),
        }
    }
}

/// Where a capture is written: a file, or stdout (`-w -`).
enum CaptureTarget {
    File(File),
    Stdout,
}

/// What the pcap writer writes to: for a file, a second handle on it, the
/// capture keeping the first to cut the file back after a failed write.
struct TargetWriter(CaptureTarget);

impl Write for TargetWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            CaptureTarget::File(f) => f.write(buf),
            CaptureTarget::Stdout => io::stdout().lock().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            CaptureTarget::File(f) => f.flush(),
            CaptureTarget::Stdout => io::stdout().lock().flush(),
        }
    }
}

/// A pcap capture in progress.
pub struct PcapCapture {
    writer: PcapWriter<TargetWriter>,
    target: CaptureTarget,
    /// How the output is named in messages: its path, or stdout.
    name: String,
}

/// Opens the capture output and writes the pcap header to it at once, so
/// that an output that cannot be written is an error before the capture.
pub fn open_output(path: &Path, snaplen: u32) -> Result<PcapCapture> {
    let (target, name) = if path == Path::new("-") {
        (CaptureTarget::Stdout, "stdout".to_string())
    } else {
        let file =
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        (CaptureTarget::File(file), path.display().to_string())
    };
    let snaplen = if snaplen == 0 { WHOLE_FRAME } else { snaplen };
    let out = TargetWriter(match &target {
        CaptureTarget::File(f) => CaptureTarget::File(f.try_clone()?),
        CaptureTarget::Stdout => CaptureTarget::Stdout,
    });
    let writer = PcapWriter::new(out, snaplen)
        .with_context(|| format!("writing the pcap header to {name}"))?;
    Ok(PcapCapture {
        writer,
        target,
        name,
    })
}
