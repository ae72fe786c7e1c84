//! `netprobe kprobe FUNC...`: calls, return values, latency and connect
//! events of kernel functions, through the best backend this kernel allows.
//!
//! Each function gets its own instance of `kprobe.bpf.c` with only the
//! chosen backend's programs loaded: fentry/fexit need their target before
//! load, and one instance per function keeps every backend alike.
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, RingBuffer, RingBufferBuilder};
use serde::Serialize;

use crate::cli::{KprobeArgs, UsageError};
use crate::counters::read_percpu;
use crate::output::{self, FunctionReport, Named, Snapshot, Source};
use crate::privilege;
use crate::runloop::RunLoop;
use crate::session::{self, secs, Probe, Reporting};
use crate::skel::kprobe::{KprobeSkel, KprobeSkelBuilder};

/// Functions one run may trace (each is a program instance).
pub const MAX_FUNCTIONS: usize = 32;
/// The functions whose calls are connect attempts, with their family.
const CONNECT_FUNCTIONS: [(&str, u16); 2] = [("tcp_v4_connect", 2), ("tcp_v6_connect", 10)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// The best this kernel allows: fentry, else kprobe, else (connect only) tracepoint
    Auto,
    /// kprobe and kretprobe
    Kprobe,
    /// fentry and fexit (BTF trampolines)
    Fentry,
    /// the sock:inet_sock_set_state tracepoint (tcp_v4_connect and tcp_v6_connect only)
    Tracepoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Kprobe,
    Fentry,
    Tracepoint,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Kprobe => "kprobe",
            Backend::Fentry => "fentry",
            Backend::Tracepoint => "tracepoint",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `*` and `?` glob matching.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ni;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The kernel's traceable functions and where the list came from.
pub struct FunctionList {
    pub names: BTreeSet<String>,
    pub source: &'static str,
}

/// Traceable functions: ftrace's list where readable, else every text
/// symbol in /proc/kallsyms.
pub fn traceable_functions() -> Result<FunctionList> {
    for path in [
        "/sys/kernel/tracing/available_filter_functions",
        "/sys/kernel/debug/tracing/available_filter_functions",
    ] {
        if let Ok(text) = fs::read_to_string(path) {
            let names = text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect();
            return Ok(FunctionList {
                names,
                source: "available_filter_functions",
            });
        }
    }
    let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    Ok(FunctionList {
        names: parse_kallsyms(&text),
        source: "/proc/kallsyms",
    })
}

fn parse_kallsyms(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            // Text symbols; compiler clones (foo.isra.0, foo.cold) are not
            // functions anyone names.
            // __pfx_ symbols are padding in front of functions, not functions.
            (matches!(kind, "t" | "T") && !name.contains('.') && !name.starts_with("__pfx_"))
                .then(|| name.to_string())
        })
        .collect()
}

/// Expands the patterns on the command line into function names.
pub fn expand(patterns: &[String], list: &FunctionList) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for pattern in patterns {
        let matches: Vec<&String> = if pattern.contains(['*', '?']) {
            list.names
                .iter()
                .filter(|n| glob_match(pattern, n))
                .collect()
        } else {
            list.names.get(pattern).into_iter().collect()
        };
        if matches.is_empty() {
            let what = if pattern.contains(['*', '?']) {
                "pattern"
            } else {
                "function"
            };
            return Err(UsageError(format!(
                "no traceable kernel {what} '{pattern}' (checked {}; try netprobe list '{pattern}')",
                list.source
            ))
            .into());
        }
        for m in matches {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        if out.len() > MAX_FUNCTIONS {
            return Err(UsageError(format!(
                "'{pattern}' brings the functions to trace to {} and netprobe traces at most {MAX_FUNCTIONS} at once; \
                 narrow the pattern",
                out.len()
            ))
            .into());
        }
    }
    Ok(out)
}

fn connect_family(function: &str) -> Option<u16> {
    CONNECT_FUNCTIONS
        .iter()
        .find(|(f, _)| *f == function)
        .map(|&(_, family)| family)
}

/// Whether kprobes work here, and if not, why (for one line to the user).
pub fn kprobe_support() -> std::result::Result<(), String> {
    if Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        return Ok(());
    }
    let config = crate::check::kernel_config_value("CONFIG_KPROBES");
    Err(match config.as_deref() {
        Some("y") => "the kprobe PMU is missing from /sys/bus/event_source/devices".to_string(),
        _ => "has no kprobes (CONFIG_KPROBES is not set)".to_string(),
    })
}

/// Whether this kernel loads an fentry program on `function`.
pub fn fentry_support(function: &str) -> std::result::Result<(), String> {
    let mut storage = MaybeUninit::uninit();
    let settings = Settings {
        backend: Backend::Fentry,
        ..Settings::default()
    };
    let loaded = open_and_load(&mut storage, function, &settings).map(drop);
    loaded.map_err(|e| {
        format!(
            "refused fentry: {}",
            crate::cli::one_line(&e.root_cause().to_string())
        )
    })
}

/// What each program instance is loaded with.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub backend: Backend,
    pub want_ret: bool,
    pub want_latency: bool,
    pub filter_pid: u32,
    pub filter_uid: Option<u32>,
    pub filter_port: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backend: Backend::Kprobe,
            want_ret: false,
            want_latency: false,
            filter_pid: 0,
            filter_uid: None,
            filter_port: 0,
        }
    }
}

/// Opens and loads one instance for `function`, with only the programs of
/// the chosen backend.
pub fn open_and_load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    function: &str,
    s: &Settings,
) -> Result<KprobeSkel<'obj>> {
    let mut open = KprobeSkelBuilder::default()
        .open(storage)
        .context("opening the kprobe object")?;
    let family = connect_family(function);
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("no .rodata in the kprobe object")?;
    rodata.connect_events = family.is_some();
    rodata.connect_family = family.unwrap_or(2);
    rodata.want_ret = s.want_ret;
    rodata.want_latency = s.want_latency;
    rodata.filter_pid = s.filter_pid;
    rodata.filter_uid = s.filter_uid.unwrap_or(u32::MAX);
    rodata.filter_port = s.filter_port;
    let exits = s.want_ret || s.want_latency || family.is_some();
    let progs = &mut open.progs;
    progs
        .kprobe_entry
        .set_autoload(s.backend == Backend::Kprobe);
    progs
        .kretprobe_exit
        .set_autoload(s.backend == Backend::Kprobe && exits);
    progs
        .fentry_entry
        .set_autoload(s.backend == Backend::Fentry);
    progs
        .fexit_exit
        .set_autoload(s.backend == Backend::Fentry && exits);
    progs
        .tp_set_state
        .set_autoload(s.backend == Backend::Tracepoint);
    if s.backend == Backend::Fentry {
        progs
            .fentry_entry
            .set_attach_target(0, Some(function.to_string()))?;
        progs
            .fexit_exit
            .set_attach_target(0, Some(function.to_string()))?;
    }
    open.load()
        .with_context(|| format!("loading the {} programs for {function}", s.backend))
}

fn attach(skel: &KprobeSkel<'_>, function: &str, s: &Settings) -> Result<Vec<Link>> {
    let exits = s.want_ret || s.want_latency || connect_family(function).is_some();
    let p = &skel.progs;
    let links = match s.backend {
        Backend::Kprobe => {
            let mut links = vec![p.kprobe_entry.attach_kprobe(false, function)?];
            if exits {
                links.push(p.kretprobe_exit.attach_kprobe(true, function)?);
            }
            links
        }
        Backend::Fentry => {
            let mut links = vec![p.fentry_entry.attach_trace()?];
            if exits {
                links.push(p.fexit_exit.attach_trace()?);
            }
            links
        }
        Backend::Tracepoint => vec![p.tp_set_state.attach_trace()?],
    };
    Ok(links)
}

/// Picks the backend and says, in one line, why if it is not the best one.
fn choose_backend(arg: BackendArg, functions: &[String], needs_exit_data: bool) -> Result<Backend> {
    let all_connect = functions.iter().all(|f| connect_family(f).is_some());
    let tracepoint_ok = || -> Result<()> {
        if !all_connect {
            bail!("the tracepoint backend covers only tcp_v4_connect and tcp_v6_connect");
        }
        if needs_exit_data {
            return Err(UsageError(
                "--ret and --latency need the kprobe or fentry backend: the tracepoint sees only the connect attempt".into(),
            )
            .into());
        }
        Ok(())
    };
    match arg {
        BackendArg::Kprobe => kprobe_support()
            .map(|()| Backend::Kprobe)
            .map_err(|why| anyhow::anyhow!("kprobe backend: this kernel {why}")),
        BackendArg::Fentry => fentry_support(&functions[0])
            .map(|()| Backend::Fentry)
            .map_err(|why| anyhow::anyhow!("fentry backend: this kernel {why}")),
        BackendArg::Tracepoint => tracepoint_ok().map(|()| Backend::Tracepoint),
        BackendArg::Auto => {
            let fentry = fentry_support(&functions[0]);
            if fentry.is_ok() {
                return Ok(Backend::Fentry);
            }
            let kprobe = kprobe_support();
            let why_not = match &kprobe {
                Ok(()) => fentry.as_ref().err().cloned().unwrap_or_default(),
                Err(k) => format!(
                    "{}, and {k}",
                    fentry.as_ref().err().map_or("", String::as_str)
                ),
            };
            if kprobe.is_ok() {
                eprintln!("netprobe: using the kprobe backend: this kernel {why_not}");
                return Ok(Backend::Kprobe);
            }
            if all_connect && !needs_exit_data {
                eprintln!(
                    "netprobe: using the tracepoint backend (sock:inet_sock_set_state): this kernel {why_not}; \
                     it gives no return values and no source port before the kernel picks one"
                );
                return Ok(Backend::Tracepoint);
            }
            bail!(
                "no usable backend for {}: this kernel {why_not}{}",
                functions.join(", "),
                if all_connect {
                    "; the tracepoint backend cannot give --ret or --latency"
                } else {
                    ""
                }
            )
        }
    }
}

/// `struct np_func_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncStats {
    pub calls: u64,
    pub returns: u64,
    pub events: u64,
    pub lost_events: u64,
    pub latency: [u64; 64],
}

impl Default for FuncStats {
    fn default() -> Self {
        FuncStats {
            calls: 0,
            returns: 0,
            events: 0,
            lost_events: 0,
            latency: [0; 64],
        }
    }
}

// SAFETY: u64 fields only.
unsafe impl plain::Plain for FuncStats {}

impl std::ops::AddAssign for FuncStats {
    fn add_assign(&mut self, o: Self) {
        self.calls += o.calls;
        self.returns += o.returns;
        self.events += o.events;
        self.lost_events += o.lost_events;
        for (a, b) in self.latency.iter_mut().zip(o.latency) {
            *a += b;
        }
    }
}

/// `struct np_connect_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectEvent {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub ret: i32,
    pub netns: u32,
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub has_ret: u8,
    pub pad: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
}

// SAFETY: integers and byte arrays, explicit padding.
unsafe impl plain::Plain for ConnectEvent {}

const _: () = {
    use crate::skel::kprobe::types;
    assert!(std::mem::size_of::<FuncStats>() == std::mem::size_of::<types::np_func_stats>());
};

fn ip_of(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == 10 {
        IpAddr::from(*bytes)
    } else {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

/// A connect event as a JSON line.
#[derive(Serialize)]
struct ConnectJson {
    event: &'static str,
    time: String,
    pid: u32,
    tid: u32,
    comm: String,
    uid: u32,
    ip: u8,
    saddr: String,
    daddr: String,
    sport: Option<u16>,
    dport: u16,
    ret: Option<i32>,
    netns: u32,
}

impl ConnectEvent {
    fn comm(&self) -> String {
        let len = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..len]).into_owned()
    }

    fn json(&self) -> ConnectJson {
        ConnectJson {
            event: "connect",
            time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            pid: self.pid,
            tid: self.tid,
            comm: self.comm(),
            uid: self.uid,
            ip: if self.family == 10 { 6 } else { 4 },
            saddr: ip_of(self.family, &self.saddr).to_string(),
            daddr: ip_of(self.family, &self.daddr).to_string(),
            // 0 means the kernel had not picked the port yet.
            sport: (self.sport != 0).then_some(self.sport),
            dport: self.dport,
            ret: (self.has_ret != 0).then_some(self.ret),
            netns: self.netns,
        }
    }

    /// A tcpconnect-style line: PID COMM IP SADDR DADDR DPORT RET.
    fn line(&self) -> String {
        let ret = if self.has_ret != 0 {
            self.ret.to_string()
        } else {
            "-".into()
        };
        format!(
            "{:<7} {:<16} {:<2} {:<39} {:<39} {:<5} {}",
            self.pid,
            self.comm(),
            if self.family == 10 { 6 } else { 4 },
            ip_of(self.family, &self.saddr),
            ip_of(self.family, &self.daddr),
            self.dport,
            ret
        )
    }
}

const CONNECT_HEADER: &str = "PID     COMM             IP SADDR                                   DADDR                                   DPORT RET";

/// A return value as shown: "0", an errno name, or "positive".
pub fn return_label(value: i32) -> String {
    match value {
        0 => "0".into(),
        1 => "positive".into(),
        v => format!("{:?}", nix::errno::Errno::from_raw(-v)),
    }
}

struct Traced<'obj> {
    function: String,
    skel: KprobeSkel<'obj>,
    links: Vec<Link>,
}

struct KprobeProbe<'obj> {
    traced: Vec<Traced<'obj>>,
    backend: Backend,
    settings: Settings,
    ring: Option<RingBuffer<'static>>,
    pending: Rc<RefCell<Vec<ConnectEvent>>>,
    json: bool,
    out: BufWriter<io::Stdout>,
    header_printed: bool,
    attached_at: Instant,
    last: (Instant, Vec<u64>),
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
        let events: Vec<ConnectEvent> = self.pending.borrow_mut().drain(..).collect();
        for ev in events {
            if self.json {
                serde_json::to_writer(&mut self.out, &ev.json())?;
                self.out.write_all(b"\n")?;
            } else {
                if !self.header_printed {
                    writeln!(self.out, "{CONNECT_HEADER}")?;
                    self.header_printed = true;
                }
                writeln!(self.out, "{}", ev.line())?;
            }
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
                        .then(|| output::latency_buckets(&stats.latency)),
                },
            ));
        }
        self.last = (now, calls_now);
        Ok(Snapshot {
            source: Source::Kprobe {
                backend: self.backend.as_str(),
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
        // Events already in the ring buffer are printed before the links go.
        let _ = self.on_readable();
        for t in &mut self.traced {
            t.links.clear();
        }
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
    let list = traceable_functions()?;
    let functions = expand(&args.functions, &list)?;
    privilege::require("netprobe kprobe", privilege::CAP_PERFMON, "CAP_PERFMON")?;
    let needs_exit_data = args.ret || args.latency;
    let backend = choose_backend(args.backend, &functions, needs_exit_data)?;
    let settings = Settings {
        backend,
        want_ret: args.ret,
        want_latency: args.latency,
        filter_pid: args.pid.unwrap_or(0),
        filter_uid: args.uid,
        filter_port: args.port.unwrap_or(0),
    };

    // Event lines own stdout; then the counters go to stderr at the end.
    let has_events = functions.iter().any(|f| connect_family(f).is_some());
    let events_as_lines = has_events && !args.output.json;
    // Signals are blocked before any thread starts, so every thread inherits it.
    let mut runloop = RunLoop::new(args.output.interval)?;
    let reporting = Reporting::new(&args.output, !events_as_lines, events_as_lines)?;
    let mut storages: Vec<Box<MaybeUninit<OpenObject>>> = functions
        .iter()
        .map(|_| Box::new(MaybeUninit::uninit()))
        .collect();
    let mut traced = Vec::new();
    for (storage, function) in storages.iter_mut().zip(&functions) {
        let skel = open_and_load(storage, function, &settings)?;
        traced.push(Traced {
            function: function.clone(),
            skel,
            links: Vec::new(),
        });
    }
    // Attach all or nothing: links made so far are dropped on the first error.
    for t in &mut traced {
        t.links = attach(&t.skel, &t.function, &settings)
            .with_context(|| format!("attaching to {}", t.function))?;
    }
    let pending = Rc::new(RefCell::new(Vec::new()));
    let connect: Vec<&Traced<'_>> = traced
        .iter()
        .filter(|t| connect_family(&t.function).is_some())
        .collect();
    let ring = if connect.is_empty() {
        None
    } else {
        let mut builder = RingBufferBuilder::new();
        for t in &connect {
            let sink = Rc::clone(&pending);
            builder.add(&t.skel.maps.events, move |data: &[u8]| {
                if let Ok(ev) = plain::from_bytes::<ConnectEvent>(data) {
                    sink.borrow_mut().push(*ev);
                }
                0
            })?;
        }
        Some(builder.build().context("setting up the ring buffer")?)
    };
    eprintln!(
        "netprobe: {} backend attached to {}; Ctrl-C to stop",
        backend,
        functions.join(", ")
    );
    let attached_at = Instant::now();
    let mut probe = KprobeProbe {
        traced,
        backend,
        settings,
        ring,
        pending,
        json: args.output.json,
        out: BufWriter::new(io::stdout()),
        header_printed: false,
        attached_at,
        last: (attached_at, vec![0; functions.len()]),
    };
    session::run(&mut probe, &mut runloop, reporting, args.output.duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("tcp_v4_*", "tcp_v4_connect"));
        assert!(glob_match("tcp_v?_connect", "tcp_v6_connect"));
        assert!(glob_match("*connect", "tcp_v4_connect"));
        assert!(!glob_match("tcp_v4_*", "tcp_v6_connect"));
        assert!(glob_match("*", "x"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }

    #[test]
    fn kallsyms_keeps_text_symbols_without_clones() {
        let text = "ffffffff81000000 T _text\nffffffff81001000 t tcp_v4_connect\nffffffff81002000 t foo.isra.0\n\
                    ffffffff81003000 D some_data\nffffffff81004000 T tcp_v6_connect\t[ipv6]\n";
        let names = parse_kallsyms(text);
        assert!(
            names.contains("tcp_v4_connect")
                && names.contains("tcp_v6_connect")
                && names.contains("_text")
        );
        assert!(!names.contains("foo.isra.0") && !names.contains("some_data"));
    }

    #[test]
    fn expansion_limits_and_errors() {
        let list = FunctionList {
            names: (0..40)
                .map(|i| format!("f{i:02}"))
                .chain(["tcp_v4_connect".to_string()])
                .collect(),
            source: "test",
        };
        assert_eq!(
            expand(&["tcp_v4_connect".into()], &list).unwrap(),
            vec!["tcp_v4_connect"]
        );
        assert_eq!(
            expand(&["f0?".into(), "f01".into()], &list).unwrap().len(),
            10
        );
        let e = expand(&["f*".into()], &list).unwrap_err().to_string();
        assert!(e.contains("at most 32"), "{e}");
        let e = expand(&["nosuch_fn".into()], &list)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no traceable kernel function 'nosuch_fn'"),
            "{e}"
        );
    }

    #[test]
    fn connect_event_layout_matches_netprobe_h() {
        // struct np_connect_event: 84 bytes of fields, padded to 8.
        assert_eq!(std::mem::size_of::<ConnectEvent>(), 88);
    }

    #[test]
    fn return_labels() {
        assert_eq!(return_label(0), "0");
        assert_eq!(return_label(-111), "ECONNREFUSED");
        assert_eq!(return_label(1), "positive");
    }
}
