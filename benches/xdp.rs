//! `make bench` for `netprobe xdp`: prints Markdown for BENCHMARKS.md.
//!
//! 1. BPF_PROG_TEST_RUN: netprobe's XDP program and the empty `return
//!    XDP_PASS` program on the same frames, interleaved in rounds, median
//!    ns/packet and their ratio.
//! 2. Live: a fixed number of 60-byte frames from trafgen through a veth
//!    pair: no program, the empty program, and `netprobe xdp` attached.
#[path = "../tests/common/mod.rs"]
mod common;

use std::env;
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use common::frames::*;
use common::netns::Pair;
use common::process::{proto, Running};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ProgramInput, ProgramMut};
use netprobe::netdev::{attach_xdp_link, XdpMode};
use netprobe::skel::xdp_pass::XdpPassSkelBuilder;
use nix::sys::signal::Signal;

const REPEAT: u32 = 10_000_000;
const ROUNDS: usize = 5;
const LIVE_FRAMES: u64 = 1_000_000;

/// Wall time per repeat around one BPF_PROG_TEST_RUN call: the kernel's own
/// figure is rounded down to whole nanoseconds, too coarse at this scale.
fn ns_per_packet(prog: &ProgramMut<'_>, frame: &[u8]) -> f64 {
    let start = Instant::now();
    prog.test_run(ProgramInput {
        data_in: Some(frame),
        repeat: REPEAT,
        ..Default::default()
    })
    .expect("BPF_PROG_TEST_RUN");
    start.elapsed().as_nanos() as f64 / f64::from(REPEAT)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn test_run_section() {
    let mut np_storage = MaybeUninit::uninit();
    let np = netprobe::xdp::load(&mut np_storage, &Default::default()).expect("load netprobe");
    let mut pass_storage = MaybeUninit::uninit();
    let pass = XdpPassSkelBuilder::default()
        .open(&mut pass_storage)
        .and_then(|o| o.load())
        .expect("load xdp_pass");
    let frames = [
        ("UDP/IPv4, 60 B", {
            let mut f = udp4_frame(9, 18);
            f.resize(60, 0);
            f
        }),
        ("TCP/IPv4, 60 B", {
            let mut f = tcp4_frame(80, 0);
            f.resize(60, 0);
            f
        }),
        ("UDP/IPv6, 100 B", udp6_frame(9, 38)),
        ("ARP, 60 B", {
            let mut f = arp_frame();
            f.resize(60, 0);
            f
        }),
    ];
    println!("## XDP program cost, BPF_PROG_TEST_RUN\n");
    println!(
        "Median of {ROUNDS} interleaved rounds of {REPEAT} repeats each. Target: netprobe at most 1.3x the empty program.\n"
    );
    println!(
        "| frame | empty `return XDP_PASS` ns/pkt | netprobe ns/pkt | ratio | netprobe adds |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, frame) in &frames {
        let (mut base, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            base.push(ns_per_packet(&pass.progs.xdp_pass, frame));
            ours.push(ns_per_packet(&np.progs.xdp_netprobe, frame));
        }
        let (b, o) = (median(base), median(ours));
        println!(
            "| {name} | {b:.2} | {o:.2} | {:.2}x | {:.2} ns |",
            o / b,
            o - b
        );
    }
    println!(
        "\nTimes are wall time around the BPF_PROG_TEST_RUN call divided by the repeats (the kernel's own \
figure is rounded down to whole nanoseconds); they come in steps of about 0.4 ns here. Most of the empty \
program's time is the test harness itself, so the ratio is the conservative figure; the difference is \
what netprobe's parsing and counting add per packet."
    );
    println!("\nReproduce: `make bench` (section 1 of `benches/xdp.rs`).\n");
}

/// A trafgen config file holding one 60-byte UDP frame; removed on drop.
struct TrafgenConf(String);

impl TrafgenConf {
    fn udp60() -> TrafgenConf {
        let mut frame = udp4_frame(9, 18);
        frame.resize(60, 0);
        let bytes: Vec<String> = frame.iter().map(|b| format!("0x{b:02x}")).collect();
        let path = format!("/tmp/netprobe-bench-{}.cfg", std::process::id());
        std::fs::write(&path, format!("{{ {} }}\n", bytes.join(", ")))
            .expect("writing trafgen config");
        TrafgenConf(path)
    }
}

impl Drop for TrafgenConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rx_packets(net: &Pair) -> u64 {
    let out = net.b.sh(&[
        "cat",
        &format!("/sys/class/net/{}/statistics/rx_packets", net.b_if),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("rx_packets")
}

/// Sends LIVE_FRAMES frames from A and returns (frames/s sent, frames B's interface took in).
fn blast(net: &Pair, conf: &str) -> (f64, u64) {
    let before = rx_packets(net);
    let start = Instant::now();
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.a.name,
            "trafgen",
            "--dev",
            &net.a_if,
            "--conf",
            conf,
            "--cpus",
            "1",
            "-q",
        ])
        .args(["-n", &LIVE_FRAMES.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("trafgen");
    assert!(status.success(), "trafgen failed");
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    (LIVE_FRAMES as f64 / secs, rx_packets(net) - before)
}

/// Runs `f` with the empty XDP program attached natively to B's interface.
fn with_empty_program<R: Send>(net: &Pair, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            // The ifindex is resolved in the calling thread's namespace.
            let nsfile = File::open(format!("/run/netns/{}", net.b.name)).unwrap();
            nix::sched::setns(&nsfile, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let ifindex = nix::net::if_::if_nametoindex(net.b_if.as_str()).unwrap();
            let mut storage = MaybeUninit::uninit();
            let pass = XdpPassSkelBuilder::default()
                .open(&mut storage)
                .and_then(|o| o.load())
                .unwrap();
            let _link =
                attach_xdp_link(pass.progs.xdp_pass.as_fd(), ifindex, XdpMode::Native).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn live_section() {
    let net = Pair::addressed();
    let conf = TrafgenConf::udp60();
    let conf = conf.0.as_str();
    blast(&net, conf); // warm-up: ARP, caches

    let (none, none_rx) = blast(&net, conf);
    let (empty, empty_rx) = with_empty_program(&net, || blast(&net, conf));
    let np = Running::start(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--json", "--cost", "--interval", "1s"],
    );
    let (ours, ours_rx) = blast(&net, conf);
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.expect("netprobe final line");
    let counted = proto(&last, "udp").0;
    let cost = last["cost_ns_per_packet"].as_f64().unwrap_or(f64::NAN);

    println!("## Live traffic through a veth pair\n");
    println!(
        "{LIVE_FRAMES} UDP frames of 60 bytes from one trafgen core in namespace A to 198.18.0.2 in namespace B \
(native XDP on B's veth), one run, same machine, back to back. The sender bounds every figure: on a veth \
the receive path runs on the sender's core, so frames/s is how fast the pair moved frames with each \
receiver. Ratios, not absolutes, carry over.\n"
    );
    println!("| receiver on B | frames/s sent | ratio to no program | frames B's interface took in | netprobe counted |");
    println!("|---|---:|---:|---:|---:|");
    println!("| no XDP program | {none:.0} | 1.00 | {none_rx} | |");
    println!(
        "| empty XDP program (`return XDP_PASS`) | {empty:.0} | {:.2} | {empty_rx} | |",
        empty / none
    );
    println!(
        "| `netprobe xdp --cost` | {ours:.0} | {:.2} | {ours_rx} | {counted} |",
        ours / none
    );
    println!("\nnetprobe's own run time during that traffic (kernel BPF statistics): {cost:.1} ns/packet.\n");
    println!("Reproduce: `make bench` (section 2 of `benches/xdp.rs`).\n");
}

fn main() {
    common::require_root();
    if env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    test_run_section();
    live_section();
}
