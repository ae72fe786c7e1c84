//! `--replay FILE`: a hook's program, loaded as for a live run but not
//! attached, runs over every frame of a capture through BPF_PROG_TEST_RUN,
//! in capture order, and the run reports as a live one would, on the
//! capture's own clock: a snapshot at every `--interval` of capture time,
//! and the final summary.
//!
//! Frames go through the program in batches on every CPU at once (each run
//! counts in its CPU's per-CPU slots, and the counters are sums, so the
//! totals are exact); what each frame became is then handed back in capture
//! order. A batch never spans an interval boundary, so every snapshot
//! counts exactly the frames captured before it.
use std::os::fd::RawFd;
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};

use super::{Moment, Reporting};
use crate::capture::read::{CaptureReader, Frame};
use crate::console;
use crate::kernel::counters::Stats;
use crate::kernel::test_run::{run_once, RunResult};
use crate::report::{Snapshot, Source};

/// Frames run per batch at most.
const BATCH: usize = 16_384;
/// The shortest frame BPF_PROG_TEST_RUN takes.
const ETH_HLEN: usize = 14;
/// Room after a frame for what the program may add to it.
const HEADROOM: usize = 256;

/// The capture clock at a snapshot.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The capture time of the snapshot.
    pub time: SystemTime,
    /// Capture time the snapshot's rates cover.
    pub interval: Duration,
    /// Capture time since the first frame.
    pub elapsed: Duration,
}

impl Clock {
    /// The snapshot's moment, for a hook's program reading its counters.
    pub fn moment(self, source: Source, is_final: bool) -> Moment {
        Moment {
            source,
            time: self.time,
            interval: self.interval,
            elapsed: self.elapsed,
            is_final,
        }
    }
}

/// A hook's side of a replay.
pub trait Replay {
    /// The loaded program's fd.
    fn program(&self) -> RawFd;
    /// Whether the frames as the program left them are wanted.
    fn keeps_output(&self) -> bool;
    /// Bytes the test run needs in front of each frame for the program to
    /// see the frame as it would live.
    fn lead(&self) -> &'static [u8] {
        &[]
    }
    /// One frame's result, in capture order, with the frame as the program
    /// left it (empty unless [`Replay::keeps_output`]). Returns false when
    /// the hook wants no more frames (a count reached).
    fn take(&mut self, frame: &Frame, result: RunResult, out: &[u8]) -> Result<bool>;
    /// What the snapshots name as their source.
    fn source(&self) -> Source;
    /// Counts so far, and rates since the counts `before` over the moment's
    /// interval; returns the counts read, the next snapshot's `before`.
    fn snapshot(&mut self, at: Moment, before: &Stats) -> Result<(Snapshot, Stats)>;
    /// After the last frame: write out what is buffered.
    fn finish(&mut self) -> Result<()>;
}

/// Frames longer than this that the test run refuses (EINVAL) are frames
/// it cannot hold: it takes a socket buffer of one page at most. Shorter
/// ones it refuses are an error.
const LONG_FRAME: usize = 1514;

/// What one frame's run gave: the result and the frame as the program left
/// it; `None` for a long frame the kernel's test run cannot hold.
type Ran = Option<(RunResult, Vec<u8>)>;

/// One frame through the program.
fn run_frame(prog: RawFd, frame: &Frame, lead: &[u8], keep: bool) -> Result<Ran> {
    match run_frame_once(prog, frame, lead, keep) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && frame.data.len() > LONG_FRAME => {
            Ok(None)
        }
        other => other.map(Some).context("BPF_PROG_TEST_RUN"),
    }
}

fn run_frame_once(
    prog: RawFd,
    frame: &Frame,
    lead: &[u8],
    keep: bool,
) -> std::io::Result<(RunResult, Vec<u8>)> {
    let led;
    let data = if lead.is_empty() {
        &frame.data
    } else {
        led = [lead, &frame.data].concat();
        &led
    };
    if !keep {
        let r = run_once(prog, data, None)?;
        return Ok((r, Vec::new()));
    }
    let mut out = vec![0u8; data.len() + HEADROOM];
    let r = run_once(prog, data, Some(&mut out))?;
    out.truncate(r.out_len);
    Ok((r, out))
}

/// Runs `batch` through the program on `workers` threads, results in order.
fn run_batch(
    prog: RawFd,
    batch: &[Frame],
    lead: &[u8],
    keep: bool,
    workers: usize,
) -> Result<Vec<Ran>> {
    let per = batch.len().div_ceil(workers).max(1);
    thread::scope(|s| {
        let parts: Vec<_> = batch
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|f| run_frame(prog, f, lead, keep))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(batch.len());
        for part in parts {
            all.extend(
                part.join()
                    .map_err(|_| anyhow!("a replay thread panicked"))??,
            );
        }
        Ok(all)
    })
}

/// Replays every frame `reader` holds through `probe`, reporting as
/// `reporting` says every `interval` of capture time and at the end.
pub fn run(
    reader: &mut CaptureReader,
    probe: &mut dyn Replay,
    reporting: Reporting,
    interval: Duration,
) -> Result<()> {
    let mut printer = reporting.printer();
    let workers = thread::available_parallelism().map_or(1, |n| n.get());
    let (prog, keep, lead) = (probe.program(), probe.keeps_output(), probe.lead());
    let mut printing = !reporting.quiet;
    let mut before = Stats::default();
    let mut publish =
        |probe: &mut dyn Replay, clock: Clock, is_final: bool, print: bool| -> Result<()> {
            // The final snapshot's rates cover the whole capture.
            let since = if is_final { Stats::default() } else { before };
            let moment = clock.moment(probe.source(), is_final);
            let (snapshot, counts) = probe.snapshot(moment, &since)?;
            before = counts;
            if let Some(exporter) = &reporting.exporter {
                exporter.publish(&snapshot)?;
            }
            if print && printing {
                if let Err(e) = printer.print(&snapshot) {
                    if !console::reader_gone(&e) {
                        return Err(e.into());
                    }
                    printing = false;
                }
            }
            Ok(())
        };
    let mut next = reader.next_frame()?;
    let (first, mut last) = match &next {
        Some(f) => (f.time, f.time),
        None => (Duration::ZERO, Duration::ZERO),
    };
    let mut boundary = first + interval;
    let mut last_snapshot = first;
    let mut batch: Vec<Frame> = Vec::with_capacity(BATCH);
    let mut runts = 0u64;
    let mut too_long = 0u64;
    let mut wanted = true;
    while wanted {
        // A batch: frames up to the next boundary of capture time.
        while batch.len() < BATCH {
            match next.take() {
                Some(f) if f.time < boundary => {
                    last = last.max(f.time);
                    // The kernel runs nothing shorter than an Ethernet header,
                    // and no driver hands such a runt to a live program.
                    if f.data.len() < ETH_HLEN {
                        runts += 1;
                    } else {
                        batch.push(f);
                    }
                    next = reader.next_frame()?;
                }
                other => {
                    next = other;
                    break;
                }
            }
        }
        for (frame, ran) in batch
            .iter()
            .zip(run_batch(prog, &batch, lead, keep, workers)?)
        {
            let Some((result, out)) = ran else {
                too_long += 1;
                continue;
            };
            if !probe.take(frame, result, &out)? {
                wanted = false;
                break;
            }
        }
        batch.clear();
        let Some(coming) = &next else { break };
        if coming.time >= boundary && wanted {
            let clock = Clock {
                time: SystemTime::UNIX_EPOCH + boundary,
                interval: boundary - last_snapshot,
                elapsed: boundary - first,
            };
            publish(probe, clock, false, reporting.periodic)?;
            last_snapshot = boundary;
            // Over a gap in the capture, one snapshot, not one per interval.
            let k = (coming.time - first).as_nanos() / interval.as_nanos() + 1;
            boundary = first + Duration::from_nanos(u64::try_from(k * interval.as_nanos())?);
        }
    }
    probe.finish()?;
    if too_long > 0 {
        console::note(format!(
            "not replayed: {} longer than the kernel's test run takes (a page, for a socket \
             buffer)",
            console::count(too_long, "frame")
        ));
    }
    if runts > 0 {
        console::note(format!(
            "not replayed: {} shorter than an Ethernet header",
            console::count(runts, "frame")
        ));
    }
    let elapsed = last.saturating_sub(first);
    let clock = Clock {
        time: SystemTime::UNIX_EPOCH + last,
        interval: elapsed,
        elapsed,
    };
    publish(probe, clock, true, true)?;
    if reader.truncated() {
        return Err(anyhow!(
            "{}: the last record is cut short; the frames before it were replayed",
            reader.name()
        ));
    }
    Ok(())
}
