//! `--prometheus`: a real Prometheus server scrapes netprobe while frames
//! cross a veth pair, until its query API shows exactly what was sent;
//! promtool accepts the page; idle and many clients do not stall anything.
mod common;

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::frames::*;
use common::netns::{send_frames, Netns, Pair};
use common::process::Running;
use nix::sys::signal::Signal;
use serde_json::Value;

/// A Prometheus server inside `ns`, scraping `target` every second.
struct PrometheusServer {
    child: Child,
    dir: std::path::PathBuf,
}

impl PrometheusServer {
    fn start(ns: &Netns, target: &str) -> PrometheusServer {
        PrometheusServer::start_with(
            ns,
            &format!(
                "  - job_name: netprobe\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
    }

    /// A server with these `scrape_configs` entries; the text may name
    /// files in the server's own directory as `DIR/`.
    fn start_with(ns: &Netns, scrape_configs: &str) -> PrometheusServer {
        let dir = std::env::temp_dir().join(common::netns::unique("prom"));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{}",
                scrape_configs.replace("DIR/", &format!("{}/", dir.display()))
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        PrometheusServer { child, dir }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn curl(ns: &Netns, url: &str) -> Option<String> {
    let out = ns.sh_status(&["curl", "-s", "--max-time", "3", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of a PromQL query, once Prometheus has one.
fn query(ns: &Netns, promql: &str) -> Option<u64> {
    let url = format!(
        "http://127.0.0.1:9090/api/v1/query?query={}",
        promql
            .replace(' ', "%20")
            .replace('"', "%22")
            .replace('{', "%7B")
            .replace('}', "%7D")
    );
    let v: Value = serde_json::from_str(&curl(ns, &url)?).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn metrics_addr(np: &Running) -> String {
    let line = np
        .stderr_seen
        .iter()
        .find(|l| l.contains("serving metrics at"))
        .expect("metrics line");
    line.split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/metrics")
        .to_string()
}

#[test]
fn prometheus_scrapes_exact_counts() {
    common::require_root();
    let net = Pair::quiet();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--drop",
            "udp and dst port 9",
            "--prometheus",
            "127.0.0.1:0",
            "--json",
            "--interval",
            "200ms",
        ],
    );
    let addr = metrics_addr(&np);
    let _server = PrometheusServer::start(&net.b, &addr);
    send_frames(
        &net.a.name,
        &net.a_if,
        &[
            (udp4_frame(9, 18), 40),
            (udp4_frame(10, 18), 15),
            (arp_frame(), 6),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    let want = [
        (r#"sum(netprobe_packets_total{proto="udp"})"#, 55),
        (r#"netprobe_packets_total{proto="udp",verdict="drop"}"#, 40),
        (r#"netprobe_packets_total{proto="arp",verdict="pass"}"#, 6),
        (r#"netprobe_rule_hits_total{rule="udp and dst port 9"}"#, 40),
        (r#"netprobe_info{hook="xdp",mode="native"}"#, 1),
    ];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen = want.iter().map(|(q, _)| query(&net.b, q)).collect();
        if seen.iter().zip(&want).all(|(got, (_, n))| *got == Some(*n)) {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    for (got, (q, n)) in seen.iter().zip(&want) {
        assert_eq!(*got, Some(*n), "{q}");
    }
    let page = curl(&net.b, &format!("http://{addr}/metrics")).expect("metrics page");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Normal output went on beside the exporter.
    assert!(np.next_json(Duration::from_secs(2)).is_some());
    np.stop(Signal::SIGINT);
}

#[test]
fn idle_and_many_clients_stall_nothing() {
    common::require_root();
    let net = Pair::quiet();
    let mut np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--prometheus",
            "127.0.0.1:0",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    let addr = metrics_addr(&np);
    // 200 clients that connect and say nothing, from inside B.
    let ns = net.b.name.clone();
    let target = addr.clone();
    let idle = thread::spawn(move || {
        let nsfile = fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&nsfile, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let conns: Vec<TcpStream> = (0..200)
            .filter_map(|_| TcpStream::connect(&target).ok())
            .collect();
        thread::sleep(Duration::from_secs(3));
        conns.len()
    });
    thread::sleep(Duration::from_millis(500));
    // The polling loop keeps its pace...
    let start = Instant::now();
    for _ in 0..5 {
        np.next_json(Duration::from_secs(2))
            .expect("JSON lines keep coming");
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "polling slowed: {:?}",
        start.elapsed()
    );
    // ...and a real scrape is answered within the idle clients' timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut page = None;
    while page.is_none() && Instant::now() < deadline {
        page = curl(&net.b, &format!("http://{addr}/metrics"))
            .filter(|p| p.contains("netprobe_packets_total"));
    }
    assert!(
        page.is_some(),
        "no scrape answered while idle clients were connected"
    );
    assert!(idle.join().unwrap() > 0);
    let (code, _) = np.stop(Signal::SIGINT);
    assert_eq!(code, Some(0));
}

/// Holds `n` connections to `target` from inside `ns` that say nothing;
/// with `reopen`, each one the server closes is opened again at once, until
/// `stop`. Returns how many connections it opened in all.
fn idle_clients(
    ns: String,
    target: String,
    n: usize,
    reopen: bool,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let nsfile = fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&nsfile, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let open = || {
            let c = TcpStream::connect(&target).unwrap();
            c.set_nonblocking(true).unwrap();
            c
        };
        let mut conns: Vec<TcpStream> = (0..n).map(|_| open()).collect();
        let mut opened = n;
        while !stop.load(Ordering::SeqCst) {
            if reopen {
                for c in conns.iter_mut() {
                    let mut buf = [0u8; 64];
                    let closed = match c.read(&mut buf) {
                        Ok(n) => n == 0,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    if closed {
                        *c = open();
                        opened += 1;
                    }
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
        opened
    })
}

/// 64 clients that connect, say nothing, and reconnect as soon as the
/// server closes them: every one of 80 scrapes is answered. Then 70 idle
/// clients opened at once: scrapes go on being answered, with no outage.
#[test]
fn idle_clients_never_shut_out_a_scraper() {
    common::require_root();
    let net = Pair::quiet();
    let np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--prometheus",
            "127.0.0.1:0",
            "--quiet",
            "--interval",
            "100ms",
        ],
    );
    let addr = metrics_addr(&np);
    let url = format!("http://{addr}/metrics");
    for (n, reopen, scrapes) in [(64, true, 80), (70, false, 30)] {
        let stop = Arc::new(AtomicBool::new(false));
        let idle = idle_clients(
            net.b.name.clone(),
            addr.clone(),
            n,
            reopen,
            Arc::clone(&stop),
        );
        thread::sleep(Duration::from_millis(300));
        // Spread over twice the server's 2 s client timeout, so that idle
        // clients are closed and come back meanwhile.
        let answered = (0..scrapes)
            .filter(|_| {
                thread::sleep(Duration::from_millis(50));
                curl(&net.b, &url).is_some_and(|p| p.contains("netprobe_packets_total"))
            })
            .count();
        stop.store(true, Ordering::SeqCst);
        let opened = idle.join().unwrap();
        assert_eq!(
            answered, scrapes,
            "{n} idle clients (reopened: {reopen}, {opened} connections in all)"
        );
        if reopen {
            assert!(opened > n, "the server never closed an idle client");
        }
    }
    let out = np.finish_after(Signal::SIGINT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// An address other than loopback says the metrics are reachable from the
/// network; an address that is not one is refused without a DNS look-up.
#[test]
fn metrics_addresses_say_where_they_reach() {
    common::require_root();
    let net = Pair::quiet();
    let out = common::process::run(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--prometheus",
            "0.0.0.0:0",
            "--quiet",
            "--duration",
            "0.3",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the metrics are reachable from the network"),
        "{}",
        out.stderr
    );
    let out = common::process::run(
        Some(&net.b.name),
        &["xdp", &net.b_if, "--prometheus", "256.0.0.1:80"],
    );
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("'256.0.0.1:80' is not an address like"),
        "{}",
        out.stderr
    );
}

/// Waits (30 s at most) until `promql` has the value `want`; returns the
/// last value seen.
fn wait_for_value(ns: &Netns, promql: &str, want: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        last = query(ns, promql);
        if last == Some(want) {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    last
}

/// Ten nodes, each a namespace with its own traffic and its own netprobe,
/// found by one Prometheus server through file-based service discovery: the
/// fleet's sum is exactly the frames sent to all nodes, and a node killed
/// with SIGKILL shows as `up == 0` while the others keep reporting.
#[test]
fn a_fleet_of_ten_scraped_by_one_prometheus() {
    common::require_root();
    const NODES: usize = 10;
    let monitor = Netns::new();
    let nodes: Vec<Pair> = (0..NODES).map(|_| Pair::addressed()).collect();
    let mut targets = Vec::new();
    let mut netprobes = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        // A management link from the monitor to the node, a /24 each.
        let (m_if, n_if) = (common::netns::unique("fm"), common::netns::unique("fn"));
        common::netns::link_veth(&monitor, &m_if, &node.b, &n_if);
        monitor.sh(&[
            "ip",
            "addr",
            "add",
            &format!("198.19.{i}.1/24"),
            "dev",
            &m_if,
        ]);
        node.b.sh(&[
            "ip",
            "addr",
            "add",
            &format!("198.19.{i}.2/24"),
            "dev",
            &n_if,
        ]);
        let listen = format!("198.19.{i}.2:9435");
        netprobes.push(Running::start(
            Some(&node.b.name),
            &[
                "xdp",
                &node.b_if,
                "--mode",
                "skb",
                "--prometheus",
                &listen,
                "--quiet",
                "--interval",
                "200ms",
            ],
        ));
        targets.push(format!("\"{listen}\""));
    }
    let server = PrometheusServer::start_with(
        &monitor,
        "  - job_name: fleet\n    file_sd_configs:\n      - files: ['DIR/targets.json']\n        refresh_interval: 1s\n",
    );
    fs::write(
        server.dir.join("targets.json"),
        format!(
            "[{{\"targets\": [{}], \"labels\": {{\"fleet\": \"test\"}}}}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    // Node i gets 10 * (i + 1) UDP frames: 550 in all.
    let mut total = 0;
    for (i, node) in nodes.iter().enumerate() {
        let n = 10 * (i + 1);
        send_frames(&node.a.name, &node.a_if, &[(udp4_frame(9, 18), n)]);
        total += n as u64;
    }
    let sum = r#"sum(netprobe_packets_total{job="fleet",proto="udp"})"#;
    assert_eq!(wait_for_value(&monitor, sum, total), Some(total));
    assert_eq!(
        wait_for_value(&monitor, r#"count(up{job="fleet"} == 1)"#, NODES as u64),
        Some(NODES as u64)
    );
    // Node 3 dies without a word; the others keep reporting.
    let dead = netprobes.remove(3);
    dead.signal(Signal::SIGKILL);
    drop(dead);
    assert_eq!(
        wait_for_value(&monitor, r#"up{job="fleet",instance="198.19.3.2:9435"}"#, 0),
        Some(0)
    );
    assert_eq!(
        wait_for_value(&monitor, r#"count(up{job="fleet"} == 1)"#, 9),
        Some(9)
    );
    send_frames(&nodes[0].a.name, &nodes[0].a_if, &[(udp4_frame(9, 18), 5)]);
    let alive =
        r#"sum(netprobe_packets_total{job="fleet",proto="udp",instance!="198.19.3.2:9435"})"#;
    assert_eq!(
        wait_for_value(&monitor, alive, total - 40 + 5),
        Some(total - 40 + 5)
    );
    for np in netprobes {
        let (code, _) = np.stop(Signal::SIGTERM);
        assert_eq!(code, Some(0));
    }
    for node in &nodes {
        assert!(!common::netns::has_xdp(&node.b.name, &node.b_if));
    }
}

#[test]
fn quiet_prints_nothing_and_a_busy_port_is_refused() {
    common::require_root();
    let net = Pair::quiet();
    let np = Running::start(
        Some(&net.b.name),
        &[
            "xdp",
            &net.b_if,
            "--prometheus",
            "127.0.0.1:9500",
            "--quiet",
            "--interval",
            "100ms",
        ],
    );
    // The same port again: refused before anything attaches.
    let out = common::process::run(
        Some(&net.b.name),
        &[
            "sockfilter",
            "--counts-only",
            "--prometheus",
            "127.0.0.1:9500",
        ],
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("--prometheus: cannot listen on 127.0.0.1:9500"),
        "{}",
        out.stderr
    );
    let out = np.finish_after(Signal::SIGINT);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.is_empty(), "--quiet printed: {}", out.stdout);
}
