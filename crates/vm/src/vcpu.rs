//! The KVM side: the process-wide `/dev/kvm` handle, one VM with one memslot, one vCPU,
//! and decoding of exits into [`Exit`]. General registers travel through
//! KVM_CAP_SYNC_REGS (no GET/SET_REGS ioctl per exit: each costs ~5 µs on PVM).

use crate::caps::{self, Caps};
use crate::cpu;
use crate::layout::{self, TRAP_EXCEPTION, TRAP_PROBE, TRAP_SYSCALL};
use crate::memory::GuestMemory;
use kvm_bindings::{
    kvm_regs, kvm_sregs, kvm_userspace_memory_region, kvm_xcrs, CpuId, KVM_MEM_LOG_DIRTY_PAGES,
};
use kvm_ioctls::{Kvm, SyncReg, VcpuExit, VcpuFd, VmFd};
use std::sync::OnceLock;

/// Errors from KVM.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0}; KVM must be available and this user needs read-write access to /dev/kvm (e.g. membership of group kvm)")]
    Open(kvm_ioctls::Error),
    /// An ioctl failed.
    #[error("KVM {op} failed: {source}")]
    Ioctl {
        /// Which operation.
        op: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
}

fn ioctl<T>(op: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, KvmError> {
    r.map_err(|source| KvmError::Ioctl { op, source })
}

/// `/dev/kvm` and the host probe's result, opened once per process.
pub struct Hypervisor {
    kvm: Kvm,
    caps: Caps,
    cpuid: CpuId,
}

static HYPERVISOR: OnceLock<Result<Hypervisor, String>> = OnceLock::new();

impl Hypervisor {
    /// The process-wide handle; the first call opens /dev/kvm and runs the host probe.
    pub fn get() -> Result<&'static Hypervisor, String> {
        HYPERVISOR
            .get_or_init(|| Self::open().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn open() -> Result<Self, HostError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let inputs = caps::inputs::live::read(&kvm).map_err(|source| KvmError::Ioctl {
            op: "GET_SUPPORTED_CPUID",
            source,
        })?;
        let caps = Caps::compute(&inputs)?;
        let cpuid = CpuId::from_entries(&caps.cpuid).map_err(|_| KvmError::Ioctl {
            op: "SET_CPUID2 (table too large)",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        let mut hv = Hypervisor { kvm, caps, cpuid };
        hv.caps.flavour = Some(caps::probe_flavour(&hv)?);
        for w in &hv.caps.warnings {
            tracing::warn!("{w}");
        }
        Ok(hv)
    }

    /// How many KVM memslots a VM may use for read-only file slots (memory::slots):
    /// `None` without KVM_CAP_READONLY_MEM.
    pub(crate) fn readonly_slots(&self) -> Option<usize> {
        if !self.kvm.check_extension(kvm_ioctls::Cap::ReadonlyMem) {
            return None;
        }
        usize::try_from(self.kvm.check_extension_int(kvm_ioctls::Cap::NrMemslots)).ok()
    }

    /// The host probe's result.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// CPUID leaves the guest sees (the normalised table).
    pub fn cpuid(&self) -> &CpuId {
        &self.cpuid
    }
}

/// Why the host cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// KVM failed.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The probe refused the host.
    #[error(transparent)]
    Caps(#[from] crate::caps::CapsError),
    /// The probe VM's memory could not be set up.
    #[error("the start-up probe VM failed: {0}")]
    ProbeMemory(#[from] crate::memory::MemoryError),
    /// The probe VM's page tables could not be built.
    #[error("the start-up probe VM failed: {0}")]
    ProbeMm(#[from] crate::mm::MmError),
    /// A ring-3 `syscall` in the probe VM did not reach the entry stub.
    #[error("the start-up probe VM's ring-3 `syscall` ended in {0} instead of the entry stub's trap; this KVM cannot run kvmjs guests")]
    ProbeExit(String),
}

/// Why KVM_RUN returned.
#[derive(Debug)]
pub enum Exit {
    /// The syscall entry stub reported system call (or API call) `nr`.
    Syscall(u64),
    /// Upstream's ring-3 `out` to `port` with EAX = `value` (VMX/SVM hosts).
    Out {
        /// Port.
        port: u16,
        /// EAX.
        value: u64,
    },
    /// An exception stub reported `vector`.
    Exception(u8),
    /// The probe write.
    Probe,
    /// Triple fault.
    Shutdown,
    /// `hlt` reached the host.
    Hlt,
    /// A signal (the watchdog) interrupted KVM_RUN.
    Interrupted,
    /// Anything else.
    Other(String),
}

/// VM exits of one machine by kind, since it was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// System calls and guest API calls (the entry stub's MMIO write).
    pub syscall: u64,
    /// Upstream's ring-3 `out` API calls.
    pub io_out: u64,
    /// CPU exceptions reported by the IDT stubs, by vector.
    pub exception: [u64; 32],
    /// KVM_RUN interrupted by a signal (watchdog, kick).
    pub interrupted: u64,
    /// The probe write, hlt, triple fault and anything else.
    pub other: u64,
}

impl ExitCounts {
    fn record(&mut self, exit: &Exit) {
        match exit {
            Exit::Syscall(_) => self.syscall += 1,
            Exit::Out { .. } => self.io_out += 1,
            Exit::Exception(v) => self.exception[usize::from(*v) % 32] += 1,
            Exit::Interrupted => self.interrupted += 1,
            Exit::Probe | Exit::Shutdown | Exit::Hlt | Exit::Other(_) => self.other += 1,
        }
    }

    /// All exits.
    pub fn total(&self) -> u64 {
        self.syscall
            + self.io_out
            + self.exception.iter().sum::<u64>()
            + self.interrupted
            + self.other
    }

    /// `(kind, count)` for every kind seen, e.g. `("exception 14 (#PF)", 3)`.
    pub fn by_kind(&self) -> Vec<(String, u64)> {
        const NAMES: [&str; 32] = [
            "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "9", "#TS", "#NP",
            "#SS", "#GP", "#PF", "15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "22", "23", "24",
            "25", "26", "27", "#HV", "#VC", "#SX", "31",
        ];
        let mut v = vec![
            ("syscall".to_string(), self.syscall),
            ("io out".to_string(), self.io_out),
        ];
        for (i, &n) in self.exception.iter().enumerate() {
            v.push((format!("exception {i} ({})", NAMES[i]), n));
        }
        v.push(("interrupted".into(), self.interrupted));
        v.push(("other".into(), self.other));
        v.retain(|(_, n)| *n > 0);
        v
    }
}

/// One VM with its single vCPU.
pub struct Machine {
    /// Exits so far, by kind.
    pub exits: ExitCounts,
    /// The VM.
    pub vm: VmFd,
    /// The vCPU.
    pub vcpu: VcpuFd,
    trap_gpa: u64,
    mem_size: u64,
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is on: GET_DIRTY_LOG leaves pages writable and
    /// only [`Machine::protect`] re-arms tracking.
    pub manual_protect: bool,
    /// File slots of the memory registered with this VM so far (crate::memory::slots).
    slots_registered: usize,
}

/// IA32_TIME_STAMP_COUNTER (SDM vol. 4; kvm-bindings has no MSR numbers).
const MSR_IA32_TSC: u32 = 0x10;

fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no memory effects and is allowed in user mode on Linux hosts.
    unsafe { core::arch::x86_64::_rdtsc() }
}
// kvm-ioctls has no wrapper for KVM_CLEAR_DIRTY_LOG; the number is _IOWR(KVMIO, 0xc0, ..).
vmm_sys_util::ioctl_iowr_nr!(
    KVM_CLEAR_DIRTY_LOG,
    kvm_bindings::KVMIO,
    0xc0,
    kvm_bindings::kvm_clear_dirty_log
);

impl Machine {
    /// Creates the VM, registers `mem` as slot 0 with dirty logging, and creates the vCPU.
    pub fn new(hv: &Hypervisor, mem: &GuestMemory) -> Result<Self, KvmError> {
        let vm = ioctl("CREATE_VM", hv.kvm.create_vm())?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: KVM_MEM_LOG_DIRTY_PAGES,
            guest_phys_addr: 0,
            memory_size: mem.size(),
            userspace_addr: mem.host_base(),
        };
        // SAFETY: the region is `mem`'s mapping, which outlives the VM: `Vm` declares
        // the machine before the memory, so the VM is dropped first.
        ioctl("SET_USER_MEMORY_REGION", unsafe {
            vm.set_user_memory_region(region)
        })?;
        let mut vcpu = ioctl("CREATE_VCPU", vm.create_vcpu(0))?;
        ioctl("SET_CPUID2", vcpu.set_cpuid2(&hv.cpuid))?;
        let caps = hv.caps();
        ioctl("SET_MSRS", vcpu.set_msrs(&cpu::syscall_msrs()))?;
        let mut xcrs = kvm_xcrs {
            nr_xcrs: 1,
            ..Default::default()
        };
        xcrs.xcrs[0].xcr = 0;
        xcrs.xcrs[0].value = caps.xsave.kvm_xcr0;
        ioctl("SET_XCRS", vcpu.set_xcrs(&xcrs))?;
        vcpu.set_sync_valid_reg(SyncReg::Register);
        let mut cap = kvm_bindings::kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
            ..Default::default()
        };
        cap.args[0] = u64::from(kvm_bindings::KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
        let manual_protect = caps.manual_dirty_log
            && match vm.enable_cap(&cap) {
                Ok(()) => true,
                Err(e) => {
                    // The probe saw the capability: say why the adaptive reset is off.
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        tracing::warn!("enabling KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 failed ({e}); resets re-protect every page")
                    });
                    false
                }
            };
        Ok(Machine {
            vm,
            vcpu,
            trap_gpa: layout::trap_gpa(mem.size()),
            mem_size: mem.size(),
            manual_protect,
            exits: ExitCounts::default(),
            slots_registered: 0,
        })
        .and_then(|mut m| {
            m.sync_slots(mem)?;
            Ok(m)
        })
    }

    /// Registers the read-only file slots `mem` gained since the last call (slot numbers
    /// are handed out in order, so a count is enough). Call before running the guest
    /// after anything that may have mapped a file.
    pub fn sync_slots(&mut self, mem: &GuestMemory) -> Result<(), KvmError> {
        // Runs after every system call: only a lock and a length check unless the call
        // made a new slot.
        let registry = mem.slots().lock().unwrap_or_else(|e| e.into_inner());
        let all = registry.all();
        if all.len() <= self.slots_registered {
            return Ok(());
        }
        for s in &all[self.slots_registered..] {
            let region = kvm_userspace_memory_region {
                slot: s.slot,
                flags: kvm_bindings::KVM_MEM_READONLY,
                guest_phys_addr: s.gpa,
                memory_size: s.len,
                userspace_addr: s.host_base(),
            };
            // SAFETY: the slot's mapping lives as long as the registry, which `mem`
            // holds; `Vm` drops the machine before its memory.
            ioctl("SET_USER_MEMORY_REGION", unsafe {
                self.vm.set_user_memory_region(region)
            })?;
        }
        self.slots_registered = all.len();
        Ok(())
    }

    /// Current system registers (an ioctl).
    pub fn sregs(&self) -> Result<kvm_sregs, KvmError> {
        ioctl("GET_SREGS", self.vcpu.get_sregs())
    }

    /// Sets system registers (an ioctl).
    pub fn set_sregs(&self, s: &kvm_sregs) -> Result<(), KvmError> {
        ioctl("SET_SREGS", self.vcpu.set_sregs(s))
    }

    /// Sets system registers at the next KVM_RUN through KVM_CAP_SYNC_REGS (no ioctl).
    pub fn set_sregs_at_entry(&mut self, s: &kvm_sregs) {
        self.vcpu.sync_regs_mut().sregs = *s;
        self.vcpu.set_sync_dirty_reg(SyncReg::SystemRegister);
    }

    /// General registers as of the last exit (no ioctl).
    pub fn regs(&self) -> kvm_regs {
        self.vcpu.sync_regs().regs
    }

    /// Replaces the general registers before the next run (no ioctl).
    pub fn set_regs(&mut self, r: &kvm_regs) {
        self.vcpu.sync_regs_mut().regs = *r;
        self.vcpu.set_sync_dirty_reg(SyncReg::Register);
    }

    /// Sets RAX before the next run (no ioctl).
    pub fn set_rax(&mut self, v: u64) {
        self.vcpu.sync_regs_mut().regs.rax = v;
        self.vcpu.set_sync_dirty_reg(SyncReg::Register);
    }

    /// Pointer to the shared `kvm_run`, for the watchdog.
    pub fn kvm_run_ptr(&mut self) -> *mut kvm_bindings::kvm_run {
        self.vcpu.get_kvm_run()
    }

    /// Dirty-page bitmap of guest memory since the last call.
    pub fn dirty_log(&self) -> Result<Vec<u64>, KvmError> {
        ioctl(
            "GET_DIRTY_LOG",
            self.vm.get_dirty_log(0, self.mem_size as usize),
        )
    }

    /// Re-arms dirty tracking (write protection) for the pages set in `bitmap`
    /// (manual-protect mode; a no-op otherwise, where GET_DIRTY_LOG already re-arms all).
    pub fn protect(&self, bitmap: &[u64]) -> Result<(), KvmError> {
        if !self.manual_protect || bitmap.iter().all(|w| *w == 0) {
            return Ok(());
        }
        let arg = kvm_bindings::kvm_clear_dirty_log {
            slot: 0,
            num_pages: (self.mem_size / layout::PAGE_SIZE) as u32,
            first_page: 0,
            __bindgen_anon_1: kvm_bindings::kvm_clear_dirty_log__bindgen_ty_1 {
                dirty_bitmap: bitmap.as_ptr() as *mut libc::c_void,
            },
        };
        // SAFETY: `arg` describes slot 0 and points at a bitmap covering all its pages,
        // which stays alive for the call; the kernel only reads it.
        let rc =
            unsafe { vmm_sys_util::ioctl::ioctl_with_ref(&self.vm, KVM_CLEAR_DIRTY_LOG(), &arg) };
        if rc < 0 {
            return Err(KvmError::Ioctl {
                op: "CLEAR_DIRTY_LOG",
                source: kvm_ioctls::Error::last(),
            });
        }
        Ok(())
    }

    /// Runs the vCPU until the next exit.
    pub fn run(&mut self) -> Result<Exit, KvmError> {
        let trap = self.trap_gpa;
        let exit = match self.vcpu.run() {
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let mut b = [0u8; 8];
                let n = data.len().min(8);
                b[..n].copy_from_slice(&data[..n]);
                let v = u64::from_le_bytes(b);
                match addr.wrapping_sub(trap) {
                    TRAP_SYSCALL => Exit::Syscall(v & 0xffff_ffff),
                    TRAP_EXCEPTION => Exit::Exception(v as u8),
                    TRAP_PROBE => Exit::Probe,
                    _ => Exit::Other(format!("write to unbacked address {addr:#x}")),
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                data.fill(0);
                Exit::Other(format!("read of unbacked address {addr:#x}"))
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut b = [0u8; 8];
                let n = data.len().min(8);
                b[..n].copy_from_slice(&data[..n]);
                Exit::Out {
                    port,
                    value: u64::from_le_bytes(b),
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                data.fill(0xff);
                Exit::Other(format!("in from port {port:#x}"))
            }
            Ok(VcpuExit::Hlt) => Exit::Hlt,
            Ok(VcpuExit::Shutdown) => Exit::Shutdown,
            Ok(VcpuExit::FailEntry(reason, _)) => {
                Exit::Other(format!("VM entry failed (reason {reason:#x})"))
            }
            Ok(other) => Exit::Other(format!("unexpected exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR => {
                self.vcpu.set_kvm_immediate_exit(0);
                Exit::Interrupted
            }
            Err(e) => {
                return Err(KvmError::Ioctl {
                    op: "RUN",
                    source: e,
                })
            }
        };
        self.exits.record(&exit);
        Ok(exit)
    }

    /// Clears a leftover kick before running.
    pub fn clear_kick(&mut self) {
        self.vcpu.set_kvm_immediate_exit(0);
    }

    /// Clears pending exceptions and makes the vCPU runnable (after a fault).
    pub fn clear_events(&self) -> Result<(), KvmError> {
        ioctl(
            "SET_VCPU_EVENTS",
            self.vcpu.set_vcpu_events(&Default::default()),
        )?;
        let mp = kvm_bindings::kvm_mp_state {
            mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
        };
        ioctl("SET_MP_STATE", self.vcpu.set_mp_state(mp))
    }

    /// Restores the MSRs kvmjs sets and clears debug registers (after a fault, in case the
    /// guest reached ring 0 somehow).
    pub fn reset_msrs(&self) -> Result<(), KvmError> {
        ioctl("SET_MSRS", self.vcpu.set_msrs(&cpu::syscall_msrs()))?;
        ioctl(
            "SET_DEBUGREGS",
            self.vcpu.set_debug_regs(&Default::default()),
        )
    }

    /// Guest TSC minus host TSC now.
    pub fn tsc_delta(&self) -> Result<i64, KvmError> {
        let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .expect("one MSR entry fits");
        let host = host_tsc();
        ioctl("GET_MSRS", self.vcpu.get_msrs(&mut msrs))?;
        Ok(msrs.as_slice()[0].data.wrapping_sub(host) as i64)
    }

    /// Sets the guest TSC to host TSC + `delta`, so a VM forked from a snapshot sees the
    /// clock its guest calibrated against (KVM starts each vCPU's TSC near 0).
    pub fn align_tsc(&self, delta: i64) -> Result<(), KvmError> {
        let entry = kvm_bindings::kvm_msr_entry {
            index: MSR_IA32_TSC,
            data: host_tsc().wrapping_add(delta as u64),
            ..Default::default()
        };
        let msrs = kvm_bindings::Msrs::from_entries(&[entry]).expect("one MSR entry fits");
        ioctl("SET_MSRS", self.vcpu.set_msrs(&msrs)).map(|_| ())
    }

    /// The vCPU's FPU/SSE/AVX state as KVM_GET_XSAVE returns it (a thread switch saves
    /// the outgoing thread's with this).
    pub fn xsave_words(&self) -> Result<[u32; 1024], KvmError> {
        Ok(ioctl("GET_XSAVE", self.vcpu.get_xsave())?.region)
    }

    /// Loads state saved by [`Machine::xsave_words`] (the incoming thread's).
    pub fn set_xsave_words(&self, words: &[u32; 1024]) -> Result<(), KvmError> {
        let x = kvm_bindings::kvm_xsave {
            region: *words,
            ..Default::default()
        };
        // SAFETY: `x` is a full 4096-byte kvm_xsave taken from this vCPU by KVM_GET_XSAVE;
        // the probe keeps the guest's XCR0 within what 4096 bytes carry, so KVM reads
        // nothing past it.
        ioctl("SET_XSAVE", unsafe { self.vcpu.set_xsave(&x) })
    }

    /// The vCPU's XSAVE area in the standard (non-compacted) format: KVM_GET_XSAVE's 4096
    /// bytes (the probe keeps the guest's XCR0 within what that can carry).
    pub fn xsave_image(&self) -> Result<Vec<u8>, KvmError> {
        let x = ioctl("GET_XSAVE", self.vcpu.get_xsave())?;
        Ok(x.region.iter().flat_map(|w| w.to_le_bytes()).collect())
    }
}
