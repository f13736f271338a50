//! Programs that serve HTTP themselves (`VmConfig::listen`): the pause point and the
//! per-request handoff through the virtual network ([`crate::net::tcp`]).
//!
//! # The pause point
//! Boot runs the program until a *blocking* wait whose set holds the listening socket
//! while no connection is queued: epoll_wait/epoll_pwait/epoll_pwait2/poll/ppoll that
//! would block, or a blocking accept. Instead of blocking, the call stops the guest
//! ([`Stop::Listening`]) and the snapshot is taken *before* it: the snapshot's
//! continuation is the `syscall` instruction itself with RAX = its number, so every VM
//! started from the snapshot re-runs the wait — on the first request the listener has a
//! connection queued and the wait returns it (one exit, the wait's own).
//!
//! # Timers pending at the pause
//! A wait with a timeout means a timer is pending (deno's first wait: ~0.5 s; at that
//! timer it starts its signal thread). A timer kept in the snapshot fires inside *every*
//! request once the guest clock (vDSO, real time) has passed its due time: measured on
//! deno hello, 23 exits per request instead of 9. So the boot lets start-up timers run
//! once: from the first wait on the listener, for [`SETTLE_WINDOW`], a wait whose
//! timeout ends inside the window blocks as usual (the boot sleeps, the timer fires);
//! the pause point is the first wait that would outlast the window (no timeout, or a
//! longer one: deno's next is ~7.7 s, V8's memory reducer), or any wait after the
//! window, so a program with a short periodic timer still pauses. Whatever timer is
//! still pending at the snapshot may fire inside requests; that costs guest work, never
//! correctness: the reset restores memory, threads and fds, so nothing a fired timer
//! did reaches the next request, and every request starts from the same state.
//!
//! # A request
//! The request is written as HTTP/1.1 ([`crate::net::http`]: the client's end-to-end
//! fields, no Connection field of the host's own) into a new connection queued on the
//! listener, waiters are notified, and the guest runs. After every system call that
//! returns the host looks at what the guest wrote to that connection; as soon as it is a
//! complete response (Content-Length, chunked, or closed) the guest stops on that call:
//! it does not run on past the response. The host then ends the connection itself (as a
//! client that is done would): a guest that keeps connections alive sees EOF on it.
//! Ephemeral VMs then reset. Non-ephemeral VMs continue that call with its result at the
//! next request and run until they are back in a wait on the listener.
//!
//! # Background work after the response
//! A response carrying the field [`http::BACKGROUND_FIELD`] (`kvmjs-background: 1`, taken
//! out before the client sees the response) says the program has work left for after it
//! (a Workers `ctx.waitUntil`: the deno adapter sets it). The guest is then stopped on the
//! call that completed the response as usual, the client gets its answer, and
//! [`Vm::finish_background`] continues that call and runs the guest, within
//! `max_background_time`, until it is back in a wait on the listener with no timer due
//! within [`BUSY_TIMER`]: a nearer one is work in progress (a waitUntil `setTimeout`, the
//! deno adapter's keep-alive tick while a waitUntil promise is pending) and the guest runs
//! through it; a farther one is housekeeping and is not waited for. Why not "any timer due
//! before the background's deadline": a timer of the program's own that is not part of
//! the work (an app's periodic flush, deno's ~7.7 s one pending in the snapshot: measured
//! 7.2 s, then 5.1 s, 3.0 s out in successive backgrounds) would hold the VM until it
//! fires, or for all of max_background_time (30 s by default) if it repeats. So only
//! within about 1 s of such a timer's due time does a background run on to it (measured
//! once per snapshot for deno's: two backgrounds of ~1.2 s instead of 0.3 s; after that
//! it is overdue and fires at once). A timer still due within [`BUSY_TIMER`] at the
//! deadline means the work was cut: a timeout, as on the QuickJS engine. Then the VM
//! resets (ephemeral) or stays in that wait. A response without the field costs nothing
//! more: the field is one more header name the framer compares.
//!
//! A program that exits closes its connections, so an exit ends a close-delimited
//! response like a close does: a complete one is answered. A non-ephemeral VM whose
//! program exited (while answering, or on its way back to its wait) is reset to the
//! snapshot, with a warning: what earlier requests left in it is gone.

use crate::fs::{lock, OpenFile, MAX_FDS};
use crate::net::http;
use crate::net::tcp::{canonical, Conn, SharedConn, TcpSocket};
use crate::request::{PlaceError, Request, RequestStats, Response};
use crate::syscalls::{Args, Flow, Stop};
use crate::tasks::switch::Pending;
use crate::tasks::WaitKey;
use crate::vm::{Position, RequestError, Trap, Vm};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syscalls::Sysno;

/// The peer port of every connection of an ephemeral VM (a counter would tell a request
/// how many came before it).
const EPHEMERAL_PEER_PORT: u16 = 49152;

/// How long the boot lets the program's start-up timers run before it pauses (module
/// docs): a wait on the listener that ends within this window of the first one blocks
/// as usual instead of being the pause point.
const SETTLE_WINDOW: Duration = Duration::from_secs(2);

/// A timer at most this far off means background work is still going on (module docs):
/// longer than the deno adapter's keep-alive tick (js/deno-adapter.js, 50 ms).
const BUSY_TIMER: Duration = Duration::from_secs(1);

/// Settling the snapshot of a program on the fast path (`Vm::settle`): at most this many
/// tries, each moving the snapshot on by [`SETTLE_STEP`] more warm-up requests.
const SETTLE_ROUNDS: usize = 6;
/// Warm-up requests per settling try.
const SETTLE_STEP: u32 = 7;

/// Per-VM state of the handoff (host side; nothing here is guest state).
#[derive(Debug, Default)]
pub(crate) struct NetState {
    /// Stop at a wait on the listener (boot, warm-up, back-to-wait after a response).
    armed: bool,
    /// The connection of the request in flight.
    watch: Option<Watch>,
    /// Result of the call the guest stopped in when its response was complete.
    ret: u64,
    /// Next peer port (non-ephemeral VMs).
    next_port: u16,
    /// The boot run (before the first pause): short waits settle (module docs).
    booting: bool,
    /// End of the settling window, from the boot's first wait on the listener.
    settle_until: Option<Instant>,
    /// Background work is running (module docs): near timers keep it going.
    background: bool,
    /// The call the guest stopped at when the fast path found its response complete,
    /// not run yet (crate::fastpath): the continuation runs it.
    pub(crate) unrun: Option<(u64, Args)>,
    /// The last request went through the fast path's hand-over.
    placed: bool,
}

#[derive(Debug)]
struct Watch {
    conn: SharedConn,
    framer: http::Framer,
    /// Response length and done flag at the last look (parse only when they change).
    seen: (usize, bool),
}

impl NetState {
    /// The state a VM starts with: armed when `listen` is configured (the boot looks for
    /// the pause point).
    pub(crate) fn new(listen: bool) -> NetState {
        NetState {
            armed: listen,
            booting: listen,
            ..NetState::default()
        }
    }
}

/// Calls that are a wait a server sits in between requests.
fn is_wait(nr: u64) -> bool {
    [
        Sysno::epoll_wait,
        Sysno::epoll_pwait,
        Sysno::epoll_pwait2,
        Sysno::poll,
        Sysno::ppoll,
        Sysno::accept,
        Sysno::accept4,
    ]
    .iter()
    .any(|s| s.id() as u64 == nr)
}

/// The waits the fast-path library makes (its epoll_wait and epoll_pwait wrappers).
fn is_epoll_wait(nr: u64) -> bool {
    nr == Sysno::epoll_wait.id() as u64 || nr == Sysno::epoll_pwait.id() as u64
}

/// The calls of the fast-path library a request can be handed over in (crate::fastpath):
/// its waits, and the `getppid` it hands a complete response over with.
fn is_hand_over_point(nr: u64) -> bool {
    is_epoll_wait(nr) || nr == Sysno::getppid.id() as u64
}

/// What the fast page's `waiting_epfd` says when the library is in call `nr(a0, ..)`.
fn expected_waiting(nr: u64, a0: u64) -> Option<i32> {
    if nr == Sysno::getppid.id() as u64 {
        return Some(kvmjs_abi::fast::FLUSHING);
    }
    if is_epoll_wait(nr) {
        return i32::try_from(a0).ok()?.checked_add(1);
    }
    None
}

impl Vm {
    /// What the boot waits for, for messages.
    pub(crate) fn pause_name(&self) -> String {
        self.cfg
            .listen
            .map_or("calling wait_for_requests_paused".into(), |l| {
                format!("waiting for connections on {}", l.addr)
            })
    }

    /// Looks at `flow`, the outcome of call `nr(args)`, for the pause point and for the
    /// end of the response (module docs).
    pub(crate) fn net_filter(&mut self, nr: u64, args: &Args, flow: Flow) -> Flow {
        match &flow {
            Flow::Block(b) if self.net.armed && is_wait(nr) => {
                let Some(l) = self.listener() else {
                    return flow;
                };
                let sock = l.file.as_any().downcast_ref::<TcpSocket>();
                let id = l.file.wait_id();
                let on_listener = id.is_some_and(|id| b.keys.contains(&WaitKey::File(id)));
                if !on_listener || sock.is_none_or(|s| s.pending() != 0) {
                    return flow;
                }
                if self.net.booting {
                    // Start-up timers fire now, once, rather than in every request.
                    let until = *self
                        .net
                        .settle_until
                        .get_or_insert_with(|| Instant::now() + SETTLE_WINDOW);
                    if b.deadline.is_some_and(|d| d <= until) {
                        return flow;
                    }
                }
                if self.net.background {
                    // A near timer is background work still going on.
                    let busy = Instant::now() + BUSY_TIMER;
                    if b.deadline.is_some_and(|d| d <= busy) {
                        return flow;
                    }
                }
                Flow::Stop(Stop::Listening { nr, args: *args })
            }
            Flow::Return(v) => match self.response_done() {
                Some(Ok(r)) => {
                    self.net.ret = *v;
                    Flow::Stop(Stop::Responded(r))
                }
                Some(Err(e)) => Flow::Stop(Stop::Fatal(e.to_string())),
                None => flow,
            },
            _ => flow,
        }
    }

    /// Before call `nr(args)` runs: applies the fast page (crate::fastpath) and stops the
    /// guest right there, the call not run, when that completed the response.
    pub(crate) fn fast_sync(&mut self, nr: u64, args: &Args) -> Option<Stop> {
        let mut f = self.proc.fast.take()?;
        let synced = f.sync(&mut self.mem, &mut self.proc, nr, args);
        self.proc.fast = Some(f);
        if synced == crate::fastpath::Synced::Idle {
            return None;
        }
        self.proc.changed = true;
        match self.response_done()? {
            Ok(r) => {
                tracing::trace!(program = %self.cfg.name, "fast path: response complete at call {nr}");
                self.net.unrun = Some((nr, *args));
                Some(Stop::Responded(r))
            }
            Err(e) => Some(Stop::Fatal(e.to_string())),
        }
    }

    /// The complete response on the watched connection, an error, or `None` (not yet).
    fn response_done(&mut self) -> Option<Result<Response, http::HttpError>> {
        let w = self.net.watch.as_mut()?;
        let c = lock(&w.conn);
        let now = (c.response().len(), c.done_writing());
        if now == w.seen {
            return None;
        }
        w.seen = now;
        w.framer.feed(c.response(), now.1).transpose()
    }

    /// The description of the socket listening on the configured address.
    fn listener(&self) -> Option<Arc<OpenFile>> {
        self.listener_fd().map(|(_, d)| d)
    }

    /// [`Vm::listener`] and its descriptor.
    fn listener_fd(&self) -> Option<(u64, Arc<OpenFile>)> {
        let want = self.cfg.listen?.addr;
        (0..MAX_FDS as u64).find_map(|fd| {
            let d = self.proc.fds.get(fd)?;
            let s = d.file.as_any().downcast_ref::<TcpSocket>()?;
            (s.listening_on().map(canonical) == Some(canonical(want))).then(|| (fd, d.clone()))
        })
    }

    /// Ends a boot run that stopped at the pause point: warm-up requests (through the
    /// virtual network, before the snapshot, so their effects are kept), then the
    /// snapshot at the wait.
    pub(crate) fn pause_at_wait(
        &mut self,
        mut pending: Pending,
        deadline: Instant,
    ) -> Result<Pending, RequestError> {
        self.net.armed = false;
        self.net.booting = false;
        let Some(w) = self.cfg.warmup.clone().filter(|w| w.num_requests > 0) else {
            return Ok(pending);
        };
        let req = Request::warmup(&w);
        let mut stats = RequestStats::default();
        for _ in 0..w.num_requests {
            self.pos = Position::InWait(pending);
            pending = self.warm_up_once(&req, deadline, &mut stats)?;
        }
        Ok(pending)
    }

    /// One warm-up request (before a snapshot, so its effects are kept), from where the
    /// guest is, and on until it is back in its wait, which it returns.
    fn warm_up_once(
        &mut self,
        req: &Request,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<Pending, RequestError> {
        self.serve_net(req, deadline, stats)?;
        match self.pos {
            Position::AfterResponse(t) => self.back_to_wait(t, deadline, false, stats),
            // Its background work runs now, before the snapshot, within its limit.
            Position::Background(t) => {
                let until = deadline.min(Instant::now() + self.cfg.max_background_time);
                self.back_to_wait(t, until, true, stats)
            }
            _ => Err(RequestError::Broken(
                "warm-up did not end in a response".into(),
            )),
        }
    }

    /// For an ephemeral program on the fast path, after the snapshot: tries one warm-up
    /// request from the snapshot and, while it costs more than the fast path's one exit,
    /// moves the snapshot on by [`SETTLE_STEP`] more warm-up requests (at most
    /// [`SETTLE_ROUNDS`] times). Why: every request starts from the snapshot, so a runtime
    /// whose heap is just short of growing there grows it in *every* request (deno's
    /// renderer after exactly 110 warm-ups: 8 exits and ~260 re-faults per request, 11 ms
    /// instead of 1.2; after 40 or 80: 2 exits), and which warm-up counts do that depends on
    /// the app. Nothing of the tries stays: the VM is reset after each, and the snapshot
    /// kept is one taken at a wait, as at boot.
    pub(crate) fn settle(&mut self, deadline: Instant) -> Result<(), RequestError> {
        if !self.cfg.ephemeral || self.proc.fast.is_none() {
            return Ok(());
        }
        let Some(w) = self.cfg.warmup.clone().filter(|w| w.num_requests > 0) else {
            return Ok(());
        };
        let req = Request::warmup(&w);
        let (mut best, mut stale) = (u64::MAX, 0);
        for round in 0..=SETTLE_ROUNDS {
            let exits = match self.settle_probe(&req, deadline) {
                Ok(Some(e)) => e,
                // Not on the fast path: nothing to settle.
                Ok(None) => return Ok(()),
                Err(e) => return self.settle_failed(e),
            };
            if exits <= 1 {
                if round > 0 {
                    tracing::info!(program = %self.cfg.name, "snapshot moved on by {} warm-up requests: from it a request costs one exit", round as u32 * SETTLE_STEP);
                }
                return Ok(());
            }
            // A program that needs a system call in every request never gets to one exit:
            // stop once more warm-ups stop helping.
            if exits < best {
                (best, stale) = (exits, 0);
            } else {
                stale += 1;
            }
            if round == SETTLE_ROUNDS || stale >= 2 {
                tracing::info!(program = %self.cfg.name, "a request from the snapshot costs {exits} exits (it makes system calls the fast path does not answer: memory growth, files, logs); `warmup.num_requests` moves the snapshot");
                return Ok(());
            }
            if let Err(e) = self.settle_step(&req, deadline) {
                return self.settle_failed(e);
            }
        }
        Ok(())
    }

    /// One request from the snapshot, then the reset: its exits, or `None` when it did not
    /// take the fast path.
    fn settle_probe(
        &mut self,
        req: &Request,
        deadline: Instant,
    ) -> Result<Option<u64>, RequestError> {
        let mut stats = RequestStats::default();
        self.net.placed = false;
        let r = self.serve_net(req, deadline, &mut stats);
        self.reset(true)?;
        r?;
        Ok(self.net.placed.then_some(stats.exits))
    }

    /// [`SETTLE_STEP`] more warm-up requests from the snapshot, and a new snapshot at the
    /// wait they end in.
    fn settle_step(&mut self, req: &Request, deadline: Instant) -> Result<(), RequestError> {
        let mut stats = RequestStats::default();
        let mut pending = None;
        for _ in 0..SETTLE_STEP {
            let p = self.warm_up_once(req, deadline, &mut stats)?;
            self.pos = Position::InWait(p);
            pending = Some(p);
        }
        let Some((nr, _, trap)) = pending else {
            return Ok(());
        };
        self.take_snapshot(0, trap, Some(nr))
            .map_err(|e| RequestError::Broken(format!("re-taking the snapshot: {e}")))
    }

    /// Settling failed (a warm-up error, the boot deadline): the last snapshot taken is a
    /// good one, so the VM goes back to it and the boot goes on.
    fn settle_failed(&mut self, e: RequestError) -> Result<(), RequestError> {
        tracing::warn!(program = %self.cfg.name, "settling the snapshot stopped: {e}; the VM keeps the snapshot it has");
        self.reset(true).map(|_| ())
    }

    /// Continues a guest that answered (its call returns what it returned then) until it
    /// is back in a wait on the listener; with `background`, until its background work is
    /// done too (module docs), `deadline` being the background's.
    fn back_to_wait(
        &mut self,
        trap: Trap,
        deadline: Instant,
        background: bool,
        stats: &mut RequestStats,
    ) -> Result<Pending, RequestError> {
        // The fast path's stop left its call to run; otherwise the call returns now.
        let pending = self.net.unrun.take().map(|(nr, args)| (nr, args, trap));
        if pending.is_none() {
            self.resume(trap, self.net.ret)?;
        }
        self.net.armed = true;
        self.net.background = background;
        let r = self.run_from(deadline, stats, pending);
        self.net.armed = false;
        self.net.background = false;
        match r? {
            (Stop::Listening { nr, args }, t) => Ok((nr, args, t)),
            (stop, _) => Err(crate::vm::unexpected(
                stop,
                "before returning to its wait for connections",
            )),
        }
    }

    /// Serves `req` over the virtual network (`VmConfig::listen`).
    pub(crate) fn serve_net(
        &mut self,
        req: &Request,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<Response, RequestError> {
        if req.body.len() as u64 > self.cfg.max_request_body {
            return Err(PlaceError::TooLarge(format!(
                "body of {} bytes; max_request_body is {}",
                req.body.len(),
                self.cfg.max_request_body
            ))
            .into());
        }
        let bytes = http::serialize(req);
        let pending = match std::mem::replace(&mut self.pos, Position::Booting) {
            // Armed from the snapshot: the vCPU re-runs the wait by itself.
            Position::AtPause { trap: None, .. } => None,
            Position::InWait(p) => Some(p),
            // The fast path stopped it, the call not run, in its wait or in its hand-over of
            // the response: the next request can be handed over right there.
            Position::AfterResponse(t)
                if self.net.unrun.is_some_and(|(nr, _)| is_hand_over_point(nr)) =>
            {
                self.net.unrun.take().map(|(nr, args)| (nr, args, t))
            }
            Position::AfterResponse(t) => match self.back_to_wait(t, deadline, false, stats) {
                Ok(p) => Some(p),
                // Exited after answering: the next request starts from the snapshot.
                Err(RequestError::Exited(code, _)) => {
                    self.reset_after_exit(code, "after its last response", stats)?;
                    None
                }
                Err(e) => return Err(e),
            },
            Position::Broken(m) => {
                self.pos = Position::Broken(m.clone());
                return Err(RequestError::Broken(m));
            }
            other => {
                self.pos = other;
                return Err(RequestError::Broken(
                    "the VM is not at a wait for connections".into(),
                ));
            }
        };
        let (listen_fd, listener) = self.listener_fd().ok_or_else(|| {
            RequestError::Guest("the program no longer listens on its address".into())
        })?;
        let port = if self.cfg.ephemeral {
            EPHEMERAL_PEER_PORT
        } else {
            self.net.next_port = self.net.next_port.wrapping_add(1);
            EPHEMERAL_PEER_PORT + self.net.next_port % 16384
        };
        // The fast path copies the request into the guest (small ones only).
        let fast_copy = (self.proc.fast.is_some() && bytes.len() <= crate::fastpath::RX.1 as usize)
            .then(|| bytes.clone());
        let mut conn = Conn::new(bytes, port);
        // One byte past the largest response the framer accepts: it fails the request
        // then, and a huge write costs the host no more than that.
        conn.limit_response(
            usize::try_from(
                self.cfg
                    .max_response_body
                    .saturating_add(http::HEADER_ROOM + 1),
            )
            .unwrap_or(usize::MAX),
        );
        let conn = Arc::new(Mutex::new(conn));
        let mut pending = pending;
        let placed = match fast_copy {
            Some(b) => self.fast_hand_over(listen_fd, &conn, &b, &pending),
            None => {
                if let Some(f) = self.proc.fast.as_mut() {
                    f.plain_hand_over(&mut self.mem);
                }
                false
            }
        };
        self.net.placed = placed;
        if placed {
            // The wait the guest is in ends with 0, without running: the library then
            // reports the connection from the page.
            match pending.take() {
                Some((_, _, trap)) => self.resume(trap, 0)?,
                None => self.skip_rerun()?,
            }
        } else {
            let sock = listener
                .file
                .as_any()
                .downcast_ref::<TcpSocket>()
                .expect("listener() found a TCP socket");
            sock.push(conn.clone())
                .map_err(|_| RequestError::Guest("the program's listen backlog is full".into()))?;
            if let Some(id) = listener.file.wait_id() {
                self.proc.tasks.notify(&WaitKey::File(id));
            }
        }
        self.proc.changed = true;
        drop(listener);
        self.net.watch = Some(Watch {
            conn,
            framer: http::Framer::new(
                if req.method.is_empty() {
                    "GET"
                } else {
                    &req.method
                },
                self.cfg.max_response_body,
            ),
            seen: (0, false),
        });
        let r = self.run_from(deadline, stats, pending);
        let mut watch = self.net.watch.take();
        // An exit closes the guest's end: a close-delimited response is complete.
        let exited = match (&r, watch.as_mut()) {
            (Ok((Stop::Exited(code), _)), Some(Watch { conn, framer, .. })) => {
                Some((*code, framer.feed(lock(conn).response(), true)))
            }
            _ => None,
        };
        if let Some(w) = watch {
            // A guest that continues (non-ephemeral) sees the client gone.
            let accepted = {
                let mut c = lock(&w.conn);
                c.close_host_side();
                c.socket_id
            };
            if let Some(id) = accepted {
                self.proc.tasks.notify(&WaitKey::File(id));
            }
            if let Some(f) = self.proc.fast.as_mut() {
                f.peer_gone(&mut self.mem);
            }
        }
        if let Some((code, answer)) = exited {
            return match answer {
                Ok(Some(mut resp)) => {
                    // Nothing can continue a program that exited, background work
                    // included.
                    resp.background = false;
                    self.pos = Position::Broken(format!("the program exited with status {code}"));
                    if !self.cfg.ephemeral {
                        self.reset_after_exit(code, "after answering", stats)?;
                    }
                    Ok(resp)
                }
                Ok(None) => Err(RequestError::Exited(code, String::new())),
                Err(e) => Err(RequestError::Exited(code, format!(": {e}"))),
            };
        }
        match r? {
            (Stop::Responded(resp), t) => {
                self.pos = Position::after(&resp, t);
                Ok(resp)
            }
            (stop, _) => Err(crate::vm::unexpected(stop, "before a complete response")),
        }
    }

    /// Hands the connection over through the fast page when the guest waits in the
    /// library's epoll_wait (crate::fastpath). `pending`: the wait it stopped in (`None`:
    /// the snapshot's, which it would re-run). `false`: the plain path must queue it.
    fn fast_hand_over(
        &mut self,
        listen_fd: u64,
        conn: &SharedConn,
        request: &[u8],
        pending: &Option<Pending>,
    ) -> bool {
        let Some(mut f) = self.proc.fast.take() else {
            return false;
        };
        let wait = match pending {
            Some((nr, args, _)) => Some((*nr, args[0])),
            None => self.snapshot.as_ref().and_then(|s| s.pause_call),
        };
        let placed = match wait.and_then(|(nr, a0)| expected_waiting(nr, a0)) {
            Some(expect) => f.place(
                &mut self.mem,
                &mut self.proc,
                listen_fd,
                conn,
                request,
                expect,
            ),
            None => false,
        };
        if !placed {
            f.plain_hand_over(&mut self.mem);
        }
        self.proc.fast = Some(f);
        placed
    }

    /// Runs the background work of the last response (a listening VM's part of
    /// [`Vm::finish_background`]) until the guest is back in its wait, within `deadline`.
    pub(crate) fn finish_background_net(
        &mut self,
        trap: Trap,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<(), RequestError> {
        let pending = self.back_to_wait(trap, deadline, true, stats)?;
        self.pos = Position::InWait(pending);
        Ok(())
    }

    /// Resets a non-ephemeral VM whose program exited (`when`) to the snapshot, and says
    /// so: its state from earlier requests is gone.
    fn reset_after_exit(
        &mut self,
        code: i32,
        when: &str,
        stats: &mut RequestStats,
    ) -> Result<(), RequestError> {
        tracing::warn!(
            program = %self.cfg.name,
            "the program exited with status {code} {when}; the VM is reset to its snapshot \
             (what earlier requests left in it is lost): a non-ephemeral program should keep \
             running between requests"
        );
        let t0 = Instant::now();
        let pages = self.reset(true).inspect_err(|e| {
            self.pos = Position::Broken(e.to_string());
        })?;
        stats.dirty_pages += pages;
        stats.reset_us += t0.elapsed().as_secs_f64() * 1e6;
        Ok(())
    }
}
