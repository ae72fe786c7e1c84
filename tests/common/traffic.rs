//! Bulk traffic for benchmarks: trafgen sending a fixed number of frames
//! through a veth pair, and programs attached inside a namespace.
#![allow(dead_code)]
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libbpf_rs::{ProgramInput, ProgramMut};
use netprobe::kernel::netdev::{attach_xdp_link, XdpMode};

use super::netns::Pair;

/// A trafgen config file holding one frame; removed on drop.
pub struct TrafgenConf(pub String);

impl TrafgenConf {
    pub fn new(frame: &[u8]) -> TrafgenConf {
        let bytes: Vec<String> = frame.iter().map(|b| format!("0x{b:02x}")).collect();
        let path = format!("/tmp/{}.cfg", super::netns::unique("netprobe-trafgen"));
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

pub fn rx_packets(net: &Pair) -> u64 {
    let out = net.b.sh(&[
        "cat",
        &format!("/sys/class/net/{}/statistics/rx_packets", net.b_if),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("rx_packets")
}

/// Sends `frames` frames from A with one trafgen core; returns frames/s.
pub fn blast(net: &Pair, conf: &TrafgenConf, frames: u64) -> f64 {
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
            &conf.0,
            "--cpus",
            "1",
            "-q",
        ])
        .args(["-n", &frames.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("trafgen");
    assert!(status.success(), "trafgen failed");
    let rate = frames as f64 / start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    rate
}

/// Runs `f` with `prog` attached natively to B's interface.
pub fn with_program<R: Send>(net: &Pair, prog: BorrowedFd<'_>, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            // The ifindex is resolved in the calling thread's namespace.
            let nsfile = File::open(format!("/run/netns/{}", net.b.name)).unwrap();
            nix::sched::setns(&nsfile, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let ifindex = nix::net::if_::if_nametoindex(net.b_if.as_str()).unwrap();
            let _link = attach_xdp_link(prog.as_fd(), ifindex, XdpMode::Native).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// Median of a few measurements.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

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
