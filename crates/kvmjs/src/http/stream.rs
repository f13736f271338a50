//! Streamed response bodies: the chunks a guest appends (on its VM thread) reach hyper,
//! and so the client, through a bounded pipe. The VM thread waits while the pipe is full
//! (backpressure: a slow client slows the guest, never grows host memory), within the
//! request's deadline. The body ends cleanly only when the sender says so
//! ([`ChunkSender::finish`]); a sender dropped without it (the guest failed, timed out)
//! makes the body fail, so hyper ends the chunked response without its last chunk and
//! the client sees it truncated, never complete.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Bytes one stream may hold between the guest and the socket; a single larger chunk
/// still passes, alone.
pub const MAX_QUEUED_BYTES: usize = 1 << 20;
/// Chunks one stream may hold between the guest and the socket.
const MAX_QUEUED_CHUNKS: usize = 64;
/// Longest sleep of a sender waiting for room (a slow client, not the common case).
const MAX_PAUSE: Duration = Duration::from_millis(5);

/// Why a streamed body did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The client closed the connection (or hyper dropped the body).
    #[error("the client went away during the streamed response")]
    Gone,
    /// The client did not read fast enough for the stream to end within its deadline.
    #[error("the client did not read the streamed response before max_request_time")]
    Stalled,
    /// The program's stream failed: the client gets a truncated response.
    #[error("the streamed response failed; it was cut short")]
    Aborted,
}

struct Shared {
    /// Bytes sent and not yet handed to hyper.
    queued: AtomicUsize,
    /// The sender finished cleanly.
    clean: AtomicBool,
}

/// The VM thread's end of a pipe.
pub struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
}

/// hyper's end of a pipe: a response body that yields the chunks as they come.
pub struct ChunkBody {
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
    /// Sent before anything from the pipe (the body the head came with).
    first: Option<Bytes>,
    done: bool,
    /// Kept as long as the body is sent (the connection's busy phase).
    _hold: Option<Box<dyn Send>>,
}

/// A new pipe.
pub fn pipe() -> (ChunkSender, ChunkBody) {
    let (tx, rx) = mpsc::channel(MAX_QUEUED_CHUNKS);
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        clean: AtomicBool::new(false),
    });
    (
        ChunkSender {
            tx,
            shared: shared.clone(),
        },
        ChunkBody {
            rx,
            shared,
            first: None,
            done: false,
            _hold: None,
        },
    )
}

impl ChunkSender {
    /// Queues `data`, waiting (until `deadline`) while the pipe is full. Empty chunks are
    /// dropped: in chunked framing an empty chunk would end the body.
    pub fn send(&self, data: Vec<u8>, deadline: Instant) -> Result<(), StreamError> {
        if data.is_empty() {
            return Ok(());
        }
        let n = data.len();
        let mut chunk = Bytes::from(data);
        let mut pause = Duration::from_micros(50);
        loop {
            if self.tx.is_closed() {
                return Err(StreamError::Gone);
            }
            let queued = self.shared.queued.load(Ordering::Acquire);
            if queued == 0 || queued + n <= MAX_QUEUED_BYTES {
                // Counted before it is visible to the receiver, which subtracts it.
                self.shared.queued.fetch_add(n, Ordering::AcqRel);
                match self.tx.try_send(chunk) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        self.shared.queued.fetch_sub(n, Ordering::AcqRel);
                        match e {
                            mpsc::error::TrySendError::Full(c) => chunk = c,
                            mpsc::error::TrySendError::Closed(_) => return Err(StreamError::Gone),
                        }
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StreamError::Stalled);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Ends the body cleanly once the queued chunks are sent.
    pub fn finish(self) {
        self.shared.clean.store(true, Ordering::Release);
    }
}

impl ChunkBody {
    /// Sends `first` before the chunks of the pipe.
    pub fn prepend(mut self, first: Bytes) -> Self {
        self.first = Some(first);
        self
    }

    /// Keeps `hold` until the body has been sent or dropped.
    pub fn hold(mut self, hold: Box<dyn Send>) -> Self {
        self._hold = Some(hold);
        self
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => {
                self.shared.queued.fetch_sub(b.len(), Ordering::AcqRel);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(None) => {
                self.done = true;
                // The sender is gone: the flag it set before going tells a clean end.
                if self.shared.clean.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(StreamError::Aborted)))
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown: HTTP/1.1 chunked.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn chunks_arrive_in_order_and_end_cleanly() {
        let (tx, body) = pipe();
        let t = std::thread::spawn(move || {
            tx.send(b"one".to_vec(), soon()).unwrap();
            tx.send(Vec::new(), soon()).unwrap();
            tx.send(b"two".to_vec(), soon()).unwrap();
            tx.finish();
        });
        let mut body = std::pin::pin!(body);
        let mut got = Vec::new();
        while let Some(f) = body.frame().await {
            got.push(f.unwrap().into_data().unwrap());
        }
        t.join().unwrap();
        assert_eq!(got, vec![Bytes::from("one"), Bytes::from("two")]);
    }

    #[tokio::test]
    async fn a_sender_dropped_without_finish_fails_the_body() {
        let (tx, body) = pipe();
        tx.send(b"part".to_vec(), soon()).unwrap();
        drop(tx);
        let mut body = std::pin::pin!(body);
        assert!(body.frame().await.unwrap().is_ok());
        assert!(matches!(
            body.frame().await,
            Some(Err(StreamError::Aborted))
        ));
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn a_full_pipe_holds_the_sender_until_its_deadline_and_a_dropped_body_frees_it() {
        let (tx, body) = pipe();
        tx.send(vec![0; MAX_QUEUED_BYTES], soon()).unwrap();
        let t0 = Instant::now();
        let r = tx.send(vec![0; 10], Instant::now() + Duration::from_millis(50));
        assert!(matches!(r, Err(StreamError::Stalled)), "{r:?}");
        assert!(t0.elapsed() >= Duration::from_millis(50));
        drop(body);
        assert!(matches!(
            tx.send(vec![0; 10], soon()),
            Err(StreamError::Gone)
        ));
    }
}
