use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = netprobe::cli::Cli::parse();
    match netprobe::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain joined by ": ".
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("netprobe: {line}");
            ExitCode::FAILURE
        }
    }
}
