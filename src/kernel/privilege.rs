//! What this process may do, read from its effective capability set.
use std::fs;

use anyhow::{bail, Context, Result};

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_RESOURCE: u32 = 24;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The effective capability mask of this process (`CapEff` in /proc/self/status).
pub fn effective_caps() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    parse_cap_eff(&status).context("no CapEff line in /proc/self/status")
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Fails with one line unless the process may load programs of a kind that
/// needs `extra` besides CAP_BPF (CAP_SYS_ADMIN covers both).
pub fn require(what: &str, extra: u32, extra_name: &str) -> Result<()> {
    let caps = effective_caps()?;
    let can_load = has_cap(caps, CAP_BPF) || has_cap(caps, CAP_SYS_ADMIN);
    let can_extra = has_cap(caps, extra) || has_cap(caps, CAP_SYS_ADMIN);
    if !(can_load && can_extra) {
        bail!("permission denied: {what} needs root (CAP_BPF and {extra_name}); run it with sudo");
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
}
