//! The XDP program as a run sets it up, live or over a capture: the
//! settings checked before anything loads, the program loaded with its
//! rules, redirect port and reply addresses, and the snapshot of what it
//! counted.
use std::mem::MaybeUninit;
use std::net::IpAddr;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use super::program::{addr_key, load, read_stats, rule_tables, top_sources, LoadOptions};
use super::rule_sources::RuleSources;
use crate::cli::XdpArgs;
use crate::error::UsageError;
use crate::filter::capacity::Capacity;
use crate::filter::tables::RuleState;
use crate::filter::{self, Action, Compiled, Rule};
use crate::kernel::counters::{Stats, VERDICT_DISPLAY_ORDER, VERDICT_NAMES};
use crate::kernel::netdev;
use crate::report::{self, Named, RuleHits, Snapshot};
use crate::session::{secs, Moment};
use crate::skel::xdp::XdpSkel;

/// Everything the user gave, checked, before anything is loaded.
pub struct Setup {
    pub sources: RuleSources,
    pub rules: Vec<Rule>,
    compiled: Compiled,
    redirect_ifindex: Option<u32>,
    reply_addrs: Vec<IpAddr>,
}

impl Setup {
    /// Checks the rules, `--redirect`'s interface and, with `--reply`, the
    /// addresses of `iface` to answer for.
    pub fn check(args: &XdpArgs, iface: Option<&str>) -> Result<Setup> {
        let sources = RuleSources::parse(args)?;
        let rules = sources.all()?;
        let compiled = filter::compile_args(&rules)?;
        if args.dry_run && sources.drop.is_empty() && sources.file.is_none() {
            return Err(
                UsageError("--dry-run needs drop rules (--drop or --rules-file)".into()).into(),
            );
        }
        let redirect_ifindex = args.redirect.as_deref().map(netdev::ifindex).transpose()?;
        let reply_addrs = match (args.reply, iface) {
            (None, _) => Vec::new(),
            (Some(_), None) => {
                return Err(UsageError(
                    "--reply icmp answers for an interface's addresses: name IFACE too".into(),
                )
                .into())
            }
            (Some(_), Some(iface)) => {
                let addrs = netdev::interface_addrs(iface)?;
                if addrs.is_empty() {
                    return Err(UsageError(format!(
                        "--reply icmp: {iface} has no IPv4 or IPv6 address to answer for"
                    ))
                    .into());
                }
                addrs
            }
        };
        Ok(Setup {
            sources,
            rules,
            compiled,
            redirect_ifindex,
            reply_addrs,
        })
    }
}

/// The loaded program and what reading it needs.
pub struct Loaded<'obj> {
    pub skel: XdpSkel<'obj>,
    pub sources: RuleSources,
    pub rules: Vec<Rule>,
    pub rule_state: Option<RuleState>,
    dry_run: bool,
    top: Option<usize>,
}

impl<'obj> Loaded<'obj> {
    /// Loads the program (verifier included) with what `setup` checked, and
    /// fills its rule tables, redirect port and reply addresses.
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        args: &XdpArgs,
        setup: Setup,
    ) -> Result<Loaded<'obj>> {
        let Setup {
            sources,
            rules,
            compiled,
            redirect_ifindex,
            reply_addrs,
        } = setup;
        let has_rules = !rules.is_empty() || sources.file.is_some();
        let capacity = Capacity::for_rules(&rules, &compiled, sources.file.is_some());
        let opts = LoadOptions {
            rules: has_rules.then_some(capacity),
            dry_run: args.dry_run,
            reply_icmp: args.reply.is_some(),
            count_sources: args.top.is_some(),
        };
        let skel = load(storage, &opts)?;
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
        Ok(Loaded {
            skel,
            sources,
            rules,
            rule_state,
            dry_run: args.dry_run,
            top: args.top.map(|n| n as usize),
        })
    }

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

    /// Reads the rule files again and swaps the new set in.
    pub fn reload(&mut self) -> Result<usize> {
        let rules = self.sources.all()?;
        let compiled = filter::compile_args(&rules)?;
        let state = self.rule_state.as_mut().context("no rules loaded")?;
        state.install(&rule_tables(&self.skel), &rules, &compiled)?;
        self.rules = rules;
        Ok(self.rules.len())
    }

    /// What the program counted, read now; rates since `before`, over
    /// `interval`.
    pub fn snapshot(&self, at: Moment, before: &Stats) -> Result<(Snapshot, Stats)> {
        let stats = read_stats(&self.skel)?;
        let protocols = report::protocol_rates(&stats, before, secs(at.interval));
        let verdict_totals = stats.verdicts();
        let verdicts = VERDICT_DISPLAY_ORDER
            .iter()
            .map(|&i| (VERDICT_NAMES[i], verdict_totals[i]));
        let snapshot = Snapshot {
            source: at.source,
            time: at.time,
            interval: at.interval,
            elapsed: at.elapsed,
            protocols: Some(protocols),
            verdicts: Some(Named::new(verdicts)),
            functions: None,
            events_lost: None,
            capture: None,
            rules: self.rule_hits()?,
            top_sources: self.top.map(|n| top_sources(&self.skel, n)).transpose()?,
            cost_ns_per_packet: None,
            is_final: at.is_final,
            by_protocol_verdict: Some(stats.named_protocol_verdicts(|v| Some(VERDICT_NAMES[v]))),
        };
        Ok((snapshot, stats))
    }
}
