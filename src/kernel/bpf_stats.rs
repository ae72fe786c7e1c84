//! The kernel's own run-time statistics for BPF programs (BPF_ENABLE_STATS):
//! how long a program spends per run, measured in live traffic. Collection
//! costs a little on every run, so it is on only while the returned guard
//! lives; the kernel turns it off when the fd closes, also if netprobe dies.
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use libbpf_rs::libbpf_sys;

use super::netdev::prog_info;

pub struct RunTimeStats {
    _enabled: OwnedFd,
}

/// Total run time and run count of one program so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTotals {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl RunTotals {
    /// Average ns per run since `earlier`; falls back to the whole-life
    /// average when nothing ran in between; `None` if it never ran.
    pub fn ns_per_run_since(self, earlier: RunTotals) -> Option<f64> {
        let runs = self.run_cnt.saturating_sub(earlier.run_cnt);
        if runs > 0 {
            Some(self.run_time_ns.saturating_sub(earlier.run_time_ns) as f64 / runs as f64)
        } else if self.run_cnt > 0 {
            Some(self.run_time_ns as f64 / self.run_cnt as f64)
        } else {
            None
        }
    }
}

impl RunTimeStats {
    pub fn enable() -> Result<Self> {
        let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd))
                .context("enabling BPF run-time statistics (BPF_ENABLE_STATS) for --cost");
        }
        // SAFETY: the fd was just returned to us and nothing else owns it.
        Ok(RunTimeStats {
            _enabled: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn read(&self, prog: BorrowedFd<'_>) -> Result<RunTotals> {
        let info = prog_info(prog.as_fd())?;
        Ok(RunTotals {
            run_time_ns: info.run_time_ns,
            run_cnt: info.run_cnt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages() {
        let a = RunTotals {
            run_time_ns: 1000,
            run_cnt: 10,
        };
        let b = RunTotals {
            run_time_ns: 4000,
            run_cnt: 40,
        };
        assert_eq!(b.ns_per_run_since(a), Some(100.0));
        assert_eq!(b.ns_per_run_since(b), Some(100.0));
        assert_eq!(
            RunTotals::default().ns_per_run_since(RunTotals::default()),
            None
        );
    }
}
