//! `netprobe sockfilter`: a socket filter on an AF_PACKET socket. The
//! program counts every frame and decides what reaches user space; user
//! space reads the ring and prints, writes pcap, or only counts.
use std::collections::HashMap;
use std::io::{self, BufWriter};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::Result;

pub mod program;
mod sink;

pub use program::{load, read_stats, rule_tables, LoadOptions};
use program::{FILTERED, PASSED};
use sink::{open_output, Sink};

use crate::cli::SockfilterArgs;
use crate::console;
use crate::filter::tables::{Capacity, RuleState};
use crate::filter::{self, Action, Rule};
use crate::kernel::counters::Stats;
use crate::kernel::netdev;
use crate::kernel::packet_socket::{PacketSocket, SocketStats};
use crate::kernel::privilege;
use crate::report::{self, CaptureCounts, Snapshot, Source};
use crate::session::runloop::RunLoop;
use crate::session::{self, secs, Probe, Reporting};
use crate::skel::sockfilter::SockfilterSkel;

struct SockProbe<'obj> {
    skel: SockfilterSkel<'obj>,
    socket: Option<PacketSocket>,
    label: String,
    names: HashMap<i32, String>,
    sink: Sink,
    /// Frames printed or written whole.
    captured: u64,
    /// A write failed: nothing more is captured.
    failed: bool,
    limit: Option<u64>,
    rules: Vec<Rule>,
    rule_state: Option<RuleState>,
    socket_stats: SocketStats,
    attached_at: Instant,
    last: (Instant, Stats),
}

impl SockProbe<'_> {
    /// Reads what the ring holds, up to the -c limit. Returns false once
    /// the limit is reached or the output is gone.
    fn drain(&mut self) -> Result<bool> {
        let Some(socket) = self.socket.as_mut().filter(|_| !self.failed) else {
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
                .or_insert_with(|| netdev::interface_name(frame.ifindex));
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
            Err(e) if console::reader_gone(&e) => Ok(false),
            Err(e) => {
                // Nothing more is written; the count is what was written whole.
                self.failed = true;
                self.captured = self.sink.whole_frames().unwrap_or(self.captured);
                Err(self.sink.failed(e))
            }
            Ok(()) => Ok(self.limit.is_none_or(|l| self.captured < l)),
        }
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
            Some(state) => Some(report::rule_hits(
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
            protocols: Some(report::protocol_rates(&stats, &before, secs(interval))),
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

pub fn run(args: &SockfilterArgs) -> Result<()> {
    // Everything the user gave is checked before anything is opened.
    let rules = filter::parse_args(&args.filter, Action::Capture)?;
    let compiled = filter::compile_args(&rules)?;
    privilege::require("netprobe sockfilter", &privilege::SOCKFILTER)?;
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
        (false, n) => console::count(n as u64, "filter rule"),
    };
    console::note(format!(
        "socket filter attached on {label} ({what}); Ctrl-C to stop"
    ));
    let attached_at = Instant::now();
    let mut probe = SockProbe {
        skel,
        socket: Some(socket),
        label,
        names: HashMap::new(),
        sink,
        captured: 0,
        failed: false,
        limit: args.count,
        rules,
        rule_state,
        socket_stats: SocketStats::default(),
        attached_at,
        last: (attached_at, Stats::default()),
    };
    session::run(&mut probe, &mut runloop, reporting, args.output.duration)
}
