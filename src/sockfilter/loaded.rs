//! The socket filter as a run sets it up, live or over a capture: the
//! filter rules checked and loaded, where delivered frames go, and the
//! snapshot of what the filter counted.
use std::io::{self, BufWriter};
use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::Result;
use libbpf_rs::OpenObject;

use super::program::{load, read_stats, rule_tables, LoadOptions, FILTERED, PASSED};
use super::sink::Sink;
use crate::capture::write::CaptureFile;
use crate::cli::SockfilterArgs;
use crate::filter::capacity::Capacity;
use crate::filter::tables::RuleState;
use crate::filter::{self, Action, Rule};
use crate::kernel::counters::Stats;
use crate::report::{self, CaptureCounts, Snapshot};
use crate::session::{secs, Moment};
use crate::skel::sockfilter::SockfilterSkel;

/// The loaded filter and its rules.
pub struct Loaded<'obj> {
    pub skel: SockfilterSkel<'obj>,
    pub rules: Vec<Rule>,
    rule_state: Option<RuleState>,
}

/// How far frames got on their way to netprobe, besides what the filter
/// counted itself.
pub struct Delivery {
    /// Frames queued for netprobe (matched, less what a full ring dropped).
    pub delivered: u64,
    pub socket_drops: u64,
    /// Frames printed or written.
    pub captured: u64,
}

impl<'obj> Loaded<'obj> {
    /// Checks the filter rules; nothing is loaded yet.
    pub fn rules(args: &SockfilterArgs) -> Result<Vec<Rule>> {
        let mut rules = args.filter.clone();
        if !args.expression.is_empty() {
            rules.push(args.expression.join(" "));
        }
        filter::parse_args(&rules, Action::Capture)
    }

    /// Loads the filter (verifier included) and fills its rule tables.
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        args: &SockfilterArgs,
        rules: Vec<Rule>,
    ) -> Result<Loaded<'obj>> {
        let compiled = filter::compile_args(&rules)?;
        let capacity = Capacity::for_rules(&rules, &compiled, false);
        let opts = LoadOptions {
            rules: (!rules.is_empty()).then_some(capacity),
            counts_only: args.counts_only,
            snaplen: args.snaplen,
            whole_frames: !compiled.programs.is_empty(),
        };
        let skel = load(storage, &opts)?;
        let rule_state = if rules.is_empty() {
            None
        } else {
            let mut state = RuleState::new(capacity);
            state.install(&rule_tables(&skel), &rules, &compiled)?;
            Some(state)
        };
        Ok(Loaded {
            skel,
            rules,
            rule_state,
        })
    }

    /// What the filter counted, read now; rates since `before`.
    pub fn snapshot(
        &self,
        at: Moment,
        before: &Stats,
        delivery: Delivery,
    ) -> Result<(Snapshot, Stats)> {
        let stats = read_stats(&self.skel)?;
        let rules = match &self.rule_state {
            Some(state) => Some(report::rule_hits(
                &self.rules,
                state.hits(&rule_tables(&self.skel))?,
            )),
            None => None,
        };
        let verdicts = stats.verdicts();
        let snapshot = Snapshot {
            source: at.source,
            time: at.time,
            interval: at.interval,
            elapsed: at.elapsed,
            protocols: Some(report::protocol_rates(&stats, before, secs(at.interval))),
            verdicts: None,
            functions: None,
            events_lost: None,
            capture: Some(CaptureCounts {
                seen: verdicts.iter().map(|c| c.packets).sum(),
                matched: verdicts[PASSED].packets,
                delivered: delivery.delivered,
                socket_drops: delivery.socket_drops,
                captured: delivery.captured,
            }),
            rules,
            top_sources: None,
            cost_ns_per_packet: None,
            is_final: at.is_final,
            by_protocol_verdict: Some(stats.named_protocol_verdicts(|v| match v {
                PASSED => Some("matched"),
                FILTERED => Some("filtered"),
                _ => None,
            })),
        };
        Ok((snapshot, stats))
    }
}

/// Where delivered frames go, opened now (a capture file's header is
/// written at once); and whether the counters then go to stderr, leaving
/// stdout to the frames.
pub fn sink(args: &SockfilterArgs) -> Result<(Sink, bool)> {
    let to_stdout = args.write.as_deref() == Some(Path::new("-"));
    let sink = match (&args.write, args.counts_only, args.output.json) {
        (Some(path), _, _) => Sink::Pcap(CaptureFile::create(path, args.snaplen)?),
        (None, true, _) => Sink::Discard,
        (None, false, true) => Sink::Json(BufWriter::new(io::stdout())),
        (None, false, false) => Sink::Lines(BufWriter::new(io::stdout())),
    };
    // Frame lines on stdout: counters only at the end, on stderr. JSON lines
    // mix with packet events by design.
    let counters_to_stderr = to_stdout || matches!(sink, Sink::Lines(_));
    Ok((sink, counters_to_stderr))
}
