//! Where fetches run: one worker thread per open fetch, never the VM thread. VM threads run
//! under a seccomp filter (crate::seccomp) that allows no sockets, so a VM thread only
//! passes messages: the worker owns the connection and does every DNS, socket and TLS call.
//! Workers are spawned by a dispatcher thread started before the first VM thread locks
//! itself down ([`start`]), so no VM thread needs `clone` either.
//!
//! A worker ends when its [`Remote`] is dropped (fetch_close, or the request's reset):
//! its connection closes with it.

use super::client::{self, ChunkReader, Head, OutBody, Outgoing};
use super::{FetchError, FetchPolicy};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

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
                    if let Err(e) = std::thread::Builder::new()
                        .name("kvmjs-fetch".into())
                        .spawn(job)
                    {
                        tracing::warn!("cannot start a fetch worker: {e}");
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
    /// Chunks of a streamed request body; `None` once ended (or never streamed).
    chunks: Option<Sender<Vec<u8>>>,
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

    /// Waits for the head (the request body is complete).
    pub fn head(&mut self) -> Result<Head, FetchError> {
        self.chunks = None;
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

    /// Queues one chunk of the streamed body. A chunk the worker no longer takes (the
    /// request already ended) is dropped: [`Remote::head`] reports how it ended.
    pub fn write(&mut self, chunk: Vec<u8>) {
        if let Some(c) = &self.chunks {
            let _ = c.send(chunk);
        }
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

/// Opens a fetch on a worker: with `body` (`None`: streamed with [`Remote::write`]).
pub fn open(
    policy: &FetchPolicy,
    out: Outgoing,
    body: Option<Vec<u8>>,
    deadline: Instant,
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
            let (tx, rx) = mpsc::channel();
            (Some(tx), Some(rx))
        }
        Some(_) => (None, None),
    };
    let (reads, read_rx) = mpsc::channel::<usize>();
    let (reply_tx, replies) = mpsc::channel();
    let policy = policy.clone();
    let job: Job = Box::new(move || {
        let body = match (body, chunk_rx) {
            (_, Some(rx)) => OutBody::Stream(ChunkReader::new(rx)),
            (Some(b), None) if !b.is_empty() => OutBody::Bytes(b),
            _ => OutBody::None,
        };
        let mut incoming = match client::perform(&policy, out, body, deadline) {
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
    dispatch.send(job).map_err(|_| FetchError::Network {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut r = open(
            &policy,
            out,
            Some(Vec::new()),
            Instant::now() + Duration::from_secs(5),
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
}
