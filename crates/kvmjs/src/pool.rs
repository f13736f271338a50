//! Per-program VM pools. A program boots on its first request: worker 0 boots the guest
//! and shares its snapshot, and the other `concurrency - 1` workers fork VMs from it. Each
//! VM lives on its own thread for its whole life (vCPUs are thread-bound and a pinned VM
//! needs no lock); requests reach the workers through one bounded queue. An idle program
//! is unloaded and boots again on demand.

use crate::config::Program;
use crate::http::stream::{self, ChunkBody, ChunkSender};
use crate::keepalive::{HybridConfig, IdleHistogram, Policy};
use crate::metrics::Metrics;
use kvmjs_vm::{Request, RequestError, RequestStats, Response, Snapshot, Vm};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Mutex};

#[path = "pool/vms.rs"]
mod vms;
use vms::{Counted, Vms, GROW_AFTER};

/// What a worker reports for one request.
pub struct Outcome {
    /// The guest's response or the error.
    pub result: Result<Response, RequestError>,
    /// Its counters, without the reset: that runs after the response is sent, and the
    /// worker records it in the metrics ([`Metrics::reset`]).
    pub stats: RequestStats,
    /// The rest of a streamed response ([`Response::stream`]), as the worker gets it
    /// from the guest; the worker records its exits and errors.
    pub stream: Option<ChunkBody>,
}

/// Why a request never reached a VM.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The program did not boot.
    #[error("program {program:?} failed to boot: {message}")]
    Boot {
        /// Program.
        program: String,
        /// The boot error.
        message: String,
    },
    /// Every VM stayed busy for queue_timeout.
    #[error("all {concurrency} VMs of {program:?} stayed busy for {waited:?} (queue_timeout)")]
    Busy {
        /// Program.
        program: String,
        /// Its VMs.
        concurrency: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// The worker went away (the program was unloaded mid-request).
    #[error("the VM serving the request stopped; try again")]
    Gone,
}

struct Job {
    req: Request,
    /// `None`: the job waited past its queue deadline and was not run.
    reply: oneshot::Sender<Option<Outcome>>,
    /// A job still queued after this is answered as busy rather than run.
    queue_deadline: Instant,
    /// Set when a VM takes the job (a job waiting long untaken grows the pool).
    taken: Arc<AtomicBool>,
    /// Kept until the job is dropped (served or discarded): the request body's claim on
    /// the front's body-memory budget, since the body lives here until then.
    _hold: Box<dyn Send>,
}

struct Running {
    tx: async_channel::Sender<Job>,
    vms: Arc<Vms>,
}

/// One program and its pool.
pub struct ProgramPool {
    /// Its settings.
    pub cfg: Program,
    state: Mutex<Option<Running>>,
    /// When the program was last busy, and how many jobs its VMs are still on.
    activity: Arc<Activity>,
    in_flight: AtomicUsize,
    metrics: Arc<Metrics>,
    /// When to unload and pre-warm (None: never unload).
    keep_alive: Option<Policy>,
    /// Idle times between requests, for the hybrid policy.
    idle_times: std::sync::Mutex<IdleHistogram>,
    /// A request has reached the pool (idle times are measured from then on).
    served: AtomicBool,
    /// Why the next boot happens, for the metrics: see [`Cause`].
    next_cause: std::sync::atomic::AtomicU8,
    /// The idle period (its start, `Activity::last_ms`) a pre-warm was tried for: one try
    /// per idle period, so a failing boot is not repeated every tick.
    prewarmed_for: AtomicU64,
    /// Set by shutdown: no boot (a late pre-warm) starts after it.
    closed: AtomicBool,
    /// The windows last exported to the metrics.
    shown_windows: std::sync::Mutex<Option<crate::keepalive::Windows>>,
}

/// A program's activity, shared with its VM threads: a job counts as busy from when a
/// VM takes it until its streamed body, background work and reset are done (the
/// response head returns earlier), and the program's idle time runs from then.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Why a program boots (`kvmjs_cold_start_causes_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Cause {
    /// Its first request.
    First,
    /// A request after a keep-alive unload.
    AfterUnload,
    /// A request after its VMs went away.
    AfterFailure,
    /// Loaded by the policy ahead of the predicted next request.
    Prewarm,
    /// One more VM, forked from the snapshot because requests waited for a VM.
    PoolGrowth,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::First => "first",
            Cause::AfterUnload => "after_unload",
            Cause::AfterFailure => "after_failure",
            Cause::Prewarm => "prewarm",
            Cause::PoolGrowth => "pool_growth",
        }
    }

    fn from_u8(v: u8) -> Self {
        [
            Cause::First,
            Cause::AfterUnload,
            Cause::AfterFailure,
            Cause::Prewarm,
            Cause::PoolGrowth,
        ]
        .into_iter()
        .find(|c| *c as u8 == v)
        .unwrap_or(Cause::First)
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ProgramPool {
    /// A pool that boots on first use.
    pub fn new(cfg: Program, metrics: Arc<Metrics>) -> Self {
        metrics.program(&cfg.name, cfg.engine);
        metrics.fetch_program(&cfg.name, cfg.vm.fetch.metrics.clone());
        let hybrid = cfg.hybrid_keep_alive.then(HybridConfig::default);
        let keep_alive = Policy::from_settings(hybrid, cfg.idle_timeout).unwrap_or_else(|e| {
            // The defaults are valid; should that ever change, keep the fixed policy.
            tracing::warn!(program = %cfg.name, "keep-alive: {e}; using idle_timeout");
            cfg.idle_timeout.map(Policy::Fixed)
        });
        ProgramPool {
            cfg,
            state: Mutex::new(None),
            activity: Arc::new(Activity::new()),
            in_flight: AtomicUsize::new(0),
            metrics,
            keep_alive,
            idle_times: std::sync::Mutex::new(IdleHistogram::new()),
            served: AtomicBool::new(false),
            next_cause: std::sync::atomic::AtomicU8::new(Cause::First as u8),
            prewarmed_for: AtomicU64::new(u64::MAX),
            shown_windows: std::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `req` on one of the program's VMs; `hold` is dropped with the request.
    pub async fn submit(&self, req: Request, hold: Box<dyn Send>) -> Result<Outcome, SubmitError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.in_flight);
        if self.served.load(Ordering::Relaxed) && matches!(self.keep_alive, Some(Policy::Hybrid(_)))
        {
            self.idle_times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record(self.activity.idle());
        }
        self.activity.touch();
        let (tx, vms) = self.ensure_running(None).await?;
        self.served.store(true, Ordering::Relaxed);
        let start = Instant::now();
        let (reply, rx) = oneshot::channel();
        let taken = Arc::new(AtomicBool::new(false));
        let job = Job {
            req,
            reply,
            taken: taken.clone(),
            queue_deadline: start + self.cfg.queue_timeout,
            _hold: hold,
        };
        let busy = || SubmitError::Busy {
            program: self.cfg.name.clone(),
            concurrency: self.cfg.concurrency,
            waited: start.elapsed(),
        };
        match tokio::time::timeout(self.cfg.queue_timeout, tx.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                // Every worker is gone: forget the pool, so the next request boots it again.
                let mut st = self.state.lock().await;
                if st
                    .as_ref()
                    .is_some_and(|r| r.tx.is_closed() || r.tx.receiver_count() == 0)
                {
                    *st = None;
                    self.metrics.unload(&self.cfg.name);
                    self.next_cause
                        .store(Cause::AfterFailure as u8, Ordering::Relaxed);
                }
                return Err(SubmitError::Gone);
            }
            Err(_) => return Err(busy()),
        }
        // (The VM marks the program's last activity when the job is wholly done.)
        let mut rx = rx;
        let answer = if vms.can_grow() {
            tokio::select! {
                a = &mut rx => a,
                () = tokio::time::sleep(GROW_AFTER) => {
                    if !taken.load(Ordering::SeqCst) {
                        vms.grow();
                    }
                    rx.await
                }
            }
        } else {
            rx.await
        };
        let outcome = answer.map_err(|_| SubmitError::Gone)?;
        outcome.ok_or_else(busy)
    }

    /// The running pool, booted now if it is not (`cause`: why, when not a request's).
    async fn ensure_running(
        &self,
        cause: Option<Cause>,
    ) -> Result<(async_channel::Sender<Job>, Arc<Vms>), SubmitError> {
        let mut st = self.state.lock().await;
        if let Some(r) = st.as_ref() {
            return Ok((r.tx.clone(), r.vms.clone()));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::Gone);
        }
        let cause =
            cause.unwrap_or_else(|| Cause::from_u8(self.next_cause.load(Ordering::Relaxed)));
        let t0 = Instant::now();
        let cfg = self.cfg.clone();
        let metrics = self.metrics.clone();
        let activity = self.activity.clone();
        let started = tokio::task::spawn_blocking(move || start(&cfg, metrics, activity))
            .await
            .unwrap_or_else(|e| Err(format!("boot thread failed: {e}")));
        match started {
            Ok(running) => {
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                tracing::info!(program = %self.cfg.name, "cold start in {ms:.1} ms ({} of up to {} VMs)", self.cfg.start_vms, self.cfg.concurrency);
                self.metrics
                    .cold_start(&self.cfg.name, t0.elapsed(), cause.label());
                // Any later boot follows an unload (or a failure, which says so).
                self.next_cause
                    .store(Cause::AfterUnload as u8, Ordering::Relaxed);
                let r = (running.tx.clone(), running.vms.clone());
                *st = Some(running);
                Ok(r)
            }
            Err(message) => {
                tracing::error!(program = %self.cfg.name, "{message}");
                self.metrics.error(&self.cfg.name, "boot");
                Err(SubmitError::Boot {
                    program: self.cfg.name.clone(),
                    message,
                })
            }
        }
    }

    /// Applies the keep-alive policy (called twice a second): unloads the program once
    /// the policy's windows say it should not be loaded at its current idle time, and
    /// pre-warms it (boots it without a request) when its pre-warm window has passed.
    /// The fixed policy is `idle_timeout`: unload after that long, never pre-warm.
    pub async fn unload_if_idle(self: &Arc<Self>) {
        let Some(policy) = &self.keep_alive else {
            return;
        };
        if !self.served.load(Ordering::Relaxed) || self.busy() {
            return;
        }
        let windows = policy.windows(
            &self
                .idle_times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        // The gauges change only with the histogram: set them only then.
        {
            let mut shown = self
                .shown_windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *shown != Some(windows) {
                self.metrics
                    .keep_alive(&self.cfg.name, windows.prewarm, windows.keep_alive);
                *shown = Some(windows);
            }
        }
        let idle = self.activity.idle();
        let wanted = windows.loaded_at(idle);
        // Busy (a boot in progress, or another unload): look again at the next tick
        // rather than hold up the other programs' keep-alive behind a boot.
        let Ok(state) = self.state.try_lock() else {
            return;
        };
        let loaded = state.is_some();
        drop(state);
        if loaded && !wanted {
            let mut st = self.state.lock().await;
            if self.busy() {
                return;
            }
            if let Some(running) = st.take() {
                drop(st);
                tracing::info!(program = %self.cfg.name, "idle for {:.0} s: unloading ({}: pre-warm {:?}, keep-alive {:?})", idle.as_secs_f64(), windows.reason, windows.prewarm, windows.keep_alive);
                self.metrics.unload(&self.cfg.name);
                // Joining the VM threads waits for nothing (none is busy), but not on
                // the caller's time: it checks every program in turn.
                tokio::spawn(stop(running));
            }
        } else if !loaded && wanted && !windows.prewarm.is_zero() && self.first_prewarm() {
            tracing::info!(program = %self.cfg.name, "pre-warming after {:.0} s idle (keep-alive {:?})", idle.as_secs_f64(), windows.keep_alive);
            // In the background: the caller checks every program in turn. A failed boot
            // is logged and counted by ensure_running; the next request tries again.
            let pool = self.clone();
            tokio::spawn(async move {
                let _ = pool.ensure_running(Some(Cause::Prewarm)).await;
            });
        }
    }

    /// Whether a request is on its way to the program or one of its VMs is still on a job.
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0 || self.activity.busy.load(Ordering::SeqCst) > 0
    }

    /// Whether this idle period has not had its pre-warm yet (and now has).
    fn first_prewarm(&self) -> bool {
        let period = self.activity.last_ms.load(Ordering::Relaxed);
        self.prewarmed_for.swap(period, Ordering::Relaxed) != period
    }

    /// Stops the workers (after the requests already queued); no boot starts after it.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(running) = self.state.lock().await.take() {
            stop(running).await;
        }
    }
}

async fn stop(running: Running) {
    running.tx.close();
    let workers = (running.vms.threads.lock())
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
}

/// Boots the program on worker 0 and forks the other workers from its snapshot.
fn start(p: &Program, metrics: Arc<Metrics>, activity: Arc<Activity>) -> Result<Running, String> {
    // Mapped, not read: deno is ~95 MB, and worker 0 holds this for the VM's life.
    let elf = crate::mapped::MappedFile::open(&p.guest)
        .map_err(|e| format!("cannot read guest {}: {e}", p.guest.display()))?;
    let (tx, rx) = async_channel::bounded::<Job>(p.queue_size);
    let (snap_tx, snap_rx) = std::sync::mpsc::channel::<Result<Arc<Snapshot>, String>>();
    let mut vm_cfg = p.vm.clone();
    // The guest's file backs its read-only pages (shared page cache, not a copy): the
    // very file the bytes are mapped from.
    vm_cfg.image_file = Some(elf.file().clone());
    let cfg = Arc::new(vm_cfg);
    // Worker 0 restores the program's snapshot file instead of booting, when it has a
    // valid one (crate::snapfile).
    let plan = crate::snapfile::Plan::of(p);
    let rx0 = rx.clone();
    let m0 = metrics.clone();
    let a0 = activity.clone();
    let count = Arc::new(AtomicUsize::new(1));
    let counted = Counted(count.clone());
    let boot = std::thread::Builder::new()
        .name(format!("{}-vm0", p.name))
        .spawn(move || {
            let _counted = counted;
            match plan.first_vm(cfg, elf.bytes(), &m0) {
                Ok(vm) => {
                    let snap = vm.snapshot().expect("a booted VM has a snapshot");
                    let _ = snap_tx.send(Ok(snap.clone()));
                    serve(vm, snap, rx0, m0, a0);
                }
                Err(e) => {
                    let _ = snap_tx.send(Err(boot_error(e)));
                }
            }
        })
        .map_err(|e| format!("cannot start a VM thread: {e}"))?;
    let snap = snap_rx
        .recv()
        .map_err(|_| "the boot thread died".to_string())??;
    metrics.snapshot_memory(&p.name, snap.pages() as u64 * 4096);
    let vms = Arc::new(Vms {
        snap,
        rx: rx.downgrade(),
        metrics,
        activity,
        name: p.name.clone(),
        max: p.concurrency,
        count,
        failed: std::sync::Mutex::new(None),
        threads: std::sync::Mutex::new(Some(vec![boot])),
    });
    for i in 1..p.start_vms.clamp(1, p.concurrency) {
        vms.count.fetch_add(1, Ordering::SeqCst);
        vms.fork(i, false);
    }
    Ok(Running { tx, vms })
}

/// A boot failure without the "program X failed to boot:" prefix that
/// [`kvmjs_vm::VmError::Boot`] puts in its message, since [`SubmitError::Boot`] adds it.
fn boot_error(e: kvmjs_vm::VmError) -> String {
    match e {
        kvmjs_vm::VmError::Boot { reason, output, .. } if output.trim().is_empty() => reason,
        kvmjs_vm::VmError::Boot { reason, output, .. } => {
            format!("{reason}\n--- guest output ---\n{}", output.trim_end())
        }
        e => e.to_string(),
    }
}

/// Confines this VM thread with seccomp (on unless KVMJS_NO_SECCOMP=1).
fn confine() -> Result<(), String> {
    kvmjs_vm::limits::prepare_thread().map_err(|e| e.to_string())?;
    if std::env::var_os("KVMJS_NO_SECCOMP").is_some() {
        return Ok(());
    }
    kvmjs_vm::seccomp::apply_to_this_thread().map_err(|e| e.to_string())
}

/// Runs a streamed response to its end, passing each chunk on as the guest makes it. A
/// client that goes away (or reads too slowly to finish within `deadline`) stops the
/// guest; a failure ends the body abnormally (`tx` dropped unfinished). Either way the VM
/// is left with its reset (or background work) due, for [`Vm::finish`].
fn pump(vm: &mut Vm, tx: ChunkSender, deadline: Instant, metrics: &Metrics) {
    let name = vm.config().name.clone();
    loop {
        match vm.stream_next() {
            Ok(Some(chunk)) => {
                if let Err(e) = tx.send(chunk, deadline) {
                    tracing::debug!(program = %name, "streamed response stopped: {e}");
                    metrics.error(
                        &name,
                        match e {
                            stream::StreamError::Stalled => "stream_stalled",
                            _ => "client_gone",
                        },
                    );
                    vm.stream_cancel();
                    return;
                }
            }
            Ok(None) => return tx.finish(),
            Err(e) => {
                let kind = match e {
                    RequestError::StreamAborted => "stream_aborted",
                    RequestError::Timeout(_) => "timeout",
                    _ => "guest",
                };
                tracing::warn!(program = %name, "streamed response failed: {e}");
                metrics.error(&name, kind);
                return; // `tx` dropped unfinished: the body ends abnormally
            }
        }
    }
}

/// A job in progress on a VM ([`Activity::busy`]); its end is the program's last activity.
struct Busy<'a>(&'a Activity);

impl<'a> Busy<'a> {
    fn start(a: &'a Activity) -> Self {
        a.busy.fetch_add(1, Ordering::SeqCst);
        Busy(a)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a response to `method` with `status` goes out without a body (RFC 9110: a
/// HEAD response, 1xx, 204 and 304), so a streamed body is not wanted.
fn bodiless(method: &str, status: u16) -> bool {
    method.eq_ignore_ascii_case("HEAD") || matches!(status, 100..=199 | 204 | 304)
}

/// What one VM holds on its own, in the program's memory metric: measured when the VM
/// starts and then after a job at most once a second per 256 MiB of address space (a
/// measurement reads the VM's page residency, ~0.1 ms per 256 MiB), taken back when the
/// VM stops.
struct MemoryReport<'a> {
    metrics: &'a Metrics,
    program: String,
    shown: u64,
    at: Instant,
}

impl<'a> MemoryReport<'a> {
    fn new(metrics: &'a Metrics, vm: &Vm) -> Self {
        let mut r = MemoryReport {
            metrics,
            program: vm.config().name.clone(),
            shown: 0,
            at: Instant::now(),
        };
        r.measure(vm);
        r
    }

    fn update(&mut self, vm: &Vm) {
        // A second per 256 MiB of address space: the residency scan reads a byte per
        // page of it (deno's 4 GiB: every 16 s).
        let every = Duration::from_secs((vm.config().address_space >> 28).max(1));
        if self.at.elapsed() >= every {
            self.measure(vm);
        }
    }

    fn measure(&mut self, vm: &Vm) {
        let now = vm.private_memory();
        self.metrics
            .vm_memory(&self.program, now as i64 - self.shown as i64);
        self.shown = now;
        self.at = Instant::now();
    }
}

impl Drop for MemoryReport<'_> {
    fn drop(&mut self) {
        self.metrics.vm_memory(&self.program, -(self.shown as i64));
    }
}

/// A worker: one VM, requests until the queue closes.
fn serve(
    mut vm: Vm,
    snap: Arc<Snapshot>,
    rx: async_channel::Receiver<Job>,
    metrics: Arc<Metrics>,
    activity: Arc<Activity>,
) {
    if let Err(e) = confine() {
        tracing::error!("VM thread not started: {e}");
        return;
    }
    let mut memory = MemoryReport::new(&metrics, &vm);
    loop {
        // Requests often arrive back to back: poll briefly before sleeping on the queue,
        // which saves a futex wake-up (a cross-CPU wake costs tens of µs here).
        let spin_until = Instant::now() + Duration::from_micros(50);
        let mut job = None;
        while Instant::now() < spin_until {
            match rx.try_recv() {
                Ok(j) => {
                    job = Some(j);
                    break;
                }
                Err(async_channel::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(async_channel::TryRecvError::Closed) => return,
            }
        }
        let job = match job {
            Some(j) => j,
            None => match rx.recv_blocking() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        job.taken.store(true, Ordering::SeqCst);
        if job.reply.is_closed() {
            continue; // the client went away while the job was queued
        }
        if Instant::now() > job.queue_deadline {
            let _ = job.reply.send(None);
            continue;
        }
        // Busy until the job is wholly done (the keep-alive never unloads meanwhile).
        let _busy = Busy::start(&activity);
        // The reset (ephemeral mode, or after a failure) is not on the client's critical
        // path: it runs once the response is on its way, and before this VM takes
        // another job (respond() would run it first anyway).
        let started = Instant::now();
        let result = vm.respond(&job.req);
        let stats = vm.last_stats();
        let status = result.as_ref().map_or(0, |r| r.status);
        let (tx, body) = match &result {
            Ok(r) if r.stream => {
                let (tx, body) = stream::pipe();
                (Some(tx), Some(body))
            }
            _ => (None, None),
        };
        let _ = job.reply.send(Some(Outcome {
            result,
            stats,
            stream: body,
        }));
        if bodiless(&job.req.method, status) {
            // No body goes out (HEAD, 204, 304: hyper drops it): the head is out, the
            // rest is not wanted. Not a client that went away: the stream ends quietly.
            vm.stream_cancel();
        } else if let Some(tx) = tx {
            // The job's deadline: max_request_time covers the whole stream.
            let deadline = started + vm.config().max_request_time;
            pump(&mut vm, tx, deadline, &metrics);
            metrics.stream_exits(&vm.config().name, vm.last_stats().exits - stats.exits);
        }
        // Now the reset, or the app's ctx.waitUntil work, if any, then the reset. This VM
        // takes no job meanwhile; the others of the pool do.
        let done = vm.finish();
        let name = &vm.config().name;
        metrics.reset(name, done.dirty_pages, done.reset_us);
        if let Some(bg) = &done.background {
            if let Err(e) = &bg.result {
                tracing::warn!(program = %name, "background work (waitUntil) failed: {e}");
            }
            metrics.background(name, bg.duration, bg.result.as_ref().err());
        }
        memory.update(&vm);
        // A reset can fail (after the background work too).
        if vm.is_broken() {
            // A VM whose reset failed is discarded; a fresh fork takes its place.
            match Vm::from_snapshot(snap.clone()) {
                Ok(v) => vm = v,
                Err(e) => {
                    tracing::error!("cannot replace a broken VM: {e}");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bodiless;

    #[test]
    fn bodiless_responses_want_no_stream() {
        for (method, status) in [
            ("HEAD", 200),
            ("head", 500),
            ("GET", 204),
            ("POST", 304),
            ("GET", 103),
        ] {
            assert!(bodiless(method, status), "{method} {status}");
        }
        for (method, status) in [("GET", 200), ("POST", 205), ("GET", 404), ("GET", 0)] {
            assert!(!bodiless(method, status), "{method} {status}");
        }
    }
}
