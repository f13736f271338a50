//! The warm snapshot: taken at the guest's first `wait_for_requests_paused`, restored after
//! every request, and shared (read-only, behind an `Arc`) by every VM forked from it, so a
//! pool boots its program once.

use crate::config::VmConfig;
use crate::cpu::{self, stubs, stubs::SyscallReturn};
use crate::layout::{self, PAGE_SIZE};
use crate::memory::{GuestMemory, HotPages, MemorySnapshot};
use crate::process::Process;
use crate::request::RequestStats;
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
    syscall_return: Option<SyscallReturn>,
    boot_stats: RequestStats,
    protected: Vec<(u64, u64)>,
    /// Whether the syscall entry's return was already patched in the captured memory.
    tail_patched: bool,
    /// Guest TSC minus host TSC at the snapshot: forks continue the same timeline.
    tsc_delta: i64,
}

impl Snapshot {
    /// Pages holding data.
    pub fn pages(&self) -> usize {
        self.memory.present_pages()
    }
}

impl Vm {
    /// Captures the snapshot at the guest's pause, then arms the vCPU there.
    pub(crate) fn take_snapshot(&mut self, req_ptr: u64, trap: Trap) -> Result<(), VmError> {
        let cont = trap.cont;
        self.mem
            .write_system(stubs::SLOT_RIP, &cont.rip.to_le_bytes())?;
        self.mem
            .write_system(stubs::SLOT_RAX, &0u64.to_le_bytes())?;
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
        let memory = MemorySnapshot::capture(&self.mem)?;
        let boot_dirty = self.machine.dirty_log()?;
        self.machine.protect(&boot_dirty)?;
        self.mem.clear_host_dirty();
        if self.machine.manual_protect {
            self.hot = Some(HotPages::new((self.mem.size() / PAGE_SIZE) as usize));
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
            syscall_return: self.syscall_return,
            boot_stats: self.boot_stats,
            protected: self.mem.protected().to_vec(),
            tail_patched: self.syscall_return.is_some(),
            tsc_delta: self.machine.tsc_delta()?,
        }));
        self.pos = Position::AtPause {
            req_ptr,
            trap: None,
        };
        Ok(())
    }

    /// The snapshot, to fork more VMs from.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// A new VM at the snapshot's pause: no boot, no warm-up.
    pub fn from_snapshot(snap: Arc<Snapshot>) -> Result<Vm, VmError> {
        let hv = Hypervisor::get().map_err(VmError::Hypervisor)?;
        let cfg = snap.cfg.clone();
        let mut mem = GuestMemory::new(snap.memory.size(), cfg.hugepages)?;
        snap.memory.copy_into(&mut mem);
        mem.protect(snap.protected.clone());
        let mut machine = Machine::new(hv, &mem)?;
        let base_sregs = machine.sregs()?;
        machine.set_sregs(&snap.sregs)?;
        machine.set_regs(&snap.regs);
        if let Some(kind) = snap.syscall_return.filter(|_| !snap.tail_patched) {
            mem.write_system(layout::USER_STUBS + stubs::SYSCALL_TAIL, kind.bytes())?;
        }
        machine.align_tsc(snap.tsc_delta)?;
        let hot = machine
            .manual_protect
            .then(|| HotPages::new((mem.size() / PAGE_SIZE) as usize));
        Ok(Vm {
            machine,
            mem,
            cfg,
            proc: snap.proc.clone(),
            exchange: Exchange::default(),
            log: GuestLog::default(),
            cr3: snap.cr3,
            base_sregs,
            syscall_return: snap.syscall_return,
            fs_applied: snap.sregs.fs.base,
            pos: Position::AtPause {
                req_ptr: snap.req_ptr,
                trap: None,
            },
            last: RequestStats::default(),
            boot_stats: snap.boot_stats,
            dirty_trace: None,
            hot,
            snapshot: Some(snap),
        })
    }

    /// Restores memory, process state and registers to the snapshot; returns the number
    /// of pages restored. `full` also restores system registers and clears CPU events.
    pub(crate) fn reset(&mut self, full: bool) -> Result<u64, RequestError> {
        let snap = self
            .snapshot
            .clone()
            .ok_or_else(|| RequestError::Broken("no snapshot".into()))?;
        let dirty = self.machine.dirty_log()?;
        if let Some(t) = self.dirty_trace.as_mut() {
            t.clear();
        }
        let (st, protect) = snap.memory.restore(
            &mut self.mem,
            &dirty,
            self.hot.as_mut(),
            self.dirty_trace.as_mut(),
        );
        self.machine.protect(&protect)?;
        if self.proc.changed || full {
            self.proc = snap.proc.clone();
        }
        // Always: ring 3 can load segment selectors (and so change FS/GS) without a trap,
        // and nothing of a request may reach the next one. Applied at the next entry through
        // the sync-regs area, which saves the SET_SREGS ioctl (~5 µs on PVM).
        self.machine.set_sregs_at_entry(&snap.sregs);
        self.fs_applied = snap.sregs.fs.base;
        if full {
            self.machine.clear_events()?;
            self.machine.reset_msrs()?;
        }
        if let Some(kind) = self.syscall_return.filter(|_| !snap.tail_patched) {
            // The tail was patched after the snapshot: the restore put `ud2` back.
            self.mem
                .write_system(layout::USER_STUBS + stubs::SYSCALL_TAIL, kind.bytes())
                .map_err(|e| RequestError::Broken(e.to_string()))?;
        }
        self.machine.set_regs(&snap.regs);
        self.pos = Position::AtPause {
            req_ptr: snap.req_ptr,
            trap: None,
        };
        Ok(st.dirty_pages)
    }
}
