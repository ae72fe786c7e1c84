//! Throwaway test hosts: network namespaces joined by veth pairs, with names
//! unique to this process, removed when the value drops (also on panic).
#![allow(dead_code)]
use std::fs::File;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A name no other test or process here uses: `{prefix}{pid}x{n}`.
pub fn unique(prefix: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// Runs a command and panics with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ns_sh(ns: &str, args: &[&str]) -> Output {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// A network namespace that is deleted on drop, with everything in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("np");
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn sh(&self, args: &[&str]) -> Output {
        ns_sh(&self.name, args)
    }

    /// Runs a command here and returns its output, failed or not.
    pub fn sh_status(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
    }

    /// Turns IPv6 off on `iface`, so the kernel sends no neighbour or
    /// multicast listener traffic that would disturb exact counts.
    pub fn quiet(&self, iface: &str) {
        self.sh(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{iface}.disable_ipv6=1"),
        ]);
    }
}

impl Netns {
    /// The kernel's UDP counters here: (InDatagrams, NoPorts).
    pub fn udp_counters(&self) -> (u64, u64) {
        let out = self.sh(&["cat", "/proc/net/snmp"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
        let names: Vec<&str> = udp.next().expect("Udp header").split_whitespace().collect();
        let values: Vec<u64> = udp
            .next()
            .expect("Udp values")
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        let get = |name: &str| values[names.iter().position(|n| *n == name).unwrap() - 1];
        (get("InDatagrams"), get("NoPorts"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two hosts joined by a veth pair: `a.name`/`a_if` <-> `b.name`/`b_if`.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub a_if: String,
    pub b_if: String,
}

impl Pair {
    /// Both ends up, IPv6 off, no addresses: a link that carries only what a test sends.
    pub fn quiet() -> Pair {
        let (a, b) = (Netns::new(), Netns::new());
        let a_if = unique("va");
        let b_if = unique("vb");
        link_veth(&a, &a_if, &b, &b_if);
        a.quiet(&a_if);
        b.quiet(&b_if);
        Pair { a, b, a_if, b_if }
    }

    /// As `quiet`, plus addresses 198.18.0.1/24 on A and 198.18.0.2/24 on B,
    /// and permanent neighbour entries, so that no ARP crosses the link.
    pub fn addressed() -> Pair {
        let p = Pair::quiet();
        p.a.sh(&["ip", "addr", "add", "198.18.0.1/24", "dev", &p.a_if]);
        p.b.sh(&["ip", "addr", "add", "198.18.0.2/24", "dev", &p.b_if]);
        p.a.sh(&[
            "ip",
            "neigh",
            "add",
            "198.18.0.2",
            "lladdr",
            "02:00:00:00:00:0b",
            "dev",
            &p.a_if,
            "nud",
            "permanent",
        ]);
        p.b.sh(&[
            "ip",
            "neigh",
            "add",
            "198.18.0.1",
            "lladdr",
            "02:00:00:00:00:0a",
            "dev",
            &p.b_if,
            "nud",
            "permanent",
        ]);
        p
    }
}

/// Creates a veth pair with one end in each namespace, both up, with the
/// MACs the frame builder uses (A's end 02::0a, B's end 02::0b).
pub fn link_veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    sh(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        &a.name,
        "address",
        "02:00:00:00:00:0a",
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        &b.name,
        "address",
        "02:00:00:00:00:0b",
    ]);
    a.sh(&["ip", "link", "set", a_if, "up"]);
    b.sh(&["ip", "link", "set", b_if, "up"]);
    a.wait_until_up(a_if);
    b.wait_until_up(b_if);
}

impl Netns {
    /// Waits (5 s at most) until `iface` reports operstate UP. Until the
    /// kernel's link watcher gets to a new device, it transmits through a
    /// qdisc that drops everything, and an AF_PACKET send still reports
    /// success; the watcher reports UP when it installs the real qdisc.
    pub fn wait_until_up(&self, iface: &str) {
        for _ in 0..500 {
            let out = self.sh(&["ip", "link", "show", iface]);
            if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("{iface} in {} did not come up within 5 s", self.name);
    }
}

/// Whether `iface` in `ns` has any XDP program attached.
pub fn has_xdp(ns: &str, iface: &str) -> bool {
    let out = ns_sh(ns, &["ip", "-d", "link", "show", iface]);
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Sends each frame `count` times out of `iface` in namespace `ns`, through
/// an AF_PACKET socket, paced so that no queue on the way overflows.
pub fn send_frames(ns: &str, iface: &str, frames: &[(Vec<u8>, usize)]) {
    let ns = ns.to_string();
    let iface = iface.to_string();
    let frames = frames.to_vec();
    // setns() moves only the calling thread; a fresh thread keeps the test's own.
    thread::spawn(move || {
        let nsfile = File::open(format!("/run/netns/{ns}")).expect("netns file");
        nix::sched::setns(&nsfile, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let ifindex = nix::net::if_::if_nametoindex(iface.as_str()).expect("ifindex") as i32;
        // SAFETY: plain socket syscalls on an fd this thread owns.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = ifindex;
            addr.sll_halen = 6;
            let mut sent = 0usize;
            for (frame, count) in &frames {
                for _ in 0..*count {
                    let n = libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    assert_eq!(
                        n,
                        frame.len() as isize,
                        "sendto: {}",
                        std::io::Error::last_os_error()
                    );
                    sent += 1;
                    if sent % 64 == 0 {
                        thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            libc::close(fd);
        }
    })
    .join()
    .expect("sender thread");
}
