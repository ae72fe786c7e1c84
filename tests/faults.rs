//! An operator's bad day: reloads during in-place rewrites, closed pipes,
//! full disks, interfaces that go away, FIFOs. Each test sends real frames
//! through a veth pair and checks that no rule falls open and no write
//! panics.
mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::frames::udp4_frame;
use common::netns::{has_xdp, send_frames, Netns, Pair};
use common::process::{proto, verdict, Running, BIN};
use common::TempDir;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(20);

fn rule_hits(json: &Value, rule: &str) -> u64 {
    json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == rule)
        .map_or(0, |r| r["packets"].as_u64().unwrap())
}

/// Datagrams B's UDP stack took in or answered with port unreachable.
fn udp_arrived(net: &Pair) -> u64 {
    let (datagrams, no_ports) = net.b.udp_counters();
    datagrams + no_ports
}

const RULE: &str = "udp and dst port 9";

/// 100 SIGHUPs in about 1.2 s while the rules file is rewritten in place
/// (truncate, then write: what editors and `>` do) and frames the rule
/// drops keep coming: not one of them may get through, and no reload may
/// put fewer rules in force.
#[test]
fn hup_storm_during_in_place_rewrites_never_lets_a_frame_through() {
    common::require_root();
    let net = Pair::addressed();
    let dir = TempDir::new("faults");
    let file = dir.file("rules.txt", &format!("{RULE}\n"));
    let arrived_before = udp_arrived(&net);
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--mode",
            "skb",
            "--rules-file",
            &file,
            "--json",
            "--interval",
            "100ms",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, file) = (Arc::clone(&stop), file.clone());
        thread::spawn(move || {
            let mut rewrites = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut f = File::create(&file).unwrap(); // truncates
                thread::sleep(Duration::from_millis(2));
                write!(f, "# rewrite {rewrites}\n{RULE}\n").unwrap();
                drop(f);
                rewrites += 1;
                thread::sleep(Duration::from_millis(8));
            }
            rewrites
        })
    };
    const FRAMES: usize = 3000;
    let sender = {
        let (ns, iface) = (net.a.name.clone(), net.a_if.clone());
        thread::spawn(move || send_frames(&ns, &iface, &[(udp4_frame(9, 18), FRAMES)]))
    };
    for _ in 0..100 {
        np.signal(Signal::SIGHUP);
        thread::sleep(Duration::from_millis(12));
    }
    sender.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let rewrites = writer.join().unwrap();
    assert!(rewrites > 50, "only {rewrites} rewrites");
    // Once the file is quiet, a reload goes through.
    thread::sleep(Duration::from_millis(100));
    np.signal(Signal::SIGHUP);
    np.wait_stderr("SIGHUP: 1 rule in force");
    let v = np.json_until(TIMEOUT, |v| proto(v, "udp").0 >= FRAMES as u64);
    assert_eq!(verdict(&v, "drop").0, FRAMES as u64, "every frame dropped");
    assert_eq!(verdict(&v, "pass").0, 0);
    let out = np.finish_after(Signal::SIGTERM);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(udp_arrived(&net), arrived_before, "no datagram reached B");
    for line in out.stderr.lines().filter(|l| l.contains("SIGHUP:")) {
        assert!(
            line.contains("1 rule in force") || line.contains("previous rules stay in force"),
            "{line}"
        );
    }
    // Which of the two a reload meets depends on the machine's load: a
    // writer held up between truncating and writing leaves an empty file
    // that looks finished.
    assert!(
        out.stderr.contains("still being written") || out.stderr.contains("holds no rules"),
        "reloads during the rewrites waited or refused, and said why: {}",
        out.stderr
    );
}

/// A rules file emptied on reload keeps the rules in force unless it says
/// `none`; then the rules go, as asked.
#[test]
fn emptying_the_rules_file_needs_none() {
    common::require_root();
    let net = Pair::addressed();
    let dir = TempDir::new("faults");
    let file = dir.file("rules.txt", &format!("{RULE}\n"));
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--rules-file",
            &file,
            "--json",
            "--interval",
            "100ms",
        ],
    );
    fs::write(&file, "# nothing\n").unwrap();
    np.signal(Signal::SIGHUP);
    let line = np.wait_stderr("SIGHUP:");
    assert!(
        line.contains("holds no rules") && line.contains("previous rules stay in force"),
        "{line}"
    );
    send_frames(&net.a.name, &net.a_if, &[(udp4_frame(9, 18), 10)]);
    let v = np.json_until(TIMEOUT, |v| proto(v, "udp").0 >= 10);
    assert_eq!(verdict(&v, "drop").0, 10);
    assert_eq!(rule_hits(&v, RULE), 10);

    fs::write(&file, "# cleared on purpose\nnone\n").unwrap();
    np.signal(Signal::SIGHUP);
    np.wait_stderr("SIGHUP: 0 rules in force");
    send_frames(&net.a.name, &net.a_if, &[(udp4_frame(9, 18), 10)]);
    let v = np.json_until(TIMEOUT, |v| proto(v, "udp").0 >= 20);
    assert_eq!(verdict(&v, "drop").0, 10, "nothing dropped any more");
    assert_eq!(verdict(&v, "pass").0, 10);
    let (code, _) = np.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0));
}

/// A pipe whose reading end is already closed: writes to it fail with EPIPE.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

/// With stderr gone, SIGHUP still reloads (its note is lost, not the run),
/// the JSON on stdout goes on, and SIGTERM ends the run with its summary.
#[test]
fn a_closed_stderr_loses_notes_not_the_run() {
    common::require_root();
    let net = Pair::addressed();
    let dir = TempDir::new("faults");
    let file = dir.file("rules.txt", &format!("{RULE}\n"));
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.b.name, BIN, "xdp", &net.b_if])
        .args(["--rules-file", &file, "--json", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("attached") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no attach line");
    }
    drop(stderr);
    let pid = Pid::from_raw(child.id() as i32);
    fs::write(&file, "udp and dst port 10\n").unwrap();
    thread::sleep(Duration::from_millis(100));
    kill(pid, Signal::SIGHUP).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + TIMEOUT;
    // The new rule in force (its note went nowhere), then frames it drops.
    let mut sent = false;
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "stdout ended");
        let v: Value = serde_json::from_str(&line).unwrap();
        let new_rule = v["rules"][0]["rule"] == "udp and dst port 10";
        if new_rule && !sent {
            send_frames(&net.a.name, &net.a_if, &[(udp4_frame(10, 18), 7)]);
            sent = true;
        }
        if sent && rule_hits(&v, "udp and dst port 10") == 7 {
            assert_eq!(verdict(&v, "drop").0, 7);
            break;
        }
        assert!(Instant::now() < deadline, "the reload never took: {line}");
    }
    kill(pid, Signal::SIGTERM).unwrap();
    let rest: Vec<String> = stdout.lines().map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let last: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(last["final"], true);
    assert!(!has_xdp(&net.b.name, &net.b_if));
}

/// Runs netprobe with stdout or stderr into a closed pipe; returns its exit code.
fn run_into_closed_pipe(ns: Option<&str>, args: &[&str], stdout: bool) -> Option<i32> {
    let mut cmd = common::process::command(ns, args);
    if stdout {
        cmd.stdout(closed_pipe()).stderr(Stdio::null());
    } else {
        cmd.stderr(closed_pipe()).stdout(Stdio::null());
    }
    cmd.status().unwrap().code()
}

/// Errors into a closed stderr keep their exit code (no panic, no 101), and
/// every one-shot command into a closed stdout ends as if read whole.
#[test]
fn closed_pipes_never_panic() {
    common::require_root();
    let ns = Netns::new();
    for (args, code) in [
        (&["xdp", "nosuch0"][..], 1),
        (&["xdp", "lo", "--drop", "udp and dst prot 9"][..], 2),
        (&["xdp", "lo", "--bogus"][..], 2),
        (&["kprobe", "no_such_function_at_all"][..], 2),
        (&["sockfilter", "-w", "/dev/full"][..], 1),
    ] {
        assert_eq!(
            run_into_closed_pipe(Some(&ns.name), args, false),
            Some(code),
            "{args:?} into a closed stderr"
        );
    }
    for args in [
        &["list"][..],
        &["check"][..],
        &["check", "--json"][..],
        &["completions", "bash"][..],
        &["xdp", "--help"][..],
    ] {
        assert_eq!(
            run_into_closed_pipe(Some(&ns.name), args, true),
            Some(0),
            "{args:?} into a closed stdout"
        );
    }
}

/// The pcap header is written at start: an output that cannot take it is
/// an error before the capture, and says which output it was.
#[test]
fn a_capture_that_cannot_start_says_so() {
    common::require_root();
    let ns = Netns::new();
    let out = common::process::run(Some(&ns.name), &["sockfilter", "-w", "/dev/full"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("writing the pcap header to /dev/full: No space left on device"),
        "{}",
        out.stderr
    );
    let full = File::options().write(true).open("/dev/full").unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN, "sockfilter", "-w", "-"])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("writing the pcap header to stdout: No space left on device"),
        "{stderr}"
    );
}

/// A filesystem that fills during a capture: the summary is printed, the
/// error says how many frames were written whole, and the file ends at the
/// last whole record (tcpdump reads every one of them, no cut record).
#[test]
fn a_full_disk_during_a_capture_keeps_whole_records() {
    common::require_root();
    let net = Pair::addressed();
    let dir = TempDir::new("faults");
    let mnt = dir.0.join("small");
    fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=16k",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let capture = mnt.join("cap.pcap");
    let np = Running::start(
        Some(&net.b.name),
        &[
            "sockfilter",
            "-i",
            &net.b_if,
            "-w",
            capture.to_str().unwrap(),
            "--json",
            "--interval",
            "100ms",
        ],
    );
    // 142-byte frames (and B's port unreachable answers): 16 KiB holds ~100.
    send_frames(&net.a.name, &net.a_if, &[(udp4_frame(9, 100), 300)]);
    let out = np.finish();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let error = out
        .stderr
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no error line: {}", out.stderr));
    let whole: u64 = error
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {error}"));
    assert!(
        error.contains("the file ends after the last of them"),
        "{error}"
    );
    // Walk the records: the last one ends exactly where the file ends.
    let bytes = fs::read(&capture).unwrap();
    let (mut at, mut records) = (24, 0);
    while at < bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
        records += 1;
    }
    assert_eq!(at, bytes.len(), "the file ends inside a record");
    assert_eq!(records, whole, "{error}");
    assert!(whole > 50, "{error}");
    let summary: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["final"], true);
    assert_eq!(summary["captured"], whole);
    let read = Command::new("tcpdump")
        .args(["-nr", capture.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(read.stdout.lines().count() as u64, whole);
    assert!(!String::from_utf8_lossy(&read.stderr).contains("truncated"));
}

/// An interface deleted under netprobe is named as gone, not as detached
/// by someone else.
#[test]
fn a_deleted_interface_is_reported_as_gone() {
    common::require_root();
    let net = Pair::addressed();
    let np = Running::start(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--json", "--interval", "100ms"],
    );
    net.b.sh(&["ip", "link", "del", &net.b_if]);
    let out = np.finish();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("interface {} went away", net.b_if)),
        "{}",
        out.stderr
    );
}

/// A FIFO as the rules file: netprobe says it waits for a writer, then
/// reads what the writer gives.
#[test]
fn a_fifo_rules_file_says_it_waits() {
    common::require_root();
    let net = Pair::addressed();
    let dir = TempDir::new("faults");
    let fifo = dir.0.join("rules.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.b.name, BIN, "xdp", &net.b_if])
        .args(["--rules-file", fifo.to_str().unwrap(), "--duration", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for a writer on the FIFO"), "{line}");
    fs::write(&fifo, format!("{RULE}\n")).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest}");
    assert!(rest.contains("with 1 rule;"), "{rest}");
    let _ = Path::new(&fifo);
}
