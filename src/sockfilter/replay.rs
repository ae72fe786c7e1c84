//! `netprobe sockfilter --replay FILE`: the socket filter, loaded with the
//! same filter rules and snap length as a live capture, over the frames of
//! a capture; what it lets through is printed or written as a live capture
//! would (`-w`, `-c`, `--json`), trimmed to what the filter keeps.
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use anyhow::Result;

use super::loaded::{self, Delivery, Loaded};
use super::sink::{Delivered, Sink};
use crate::capture::read::{CaptureReader, Frame};
use crate::cli::SockfilterArgs;
use crate::console;
use crate::kernel::counters::Stats;
use crate::kernel::privilege;
use crate::kernel::test_run::RunResult;
use crate::report::{Snapshot, Source};
use crate::session::replay::{self, Replay};
use crate::session::{Moment, Reporting};

struct SockReplay<'obj> {
    loaded: Loaded<'obj>,
    file: String,
    sink: Sink,
    /// Frames the filter let through.
    delivered: u64,
    captured: u64,
    limit: Option<u64>,
}

impl Replay for SockReplay<'_> {
    fn program(&self) -> RawFd {
        self.loaded
            .skel
            .progs
            .sockfilter_netprobe
            .as_fd()
            .as_raw_fd()
    }

    fn keeps_output(&self) -> bool {
        false
    }

    /// BPF_PROG_TEST_RUN hands a socket filter the frame after taking an
    /// Ethernet header off it (eth_type_trans), where an AF_PACKET socket's
    /// filter sees the whole frame: a dummy header in front, addressed to
    /// this host, is what the test run takes off. Its EtherType is the
    /// local experimental one: with IPv4's, the test run refuses a frame
    /// shorter than an IPv4 header.
    fn lead(&self) -> &'static [u8] {
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x88, 0xb5]
    }

    fn take(&mut self, frame: &Frame, result: RunResult, _out: &[u8]) -> Result<bool> {
        // A socket filter returns how many bytes of the frame the socket keeps.
        let keep = (result.retval as usize).min(frame.data.len());
        if keep == 0 {
            return Ok(true);
        }
        self.delivered += 1;
        if self.limit.is_some_and(|l| self.captured >= l) {
            return Ok(false);
        }
        let delivered = Delivered {
            time: frame.time,
            len: frame.orig_len,
            data: &frame.data[..keep],
            seen_at: None,
        };
        match self.sink.write(&delivered) {
            Err(e) if console::reader_gone(&e) => return Ok(false),
            Err(e) => return Err(self.sink.failed(e)),
            Ok(()) => {}
        }
        self.captured += 1;
        Ok(self.limit.is_none_or(|l| self.captured < l))
    }

    fn source(&self) -> Source {
        Source::SockfilterReplay {
            replay: self.file.clone(),
        }
    }

    fn snapshot(&mut self, at: Moment, before: &Stats) -> Result<(Snapshot, Stats)> {
        let delivery = Delivery {
            delivered: self.delivered,
            socket_drops: 0,
            captured: self.sink.whole_frames().unwrap_or(self.captured),
        };
        self.loaded.snapshot(at, before, delivery)
    }

    fn finish(&mut self) -> Result<()> {
        match self.sink.flush() {
            Err(e) if console::reader_gone(&e) => Ok(()),
            Err(e) => Err(self.sink.failed(e)),
            Ok(()) => Ok(()),
        }
    }
}

pub fn run(args: &SockfilterArgs, file: &Path) -> Result<()> {
    // Everything the user gave is checked before anything is loaded.
    let rules = Loaded::rules(args)?;
    privilege::require("netprobe sockfilter --replay", &privilege::LOAD)?;
    let mut reader = CaptureReader::open(file)?;
    let (sink, counters_to_stderr) = loaded::sink(args)?;
    let reporting = Reporting::new(&args.output, !counters_to_stderr, counters_to_stderr)?;
    let mut storage = MaybeUninit::uninit();
    let loaded = Loaded::load(&mut storage, args, rules)?;
    console::note(format!("replaying {}", reader.name()));
    let mut probe = SockReplay {
        loaded,
        file: reader.name().to_string(),
        sink,
        delivered: 0,
        captured: 0,
        limit: args.count,
    };
    replay::run(&mut reader, &mut probe, reporting, args.output.interval)
}
