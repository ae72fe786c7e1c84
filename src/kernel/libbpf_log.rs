//! libbpf's own messages: shown on stderr as far as the user asked, and the
//! recent ones kept to explain a failed load with the verifier's reasons.
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use libbpf_rs::PrintLevel;

/// libbpf's recent messages, kept to explain a failed load.
static LIBBPF_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Lines of libbpf's log kept at most.
const LIBBPF_LOG_LINES: usize = 4000;
/// The most verbose level shown on stderr, as [`rank`]; 0 shows nothing.
static SHOWN: AtomicU8 = AtomicU8::new(0);

fn rank(level: PrintLevel) -> u8 {
    match level {
        PrintLevel::Warn => 1,
        PrintLevel::Info => 2,
        PrintLevel::Debug => 3,
    }
}

fn print_libbpf(level: PrintLevel, message: String) {
    if SHOWN.load(Ordering::Relaxed) >= rank(level) {
        // libbpf prefixes its own messages with "libbpf: ". A closed stderr
        // loses the line, never the run.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.extend(message.lines().map(str::to_string));
        let excess = log.len().saturating_sub(LIBBPF_LOG_LINES);
        log.drain(..excess);
    }
}

/// Routes libbpf's messages through netprobe: those up to `show` go to
/// stderr (`None`: none), and everything up to info, or debug when shown,
/// is kept for [`verifier_log_tail`].
pub fn install(show: Option<PrintLevel>) {
    SHOWN.store(show.map_or(0, rank), Ordering::Relaxed);
    let collect = if show.is_some_and(|l| rank(l) >= rank(PrintLevel::Debug)) {
        PrintLevel::Debug
    } else {
        PrintLevel::Info
    };
    libbpf_rs::set_print(Some((collect, print_libbpf as libbpf_rs::PrintCallback)));
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
