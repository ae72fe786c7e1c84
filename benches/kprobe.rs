//! `make bench` for `netprobe kprobe`: prints Markdown for BENCHMARKS.md.
//!
//! 1. Cost per connect(): a tight connect loop over loopback with no probe
//!    and with each backend, on this host (tracepoint only) and in the
//!    Debian 6.1 and 6.12 VMs of `make vmtest` (all three backends).
//! 2. Start-up: netprobe's start-to-attached time, and a whole short run of
//!    netprobe and of bpftrace counting the same tracepoint.
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::env;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::traffic::median;

const CONNECTS: &str = "20000";

fn connect_loop() -> String {
    let path = std::env::temp_dir().join(common::netns::unique("connect_loop"));
    let status = Command::new("gcc")
        .args([
            "-O2",
            "-static",
            "-o",
            path.to_str().unwrap(),
            "tests/vm/connect_loop.c",
        ])
        .status()
        .expect("gcc");
    assert!(status.success());
    path.to_str().unwrap().to_string()
}

fn ns_per_connect(looper: &str) -> f64 {
    let out = Command::new(looper).args([CONNECTS, "9"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Runs `f` while netprobe traces tcp_v4_connect with `backend`.
fn with_netprobe<R>(backend: &str, f: impl FnOnce() -> R) -> R {
    let mut child = Command::new(common::process::BIN)
        .args([
            "kprobe",
            "tcp_v4_connect",
            "--backend",
            backend,
            "--json",
            "--interval",
            "1h",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("attached") {
            break;
        }
    }
    let r = f();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    child.wait().unwrap();
    r
}

/// Seconds from spawn to the line on stderr containing `needle`.
fn time_to_line(cmd: &mut Command, needle: &str) -> f64 {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut t = f64::NAN;
    while let Some(Ok(line)) = lines.next() {
        if line.contains(needle) {
            t = start.elapsed().as_secs_f64();
            break;
        }
    }
    let _ = child.kill();
    child.wait().unwrap();
    t
}

fn whole_run(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{cmd:?}");
    start.elapsed().as_secs_f64()
}

fn main() {
    common::require_root();
    if env::args().any(|a| a == "--list") {
        return;
    }
    let looper = connect_loop();

    // Host: only the tracepoint backend works here.
    let none = ns_per_connect(&looper);
    let tp = with_netprobe("tracepoint", || ns_per_connect(&looper));
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut rows: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    rows.entry(format!("{release} (host)"))
        .or_default()
        .extend([("none".to_string(), none), ("tracepoint".to_string(), tp)]);

    // The VMs: scripts/vmtest.sh --bench prints "VMBENCH kernel backend ns".
    let out = Command::new("scripts/vmtest.sh")
        .args(["--bench", common::process::BIN])
        .stderr(Stdio::null())
        .output()
        .expect("scripts/vmtest.sh --bench");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_, kernel, backend, ns] = f[..] {
            if let Ok(ns) = ns.parse::<f64>() {
                if !backend.ends_with("-calls") {
                    rows.entry(format!("{kernel} (VM, TCG)"))
                        .or_default()
                        .insert(backend.to_string(), ns);
                }
            }
        }
    }

    println!("## kprobe: cost per connect()\n");
    println!(
        "{CONNECTS} connect() calls to a closed port on 127.0.0.1 in one tight loop (socket, connect refused, close; \
`tests/vm/connect_loop.c`), with no probe and with `netprobe kprobe tcp_v4_connect --backend B` attached \
(a connect event per call through the ring buffer). One run per kernel. The VMs run under qemu's TCG \
emulation (no KVM here), which slows everything by about 20x and not evenly, so compare ratios within a row.\n"
    );
    println!("| kernel | no probe ns/connect | kprobe | fentry | tracepoint |");
    println!("|---|---:|---:|---:|---:|");
    for (kernel, r) in &rows {
        let base = r.get("none").copied().unwrap_or(f64::NAN);
        let cell = |b: &str| match r.get(b) {
            Some(v) => format!("{v:.0} ({:.2}x)", v / base),
            None => "not available".into(),
        };
        println!(
            "| {kernel} | {base:.0} | {} | {} | {} |",
            cell("kprobe"),
            cell("fentry"),
            cell("tracepoint")
        );
    }
    println!("\nReproduce: `make bench` (section 1 of `benches/kprobe.rs`; the VM rows come from `scripts/vmtest.sh --bench`).\n");

    // Start-up on the host, median of 5.
    let attached: Vec<f64> = (0..5)
        .map(|_| {
            time_to_line(
                Command::new(common::process::BIN).args([
                    "kprobe",
                    "tcp_v4_connect",
                    "--backend",
                    "tracepoint",
                ]),
                "attached",
            )
        })
        .collect();
    let np_run: Vec<f64> = (0..5)
        .map(|_| {
            whole_run(Command::new(common::process::BIN).args([
                "kprobe",
                "tcp_v4_connect",
                "--backend",
                "tracepoint",
                "--duration",
                "10ms",
            ]))
        })
        .collect();
    let bt_run: Vec<f64> = (0..5)
        .map(|_| {
            // bpftrace finds tracepoints through tracefs, which this host
            // does not mount: a private mount namespace gives it one.
            whole_run(Command::new("unshare").args([
                "-m",
                "sh",
                "-c",
                "mount -t tracefs tracefs /sys/kernel/tracing && exec bpftrace -e \
                 'tracepoint:sock:inet_sock_set_state { @n = count(); }' -c /bin/true",
            ]))
        })
        .collect();
    println!("## kprobe: start-up on the host\n");
    println!(
        "Median of 5 runs each, this host, back to back. \"Whole run\" is start, attach, run ~10 ms (netprobe \
`--duration 10ms`; bpftrace `-c /bin/true`), detach, print, exit: bpftrace prints its \"Attaching\" line before \
it attaches, so the whole run is the figure that compares like with like. bpftrace runs in a private mount \
namespace with tracefs mounted, which it needs and this host does not mount.\n"
    );
    println!("| tool | start to attached | whole run |");
    println!("|---|---:|---:|");
    println!(
        "| `netprobe kprobe tcp_v4_connect --backend tracepoint` | {:.0} ms | {:.0} ms |",
        median(attached) * 1e3,
        median(np_run) * 1e3
    );
    println!(
        "| `bpftrace -e 'tracepoint:sock:inet_sock_set_state {{ @n = count(); }}'` | | {:.0} ms |",
        median(bt_run) * 1e3
    );
    println!("\nReproduce: `make bench` (section 2 of `benches/kprobe.rs`).\n");

    event_path(&looper);
    let _ = std::fs::remove_file(&looper);
}

/// A process beside the connect loop, started and ready (its `needle` line
/// seen on stdout or stderr); what it prints otherwise is read and dropped,
/// as a terminal would take it.
fn beside(cmd: &mut Command, needle: &'static str) -> std::process::Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains(needle) {
                    let _ = tx.send(());
                }
            }
        });
    }
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the process beside the loop never said it was ready");
    child
}

fn stop(child: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    child.wait().unwrap();
}

/// Section 3: what an event per connect costs the traced program, against
/// bpftrace on the same tracepoint.
fn event_path(looper: &str) {
    const ROUNDS: usize = 3;
    let bpftrace = |program: &str| {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "sh",
            "-c",
            &format!(
                "mount -t tracefs tracefs /sys/kernel/tracing && exec bpftrace -e '{program}'"
            ),
        ]);
        cmd
    };
    let netprobe = |args: &[&str]| {
        let mut cmd = Command::new(common::process::BIN);
        cmd.args(["kprobe", "tcp_v4_connect", "--backend", "tracepoint"])
            .args(args);
        cmd
    };
    type Setup = Box<dyn Fn() -> Option<std::process::Child>>;
    let rows: Vec<(&str, Setup)> = vec![
        ("nothing attached", Box::new(|| None)),
        (
            "`netprobe kprobe tcp_v4_connect --json` (an event per connect)",
            Box::new(move || Some(beside(&mut netprobe(&["--json"]), "attached"))),
        ),
        (
            "`netprobe kprobe tcp_v4_connect` (a line per connect)",
            Box::new(move || Some(beside(&mut netprobe(&[]), "attached"))),
        ),
        (
            "the same `--json`, netprobe stopped (SIGSTOP): nothing reads the events",
            Box::new(move || {
                let child = beside(&mut netprobe(&["--json"]), "attached");
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
                Some(child)
            }),
        ),
        (
            "`bpftrace` printing a line per connect",
            Box::new(move || {
                Some(beside(
                    &mut bpftrace(
                        "tracepoint:sock:inet_sock_set_state /args->newstate == 2/ \
                         { printf(\"%d %s\\n\", pid, comm); }",
                    ),
                    "Attaching",
                ))
            }),
        ),
        (
            "`bpftrace` counting",
            Box::new(move || {
                Some(beside(
                    &mut bpftrace("tracepoint:sock:inet_sock_set_state { @n = count(); }"),
                    "Attaching",
                ))
            }),
        ),
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for _ in 0..ROUNDS {
        for (i, (_, setup)) in rows.iter().enumerate() {
            let mut child = setup();
            ns[i].push(ns_per_connect(looper));
            if let Some(child) = child.as_mut() {
                stop(child);
            }
        }
    }
    let base = median(ns[0].clone());
    println!("## kprobe: the event path on the host\n");
    println!(
        "{CONNECTS} connect() calls to a closed port on 127.0.0.1 in one tight loop (`tests/vm/connect_loop.c`), \
with each row's tracer attached to the connect tracepoint (netprobe's tracepoint backend; bpftrace on \
`sock:inet_sock_set_state`), median of {ROUNDS} rounds taken in turn. netprobe's events do not wake its reader one \
by one: the ring is drained every 100 ms (`--event-delay`), or as soon as it is half full. Output goes to a \
pipe that is read and dropped.\n"
    );
    println!("| attached | ns/connect | relative to nothing |");
    println!("|---|---:|---:|");
    for ((name, _), v) in rows.iter().zip(ns) {
        let m = median(v);
        println!("| {name} | {m:.0} | {:.2}x |", m / base);
    }
    println!("\nReproduce: `make bench` (section 3 of `benches/kprobe.rs`).\n");
}
