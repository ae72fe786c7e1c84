//! `netprobe kprobe`, `list` and `check` on the running kernel. On this
//! project's machines it has no kprobes and refuses fentry: auto must pick
//! the tracepoint for connects, count exactly, and refuse everything else in
//! one line. Expectations follow what the kernel offers, so the tests hold
//! on a kernel with kprobes too; `make vmtest` covers kprobe and fentry.
mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::netns::{Netns, Pair};
use common::process::{run, Running};
use nix::sys::signal::Signal;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A shell in `ns` that, once told to, makes `n` TCP connects to `addr` port
/// `port` from its own pid (a redirection on `:` runs in the shell itself).
struct Connector {
    child: Child,
}

impl Connector {
    fn new(ns: &Netns, wrapper: &[&str], n: usize, addr: &str, port: u16) -> Connector {
        let script = format!("read go; for i in $(seq {n}); do : 3<>/dev/tcp/{addr}/{port}; done 2>/dev/null; exit 0");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(wrapper)
            .args(["bash", "-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        Connector { child }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn go(mut self) {
        self.child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

fn kprobes_here() -> bool {
    netprobe::kernel::features::kprobe_support().is_ok()
}

fn fentry_here() -> bool {
    netprobe::kprobe::fentry_support("tcp_v4_connect").is_ok()
}

/// The backend auto must pick for tcp_v4_connect here.
fn auto_backend() -> &'static str {
    if fentry_here() {
        "fentry"
    } else if kprobes_here() {
        "kprobe"
    } else {
        "tracepoint"
    }
}

fn events(np: &mut Running, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let v = np.next_json(TIMEOUT).expect("a connect event");
        if v["event"] == "connect" {
            out.push(v);
        }
    }
    out
}

fn netns_inode(ns: &Netns) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/run/netns/{}", ns.name))
        .unwrap()
        .ino()
}

#[test]
fn auto_picks_the_tracepoint_and_counts_connects_exactly() {
    common::require_root();
    let ns = Netns::new();
    let v4 = Connector::new(&ns, &[], 7, "127.0.0.1", 9);
    let pid = v4.pid();
    let mut np = Running::start(
        None,
        &[
            "kprobe",
            "tcp_v4_connect",
            "tcp_v6_connect",
            "-p",
            &pid,
            "--json",
            "--interval",
            "100ms",
        ],
    );
    let auto = auto_backend();
    if auto == "tracepoint" {
        assert!(
            np.stderr_seen
                .iter()
                .any(|l| l.contains("using the tracepoint backend") && l.contains("no kprobes")),
            "{:?}",
            np.stderr_seen
        );
    }
    v4.go();
    let got = events(&mut np, 7);
    for e in &got {
        assert_eq!(e["pid"].to_string(), pid);
        assert_eq!(
            (e["ip"].as_u64(), e["daddr"].as_str(), e["saddr"].as_str()),
            (Some(4), Some("127.0.0.1"), Some("127.0.0.1"))
        );
        assert_eq!(e["dport"], 9);
        // The tracepoint cannot see return values; probes on the function can.
        let ret = if auto == "tracepoint" {
            Value::Null
        } else {
            Value::from(0)
        };
        assert_eq!(e["ret"], ret);
        assert_eq!(e["comm"], "bash");
        assert_eq!(e["uid"], 0);
        assert_eq!(e["netns"].as_u64(), Some(netns_inode(&ns)));
    }
    let (code, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(last["backend"], auto);
    assert_eq!(last["functions"]["tcp_v4_connect"]["calls"], 7);
    assert_eq!(last["functions"]["tcp_v6_connect"]["calls"], 0);
    assert_eq!(last["events_lost"], 0);
}

#[test]
fn ipv6_connects_and_filters() {
    common::require_root();
    let ns = Netns::new();
    // --port: only connects to port 9 are events; all are calls.
    let c = Connector::new(&ns, &[], 4, "::1", 9);
    let pid = c.pid();
    let mut np = Running::start(
        None,
        &[
            "kprobe",
            "tcp_v6_connect",
            "-p",
            &pid,
            "--port",
            "9",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    c.go();
    let got = events(&mut np, 4);
    assert!(got
        .iter()
        .all(|e| e["ip"] == 6 && e["daddr"] == "::1" && e["dport"] == 9));
    let (_, last) = np.stop(Signal::SIGINT);
    assert_eq!(last.unwrap()["functions"]["tcp_v6_connect"]["calls"], 4);

    let c = Connector::new(&ns, &[], 3, "::1", 10);
    let pid = c.pid();
    let np = Running::start(
        None,
        &[
            "kprobe",
            "tcp_v6_connect",
            "-p",
            &pid,
            "--port",
            "9",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    c.go();
    std::thread::sleep(Duration::from_millis(300));
    let (_, last) = np.stop(Signal::SIGINT);
    let last = last.unwrap();
    assert_eq!(
        last["event"],
        Value::Null,
        "no event for port 10: the last line is the summary"
    );
    assert_eq!(last["functions"]["tcp_v6_connect"]["calls"], 3);

    // -u: connects made as uid 65534.
    let c = Connector::new(
        &ns,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        5,
        "127.0.0.1",
        9,
    );
    let pid = c.pid();
    let mut np = Running::start(
        None,
        &[
            "kprobe",
            "tcp_v4_connect",
            "-u",
            "65534",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    c.go();
    let got = events(&mut np, 5);
    assert!(got.iter().all(|e| e["uid"] == 65534), "{got:?}");
    drop(pid);
    np.stop(Signal::SIGINT);
}

#[test]
fn table_output_is_like_tcpconnect() {
    common::require_root();
    let ns = Netns::new();
    let c = Connector::new(&ns, &[], 2, "127.0.0.1", 9);
    let pid = c.pid();
    let np = Running::start(
        None,
        &["kprobe", "tcp_v4_connect", "-p", &pid, "--duration", "2s"],
    );
    c.go();
    std::thread::sleep(Duration::from_millis(2500));
    let out = np.finish();
    assert_eq!(out.code, Some(0));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header and two connects: {}", out.stdout);
    assert!(
        lines[0].starts_with("PID     COMM             IP SADDR"),
        "{}",
        lines[0]
    );
    for l in &lines[1..] {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(
            f,
            vec![
                pid.as_str(),
                "bash",
                "4",
                "127.0.0.1",
                "127.0.0.1",
                "9",
                "-"
            ],
            "{l}"
        );
    }
    // The counters go to stderr at the end, leaving stdout to events.
    assert!(
        out.stderr
            .contains("tcp_v4_connect                                2"),
        "{}",
        out.stderr
    );
}

#[test]
fn refusals_are_one_line() {
    common::require_root();
    for (args, code, needle) in [
        (
            vec!["kprobe", "tcp_v4_connect", "--backend", "kprobe"],
            1,
            "kprobe backend: this kernel has no kprobes (CONFIG_KPROBES is not set)",
        ),
        (
            vec!["kprobe", "tcp_v4_connect", "--backend", "fentry"],
            1,
            "fentry backend: this kernel refused fentry",
        ),
        (
            vec!["kprobe", "ip_rcv"],
            1,
            "no usable backend for ip_rcv: this kernel refused fentry",
        ),
        (
            vec!["kprobe", "ip_rcv", "--backend", "tracepoint"],
            1,
            "covers only tcp_v4_connect and tcp_v6_connect",
        ),
        (
            vec!["kprobe", "tcp_v4_connect", "--ret"],
            1,
            "cannot give --ret or --latency",
        ),
        (
            vec![
                "kprobe",
                "tcp_v4_connect",
                "--backend",
                "tracepoint",
                "--latency",
            ],
            2,
            "--ret and --latency need the kprobe or fentry backend",
        ),
        (
            vec!["kprobe", "no_such_function_xyz"],
            2,
            "no traceable kernel function 'no_such_function_xyz'",
        ),
        (vec!["kprobe", "tcp_*"], 2, "at most 32"),
        (
            vec!["kprobe", "zz_no_match_*"],
            2,
            "no traceable kernel function pattern 'zz_no_match_*'",
        ),
        (vec!["kprobe"], 2, "required arguments were not provided"),
        (
            vec!["kprobe", "tcp_v4_connect", "--backend", "magic"],
            2,
            "invalid value 'magic'",
        ),
    ] {
        let out = run(None, &args);
        common::process::expect_error(&out, code, needle);
    }
}

#[test]
fn list_and_check_describe_this_kernel() {
    common::require_root();
    let out = run(None, &["list", "inet_sock"]);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("  tp:inet_sock_set_state ") && l.ends_with(" tp_btf, events")),
        "{}",
        out.stdout
    );
    // --attachable: what netprobe kprobe can attach to here, and how.
    let out = run(None, &["list", "--attachable", "tcp_v?_connect"]);
    let connect = if fentry_here() {
        "fentry"
    } else if kprobes_here() {
        "kprobe"
    } else {
        "tracepoint"
    };
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("  tcp_v4_connect ") && l.ends_with(connect)),
        "{}",
        out.stdout
    );
    let out = run(None, &["list", "tcp_v?_connect"]);
    let names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        ["tcp_v4_connect", "tcp_v6_connect"],
        "{}",
        out.stdout
    );

    let ns = Netns::new();
    ns.sh(&[
        "ip", "link", "add", "vcheck0", "type", "veth", "peer", "name", "vcheck1",
    ]);
    let out = run(Some(&ns.name), &["check", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let find = |what: &str| {
        v["check"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["what"] == what)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("BTF")["available"], true);
    assert_eq!(find("kprobes")["available"], kprobes_here());
    assert_eq!(find("fentry")["available"], fentry_here());
    assert_eq!(find("ring buffer")["available"], true);
    assert_eq!(
        find("tracepoint sock:inet_sock_set_state")["available"],
        true
    );
    let xdp: Vec<String> = v["check"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["what"] == "XDP")
        .map(|f| f["detail"].as_str().unwrap().to_string())
        .collect();
    assert!(xdp.contains(&"vcheck0: native, skb".to_string()), "{xdp:?}");
    assert!(xdp.contains(&"lo: skb".to_string()), "{xdp:?}");
    assert!(find("capabilities")["detail"]
        .as_str()
        .unwrap()
        .contains("CAP_BPF"));
    // What netprobe needs is marked; bpffs is only informative.
    assert_eq!(find("bpffs")["needed_by"], "-");
    assert_eq!(find("fentry")["needed_by"], "fentry backend");

    // The table: every column starts where its header does, whatever the
    // length of a detail.
    let out = run(Some(&ns.name), &["check"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let detail_at = lines[0].find("DETAIL").unwrap();
    let how_at = lines[0].find("HOW").unwrap();
    for line in &lines[1..] {
        assert_eq!(&line[detail_at - 2..detail_at], "  ", "{line}");
        assert_eq!(&line[how_at - 2..how_at], "  ", "{line}");
        assert_ne!(&line[how_at..how_at + 1], " ", "{line}");
    }
}

/// Two processes connect() flat out for 10 s while netprobe prints a JSON
/// event per connect: not one event is lost, and the events are exactly the
/// connects counted. Events do not wake netprobe one by one; the ring is
/// drained on a timer and when half full, which must keep up with this.
#[test]
fn no_event_is_lost_under_two_connect_loops() {
    common::require_root();
    let looper = connect_loop();
    let mut np = Command::new(common::process::BIN)
        .args(["kprobe", "tcp_v4_connect", "--json", "--interval", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = np.stdout.take().unwrap();
    // Count the events as they come, as a reader of the JSON would.
    let counter = std::thread::spawn(move || {
        use std::io::BufRead;
        let (mut events, mut last) = (0u64, String::new());
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.starts_with("{\"event\":\"connect\"") {
                events += 1;
            } else {
                last = line;
            }
        }
        (events, last)
    });
    let mut stderr = std::io::BufReader::new(np.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("attached") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "no attach line"
        );
    }
    let loops: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(&looper)
                .args(["1000000000", "9"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    for mut l in loops {
        l.kill().unwrap();
        l.wait().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(np.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(np.wait().unwrap().code(), Some(0));
    let (events, last) = counter.join().unwrap();
    let _ = std::fs::remove_file(&looper);
    let v: Value = serde_json::from_str(&last).unwrap();
    let calls = v["functions"]["tcp_v4_connect"]["calls"].as_u64().unwrap();
    assert_eq!(v["events_lost"], 0, "{last}");
    assert_eq!(events, calls, "an event per connect: {last}");
    assert!(calls > 100_000, "the loops ran flat out: {calls} connects");
}

/// tests/vm/connect_loop.c, built for this test run.
fn connect_loop() -> std::path::PathBuf {
    let looper = std::env::temp_dir().join(common::netns::unique("connect_loop"));
    let built = Command::new("clang")
        .args(["-O2", "-o"])
        .arg(&looper)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vm/connect_loop.c"
        ))
        .status()
        .expect("clang");
    assert!(built.success());
    looper
}

/// Tracepoints by name (`tp:NAME`): a tracepoint without a flow counts
/// calls through a raw tracepoint; one with a socket or a packet also gives
/// an event with the flow. Here, where kprobes do not exist, 9 refused
/// connects by one user are 18 packets queued, 18 socket state changes, 9
/// SYNs dropped for want of a socket, 9 resets sent and 9 received.
#[test]
fn tracepoints_by_name_count_exactly() {
    common::require_root();
    let looper = connect_loop();
    let tracepoints = [
        "tp:net_dev_queue",
        "tp:inet_sock_set_state",
        "tp:tcp_receive_reset",
        "tp:tcp_send_reset",
        "tp:kfree_skb",
    ];
    let mut args = vec!["kprobe"];
    args.extend(tracepoints);
    args.extend(["-u", "4243", "--json"]);
    let mut np = Running::start(None, &args);
    assert!(
        np.stderr_seen.iter().any(|l| l.contains(&format!(
            "raw_tp+tp_btf backend attached to {}",
            tracepoints.join(", ")
        ))),
        "{:?}",
        np.stderr_seen
    );
    let status = Command::new("setpriv")
        .args(["--reuid=4243", "--regid=4243", "--clear-groups"])
        .arg(&looper)
        .args(["9", "9"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_file(&looper);
    // Events: 18 state changes, 9 resets received, 9 sent, 9 SYNs dropped.
    let events = self::events_of(&mut np, 18 + 9 + 9 + 9);
    let (code, last) = np.stop(Signal::SIGINT);
    assert_eq!(code, Some(0));
    let last = last.unwrap();
    assert_eq!(last["backend"], "raw_tp+tp_btf");
    let calls = |tp: &str| last["functions"][tp]["calls"].as_u64().unwrap();
    assert_eq!(calls("tp:net_dev_queue"), 18, "{last}");
    assert_eq!(calls("tp:inet_sock_set_state"), 18, "{last}");
    assert_eq!(calls("tp:tcp_receive_reset"), 9, "{last}");
    assert_eq!(calls("tp:tcp_send_reset"), 9, "{last}");
    let count = |event: &str, check: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .filter(|e| e["event"] == event && check(e))
            .count()
    };
    let to_port_9 = |e: &Value| e["daddr"] == "127.0.0.1" && e["dport"] == 9 && e["uid"] == 4243;
    assert_eq!(count("tcp_receive_reset", &to_port_9), 9, "{events:?}");
    // The reset answers the SYN: its packet is the SYN, to port 9.
    assert_eq!(count("tcp_send_reset", &to_port_9), 9, "{events:?}");
    assert_eq!(
        count("inet_sock_set_state", &|e| to_port_9(e)
            && e["oldstate"] == "SYN_SENT"
            && e["newstate"] == "CLOSE"),
        9
    );
    assert_eq!(
        count("kfree_skb", &|e| to_port_9(e) && e["reason"] == "NO_SOCKET"),
        9,
        "{events:?}"
    );
    assert_eq!(
        count("net_dev_queue", &|_| true),
        0,
        "a tracepoint without a flow gives no events"
    );

    // Named like a function, a tracepoint is pointed to its spelling; and
    // a tracepoint has no return value or latency.
    let out = run(None, &["kprobe", "tcp_probe"]);
    common::process::expect_error(&out, 2, "for the tracepoint, name it tp:tcp_probe");
    let out = run(None, &["kprobe", "tp:tcp_probe", "--latency"]);
    common::process::expect_error(
        &out,
        2,
        "tp:tcp_probe is a tracepoint, counted by calls only",
    );
}

/// `--port` filters the flow events of a tracepoint as it does connect
/// events; the calls are still all counted. Refused connects to port 19
/// come first, so an event that slipped through would be among the first 9.
#[test]
fn port_filters_tracepoint_flow_events() {
    common::require_root();
    let looper = connect_loop();
    let mut np = Running::start(
        None,
        &[
            "kprobe",
            "tp:tcp_receive_reset",
            "--port",
            "9",
            "-u",
            "4244",
            "--json",
        ],
    );
    for port in ["19", "9"] {
        let status = Command::new("setpriv")
            .args(["--reuid=4244", "--regid=4244", "--clear-groups"])
            .arg(&looper)
            .args(["9", port])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let _ = std::fs::remove_file(&looper);
    let events = self::events_of(&mut np, 9);
    assert!(
        events.iter().all(|e| e["dport"] == 9 && e["uid"] == 4244),
        "{events:?}"
    );
    let (code, last) = np.stop(Signal::SIGINT);
    assert_eq!(code, Some(0));
    let last = last.unwrap();
    assert_eq!(
        last["functions"]["tp:tcp_receive_reset"]["calls"], 18,
        "{last}"
    );
    assert_eq!(last["events_lost"], 0, "{last}");
}

/// The next `n` event lines on stdout (any tracepoint), in order.
fn events_of(np: &mut Running, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} events: {out:?}",
            out.len()
        );
        if let Some(v) = np.next_json(Duration::from_secs(1)) {
            if v.get("event").is_some() {
                out.push(v);
            }
        }
    }
    out
}

/// SYNs to a host that never answers are retransmitted after a second: three
/// connects from a namespace of the test's own, each given 1.6 s, are three
/// tcp_retransmit_skb events with their flow (the timer that retransmits runs
/// in no process's name, so the namespace tells them apart).
#[test]
fn retransmissions_are_events_with_their_flow() {
    common::require_root();
    let net = Pair::quiet();
    net.a
        .sh(&["ip", "addr", "add", "198.18.0.1/24", "dev", &net.a_if]);
    net.a.sh(&[
        "ip",
        "neigh",
        "add",
        "198.18.0.2",
        "lladdr",
        "02:00:00:00:00:0b",
        "nud",
        "permanent",
        "dev",
        &net.a_if,
    ]);
    let np = Running::start(None, &["kprobe", "tp:tcp_retransmit_skb", "--json"]);
    let ns = net.a.name.clone();
    let connects: Vec<_> = (0..3)
        .map(|_| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let nsfile = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
                nix::sched::setns(&nsfile, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let to = std::net::SocketAddr::from(([198, 18, 0, 2], 80));
                let refused =
                    std::net::TcpStream::connect_timeout(&to, Duration::from_millis(1600));
                assert!(refused.is_err(), "nothing answers");
            })
        })
        .collect();
    for c in connects {
        c.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = np.finish_after(Signal::SIGINT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let netns = netns_inode(&net.a);
    let ours: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "tcp_retransmit_skb" && e["netns"] == netns)
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    for e in &ours {
        assert_eq!(e["saddr"], "198.18.0.1", "{e}");
        assert_eq!(e["daddr"], "198.18.0.2", "{e}");
        assert_eq!(e["dport"], 80, "{e}");
    }
}
