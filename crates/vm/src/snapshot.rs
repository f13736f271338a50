//! The warm snapshot: taken at the guest's first `wait_for_requests_paused`, restored after
//! every request, and shared (read-only, behind an `Arc`) by every VM forked from it, so a
//! pool boots its program once.
//!
//! With manual dirty-log protection the snapshot also fixes which pages stay writable
//! across resets ([`HotPages`]): measured once with host-generated calibration requests
//! ([`Vm::calibrate`]), then the same for every VM and every reset, so nothing a request
//! does changes what a later request's writes cost.

use crate::config::VmConfig;
use crate::cpu::{self, stubs};
use crate::layout::{self, PAGE_SIZE};
use crate::memory::{GuestMemory, HotPages, MemorySnapshot};
use crate::process::Process;
use crate::request::{Request, RequestStats};
use crate::syscalls::{Exchange, GuestLog};
use crate::vcpu::{Hypervisor, Machine};
use crate::vm::{Position, RequestError, Trap, Vm, VmError};
use kvm_bindings::{kvm_regs, kvm_sregs};
use std::sync::Arc;

/// Everything needed to put a VM back at its pause, or to make a new VM there.
pub struct Snapshot {
    memory: MemorySnapshot,
    regs: kvm_regs,
    sregs: kvm_sregs,
    proc: Process,
    req_ptr: u64,
    cfg: Arc<VmConfig>,
    cr3: u64,
    boot_stats: RequestStats,
    protected: Vec<(u64, u64)>,
    /// Read-only file slots the page tables point into (shared by every fork).
    slots: crate::memory::SharedSlots,
    /// Guest TSC minus host TSC at the snapshot: forks continue the same timeline.
    tsc_delta: i64,
    /// The boot VM's calibration (None without manual dirty-log protection or in
    /// non-ephemeral mode).
    calibration: Option<Calibration>,
    /// A program that listens: the wait the snapshot re-runs (call number, first
    /// argument), which a fast-path hand-over ends without running (crate::fastpath).
    pub(crate) pause_call: Option<(u64, u64)>,
}

/// What the boot VM's calibration decided, for every VM of the snapshot.
struct Calibration {
    /// Pages that stay writable across resets.
    writable: HotPages,
    /// The calibration requests that succeeded, which every fork sends too.
    requests: Vec<Request>,
}

/// Calibration requests the boot VM sends to measure the writable set (cycling through
/// [`calibration_requests`]).
const MEASURE_REQUESTS: usize = 6;
/// Passes over [`calibration_requests`] every VM makes to make the writable set writable
/// in its own KVM page tables (a page becomes writable only when the guest writes it).
const WARM_PASSES: usize = 2;

/// The calibration requests: the configured warm-up request if any, and `GET /` bare and
/// with the headers a browser or curl sends (the header count alone changes which heap
/// pages a request writes). Host-generated, so the writable set depends on the program
/// and never on a user's request.
fn calibration_requests(cfg: &VmConfig) -> Vec<Request> {
    let mut reqs = Vec::new();
    if let Some(w) = &cfg.warmup {
        reqs.push(Request {
            method: w.method.clone(),
            url: w.url.clone(),
            headers: w.headers.clone(),
            warmup: true,
            ..Default::default()
        });
    }
    reqs.push(Request {
        warmup: true,
        ..Request::get("/")
    });
    reqs.push(Request {
        headers: vec![
            "Host: localhost".into(),
            "User-Agent: kvmjs-calibration".into(),
            "Accept: */*".into(),
        ],
        warmup: true,
        ..Request::get("/")
    });
    reqs
}

impl Snapshot {
    /// Pages holding data.
    pub fn pages(&self) -> usize {
        self.memory.present_pages()
    }

    /// Whether its VMs share its pages copy-on-write (otherwise each holds a copy).
    pub fn shares_pages(&self) -> bool {
        self.memory.is_shared()
    }
}

impl Vm {
    /// Captures the snapshot at the guest's pause, then arms the vCPU there. `rerun`: the
    /// pause is a wait for connections (crate::listen) that has not run: the snapshot
    /// continues at its `syscall` instruction with RAX = this call number, so every VM
    /// re-runs it; otherwise it continues after the call with RAX = 0.
    pub(crate) fn take_snapshot(
        &mut self,
        req_ptr: u64,
        trap: Trap,
        rerun: Option<u64>,
    ) -> Result<(), VmError> {
        let cont = trap.cont;
        let (rip, rax) = match rerun {
            Some(nr) => {
                // `syscall` is 0f 05, and RCX (the continuation) points after it.
                let at = cont.rip.wrapping_sub(2);
                if trap.via != crate::vm::Via::Syscall
                    || self.mem.slice(at, 2).ok() != Some(&[0x0f, 0x05][..])
                {
                    return Err(VmError::Config(
                        "the program's wait for connections is not a `syscall` instruction; it cannot be re-run from the snapshot".into(),
                    ));
                }
                (at, nr)
            }
            None => (cont.rip, 0),
        };
        self.mem.write_system(stubs::SLOT_RIP, &rip.to_le_bytes())?;
        self.mem.write_system(stubs::SLOT_RAX, &rax.to_le_bytes())?;
        self.mem
            .write_system(stubs::SLOT_RDX, &cont.rdx.to_le_bytes())?;
        // Exactly the bytes the guest's XCR0 needs, with XSTATE_BV limited to it: the
        // trampoline's XRSTOR (mask = that XCR0) then reads nothing outside the image.
        let hv = Hypervisor::get().map_err(VmError::Hypervisor)?;
        let x = &hv.caps().xsave;
        let raw = self.machine.xsave_image()?;
        let image = crate::caps::xsave::sanitize_image(&raw, x.xcr0, x.size as usize).ok_or(
            VmError::Config(format!(
                "KVM_GET_XSAVE returned {} bytes but the guest's XCR0 {:#x} needs {}",
                raw.len(),
                x.xcr0,
                x.size
            )),
        )?;
        self.mem.write_system(layout::XSAVE_IMAGE, &image)?;
        let regs = kvm_regs {
            rip: layout::USER_STUBS + stubs::RESUME_ENTRY,
            rax: 0,
            ..cont
        };
        let sregs = cpu::user_sregs(&self.base_sregs, self.cr3, self.proc.fs_base);
        self.proc.changed = false;
        self.proc.request_memory_base =
            Some((self.proc.memory_used(), self.cfg.max_request_memory));
        self.proc.memory_refused = false;
        let memory = MemorySnapshot::capture(&self.mem)?;
        // This VM too reads the snapshot's pages from the shared copy from now on: its
        // private copies of them are given back.
        memory.share_into(&mut self.mem);
        // Mappings made before the snapshot are part of it: nothing to undo at resets.
        self.mem
            .forget_mapping_changes()
            .map_err(|e| VmError::Config(format!("invalidating guest mappings: {e}")))?;
        let boot_dirty = self.machine.dirty_log()?;
        self.machine.protect(&boot_dirty)?;
        self.mem.clear_host_dirty();
        self.mem.set_keep_mapped(self.cfg.ephemeral);
        if self.machine.manual_protect {
            self.hot = Some(HotPages::none((self.mem.size() / PAGE_SIZE) as usize));
        }
        self.machine.set_regs(&regs);
        self.machine.set_sregs(&sregs)?;
        self.fs_applied = sregs.fs.base;
        self.snapshot = Some(Arc::new(Snapshot {
            memory,
            regs,
            sregs,
            proc: self.proc.clone(),
            req_ptr,
            cfg: self.cfg.clone(),
            cr3: self.cr3,
            boot_stats: self.boot_stats,
            protected: self.mem.protected().to_vec(),
            slots: self.mem.slots().clone(),
            tsc_delta: self.machine.tsc_delta()?,
            calibration: None,
            pause_call: rerun.map(|nr| (nr, cont.rdi)),
        }));
        self.pos = Position::AtPause {
            req_ptr,
            trap: None,
        };
        Ok(())
    }

    /// A fast-path hand-over at the snapshot's pause (crate::fastpath): the wait the
    /// snapshot would re-run ends with 0 instead, without running (and without an exit):
    /// the vCPU continues after its `syscall` instruction.
    pub(crate) fn skip_rerun(&mut self) -> Result<(), RequestError> {
        let broken =
            |e: crate::memory::MemoryError| RequestError::Broken(format!("resume slots: {e}"));
        let rip = self.mem.phys_read_u64(stubs::SLOT_RIP).map_err(broken)?;
        self.mem
            .write_system(stubs::SLOT_RIP, &(rip + 2).to_le_bytes())
            .map_err(broken)?;
        self.mem
            .write_system(stubs::SLOT_RAX, &0u64.to_le_bytes())
            .map_err(broken)
    }

    /// The snapshot, to fork more VMs from.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// A new VM at the snapshot's pause: no boot, no warm-up; only the calibration
    /// requests that make the snapshot's writable set writable here too.
    pub fn from_snapshot(snap: Arc<Snapshot>) -> Result<Vm, VmError> {
        let hv = Hypervisor::get().map_err(VmError::Hypervisor)?;
        let cfg = snap.cfg.clone();
        let mut mem = GuestMemory::new(snap.memory.size(), cfg.hugepages)?;
        if !snap.memory.share_into(&mut mem) {
            snap.memory.copy_into(&mut mem);
        }
        mem.set_root(Some(snap.cr3));
        mem.set_slots(snap.slots.clone());
        mem.protect(snap.protected.clone());
        mem.set_keep_mapped(cfg.ephemeral);
        let mut machine = Machine::new(hv, &mem)?;
        let base_sregs = machine.sregs()?;
        machine.set_sregs(&snap.sregs)?;
        machine.set_regs(&snap.regs);
        machine.align_tsc(snap.tsc_delta)?;
        let hot = machine
            .manual_protect
            .then(|| HotPages::none((mem.size() / PAGE_SIZE) as usize));
        let mut vm = Vm {
            machine,
            mem,
            cfg,
            proc: snap.proc.clone(),
            exchange: Exchange::default(),
            log: GuestLog::default(),
            cr3: snap.cr3,
            base_sregs,
            fs_applied: snap.sregs.fs.base,
            pos: Position::AtPause {
                req_ptr: snap.req_ptr,
                trap: None,
            },
            last: RequestStats::default(),
            boot_stats: snap.boot_stats,
            dirty_trace: None,
            hot,
            net: crate::listen::NetState::new(false),
            snapshot: Some(snap),
        };
        vm.calibrate(false).map_err(|e| VmError::Boot {
            name: vm.cfg.name.clone(),
            reason: format!("a calibration request failed: {e}"),
            output: vm.log.recent(),
        })?;
        Ok(vm)
    }

    /// Fixes which pages stay writable across resets, before any user request.
    ///
    /// `measure` (the boot VM): send [`MEASURE_REQUESTS`] calibration requests with every
    /// page left writable, so that afterwards KVM's log names every page they wrote; that
    /// set goes into the snapshot, shared by every fork. Then, in every VM: re-arm the
    /// set, send the calibration requests [`WARM_PASSES`] times under the final policy
    /// and keep the pages they wrote: exactly those are writable in this VM's page tables
    /// now, and the log bits of writable pages are never cleared, so it stays that way. A
    /// page of the set that these requests did not write is tracked like any other (if it
    /// stayed in the set, the first request to write it would make it writable for all
    /// later ones).
    ///
    /// Only ephemeral VMs with manual dirty-log protection calibrate: without it KVM
    /// re-arms every page at every reset anyway; non-ephemeral VMs keep request state by
    /// design. A calibration request that fails (the program's own error or time limit)
    /// is dropped: neither this VM nor its forks send it again.
    pub(crate) fn calibrate(&mut self, measure: bool) -> Result<(), RequestError> {
        if !self.cfg.ephemeral || self.hot.is_none() {
            return Ok(());
        }
        let pages = (self.mem.size() / PAGE_SIZE) as usize;
        let (set, mut reqs) = if measure {
            let mut reqs = calibration_requests(&self.cfg);
            self.hot = Some(HotPages::all(pages));
            self.calibration_round(&mut reqs, MEASURE_REQUESTS)?;
            let mut set = HotPages::from_bitmap(self.machine.dirty_log()?);
            // Pages the guest cannot write are handled apart (below): KVM logs some of them
            // (page-table accessed/dirty bits) more in a fork than in the boot VM.
            for &(start, end) in self.mem.protected() {
                set.remove_range(
                    (start / PAGE_SIZE) as usize,
                    end.div_ceil(PAGE_SIZE) as usize,
                );
            }
            let snap = self
                .snapshot
                .as_mut()
                .and_then(Arc::get_mut)
                .ok_or_else(|| {
                    RequestError::Broken("the snapshot was shared before calibration".into())
                })?;
            snap.calibration = Some(Calibration {
                writable: set.clone(),
                requests: reqs.clone(),
            });
            (set, reqs)
        } else {
            let snap = self
                .snapshot
                .as_ref()
                .ok_or_else(|| RequestError::Broken("no snapshot".into()))?;
            match &snap.calibration {
                Some(c) => (c.writable.clone(), c.requests.clone()),
                None => (HotPages::none(pages), Vec::new()),
            }
        };
        self.machine.protect(set.bitmap())?;
        self.hot = Some(set);
        let n = WARM_PASSES * reqs.len();
        self.calibration_round(&mut reqs, n)?;
        let written = self.machine.dirty_log()?;
        if let Some(h) = self.hot.as_mut() {
            h.retain(&written);
            // Pages the guest cannot write (system pages, read-only segments) are never
            // re-armed: only KVM writes them (accessed/dirty bits in the page tables, on
            // its own faults), through the host mapping, so their tracking changes no cost
            // the guest sees, and re-arming them would cost an ioctl at most resets.
            for &(start, end) in self.mem.protected() {
                h.insert_range(
                    (start / PAGE_SIZE) as usize,
                    end.div_ceil(PAGE_SIZE) as usize,
                );
            }
        }
        self.last = RequestStats::default();
        Ok(())
    }

    /// Sends `n` calibration requests, cycling through `reqs` (each followed by a reset,
    /// as the VM is ephemeral). A request that fails (the program's own error, or its
    /// time limit) is dropped from `reqs` and not sent again, so a program whose `GET /`
    /// hangs costs one max_request_time at boot, not one per calibration request.
    fn calibration_round(&mut self, reqs: &mut Vec<Request>, n: usize) -> Result<(), RequestError> {
        let (mut sent, mut i) = (0, 0);
        while sent < n && !reqs.is_empty() {
            i %= reqs.len();
            let r = self.handle(&reqs[i]);
            // Background work (ctx.waitUntil) is part of the request: finish it, and its
            // reset, before looking at the log.
            let r = match self.finish_background() {
                Some(b) => r.and(b.result),
                None => r.map(|_| ()),
            };
            if self.is_broken() || matches!(r, Err(RequestError::Broken(_))) {
                return Err(r.err().unwrap_or_else(|| {
                    RequestError::Broken("the reset after a calibration request failed".into())
                }));
            }
            match r {
                Ok(()) => {
                    sent += 1;
                    i += 1;
                }
                Err(e) => {
                    tracing::debug!(
                        program = %self.cfg.name,
                        url = %reqs[i].url,
                        "calibration request failed: {e}"
                    );
                    reqs.remove(i);
                }
            }
        }
        Ok(())
    }

    /// Pages never re-protected at this VM's resets: the calibrated writable set plus the
    /// pages the guest cannot write at all (0 without manual dirty-log protection, or in
    /// non-ephemeral mode).
    pub fn writable_pages(&self) -> usize {
        self.hot.as_ref().map_or(0, HotPages::count)
    }

    /// Restores memory, process state and registers to the snapshot; returns the number
    /// of pages restored. `full` also restores system registers and clears CPU events.
    pub(crate) fn reset(&mut self, full: bool) -> Result<u64, RequestError> {
        let snap = self
            .snapshot
            .clone()
            .ok_or_else(|| RequestError::Broken("no snapshot".into()))?;
        let t0 = std::time::Instant::now();
        let dirty = self.machine.dirty_log()?;
        let t_log = t0.elapsed();
        if let Some(t) = self.dirty_trace.as_mut() {
            t.clear();
        }
        let (st, protect) = snap.memory.restore(
            &mut self.mem,
            &dirty,
            self.hot.as_ref(),
            self.dirty_trace.as_mut(),
        );
        let t_restore = t0.elapsed();
        self.machine.protect(&protect)?;
        // The tables are back as in the snapshot: KVM must forget every translation of a
        // frame whose mapping the request changed (crate::mm, shadow paging).
        self.mem
            .reset_mappings()
            .map_err(|e| RequestError::Broken(format!("invalidating guest mappings: {e}")))?;
        let t_maps = t0.elapsed();
        if self.proc.changed || full {
            self.proc = snap.proc.clone();
        }
        let t_proc = t0.elapsed();
        self.net.unrun = None;
        // Always: ring 3 can load segment selectors (and so change FS/GS) without a trap,
        // and nothing of a request may reach the next one. Applied at the next entry through
        // the sync-regs area, which saves the SET_SREGS ioctl (~5 µs on PVM).
        self.machine.set_sregs_at_entry(&snap.sregs);
        self.fs_applied = snap.sregs.fs.base;
        if full {
            self.machine.clear_events()?;
            self.machine.reset_msrs()?;
        }
        self.machine.set_regs(&snap.regs);
        self.pos = Position::AtPause {
            req_ptr: snap.req_ptr,
            trap: None,
        };
        tracing::trace!(
            program = %self.cfg.name,
            "reset: {} pages restored ({} copied), {} compared, {} re-protected; dirty log {:?}, restore {:?}, mappings {:?}, process {:?}, total {:?}",
            st.dirty_pages,
            st.copied_pages,
            st.checked_pages,
            st.protected_pages,
            t_log,
            t_restore - t_log,
            t_maps - t_restore,
            t_proc - t_maps,
            t0.elapsed()
        );
        Ok(st.dirty_pages)
    }
}

/// A snapshot taken apart, for snapshot files (crate::persist): everything but the
/// configuration, which the process restoring the file supplies (its own, checked
/// against the file's).
pub(crate) struct Parts {
    pub memory: MemorySnapshot,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub proc: Process,
    pub req_ptr: u64,
    pub cr3: u64,
    pub boot_stats: RequestStats,
    pub protected: Vec<(u64, u64)>,
    pub slots: crate::memory::SharedSlots,
    pub tsc_delta: i64,
    /// The calibrated writable set and the calibration requests that succeeded.
    pub calibration: Option<(HotPages, Vec<Request>)>,
    pub pause_call: Option<(u64, u64)>,
}

/// [`Parts`] borrowed from a live snapshot (writing a file).
pub(crate) struct PartsRef<'a> {
    pub memory: &'a MemorySnapshot,
    pub regs: &'a kvm_regs,
    pub sregs: &'a kvm_sregs,
    pub proc: &'a Process,
    pub req_ptr: u64,
    pub cfg: &'a Arc<VmConfig>,
    pub cr3: u64,
    pub boot_stats: RequestStats,
    pub protected: &'a [(u64, u64)],
    pub slots: &'a crate::memory::SharedSlots,
    pub tsc_delta: i64,
    pub calibration: Option<(&'a HotPages, &'a [Request])>,
    pub pause_call: Option<(u64, u64)>,
}

impl Snapshot {
    /// The snapshot's parts, to write them to a file (crate::persist).
    pub(crate) fn parts(&self) -> PartsRef<'_> {
        PartsRef {
            memory: &self.memory,
            regs: &self.regs,
            sregs: &self.sregs,
            proc: &self.proc,
            req_ptr: self.req_ptr,
            cfg: &self.cfg,
            cr3: self.cr3,
            boot_stats: self.boot_stats,
            protected: &self.protected,
            slots: &self.slots,
            tsc_delta: self.tsc_delta,
            calibration: self
                .calibration
                .as_ref()
                .map(|c| (&c.writable, c.requests.as_slice())),
            pause_call: self.pause_call,
        }
    }

    /// A snapshot from parts read back from a file, for VMs of `cfg`.
    pub(crate) fn from_parts(p: Parts, cfg: Arc<VmConfig>) -> Snapshot {
        Snapshot {
            memory: p.memory,
            regs: p.regs,
            sregs: p.sregs,
            proc: p.proc,
            req_ptr: p.req_ptr,
            cfg,
            cr3: p.cr3,
            boot_stats: p.boot_stats,
            protected: p.protected,
            slots: p.slots,
            tsc_delta: p.tsc_delta,
            calibration: p
                .calibration
                .map(|(writable, requests)| Calibration { writable, requests }),
            pause_call: p.pause_call,
        }
    }
}
