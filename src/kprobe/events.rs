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

/// What every event says first: what it is, when, and who caused it.
#[derive(Serialize)]
pub struct Caller {
    event: String,
    time: String,
    pid: u32,
    tid: u32,
    comm: String,
    uid: u32,
}

/// A connect event as a JSON line.
#[derive(Serialize)]
pub struct ConnectJson {
    #[serde(flatten)]
    caller: Caller,
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

    /// The event's `event` name and its caller; `boot` is the wall time
    /// the monotonic clock (bpf_ktime_get_ns) counts from.
    fn caller(&self, event: &str, boot: SystemTime) -> Caller {
        Caller {
            event: event.to_string(),
            time: humantime::format_rfc3339_micros(boot + Duration::from_nanos(self.ts_ns))
                .to_string(),
            pid: self.pid,
            tid: self.tid,
            comm: self.comm(),
            uid: self.uid,
        }
    }

    /// The event as JSON; see [`ConnectEvent::caller`] for `boot`.
    pub fn json(&self, boot: SystemTime) -> ConnectJson {
        ConnectJson {
            caller: self.caller("connect", boot),
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

/// How a tracepoint with a flow lays out its arguments (`NP_FLOW_*` in
/// kprobe.bpf.c), which says what an event's detail holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Sock = 1,
    SockSkb = 2,
    State = 3,
    SkbDrop = 4,
}

/// TCP states by number (`include/net/tcp_states.h`).
const TCP_STATES: [&str; 13] = [
    "?",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];

fn tcp_state(n: i32) -> String {
    usize::try_from(n)
        .ok()
        .and_then(|i| TCP_STATES.get(i))
        .map_or_else(|| n.to_string(), |s| s.to_string())
}

/// A flow event (a tracepoint with a socket or a packet) as a JSON line.
#[derive(Serialize)]
pub struct FlowJson {
    #[serde(flatten)]
    caller: Caller,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saddr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    daddr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dport: Option<u16>,
    netns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    newstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl ConnectEvent {
    /// Whether the event names a flow: a socket or a packet of IPv4 or IPv6.
    fn has_flow(&self) -> bool {
        matches!(self.family, 2 | 10)
    }

    /// The tracepoint's own detail: TCP states, or the drop reason named by
    /// `reasons` (the kernel's `enum skb_drop_reason`).
    fn detail(
        &self,
        flow: Flow,
        reasons: &dyn Fn(i32) -> String,
    ) -> (Option<String>, Option<String>, Option<String>) {
        match flow {
            Flow::State => (
                Some(tcp_state(self.ret >> 8)),
                Some(tcp_state(self.ret & 0xff)),
                None,
            ),
            Flow::SkbDrop => (None, None, Some(reasons(self.ret))),
            Flow::Sock | Flow::SockSkb => (None, None, None),
        }
    }

    /// A flow event from `tracepoint` as JSON.
    pub fn flow_json(
        &self,
        tracepoint: &str,
        flow: Flow,
        boot: SystemTime,
        reasons: &dyn Fn(i32) -> String,
    ) -> FlowJson {
        let flowing = self.has_flow();
        let (oldstate, newstate, reason) = self.detail(flow, reasons);
        FlowJson {
            caller: self.caller(tracepoint, boot),
            ip: flowing.then_some(if self.family == 10 { 6 } else { 4 }),
            saddr: flowing.then(|| ip_of(self.family, &self.saddr).to_string()),
            daddr: flowing.then(|| ip_of(self.family, &self.daddr).to_string()),
            sport: (flowing && self.sport != 0).then_some(self.sport),
            dport: (flowing && self.dport != 0).then_some(self.dport),
            netns: self.netns,
            oldstate,
            newstate,
            reason,
        }
    }

    /// A flow event as a line: TRACEPOINT PID COMM SADDR.SPORT > DADDR.DPORT DETAIL.
    pub fn flow_line(
        &self,
        tracepoint: &str,
        flow: Flow,
        reasons: &dyn Fn(i32) -> String,
    ) -> String {
        let side = |addr: &[u8; 16], port: u16| {
            let ip = ip_of(self.family, addr);
            if port == 0 {
                ip.to_string()
            } else {
                format!("{ip}.{port}")
            }
        };
        let endpoints = if self.has_flow() {
            format!(
                "{} > {}",
                side(&self.saddr, self.sport),
                side(&self.daddr, self.dport)
            )
        } else {
            "-".into()
        };
        let detail = match self.detail(flow, reasons) {
            (Some(old), Some(new), _) => format!(" {old} -> {new}"),
            (_, _, Some(reason)) => format!(" reason {reason}"),
            _ => String::new(),
        };
        format!(
            "{tracepoint:<22} {:<7} {:<16} {endpoints}{detail}",
            self.pid,
            self.comm()
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
    fn flow_events_read_as_tcpdump_and_ss_would() {
        let mut ev = ConnectEvent {
            family: 2,
            sport: 40000,
            dport: 9,
            ret: (2 << 8) | 7,
            ..Default::default()
        };
        ev.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ev.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ev.comm[..2].copy_from_slice(b"nc");
        let reasons = |r: i32| format!("R{r}");
        let line = ev.flow_line("inet_sock_set_state", Flow::State, &reasons);
        assert!(
            line.ends_with("127.0.0.1.40000 > 127.0.0.1.9 SYN_SENT -> CLOSE"),
            "{line}"
        );
        let json = |ev: &ConnectEvent, tp: &str, flow: Flow| {
            serde_json::to_value(ev.flow_json(tp, flow, SystemTime::UNIX_EPOCH, &reasons)).unwrap()
        };
        let v = json(&ev, "inet_sock_set_state", Flow::State);
        assert_eq!(v["oldstate"], "SYN_SENT");
        assert_eq!(v["newstate"], "CLOSE");
        assert_eq!(v["dport"], 9);
        ev.ret = 2;
        let v = json(&ev, "kfree_skb", Flow::SkbDrop);
        assert_eq!(v["reason"], "R2");
        assert!(v.get("oldstate").is_none());
        // No flow (a packet that is not IP): no addresses.
        ev.family = 0;
        let v = json(&ev, "kfree_skb", Flow::SkbDrop);
        assert!(v.get("saddr").is_none());
    }

    #[test]
    fn return_labels() {
        assert_eq!(return_label(0), "0");
        assert_eq!(return_label(-111), "ECONNREFUSED");
        assert_eq!(return_label(1), "positive");
    }
}
