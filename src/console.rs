//! Writing to stdout and stderr without panicking: `println!` and
//! `eprintln!` panic when the other end of a pipe has gone. A closed stderr
//! loses netprobe's notes, never the run; a closed stdout is reported to the
//! caller, which ends the run cleanly as tcpdump does under `| head`.
use std::fmt::Display;
use std::io::{self, Write};

/// One `netprobe: MESSAGE` line on stderr.
pub fn note(message: impl Display) {
    let _ = writeln!(io::stderr().lock(), "netprobe: {message}");
}

/// The whole output of a one-shot command (`list`, `check`, completions)
/// on stdout: a reader that went away early is no error, a full disk is.
pub fn print(text: &str) -> anyhow::Result<()> {
    match out(text) {
        Err(e) if reader_gone(&e) => Ok(()),
        other => anyhow::Context::context(other, "writing to stdout"),
    }
}

/// `text` on stdout, flushed.
pub fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// `1 rule`, `2 rules`: a count and its noun, in the plural unless one.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Whether a failed write means only that the reader went away.
pub fn reader_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_read_as_words() {
        assert_eq!(super::count(1u64, "rule"), "1 rule");
        assert_eq!(super::count(0u64, "rule"), "0 rules");
        assert_eq!(super::count(404u64, "function"), "404 functions");
    }
}
