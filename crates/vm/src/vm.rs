//! One program instance: boot to the first `wait_for_requests_paused`, snapshot there,
//! then serve requests, resetting to the snapshot after each one (ephemeral mode) or
//! after a failure.
//!
//! Trap paths (why each exists is in the README's architecture section):
//! - `syscall` from ring 3 lands in the LSTAR stub, which writes the number to the trap
//!   page (one MMIO exit) and returns with `jmp *%rcx` (PVM: the stub runs in ring 3) or
//!   `sysretq` (VMX/SVM: ring 0). Which one the host probe's VM detected (caps::Flavour).
//! - upstream's ring-3 `out` reaches the host directly on VMX/SVM; on PVM it raises #GP,
//!   which the host recognises and emulates (slower, but upstream guests still run).
//! - CPU exceptions go through the IDT to ring-0 stubs that report the vector.

use crate::api;
use crate::caps::Flavour;
use crate::config::VmConfig;
use crate::cpu;
use crate::fault;
use crate::layout::{self, PAGE_SIZE};
use crate::limits;
use crate::loader::{self, LoaderError};
use crate::memory::GuestMemory;
use crate::memory::HotPages;
use crate::mm::vma::{Backing, Special, PROT_READ, PROT_WRITE};
use crate::mm::AddressSpace;
use crate::process::Process;
use crate::request::{place, Request, RequestStats, Response};
use crate::snapshot::Snapshot;
use crate::syscalls::{self, Ctx, Exchange, Flow, GuestLog, Stop};
use crate::vcpu::{Exit, Hypervisor, KvmError, Machine};
use kvm_bindings::{kvm_regs, kvm_sregs};
use std::sync::Arc;
use std::time::Instant;

mod error;
mod finish;
pub use error::{RequestError, VmError};
pub use finish::{Background, Finished};

/// How the guest trapped: decides how to resume it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Syscall,
    Out,
    GpOut,
}

/// A trap and the ring-3 registers to continue with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trap {
    pub(crate) via: Via,
    pub(crate) cont: kvm_regs,
}

#[derive(Debug)]
pub(crate) enum Position {
    Booting,
    /// At the pause: naturally (`trap` set) or armed from the snapshot (`None`).
    AtPause {
        req_ptr: u64,
        trap: Option<Trap>,
    },
    AfterResponse(Trap),
    /// A program that listens, stopped in its wait for connections: the call to re-run
    /// (crate::listen).
    InWait(crate::tasks::switch::Pending),
    /// Responded with background work to finish ([`Vm::finish_background`]).
    Background(Trap),
    /// Sent the head of a streamed response; [`Vm::stream_next`] runs the guest on to its
    /// next chunk, within the request's `deadline` (max_request_time covers the stream).
    Streaming {
        trap: Trap,
        deadline: Instant,
    },
    /// Responded (or failed); the reset to the snapshot is still to run ([`Vm::finish`]).
    /// No trap is kept: the guest cannot be resumed from here, only reset. `full` as in
    /// `reset`.
    ResetDue {
        full: bool,
    },
    Broken(String),
}

impl Position {
    /// Where a guest that just sent `r` (stopped at `t`) is: with background work still to
    /// run, or done.
    pub(crate) fn after(r: &crate::request::Response, t: Trap) -> Position {
        if r.background {
            Position::Background(t)
        } else {
            Position::AfterResponse(t)
        }
    }
}

/// The KVM flavour the host probe detected (once /dev/kvm has been opened).
pub fn flavour() -> Option<Flavour> {
    Hypervisor::get().ok()?.caps().flavour
}

/// A booted program.
pub struct Vm {
    pub(crate) machine: Machine, // declared before `mem`: the VM must go before its memory
    pub(crate) mem: GuestMemory,
    pub(crate) cfg: Arc<VmConfig>,
    pub(crate) proc: Process,
    pub(crate) exchange: Exchange,
    pub(crate) log: GuestLog,
    pub(crate) cr3: u64,
    pub(crate) base_sregs: kvm_sregs,
    /// FS base the vCPU has now (so a change costs one SET_SREGS, once).
    pub(crate) fs_applied: u64,
    pub(crate) snapshot: Option<Arc<Snapshot>>,
    pub(crate) pos: Position,
    pub(crate) last: RequestStats,
    pub(crate) boot_stats: RequestStats,
    /// Page numbers restored by the last reset, when tracing is on.
    pub(crate) dirty_trace: Option<Vec<u64>>,
    /// Adaptive reset state (when KVM supports manual dirty-log protection).
    pub(crate) hot: Option<HotPages>,
    /// The virtual network handoff (`VmConfig::listen`, crate::listen).
    pub(crate) net: crate::listen::NetState,
}

const MIB: u64 = 1 << 20;

impl Vm {
    /// Loads `elf`, runs it until it pauses (within max_boot_time) and snapshots there.
    pub fn boot(cfg: Arc<VmConfig>, elf: &[u8]) -> Result<Vm, VmError> {
        let t0 = Instant::now();
        let mut vm = Vm::load(cfg, elf)?;
        let deadline = t0 + vm.cfg.max_boot_time;
        let mut stats = RequestStats::default();
        let first = vm.run(deadline, &mut stats);
        vm.finish_boot(t0, deadline, first, stats)
    }

    /// Builds the VM with `elf` loaded and ready to run its first instruction (program.rs
    /// runs it to completion; [`Vm::boot`] to its pause).
    pub(crate) fn load(cfg: Arc<VmConfig>, elf: &[u8]) -> Result<Vm, VmError> {
        let space = layout::align_up(cfg.address_space, layout::HUGE_PAGE);
        if !(layout::MIN_ADDRESS_SPACE..=layout::MAX_ADDRESS_SPACE).contains(&space) {
            return Err(VmError::Config(format!(
                "address_space {} MB must be between {} and {} MB",
                cfg.address_space / MIB,
                layout::MIN_ADDRESS_SPACE / MIB,
                layout::MAX_ADDRESS_SPACE / MIB
            )));
        }
        let hv = Hypervisor::get().map_err(VmError::Hypervisor)?;
        let caps = hv.caps();
        caps.check_address_space(space)
            .map_err(|e| VmError::Config(e.to_string()))?;
        let mut mem = GuestMemory::new(space, cfg.hugepages)?;
        if let Some(max) = hv.readonly_slots() {
            let limit = 1u64 << caps.maxphyaddr.min(63);
            mem.set_slots(crate::memory::FileSlots::new(space, limit, max));
        }
        let mut mm = AddressSpace::new(&mut mem)?;
        let cr3 = cpu::write_system_area(&mut mem, &mut mm, caps)?;
        mem.set_root(Some(cr3));
        let path = cfg.program_path.clone().unwrap_or_else(|| cfg.name.clone());
        let program = loader::load_program(&mut mem, &mut mm, &cfg, elf, &path)?;
        mm.set_brk_start(program.main.image_end);
        let stack_top = loader::map_stack(&mut mem, &mut mm)?;
        let vdso = loader::map_vdso(&mut mem, &mut mm, crate::vdso::image())?;
        let req_len = crate::process::request_area_size(cfg.max_request_body);
        let req = mm
            .find_free(req_len, layout::HUGE_PAGE)
            .ok_or(VmError::Config("no room for the request area".into()))?;
        mm.map_special(
            &mut mem,
            req,
            req + req_len,
            PROT_READ | PROT_WRITE,
            Special::Request,
            Backing::Anon,
        )
        .map_err(LoaderError::from)?;
        // Memory is registered before it is filled: KVM only records the mapping.
        let machine = Machine::new(hv, &mem)?;
        if let Some(base) = vdso {
            let clocks = crate::vdso::Clocks::sample(machine.tsc_delta()?, caps.guest_tsc_khz());
            let mut page = [0u8; crate::vdso::DATA_SIZE];
            crate::vdso::fill(&mut page, &clocks)
                .map_err(|e| VmError::Config(format!("vDSO data page: {e}")))?;
            mm.write_init(&mut mem, base - PAGE_SIZE, &page)
                .map_err(LoaderError::from)?;
        }
        let mut argv = vec![cfg.name.clone()];
        argv.extend(cfg.main_arguments.iter().cloned());
        let mut env: Vec<String> = vec![
            "LC_ALL=C".into(),
            "USER=root".into(),
            format!("KVM_NAME={}", cfg.name),
            "KVM_TYPE=request".into(),
            "KVM_DEBUG=0".into(),
            format!("{}=1", kvmjs_abi::KVMJS_HOST_ENV),
        ];
        // The guest converts TSC ticks itself instead of trapping for clock_gettime, but
        // only where the probe found the TSC invariant (else it is no clock).
        if let Some(khz) = caps.guest_tsc_khz() {
            env.push(format!("KVMJS_TSC_KHZ={khz}"));
        }
        env.extend(cfg.environment.iter().cloned());
        // The fast path, for a dynamically linked program that serves HTTP
        // (crate::fastpath); its page is announced in the auxiliary vector.
        let fast = if cfg.listen.is_some() && cfg.fast_path && program.interp_base != 0 {
            match crate::fastpath::files() {
                Ok(_) => Some(
                    crate::fastpath::FastState::map(&mut mem, &mut mm)
                        .map_err(LoaderError::from)?,
                ),
                Err(e) => {
                    tracing::warn!(program = %cfg.name, "{e}; every socket call will be a VM exit");
                    None
                }
            }
        } else {
            None
        };
        let mut random = [0u8; 16];
        crate::syscalls::fill_random(&mut random);
        let aux = loader::CpuAux {
            hwcap: caps.hwcap,
            hwcap2: caps.hwcap2,
            minsigstksz: caps.minsigstksz,
        };
        let info = loader::StackInfo {
            phdr: program.main.phdr,
            phent: program.main.phent,
            phnum: program.main.phnum,
            entry: program.main.entry,
            base: program.interp_base,
            sysinfo_ehdr: vdso,
            execfn: path,
            fast_page: fast.as_ref().map(crate::fastpath::FastState::addr),
        };
        let sp = loader::build_stack(&mut mem, stack_top, &info, &argv, &env, &aux, random)?;
        // What the guest can never write (calibration keeps it out of the writable set):
        // system pages and the first page-table frames.
        mem.protect(vec![(0, layout::PAGE_TABLES_END)]);
        let base_sregs = machine.sregs()?;
        machine.set_sregs(&cpu::user_sregs(&base_sregs, cr3, 0))?;
        machine
            .vcpu
            .set_regs(&cpu::entry_regs(program.start, sp))
            .map_err(|source| KvmError::Ioctl {
                op: "SET_REGS",
                source,
            })?;
        let mut proc = Process::with_mm(mm, (req, req + req_len), cfg.max_memory);
        proc.fast = fast;
        let listen = cfg.listen.is_some();
        let vm = Vm {
            machine,
            mem,
            cfg,
            proc,
            exchange: Exchange::default(),
            log: GuestLog::default(),
            cr3,
            base_sregs,
            fs_applied: 0,
            snapshot: None,
            pos: Position::Booting,
            last: RequestStats::default(),
            boot_stats: RequestStats::default(),
            dirty_trace: None,
            hot: None,
            net: crate::listen::NetState::new(listen),
        };
        Ok(vm)
    }

    /// Ends a boot whose first run (started at `t0`) ended with `first`: a pause is warmed
    /// up, snapshotted and calibrated; anything else is a boot failure.
    pub(crate) fn finish_boot(
        self,
        t0: Instant,
        deadline: Instant,
        first: Result<(Stop, Trap), RequestError>,
        mut stats: RequestStats,
    ) -> Result<Vm, VmError> {
        let mut vm = self;
        let fail = |vm: &Vm, reason: String| VmError::Boot {
            name: vm.cfg.name.clone(),
            reason,
            output: vm.log.recent(),
        };
        let (stop, trap) = match first {
            Ok(r) => r,
            Err(RequestError::Timeout(_)) => {
                return Err(fail(
                    &vm,
                    format!(
                        "it did not pause within max_boot_time ({:?})",
                        vm.cfg.max_boot_time
                    ),
                ))
            }
            Err(e) => return Err(fail(&vm, e.to_string())),
        };
        match stop {
            Stop::Paused { req_ptr } => {
                let (req_ptr, trap) = vm
                    .warm_up(req_ptr, trap, deadline)
                    .map_err(|e| fail(&vm, e.to_string()))?;
                vm.take_snapshot(req_ptr, trap, None)?
            }
            Stop::Listening { nr, args } => {
                let (nr, _, trap) = vm
                    .pause_at_wait((nr, args, trap), deadline)
                    .map_err(|e| fail(&vm, e.to_string()))?;
                vm.take_snapshot(0, trap, Some(nr))?;
                vm.settle(deadline).map_err(|e| fail(&vm, e.to_string()))?
            }
            Stop::Exited(code) => {
                return Err(fail(
                    &vm,
                    format!("it exited with status {code} before {}", vm.pause_name()),
                ))
            }
            Stop::Responded(_) | Stop::Stream(_) => {
                return Err(fail(
                    &vm,
                    "it sent a response before waiting for a request".into(),
                ))
            }
            Stop::Fatal(m) => return Err(fail(&vm, m)),
        }
        // Fixes the pages that stay writable across resets (snapshot.rs) before any user
        // request can influence them.
        if let Err(e) = vm.calibrate(true) {
            return Err(fail(&vm, format!("a calibration request failed: {e}")));
        }
        stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
        vm.boot_stats = stats;
        Ok(vm)
    }

    /// Sends the configured warm-up requests (before the snapshot, so their effects are
    /// kept) and returns the pause the snapshot is taken at.
    fn warm_up(
        &mut self,
        req_ptr: u64,
        trap: Trap,
        deadline: Instant,
    ) -> Result<(u64, Trap), RequestError> {
        // tinykvm.json allows `num_requests: 0`: no warm-up (only calibration uses it).
        let Some(w) = self.cfg.warmup.clone().filter(|w| w.num_requests > 0) else {
            return Ok((req_ptr, trap));
        };
        self.pos = Position::AtPause {
            req_ptr,
            trap: Some(trap),
        };
        let req = Request::warmup(&w);
        let mut stats = RequestStats::default();
        for _ in 0..w.num_requests {
            let mut r = self.serve(&req, deadline, &mut stats)?;
            // Before the snapshot: no reset is due after it.
            self.collect_stream_with(&mut r, false)?;
        }
        let Position::AfterResponse(t) = self.pos else {
            return Err(RequestError::Broken(
                "warm-up did not end in a response".into(),
            ));
        };
        self.resume(t, 0)?;
        match self.run(deadline, &mut stats)? {
            (Stop::Paused { req_ptr }, t) => Ok((req_ptr, t)),
            (stop, _) => Err(unexpected(stop, "after the warm-up")),
        }
    }

    /// Host memory this VM holds on its own, bytes: guest pages it wrote or allocated,
    /// not those it still shares with its snapshot (measured: mincore and pagemap).
    pub fn private_memory(&self) -> u64 {
        self.mem.private_bytes()
    }

    /// Settings of this VM.
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// Whether a failed reset left the VM unusable: discard it (fork a new one).
    pub fn is_broken(&self) -> bool {
        matches!(self.pos, Position::Broken(_))
    }

    /// Counters of the last request.
    pub fn last_stats(&self) -> RequestStats {
        self.last
    }

    /// Counters of the boot (exits, system calls, total µs).
    pub fn boot_stats(&self) -> RequestStats {
        self.boot_stats
    }

    /// Records which pages each reset restores (see [`Vm::dirty_trace`]).
    pub fn trace_dirty_pages(&mut self, on: bool) {
        self.dirty_trace = on.then(Vec::new);
    }

    /// Pages restored by the last reset: the guest-virtual address each frame is mapped
    /// at (its guest-physical address when unmapped) and the region it lies in.
    pub fn dirty_trace(&self) -> Vec<(u64, &'static str)> {
        let Some(t) = &self.dirty_trace else {
            return Vec::new();
        };
        let frames: Vec<u64> = t.iter().map(|&page| page * PAGE_SIZE).collect();
        self.proc.mm.describe_frames(&self.mem, &frames)
    }

    /// Pages captured in the snapshot.
    pub fn snapshot_pages(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| s.pages())
    }

    /// Serves one request and, in ephemeral mode or after a failure, resets the VM before
    /// returning ([`Vm::respond`] without the wait for the reset). Background work the
    /// response leaves is not run: [`Vm::finish_background`] runs it, or the next request.
    /// A streamed response is collected whole (the caller wants the complete response).
    pub fn handle(&mut self, req: &Request) -> Result<Response, RequestError> {
        let out = self
            .respond(req)
            .and_then(|mut r| self.collect_stream(&mut r).map(|()| r));
        let done = self.finish_reset();
        self.last.total_us += done.reset_us;
        out
    }

    /// Serves one request and returns its response with the reset (ephemeral mode, or
    /// after a failure) still due: [`Vm::finish`] runs it, so the caller can send the
    /// response first and the client does not wait for the reset. Whatever the previous
    /// request left (its reset, its background work) runs first, here: no request ever
    /// runs in a VM that still holds another one's state.
    pub fn respond(&mut self, req: &Request) -> Result<Response, RequestError> {
        self.finish();
        let t0 = Instant::now();
        let mut stats = RequestStats::default();
        let written = self.log.written;
        self.proc.memory_refused = false;
        let out = self
            .serve(req, t0 + self.cfg.max_request_time, &mut stats)
            .map_err(|e| self.with_guest_output(e, written))
            .map_err(|e| self.out_of_memory(e));
        let reset = match &out {
            // The reset waits for the background work (finish_background), or for the
            // end of the stream (stream_next).
            Ok(r) if r.background || r.stream => false,
            Ok(_) => self.cfg.ephemeral,
            // Nothing ran: a non-ephemeral guest keeps its state.
            Err(RequestError::Place(_)) => self.cfg.ephemeral,
            Err(RequestError::Broken(_)) => false,
            Err(_) => true,
        };
        if reset {
            // Whatever the guest was doing, it is never resumed from here.
            self.pos = Position::ResetDue { full: out.is_err() };
        }
        stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
        self.last = stats;
        if let Err(e) = &out {
            tracing::debug!(program = %self.cfg.name, "request failed: {e}");
        }
        out
    }

    /// A crash after a refused memory call is the program running out of memory (V8
    /// aborts with int3 when an allocation fails; a C program may take a SIGSEGV), which is
    /// what the operator needs to know, rather than the crash itself.
    fn out_of_memory(&self, e: RequestError) -> RequestError {
        match e {
            RequestError::Fault(_) | RequestError::Exited(..) | RequestError::Guest(_)
                if self.proc.memory_refused =>
            {
                RequestError::OutOfMemory {
                    max_memory_mb: self.cfg.max_memory >> 20,
                    max_request_memory_mb: self.cfg.max_request_memory >> 20,
                    detail: e.to_string(),
                }
            }
            e => e,
        }
    }

    /// A guest that dies usually said why on stderr first (e.g. "memory allocation of N
    /// bytes failed" before SIGABRT): keeps what it wrote since `written` with the error.
    pub(crate) fn with_guest_output(&self, mut e: RequestError, written: u64) -> RequestError {
        if let RequestError::Guest(m) | RequestError::Exited(_, m) = &mut e {
            if let Some(said) = self.log.summary_since(written) {
                m.push_str(&format!(" (guest output: {said})"));
            }
        }
        e
    }

    fn serve(
        &mut self,
        req: &Request,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<Response, RequestError> {
        if self.cfg.listen.is_some() {
            return self.serve_net(req, deadline, stats);
        }
        let (req_ptr, trap) = match self.pos {
            Position::AtPause { req_ptr, trap } => (req_ptr, trap),
            Position::AfterResponse(trap) => {
                self.resume(trap, 0)?;
                match self.run(deadline, stats)? {
                    (Stop::Paused { req_ptr }, t) => (req_ptr, Some(t)),
                    (stop, _) => {
                        return Err(unexpected(
                            stop,
                            "while returning to wait_for_requests_paused",
                        ))
                    }
                }
            }
            Position::Background(_) => {
                return Err(RequestError::Broken(
                    "background work is still running (call finish_background)".into(),
                ))
            }
            Position::Streaming { .. } => {
                return Err(RequestError::Broken(
                    "a streamed response is still running (call finish)".into(),
                ))
            }
            Position::Booting | Position::InWait(_) => {
                return Err(RequestError::Broken("it has not booted".into()))
            }
            Position::ResetDue { .. } => {
                return Err(RequestError::Broken(
                    "the last request's reset has not run (call finish)".into(),
                ))
            }
            Position::Broken(ref m) => return Err(RequestError::Broken(m.clone())),
        };
        self.pos = Position::AtPause { req_ptr, trap };
        let mut prng = [0u8; 16];
        crate::syscalls::fill_random(&mut prng);
        let prng = [
            u64::from_le_bytes(prng[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(prng[8..].try_into().expect("8 bytes")),
        ];
        place(&mut self.mem, self.proc.request_area, req_ptr, req, prng)?;
        self.exchange = Exchange {
            method: req.method.clone(),
            req_headers: req.headers.clone(),
            resp_headers: Vec::new(),
            ..Default::default()
        };
        if let Some(t) = trap {
            self.resume(t, 0)?;
        }
        match self.run(deadline, stats)? {
            (Stop::Responded(r), t) if r.stream => {
                self.pos = Position::Streaming { trap: t, deadline };
                Ok(r)
            }
            (Stop::Responded(r), t) => {
                self.pos = Position::after(&r, t);
                Ok(r)
            }
            (stop, _) => Err(unexpected(stop, "before sending a response")),
        }
    }

    /// Runs the guest until it stops, handling system calls on the way.
    pub(crate) fn run(
        &mut self,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<(Stop, Trap), RequestError> {
        self.run_from(deadline, stats, None)
    }

    /// [`Vm::run`], first running call `pending` (a wait the guest stopped in) for the
    /// thread on the vCPU.
    pub(crate) fn run_from(
        &mut self,
        deadline: Instant,
        stats: &mut RequestStats,
        pending: Option<crate::tasks::switch::Pending>,
    ) -> Result<(Stop, Trap), RequestError> {
        self.machine.clear_kick();
        let left = deadline.saturating_duration_since(Instant::now());
        limits::arm(self.machine.kvm_run_ptr(), left)?;
        let r = self.run_loop(deadline, stats, pending);
        limits::disarm();
        r
    }

    fn run_loop(
        &mut self,
        deadline: Instant,
        stats: &mut RequestStats,
        // A blocked call to run again for the thread just switched to (tasks::Resume::Retry).
        mut pending: Option<crate::tasks::switch::Pending>,
    ) -> Result<(Stop, Trap), RequestError> {
        loop {
            if let Some((nr, args, trap)) = pending.take() {
                if Instant::now() >= deadline {
                    return Err(RequestError::Timeout(self.cfg.max_request_time));
                }
                stats.syscalls += 1;
                match self.dispatch(nr, &args, deadline) {
                    Flow::Return(v) => self.resume(trap, v)?,
                    Flow::Stop(s) => return Ok((s, trap)),
                    flow => pending = self.task_flow(flow, nr, args, trap, deadline)?,
                }
                continue;
            }
            let exit = self.machine.run()?;
            stats.exits += 1;
            let (nr, args, trap) = match exit {
                Exit::Syscall(nr) => {
                    let r = self.machine.regs();
                    let cont = kvm_regs {
                        rip: r.rcx,
                        rflags: r.r11,
                        ..r
                    };
                    (
                        nr,
                        [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9],
                        Trap {
                            via: Via::Syscall,
                            cont,
                        },
                    )
                }
                Exit::Out { port: 0, value } => {
                    let r = self.machine.regs();
                    let at_out = self.mem.slice(r.rip, 2).is_ok_and(|b| b == [0xe7, 0x00]);
                    let cont = kvm_regs {
                        rip: r.rip + if at_out { 2 } else { 0 },
                        ..r
                    };
                    (
                        value & 0xffff_ffff,
                        [r.rdi, r.rsi, r.rdx, r.rcx, r.r8, r.r9],
                        Trap {
                            via: Via::Out,
                            cont,
                        },
                    )
                }
                Exit::Exception(vector) => match self.gp_out_call(vector) {
                    Some(t) => t,
                    None => return Err(RequestError::Fault(self.describe_fault(vector)?)),
                },
                Exit::Interrupted if Instant::now() >= deadline => {
                    return Err(RequestError::Timeout(self.cfg.max_request_time))
                }
                Exit::Interrupted => continue,
                Exit::Shutdown => {
                    return Err(RequestError::Fault(
                        "guest triple fault (exception while handling an exception)".into(),
                    ))
                }
                Exit::Hlt => return Err(RequestError::Fault("guest halted".into())),
                Exit::Probe => continue,
                Exit::Out { port, .. } => {
                    return Err(RequestError::Fault(format!(
                        "guest wrote to I/O port {port:#x}"
                    )))
                }
                Exit::Other(m) => return Err(RequestError::Fault(format!("guest {m}"))),
            };
            if nr < kvmjs_abi::nr::FIRST_API_CALL {
                stats.syscalls += 1;
            }
            match self.dispatch(nr, &args, deadline) {
                Flow::Return(v) => self.resume(trap, v)?,
                Flow::Stop(s) => return Ok((s, trap)),
                // Threads: block, yield, clone, exit (tasks/switch.rs).
                flow => pending = self.task_flow(flow, nr, args, trap, deadline)?,
            }
        }
    }

    /// Runs guest API call or Linux system call `nr` for the current thread.
    fn dispatch(&mut self, nr: u64, args: &[u64; 6], deadline: Instant) -> Flow {
        if self.cfg.listen.is_some() {
            // What the fast-path library did since the last exit comes first.
            if let Some(stop) = self.fast_sync(nr, args) {
                return Flow::Stop(stop);
            }
        }
        let mut ctx = Ctx {
            mem: &mut self.mem,
            proc: &mut self.proc,
            cfg: &self.cfg,
            exchange: &mut self.exchange,
            deadline: Some(deadline),
            log: &mut self.log,
        };
        let flow = if nr >= kvmjs_abi::nr::FIRST_API_CALL {
            api::dispatch(&mut ctx, nr, args)
        } else {
            syscalls::dispatch(&mut ctx, nr, args)
        };
        // A file the call mapped may have made a new read-only memslot (memory::slots).
        if let Err(e) = self.machine.sync_slots(&self.mem) {
            return Flow::Stop(Stop::Fatal(format!("registering a file slot: {e}")));
        }
        if self.cfg.listen.is_some() {
            return self.net_filter(nr, args, flow);
        }
        flow
    }

    /// Continues the guest after a trap with `v` as the call's result.
    pub(crate) fn resume(&mut self, trap: Trap, v: u64) -> Result<(), KvmError> {
        match trap.via {
            Via::Syscall | Via::Out => {
                self.machine.set_rax(v);
                if self.proc.fs_base != self.fs_applied {
                    // arch_prctl(SET_FS): the guest continues with the new FS base.
                    let mut s = self.machine.sregs()?;
                    s.fs.base = self.proc.fs_base;
                    self.machine.set_sregs(&s)?;
                    self.fs_applied = self.proc.fs_base;
                }
            }
            Via::GpOut => {
                self.machine.set_regs(&kvm_regs {
                    rax: v,
                    ..trap.cont
                });
                self.machine.set_sregs(&cpu::user_sregs(
                    &self.base_sregs,
                    self.cr3,
                    self.proc.fs_base,
                ))?;
                self.fs_applied = self.proc.fs_base;
            }
        }
        Ok(())
    }

    /// Upstream's ring-3 `out` API faults with #GP under PVM: recognise and emulate it.
    fn gp_out_call(&mut self, vector: u8) -> Option<(u64, [u64; 6], Trap)> {
        if vector != 13 {
            return None;
        }
        let frame = fault::read_frame(&self.mem, vector)?;
        if frame.cs & 3 != 3 || self.mem.slice(frame.rip, 2).ok()? != [0xe7, 0x00] {
            return None;
        }
        let r = self.machine.regs();
        let cont = kvm_regs {
            rip: frame.rip + 2,
            rsp: frame.rsp,
            rflags: frame.rflags,
            ..r
        };
        Some((
            r.rax & 0xffff_ffff,
            [r.rdi, r.rsi, r.rdx, r.rcx, r.r8, r.r9],
            Trap {
                via: Via::GpOut,
                cont,
            },
        ))
    }

    fn describe_fault(&self, vector: u8) -> Result<String, KvmError> {
        let frame = fault::read_frame(&self.mem, vector).unwrap_or_default();
        let cr2 = if vector == 14 {
            self.machine.sregs()?.cr2
        } else {
            0
        };
        Ok(fault::describe(vector, &frame, cr2))
    }
}

pub(crate) fn unexpected(stop: Stop, when: &str) -> RequestError {
    match stop {
        Stop::Exited(c) => RequestError::Exited(c, String::new()),
        Stop::Fatal(m) => RequestError::Guest(m),
        Stop::Paused { .. } => {
            RequestError::Guest(format!("guest waited for the next request {when}"))
        }
        Stop::Responded(_) => RequestError::Guest(format!("guest sent a second response {when}")),
        Stop::Stream(_) => RequestError::Guest(format!(
            "guest made a stream call without a streamed response {when}"
        )),
        Stop::Listening { .. } => {
            RequestError::Guest(format!("guest waited for the next connection {when}"))
        }
    }
}
