use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use netprobe::console;
use netprobe::error::one_line;

/// Lines of the verifier's log shown under a failed load.
const VERIFIER_LINES: usize = 15;

fn main() -> ExitCode {
    let cli = match netprobe::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        // A command-line mistake keeps clap's layout: the error, a tip on a
        // line of its own, the usage. Errors found later are one line.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    match netprobe::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain joined by ": ".
            let message = format!("{e:#}");
            console::note(one_line(&message));
            // A program the verifier rejected: the end of its log says why.
            if message.contains("loading the") {
                for line in netprobe::kernel::libbpf_log::verifier_log_tail(VERIFIER_LINES) {
                    console::note(format!("verifier: {line}"));
                }
            }
            if e.downcast_ref::<netprobe::error::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
