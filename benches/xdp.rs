//! `make bench` for `netprobe xdp` counting: prints Markdown for BENCHMARKS.md.
//!
//! 1. BPF_PROG_TEST_RUN: netprobe's XDP program and the empty `return
//!    XDP_PASS` program on the same frames, interleaved in rounds, median
//!    ns/packet and their ratio.
//! 2. Live: a fixed number of 60-byte frames from trafgen through a veth
//!    pair: no program, the empty program, and `netprobe xdp` attached.
#[path = "../tests/common/mod.rs"]
mod common;

use std::env;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Instant;

use common::frames::*;
use common::netns::Pair;
use common::process::{proto, Running};
use common::traffic::{blast, median, rx_packets, with_program, TrafgenConf};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ProgramInput, ProgramMut};
use netprobe::skel::xdp_pass::XdpPassSkelBuilder;
use nix::sys::signal::Signal;

pub const REPEAT: u32 = 10_000_000;
const ROUNDS: usize = 5;
const LIVE_FRAMES: u64 = 1_000_000;

/// Wall time per repeat around one BPF_PROG_TEST_RUN call: the kernel's own
/// figure is rounded down to whole nanoseconds, too coarse at this scale.
pub fn ns_per_packet(prog: &ProgramMut<'_>, frame: &[u8], repeat: u32) -> f64 {
    let start = Instant::now();
    prog.test_run(ProgramInput {
        data_in: Some(frame),
        repeat,
        ..Default::default()
    })
    .expect("BPF_PROG_TEST_RUN");
    start.elapsed().as_nanos() as f64 / f64::from(repeat)
}

fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    frame.resize(frame.len().max(60), 0);
    frame
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
        ("UDP/IPv4, 60 B", padded(udp4_frame(9, 18))),
        ("TCP/IPv4, 60 B", padded(tcp4_frame(80, 0))),
        ("UDP/IPv6, 100 B", udp6_frame(9, 38)),
        ("ARP, 60 B", padded(arp_frame())),
    ];
    println!("## XDP counting cost, BPF_PROG_TEST_RUN\n");
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
            base.push(ns_per_packet(&pass.progs.xdp_pass, frame, REPEAT));
            ours.push(ns_per_packet(netprobe::xdp::program(&np), frame, REPEAT));
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

fn live_section() {
    let net = Pair::addressed();
    let conf = TrafgenConf::new(&padded(udp4_frame(9, 18)));
    blast(&net, &conf, LIVE_FRAMES); // warm-up

    let before = rx_packets(&net);
    let none = blast(&net, &conf, LIVE_FRAMES);
    let none_rx = rx_packets(&net) - before;
    let mut pass_storage = MaybeUninit::uninit();
    let pass = XdpPassSkelBuilder::default()
        .open(&mut pass_storage)
        .and_then(|o| o.load())
        .unwrap();
    let before = rx_packets(&net);
    let empty = with_program(&net, pass.progs.xdp_pass.as_fd(), || {
        blast(&net, &conf, LIVE_FRAMES)
    });
    let empty_rx = rx_packets(&net) - before;
    let np = Running::start(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--json", "--cost", "--interval", "1s"],
    );
    let before = rx_packets(&net);
    let ours = blast(&net, &conf, LIVE_FRAMES);
    let ours_rx = rx_packets(&net) - before;
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.expect("netprobe final line");
    let counted = proto(&last, "udp").0;
    let cost = last["cost_ns_per_packet"].as_f64().unwrap_or(f64::NAN);

    println!("## XDP counting, live traffic through a veth pair\n");
    println!(
        "{LIVE_FRAMES} UDP frames of 60 bytes from one trafgen core in namespace A to 198.18.0.2 in namespace B \
(native XDP on B's veth), one run, back to back. The sender bounds every figure: on a veth the receive \
path runs on the sender's core, so frames/s is how fast the pair moved frames with each receiver. \
Ratios, not absolutes, carry over.\n"
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
