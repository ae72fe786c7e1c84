//! `netprobe sockfilter`: a socket filter on an AF_PACKET socket. The
//! program counts every frame and decides what reaches user space; user
//! space reads the ring and prints, writes pcap, or only counts.
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapMut, OpenObject};
use serde::Serialize;

use crate::cli::SockfilterArgs;
use crate::counters::{read_percpu, Stats};
use crate::decode;
use crate::netdev;
use crate::output::{self, CaptureCounts, Snapshot, Source};
use crate::packet_socket::{Frame, PacketSocket, SocketStats};
use crate::pcap::PcapWriter;
use crate::privilege;
use crate::rulemaps::{Capacity, RuleState, RuleTables};
use crate::rules::{self, Action, Rule};
use crate::runloop::RunLoop;
use crate::session::{self, secs, Probe, Reporting};
use crate::skel::sockfilter::{SockfilterSkel, SockfilterSkelBuilder};

/// What the program is loaded with.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Room for filter rules; `None`: every frame matches.
    pub rules: Option<Capacity>,
    pub counts_only: bool,
    /// Bytes delivered per frame; 0 for the whole frame.
    pub snaplen: u32,
}

/// pcap's customary "whole frame" snap length.
const WHOLE_FRAME: u32 = 262_144;

pub fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    opts: &LoadOptions,
) -> Result<SockfilterSkel<'obj>> {
    let mut open = SockfilterSkelBuilder::default()
        .open(storage)
        .context("opening the socket filter object")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("no .rodata in the socket filter object")?;
    rodata.rules_enabled = opts.rules.is_some();
    rodata.counts_only = opts.counts_only;
    // The filter's return value is how many bytes the socket keeps.
    rodata.snaplen = if opts.snaplen == 0 {
        u32::MAX
    } else {
        opts.snaplen
    };
    let cap = opts.rules.unwrap_or(Capacity {
        rules: 1,
        entries: 1,
    });
    rodata.max_rules = cap.rules;
    crate::size_rule_tables!(open.maps, cap);
    open.load()
        .context("loading the socket filter into the kernel")
}

pub fn rule_tables<'a, 'obj>(skel: &'a SockfilterSkel<'obj>) -> RuleTables<'a, MapMut<'obj>> {
    crate::rule_tables!(skel)
}

pub fn read_stats(skel: &SockfilterSkel<'_>) -> Result<Stats> {
    read_percpu(&skel.maps.sock_stats)
}

/// The verdict index of frames handed to the socket (NP_VERDICT_PASS).
const PASSED: usize = 2;
/// The verdict index of frames the filter kept from the socket (NP_VERDICT_DROP).
const FILTERED: usize = 1;

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
enum Sink {
    Lines(BufWriter<io::Stdout>),
    Json(BufWriter<io::Stdout>),
    Pcap(PcapWriter<BufWriter<Box<dyn Write + Send>>>),
    Discard,
}

fn frame_time(f: &Frame<'_>) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(u64::from(f.sec), f.nsec)
}

impl Sink {
    fn write(&mut self, f: &Frame<'_>, iface: &str) -> io::Result<()> {
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

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Lines(out) | Sink::Json(out) => out.flush(),
            Sink::Pcap(w) => w.flush(),
            Sink::Discard => Ok(()),
        }
    }
}

struct SockProbe<'obj> {
    skel: SockfilterSkel<'obj>,
    socket: Option<PacketSocket>,
    label: String,
    names: HashMap<i32, String>,
    sink: Sink,
    captured: u64,
    limit: Option<u64>,
    rules: Vec<Rule>,
    rule_state: Option<RuleState>,
    socket_stats: SocketStats,
    attached_at: Instant,
    last: (Instant, Stats),
}

fn interface_name(index: i32) -> String {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer has room for IF_NAMESIZE bytes as the call requires.
    let name = unsafe { libc::if_indextoname(index as u32, buf.as_mut_ptr().cast()) };
    if name.is_null() {
        return format!("if{index}");
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

impl SockProbe<'_> {
    /// Reads what the ring holds, up to the -c limit. Returns false once
    /// the limit is reached or the output is gone.
    fn drain(&mut self) -> Result<bool> {
        let Some(socket) = self.socket.as_mut() else {
            return Ok(false);
        };
        let (sink, names, captured, limit) = (
            &mut self.sink,
            &mut self.names,
            &mut self.captured,
            self.limit,
        );
        let mut failure = None;
        socket.drain(|frame| {
            if limit.is_some_and(|l| *captured >= l) {
                return false;
            }
            let iface = names
                .entry(frame.ifindex)
                .or_insert_with(|| interface_name(frame.ifindex));
            if let Err(e) = sink.write(frame, iface) {
                failure = Some(e);
                return false;
            }
            *captured += 1;
            true
        });
        let flushed = sink.flush();
        match failure.map_or(flushed, Err) {
            // A reader that went away (`| head`) ends the capture normally.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(false),
            Err(e) => return Err(e).context("writing captured frames"),
            Ok(()) => {}
        }
        Ok(self.limit.is_none_or(|l| self.captured < l))
    }
}

impl Probe for SockProbe<'_> {
    fn snapshot(&mut self, is_final: bool) -> Result<Snapshot> {
        let now = Instant::now();
        let stats = read_stats(&self.skel)?;
        if let Some(socket) = self.socket.as_mut() {
            self.socket_stats = socket.stats()?;
        }
        let (since, before) = if is_final {
            (self.attached_at, Stats::default())
        } else {
            self.last
        };
        let interval = now - since;
        self.last = (now, stats);
        let rules = match &self.rule_state {
            Some(state) => Some(output::rule_hits(
                &self.rules,
                state.hits(&rule_tables(&self.skel))?,
            )),
            None => None,
        };
        let verdicts = stats.verdicts();
        let seen = verdicts.iter().map(|c| c.packets).sum();
        Ok(Snapshot {
            source: Source::Sockfilter {
                iface: self.label.clone(),
            },
            time: SystemTime::now(),
            interval,
            elapsed: now - self.attached_at,
            protocols: Some(output::protocol_rates(&stats, &before, secs(interval))),
            verdicts: None,
            functions: None,
            events_lost: None,
            capture: Some(CaptureCounts {
                seen,
                matched: verdicts[PASSED].packets,
                delivered: self.socket_stats.received - self.socket_stats.dropped,
                socket_drops: self.socket_stats.dropped,
                captured: self.captured,
            }),
            rules,
            top_sources: None,
            cost_ns_per_packet: None,
            is_final,
            by_protocol_verdict: Some(stats.named_protocol_verdicts(|v| match v {
                PASSED => Some("matched"),
                FILTERED => Some("filtered"),
                _ => None,
            })),
        })
    }

    fn detach(&mut self) {
        // Frames already delivered are captured before the socket closes;
        // closing it detaches the filter.
        let _ = self.drain();
        if let Some(mut socket) = self.socket.take() {
            if let Ok(st) = socket.stats() {
                self.socket_stats = st;
            }
        }
        let _ = self.sink.flush();
    }

    fn lost(&self) -> Option<String> {
        None
    }

    fn event_fd(&self) -> Option<BorrowedFd<'_>> {
        self.socket.as_ref().map(|s| s.as_fd())
    }

    fn on_readable(&mut self) -> Result<bool> {
        self.drain()
    }
}

fn open_output(path: &Path, snaplen: u32) -> Result<PcapWriter<BufWriter<Box<dyn Write + Send>>>> {
    let out: Box<dyn Write + Send> = if path == Path::new("-") {
        Box::new(io::stdout())
    } else {
        Box::new(File::create(path).with_context(|| format!("cannot write {}", path.display()))?)
    };
    let snaplen = if snaplen == 0 { WHOLE_FRAME } else { snaplen };
    PcapWriter::new(BufWriter::with_capacity(1 << 16, out), snaplen)
        .context("writing the pcap header")
}

pub fn run(args: &SockfilterArgs) -> Result<()> {
    // Everything the user gave is checked before anything is opened.
    let rules = rules::parse_args(&args.filter, Action::Capture)?;
    let compiled = rules::compile_args(&rules)?;
    privilege::require("netprobe sockfilter", privilege::CAP_NET_RAW, "CAP_NET_RAW")?;
    let ifindex = args
        .iface
        .as_deref()
        .map(netdev::ifindex)
        .transpose()?
        .unwrap_or(0);
    let to_stdout = args.write.as_deref() == Some(Path::new("-"));
    let sink = match (&args.write, args.counts_only, args.output.json) {
        (Some(path), _, _) => Sink::Pcap(open_output(path, args.snaplen)?),
        (None, true, _) => Sink::Discard,
        (None, false, true) => Sink::Json(BufWriter::new(io::stdout())),
        (None, false, false) => Sink::Lines(BufWriter::new(io::stdout())),
    };
    // Frames on stdout: counters only at the end, on stderr, unless they are
    // JSON lines that mix with packet events by design.
    let packet_lines = matches!(sink, Sink::Lines(_));
    // Signals are blocked before any thread starts, so every thread inherits it.
    let mut runloop = RunLoop::new(args.output.interval)?;
    let reporting = Reporting::new(
        &args.output,
        !to_stdout && !packet_lines,
        to_stdout || packet_lines,
    )?;

    let capacity = Capacity::for_rules(&rules, &compiled, false);
    let opts = LoadOptions {
        rules: (!rules.is_empty()).then_some(capacity),
        counts_only: args.counts_only,
        snaplen: args.snaplen,
    };
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &opts)?;
    let rule_state = if rules.is_empty() {
        None
    } else {
        let mut state = RuleState::new(capacity);
        state.install(&rule_tables(&skel), &rules, &compiled)?;
        Some(state)
    };
    let socket = PacketSocket::open(ifindex, skel.progs.sockfilter_netprobe.as_fd())?;
    let label = args.iface.clone().unwrap_or_else(|| "all".into());
    let what = match (args.counts_only, rules.len()) {
        (true, _) => "counting only".to_string(),
        (false, 0) => "every frame".to_string(),
        (false, n) => format!("{n} filter rules"),
    };
    eprintln!("netprobe: socket filter attached on {label} ({what}); Ctrl-C to stop");
    let attached_at = Instant::now();
    let mut probe = SockProbe {
        skel,
        socket: Some(socket),
        label,
        names: HashMap::new(),
        sink,
        captured: 0,
        limit: args.count,
        rules,
        rule_state,
        socket_stats: SocketStats::default(),
        attached_at,
        last: (attached_at, Stats::default()),
    };
    session::run(&mut probe, &mut runloop, reporting, args.output.duration)
}
