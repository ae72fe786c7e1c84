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

use cli::{Cli, Command};

fn print_libbpf(_level: libbpf_rs::PrintLevel, message: String) {
    eprint!("libbpf: {message}");
}

/// Runs one command line; the caller prints the error and picks the exit code.
pub fn run(cli: &Cli) -> Result<()> {
    // libbpf prints multi-line diagnostics of its own; unless asked for with
    // -v, errors reach the user through netprobe's one line instead.
    let level = match cli.verbose {
        0 => None,
        1 => Some(libbpf_rs::PrintLevel::Info),
        _ => Some(libbpf_rs::PrintLevel::Debug),
    };
    libbpf_rs::set_print(level.map(|l| (l, print_libbpf as libbpf_rs::PrintCallback)));
    match &cli.command {
        Command::Xdp(args) => xdp::run(args),
        Command::Sockfilter(args) => sockfilter::run(args),
        Command::Kprobe(args) => kprobe::run(args),
        Command::List(args) => check::list(args),
        Command::Check(args) => check::check(args),
    }
}
