//! netprobe: eBPF programs on the Linux network path, with exact live counters.
//!
//! Data flows one way: the command line ([`cli`]) configures a probe (one
//! module per hook, e.g. [`xdp`]), whose counters become a
//! [`output::Snapshot`] that one printer per format shows.
pub mod bpf_stats;
pub mod check;
pub mod cli;
pub mod counters;
pub mod decode;
pub mod kprobe;
pub mod metrics;
pub mod netdev;
pub mod output;
pub mod packet_socket;
pub mod pcap;
pub mod privilege;
pub mod rulemaps;
pub mod rules;
pub mod runloop;
pub mod session;
pub mod skel;
pub mod sockfilter;
pub mod xdp;

use anyhow::Result;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use cli::{Cli, Command, LogLevel};

/// libbpf's recent messages, kept to explain a failed load.
static LIBBPF_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Lines of libbpf's log kept at most.
const LIBBPF_LOG_LINES: usize = 4000;
/// The `cli::LogLevel` in force, as its discriminant.
static LOG_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Off as u8);

fn print_libbpf(level: libbpf_rs::PrintLevel, message: String) {
    let needed = match level {
        libbpf_rs::PrintLevel::Warn => LogLevel::Warn,
        libbpf_rs::PrintLevel::Info => LogLevel::Info,
        libbpf_rs::PrintLevel::Debug => LogLevel::Debug,
    };
    if LOG_LEVEL.load(Ordering::Relaxed) >= needed as u8 {
        // libbpf prefixes its own messages with "libbpf: ".
        eprint!("{message}");
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.extend(message.lines().map(str::to_string));
        let excess = log.len().saturating_sub(LIBBPF_LOG_LINES);
        log.drain(..excess);
    }
}

/// The last `n` lines of the verifier's log of the most recent failed load,
/// if libbpf printed one.
pub fn verifier_log_tail(n: usize) -> Vec<String> {
    let log = LIBBPF_LOG.lock().map(|l| l.clone()).unwrap_or_default();
    verifier_tail(&log, n)
}

fn verifier_tail(log: &[String], n: usize) -> Vec<String> {
    let Some(end) = log
        .iter()
        .rposition(|l| l.contains("-- END PROG LOAD LOG --"))
    else {
        return Vec::new();
    };
    let begin = log[..end]
        .iter()
        .rposition(|l| l.contains("-- BEGIN PROG LOAD LOG --"))
        .map_or(0, |b| b + 1);
    let body: Vec<String> = log[begin..end]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .cloned()
        .collect();
    body[body.len().saturating_sub(n)..].to_vec()
}

/// Runs one command line; the caller prints the error and picks the exit code.
pub fn run(cli: &Cli) -> Result<()> {
    // libbpf prints multi-line diagnostics of its own; unless asked for with
    // -v or --log-level, errors reach the user through netprobe's one line
    // instead, and the log is kept to show the verifier's reasons when a load
    // fails.
    let level = cli.log_level();
    LOG_LEVEL.store(level as u8, Ordering::Relaxed);
    let collect = if level == LogLevel::Debug {
        libbpf_rs::PrintLevel::Debug
    } else {
        libbpf_rs::PrintLevel::Info
    };
    libbpf_rs::set_print(Some((collect, print_libbpf as libbpf_rs::PrintCallback)));
    match &cli.command {
        Command::Xdp(args) => xdp::run(args),
        Command::Sockfilter(args) => sockfilter::run(args),
        Command::Kprobe(args) => kprobe::run(args),
        Command::List(args) => check::list(args),
        Command::Check(args) => check::check(args),
        Command::Completions(args) => {
            cli::completions(args.shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Manpages(args) => cli::manpages(&args.dir),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifier_tail_is_the_end_of_the_last_load_log() {
        let log: Vec<String> = [
            "libbpf: prog 'x': BPF program load failed: Permission denied",
            "libbpf: prog 'x': -- BEGIN PROG LOAD LOG --",
            "0: R1=ctx() R10=fp0",
            "1: (79) r2 = *(u64 *)(r1 +8)",
            "invalid access to packet, off=0 size=4, R2(id=0,off=0,r=0)",
            "processed 2 insns (limit 1000000)",
            "-- END PROG LOAD LOG --",
            "libbpf: prog 'x': failed to load: -13",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            super::verifier_tail(&log, 2),
            vec![
                "invalid access to packet, off=0 size=4, R2(id=0,off=0,r=0)",
                "processed 2 insns (limit 1000000)"
            ]
        );
        assert!(
            super::verifier_tail(&log[..3], 5).is_empty(),
            "no END marker: no tail"
        );
    }
}
