//! `netprobe xdp --replay FILE`: the XDP program, loaded with the same
//! rules and actions as a live run, over the frames of a capture.
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use anyhow::Result;

use super::loaded::{Loaded, Setup};
use super::program::program;
use crate::capture::read::{CaptureReader, Frame};
use crate::capture::write::CaptureFile;
use crate::cli::XdpArgs;
use crate::console;
use crate::kernel::counters::Stats;
use crate::kernel::privilege;
use crate::kernel::test_run::RunResult;
use crate::report::{Snapshot, Source};
use crate::session::replay::{self, Replay};
use crate::session::{Moment, Reporting};

/// XDP verdicts that leave the frame alive: pass, tx, redirect.
const XDP_DROP: u32 = 1;
const XDP_ABORTED: u32 = 0;

struct XdpReplay<'obj> {
    loaded: Loaded<'obj>,
    file: String,
    passed: Option<CaptureFile>,
    dropped: Option<CaptureFile>,
}

impl Replay for XdpReplay<'_> {
    fn program(&self) -> RawFd {
        program(&self.loaded.skel).as_fd().as_raw_fd()
    }

    fn keeps_output(&self) -> bool {
        self.passed.is_some() || self.dropped.is_some()
    }

    fn take(&mut self, frame: &Frame, result: RunResult, out: &[u8]) -> Result<bool> {
        let to = if matches!(result.retval, XDP_DROP | XDP_ABORTED) {
            &mut self.dropped
        } else {
            &mut self.passed
        };
        if let Some(file) = to {
            // The length on the wire changes as much as the program changed it.
            let orig_len = (frame.orig_len as usize + out.len()).saturating_sub(frame.data.len());
            if let Err(e) = file.write(frame.time, orig_len as u32, out) {
                return Err(file.failed(e));
            }
        }
        Ok(true)
    }

    fn source(&self) -> Source {
        Source::XdpReplay {
            replay: self.file.clone(),
        }
    }

    fn snapshot(&mut self, at: Moment, before: &Stats) -> Result<(Snapshot, Stats)> {
        self.loaded.snapshot(at, before)
    }

    fn finish(&mut self) -> Result<()> {
        for file in [&mut self.passed, &mut self.dropped].into_iter().flatten() {
            if let Err(e) = file.flush() {
                return Err(file.failed(e));
            }
        }
        Ok(())
    }
}

/// Opens an output for `--write-passed` / `--write-dropped`.
fn output(path: Option<&Path>) -> Result<Option<CaptureFile>> {
    path.map(|p| CaptureFile::create(p, 0)).transpose()
}

pub fn run(args: &XdpArgs, file: &Path) -> Result<()> {
    // Everything the user gave is checked before anything is loaded.
    let setup = Setup::check(args, args.iface.as_deref())?;
    // Loading an XDP program takes CAP_NET_ADMIN, attached or not.
    privilege::require("netprobe xdp --replay", &privilege::XDP)?;
    let mut reader = CaptureReader::open(file)?;
    let passed = output(args.write_passed.as_deref())?;
    let dropped = output(args.write_dropped.as_deref())?;
    let reporting = Reporting::new(&args.output, true, false)?;
    let mut storage = MaybeUninit::uninit();
    let loaded = Loaded::load(&mut storage, args, setup)?;
    console::note(format!(
        "replaying {}{}",
        reader.name(),
        match loaded.rules.len() {
            0 => String::new(),
            n => format!(" through {}", console::count(n as u64, "rule")),
        }
    ));
    let mut probe = XdpReplay {
        loaded,
        file: reader.name().to_string(),
        passed,
        dropped,
    };
    replay::run(&mut reader, &mut probe, reporting, args.output.interval)
}
