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
use libbpf_rs::{MapCore, MapFlags};

pub mod program;
mod rule_sources;

use program::top_sources;
pub use program::{addr_key, load, program, read_stats, rule_tables, LoadOptions};
use rule_sources::RuleSources;

use crate::cli::{XdpArgs, XdpModeArg};
use crate::console;
use crate::error::{one_line, UsageError};
use crate::filter::tables::{Capacity, RuleState};
use crate::filter::{self, Action, Rule};
use crate::kernel::bpf_stats::{RunTimeStats, RunTotals};
use crate::kernel::counters::{Stats, VERDICT_DISPLAY_ORDER, VERDICT_NAMES};
use crate::kernel::netdev::{self, XdpMode};
use crate::kernel::privilege;
use crate::report::{self, Named, RuleHits, Snapshot, Source};
use crate::session::runloop::RunLoop;
use crate::session::{self, secs, Probe};
use crate::skel::xdp::XdpSkel;

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
    skel: XdpSkel<'obj>,
    link: Option<OwnedFd>,
    iface: String,
    ifindex: u32,
    mode: XdpMode,
    cost: Option<RunTimeStats>,
    attached_at: Instant,
    last: (Instant, Stats, RunTotals),
    sources: RuleSources,
    rules: Vec<Rule>,
    rule_state: Option<RuleState>,
    dry_run: bool,
    top: Option<usize>,
    watchdog: Option<Arc<AtomicBool>>,
}

impl XdpProbe<'_> {
    fn rule_hits(&self) -> Result<Option<Vec<RuleHits>>> {
        let Some(state) = &self.rule_state else {
            return Ok(None);
        };
        let mut hits = report::rule_hits(&self.rules, state.hits(&rule_tables(&self.skel))?);
        if self.dry_run {
            // The drop rules only counted.
            for h in hits
                .iter_mut()
                .filter(|h| h.action == Action::Drop.as_str())
            {
                h.action = "would_drop";
            }
        }
        Ok(Some(hits))
    }

    fn reload(&mut self) -> Result<usize> {
        let rules = self.sources.all()?;
        let compiled = filter::compile_args(&rules)?;
        let state = self.rule_state.as_mut().context("no rules loaded")?;
        state.install(&rule_tables(&self.skel), &rules, &compiled)?;
        self.rules = rules;
        Ok(self.rules.len())
    }
}

impl Probe for XdpProbe<'_> {
    fn snapshot(&mut self, is_final: bool) -> Result<Snapshot> {
        let now = Instant::now();
        let stats = read_stats(&self.skel)?;
        let run = match &self.cost {
            Some(c) => c.read(program(&self.skel).as_fd())?,
            None => RunTotals::default(),
        };
        let (since, before, run_before) = if is_final {
            (self.attached_at, Stats::default(), RunTotals::default())
        } else {
            self.last
        };
        let interval = now - since;
        self.last = (now, stats, run);
        let protocols = report::protocol_rates(&stats, &before, secs(interval));
        let verdict_totals = stats.verdicts();
        let verdicts = VERDICT_DISPLAY_ORDER
            .iter()
            .map(|&i| (VERDICT_NAMES[i], verdict_totals[i]));
        Ok(Snapshot {
            source: Source::Xdp {
                iface: self.iface.clone(),
                mode: self.mode.as_str(),
            },
            time: SystemTime::now(),
            interval,
            elapsed: now - self.attached_at,
            protocols: Some(protocols),
            verdicts: Some(Named::new(verdicts)),
            functions: None,
            events_lost: None,
            capture: None,
            rules: self.rule_hits()?,
            top_sources: self.top.map(|n| top_sources(&self.skel, n)).transpose()?,
            cost_ns_per_packet: self.cost.as_ref().map(|_| run.ns_per_run_since(run_before)),
            is_final,
            by_protocol_verdict: Some(stats.named_protocol_verdicts(|v| Some(VERDICT_NAMES[v]))),
        })
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
        if self.sources.file.is_none() {
            return false;
        }
        match self.reload() {
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
fn veth_warnings(args: &XdpArgs, mode: XdpMode) -> Vec<String> {
    let is_veth = |iface: &str| netdev::driver(iface).is_some_and(|d| d == "veth");
    let mut out = Vec::new();
    if mode != XdpMode::Native {
        return out;
    }
    if args.reply.is_some() && is_veth(&args.iface) {
        out.push(format!(
            "{} is a veth in native mode: the echo replies go to its peer, which drops them \
             unless it runs an XDP program of its own; use --mode skb, or attach one to the peer",
            args.iface
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
    // Everything the user gave is checked before anything is loaded.
    let sources = RuleSources::parse(args)?;
    let rules = sources.all()?;
    let compiled = filter::compile_args(&rules)?;
    if args.cost {
        privilege::require("netprobe xdp --cost", &privilege::XDP_COST)?;
    } else {
        privilege::require("netprobe xdp", &privilege::XDP)?;
    }
    let ifindex = netdev::ifindex(&args.iface)?;
    let redirect_ifindex = args.redirect.as_deref().map(netdev::ifindex).transpose()?;
    let reply_addrs = match args.reply {
        Some(_) => {
            let addrs = netdev::interface_addrs(&args.iface)?;
            if addrs.is_empty() {
                return Err(UsageError(format!(
                    "--reply icmp: {} has no IPv4 or IPv6 address to answer for",
                    args.iface
                ))
                .into());
            }
            addrs
        }
        None => Vec::new(),
    };
    if args.dry_run && sources.drop.is_empty() && sources.file.is_none() {
        return Err(
            UsageError("--dry-run needs drop rules (--drop or --rules-file)".into()).into(),
        );
    }
    let existing = netdev::attached_program(ifindex)?;
    if let (Some(prog), false) = (&existing, args.replace) {
        bail!(
            "interface {} already has an XDP program: {prog}; use --replace to replace it",
            args.iface
        );
    }

    // Signals are blocked before any thread starts, so every thread inherits it.
    let mut runloop = RunLoop::new(args.output.interval)?;
    let reporting = session::Reporting::new(&args.output, true, false)?;
    let has_rules = !rules.is_empty() || sources.file.is_some();
    let capacity = Capacity::for_rules(&rules, &compiled, sources.file.is_some());
    let opts = LoadOptions {
        rules: has_rules.then_some(capacity),
        dry_run: args.dry_run,
        reply_icmp: args.reply.is_some(),
        count_sources: args.top.is_some(),
    };
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, &opts)?;
    let rule_state = if has_rules {
        let mut state = RuleState::new(capacity);
        state.install(&rule_tables(&skel), &rules, &compiled)?;
        Some(state)
    } else {
        None
    };
    if let Some(target) = redirect_ifindex {
        skel.maps
            .redirect_port
            .update(&0u32.to_ne_bytes(), &target.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| {
                format!(
                    "--redirect: {} cannot take redirected frames",
                    args.redirect.as_deref().unwrap_or("")
                )
            })?;
    }
    for ip in &reply_addrs {
        skel.maps
            .reply_addrs
            .update(&addr_key(*ip), &[1], MapFlags::ANY)
            .context("writing --reply addresses")?;
    }
    let cost = args.cost.then(RunTimeStats::enable).transpose()?;

    if let Some(prog) = &existing {
        netdev::detach(ifindex, prog)
            .with_context(|| format!("replacing the XDP program on {}", args.iface))?;
        console::note(format!("detached XDP program {prog} from {}", args.iface));
    }
    let (link, mode, fallback) = netdev::attach_xdp(
        program(&skel).as_fd(),
        ifindex,
        &args.iface,
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
    for warning in veth_warnings(args, mode) {
        console::note(warning);
    }
    if let Some(why) = fallback {
        console::note(format!("{why} on {}; using skb mode", args.iface));
    }
    let what = match (rules.len(), args.dry_run) {
        (0, _) => String::new(),
        (n, false) => format!(" with {}", console::count(n as u64, "rule")),
        (n, true) => format!(
            " with {} (dry run: nothing is dropped)",
            console::count(n as u64, "rule")
        ),
    };
    console::note(format!(
        "attached to {} in {mode} mode{what}; Ctrl-C to stop",
        args.iface
    ));
    let attached_at = Instant::now();
    let mut probe = XdpProbe {
        skel,
        link: Some(link),
        iface: args.iface.clone(),
        ifindex,
        mode,
        cost,
        attached_at,
        last: (attached_at, Stats::default(), RunTotals::default()),
        sources,
        rules,
        rule_state,
        dry_run: args.dry_run,
        top: args.top.map(|n| n as usize),
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
                "detached from {} after --for {}",
                args.iface,
                humantime::format_duration(d)
            ));
        }
    }
    result
}
