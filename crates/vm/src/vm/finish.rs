//! What runs after a response: the reset to the snapshot (ephemeral mode, or after a
//! failure) and the background work a response may leave (a Workers `ctx.waitUntil`).
//!
//! Both run off the client's critical path: the pool sends the response, then calls
//! [`Vm::finish`]. The next request can never run before them, because [`Vm::respond`]
//! (and so [`Vm::handle`]) calls [`Vm::finish`] first, and a VM whose reset is due is in
//! `Position::ResetDue`, which holds no trap to resume the guest from: serving from it
//! is refused. A failed reset leaves the VM broken ([`Vm::is_broken`]): it is discarded.

use super::{unexpected, Position, Trap, Vm};
use crate::request::RequestStats;
use crate::syscalls::Stop;
use crate::vm::RequestError;
use std::time::{Duration, Instant};

/// How a request's background work ([`Vm::finish_background`]) ended.
#[derive(Debug)]
pub struct Background {
    /// `Ok` when the guest paused again in time; the VM has been reset either way.
    pub result: Result<(), RequestError>,
    /// How long it ran, reset included.
    pub duration: Duration,
}

/// What [`Vm::finish`] ran after a response: the reset and/or the background work.
#[derive(Debug, Default)]
pub struct Finished {
    /// Pages the reset restored (0 when no reset ran).
    pub dirty_pages: u64,
    /// Time the reset took, µs (0 when no reset ran).
    pub reset_us: f64,
    /// The background work, when the response left some.
    pub background: Option<Background>,
}

impl Vm {
    /// Runs what the last response left to do: its reset, or its background work (then
    /// the reset, in ephemeral mode or after a failure). Nothing when there is nothing
    /// left. The reset's pages and time are also added to [`Vm::last_stats`], so they stay
    /// the last request's figures.
    pub fn finish(&mut self) -> Finished {
        match self.pos {
            Position::ResetDue { .. } => self.finish_reset(),
            Position::Background(trap) => self.run_background(trap),
            _ => Finished::default(),
        }
    }

    /// [`Vm::finish`]'s background work, when the last response left some: resumes the
    /// guest until it pauses again (a program that listens: until it is back in its wait,
    /// crate::listen), within `max_background_time`, then resets it (ephemeral mode, or
    /// after a failure). `None` when there was none (a due reset still runs).
    pub fn finish_background(&mut self) -> Option<Background> {
        self.finish().background
    }

    /// Runs the reset if one is due, and nothing else.
    pub(crate) fn finish_reset(&mut self) -> Finished {
        let mut done = Finished::default();
        if let Position::ResetDue { full } = self.pos {
            self.reset_now(full, &mut done);
        }
        done
    }

    /// Resets to the snapshot now; a failure breaks the VM (never resumed, discarded).
    fn reset_now(&mut self, full: bool, done: &mut Finished) {
        let t0 = Instant::now();
        let pages = match self.reset(full) {
            Ok(pages) => pages,
            Err(e) => {
                self.pos = Position::Broken(e.to_string());
                0
            }
        };
        let us = t0.elapsed().as_secs_f64() * 1e6;
        done.dirty_pages += pages;
        done.reset_us += us;
        self.last.dirty_pages += pages;
        self.last.reset_us += us;
    }

    fn run_background(&mut self, trap: Trap) -> Finished {
        let t0 = Instant::now();
        let mut stats = RequestStats::default();
        let deadline = t0 + self.cfg.max_background_time;
        let written = self.log.written;
        let result = if self.cfg.listen.is_some() {
            // Until the guest is back in its wait for connections (crate::listen).
            self.finish_background_net(trap, deadline, &mut stats)
        } else {
            self.resume(trap, 0)
                .map_err(RequestError::from)
                .and_then(|()| match self.run(deadline, &mut stats)? {
                    (Stop::Paused { req_ptr }, t) => {
                        self.pos = Position::AtPause {
                            req_ptr,
                            trap: Some(t),
                        };
                        Ok(())
                    }
                    (stop, _) => Err(unexpected(stop, "while finishing background work")),
                })
        };
        let result = result.map_err(|e| {
            let e = self.with_guest_output(e, written);
            tracing::debug!(program = %self.cfg.name, "background work failed: {e}");
            e
        });
        let mut done = Finished::default();
        if self.cfg.ephemeral || result.is_err() {
            self.reset_now(result.is_err(), &mut done);
        }
        done.background = Some(Background {
            result,
            duration: t0.elapsed(),
        });
        done
    }
}
