//! Mirrors of `src/bpf/kprobe.bpf.c`'s per-function counters and connect
//! events, and how an event is shown: a tcpconnect-style line or JSON.
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

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
pub struct ConnectJson {
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

    /// The event as JSON; `boot` is the wall time the monotonic clock
    /// (bpf_ktime_get_ns) counts from.
    pub fn json(&self, boot: SystemTime) -> ConnectJson {
        ConnectJson {
            event: "connect",
            time: humantime::format_rfc3339_micros(boot + Duration::from_nanos(self.ts_ns))
                .to_string(),
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
    pub fn line(&self) -> String {
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

pub const CONNECT_HEADER: &str = "PID     COMM             IP SADDR                                   DADDR                                   DPORT RET";

/// A return value as shown: "0", an errno name, or "positive".
pub fn return_label(value: i32) -> String {
    match value {
        0 => "0".into(),
        1 => "positive".into(),
        v => format!("{:?}", nix::errno::Errno::from_raw(-v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
