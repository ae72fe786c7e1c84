//! `netprobe xdp IFACE`: load, attach, read and detach the XDP program, and
//! the actions it takes: drop by rule, redirect, answer echo requests.
use std::fs;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapMut, OpenObject, ProgramMut};

use crate::bpf_stats::{RunTimeStats, RunTotals};
use crate::cli::{UsageError, XdpArgs};
use crate::counters::{
    read_percpu, sum_percpu, Counter, Stats, VERDICT_DISPLAY_ORDER, VERDICT_NAMES,
};
use crate::netdev::{self, XdpMode};
use crate::output::{self, Named, RuleHits, Snapshot, Source, SourceHits};
use crate::privilege;
use crate::rulemaps::{Capacity, RuleState, RuleTables};
use crate::rules::{self, Action, Rule};
use crate::runloop::RunLoop;
use crate::session::{self, secs, Probe};
use crate::skel::xdp::{XdpSkel, XdpSkelBuilder};

/// Source addresses `--top` keeps counters for (least recently seen go first).
const TOP_SOURCES_TRACKED: u32 = 8192;
/// Own addresses `--reply` answers for.
const REPLY_ADDRS_MAX: u32 = 256;

/// What the program is loaded with; fixed until it is unloaded.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Room for rules; `None` loads the program without the rule matcher.
    pub rules: Option<Capacity>,
    pub dry_run: bool,
    pub reply_icmp: bool,
    pub count_sources: bool,
}

/// Whether the settings need the program with actions: counting alone is
/// served by a lighter program compiled without them.
fn needs_actions(rules_enabled: bool, reply_icmp: bool, count_sources: bool) -> bool {
    rules_enabled || reply_icmp || count_sources
}

/// Opens and loads the XDP program (verifier included) without attaching it.
pub fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    opts: &LoadOptions,
) -> Result<XdpSkel<'obj>> {
    let mut open = XdpSkelBuilder::default()
        .open(storage)
        .context("opening the XDP object")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("no .rodata in the XDP object")?;
    rodata.rules_enabled = opts.rules.is_some();
    rodata.dry_run = opts.dry_run;
    rodata.reply_icmp = opts.reply_icmp;
    rodata.count_sources = opts.count_sources;
    let actions = needs_actions(opts.rules.is_some(), opts.reply_icmp, opts.count_sources);
    let cap = opts.rules.unwrap_or(Capacity {
        rules: 1,
        entries: 1,
    });
    rodata.max_rules = cap.rules;
    crate::size_rule_tables!(open.maps, cap);
    let maps = &mut open.maps;
    maps.top_sources.set_max_entries(if opts.count_sources {
        TOP_SOURCES_TRACKED
    } else {
        1
    })?;
    maps.reply_addrs
        .set_max_entries(if opts.reply_icmp { REPLY_ADDRS_MAX } else { 1 })?;
    open.progs.xdp_netprobe.set_autoload(!actions);
    open.progs.xdp_np_actions.set_autoload(actions);
    open.load()
        .context("loading the XDP program into the kernel")
}

/// The one program `load` loaded: counting only, or with actions.
pub fn program<'a, 'obj>(skel: &'a XdpSkel<'obj>) -> &'a ProgramMut<'obj> {
    let actions = skel
        .maps
        .rodata_data
        .is_some_and(|r| needs_actions(r.rules_enabled, r.reply_icmp, r.count_sources));
    if actions {
        &skel.progs.xdp_np_actions
    } else {
        &skel.progs.xdp_netprobe
    }
}

/// The rule tables of a loaded program.
pub fn rule_tables<'a, 'obj>(skel: &'a XdpSkel<'obj>) -> RuleTables<'a, MapMut<'obj>> {
    crate::rule_tables!(skel)
}

/// Sums the per-CPU counters of a loaded XDP program.
pub fn read_stats(skel: &XdpSkel<'_>) -> Result<Stats> {
    read_percpu(&skel.maps.xdp_stats)
}

/// `struct np_addr` for an address.
pub fn addr_key(ip: IpAddr) -> [u8; 20] {
    let mut key = [0u8; 20];
    match ip {
        IpAddr::V4(v4) => {
            key[0] = 4;
            key[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            key[0] = 6;
            key[4..20].copy_from_slice(&v6.octets());
        }
    }
    key
}

fn addr_of_key(key: &[u8]) -> Option<IpAddr> {
    match key.first()? {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(key.get(4..8)?).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(key.get(4..20)?).ok()?)),
        _ => None,
    }
}

/// The `n` busiest sources in a loaded program's `top_sources`.
pub fn top_sources(skel: &XdpSkel<'_>, n: usize) -> Result<Vec<SourceHits>> {
    let map = &skel.maps.top_sources;
    let mut all = Vec::new();
    for key in map.keys() {
        // An entry evicted between listing and reading is simply skipped.
        let Some(per_cpu) = map
            .lookup_percpu(&key, MapFlags::ANY)
            .context("reading top_sources")?
        else {
            continue;
        };
        let total: Counter = sum_percpu(&per_cpu)?;
        if let Some(addr) = addr_of_key(&key) {
            all.push(SourceHits {
                addr: addr.to_string(),
                packets: total.packets,
                bytes: total.bytes,
            });
        }
    }
    all.sort_by(|a, b| {
        b.packets
            .cmp(&a.packets)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.addr.cmp(&b.addr))
    });
    all.truncate(n);
    Ok(all)
}

/// The IPv4 and IPv6 addresses of `iface`.
fn interface_addrs(iface: &str) -> Result<Vec<IpAddr>> {
    let addrs = nix::ifaddrs::getifaddrs().context("listing interface addresses")?;
    Ok(addrs
        .filter(|a| a.interface_name == iface)
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect())
}

/// Where the rules come from, so that SIGHUP can rebuild the list.
struct RuleSources {
    drop: Vec<Rule>,
    file: Option<PathBuf>,
    redirect: Vec<Rule>,
}

impl RuleSources {
    fn parse(args: &XdpArgs) -> Result<RuleSources> {
        let mut redirect = rules::parse_args(&args.match_rules, Action::Redirect)?;
        if args.redirect.is_some() && redirect.is_empty() {
            redirect.push(rules::parse("", Action::Redirect).map_err(|e| anyhow!("{e}"))?);
        }
        Ok(RuleSources {
            drop: rules::parse_args(&args.drop, Action::Drop)?,
            file: args.rules_file.clone(),
            redirect,
        })
    }

    /// Every rule in force, in matching order: --drop, the file, --match.
    fn all(&self) -> Result<Vec<Rule>> {
        let mut all = self.drop.clone();
        if let Some(path) = &self.file {
            all.extend(read_rules_file(path)?);
        }
        all.extend(self.redirect.iter().cloned());
        Ok(all)
    }
}

fn read_rules_file(path: &Path) -> Result<Vec<Rule>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading rules file {}", path.display()))?;
    rules::parse_file(&path.display().to_string(), &text, Action::Drop)
        .map_err(|e| UsageError(e).into())
}

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
    mode: XdpMode,
    cost: Option<RunTimeStats>,
    attached_at: Instant,
    last: (Instant, Stats, RunTotals),
    sources: RuleSources,
    rules: Vec<Rule>,
    rule_state: Option<RuleState>,
    top: Option<usize>,
    watchdog: Option<Arc<AtomicBool>>,
}

impl XdpProbe<'_> {
    fn rule_hits(&self) -> Result<Option<Vec<RuleHits>>> {
        let Some(state) = &self.rule_state else {
            return Ok(None);
        };
        Ok(Some(output::rule_hits(
            &self.rules,
            state.hits(&rule_tables(&self.skel))?,
        )))
    }

    fn reload(&mut self) -> Result<usize> {
        let rules = self.sources.all()?;
        let compiled = rules::compile_args(&rules)?;
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
        let protocols = output::protocol_rates(&stats, &before, secs(interval));
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
            LinkTypeInfo::Xdp(xdp) if xdp.ifindex == 0 => Some(format!(
                "the XDP program was detached from {} by another process",
                self.iface
            )),
            _ => None,
        }
    }

    fn hangup(&mut self) -> bool {
        if self.sources.file.is_none() {
            return false;
        }
        match self.reload() {
            Ok(n) => eprintln!("netprobe: SIGHUP: {n} rules in force"),
            Err(e) => eprintln!(
                "netprobe: SIGHUP: {}; the previous rules stay in force",
                crate::cli::one_line(&format!("{e:#}"))
            ),
        }
        true
    }
}

pub fn run(args: &XdpArgs) -> Result<()> {
    // Everything the user gave is checked before anything is loaded.
    let sources = RuleSources::parse(args)?;
    let rules = sources.all()?;
    let compiled = rules::compile_args(&rules)?;
    privilege::require("netprobe xdp", privilege::CAP_NET_ADMIN, "CAP_NET_ADMIN")?;
    let ifindex = netdev::ifindex(&args.iface)?;
    let redirect_ifindex = args.redirect.as_deref().map(netdev::ifindex).transpose()?;
    let reply_addrs = match args.reply {
        Some(_) => {
            let addrs = interface_addrs(&args.iface)?;
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
        eprintln!("netprobe: detached XDP program {prog} from {}", args.iface);
    }
    let (link, mode, fallback) =
        netdev::attach_xdp(program(&skel).as_fd(), ifindex, &args.iface, args.mode)?;
    let watchdog = args
        .for_duration
        .map(|d| start_watchdog(&link, d))
        .transpose()?;
    if let Some(why) = fallback {
        eprintln!("netprobe: {why} on {}; using skb mode", args.iface);
    }
    let what = match (rules.len(), args.dry_run) {
        (0, _) => String::new(),
        (n, false) => format!(" with {n} rules"),
        (n, true) => format!(" with {n} rules (dry run: nothing is dropped)"),
    };
    eprintln!(
        "netprobe: attached to {} in {mode} mode{what}; Ctrl-C to stop",
        args.iface
    );
    let attached_at = Instant::now();
    let mut probe = XdpProbe {
        skel,
        link: Some(link),
        iface: args.iface.clone(),
        mode,
        cost,
        attached_at,
        last: (attached_at, Stats::default(), RunTotals::default()),
        sources,
        rules,
        rule_state,
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
            eprintln!(
                "netprobe: detached from {} after --for {}",
                args.iface,
                humantime::format_duration(d)
            );
        }
    }
    result
}
