//! The three ways to attach to a kernel function (kprobe, fentry, the
//! connect tracepoint): loading one program instance per function with only
//! the chosen backend's programs, attaching it, and picking the backend.
use std::fmt;
use std::mem::MaybeUninit;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};

use super::events::Flow;
use super::targets::connect_family;
use crate::cli::BackendArg;
use crate::console;
use crate::error::{one_line, UsageError};
use crate::kernel::features::kprobe_support;
use crate::skel::kprobe::{KprobeSkel, KprobeSkelBuilder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Kprobe,
    Fentry,
    Tracepoint,
    /// `tp:NAME`: a raw tracepoint, calls only.
    RawTracepoint,
    /// `tp:NAME` for a tracepoint with a flow: BTF-typed, calls and events.
    BtfTracepoint,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Kprobe => "kprobe",
            Backend::Fentry => "fentry",
            Backend::Tracepoint => "tracepoint",
            Backend::RawTracepoint => "raw_tp",
            Backend::BtfTracepoint => "tp_btf",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether this kernel loads an fentry program on `function`.
pub fn fentry_support(function: &str) -> std::result::Result<(), String> {
    let mut storage = MaybeUninit::uninit();
    let settings = Settings {
        backend: Backend::Fentry,
        ..Settings::default()
    };
    let loaded = open_and_load(&mut storage, function, &settings).map(drop);
    loaded.map_err(|e| format!("refused fentry: {}", one_line(&e.root_cause().to_string())))
}

/// Bytes of a connect function's event ring: about 87,000 events, 0.75 s
/// of two processes connecting flat out here, for a reader held up by a
/// busy machine.
const EVENT_RING: u32 = 8 << 20;

/// What each program instance is loaded with.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub backend: Backend,
    pub want_ret: bool,
    pub want_latency: bool,
    pub filter_pid: u32,
    pub filter_uid: Option<u32>,
    pub filter_port: u16,
    /// For a tracepoint with a flow, its argument layout.
    pub flow: Option<Flow>,
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
            flow: None,
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
    let family = connect_family(function)
        .filter(|_| !matches!(s.backend, Backend::RawTracepoint | Backend::BtfTracepoint));
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
    // A connect function's ring holds bursts between drains; others emit
    // nothing and keep the smallest ring.
    let ring = if family.is_some() || s.flow.is_some() {
        EVENT_RING
    } else {
        4096
    };
    rodata.flow_events = s.flow.map_or(0, |f| f as u8);
    rodata.wakeup_bytes = u64::from(ring / 2);
    open.maps.events.set_max_entries(ring)?;
    let exits = s.want_ret || s.want_latency || family.is_some();
    let progs = &mut open.progs;
    let kprobe = s.backend == Backend::Kprobe;
    let fentry = s.backend == Backend::Fentry;
    progs.kprobe_entry.set_autoload(kprobe);
    progs.kretprobe_exit.set_autoload(kprobe && exits);
    progs.fentry_entry.set_autoload(fentry);
    progs.fexit_exit.set_autoload(fentry && exits);
    progs
        .tp_set_state
        .set_autoload(s.backend == Backend::Tracepoint);
    progs
        .raw_tp_count
        .set_autoload(s.backend == Backend::RawTracepoint);
    progs
        .tp_flow
        .set_autoload(s.backend == Backend::BtfTracepoint);
    if s.backend == Backend::BtfTracepoint {
        progs
            .tp_flow
            .set_attach_target(0, Some(function.to_string()))?;
    }
    if fentry {
        for prog in [&mut progs.fentry_entry, &mut progs.fexit_exit] {
            prog.set_attach_target(0, Some(function.to_string()))?;
        }
    }
    open.load()
        .with_context(|| format!("loading the {} programs for {function}", s.backend))
}

pub fn attach(skel: &KprobeSkel<'_>, function: &str, s: &Settings) -> Result<Vec<Link>> {
    let exits = s.want_ret
        || s.want_latency
        || connect_family(function).is_some()
            && !matches!(s.backend, Backend::RawTracepoint | Backend::BtfTracepoint);
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
        Backend::RawTracepoint => vec![p.raw_tp_count.attach_raw_tracepoint(function)?],
        Backend::BtfTracepoint => vec![p.tp_flow.attach_trace()?],
    };
    Ok(links)
}

/// Picks the backend and says, in one line, why if it is not the best one.
pub fn choose_backend(
    arg: BackendArg,
    functions: &[String],
    needs_exit_data: bool,
) -> Result<Backend> {
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
            .map_err(|why| anyhow!("kprobe backend: this kernel {why}")),
        BackendArg::Fentry => fentry_support(&functions[0])
            .map(|()| Backend::Fentry)
            .map_err(|why| anyhow!("fentry backend: this kernel {why}")),
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
                console::note(format!("using the kprobe backend: this kernel {why_not}"));
                return Ok(Backend::Kprobe);
            }
            if all_connect && !needs_exit_data {
                console::note(format!(
                    "using the tracepoint backend (sock:inet_sock_set_state): this kernel {why_not}; \
                     it gives no return values and no source port before the kernel picks one"
                ));
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
