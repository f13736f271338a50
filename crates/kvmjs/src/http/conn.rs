//! Connections: the open-file limit, a cap on open connections below it, shedding the
//! oldest idle or slow connection when a new one arrives at the cap, and a backed-off,
//! rate-limited reaction to accept errors (EMFILE), so the server keeps answering
//! `/healthz` and new requests while slow clients hold connections.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Accepted connections that may wait at once for the slot of a connection being shed;
/// beyond them accepting pauses. Part of the file descriptors the connection cap leaves
/// free.
pub const MAX_WAITING: usize = 64;

/// How long a new connection waits for a shed connection's slot before it is refused.
const WAIT_FOR_SLOT: Duration = Duration::from_secs(1);

/// The open-file limit before and after [`raise_fd_limit`].
#[derive(Clone, Copy, Debug)]
pub struct FdLimit {
    /// Soft limit found at start-up.
    pub before: u64,
    /// Soft limit now.
    pub after: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every connection costs a file
/// descriptor, and distributions' default soft limit (1024) is far below what the kernel
/// allows the process.
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    let mut target = lim.rlim_max;
    if target == libc::RLIM_INFINITY {
        // An unlimited hard limit still stops at fs.nr_open.
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    if target > before {
        let want = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard
        // limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(FdLimit {
        before,
        after: target.max(before),
    })
}

/// File descriptors kept for everything but connections: stdio, the listener, the
/// runtime, /dev/kvm, and per VM its KVM descriptors and a few guest files.
pub fn reserved_fds(vms: usize) -> u64 {
    64 + MAX_WAITING as u64 + 16 * vms as u64
}

/// The connection cap when none is given: what the open-file limit leaves after
/// [`reserved_fds`], at most 16384 (each connection also costs buffers).
pub fn default_max_connections(fd_limit: u64, vms: usize) -> usize {
    fd_limit.saturating_sub(reserved_fds(vms)).clamp(16, 16384) as usize
}

/// Where a [`LentStream`] returns its stream when hyper drops it.
pub type StreamSlot = Arc<Mutex<Option<TcpStream>>>;

/// A TCP stream lent to hyper and handed back when hyper drops it, so the connection's
/// task can still answer 408 after hyper gives up on a slow request head (hyper drops its
/// I/O on that error). One file descriptor per connection, where a dup'ed spare for the
/// 408 would take two.
pub struct LentStream {
    stream: Option<TcpStream>,
    back: StreamSlot,
}

impl LentStream {
    /// Lends `stream`; the slot holds it again once hyper has dropped the lender.
    pub fn lend(stream: TcpStream) -> (Self, StreamSlot) {
        let back = StreamSlot::default();
        let lent = LentStream {
            stream: Some(stream),
            back: back.clone(),
        };
        (lent, back)
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut TcpStream> {
        Pin::new(
            self.get_mut()
                .stream
                .as_mut()
                .expect("the stream is only taken when the lender is dropped"),
        )
    }
}

impl Drop for LentStream {
    fn drop(&mut self) {
        if let Some(s) = self.stream.take() {
            *self
                .back
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(s);
        }
    }
}

impl AsyncRead for LentStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for LentStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}

/// What a connection is doing, which decides whether it may be shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for a request head (new, or between keep-alive requests), or sending a
    /// response: sheddable first.
    Idle = 0,
    /// Receiving a request body: sheddable when no connection is idle.
    Body = 1,
    /// Its request is queued or running in a VM: never shed.
    Busy = 2,
}

/// One open connection, as the registry and its request handler see it.
#[derive(Debug)]
pub struct ConnInfo {
    id: u64,
    phase: AtomicU8,
    /// Milliseconds since the registry's epoch when the phase last changed.
    since_ms: AtomicU64,
    /// Requests whose head arrived.
    requests: AtomicU64,
    doomed: AtomicBool,
    kill: Notify,
    epoch: Instant,
}

impl ConnInfo {
    /// Records a new phase.
    pub fn set_phase(&self, p: Phase) {
        self.since_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    /// Counts a request whose head arrived.
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests whose head arrived.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Resolves when the registry sheds this connection.
    pub async fn shed(&self) {
        self.kill.notified().await;
    }
}

/// Sets a connection's phase for one request, and back to idle when the request ends or
/// is abandoned.
pub struct PhaseGuard(Option<Arc<ConnInfo>>);

impl PhaseGuard {
    /// Marks `conn` as receiving a body (no-op without a connection, e.g. when fuzzing).
    pub fn start(conn: Option<Arc<ConnInfo>>) -> Self {
        if let Some(c) = &conn {
            c.set_phase(Phase::Body);
        }
        PhaseGuard(conn)
    }

    /// Marks the connection busy: the request is with a VM.
    pub fn busy(&self) {
        if let Some(c) = &self.0 {
            c.set_phase(Phase::Busy);
        }
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.set_phase(Phase::Idle);
        }
    }
}

/// Open connections: a permit each from a semaphore of `max` permits, and a registry to
/// pick the connection to shed.
pub struct Conns {
    permits: Arc<Semaphore>,
    max: usize,
    table: Mutex<HashMap<u64, Arc<ConnInfo>>>,
    next_id: AtomicU64,
    waiting: Arc<Semaphore>,
    epoch: Instant,
}

/// A registered connection: unregisters and frees its slot when dropped.
pub struct Slot {
    conns: Arc<Conns>,
    info: Arc<ConnInfo>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// The connection's shared record.
    pub fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.info.id);
    }
}

/// What to do with a connection accepted at the cap.
pub enum Admission {
    /// Serve it.
    Now(Slot),
    /// Another connection is being shed: wait for its slot.
    Wait(Pending),
    /// Nothing can be shed: refuse it.
    Refuse,
}

/// A connection waiting for a shed connection's slot.
pub struct Pending {
    conns: Arc<Conns>,
    _waiting: OwnedSemaphorePermit,
}

impl Pending {
    /// The slot, or `None` if none freed up within [`WAIT_FOR_SLOT`].
    pub async fn slot(self) -> Option<Slot> {
        let permit =
            tokio::time::timeout(WAIT_FOR_SLOT, self.conns.permits.clone().acquire_owned())
                .await
                .ok()?
                .ok()?;
        Some(self.conns.register(permit))
    }
}

impl Conns {
    /// A registry for at most `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Conns {
            permits: Arc::new(Semaphore::new(max)),
            max,
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            waiting: Arc::new(Semaphore::new(MAX_WAITING)),
            epoch: Instant::now(),
        })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let info = Arc::new(ConnInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(Phase::Idle as u8),
            since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            requests: AtomicU64::new(0),
            doomed: AtomicBool::new(false),
            kill: Notify::new(),
            epoch: self.epoch,
        });
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(info.id, info.clone());
        Slot {
            conns: self.clone(),
            info,
            _permit: permit,
        }
    }

    /// Admits a new connection: at once under the cap; at the cap, by shedding the
    /// connection that has been idle (or else receiving a body) the longest. While
    /// [`MAX_WAITING`] connections already wait for shed slots this waits (up to
    /// [`WAIT_FOR_SLOT`]) before shedding more: the accept loop pauses and new
    /// connections wait in the listen backlog, where they cost no descriptor, instead of
    /// being refused during a burst.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Admission::Now(self.register(p));
        }
        let waiting =
            match tokio::time::timeout(WAIT_FOR_SLOT, self.waiting.clone().acquire_owned()).await {
                Ok(Ok(w)) => w,
                _ => return Admission::Refuse,
            };
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Admission::Now(self.register(p)); // freed while we waited
        }
        if !self.shed_one() {
            return Admission::Refuse;
        }
        Admission::Wait(Pending {
            conns: self.clone(),
            _waiting: waiting,
        })
    }

    /// Closes the oldest idle connection, or else the oldest one receiving a body; false
    /// if every connection is busy with a VM.
    pub fn shed_one(&self) -> bool {
        let table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let victim = table
            .values()
            .filter(|c| !c.doomed.load(Ordering::Relaxed))
            .filter_map(|c| {
                let phase = c.phase.load(Ordering::Relaxed);
                (phase != Phase::Busy as u8).then(|| (phase, c.since_ms.load(Ordering::Relaxed), c))
            })
            .min_by_key(|(phase, since, _)| (*phase, *since))
            .map(|(_, _, c)| c.clone());
        drop(table);
        match victim {
            Some(c) => {
                c.doomed.store(true, Ordering::Relaxed);
                c.kill.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Answers 503 to a connection that cannot be served and closes it, without waiting: the
/// write goes to the socket buffer or not at all.
pub fn refuse(stream: &TcpStream) {
    const BODY: &str = "the server is at its connection limit; retry shortly\n";
    let msg = format!("HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: {}\r\n\r\n{BODY}", BODY.len());
    let _ = stream.try_write(msg.as_bytes());
    // Read what the client already sent: closing with unread data would send a reset,
    // which can destroy the 503 before the client reads it.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// Backs off after accept errors (EMFILE, ENFILE, ENOBUFS...) instead of spinning, and
/// logs them at most once per interval with a count of the others.
pub struct AcceptErrors {
    delay: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors {
            delay: Self::FIRST,
            last_log: None,
            unlogged: 0,
        }
    }
}

impl AcceptErrors {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    /// Records an error; returns how long to pause accepting and whether to log it now.
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        let log = match self.last_log {
            Some(t) if now.duration_since(t) < Self::LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        (delay, log)
    }

    /// Records a successful accept.
    pub fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }
}

/// Whether an accept error means the process or system is out of file descriptors.
pub fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_log_rarely() {
        let mut a = AcceptErrors::default();
        let t = Instant::now();
        let mut delays = Vec::new();
        let mut reports = Vec::new();
        for i in 0..=500u64 {
            let (d, log) = a.failed(t + Duration::from_millis(i * 20));
            delays.push(d);
            reports.extend(log);
        }
        // 501 errors over 10 s: logged at the first and at 10 s with the count of the
        // 499 in between, not 501 times.
        assert_eq!(reports, [0, 499]);
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
        a.succeeded();
        assert_eq!(
            a.failed(t + Duration::from_secs(60)).0,
            Duration::from_millis(10)
        );
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_is_shed_never_a_busy_one() {
        let conns = Conns::new(3);
        let slot = |a: Admission| match a {
            Admission::Now(s) => s,
            _ => panic!("expected a slot"),
        };
        let busy = slot(conns.admit().await);
        busy.info().set_phase(Phase::Busy);
        let body = slot(conns.admit().await);
        body.info().set_phase(Phase::Body);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let idle = slot(conns.admit().await);
        assert_eq!(conns.open(), 3);
        // At the cap: the idle one goes first although the body one is older.
        let Admission::Wait(p) = conns.admit().await else {
            panic!("expected to wait for a shed connection")
        };
        tokio::time::timeout(Duration::from_secs(1), idle.info().shed())
            .await
            .expect("the idle connection was told to close");
        drop(idle);
        let fresh = p.slot().await.expect("the shed connection's slot");
        fresh.info().set_phase(Phase::Busy);
        // Next, the body reader; then nothing is left to shed.
        let Admission::Wait(_p) = conns.admit().await else {
            panic!("expected to shed the body reader")
        };
        tokio::time::timeout(Duration::from_secs(1), body.info().shed())
            .await
            .expect("the body reader was told to close");
        assert!(matches!(conns.admit().await, Admission::Refuse));
        drop(busy);
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_vms() {
        assert_eq!(default_max_connections(1024, 4), 1024 - 64 - 64 - 64);
        assert_eq!(default_max_connections(1 << 20, 4), 16384);
        assert_eq!(default_max_connections(100, 40), 16);
    }

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let l = raise_fd_limit().unwrap();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the valid `now`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, l.after);
        assert!(l.after >= l.before);
        if now.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(now.rlim_cur, now.rlim_max);
        }
    }
}
