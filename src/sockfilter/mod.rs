//! `netprobe sockfilter`: a socket filter on an AF_PACKET socket. The
//! program counts every frame and decides what reaches user space; user
//! space reads the ring and prints, writes pcap, or only counts.
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;

mod loaded;
pub mod program;
mod replay;
mod sink;

use loaded::{Delivery, Loaded};
pub use program::{load, read_stats, rule_tables, LoadOptions};
use sink::{Delivered, Sink};

use crate::cli::SockfilterArgs;
use crate::console;
use crate::kernel::counters::Stats;
use crate::kernel::netdev;
use crate::kernel::packet_socket::{PacketSocket, SocketStats};
use crate::kernel::privilege;
use crate::report::{Snapshot, Source};
use crate::session::runloop::RunLoop;
use crate::session::{self, Moment, Probe, Reporting};

struct SockProbe<'obj> {
    loaded: Loaded<'obj>,
    socket: Option<PacketSocket>,
    label: String,
    names: HashMap<i32, String>,
    sink: Sink,
    /// Frames printed or written whole.
    captured: u64,
    /// A write failed: nothing more is captured.
    failed: bool,
    limit: Option<u64>,
    snaplen: u32,
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
        let (sink, names, captured, limit, snaplen) = (
            &mut self.sink,
            &mut self.names,
            &mut self.captured,
            self.limit,
            self.snaplen,
        );
        let mut failure = None;
        socket.drain(|frame| {
            if limit.is_some_and(|l| *captured >= l) {
                return false;
            }
            let iface = names
                .entry(frame.ifindex)
                .or_insert_with(|| netdev::interface_name(frame.ifindex));
            let (data, len) = frame.on_the_wire(snaplen);
            let delivered = Delivered {
                time: Duration::new(u64::from(frame.sec), frame.nsec),
                len,
                data: &data,
                seen_at: Some((iface, if frame.outgoing { "Out" } else { "In" })),
            };
            if let Err(e) = sink.write(&delivered) {
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
        if let Some(socket) = self.socket.as_mut() {
            self.socket_stats = socket.stats()?;
        }
        let (since, before) = if is_final {
            (self.attached_at, Stats::default())
        } else {
            self.last
        };
        let at = Moment {
            source: Source::Sockfilter {
                iface: self.label.clone(),
            },
            time: SystemTime::now(),
            interval: now - since,
            elapsed: now - self.attached_at,
            is_final,
        };
        let delivery = Delivery {
            delivered: self.socket_stats.received - self.socket_stats.dropped,
            socket_drops: self.socket_stats.dropped,
            captured: self.captured,
        };
        let (snapshot, stats) = self.loaded.snapshot(at, &before, delivery)?;
        self.last = (now, stats);
        Ok(snapshot)
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
    if let Some(file) = &args.replay {
        return replay::run(args, file);
    }
    // Everything the user gave is checked before anything is opened.
    let rules = Loaded::rules(args)?;
    privilege::require("netprobe sockfilter", &privilege::SOCKFILTER)?;
    let ifindex = args
        .iface
        .as_deref()
        .map(netdev::ifindex)
        .transpose()?
        .unwrap_or(0);
    let (sink, counters_to_stderr) = loaded::sink(args)?;
    // Signals are blocked before any thread starts, so every thread inherits it.
    let mut runloop = RunLoop::new(args.output.interval)?;
    let reporting = Reporting::new(&args.output, !counters_to_stderr, counters_to_stderr)?;
    let mut storage = MaybeUninit::uninit();
    let loaded = Loaded::load(&mut storage, args, rules)?;
    let socket = PacketSocket::open(ifindex, loaded.skel.progs.sockfilter_netprobe.as_fd())?;
    let label = args.iface.clone().unwrap_or_else(|| "all".into());
    console::note(format!(
        "socket filter attached on {label} ({}); Ctrl-C to stop",
        filtering(args, loaded.rules.len())
    ));
    let attached_at = Instant::now();
    let mut probe = SockProbe {
        loaded,
        socket: Some(socket),
        label,
        names: HashMap::new(),
        sink,
        captured: 0,
        failed: false,
        limit: args.count,
        snaplen: args.snaplen,
        socket_stats: SocketStats::default(),
        attached_at,
        last: (attached_at, Stats::default()),
    };
    session::run(&mut probe, &mut runloop, reporting, args.output.duration)
}

/// `counting only`, `every frame`, `2 filter rules`.
fn filtering(args: &SockfilterArgs, rules: usize) -> String {
    match (args.counts_only, rules) {
        (true, _) => "counting only".to_string(),
        (false, 0) => "every frame".to_string(),
        (false, n) => console::count(n as u64, "filter rule"),
    }
}
