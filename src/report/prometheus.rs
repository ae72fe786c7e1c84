//! `--prometheus ADDR`: every snapshot also becomes a Prometheus text
//! exposition, served at `/metrics` from threads of their own.
//!
//! The polling loop only swaps in a new encoded page (one pointer under a
//! lock); clients never touch the BPF maps or the loop. Each connection gets
//! its own thread with short read and write timeouts, and connections over
//! the cap are closed at once, so a client that connects and says nothing,
//! or many at once, cannot stall anything.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use super::snapshot::{Snapshot, Source};

/// Connections served at once; more are closed on accept.
const MAX_CLIENTS: usize = 64;
/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read.
const MAX_REQUEST: usize = 8192;

pub struct Exporter {
    page: Arc<Mutex<Arc<String>>>,
    pub addr: SocketAddr,
}

impl Exporter {
    /// Binds now, so that a busy port is an error before anything attaches.
    pub fn bind(addr: SocketAddr) -> Result<Exporter> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("--prometheus: cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let page = Arc::new(Mutex::new(Arc::new(String::new())));
        let served = Arc::clone(&page);
        let clients = Arc::new(AtomicUsize::new(0));
        thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    if clients.load(Ordering::SeqCst) >= MAX_CLIENTS {
                        continue; // dropped: closed at once
                    }
                    clients.fetch_add(1, Ordering::SeqCst);
                    let page = Arc::clone(&served);
                    let counted = Arc::clone(&clients);
                    let spawned =
                        thread::Builder::new()
                            .name("metrics-client".into())
                            .spawn(move || {
                                let _ = serve(stream, &page);
                                counted.fetch_sub(1, Ordering::SeqCst);
                            });
                    if spawned.is_err() {
                        // No thread for it: the stream was dropped with the closure.
                        clients.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })
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

fn serve(mut stream: TcpStream, page: &Mutex<Arc<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
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
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
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
        Source::Kprobe { backend } => ("kprobe", "", "", *backend),
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
