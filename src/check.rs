//! `netprobe check` and `netprobe list`: what this kernel offers netprobe,
//! each answer with how it was found, and what there is to attach to.
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{CheckArgs, ListArgs};
use crate::kprobe;
use crate::privilege;

/// A value from the kernel's build configuration (/proc/config.gz), if readable.
pub fn kernel_config_value(name: &str) -> Option<String> {
    let raw = fs::read("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate_decode(&raw, &mut text)?;
    let prefix = format!("{name}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .or_else(|| {
            text.lines()
                .any(|l| l == format!("# {name} is not set"))
                .then(|| "n".to_string())
        })
}

/// Decompresses gzip with the system's zcat; netprobe carries no inflater.
fn flate_decode(raw: &[u8], out: &mut String) -> Option<()> {
    let mut child = std::process::Command::new("zcat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = raw.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    child.stdout.take()?.read_to_string(out).ok()?;
    writer.join().ok()?.ok()?;
    child.wait().ok()?.success().then_some(())
}

/// What the netdev generic-netlink family says each interface's driver
/// supports in XDP (kernel 6.3 and later): ifindex -> NETDEV_XDP_ACT_* bits.
pub fn xdp_features() -> Option<HashMap<u32, u64>> {
    netlink::dump_xdp_features().ok()
}

mod netlink {
    //! Just enough generic netlink to ask the "netdev" family for every
    //! device's XDP feature bits. Read-only; nothing is attached to find out.
    use std::collections::HashMap;
    use std::io;

    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const GENL_ID_CTRL: u16 = 0x10;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const NETDEV_CMD_DEV_GET: u8 = 1;
    const NETDEV_A_DEV_IFINDEX: u16 = 1;
    const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;

    struct Socket(i32);

    impl Drop for Socket {
        fn drop(&mut self) {
            // SAFETY: closing the fd we opened.
            unsafe { libc::close(self.0) };
        }
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len();
        let mut a = Vec::with_capacity((len + 3) & !3);
        a.extend_from_slice(&(len as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize((len + 3) & !3, 0);
        a
    }

    fn request(
        sock: &Socket,
        family: u16,
        flags: u16,
        cmd: u8,
        attrs: &[u8],
    ) -> io::Result<Vec<Vec<u8>>> {
        let len = 16 + 4 + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&family.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // pid
        msg.extend_from_slice(&[cmd, 1, 0, 0]); // genl header: cmd, version
        msg.extend_from_slice(attrs);
        // SAFETY: sending our buffer on our socket.
        if unsafe { libc::send(sock.0, msg.as_ptr().cast(), msg.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: receiving into our buffer.
            let n = unsafe { libc::recv(sock.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut at = 0;
            let n = n as usize;
            while at + 16 <= n {
                let mlen = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
                if mlen < 16 || at + mlen > n {
                    return Err(io::Error::other("bad netlink message"));
                }
                match kind {
                    NLMSG_DONE => return Ok(replies),
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(replies);
                    }
                    _ => replies.push(buf[at + 20..at + mlen].to_vec()),
                }
                at += (mlen + 3) & !3;
            }
            if flags & NLM_F_DUMP == 0 {
                return Ok(replies);
            }
        }
    }

    fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 4 {
            let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
            let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
            if len < 4 || len > b.len() {
                break;
            }
            out.push((kind, &b[4..len]));
            b = &b[((len + 3) & !3).min(b.len())..];
        }
        out
    }

    pub fn dump_xdp_features() -> io::Result<HashMap<u32, u64>> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = Socket(fd);
        let family = request(
            &sock,
            GENL_ID_CTRL,
            0,
            CTRL_CMD_GETFAMILY,
            &attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
        )?
        .iter()
        .flat_map(|m| {
            attrs(m)
                .into_iter()
                .map(|(k, v)| (k, v.to_vec()))
                .collect::<Vec<_>>()
        })
        .find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
        .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
        .ok_or_else(|| io::Error::other("no netdev family"))?;
        let mut out = HashMap::new();
        for msg in request(&sock, family, NLM_F_DUMP, NETDEV_CMD_DEV_GET, &[])? {
            let (mut ifindex, mut features) = (None, 0u64);
            for (kind, v) in attrs(&msg) {
                match kind {
                    NETDEV_A_DEV_IFINDEX if v.len() >= 4 => {
                        ifindex = Some(u32::from_ne_bytes(v[..4].try_into().unwrap()))
                    }
                    NETDEV_A_DEV_XDP_FEATURES if v.len() >= 8 => {
                        features = u64::from_ne_bytes(v[..8].try_into().unwrap())
                    }
                    _ => {}
                }
            }
            if let Some(i) = ifindex {
                out.insert(i, features);
            }
        }
        Ok(out)
    }
}

/// NETDEV_XDP_ACT_BASIC: the driver runs XDP programs itself.
const XDP_ACT_BASIC: u64 = 1;

#[derive(Serialize)]
struct InterfaceModes {
    name: String,
    ifindex: u32,
    native: Option<bool>,
    skb: bool,
}

fn interfaces() -> Vec<InterfaceModes> {
    let features = xdp_features();
    let mut out: Vec<InterfaceModes> = nix::net::if_::if_nameindex()
        .map(|list| {
            list.iter()
                .map(|i| {
                    let ifindex = i.index();
                    InterfaceModes {
                        name: i.name().to_string_lossy().into_owned(),
                        ifindex,
                        native: features
                            .as_ref()
                            .map(|f| f.get(&ifindex).is_some_and(|b| b & XDP_ACT_BASIC != 0)),
                        skb: true,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|i| i.ifindex);
    out
}

fn modes_text(i: &InterfaceModes) -> String {
    match i.native {
        Some(true) => "native, skb".into(),
        Some(false) => "skb".into(),
        None => "skb (native: unknown, kernel < 6.3 does not report it)".into(),
    }
}

/// Raw tracepoints in kernel BTF (`btf_trace_<name>`) about networking.
fn network_tracepoints() -> Vec<String> {
    const NET: [&str; 16] = [
        "sock_",
        "inet_",
        "tcp_",
        "udp_",
        "net_",
        "netif_",
        "napi_",
        "skb_",
        "kfree_skb",
        "consume_skb",
        "xdp_",
        "neigh_",
        "fib",
        "qdisc_",
        "icmp",
        "page_pool",
    ];
    let Ok(btf) = libbpf_rs::btf::Btf::from_vmlinux() else {
        return Vec::new();
    };
    let mut names: Vec<String> = btf
        .type_by_kind::<libbpf_rs::btf::types::Typedef<'_>>()
        .filter_map(|t| {
            t.name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("btf_trace_"))
                .map(str::to_string)
        })
        .filter(|n| NET.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    names
}

fn matches(pattern: Option<&str>, name: &str) -> bool {
    match pattern {
        None => true,
        Some(p) if p.contains(['*', '?']) => kprobe::glob_match(p, name),
        Some(p) => name.contains(p),
    }
}

pub fn list(args: &ListArgs) -> Result<()> {
    let pattern = args.pattern.as_deref();
    let functions = kprobe::traceable_functions()?;
    let mut out = String::new();
    let names: Vec<&String> = functions
        .names
        .iter()
        .filter(|n| matches(pattern, n))
        .collect();
    out += &format!(
        "Kernel functions ({} from {}):\n",
        names.len(),
        functions.source
    );
    for n in names {
        out += &format!("  {n}\n");
    }
    let tracepoints: Vec<String> = network_tracepoints()
        .into_iter()
        .filter(|n| matches(pattern, n))
        .collect();
    out += &format!(
        "\nNetwork tracepoints ({} from kernel BTF):\n",
        tracepoints.len()
    );
    for t in tracepoints {
        out += &format!("  {t}\n");
    }
    let ifaces: Vec<InterfaceModes> = interfaces()
        .into_iter()
        .filter(|i| matches(pattern, &i.name))
        .collect();
    out += &format!(
        "\nInterfaces ({}), with the XDP modes each supports:\n",
        ifaces.len()
    );
    for i in &ifaces {
        out += &format!("  {:<16} {}\n", i.name, modes_text(i));
    }
    print!("{out}");
    Ok(())
}

#[derive(Serialize)]
struct Finding {
    what: &'static str,
    available: Option<bool>,
    detail: String,
    how: String,
}

fn finding(
    what: &'static str,
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
        detail,
        how: how.into(),
    }
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
        detail: release,
        how: "uname(2)".into(),
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    findings.push(finding(
        "BTF",
        if btf.exists() {
            Ok("kernel BTF present (CO-RE works)".into())
        } else {
            Err("no kernel BTF".into())
        },
        "/sys/kernel/btf/vmlinux exists",
    ));
    findings.push(finding(
        "kprobes",
        kprobe::kprobe_support()
            .map(|()| "kprobe and kretprobe attach".into())
            .map_err(|e| format!("this kernel {e}")),
        "kprobe PMU in /sys/bus/event_source/devices; CONFIG_KPROBES in /proc/config.gz",
    ));
    findings.push(finding(
        "fentry",
        kprobe::fentry_support("tcp_v4_connect")
            .map(|()| "fentry and fexit load".into())
            .map_err(|e| format!("this kernel {e}")),
        "loaded an fentry program on tcp_v4_connect",
    ));
    let tp = network_tracepoints()
        .iter()
        .any(|t| t == "inet_sock_set_state");
    findings.push(finding(
        "tracepoint sock:inet_sock_set_state",
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
            detail: format!("{}: {}", i.name, modes_text(&i)),
            how: if features.is_some() {
                "netdev netlink family (XDP feature bits)".into()
            } else {
                "netdev netlink family absent".into()
            },
        });
    }
    findings.push(finding(
        "bpffs",
        mounted("bpf")
            .map(|at| format!("mounted at {at}"))
            .ok_or_else(|| "not mounted (netprobe pins nothing and does not need it)".into()),
        "/proc/mounts",
    ));
    let lockdown = fs::read_to_string("/sys/kernel/security/lockdown").ok();
    findings.push(Finding {
        what: "lockdown",
        available: None,
        detail: lockdown
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "unknown (securityfs is not mounted)".into()),
        how: "/sys/kernel/security/lockdown".into(),
    });
    let caps = privilege::effective_caps().context("reading capabilities")?;
    let held: Vec<&str> = [
        (privilege::CAP_BPF, "CAP_BPF"),
        (privilege::CAP_PERFMON, "CAP_PERFMON"),
        (privilege::CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (privilege::CAP_NET_RAW, "CAP_NET_RAW"),
        (privilege::CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (privilege::CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
    ]
    .iter()
    .filter(|(c, _)| privilege::has_cap(caps, *c))
    .map(|(_, n)| *n)
    .collect();
    findings.push(Finding {
        what: "capabilities",
        available: None,
        detail: if held.is_empty() {
            "none of the ones netprobe uses".into()
        } else {
            held.join(" ")
        },
        how: "CapEff in /proc/self/status".into(),
    });
    if args.json {
        println!("{}", serde_json::json!({ "check": findings }));
    } else {
        println!("{:<36} {:<5} {:<60} HOW", "WHAT", "OK", "DETAIL");
        for f in &findings {
            let ok = match f.available {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            };
            println!("{:<36} {:<5} {:<60} {}", f.what, ok, f.detail, f.how);
        }
    }
    Ok(())
}
