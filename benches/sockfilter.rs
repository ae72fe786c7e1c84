//! `make bench` for `netprobe sockfilter`: prints Markdown for BENCHMARKS.md.
//!
//! At the highest rate one trafgen core reaches through a veth: frames
//! delivered per frame seen, and the capturing process's CPU time, for
//! `netprobe sockfilter -w` and `tcpdump -w` with the same filter, one
//! after the other in one run; and the same for `--counts-only`.
#[path = "../tests/common/mod.rs"]
mod common;

use std::env;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::frames::*;
use common::netns::Pair;
use common::traffic::{blast, TrafgenConf};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const FRAMES: u64 = 1_000_000;

struct Outcome {
    rate: f64,
    cpu_s: f64,
    stdout: String,
    stderr: String,
}

/// Starts `args` in B's namespace, blasts the frames from A, stops it with
/// SIGINT, and returns the sender's rate and the process's CPU time.
// The child is reaped with wait4(2), which also returns its rusage.
#[allow(clippy::zombie_processes)]
fn measure(net: &Pair, conf: &TrafgenConf, args: &[&str]) -> Outcome {
    let dir = std::env::temp_dir();
    let (out_path, err_path) = (
        dir.join(common::netns::unique("bench-out")),
        dir.join(common::netns::unique("bench-err")),
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &net.b.name])
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let rate = blast(net, conf, FRAMES);
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id() as i32;
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 on our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let outcome = Outcome {
        rate,
        cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    outcome
}

fn json_field(stdout: &str, key: &str) -> u64 {
    let last = stdout.lines().last().unwrap_or("{}");
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
    v[key].as_u64().unwrap_or(0)
}

/// tcpdump's closing "N packets captured / received by filter / dropped by kernel".
fn tcpdump_stat(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.contains(what))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    common::require_root();
    if env::args().any(|a| a == "--list") {
        return;
    }
    let net = Pair::quiet();
    let mut frame = udp4_frame(9, 18);
    frame.resize(60, 0);
    let conf = TrafgenConf::new(&frame);
    blast(&net, &conf, FRAMES); // warm-up
    let pcap = std::env::temp_dir().join(common::netns::unique("bench.pcap"));
    let pcap = pcap.to_str().unwrap();
    let bin = common::process::BIN;

    let none = blast(&net, &conf, FRAMES);
    let ours = measure(
        &net,
        &conf,
        &[
            bin,
            "sockfilter",
            "-i",
            &net.b_if,
            "--filter",
            "udp and dst port 9",
            "-s",
            "128",
            "-w",
            pcap,
            "--json",
            "--interval",
            "1h",
        ],
    );
    let ours_written = std::fs::metadata(pcap).map(|m| m.len()).unwrap_or(0);
    let theirs = measure(
        &net,
        &conf,
        &[
            "tcpdump", "-i", &net.b_if, "-n", "-s", "128", "-w", pcap, "udp", "dst", "port", "9",
        ],
    );
    let counts = measure(
        &net,
        &conf,
        &[
            bin,
            "sockfilter",
            "-i",
            &net.b_if,
            "--counts-only",
            "--json",
            "--interval",
            "1h",
        ],
    );
    let _ = std::fs::remove_file(pcap);

    let (seen, delivered, dropped, captured) = (
        json_field(&ours.stdout, "seen"),
        json_field(&ours.stdout, "delivered"),
        json_field(&ours.stdout, "socket_drops"),
        json_field(&ours.stdout, "captured"),
    );
    let (td_captured, td_received, td_dropped) = (
        tcpdump_stat(&theirs.stderr, "packets captured"),
        tcpdump_stat(&theirs.stderr, "packets received by filter"),
        tcpdump_stat(&theirs.stderr, "packets dropped by kernel"),
    );
    println!("## Socket filter capture, live traffic through a veth pair\n");
    println!(
        "{FRAMES} UDP frames of 60 bytes to port 9 from one trafgen core in namespace A; in namespace B the capturer \
runs on B's veth with the same filter (`udp and dst port 9`, snap length 128) and writes a pcap file; one run, \
one capturer after the other. CPU is the capturing process's user+system time from `wait4`; the filter \
program itself runs in the sender's softirq and is not part of it. Frames/s is the sender's rate, bounded by \
its one core.\n"
    );
    println!("| capturer | frames/s sent | ratio to no capture | seen by filter | delivered | dropped by socket | written | CPU s | frames written per CPU s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("| none | {none:.0} | 1.00 | | | | | | |");
    println!(
        "| `netprobe sockfilter -w` (TPACKET_V3 ring) | {:.0} | {:.2} | {seen} | {delivered} | {dropped} | {captured} | {:.2} | {:.0} |",
        ours.rate,
        ours.rate / none,
        ours.cpu_s,
        captured as f64 / ours.cpu_s.max(1e-3)
    );
    println!(
        "| `tcpdump -w` (classic BPF) | {:.0} | {:.2} | {td_received} | {} | {td_dropped} | {td_captured} | {:.2} | {:.0} |",
        theirs.rate,
        theirs.rate / none,
        td_received - td_dropped,
        theirs.cpu_s,
        td_captured as f64 / theirs.cpu_s.max(1e-3)
    );
    println!(
        "| `netprobe sockfilter --counts-only` | {:.0} | {:.2} | {} | {} | {} | 0 | {:.2} | |",
        counts.rate,
        counts.rate / none,
        json_field(&counts.stdout, "seen"),
        json_field(&counts.stdout, "delivered"),
        json_field(&counts.stdout, "socket_drops"),
        counts.cpu_s
    );
    println!(
        "\nCPU time includes start-up: netprobe loads its BPF object and parses kernel BTF first, which the \
`--counts-only` row (no frame reaches user space) shows on its own. netprobe's pcap file: {ours_written} bytes. \
tcpdump's \"received by filter\" counts frames its classic BPF filter accepted; netprobe's \"seen\" counts \
every frame its filter program ran on.\n"
    );
    println!("Reproduce: `make bench` (`benches/sockfilter.rs`).\n");
}
