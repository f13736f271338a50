//! What runs after a response: the reset to the snapshot (ephemeral mode, or after a
//! failure) and the background work a response may leave (a Workers `ctx.waitUntil`).
//!
//! Both run off the client's critical path: the pool sends the response, then calls
//! [`Vm::finish`]. The next request can never run before them, because [`Vm::respond`]
//! (and so [`Vm::handle`]) calls [`Vm::finish`] first, and a VM whose reset is due is in
//! `Position::ResetDue`, which holds no trap to resume the guest from: serving from it
//! is refused. A failed reset leaves the VM broken ([`Vm::is_broken`]): it is discarded.

use super::{unexpected, Position, Trap, Vm};
use crate::request::{RequestStats, Response, StreamStep};
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
        if matches!(self.pos, Position::Streaming { .. }) {
            // Nobody ran the stream to its end (the client went away, or the caller gave
            // up): the guest is mid-request and is never resumed from there.
            self.stream_cancel();
        }
        let done = match self.pos {
            Position::ResetDue { .. } => self.finish_reset(),
            Position::Background(trap) => self.run_background(trap),
            _ => Finished::default(),
        };
        // The response is out and its background work (if any) done: a request's fetches
        // end with it, also when no reset follows (they would hold workers and
        // connections while the VM idles).
        self.exchange.fetch.clear();
        done
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
        // Nothing of a request's fetches survives it (their connections close here).
        self.exchange.fetch.clear();
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

    /// Runs a streamed response on ([`Response::stream`]) until the guest's next chunk
    /// (`Some`, possibly empty) or its clean end (`None`), within the request's
    /// max_request_time. At the end the VM is where a whole response would have left it:
    /// its background work or its reset due ([`Vm::finish`]). An error (an abort by the
    /// guest, the time limit, a fault) ends the stream: the response must reach the
    /// client truncated. After a failure the reset is due.
    pub fn stream_next(&mut self) -> Result<Option<Vec<u8>>, RequestError> {
        let r = self.stream_step();
        // Ended (cleanly or aborted by the guest) with nothing left to run.
        if self.cfg.ephemeral && matches!(self.pos, Position::AfterResponse(_)) {
            self.pos = Position::ResetDue { full: false };
        }
        r
    }

    /// Stops a streamed response the client no longer reads: the guest is not resumed,
    /// and the reset is due ([`Vm::finish`]). Nothing when no stream runs.
    pub fn stream_cancel(&mut self) {
        if matches!(self.pos, Position::Streaming { .. }) {
            self.pos = Position::ResetDue { full: true };
        }
    }

    /// Whether a streamed response is running ([`Vm::stream_next`] continues it).
    pub fn is_streaming(&self) -> bool {
        matches!(self.pos, Position::Streaming { .. })
    }

    /// Runs a streamed response to its end and appends it to `r`'s body (for callers that
    /// want the whole response). Nothing for a whole response.
    pub(crate) fn collect_stream(&mut self, r: &mut Response) -> Result<(), RequestError> {
        self.collect_stream_with(r, true)
    }

    /// [`Vm::collect_stream`]; `reset`: mark the reset due at the end (ephemeral mode),
    /// which only makes sense once a snapshot exists.
    pub(crate) fn collect_stream_with(
        &mut self,
        r: &mut Response,
        reset: bool,
    ) -> Result<(), RequestError> {
        if !r.stream {
            return Ok(());
        }
        loop {
            let step = if reset {
                self.stream_next()
            } else {
                self.stream_step()
            };
            match step? {
                Some(chunk) => {
                    if (r.body.len() + chunk.len()) as u64 > self.cfg.max_response_body {
                        self.stream_cancel();
                        return Err(RequestError::Guest(format!(
                            "the streamed body exceeds the {}-byte limit (max_response_body)",
                            self.cfg.max_response_body
                        )));
                    }
                    r.body.extend_from_slice(&chunk);
                }
                None => break,
            }
        }
        r.stream = false;
        r.background = matches!(self.pos, Position::Background(_));
        Ok(())
    }

    /// One step of [`Vm::stream_next`], without deciding the reset after a clean end.
    fn stream_step(&mut self) -> Result<Option<Vec<u8>>, RequestError> {
        let Position::Streaming { trap, deadline } = self.pos else {
            return Err(RequestError::Broken(
                "no streamed response is running".into(),
            ));
        };
        let mut stats = RequestStats::default();
        let written = self.log.written;
        let out = self
            .resume(trap, 0)
            .map_err(RequestError::from)
            .and_then(|()| self.run(deadline, &mut stats));
        self.last.exits += stats.exits;
        self.last.syscalls += stats.syscalls;
        let failed = |vm: &mut Vm, e: RequestError| {
            let e = vm.with_guest_output(e, written);
            tracing::debug!(program = %vm.cfg.name, "streamed response failed: {e}");
            vm.pos = Position::ResetDue { full: true };
            Err(e)
        };
        match out {
            Ok((Stop::Stream(StreamStep::Chunk(c)), t)) => {
                self.pos = Position::Streaming { trap: t, deadline };
                Ok(Some(c))
            }
            Ok((Stop::Stream(StreamStep::End { abort, background }), t)) => {
                self.pos = if background {
                    Position::Background(t)
                } else {
                    Position::AfterResponse(t)
                };
                if abort {
                    Err(RequestError::StreamAborted)
                } else {
                    Ok(None)
                }
            }
            Ok((stop, _)) => failed(
                self,
                unexpected(stop, "in the middle of a streamed response"),
            ),
            Err(e) => {
                let e = self.out_of_memory(e);
                failed(self, e)
            }
        }
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
