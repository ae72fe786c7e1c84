//! Runs the netprobe binary (inside a namespace) and reads what it prints.
#![allow(dead_code)]
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_netprobe");

/// What a finished netprobe run left behind.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs netprobe to completion in `ns` (or here, if `None`).
pub fn run(ns: Option<&str>, args: &[&str]) -> Finished {
    let out = command(ns, args).output().expect("running netprobe");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs netprobe in `ns` under a wrapper command such as `setpriv ...`.
pub fn run_as(ns: &str, wrapper: &[&str], args: &[&str]) -> Finished {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(wrapper)
        .arg(BIN)
        .args(args)
        .output()
        .expect("running netprobe");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// netprobe with `args`, in `ns` (or here, if `None`).
pub fn command(ns: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args);
    cmd
}

/// A netprobe running in the background; killed on drop if still running.
pub struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    pub stderr_seen: Vec<String>,
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    /// Starts netprobe and waits until it says it is attached.
    pub fn start(ns: Option<&str>, args: &[&str]) -> Running {
        Running::start_with_stdout(ns, args, Stdio::piped())
    }

    /// The same, with netprobe's stdout going to `stdout` (a pipe into
    /// another program) instead of being read here.
    pub fn start_with_stdout(ns: Option<&str>, args: &[&str], stdout: Stdio) -> Running {
        let mut cmd = command(ns, args);
        cmd.stdout(stdout);
        Running::spawn(cmd, "attached")
    }

    /// Starts another program in `ns` (tcpdump) and waits until its stderr
    /// says `ready`.
    pub fn start_tool(ns: &str, args: &[&str], ready: &str) -> Running {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::piped());
        Running::spawn(cmd, ready)
    }

    /// Spawns `cmd` (its stdout already set) and waits for `ready` on stderr.
    fn spawn(mut cmd: Command, ready: &str) -> Running {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a program");
        // Not piped here: nothing to read, a channel that is already closed.
        let stdout = match child.stdout.take() {
            Some(out) => lines_of(out),
            None => channel().1,
        };
        let stderr = lines_of(child.stderr.take().unwrap());
        let mut r = Running {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        };
        r.wait_stderr(ready);
        r
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for a stderr line containing `needle`; panics with all stderr after 20 s.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no stderr line with {needle:?} ({e:?}); stderr so far: {:?}",
                    self.stderr_seen
                ),
            }
        }
    }

    /// The next JSON line on stdout.
    pub fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        match self.stdout.recv_timeout(timeout) {
            Ok(line) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}")),
            ),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads JSON lines until `done` holds for one; panics after `timeout`.
    pub fn json_until(&mut self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some(v) = self.next_json(Duration::from_millis(200)) {
                if done(&v) {
                    return v;
                }
                last = v;
            }
        }
        panic!("condition not met within {timeout:?}; last line: {last}");
    }

    /// Waits for netprobe to end by itself; returns its code and raw output,
    /// all of it: the readers run until the pipes close.
    pub fn finish(mut self) -> Finished {
        let status = self.child.wait().expect("waiting for netprobe");
        let stdout: Vec<String> = self.stdout.iter().collect();
        self.stderr_seen.extend(self.stderr.iter());
        Finished {
            code: status.code(),
            stdout: stdout.join("\n"),
            stderr: self.stderr_seen.join("\n"),
        }
    }

    /// Sends `sig` and returns the exit code and raw output.
    pub fn finish_after(self, sig: Signal) -> Finished {
        self.signal(sig);
        self.finish()
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signalling netprobe");
    }

    /// Sends `sig`, waits for exit, and returns the exit code and the final JSON line.
    pub fn stop(mut self, sig: Signal) -> (Option<i32>, Option<Value>) {
        self.signal(sig);
        let status = self.child.wait().expect("waiting for netprobe");
        let mut last = None;
        while let Some(v) = self.next_json(Duration::from_millis(500)) {
            last = Some(v);
        }
        (status.code(), last)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `json["protocols"][proto]["packets"]`, and the same for bytes.
pub fn proto(json: &Value, proto: &str) -> (u64, u64) {
    let p = &json["protocols"][proto];
    (p["packets"].as_u64().unwrap(), p["bytes"].as_u64().unwrap())
}

pub fn verdict(json: &Value, verdict: &str) -> (u64, u64) {
    let v = &json["verdicts"][verdict];
    (v["packets"].as_u64().unwrap(), v["bytes"].as_u64().unwrap())
}

/// Frames counted in all, as the sum of the classes every frame counts in once.
pub fn total_frames(json: &Value) -> u64 {
    ["ipv4", "ipv6", "arp", "other", "malformed"]
        .iter()
        .map(|p| proto(json, p).0)
        .sum()
}

/// An error found after parsing is one `netprobe:` line; a command-line
/// mistake that clap finds keeps clap's layout (exit 2, the error first,
/// tips and usage on lines of their own). Either way: `code`, `needle`,
/// nothing on stdout, no panic.
pub fn expect_error(out: &Finished, code: i32, needle: &str) {
    assert_eq!(out.code, Some(code), "exit code; stderr: {}", out.stderr);
    if out.stderr.starts_with("error: ") {
        assert_eq!(code, 2, "{}", out.stderr);
        assert!(
            out.stderr
                .trim_end()
                .ends_with("For more information, try '--help'."),
            "{:?}",
            out.stderr
        );
    } else {
        assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
        assert!(out.stderr.starts_with("netprobe: "), "{:?}", out.stderr);
    }
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
}
