//! netprobe: eBPF programs on the Linux network path, with exact live counters.
//!
//! Layers, each importing only those below it:
//! - [`cli`]: the flags, their values and their documentation;
//! - the commands: one module per hook ([`xdp`], [`sockfilter`], [`kprobe`]),
//!   each owning load, attach, read and detach of its programs, and
//!   [`check`] for `check` and `list`;
//! - [`session`]: the run loop every hook shares, from ticks and signals to
//!   printed snapshots;
//! - [`report`]: snapshots and one printer per format (table, JSON,
//!   Prometheus, pcap);
//! - [`filter`]: the rule language, its compiler and the BPF tables it fills;
//! - [`capture`]: pcap and pcapng, read for `--replay` and written for `-w`;
//! - [`kernel`] and [`skel`]: what the kernel offers and how to ask, and the
//!   generated BPF skeletons;
//! - [`error`] and [`console`]: the usage error and the one-line form of
//!   every error; writes to stdout and stderr that never panic.
//!
//! Data flows one way: the command line configures a probe, whose counters
//! become a [`report::Snapshot`] that a printer shows.
pub mod capture;
pub mod check;
pub mod cli;
pub mod console;
pub mod error;
pub mod filter;
pub mod kernel;
pub mod kprobe;
pub mod report;
pub mod session;
pub mod skel;
pub mod sockfilter;
pub mod xdp;

use anyhow::Result;
use libbpf_rs::PrintLevel;

use cli::{Cli, Command, LogLevel};

/// Runs one command line; the caller prints the error and picks the exit code.
pub fn run(cli: &Cli) -> Result<()> {
    // libbpf prints multi-line diagnostics of its own; unless asked for with
    // -v or --log-level, errors reach the user through netprobe's one line
    // instead, and the log is kept to show the verifier's reasons when a load
    // fails.
    kernel::libbpf_log::install(match cli.log_level() {
        LogLevel::Off => None,
        LogLevel::Warn => Some(PrintLevel::Warn),
        LogLevel::Info => Some(PrintLevel::Info),
        LogLevel::Debug => Some(PrintLevel::Debug),
    });
    match &cli.command {
        Command::Xdp(args) => xdp::run(args),
        Command::Sockfilter(args) => sockfilter::run(args),
        Command::Kprobe(args) => kprobe::run(args),
        Command::List(args) => check::list(args),
        Command::Check(args) => check::check(args),
        Command::Completions(args) => {
            // Generated whole first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            cli::docs::completions(args.shell, &mut script);
            console::print(&String::from_utf8_lossy(&script))
        }
        Command::Manpages(args) => cli::docs::manpages(&args.dir),
    }
}
