//! `netprobe kprobe FUNC...`: calls, return values, latency and connect
//! events of kernel functions, through the best backend this kernel allows.
//!
//! Each function gets its own instance of `kprobe.bpf.c` with only the
//! chosen backend's programs loaded: fentry/fexit need their target before
//! load, and one instance per function keeps every backend alike.
mod backend;
mod events;
mod targets;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, RingBuffer, RingBufferBuilder};

pub use backend::fentry_support;
use backend::{attach, choose_backend, open_and_load, Backend, Settings};
use events::{return_label, ConnectEvent, Flow, FuncStats, CONNECT_HEADER};
use targets::{connect_events, expand, TRACEPOINT as TP_PREFIX};
pub use targets::{connect_family, flow_events, Target, TRACEPOINT};

use crate::cli::KprobeArgs;
use crate::console;
use crate::error::UsageError;
use crate::kernel::counters::read_percpu;
use crate::kernel::privilege;
use crate::kernel::symbols::{traceable_functions, tracepoints};
use crate::report::{self, latency_buckets, FunctionReport, Named, Snapshot};
use crate::session::runloop::RunLoop;
use crate::session::{self, secs, Probe, Reporting};
use crate::skel::kprobe::KprobeSkel;

struct Traced<'obj> {
    /// As shown: the function's name, or `tp:NAME`.
    function: String,
    target: Target,
    skel: KprobeSkel<'obj>,
    links: Vec<Link>,
}

struct KprobeProbe<'obj> {
    traced: Vec<Traced<'obj>>,
    /// The backends in use, `+`-joined when several.
    backend: String,
    settings: Settings,
    ring: Option<RingBuffer<'static>>,
    pending: Rc<RefCell<Vec<(Source, ConnectEvent)>>>,
    /// The kernel's names of drop reasons, by value.
    drop_reasons: HashMap<i32, String>,
    json: bool,
    out: BufWriter<io::Stdout>,
    header_printed: bool,
    attached_at: Instant,
    last: (Instant, Vec<u64>),
}

/// Where an event comes from: a connect function, or a tracepoint (as
/// shown, `tp:NAME`) with a flow.
#[derive(Clone)]
enum Source {
    Connect,
    Flow(String, Flow),
}

/// The kernel's `enum skb_drop_reason`, value to name (`NO_SOCKET`), from
/// kernel BTF; empty where the kernel has none.
fn drop_reasons() -> HashMap<i32, String> {
    let Ok(btf) = libbpf_rs::btf::Btf::from_vmlinux() else {
        return HashMap::new();
    };
    let Some(reasons) = btf
        .type_by_kind::<libbpf_rs::btf::types::Enum<'_>>()
        .find(|e| e.name().and_then(|n| n.to_str()) == Some("skb_drop_reason"))
    else {
        return HashMap::new();
    };
    reasons
        .iter()
        .filter_map(|m| {
            let name = m.name?.to_str()?;
            Some((
                m.value as i32,
                name.trim_start_matches("SKB_DROP_REASON_").to_string(),
            ))
        })
        .collect()
}

/// The wall time the monotonic clock (bpf_ktime_get_ns) counts from.
fn boot_time() -> SystemTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let since_boot = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    SystemTime::now()
        .checked_sub(since_boot)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl KprobeProbe<'_> {
    fn read(&self, t: &Traced<'_>) -> Result<(FuncStats, Option<Named<u64>>)> {
        let stats: FuncStats = read_percpu(&t.skel.maps.func_stats)?;
        let returns = if self.settings.want_ret {
            let map = &t.skel.maps.ret_counts;
            let mut values: Vec<(i32, u64)> = Vec::new();
            for key in map.keys() {
                let Some(per_cpu) = map.lookup_percpu(&key, MapFlags::ANY)? else {
                    continue;
                };
                let count: u64 = per_cpu
                    .iter()
                    .map(|b| u64::from_ne_bytes(b[..8].try_into().unwrap()))
                    .sum();
                values.push((i32::from_ne_bytes(key[..4].try_into().unwrap()), count));
            }
            values.sort_by_key(|&(v, _)| if v == 0 { i64::MIN } else { -i64::from(v) });
            Some(Named::new(
                values.into_iter().map(|(v, c)| (return_label(v), c)),
            ))
        } else {
            None
        };
        Ok((stats, returns))
    }

    fn print_events(&mut self) -> io::Result<()> {
        let mut events: Vec<(Source, ConnectEvent)> = self.pending.borrow_mut().drain(..).collect();
        // One ring per function or tracepoint: in time order across them.
        events.sort_by_key(|(_, e)| e.ts_ns);
        let boot = boot_time();
        let reasons = |r: i32| {
            self.drop_reasons
                .get(&r)
                .cloned()
                .unwrap_or_else(|| r.to_string())
        };
        for (source, ev) in events {
            match (&source, self.json) {
                (Source::Connect, true) => serde_json::to_writer(&mut self.out, &ev.json(boot))?,
                (Source::Flow(tp, flow), true) => {
                    let tp = tp.trim_start_matches(TP_PREFIX);
                    serde_json::to_writer(&mut self.out, &ev.flow_json(tp, *flow, boot, &reasons))?
                }
                (Source::Connect, false) => {
                    if !self.header_printed {
                        writeln!(self.out, "{CONNECT_HEADER}")?;
                        self.header_printed = true;
                    }
                    write!(self.out, "{}", ev.line())?;
                }
                (Source::Flow(tp, flow), false) => write!(
                    self.out,
                    "{}",
                    ev.flow_line(tp.trim_start_matches(TP_PREFIX), *flow, &reasons)
                )?,
            }
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }
}

impl Probe for KprobeProbe<'_> {
    fn snapshot(&mut self, is_final: bool) -> Result<Snapshot> {
        let now = Instant::now();
        let (since, before) = if is_final {
            (self.attached_at, vec![0; self.traced.len()])
        } else {
            self.last.clone()
        };
        let interval = now - since;
        let mut functions = Vec::new();
        let mut calls_now = Vec::new();
        let mut lost = 0;
        for (i, t) in self.traced.iter().enumerate() {
            let (stats, returns) = self.read(t)?;
            lost += stats.lost_events;
            calls_now.push(stats.calls);
            functions.push((
                t.function.clone(),
                FunctionReport {
                    calls: stats.calls,
                    per_sec: stats.calls.saturating_sub(before[i]) as f64 / secs(interval),
                    returns,
                    latency: self
                        .settings
                        .want_latency
                        .then(|| latency_buckets(&stats.latency)),
                },
            ));
        }
        self.last = (now, calls_now);
        Ok(Snapshot {
            source: report::Source::Kprobe {
                backend: self.backend.clone(),
            },
            time: SystemTime::now(),
            interval,
            elapsed: now - self.attached_at,
            protocols: None,
            verdicts: None,
            functions: Some(Named::new(functions)),
            events_lost: Some(lost),
            capture: None,
            rules: None,
            top_sources: None,
            cost_ns_per_packet: None,
            is_final,
            by_protocol_verdict: None,
        })
    }

    fn detach(&mut self) {
        // No new events once the links are gone; then those in the rings.
        for t in &mut self.traced {
            t.links.clear();
        }
        let _ = self.on_readable();
    }

    fn lost(&self) -> Option<String> {
        None
    }

    fn event_fd(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: the epoll fd lives as long as the ring buffer we hold.
        self.ring
            .as_ref()
            .map(|r| unsafe { BorrowedFd::borrow_raw(r.epoll_fd()) })
    }

    fn on_readable(&mut self) -> Result<bool> {
        if let Some(ring) = &self.ring {
            ring.consume().context("reading the ring buffer")?;
        }
        match self.print_events() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            other => other.map(|()| true).context("writing events"),
        }
    }
}

pub fn run(args: &KprobeArgs) -> Result<()> {
    let functions = traceable_functions()?;
    let targets = expand(&args.functions, &functions, &tracepoints())?;
    let needs_exit_data = args.ret || args.latency;
    if let Some(tp) = targets
        .iter()
        .find(|t| matches!(t, Target::Tracepoint(_)))
        .filter(|_| needs_exit_data)
    {
        return Err(UsageError(format!(
            "--ret and --latency need a function: {tp} is a tracepoint, counted by calls only"
        ))
        .into());
    }
    privilege::require("netprobe kprobe", &privilege::KPROBE)?;
    let function_names: Vec<String> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Function(f) => Some(f.clone()),
            Target::Tracepoint(_) => None,
        })
        .collect();
    // Tracepoints always attach as raw tracepoints; functions by the backend
    // this kernel allows.
    let backend = if function_names.is_empty() {
        Backend::RawTracepoint
    } else {
        choose_backend(args.backend, &function_names, needs_exit_data)?
    };
    let settings = Settings {
        backend,
        want_ret: args.ret,
        want_latency: args.latency,
        filter_pid: args.pid.unwrap_or(0),
        filter_uid: args.uid,
        filter_port: args.port.unwrap_or(0),
        flow: None,
    };
    // A tracepoint with a flow goes through a BTF-typed program that reads
    // its arguments; any other through a raw tracepoint that counts.
    let settings_for = |t: &Target| match (t, flow_events(t)) {
        (Target::Function(_), _) => settings,
        (Target::Tracepoint(_), None) => Settings {
            backend: Backend::RawTracepoint,
            ..settings
        },
        (Target::Tracepoint(_), flow) => Settings {
            backend: Backend::BtfTracepoint,
            flow,
            ..settings
        },
    };

    // Event lines own stdout; then the counters go to stderr at the end.
    let has_events = targets
        .iter()
        .any(|t| connect_events(t).is_some() || flow_events(t).is_some());
    let events_as_lines = has_events && !args.output.json;
    // Signals are blocked before any thread starts, so every thread inherits it.
    let mut runloop = RunLoop::new(args.output.interval)?;
    let reporting = Reporting::new(&args.output, !events_as_lines, events_as_lines)?;
    let mut storages: Vec<Box<MaybeUninit<OpenObject>>> = targets
        .iter()
        .map(|_| Box::new(MaybeUninit::uninit()))
        .collect();
    let mut traced = Vec::new();
    for (storage, target) in storages.iter_mut().zip(&targets) {
        let name = match target {
            Target::Function(n) | Target::Tracepoint(n) => n,
        };
        let skel = open_and_load(storage, name, &settings_for(target))?;
        traced.push(Traced {
            function: target.to_string(),
            target: target.clone(),
            skel,
            links: Vec::new(),
        });
    }
    // Attach all or nothing: links made so far are dropped on the first error.
    for t in &mut traced {
        let name = match &t.target {
            Target::Function(n) | Target::Tracepoint(n) => n,
        };
        t.links = attach(&t.skel, name, &settings_for(&t.target))
            .with_context(|| format!("attaching to {}", t.function))?;
    }
    let pending = Rc::new(RefCell::new(Vec::new()));
    let emitting: Vec<(&Traced<'_>, Source)> = traced
        .iter()
        .filter_map(|t| match (&t.target, flow_events(&t.target)) {
            (_, Some(flow)) => Some((t, Source::Flow(t.function.clone(), flow))),
            (target, None) => connect_events(target).map(|_| (t, Source::Connect)),
        })
        .collect();
    let ring = if emitting.is_empty() {
        None
    } else {
        let mut builder = RingBufferBuilder::new();
        for (t, source) in emitting {
            let sink = Rc::clone(&pending);
            builder.add(&t.skel.maps.events, move |data: &[u8]| {
                if let Ok(ev) = plain::from_bytes::<ConnectEvent>(data) {
                    sink.borrow_mut().push((source.clone(), *ev));
                }
                0
            })?;
        }
        Some(builder.build().context("setting up the ring buffer")?)
    };
    if ring.is_some() {
        runloop.drain_every(args.event_delay);
    }
    // The backends in use, in the order the targets came.
    let mut backends: Vec<&'static str> = Vec::new();
    for t in &targets {
        let b = settings_for(t).backend.as_str();
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    let backend = backends.join("+");
    console::note(format!(
        "{backend} backend attached to {}; Ctrl-C to stop",
        traced
            .iter()
            .map(|t| t.function.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let attached_at = Instant::now();
    let mut probe = KprobeProbe {
        traced,
        backend,
        settings,
        drop_reasons: if targets
            .iter()
            .any(|t| flow_events(t) == Some(Flow::SkbDrop))
        {
            drop_reasons()
        } else {
            HashMap::new()
        },
        ring,
        pending,
        json: args.output.json,
        out: BufWriter::new(io::stdout()),
        header_printed: false,
        attached_at,
        last: (attached_at, vec![0; targets.len()]),
    };
    session::run(&mut probe, &mut runloop, reporting, args.output.duration)
}
