//! The part of a run every hook shares: wait for a tick or a signal, take a
//! snapshot, print it; on stop, detach first and then print the final
//! summary, so that it includes every packet the program saw.
use std::io::{self, IsTerminal};
use std::os::fd::BorrowedFd;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Result};

pub mod replay;
pub mod runloop;

use runloop::{RunLoop, Wake};

use crate::cli::OutputArgs;
use crate::console;
use crate::report::prometheus::Exporter;
use crate::report::{self, Snapshot};

/// A loaded and attached probe.
pub trait Probe {
    /// Counts so far. Rates cover the time since the previous call; on the
    /// final snapshot they cover the whole run.
    fn snapshot(&mut self, is_final: bool) -> Result<Snapshot>;
    /// Removes the probe from its hook; counters stay readable.
    fn detach(&mut self);
    /// Why the probe no longer sees anything, if someone else removed it.
    fn lost(&self) -> Option<String>;
    /// SIGHUP: reload what can be reloaded and return true, or return false
    /// to end the run as for SIGTERM.
    fn hangup(&mut self) -> bool {
        false
    }
    /// An fd whose readability means the probe has events to read.
    fn event_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// The event fd is readable: read what is there. Returns false when the
    /// probe has had enough (a packet count reached).
    fn on_readable(&mut self) -> Result<bool> {
        Ok(true)
    }
}

/// Where snapshots go and when.
pub struct Reporting {
    pub json: bool,
    /// Print a snapshot at every interval, not just the final one.
    pub periodic: bool,
    /// Snapshots go to stderr, leaving stdout to the probe's own output.
    pub to_stderr: bool,
    /// Print no snapshots at all (`--quiet`).
    pub quiet: bool,
    /// Also serve every snapshot to Prometheus (`--prometheus`).
    pub exporter: Option<Exporter>,
}

impl Reporting {
    /// Starts the exporter if `--prometheus` asks for one: called by every
    /// hook before it attaches, so a busy port is an error before anything.
    pub fn new(args: &OutputArgs, periodic: bool, to_stderr: bool) -> Result<Reporting> {
        let exporter = args.prometheus.map(Exporter::bind).transpose()?;
        if let Some(e) = &exporter {
            console::note(format!("serving metrics at http://{}/metrics", e.addr));
            if !e.addr.ip().is_loopback() {
                console::note(format!(
                    "the metrics are reachable from the network on {}; --prometheus {} keeps \
                     them on this machine",
                    e.addr,
                    e.addr.port()
                ));
            }
        }
        Ok(Reporting {
            json: args.json,
            periodic,
            to_stderr,
            quiet: args.quiet,
            exporter,
        })
    }
}

impl Reporting {
    /// The printer for the chosen format and stream.
    pub fn printer(&self) -> Box<dyn report::Printer> {
        if self.to_stderr {
            let stderr = io::stderr();
            let terminal = stderr.is_terminal();
            report::printer(self.json, Box::new(stderr), terminal)
        } else {
            let stdout = io::stdout();
            let terminal = stdout.is_terminal();
            report::printer(self.json, Box::new(stdout), terminal)
        }
    }
}

/// Runs `probe` until Ctrl-C, SIGTERM, SIGHUP (unless the probe reloads on
/// it), `stop_after` or the probe's own end, printing as `reporting` says.
pub fn run(
    probe: &mut dyn Probe,
    runloop: &mut RunLoop,
    reporting: Reporting,
    stop_after: Option<Duration>,
) -> Result<()> {
    let mut printer = reporting.printer();
    runloop.start(stop_after);
    if let Some(exporter) = &reporting.exporter {
        // Scrapes before the first tick see zeros, not an empty page.
        exporter.publish(&probe.snapshot(false)?)?;
    }
    // Snapshots on stderr are notes beside the probe's own output: a closed
    // stderr stops them, not the run. On stdout they are the output: a
    // closed stdout ends the run as `| head` expects.
    let mut printing = !reporting.quiet;
    let mut lost = None;
    let outcome: Result<()> = loop {
        let wake = runloop.wait_with(probe.event_fd())?;
        match wake {
            Wake::Readable => match probe.on_readable() {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            },
            Wake::Tick => {
                let print = reporting.periodic && printing;
                if print || reporting.exporter.is_some() {
                    let snapshot = probe.snapshot(false)?;
                    if let Some(exporter) = &reporting.exporter {
                        exporter.publish(&snapshot)?;
                    }
                    if print {
                        match printer.print(&snapshot) {
                            Err(e) if console::reader_gone(&e) && reporting.to_stderr => {
                                printing = false
                            }
                            // A reader that went away (`| head`) is a normal way to stop.
                            Err(e) if console::reader_gone(&e) => {
                                printing = false;
                                break Ok(());
                            }
                            Err(e) => break Err(e.into()),
                            Ok(()) => {}
                        }
                    }
                }
                lost = probe.lost();
                if lost.is_some() {
                    break Ok(());
                }
            }
            Wake::Hangup if probe.hangup() => {}
            Wake::Hangup | Wake::Stop => break Ok(()),
        }
    };
    probe.detach();
    // The summary comes after a failure too: it says how far the run got.
    let summary = if printing {
        probe
            .snapshot(true)
            .and_then(|s| printer.print(&s).map_err(anyhow::Error::from))
    } else {
        Ok(())
    };
    outcome?;
    match summary {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(console::reader_gone) => {}
        other => other?,
    }
    lost.map_or(Ok(()), |why| Err(anyhow!(why)))
}

/// When a snapshot is taken, on the run's clock (the wall clock live, the
/// capture's in a replay).
pub struct Moment {
    pub source: report::Source,
    pub time: SystemTime,
    pub interval: Duration,
    pub elapsed: Duration,
    pub is_final: bool,
}

/// Seconds as f64, never zero, for rate division.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}
