//! Where fetches run: one worker thread per open fetch, never the VM thread. VM threads run
//! under a seccomp filter (crate::seccomp) that allows no sockets, so a VM thread only
//! passes messages: the worker owns the connection and does every DNS, socket and TLS call.
//! Workers are spawned by a dispatcher thread started before the first VM thread locks
//! itself down ([`start`]), so no VM thread needs `clone` either.
//!
//! A worker ends when its [`Remote`] is dropped (fetch_close, or the request's reset) and
//! it is not blocked on the backend: its connection closes with it. One still waiting for
//! a response head runs on until the backend answers or the deadline, so the number of
//! live workers is capped process-wide ([`MAX_WORKERS`], [`WorkerSlot`]) and a closed
//! fetch's worker counts against its request's `max_open` until it ends
//! ([`Remote::alive`]).

use super::client::{self, Head, OutBody, Outgoing};
use super::pipe::{self, PipeError, PipeWriter};
use super::{FetchError, FetchPolicy, TooMany};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Most fetch worker threads alive at once in the process (all programs, all VMs).
pub const MAX_WORKERS: usize = 256;

/// Work for the dispatcher: `run` on a new thread, or `fail` with why none could start.
struct Job {
    run: Box<dyn FnOnce() + Send>,
    fail: Box<dyn FnOnce(String) + Send>,
}

/// A count of live workers with a cap.
#[derive(Debug)]
pub struct Workers {
    live: AtomicUsize,
    max: usize,
}

static WORKERS: Workers = Workers::new(MAX_WORKERS);

impl Workers {
    /// A counter allowing `max` at once.
    pub const fn new(max: usize) -> Self {
        Workers {
            live: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes a slot, or fails with [`TooMany::Workers`] when all are taken.
    pub fn acquire(&'static self) -> Result<WorkerSlot, FetchError> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map_err(|_| FetchError::TooMany(TooMany::Workers(self.max)))?;
        Ok(WorkerSlot {
            owner: self,
            alive: Arc::new(()),
        })
    }

    /// Slots taken now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

/// One worker's place under [`MAX_WORKERS`], held by the worker for as long as it runs
/// (released when dropped: the worker ended, or never started).
#[derive(Debug)]
pub struct WorkerSlot {
    owner: &'static Workers,
    alive: Arc<()>,
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        self.owner.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a slot under the process-wide [`MAX_WORKERS`].
pub fn acquire() -> Result<WorkerSlot, FetchError> {
    WORKERS.acquire()
}

/// Slack past a fetch's deadline before the VM thread stops waiting for its worker (the
/// worker's own timeouts normally answer first).
const SLACK: Duration = Duration::from_millis(500);

static DISPATCH: OnceLock<Sender<Job>> = OnceLock::new();

/// Starts the dispatcher (once). Must run on a thread without the seccomp filter, before
/// any fetch: `crate::seccomp::apply_to_this_thread` calls it first.
pub fn start() {
    DISPATCH.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("kvmjs-fetch-spawn".into())
            .spawn(move || {
                for job in rx {
                    let Job { run, fail } = job;
                    // On failure `run` (and the slot it holds) is dropped here.
                    if let Err(e) = std::thread::Builder::new()
                        .name("kvmjs-fetch".into())
                        .spawn(run)
                    {
                        tracing::warn!("cannot start a fetch worker: {e}");
                        fail(e.to_string());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the fetch dispatcher: {e}; fetch() will fail");
        }
        tx
    });
}

enum Reply {
    Head(Result<Head, FetchError>),
    Data(Result<Vec<u8>, FetchError>),
}

/// The VM thread's end of one open fetch.
pub struct Remote {
    /// The streamed request body; `None` once ended (or never streamed). Dropped
    /// without [`PipeWriter::end`], the upload is aborted.
    chunks: Option<PipeWriter>,
    /// Read requests (the wanted size).
    reads: Sender<usize>,
    replies: Receiver<Reply>,
    /// The head has been received (the body is being read).
    pub(super) receiving: bool,
    /// Request body bytes written so far.
    pub(super) sent: u64,
    url: String,
    deadline: Instant,
    started: Instant,
    /// Shared with the worker's [`WorkerSlot`]: more than one owner while it runs.
    alive: Arc<()>,
}

impl Remote {
    fn wait(&self) -> Result<Reply, FetchError> {
        let left = self.deadline.saturating_duration_since(Instant::now()) + SLACK;
        self.replies.recv_timeout(left).map_err(|e| match e {
            RecvTimeoutError::Timeout => FetchError::Timeout {
                url: self.url.clone(),
                secs: self
                    .deadline
                    .saturating_duration_since(self.started)
                    .as_secs_f64(),
            },
            RecvTimeoutError::Disconnected => FetchError::Network {
                url: self.url.clone(),
                msg: "the fetch worker ended unexpectedly".into(),
            },
        })
    }

    /// Ends the request body (the guest's `fetch_end`) and waits for the head.
    pub fn head(&mut self) -> Result<Head, FetchError> {
        if let Some(w) = self.chunks.take() {
            w.end();
        }
        match self.wait()? {
            Reply::Head(r) => {
                self.receiving = r.is_ok();
                r
            }
            Reply::Data(_) => Err(FetchError::BadArg("out-of-order fetch reply".into())),
        }
    }

    /// Whether the request body is a stream still open for writes.
    pub fn streaming(&self) -> bool {
        self.chunks.is_some()
    }

    /// Queues bytes of the streamed body, waiting while the pipe is full (backpressure)
    /// until the fetch's deadline. Bytes the worker no longer takes (the request already
    /// ended) are dropped: [`Remote::head`] reports how it ended.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        let Some(w) = &self.chunks else {
            return Ok(());
        };
        w.write(chunk, self.deadline).map_err(|e| match e {
            PipeError::Timeout => FetchError::Timeout {
                url: self.url.clone(),
                secs: self
                    .deadline
                    .saturating_duration_since(self.started)
                    .as_secs_f64(),
            },
        })
    }

    /// A token that has other owners while the worker still runs.
    pub fn alive(&self) -> Arc<()> {
        self.alive.clone()
    }

    /// The next body bytes (at most `cap`), empty at the end.
    pub fn read(&mut self, cap: usize) -> Result<Vec<u8>, FetchError> {
        if self.reads.send(cap).is_err() {
            return Ok(Vec::new());
        }
        match self.wait()? {
            Reply::Data(r) => r,
            Reply::Head(_) => Err(FetchError::BadArg("out-of-order fetch reply".into())),
        }
    }

    /// When the fetch started.
    pub fn started(&self) -> Instant {
        self.started
    }
}

/// Opens a fetch on a worker holding `slot`: with `body` (`None`: streamed with
/// [`Remote::write`], ended by [`Remote::head`]).
pub fn open(
    policy: &FetchPolicy,
    out: Outgoing,
    body: Option<Vec<u8>>,
    deadline: Instant,
    slot: WorkerSlot,
) -> Result<Remote, FetchError> {
    client::check_allowed(policy, &out.url)?;
    let url = out.url.to_string();
    // Safe here: the dispatcher exists before any thread is filtered (seccomp calls
    // `start` first), so a thread that gets this far without one is unfiltered.
    start();
    let Some(dispatch) = DISPATCH.get() else {
        return Err(FetchError::Network {
            url,
            msg: "the fetch service is not running (kvmjs starts it with the VM threads)".into(),
        });
    };
    let (chunks, chunk_rx) = match body {
        None => {
            let (w, r) = pipe::pipe(deadline);
            (Some(w), Some(r))
        }
        Some(_) => (None, None),
    };
    let (reads, read_rx) = mpsc::channel::<usize>();
    let (reply_tx, replies) = mpsc::channel();
    let fail_tx = reply_tx.clone();
    let fail_url = url.clone();
    let alive = slot.alive.clone();
    let policy = policy.clone();
    let run = Box::new(move || {
        let _slot = slot;
        let delivered = chunk_rx.as_ref().map(pipe::PipeReader::delivered);
        let body = match (body, chunk_rx) {
            (_, Some(r)) => OutBody::Stream(r),
            (Some(b), None) if !b.is_empty() => OutBody::Bytes(b),
            _ => OutBody::None,
        };
        let result = client::perform(&policy, out, body, deadline);
        if let Some(d) = delivered {
            // What ureq took of the stream, i.e. what went to the backend.
            policy
                .metrics
                .bytes_out
                .fetch_add(d.get(), std::sync::atomic::Ordering::Relaxed);
        }
        let mut incoming = match result {
            Ok((head, incoming)) => {
                if reply_tx.send(Reply::Head(Ok(head))).is_err() {
                    return;
                }
                incoming
            }
            Err(e) => {
                let _ = reply_tx.send(Reply::Head(Err(e)));
                return;
            }
        };
        // Until the VM side drops its Remote (close, or the request's reset).
        for cap in read_rx {
            let mut buf = vec![0u8; cap];
            let r = incoming.read(&mut buf).map(|n| {
                buf.truncate(n);
                buf
            });
            let failed = r.is_err();
            if reply_tx.send(Reply::Data(r)).is_err() || failed {
                return;
            }
        }
    });
    let fail = Box::new(move |e: String| {
        let _ = fail_tx.send(Reply::Head(Err(FetchError::Network {
            url: fail_url,
            msg: format!("cannot start a fetch worker thread ({e}); try again later"),
        })));
    });
    dispatch
        .send(Job { run, fail })
        .map_err(|_| FetchError::Network {
            url: url.clone(),
            msg: "the fetch service has stopped".into(),
        })?;
    Ok(Remote {
        chunks,
        reads,
        replies,
        receiving: false,
        sent: 0,
        url,
        deadline,
        started: Instant::now(),
        alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy allowing 127.0.0.1:`port` and a GET of /x there.
    fn get_local(port: u16) -> (FetchPolicy, Outgoing) {
        let policy = FetchPolicy {
            allow: vec![super::super::Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap()],
            ..Default::default()
        };
        let out = Outgoing {
            method: "GET".into(),
            url: url::Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap(),
            headers: Vec::new(),
            redirect: super::super::RedirectMode::Follow,
        };
        (policy, out)
    }
    use std::io::{Read, Write};

    #[test]
    fn a_worker_fetches_and_streams_the_body() {
        start();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
                .unwrap();
        });
        let (policy, out) = get_local(port);
        let mut r = open(
            &policy,
            out,
            Some(Vec::new()),
            Instant::now() + Duration::from_secs(5),
            acquire().unwrap(),
        )
        .unwrap();
        let head = r.head().unwrap();
        assert_eq!(head.status, 200);
        assert!(head.headers.iter().any(|(k, v)| k == "x-a" && v == b"b"));
        let mut body = Vec::new();
        loop {
            let c = r.read(3).unwrap();
            if c.is_empty() {
                break;
            }
            assert!(c.len() <= 3);
            body.extend(c);
        }
        assert_eq!(body, b"hello");
    }

    #[test]
    fn the_worker_cap_refuses_and_slots_come_back() {
        static W: Workers = Workers::new(2);
        let a = W.acquire().unwrap();
        let b = W.acquire().unwrap();
        let e = W.acquire().unwrap_err();
        assert!(matches!(e, FetchError::TooMany(TooMany::Workers(2))), "{e}");
        assert_eq!(e.errno(), 24);
        drop(a);
        assert_eq!(W.live(), 1);
        let c = W.acquire().unwrap();
        drop((b, c));
        assert_eq!(W.live(), 0);
    }

    #[test]
    fn a_closed_fetch_counts_as_alive_until_its_worker_ends() {
        start();
        // A backend that accepts and never answers.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hold = std::thread::spawn(move || l.accept().map(|(s, _)| s));
        let (policy, out) = get_local(port);
        let deadline = Instant::now() + Duration::from_millis(300);
        let r = open(&policy, out, Some(Vec::new()), deadline, acquire().unwrap()).unwrap();
        let alive = r.alive();
        drop(r);
        std::thread::sleep(Duration::from_millis(50));
        assert!(Arc::strong_count(&alive) > 1, "the worker still waits");
        let t0 = Instant::now();
        while Arc::strong_count(&alive) > 1 {
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "the worker outlived its deadline"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(hold.join());
    }
}
