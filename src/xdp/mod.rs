//! `netprobe xdp IFACE`: load, attach, read and detach the XDP program, and
//! the actions it takes: drop by rule, redirect, answer echo requests.
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};

mod loaded;
pub mod program;
mod replay;
mod rule_sources;

use loaded::{Loaded, Setup};
pub use program::{addr_key, load, program, read_stats, rule_tables, LoadOptions};

use crate::cli::{XdpArgs, XdpModeArg};
use crate::console;
use crate::error::one_line;
use crate::kernel::bpf_stats::{RunTimeStats, RunTotals};
use crate::kernel::counters::Stats;
use crate::kernel::netdev::{self, XdpMode};
use crate::kernel::privilege;
use crate::report::{Snapshot, Source};
use crate::session::runloop::RunLoop;
use crate::session::{self, Moment, Probe};

/// `--for`: detaches the link at the deadline from a thread of its own, so
/// that it happens even when the main loop is stuck (a frozen terminal).
fn start_watchdog(link: &OwnedFd, after: Duration) -> Result<Arc<AtomicBool>> {
    let fired = Arc::new(AtomicBool::new(false));
    let link = link.try_clone().context("duplicating the link fd")?;
    let flag = Arc::clone(&fired);
    thread::spawn(move || {
        thread::sleep(after);
        flag.store(true, Ordering::SeqCst);
        // SAFETY: a valid link fd this thread owns.
        unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) };
    });
    Ok(fired)
}

struct XdpProbe<'obj> {
    loaded: Loaded<'obj>,
    link: Option<OwnedFd>,
    iface: String,
    ifindex: u32,
    mode: XdpMode,
    cost: Option<RunTimeStats>,
    attached_at: Instant,
    last: (Instant, Stats, RunTotals),
    watchdog: Option<Arc<AtomicBool>>,
}

impl Probe for XdpProbe<'_> {
    fn snapshot(&mut self, is_final: bool) -> Result<Snapshot> {
        let now = Instant::now();
        let run = match &self.cost {
            Some(c) => c.read(program(&self.loaded.skel).as_fd())?,
            None => RunTotals::default(),
        };
        let (since, before, run_before) = if is_final {
            (self.attached_at, Stats::default(), RunTotals::default())
        } else {
            self.last
        };
        let at = Moment {
            source: Source::Xdp {
                iface: self.iface.clone(),
                mode: self.mode.as_str(),
            },
            time: SystemTime::now(),
            interval: now - since,
            elapsed: now - self.attached_at,
            is_final,
        };
        let (mut snapshot, stats) = self.loaded.snapshot(at, &before)?;
        snapshot.cost_ns_per_packet = self.cost.as_ref().map(|_| run.ns_per_run_since(run_before));
        self.last = (now, stats, run);
        Ok(snapshot)
    }

    fn detach(&mut self) {
        if let Some(link) = self.link.take() {
            // Explicitly, since the --for watchdog holds a second fd to it.
            // SAFETY: a valid link fd we own.
            unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) };
        }
    }

    fn lost(&self) -> Option<String> {
        let link = self.link.as_ref()?;
        if self
            .watchdog
            .as_ref()
            .is_some_and(|w| w.load(Ordering::SeqCst))
        {
            return None;
        }
        // A link detached from outside (`--replace` elsewhere, bpftool) stays
        // open here but no longer names an interface.
        match LinkInfo::from_fd(link.as_fd()).ok()?.info {
            LinkTypeInfo::Xdp(xdp) if xdp.ifindex == 0 => Some(
                if netdev::ifindex(&self.iface).is_ok_and(|i| i == self.ifindex) {
                    format!(
                        "the XDP program was detached from {} by another process",
                        self.iface
                    )
                } else {
                    format!("interface {} went away", self.iface)
                },
            ),
            _ => None,
        }
    }

    fn hangup(&mut self) -> bool {
        if self.loaded.sources.file.is_none() {
            return false;
        }
        match self.loaded.reload() {
            Ok(n) => console::note(format!(
                "SIGHUP: {} in force",
                console::count(n as u64, "rule")
            )),
            Err(e) => console::note(format!(
                "SIGHUP: {}; the previous rules stay in force",
                one_line(&format!("{e:#}"))
            )),
        }
        true
    }
}

/// What a veth does to frames native-mode XDP sends back or redirects into
/// one: the veth that receives them drops them unless it runs an XDP
/// program of its own (it needs NAPI). Skb mode has no such limit.
fn veth_warnings(args: &XdpArgs, iface: &str, mode: XdpMode) -> Vec<String> {
    let is_veth = |iface: &str| netdev::driver(iface).is_some_and(|d| d == "veth");
    let mut out = Vec::new();
    if mode != XdpMode::Native {
        return out;
    }
    if args.reply.is_some() && is_veth(iface) {
        out.push(format!(
            "{iface} is a veth in native mode: the echo replies go to its peer, which drops them \
             unless it runs an XDP program of its own; use --mode skb, or attach one to the peer"
        ));
    }
    if let Some(target) = args.redirect.as_deref().filter(|t| is_veth(t)) {
        out.push(format!(
            "{target} is a veth: frames redirected into it in native mode are dropped by its \
             peer unless the peer runs an XDP program of its own; use --mode skb, or attach one \
             to the peer"
        ));
    }
    out
}

pub fn run(args: &XdpArgs) -> Result<()> {
    if let Some(file) = &args.replay {
        return replay::run(args, file);
    }
    let iface = args.iface.as_deref().context("no interface given")?;
    // Everything the user gave is checked before anything is loaded.
    let setup = Setup::check(args, Some(iface))?;
    if args.cost {
        privilege::require("netprobe xdp --cost", &privilege::XDP_COST)?;
    } else {
        privilege::require("netprobe xdp", &privilege::XDP)?;
    }
    let ifindex = netdev::ifindex(iface)?;
    let existing = netdev::attached_program(ifindex)?;
    if let (Some(prog), false) = (&existing, args.replace) {
        bail!("interface {iface} already has an XDP program: {prog}; use --replace to replace it");
    }

    // Signals are blocked before any thread starts, so every thread inherits it.
    let mut runloop = RunLoop::new(args.output.interval)?;
    let reporting = session::Reporting::new(&args.output, true, false)?;
    let mut storage = MaybeUninit::uninit();
    let loaded = Loaded::load(&mut storage, args, setup)?;
    let cost = args.cost.then(RunTimeStats::enable).transpose()?;

    if let Some(prog) = &existing {
        netdev::detach(ifindex, prog)
            .with_context(|| format!("replacing the XDP program on {iface}"))?;
        console::note(format!("detached XDP program {prog} from {iface}"));
    }
    let (link, mode, fallback) = netdev::attach_xdp(
        program(&loaded.skel).as_fd(),
        ifindex,
        iface,
        match args.mode {
            XdpModeArg::Native => Some(XdpMode::Native),
            XdpModeArg::Skb => Some(XdpMode::Skb),
            XdpModeArg::Auto => None,
        },
    )?;
    let watchdog = args
        .for_duration
        .map(|d| start_watchdog(&link, d))
        .transpose()?;
    for warning in veth_warnings(args, iface, mode) {
        console::note(warning);
    }
    if let Some(why) = fallback {
        console::note(format!("{why} on {iface}; using skb mode"));
    }
    console::note(format!(
        "attached to {iface} in {mode} mode{}; Ctrl-C to stop",
        rules_note(loaded.rules.len(), args.dry_run)
    ));
    let attached_at = Instant::now();
    let mut probe = XdpProbe {
        loaded,
        link: Some(link),
        iface: iface.to_string(),
        ifindex,
        mode,
        cost,
        attached_at,
        last: (attached_at, Stats::default(), RunTotals::default()),
        watchdog,
    };
    let stop_after = match (args.output.duration, args.for_duration) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let result = session::run(&mut probe, &mut runloop, reporting, stop_after);
    if let Some(d) = args.for_duration {
        if probe.attached_at.elapsed() >= d {
            console::note(format!(
                "detached from {iface} after --for {}",
                humantime::format_duration(d)
            ));
        }
    }
    result
}

/// ` with 3 rules`, and whether they only count.
fn rules_note(rules: usize, dry_run: bool) -> String {
    match (rules, dry_run) {
        (0, _) => String::new(),
        (n, false) => format!(" with {}", console::count(n as u64, "rule")),
        (n, true) => format!(
            " with {} (dry run: nothing is dropped)",
            console::count(n as u64, "rule")
        ),
    }
}
