//! The wait between polls: wakes on the interval tick, at the end of
//! `--duration`, and on SIGINT, SIGTERM and SIGHUP (delivered through a
//! signalfd, so a signal never interrupts a map read half-way).
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The interval elapsed: poll and print.
    Tick,
    /// An extra fd given to [`RunLoop::wait_with`] is readable, or the
    /// drain period set with [`RunLoop::drain_every`] has passed.
    Readable,
    /// SIGHUP: reload what can be reloaded.
    Hangup,
    /// Ctrl-C, SIGTERM or the end of `--duration`.
    Stop,
}

pub struct RunLoop {
    signals: SignalFd,
    interval: Duration,
    next_tick: Instant,
    deadline: Option<Instant>,
    /// How often to wake as if the extra fd were readable, and when next.
    drain: Option<(Duration, Instant)>,
}

impl RunLoop {
    /// Blocks SIGINT, SIGTERM and SIGHUP for this thread and takes them
    /// through a signalfd. Call before loading anything, so that a signal
    /// arriving during setup still ends the run cleanly, and before starting
    /// any thread, so that every thread inherits the mask and none of them
    /// takes a signal's default action.
    pub fn new(interval: Duration) -> Result<Self> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGHUP);
        mask.thread_block().context("blocking signals")?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("creating signalfd")?;
        Ok(RunLoop {
            signals,
            interval,
            next_tick: Instant::now() + interval,
            deadline: None,
            drain: None,
        })
    }

    /// Starts the clock: ticks from now, and stops `duration` from now.
    pub fn start(&mut self, duration: Option<Duration>) {
        let now = Instant::now();
        self.next_tick = now + self.interval;
        self.deadline = duration.map(|d| now + d);
    }

    /// Also wakes with [`Wake::Readable`] every `every`: for a reader that
    /// is not woken for every event and drains on a timer instead.
    pub fn drain_every(&mut self, every: Duration) {
        self.drain = Some((every, Instant::now() + every));
    }

    pub fn wait(&mut self) -> Result<Wake> {
        self.wait_with(None)
    }

    /// Waits for the next event, also waking when `extra` becomes readable.
    pub fn wait_with(&mut self, extra: Option<BorrowedFd<'_>>) -> Result<Wake> {
        loop {
            if let Some(sig) = self.signals.read_signal().context("reading signalfd")? {
                return Ok(if sig.ssi_signo == Signal::SIGHUP as u32 {
                    Wake::Hangup
                } else {
                    Wake::Stop
                });
            }
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                return Ok(Wake::Stop);
            }
            if now >= self.next_tick {
                // Skip ticks missed while the machine was busy rather than bursting.
                while self.next_tick <= now {
                    self.next_tick += self.interval;
                }
                return Ok(Wake::Tick);
            }
            if let Some((every, at)) = &mut self.drain {
                if now >= *at {
                    *at = now + *every;
                    return Ok(Wake::Readable);
                }
            }
            let until = [self.deadline, self.drain.map(|(_, at)| at)]
                .into_iter()
                .flatten()
                .fold(self.next_tick, Instant::min);
            let timeout_ms = until
                .saturating_duration_since(now)
                .as_millis()
                .clamp(1, 60_000) as u16;
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            if let Some(fd) = extra {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(timeout_ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            if fds
                .get(1)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
            {
                return Ok(Wake::Readable);
            }
        }
    }
}
