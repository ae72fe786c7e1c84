//! `--prometheus ADDR`: every snapshot also becomes a Prometheus text
//! exposition, served at `/metrics` by one thread of its own.
//!
//! The polling loop only swaps in a new encoded page (one pointer under a
//! lock); clients never touch the BPF maps or the loop. The server is one
//! poll(2) loop over non-blocking sockets: a client that connects and says
//! nothing costs a slot, not a thread. Every client has [`CLIENT_TIMEOUT`] to
//! send its request and read the answer. When all [`MAX_CLIENTS`] slots are
//! taken, a new connection takes the slot of the client that has waited
//! longest, so a real scraper gets through whatever idle clients do.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use super::snapshot::{Snapshot, Source};

/// Connections held at once.
const MAX_CLIENTS: usize = 256;
/// How long a client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read.
const MAX_REQUEST: usize = 8192;

/// The page the next scrape gets.
type Page = Arc<Mutex<Arc<String>>>;

pub struct Exporter {
    page: Page,
    pub addr: SocketAddr,
}

impl Exporter {
    /// Binds now, so that a busy port is an error before anything attaches.
    pub fn bind(addr: SocketAddr) -> Result<Exporter> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("--prometheus: cannot listen on {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let page: Page = Arc::new(Mutex::new(Arc::new(String::new())));
        let served = Arc::clone(&page);
        thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(listener, &served))
            .context("starting the metrics server")?;
        Ok(Exporter { page, addr })
    }

    /// Makes `snapshot` what the next scrape sees.
    pub fn publish(&self, snapshot: &Snapshot) -> Result<()> {
        let text = Arc::new(encode(snapshot)?);
        *self
            .page
            .lock()
            .map_err(|_| anyhow!("metrics page lock poisoned"))? = text;
        Ok(())
    }
}

/// One connection: reading its request head, then writing the answer.
struct Client {
    stream: TcpStream,
    accepted: Instant,
    head: Vec<u8>,
    /// The answer, once the head is in; `sent` bytes of it are written.
    answer: Option<Vec<u8>>,
    sent: usize,
}

impl Client {
    /// Reads or writes what the socket allows now; false when it is done
    /// (answered, closed by the peer, or broken).
    fn advance(&mut self, page: &Page) -> bool {
        if self.answer.is_none() {
            let mut buf = [0u8; 1024];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => self.head.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
                if self.head.windows(4).any(|w| w == b"\r\n\r\n") || self.head.len() >= MAX_REQUEST
                {
                    self.answer = Some(answer(&self.head, page));
                    break;
                }
            }
        }
        let Some(answer) = &self.answer else {
            return true;
        };
        while self.sent < answer.len() {
            match self.stream.write(&answer[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// The whole HTTP answer to a request head.
fn answer(head: &[u8], page: &Page) -> Vec<u8> {
    let line = String::from_utf8_lossy(head);
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) = if !line.starts_with("GET ") {
        (
            "405 Method Not Allowed",
            "text/plain",
            Arc::new("only GET\n".to_string()),
        )
    } else if target == "/metrics" {
        let page = page.lock().map(|p| Arc::clone(&p)).unwrap_or_default();
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", page)
    } else if target == "/" {
        (
            "200 OK",
            "text/plain",
            Arc::new("netprobe: metrics at /metrics\n".to_string()),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            Arc::new("not found\n".to_string()),
        )
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The server loop; runs until the process ends.
fn serve(listener: TcpListener, page: &Page) {
    let mut clients: Vec<Client> = Vec::new();
    loop {
        let mut fds = Vec::with_capacity(clients.len() + 1);
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        for c in &clients {
            let want = if c.answer.is_some() {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push(PollFd::new(c.stream.as_fd(), want));
        }
        // Wake at least every 100 ms to expire slow clients.
        if poll(&mut fds, PollTimeout::from(100u16)).is_err() {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        // Clients first, so that slots freed now are free for new ones.
        let now = Instant::now();
        let mut i = 0;
        let mut keep = Vec::with_capacity(clients.len());
        for mut c in clients.drain(..) {
            i += 1;
            let alive = if ready[i] { c.advance(page) } else { true };
            if alive && now.duration_since(c.accepted) < CLIENT_TIMEOUT {
                keep.push(c);
            }
        }
        clients = keep;
        if ready[0] {
            accept_all(&listener, &mut clients, page);
        }
    }
}

/// Accepts every pending connection; over the cap, the client that has
/// waited longest gives up its slot.
fn accept_all(listener: &TcpListener, clients: &mut Vec<Client>, page: &Page) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        if clients.len() >= MAX_CLIENTS {
            // Accept order is age order: the first is the oldest.
            clients.remove(0);
        }
        let mut client = Client {
            stream,
            accepted: Instant::now(),
            head: Vec::new(),
            answer: None,
            sent: 0,
        };
        // A request often arrives with the connection: answer it at once.
        if client.advance(page) {
            clients.push(client);
        }
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// The text exposition of one snapshot. Counters carry the totals since
/// attach; a fresh registry per snapshot keeps them exact.
pub fn encode(s: &Snapshot) -> Result<String> {
    let registry = Registry::new();
    let (hook, iface, mode, backend) = match &s.source {
        Source::Xdp { iface, mode } => ("xdp", iface.as_str(), *mode, ""),
        Source::Sockfilter { iface } => ("sockfilter", iface.as_str(), "", ""),
        Source::XdpReplay { replay } => ("xdp", replay.as_str(), "replay", ""),
        Source::SockfilterReplay { replay } => ("sockfilter", replay.as_str(), "replay", ""),
        Source::Kprobe { backend } => ("kprobe", "", "", backend.as_str()),
    };
    let info = IntGaugeVec::new(
        Opts::new(
            "netprobe_info",
            "netprobe's version and what it is attached as; always 1",
        ),
        &["version", "hook", "mode", "backend"],
    )?;
    registry.register(Box::new(info.clone()))?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), hook, mode, backend])
        .set(1);

    if let Some(cells) = &s.by_protocol_verdict {
        let labels = ["hook", "iface", "proto", "verdict"];
        let packets = counter(
            &registry,
            "netprobe_packets_total",
            "Frames counted, per protocol class and verdict.",
            &labels,
        )?;
        let bytes = counter(
            &registry,
            "netprobe_bytes_total",
            "Bytes of the frames counted, per protocol class and verdict.",
            &labels,
        )?;
        for (proto, verdict, c) in cells {
            packets
                .with_label_values(&[hook, iface, proto, verdict])
                .inc_by(c.packets);
            bytes
                .with_label_values(&[hook, iface, proto, verdict])
                .inc_by(c.bytes);
        }
    }
    if let Some(rules) = &s.rules {
        let hits = counter(
            &registry,
            "netprobe_rule_hits_total",
            "Packets that matched each rule first.",
            &["hook", "rule", "action"],
        )?;
        for r in rules {
            hits.with_label_values(&[hook, &r.rule, r.action])
                .inc_by(r.packets);
        }
    }
    if let Some(functions) = &s.functions {
        let calls = counter(
            &registry,
            "netprobe_function_calls_total",
            "Calls of each traced kernel function.",
            &["function", "backend"],
        )?;
        for (name, f) in &functions.0 {
            calls
                .with_label_values(&[name.as_ref(), backend])
                .inc_by(f.calls);
        }
    }
    if let Some(lost) = s.events_lost {
        counter(
            &registry,
            "netprobe_events_lost_total",
            "Events dropped because the ring buffer was full.",
            &["hook"],
        )?
        .with_label_values(&[hook])
        .inc_by(lost);
    }
    if let Some(c) = &s.capture {
        let frames = counter(
            &registry,
            "netprobe_capture_frames_total",
            "Frames at each stage on the way to the capture.",
            &["stage"],
        )?;
        for (stage, n) in [
            ("seen", c.seen),
            ("matched", c.matched),
            ("delivered", c.delivered),
            ("socket_drops", c.socket_drops),
            ("captured", c.captured),
        ] {
            frames.with_label_values(&[stage]).inc_by(n);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}
