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

use common::frames::*;
use common::netns::Pair;
use common::process::{proto, Running};
use common::traffic::{blast, median, ns_per_packet, rx_packets, with_program, TrafgenConf};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use netprobe::skel::xdp_floor::XdpFloorSkelBuilder;
use netprobe::skel::xdp_pass::XdpPassSkelBuilder;
use nix::sys::signal::Signal;

/// Enough repeats that the clock steps here (4 ms a call) are 0.08 ns a packet.
const REPEAT: u32 = 50_000_000;
const ROUNDS: usize = 5;
const LIVE_FRAMES: u64 = 1_000_000;

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
    let mut floor_storage = MaybeUninit::uninit();
    let floor = XdpFloorSkelBuilder::default()
        .open(&mut floor_storage)
        .and_then(|o| o.load())
        .expect("load xdp_floor");
    let frames = [
        // (name, frame, whether the IPv4-only minimal classifier handles it)
        ("UDP/IPv4, 60 B", padded(udp4_frame(9, 18)), true),
        ("TCP/IPv4, 60 B", padded(tcp4_frame(80, 0)), true),
        ("UDP/IPv6, 100 B", udp6_frame(9, 38), false),
        ("ARP, 60 B", padded(arp_frame()), false),
    ];
    println!("## XDP counting cost, BPF_PROG_TEST_RUN\n");
    println!(
        "Median of {ROUNDS} interleaved rounds of {REPEAT} repeats each. Target: netprobe at most 1.3x the empty program.\n"
    );
    println!(
        "| frame | empty `return XDP_PASS` ns/pkt | netprobe ns/pkt | ratio | netprobe adds | minimal IPv4 classifier ns/pkt | its ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &(name, ref frame, ipv4) in &frames {
        let (mut base, mut ours, mut least) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            base.push(ns_per_packet(&pass.progs.xdp_pass, frame, REPEAT));
            ours.push(ns_per_packet(netprobe::xdp::program(&np), frame, REPEAT));
            if ipv4 {
                least.push(ns_per_packet(&floor.progs.xdp_floor, frame, REPEAT));
            }
        }
        let (b, o) = (median(base), median(ours));
        let floor_cells = if ipv4 {
            let f = median(least);
            format!("{f:.2} | {:.2}x", f / b)
        } else {
            "- | -".to_string()
        };
        println!(
            "| {name} | {b:.2} | {o:.2} | {:.2}x | {:.2} ns | {floor_cells} |",
            o / b,
            o - b
        );
    }
    println!(
        "\nTimes are wall time around the BPF_PROG_TEST_RUN call divided by the repeats (the kernel's own \
figure is rounded down to whole nanoseconds); the clock moves in 4 ms steps here, 0.08 ns a packet at \
this repeat count, and each call's fixed cost (about 15 ms) adds about 0.3 ns to every figure alike. Most of \
the empty program's time is the test harness itself, so the ratio is the conservative figure; the \
difference is what netprobe's parsing and counting add per packet. The minimal IPv4 classifier \
(`src/bpf/xdp_floor.bpf.c`) is the least that still validates what the `malformed` class needs (Ethernet, \
IPv4 header, UDP or TCP header, one per-CPU counter; no VLAN, IPv6, ARP, ICMP, nor anything kept for rules): \
its ratio is the floor any netprobe-like classifier starts from on this machine."
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
