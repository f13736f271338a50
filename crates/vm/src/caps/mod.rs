//! The host capability probe, done once per process: what this CPU and this KVM can do,
//! and what kvmjs decides from it (the guest's XCR0 and CPUID, the XSAVE image size and so
//! the memory layout of the resume trampoline, auxv values, clock and huge-page facts).
//!
//! The machines kvmjs runs on differ (an AMD EPYC without AMX one day, an Intel Xeon with
//! AVX-512 and AMX and an 11 KiB XSAVE area the next; PVM, VMX or SVM), so nothing here is
//! assumed: [`inputs`] reads raw facts, [`Caps::compute`] is a pure function of them, and
//! its unit tests replay recordings of other machines (`fixtures/`).

pub mod cpuid;
pub mod inputs;
mod syscall_probe;
pub mod xsave;

use crate::cpu::stubs::SyscallReturn;
use crate::layout::{self, PAGE_SIZE};
use inputs::ProbeInputs;
use kvm_bindings::kvm_cpuid_entry2;
use std::fmt;
use xsave::XsavePolicy;

/// A host kvmjs cannot run on. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// A KVM capability kvmjs needs is missing.
    #[error("KVM lacks {0}; kvmjs needs a Linux 5.x+ KVM (VMX, SVM or PVM) that provides it")]
    MissingCap(&'static str),
    /// The CPU or OS has no XSAVE: the resume trampoline restores vector state with XRSTOR.
    #[error("the host CPU or kernel does not enable XSAVE (CPUID.1:ECX.OSXSAVE is 0); kvmjs restores guest vector state with XRSTOR and needs a CPU and kernel with XSAVE enabled")]
    NoXsave,
    /// The chosen XSAVE image does not fit its window in the guest's memory map.
    #[error("the guest XSAVE image needs {need} bytes but the memory map reserves {have}; this CPU has more vector state than kvmjs supports")]
    XsaveTooLarge {
        /// Bytes needed.
        need: u32,
        /// Bytes reserved.
        have: u64,
    },
    /// The address space does not fit the guest's physical address width.
    #[error("address_space {mb} MB needs guest-physical addresses up to {top:#x}, but this host's MAXPHYADDR is {bits} bits ({max} MB); lower address_space to at most {max} MB")]
    AddressSpace {
        /// Requested MB.
        mb: u64,
        /// Highest GPA needed (the trap page).
        top: u64,
        /// MAXPHYADDR.
        bits: u8,
        /// Largest address_space that fits, in MB.
        max: u64,
    },
    /// KVM could not be queried.
    #[error("KVM {op} failed during the host probe: {source}")]
    Ioctl {
        /// What.
        op: &'static str,
        /// Why.
        source: kvm_ioctls::Error,
    },
}

/// CPU vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// GenuineIntel.
    Intel,
    /// AuthenticAMD (or HygonGenuine).
    Amd,
    /// Anything else.
    Other,
}

/// Which kind of KVM /dev/kvm is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmKind {
    /// PVM: software nested virtualisation (ring 0 emulated, ring 3 native).
    Pvm,
    /// Hardware virtualisation: VMX on Intel, SVM on AMD.
    Hardware,
}

/// Linux's signal-frame overhead beyond the XSAVE area on x86-64 (rt_sigframe, the
/// 32-bit frames it must also fit, alignment and FP_XSTATE_MAGIC2 padding): measured as
/// AT_MINSIGSTKSZ minus the XSAVE size on a Linux 6.x host (3376 - 2432 on Zen 4).
pub const SIGFRAME_OVERHEAD: u64 = 944;

/// Where the XSAVE image lives and how large its window is (see [`crate::layout`]).
pub const XSAVE_WINDOW: u64 = layout::XSAVE_WINDOW_END - layout::XSAVE_IMAGE;

/// What the probe VM learned about traps on this KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flavour {
    /// Privilege level the SYSCALL entry ran at (3 on PVM, 0 on VMX/SVM).
    pub syscall_cpl: u8,
    /// Whether RIP had already moved past the trapping write at the MMIO exit.
    pub rip_past_trap: bool,
}

impl Flavour {
    /// How the syscall entry must return: a ring-3 SYSCALL stays in ring 3 under PVM but
    /// enters ring 0 under VMX/SVM.
    pub fn syscall_return(self) -> SyscallReturn {
        if self.syscall_cpl == 3 {
            SyscallReturn::JumpRcx
        } else {
            SyscallReturn::Sysret
        }
    }
}

/// The probe's result: facts about the host and the decisions made from them.
#[derive(Clone, Debug)]
pub struct Caps {
    /// CPU vendor.
    pub vendor: Vendor,
    /// The CPU's brand string (or the recording's label).
    pub model: String,
    /// PVM or hardware KVM.
    pub kind: KvmKind,
    /// The host process's XCR0.
    pub host_xcr0: u64,
    /// The guest's XCR0 and XSAVE image size.
    pub xsave: XsavePolicy,
    /// Guest pages holding the XSAVE image.
    pub xsave_pages: u64,
    /// The guest's CPUID table (identical in every VM).
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// AT_HWCAP: CPUID.1:EDX of the guest table, as Linux reports it.
    pub hwcap: u64,
    /// AT_HWCAP2: 0 (no ring-3 MONITOR/MWAIT, and FSGSBASE is not enabled in the guest).
    pub hwcap2: u64,
    /// AT_MINSIGSTKSZ for the guest's XSAVE size.
    pub minsigstksz: u64,
    /// Guest physical address width.
    pub maxphyaddr: u8,
    /// The TSC runs at a constant rate in all power states (CPUID 0x80000007 EDX bit 8).
    pub tsc_invariant: bool,
    /// TSC frequency a vCPU reports (KVM_GET_TSC_KHZ).
    pub tsc_khz: Option<u32>,
    /// Default huge page size, bytes.
    pub hugepage_bytes: Option<u64>,
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is available (enables the adaptive reset).
    pub manual_dirty_log: bool,
    /// KVM_CAP_DIRTY_LOG_RING is available (unused; reported).
    pub dirty_log_ring: bool,
    /// KVM_CAP_XSAVE2 value (0 when absent).
    pub kvm_xsave2: u32,
    /// How SYSCALL and MMIO exits behave, from the probe VM; `None` in pure computations
    /// (and while the probe VM itself runs, whose syscall entry keeps its `ud2` tail).
    pub flavour: Option<Flavour>,
    /// Start-up warnings (capabilities missing, components dropped).
    pub warnings: Vec<String>,
}

fn component_names(mask: u64) -> String {
    let names = [
        (xsave::X87, "x87"),
        (xsave::SSE, "sse"),
        (xsave::AVX, "avx"),
        (xsave::MPX, "mpx"),
        (xsave::AVX512, "avx512"),
        (xsave::PKRU, "pkru"),
        (xsave::AMX, "amx"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(m, _)| mask & m != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

impl Caps {
    /// Decides everything from the raw inputs. Pure: the same inputs give the same caps.
    pub fn compute(p: &ProbeInputs) -> Result<Caps, CapsError> {
        for (v, name) in [
            (p.caps.sync_regs, "KVM_CAP_SYNC_REGS"),
            (p.caps.immediate_exit, "KVM_CAP_IMMEDIATE_EXIT"),
            (p.caps.xsave, "KVM_CAP_XSAVE"),
            (p.caps.xcrs, "KVM_CAP_XCRS"),
        ] {
            if v <= 0 {
                return Err(CapsError::MissingCap(name));
            }
        }
        let l1 = p.host_leaf(1, 0);
        if l1.ecx & (1 << 27) == 0 || p.host_xcr0 & 3 != 3 {
            return Err(CapsError::NoXsave);
        }
        let l0 = p.host_leaf(0, 0);
        let vendor = match (l0.ebx, l0.edx, l0.ecx) {
            (0x756e_6547, 0x4965_6e69, 0x6c65_746e) => Vendor::Intel,
            (0x6874_7541, 0x6974_6e65, 0x444d_4163) | (0x6f67_7948, _, _) => Vendor::Amd,
            _ => Vendor::Other,
        };
        let mut warnings = Vec::new();
        let x = xsave::choose(p);
        for d in &x.dropped {
            warnings.push(format!(
                "guest XSAVE component {} left out: {}",
                component_names(d.mask),
                d.why
            ));
        }
        let xsave_pages = u64::from(x.size).div_ceil(PAGE_SIZE);
        if xsave_pages * PAGE_SIZE > XSAVE_WINDOW {
            return Err(CapsError::XsaveTooLarge {
                need: x.size,
                have: XSAVE_WINDOW,
            });
        }
        if x.kvm_xcr0 != x.xcr0 {
            warnings.push(format!(
                "KVM's supported XCR0 lacks {}; under PVM the guest still runs with the host's XCR0, so they are restored all the same",
                component_names(x.xcr0 & !x.kvm_xcr0)
            ));
        }
        let table = cpuid::guest_table(p, &x);
        let phys = |r: inputs::Regs| (r.eax & 0xff) as u8;
        let host_phys = phys(p.host_leaf(0x8000_0008, 0));
        let maxphyaddr = match p.kvm_leaf(0x8000_0008, 0).map(phys) {
            Some(k) if k > 0 && (host_phys == 0 || k < host_phys) => k,
            _ if host_phys > 0 => host_phys,
            // CPUs without the leaf have 36 bits (SDM vol. 3 §4.1.4).
            _ => 36,
        };
        let tsc_invariant = p.host_leaf(0x8000_0007, 0).edx & (1 << 8) != 0;
        if !tsc_invariant {
            warnings.push("the TSC is not invariant: guests get no TSC clock (KVMJS_TSC_KHZ is not passed) and read time through clock_gettime, one VM exit each".into());
        }
        if p.caps.manual_dirty_log_protect2 <= 0 {
            warnings.push("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is missing: the adaptive reset is off and every dirtied page costs a write fault per request".into());
        }
        if p.tsc_khz.is_none() {
            warnings.push("KVM_GET_TSC_KHZ failed: guests get no TSC clock".into());
        }
        let hwcap = u64::from(cpuid::find(&table, 1, 0).edx);
        let minsigstksz = (u64::from(x.size) + SIGFRAME_OVERHEAD).div_ceil(16) * 16;
        Ok(Caps {
            vendor,
            model: p.label.clone(),
            kind: if p.pvm {
                KvmKind::Pvm
            } else {
                KvmKind::Hardware
            },
            host_xcr0: p.host_xcr0,
            xsave: x,
            xsave_pages,
            cpuid: table,
            hwcap,
            hwcap2: 0,
            minsigstksz,
            maxphyaddr,
            tsc_invariant,
            tsc_khz: p.tsc_khz,
            hugepage_bytes: p.hugepage_kb.map(|k| k << 10),
            manual_dirty_log: p.caps.manual_dirty_log_protect2 > 0,
            dirty_log_ring: p.caps.dirty_log_ring > 0,
            kvm_xsave2: u32::try_from(p.caps.xsave2).unwrap_or(0),
            flavour: None,
            warnings,
        })
    }

    /// Refuses an address space whose trap page (the first GPA past it) is beyond
    /// MAXPHYADDR: KVM could not map it and every guest call would fault.
    pub fn check_address_space(&self, bytes: u64) -> Result<(), CapsError> {
        let top = layout::trap_gpa(bytes) + PAGE_SIZE;
        let limit = 1u64 << self.maxphyaddr.min(63);
        if top <= limit {
            return Ok(());
        }
        Err(CapsError::AddressSpace {
            mb: bytes >> 20,
            top,
            bits: self.maxphyaddr,
            max: (limit - layout::HUGE_PAGE) >> 20,
        })
    }

    /// The TSC frequency to give guests, only when the TSC can serve as a clock.
    pub fn guest_tsc_khz(&self) -> Option<u32> {
        self.tsc_khz.filter(|_| self.tsc_invariant)
    }

    /// The guest feature names worth knowing at a glance.
    pub fn feature_summary(&self) -> String {
        let l1 = cpuid::find(&self.cpuid, 1, 0);
        let l7 = cpuid::find(&self.cpuid, 7, 0);
        let mut f = vec!["sse2"];
        for (on, name) in [
            (l1.ecx & (1 << 20) != 0, "sse4.2"),
            (l1.ecx & (1 << 23) != 0, "popcnt"),
            (l1.ecx & (1 << 25) != 0, "aes"),
            (l1.ecx & (1 << 28) != 0, "avx"),
            (l7.ebx & (1 << 5) != 0, "avx2"),
            (l7.ebx & (1 << 8) != 0, "bmi2"),
            (l7.ebx & (1 << 16) != 0, "avx512f"),
            (l7.ebx & (1 << 29) != 0, "sha"),
            (l7.edx & (1 << 24) != 0, "amx"),
        ] {
            if on {
                f.push(name);
            }
        }
        f.join(",")
    }

    /// Key/value pairs for the one-line log and the `/metrics` info metric.
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("vendor", format!("{:?}", self.vendor).to_lowercase()),
            ("model", self.model.clone()),
            (
                "kvm",
                match self.kind {
                    KvmKind::Pvm => "pvm".into(),
                    KvmKind::Hardware if self.vendor == Vendor::Amd => "svm".into(),
                    KvmKind::Hardware => "vmx".into(),
                },
            ),
            ("host_xcr0", format!("{:#x}", self.host_xcr0)),
            ("guest_xcr0", format!("{:#x}", self.xsave.xcr0)),
            ("xsave_bytes", self.xsave.size.to_string()),
            ("xsave_pages", self.xsave_pages.to_string()),
            ("kvm_xsave2", self.kvm_xsave2.to_string()),
            ("guest_cpu", self.feature_summary()),
            ("maxphyaddr", self.maxphyaddr.to_string()),
            (
                "tsc_khz",
                self.tsc_khz.map_or("unknown".into(), |k| k.to_string()),
            ),
            ("tsc_invariant", self.tsc_invariant.to_string()),
            (
                "hugepage_kb",
                self.hugepage_bytes
                    .map_or("none".into(), |b| (b >> 10).to_string()),
            ),
            ("manual_dirty_log", self.manual_dirty_log.to_string()),
            (
                "syscall_cpl",
                self.flavour
                    .map_or("unknown".into(), |f| f.syscall_cpl.to_string()),
            ),
        ]
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .labels()
            .into_iter()
            .map(|(k, v)| {
                if v.contains(' ') {
                    format!("{k}=\"{v}\"")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        write!(f, "host probe: {}", parts.join(" "))
    }
}

pub(crate) use syscall_probe::probe_flavour;

#[cfg(test)]
mod tests;
