//! `make bench` for `--replay`: prints Markdown for BENCHMARKS.md.
//!
//! One capture of a million 60-byte UDP frames, replayed through the XDP
//! program (counting only, and with one drop rule) and through the socket
//! filter, beside `tcpdump -r` with the same filter on the same file: the
//! median of three rounds, taken in turn.
#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::frames::udp4_frame;
use common::traffic::median;
use netprobe::capture::write::{CaptureWriter, Format};

const FRAMES: u32 = 1_000_000;
const ROUNDS: usize = 3;

fn seconds(program: &str, args: &[&str]) -> f64 {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
    start.elapsed().as_secs_f64()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("replay bench: needs root");
        return;
    }
    let file = std::env::temp_dir().join(common::netns::unique("replay-bench.pcap"));
    let path = file.to_str().unwrap().to_string();
    let frame = udp4_frame(9, 18);
    let mut w = CaptureWriter::new(File::create(&file).unwrap(), Format::Pcap, 65535).unwrap();
    for i in 0..FRAMES {
        w.write(
            Duration::new(1_700_000_000, i * 999),
            frame.len() as u32,
            &frame,
        )
        .unwrap();
    }
    w.flush().unwrap();
    let netprobe = env!("CARGO_BIN_EXE_netprobe");
    let rows: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "`netprobe xdp --replay F` (counting only)",
            netprobe,
            vec!["xdp", "--replay", &path, "--quiet"],
        ),
        (
            "`netprobe xdp --replay F --drop 'udp and dst port 9'`",
            netprobe,
            vec![
                "xdp",
                "--replay",
                &path,
                "--quiet",
                "--drop",
                "udp and dst port 9",
            ],
        ),
        (
            "`netprobe sockfilter --replay F --filter 'udp and dst port 9' -w /dev/null`",
            netprobe,
            vec![
                "sockfilter",
                "--replay",
                &path,
                "--quiet",
                "--filter",
                "udp and dst port 9",
                "-w",
                "/dev/null",
            ],
        ),
        (
            "`tcpdump -r F 'udp dst port 9' -w /dev/null`",
            "tcpdump",
            vec!["-r", &path, "udp dst port 9", "-w", "/dev/null"],
        ),
    ];
    let mut times = vec![Vec::new(); rows.len()];
    for _ in 0..ROUNDS {
        for (i, (_, program, args)) in rows.iter().enumerate() {
            times[i].push(seconds(program, args));
        }
    }
    let _ = std::fs::remove_file(&file);
    println!("## Replay: a capture through the hook programs\n");
    println!(
        "One pcap of {FRAMES} UDP frames of 60 bytes to port 9, read from the page cache; each command \
replays the whole file, start-up and BTF parsing included; median of {ROUNDS} rounds, the commands taken \
in turn. netprobe runs every frame through the program with BPF_PROG_TEST_RUN on every CPU (2 here); \
tcpdump runs its classic BPF filter in user space and is the peer for the same question on the same \
file.\n"
    );
    println!("| command | seconds | frames/s |");
    println!("|---|---:|---:|");
    for ((name, _, _), t) in rows.iter().zip(times) {
        let t = median(t);
        println!("| {name} | {t:.2} | {:.0} |", f64::from(FRAMES) / t);
    }
    println!("\nReproduce: `make bench` (`benches/replay.rs`).\n");
}
