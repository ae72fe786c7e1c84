//! `netprobe check` and `netprobe list`: what this kernel offers netprobe,
//! each answer with how it was found, and what there is to attach to.
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{CheckArgs, ListArgs};
use crate::console;
use crate::kernel::features::kprobe_support;
use crate::kernel::netdev::{interfaces, InterfaceModes};
use crate::kernel::netlink::xdp_features;
use crate::kernel::privilege;
use crate::kernel::symbols::{glob_match, network_tracepoints, traceable_functions, tracepoints};
use crate::kprobe::{connect_family, fentry_support, flow_events, Target, TRACEPOINT};

fn matches(pattern: Option<&str>, name: &str) -> bool {
    match pattern {
        None => true,
        Some(p) if p.contains(['*', '?']) => glob_match(p, name),
        Some(p) => name.contains(p),
    }
}

/// How `netprobe kprobe` would attach to each function on this kernel: the
/// best backend that loads here, or none.
fn function_backend() -> Option<&'static str> {
    if fentry_support("tcp_v4_connect").is_ok() {
        Some("fentry")
    } else if kprobe_support().is_ok() {
        Some("kprobe")
    } else {
        None
    }
}

pub fn list(args: &ListArgs) -> Result<()> {
    let pattern = args.pattern.as_deref();
    let functions = traceable_functions()?;
    let backend = function_backend();
    let mut out = String::new();
    let names: Vec<(&String, Option<&str>)> = functions
        .names
        .iter()
        .filter(|n| matches(pattern, n))
        .map(|n| {
            // Connects have the tracepoint backend where nothing else loads.
            let how = backend.or(connect_family(n).map(|_| "tracepoint"));
            (n, how)
        })
        .filter(|(_, how)| how.is_some() || !args.attachable)
        .collect();
    out += &format!(
        "Kernel functions ({} from {}), and how netprobe kprobe attaches to each here:\n",
        names.len(),
        functions.source
    );
    for (n, how) in names {
        out += &format!("  {n:<40} {}\n", how.unwrap_or("not attachable here"));
    }
    // Without a pattern, the ones about networking; with one, every match.
    let tracepoints: Vec<String> = match pattern {
        None => network_tracepoints(),
        Some(p) => tracepoints()
            .into_iter()
            .filter(|n| matches(Some(p.strip_prefix(TRACEPOINT).unwrap_or(p)), n))
            .collect(),
    };
    out += &format!(
        "\nTracepoints ({} from kernel BTF{}), as netprobe kprobe names them; raw_tp counts calls, tp_btf also gives an event with the flow:\n",
        tracepoints.len(),
        if pattern.is_none() { ", about networking" } else { "" }
    );
    for t in tracepoints {
        let how = if flow_events(&Target::Tracepoint(t.clone())).is_some() {
            "tp_btf, events"
        } else {
            "raw_tp"
        };
        out += &format!("  {:<40} {how}\n", format!("{TRACEPOINT}{t}"));
    }
    if !args.attachable {
        let ifaces: Vec<InterfaceModes> = interfaces()
            .into_iter()
            .filter(|i| matches(pattern, &i.name))
            .collect();
        out += &format!(
            "\nInterfaces ({}), with the XDP modes each supports:\n",
            ifaces.len()
        );
        for i in &ifaces {
            out += &format!("  {:<16} {}\n", i.name, i.modes_text());
        }
    }
    console::print(&out)
}

/// What netprobe uses a finding for; [`INFO`] for what it only reports.
const INFO: &str = "-";

#[derive(Serialize)]
struct Finding {
    what: &'static str,
    /// Whether it is there; `None` for a plain fact.
    available: Option<bool>,
    /// What needs it ([`INFO`]: nothing, it is only informative).
    needed_by: &'static str,
    detail: String,
    how: String,
}

fn finding(
    what: &'static str,
    needed_by: &'static str,
    result: std::result::Result<String, String>,
    how: impl Into<String>,
) -> Finding {
    let (available, detail) = match result {
        Ok(d) => (Some(true), d),
        Err(d) => (Some(false), d),
    };
    Finding {
        what,
        available,
        needed_by,
        detail,
        how: how.into(),
    }
}

/// The findings as a table whose columns are as wide as their widest cell.
fn table(findings: &[Finding]) -> String {
    let rows: Vec<[&str; 5]> = findings
        .iter()
        .map(|f| {
            let ok = match f.available {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            };
            [f.what, ok, f.needed_by, &f.detail, &f.how]
        })
        .collect();
    let header = ["WHAT", "OK", "NEEDED BY", "DETAIL", "HOW"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    std::iter::once(header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

fn mounted(fstype: &str) -> Option<String> {
    fs::read_to_string("/proc/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&fstype)).then(|| f[1].to_string())
        })
}

pub fn check(args: &CheckArgs) -> Result<()> {
    let mut findings = Vec::new();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    findings.push(Finding {
        what: "kernel",
        available: None,
        needed_by: INFO,
        detail: release,
        how: "uname(2)".into(),
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    findings.push(finding(
        "BTF",
        "every program (CO-RE)",
        if btf.exists() {
            Ok("kernel BTF present (CO-RE works)".into())
        } else {
            Err("no kernel BTF".into())
        },
        "/sys/kernel/btf/vmlinux exists",
    ));
    findings.push(finding(
        "kprobes",
        "kprobe backend",
        kprobe_support()
            .map(|()| "kprobe and kretprobe attach".into())
            .map_err(|e| format!("this kernel {e}")),
        "kprobe PMU in /sys/bus/event_source/devices; CONFIG_KPROBES in /proc/config.gz",
    ));
    findings.push(finding(
        "fentry",
        "fentry backend",
        fentry_support("tcp_v4_connect")
            .map(|()| "fentry and fexit load".into())
            .map_err(|e| format!("this kernel {e}")),
        "loaded an fentry program on tcp_v4_connect",
    ));
    let tp = network_tracepoints()
        .iter()
        .any(|t| t == "inet_sock_set_state");
    findings.push(finding(
        "tracepoint sock:inet_sock_set_state",
        "tracepoint backend",
        if tp {
            Ok("present (connect events without kprobes)".into())
        } else {
            Err("absent".into())
        },
        "btf_trace_inet_sock_set_state in kernel BTF",
    ));
    // SAFETY: a probe with no options.
    let ringbuf = unsafe {
        libbpf_rs::libbpf_sys::libbpf_probe_bpf_map_type(
            libbpf_rs::libbpf_sys::BPF_MAP_TYPE_RINGBUF,
            std::ptr::null(),
        )
    };
    findings.push(finding(
        "ring buffer",
        "connect events",
        if ringbuf == 1 {
            Ok("BPF_MAP_TYPE_RINGBUF works".into())
        } else {
            Err(format!("probe returned {ringbuf}"))
        },
        "created a ring buffer map (libbpf_probe_bpf_map_type)",
    ));
    let features = xdp_features();
    for i in interfaces() {
        findings.push(Finding {
            what: "XDP",
            available: Some(true),
            needed_by: "netprobe xdp",
            detail: format!("{}: {}", i.name, i.modes_text()),
            how: if features.is_some() {
                "netdev netlink family (XDP feature bits)".into()
            } else {
                "netdev netlink family absent".into()
            },
        });
    }
    findings.push(finding(
        "bpffs",
        INFO,
        mounted("bpf")
            .map(|at| format!("mounted at {at}"))
            .ok_or_else(|| "not mounted (netprobe pins nothing)".into()),
        "/proc/mounts",
    ));
    let lockdown = fs::read_to_string("/sys/kernel/security/lockdown").ok();
    findings.push(Finding {
        what: "lockdown",
        available: None,
        needed_by: INFO,
        detail: lockdown
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "unknown (securityfs is not mounted)".into()),
        how: "/sys/kernel/security/lockdown".into(),
    });
    let caps = privilege::effective_caps().context("reading capabilities")?;
    let held: Vec<&str> = [
        privilege::CAP_BPF,
        privilege::CAP_PERFMON,
        privilege::CAP_NET_ADMIN,
        privilege::CAP_NET_RAW,
        privilege::CAP_SYS_ADMIN,
        privilege::CAP_SYS_RESOURCE,
    ]
    .iter()
    .filter(|&&c| privilege::has_cap(caps, c))
    .map(|c| c.name)
    .collect();
    findings.push(Finding {
        what: "capabilities",
        available: None,
        needed_by: "see README, Operations",
        detail: if held.is_empty() {
            "none of the ones netprobe uses".into()
        } else {
            held.join(" ")
        },
        how: "CapEff in /proc/self/status".into(),
    });
    if args.json {
        console::print(&format!("{}\n", serde_json::json!({ "check": findings })))
    } else {
        console::print(&table(&findings))
    }
}
