//! The streamed request body's pipe between the VM thread (`fetch_write`/`fetch_end`) and
//! the fetch worker (ureq reads it while sending).
//!
//! Bounded in bytes ([`CAPACITY`]) so a backend that does not read cannot make the host
//! buffer a guest's uploads: a writer waits for room, up to the fetch's deadline. The body
//! is complete only after an explicit [`PipeWriter::end`]: a writer dropped without it (a
//! guest abort, a limit, the request's reset) makes the reader fail, so ureq drops the
//! connection without the terminating chunk and the backend never sees a cut-off upload as
//! a whole one.

use std::collections::VecDeque;
use std::io::{Error, ErrorKind, Read};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Most body bytes buffered per fetch.
pub const CAPACITY: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Ended,
    Aborted,
}

struct Buf {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    state: State,
    reader_gone: bool,
}

struct Shared {
    buf: Mutex<Buf>,
    cond: Condvar,
    /// Bytes the reader handed on (to ureq).
    delivered: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buf> {
        // A panic while holding the lock leaves plain data: still usable.
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the other end to change the buffer, until `deadline`: `None` once it
    /// has passed (both ends give up at their deadline rather than wait forever).
    fn wait<'a>(&self, b: MutexGuard<'a, Buf>, deadline: Instant) -> Option<MutexGuard<'a, Buf>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        Some(
            self.cond
                .wait_timeout(b, left)
                .unwrap_or_else(|e| e.into_inner())
                .0,
        )
    }
}

/// Why a write did not go through.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipeError {
    /// The pipe stayed full until the deadline.
    #[error("the backend did not read the request body before the deadline")]
    Timeout,
}

/// The VM thread's end.
pub struct PipeWriter {
    shared: Arc<Shared>,
}

/// The worker's end (a [`Read`] for ureq).
pub struct PipeReader {
    shared: Arc<Shared>,
    cur: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

/// A new pipe whose reader gives up at `deadline`.
pub fn pipe(deadline: Instant) -> (PipeWriter, PipeReader) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Buf {
            chunks: VecDeque::new(),
            bytes: 0,
            state: State::Open,
            reader_gone: false,
        }),
        cond: Condvar::new(),
        delivered: AtomicU64::new(0),
    });
    (
        PipeWriter {
            shared: shared.clone(),
        },
        PipeReader {
            shared,
            cur: Vec::new(),
            pos: 0,
            deadline,
        },
    )
}

impl PipeWriter {
    /// Queues `data`, waiting for room until `deadline`. Bytes the reader no longer takes
    /// (the request already ended) are dropped: the fetch's head reports how it ended.
    pub fn write(&self, mut data: &[u8], deadline: Instant) -> Result<(), PipeError> {
        let mut b = self.shared.lock();
        while !data.is_empty() {
            if b.reader_gone {
                return Ok(());
            }
            if b.bytes >= CAPACITY {
                b = self.shared.wait(b, deadline).ok_or(PipeError::Timeout)?;
                continue;
            }
            let n = data.len().min(CAPACITY - b.bytes);
            b.chunks.push_back(data[..n].to_vec());
            b.bytes += n;
            data = &data[n..];
            self.shared.cond.notify_all();
        }
        Ok(())
    }

    /// Ends the body cleanly (the reader returns 0 once drained).
    pub fn end(self) {
        let mut b = self.shared.lock();
        b.state = State::Ended;
        self.shared.cond.notify_all();
    }
}

impl PipeReader {
    /// A handle on the count of bytes this reader handed on, for after it is gone.
    pub fn delivered(&self) -> Delivered {
        Delivered(self.shared.clone())
    }
}

/// See [`PipeReader::delivered`].
pub struct Delivered(Arc<Shared>);

impl Delivered {
    /// Bytes handed on so far.
    pub fn get(&self) -> u64 {
        self.0.delivered.load(Relaxed)
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let mut b = self.shared.lock();
        if b.state == State::Open {
            b.state = State::Aborted;
        }
        self.shared.cond.notify_all();
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut b = self.shared.lock();
        b.reader_gone = true;
        b.chunks.clear();
        b.bytes = 0;
        self.shared.cond.notify_all();
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.cur.len() {
            let mut b = self.shared.lock();
            loop {
                if let Some(c) = b.chunks.pop_front() {
                    b.bytes -= c.len();
                    self.shared.cond.notify_all();
                    self.cur = c;
                    self.pos = 0;
                    break;
                }
                match b.state {
                    State::Ended => return Ok(0),
                    State::Aborted => {
                        return Err(Error::new(
                            ErrorKind::ConnectionAborted,
                            "the request body was aborted",
                        ))
                    }
                    State::Open => {}
                }
                b = self.shared.wait(b, self.deadline).ok_or_else(|| {
                    Error::new(
                        ErrorKind::TimedOut,
                        "the request body did not arrive before the deadline",
                    )
                })?;
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        self.shared.delivered.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn an_ended_body_reads_to_its_end() {
        let (w, mut r) = pipe(far());
        w.write(b"ab", far()).unwrap();
        w.write(b"cde", far()).unwrap();
        w.end();
        let mut s = Vec::new();
        r.read_to_end(&mut s).unwrap();
        assert_eq!(s, b"abcde");
        assert_eq!(r.delivered().get(), 5);
    }

    #[test]
    fn a_dropped_writer_is_an_abort_not_an_end() {
        let (w, mut r) = pipe(far());
        w.write(b"ab", far()).unwrap();
        drop(w);
        let mut s = Vec::new();
        let e = r.read_to_end(&mut s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
        assert_eq!(s, b"ab");
    }

    #[test]
    fn the_reader_gives_up_at_its_deadline() {
        let (_w, mut r) = pipe(Instant::now() + Duration::from_millis(50));
        let e = r.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn a_full_pipe_blocks_until_the_deadline_then_fails() {
        let (w, _r) = pipe(far());
        let big = vec![7u8; CAPACITY + 1];
        let t0 = Instant::now();
        let e = w
            .write(&big, Instant::now() + Duration::from_millis(80))
            .unwrap_err();
        assert_eq!(e, PipeError::Timeout);
        assert!(t0.elapsed() >= Duration::from_millis(80));
        assert_eq!(w.shared.lock().bytes, CAPACITY);
    }

    #[test]
    fn a_reader_makes_room_for_a_waiting_writer() {
        let (w, mut r) = pipe(far());
        let t = std::thread::spawn(move || {
            let mut s = Vec::new();
            r.read_to_end(&mut s).unwrap();
            s.len()
        });
        w.write(&vec![1u8; 3 * CAPACITY], far()).unwrap();
        w.end();
        assert_eq!(t.join().unwrap(), 3 * CAPACITY);
    }

    #[test]
    fn writes_after_the_reader_is_gone_are_dropped() {
        let (w, r) = pipe(far());
        drop(r);
        w.write(&vec![1u8; 2 * CAPACITY], far()).unwrap();
        assert_eq!(w.shared.lock().bytes, 0);
    }
}
