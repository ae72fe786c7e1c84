//! `netprobe xdp IFACE`: load, attach, read and detach the XDP program.
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use crate::bpf_stats::{RunTimeStats, RunTotals};
use crate::cli::XdpArgs;
use crate::counters::{sum_percpu, XdpStats, PROTOCOLS, VERDICT_DISPLAY_ORDER, VERDICT_NAMES};
use crate::netdev::{self, XdpMode};
use crate::output::{Named, Rate, Snapshot, Source};
use crate::privilege;
use crate::runloop::RunLoop;
use crate::session::{self, secs, Probe};
use crate::skel::xdp::{XdpSkel, XdpSkelBuilder};

/// Opens and loads the XDP program (verifier included) without attaching it.
pub fn load(storage: &mut MaybeUninit<OpenObject>) -> Result<XdpSkel<'_>> {
    let open = XdpSkelBuilder::default()
        .open(storage)
        .context("opening the XDP object")?;
    open.load()
        .context("loading the XDP program into the kernel")
}

/// Sums the per-CPU counters of a loaded XDP program.
pub fn read_stats(skel: &XdpSkel<'_>) -> Result<XdpStats> {
    let per_cpu = skel
        .maps
        .xdp_stats
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading xdp_stats")?
        .context("xdp_stats has no entry 0")?;
    sum_percpu(&per_cpu)
}

struct XdpProbe<'obj> {
    skel: XdpSkel<'obj>,
    link: Option<OwnedFd>,
    iface: String,
    mode: XdpMode,
    cost: Option<RunTimeStats>,
    attached_at: Instant,
    last: (Instant, XdpStats, RunTotals),
}

impl Probe for XdpProbe<'_> {
    fn snapshot(&mut self, is_final: bool) -> Result<Snapshot> {
        let now = Instant::now();
        let stats = read_stats(&self.skel)?;
        let run = match &self.cost {
            Some(c) => c.read(self.skel.progs.xdp_netprobe.as_fd())?,
            None => RunTotals::default(),
        };
        let (since, before, run_before) = if is_final {
            (self.attached_at, XdpStats::default(), RunTotals::default())
        } else {
            self.last
        };
        let interval = now - since;
        self.last = (now, stats, run);
        let (now_p, before_p) = (stats.protocols(), before.protocols());
        let protocols = PROTOCOLS
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, Rate::new(now_p[i], before_p[i], secs(interval))))
            .collect();
        let verdict_totals = stats.verdicts();
        let verdicts = VERDICT_DISPLAY_ORDER
            .iter()
            .map(|&i| (VERDICT_NAMES[i], verdict_totals[i]))
            .collect();
        Ok(Snapshot {
            source: Source::Xdp {
                iface: self.iface.clone(),
                mode: self.mode.as_str(),
            },
            time: SystemTime::now(),
            interval,
            elapsed: now - self.attached_at,
            protocols: Named(protocols),
            verdicts: Named(verdicts),
            cost_ns_per_packet: self.cost.as_ref().map(|_| run.ns_per_run_since(run_before)),
            is_final,
        })
    }

    fn detach(&mut self) {
        // Closing the link fd detaches the program.
        self.link = None;
    }

    fn lost(&self) -> Option<String> {
        let link = self.link.as_ref()?;
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
}

pub fn run(args: &XdpArgs) -> Result<()> {
    privilege::require("netprobe xdp", privilege::CAP_NET_ADMIN, "CAP_NET_ADMIN")?;
    let ifindex = netdev::ifindex(&args.iface)?;
    let existing = netdev::attached_program(ifindex)?;
    if let (Some(prog), false) = (&existing, args.replace) {
        bail!(
            "interface {} already has an XDP program: {prog}; use --replace to replace it",
            args.iface
        );
    }
    let mut runloop = RunLoop::new(args.output.interval)?;
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage)?;
    let cost = args.cost.then(RunTimeStats::enable).transpose()?;

    if let Some(prog) = &existing {
        netdev::detach(ifindex, prog)
            .with_context(|| format!("replacing the XDP program on {}", args.iface))?;
        eprintln!("netprobe: detached XDP program {prog} from {}", args.iface);
    }
    let (link, mode, fallback) = netdev::attach_xdp(
        skel.progs.xdp_netprobe.as_fd(),
        ifindex,
        &args.iface,
        args.mode,
    )?;
    if let Some(why) = fallback {
        eprintln!("netprobe: {why} on {}; using skb mode", args.iface);
    }
    eprintln!(
        "netprobe: attached to {} in {mode} mode; Ctrl-C to stop",
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
        last: (attached_at, XdpStats::default(), RunTotals::default()),
    };
    session::run(&mut probe, &mut runloop, &args.output)
}
