//! What this process may do, read from its effective capability set, and
//! the exact set each command needs, checked before anything is loaded.
use std::fs;

use anyhow::{bail, Context, Result};

/// A capability by number and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub bit: u32,
    pub name: &'static str,
}

impl Cap {
    const fn new(bit: u32, name: &'static str) -> Cap {
        Cap { bit, name }
    }
}

pub const CAP_NET_ADMIN: Cap = Cap::new(12, "CAP_NET_ADMIN");
pub const CAP_NET_RAW: Cap = Cap::new(13, "CAP_NET_RAW");
pub const CAP_SYS_ADMIN: Cap = Cap::new(21, "CAP_SYS_ADMIN");
pub const CAP_SYS_RESOURCE: Cap = Cap::new(24, "CAP_SYS_RESOURCE");
pub const CAP_PERFMON: Cap = Cap::new(38, "CAP_PERFMON");
pub const CAP_BPF: Cap = Cap::new(39, "CAP_BPF");

/// Loading any of netprobe's programs: CAP_BPF, and CAP_PERFMON because
/// the verifier refuses pointer arithmetic on packet and stack pointers to
/// a loader without it.
pub const LOAD: [Cap; 2] = [CAP_BPF, CAP_PERFMON];
/// `netprobe xdp`: load, and attach to an interface.
pub const XDP: [Cap; 3] = [CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN];
/// `netprobe sockfilter`: load, and open an AF_PACKET socket.
pub const SOCKFILTER: [Cap; 3] = [CAP_BPF, CAP_PERFMON, CAP_NET_RAW];
/// `netprobe kprobe`: load, and attach kprobes, fentry or tracepoints.
pub const KPROBE: [Cap; 2] = LOAD;
/// `netprobe xdp --cost`: the kernel's BPF run-time statistics
/// (BPF_ENABLE_STATS) need CAP_SYS_ADMIN, which also stands in for CAP_BPF
/// and CAP_PERFMON.
pub const XDP_COST: [Cap; 2] = [CAP_NET_ADMIN, CAP_SYS_ADMIN];

/// The effective capability mask of this process (`CapEff` in /proc/self/status).
pub fn effective_caps() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    parse_cap_eff(&status).context("no CapEff line in /proc/self/status")
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub fn has_cap(caps: u64, cap: Cap) -> bool {
    caps & (1 << cap.bit) != 0
}

/// Whether `caps` grants what `cap` allows: the kernel lets CAP_SYS_ADMIN
/// stand in for CAP_BPF and CAP_PERFMON.
fn grants(caps: u64, cap: Cap) -> bool {
    has_cap(caps, cap) || ((cap == CAP_BPF || cap == CAP_PERFMON) && has_cap(caps, CAP_SYS_ADMIN))
}

/// `A, B and C`.
fn names(caps: &[Cap]) -> String {
    let names: Vec<&str> = caps.iter().map(|c| c.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// Which of `needed` the capability mask `caps` lacks.
fn missing(caps: u64, needed: &[Cap]) -> Vec<Cap> {
    needed
        .iter()
        .copied()
        .filter(|&c| !grants(caps, c))
        .collect()
}

/// Fails with one line naming what is missing unless this process holds
/// every capability in `needed` (`what` names the command or option).
pub fn require(what: &str, needed: &[Cap]) -> Result<()> {
    let lacking = missing(effective_caps()?, needed);
    if !lacking.is_empty() {
        bail!(
            "permission denied: {what} needs {}, and this process lacks {}; run it as root \
             or grant exactly those",
            names(needed),
            names(&lacking)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapPrm:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let caps = parse_cap_eff(status).unwrap();
        assert!(has_cap(caps, CAP_BPF));
        assert!(has_cap(caps, CAP_NET_ADMIN));
        assert!(!has_cap(0x1000, CAP_BPF));
        assert!(has_cap(0x1000, CAP_NET_ADMIN));
        assert_eq!(parse_cap_eff("CapPrm:\t0\n"), None);
    }

    #[test]
    fn names_what_is_missing() {
        let mask = |caps: &[Cap]| caps.iter().fold(0u64, |m, c| m | 1 << c.bit);
        assert!(missing(mask(&XDP), &XDP).is_empty());
        assert_eq!(
            missing(mask(&[CAP_BPF, CAP_NET_ADMIN]), &XDP),
            vec![CAP_PERFMON]
        );
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, not CAP_NET_RAW.
        assert_eq!(
            missing(mask(&[CAP_SYS_ADMIN]), &SOCKFILTER),
            vec![CAP_NET_RAW]
        );
        assert_eq!(names(&XDP), "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN");
        assert_eq!(names(&XDP_COST), "CAP_NET_ADMIN and CAP_SYS_ADMIN");
    }
}
