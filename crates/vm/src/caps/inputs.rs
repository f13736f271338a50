//! The raw facts a capability probe reads off a host: the CPU's own CPUID and XCR0, the
//! CPUID table KVM says it supports, KVM capability values, and a few kernel facts. They
//! are kept apart from what kvmjs *decides* from them ([`super::Caps`]), so the decision is
//! a pure function that unit tests feed with recordings of other machines
//! (`fixtures/*.txt`, written by `kvmjs probe --record`).

use kvm_bindings::kvm_cpuid_entry2;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One CPUID result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl Regs {
    /// The registers of a KVM CPUID entry.
    pub fn of(e: &kvm_cpuid_entry2) -> Regs {
        Regs {
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }

    /// A KVM CPUID entry with these registers.
    pub fn entry(self, function: u32, index: u32, flags: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags,
            eax: self.eax,
            ebx: self.ebx,
            ecx: self.ecx,
            edx: self.edx,
            ..Default::default()
        }
    }
}

/// KVM capability values that kvmjs reads (KVM_CHECK_EXTENSION results; 0 = absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvmCaps {
    /// KVM_CAP_SYNC_REGS (bitmask of register sets).
    pub sync_regs: i32,
    /// KVM_CAP_IMMEDIATE_EXIT.
    pub immediate_exit: i32,
    /// KVM_CAP_XSAVE.
    pub xsave: i32,
    /// KVM_CAP_XSAVE2: size in bytes of the XSAVE buffer KVM fills (0 = absent: 4096).
    pub xsave2: i32,
    /// KVM_CAP_XCRS.
    pub xcrs: i32,
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (bitmask of supported flags).
    pub manual_dirty_log_protect2: i32,
    /// KVM_CAP_DIRTY_LOG_RING (max ring bytes).
    pub dirty_log_ring: i32,
    /// KVM_CAP_NR_MEMSLOTS.
    pub nr_memslots: i32,
    /// KVM_CAP_GET_TSC_KHZ.
    pub get_tsc_khz: i32,
}

/// Everything the probe reads. `BTreeMap`s keep recordings sorted and diffable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeInputs {
    /// A name for the machine (free text, from the recording's header or the brand string).
    pub label: String,
    /// CPUID as the host process sees it, keyed by (leaf, subleaf).
    pub host: BTreeMap<(u32, u32), Regs>,
    /// XCR0 of the host process (XGETBV 0).
    pub host_xcr0: u64,
    /// KVM_GET_SUPPORTED_CPUID, keyed by (leaf, subleaf), with the entry flags.
    pub kvm: BTreeMap<(u32, u32), (u32, Regs)>,
    /// KVM capabilities.
    pub caps: KvmCaps,
    /// The `kvm_pvm` module is loaded: /dev/kvm is PVM (software nested virtualisation).
    pub pvm: bool,
    /// Default huge page size in KiB (/proc/meminfo Hugepagesize), if any.
    pub hugepage_kb: Option<u64>,
    /// KVM_GET_TSC_KHZ of a fresh vCPU, if it answered.
    pub tsc_khz: Option<u32>,
}

/// A recording that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("probe record line {line}: {what} (expected the format `kvmjs probe --record` writes)")]
pub struct RecordError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl ProbeInputs {
    /// Host CPUID leaf (zeros when absent, as the CPU answers for unknown subleaves).
    pub fn host_leaf(&self, leaf: u32, sub: u32) -> Regs {
        self.host.get(&(leaf, sub)).copied().unwrap_or_default()
    }

    /// KVM's supported CPUID leaf, if KVM lists it.
    pub fn kvm_leaf(&self, leaf: u32, sub: u32) -> Option<Regs> {
        self.kvm.get(&(leaf, sub)).map(|(_, r)| *r)
    }

    /// KVM's table as `kvm_cpuid_entry2`s, in key order.
    pub fn kvm_entries(&self) -> Vec<kvm_cpuid_entry2> {
        self.kvm
            .iter()
            .map(|(&(function, index), &(flags, r))| r.entry(function, index, flags))
            .collect()
    }

    /// The text form: one fact per line, `#` comments.
    pub fn to_record(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# kvmjs probe record v1: {}", self.label);
        let _ = writeln!(s, "host_xcr0 {:#x}", self.host_xcr0);
        let _ = writeln!(s, "pvm {}", u8::from(self.pvm));
        if let Some(kb) = self.hugepage_kb {
            let _ = writeln!(s, "hugepage_kb {kb}");
        }
        if let Some(k) = self.tsc_khz {
            let _ = writeln!(s, "tsc_khz {k}");
        }
        for (name, v) in self.caps.fields() {
            let _ = writeln!(s, "cap {name} {v}");
        }
        for (&(l, i), r) in &self.host {
            let _ = writeln!(
                s,
                "host {l:#010x} {i} {:#010x} {:#010x} {:#010x} {:#010x}",
                r.eax, r.ebx, r.ecx, r.edx
            );
        }
        for (&(l, i), (f, r)) in &self.kvm {
            let _ = writeln!(
                s,
                "kvm {l:#010x} {i} {f} {:#010x} {:#010x} {:#010x} {:#010x}",
                r.eax, r.ebx, r.ecx, r.edx
            );
        }
        s
    }

    /// Parses [`ProbeInputs::to_record`]'s format.
    pub fn from_record(text: &str) -> Result<Self, RecordError> {
        let mut p = ProbeInputs::default();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let err = |what: &str| RecordError {
                line,
                what: what.to_string(),
            };
            if let Some(label) = raw.strip_prefix("# kvmjs probe record v1:") {
                p.label = label.trim().to_string();
                continue;
            }
            let t = raw.split('#').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            let w: Vec<&str> = t.split_whitespace().collect();
            let nums = |from: usize, count: usize| -> Result<Vec<u64>, RecordError> {
                if w.len() != from + count {
                    return Err(err(&format!("expected {} fields", from + count)));
                }
                w[from..]
                    .iter()
                    .map(|s| num(s).ok_or_else(|| err(&format!("{s:?} is not a number"))))
                    .collect()
            };
            let u32s = |v: &[u64]| -> Result<Vec<u32>, RecordError> {
                v.iter()
                    .map(|x| u32::try_from(*x).map_err(|_| err("value above 32 bits")))
                    .collect()
            };
            match w[0] {
                "host_xcr0" => p.host_xcr0 = nums(1, 1)?[0],
                "pvm" => p.pvm = nums(1, 1)?[0] != 0,
                "hugepage_kb" => p.hugepage_kb = Some(nums(1, 1)?[0]),
                "tsc_khz" => p.tsc_khz = Some(u32s(&nums(1, 1)?)?[0]),
                "cap" => {
                    let v = nums(2, 1)?[0];
                    let v = i32::try_from(v).map_err(|_| err("capability above i32"))?;
                    if !p.caps.set(w[1], v) {
                        return Err(err(&format!("unknown capability {:?}", w[1])));
                    }
                }
                "host" => {
                    let v = u32s(&nums(1, 6)?)?;
                    p.host.insert((v[0], v[1]), regs(&v[2..]));
                }
                "kvm" => {
                    let v = u32s(&nums(1, 7)?)?;
                    p.kvm.insert((v[0], v[1]), (v[2], regs(&v[3..])));
                }
                other => return Err(err(&format!("unknown key {other:?}"))),
            }
        }
        Ok(p)
    }
}

fn regs(v: &[u32]) -> Regs {
    Regs {
        eax: v[0],
        ebx: v[1],
        ecx: v[2],
        edx: v[3],
    }
}

impl KvmCaps {
    fn fields(&self) -> [(&'static str, i32); 9] {
        [
            ("sync_regs", self.sync_regs),
            ("immediate_exit", self.immediate_exit),
            ("xsave", self.xsave),
            ("xsave2", self.xsave2),
            ("xcrs", self.xcrs),
            ("manual_dirty_log_protect2", self.manual_dirty_log_protect2),
            ("dirty_log_ring", self.dirty_log_ring),
            ("nr_memslots", self.nr_memslots),
            ("get_tsc_khz", self.get_tsc_khz),
        ]
    }

    fn set(&mut self, name: &str, v: i32) -> bool {
        let slot = match name {
            "sync_regs" => &mut self.sync_regs,
            "immediate_exit" => &mut self.immediate_exit,
            "xsave" => &mut self.xsave,
            "xsave2" => &mut self.xsave2,
            "xcrs" => &mut self.xcrs,
            "manual_dirty_log_protect2" => &mut self.manual_dirty_log_protect2,
            "dirty_log_ring" => &mut self.dirty_log_ring,
            "nr_memslots" => &mut self.nr_memslots,
            "get_tsc_khz" => &mut self.get_tsc_khz,
            _ => return false,
        };
        *slot = v;
        true
    }
}

/// Reading the live host.
pub mod live {
    use super::*;
    use core::arch::x86_64::{__cpuid_count, _xgetbv};
    use kvm_ioctls::{Cap, Kvm};

    fn cpuid(leaf: u32, sub: u32) -> Regs {
        let r = __cpuid_count(leaf, sub);
        Regs {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }

    /// The host's CPUID: every basic and extended leaf, with the subleaves of the leaves
    /// kvmjs reads (7, 0xD) enumerated; all-zero results are left out.
    pub fn host_cpuid() -> BTreeMap<(u32, u32), Regs> {
        let mut m = BTreeMap::new();
        let mut put = |l: u32, s: u32| {
            let r = cpuid(l, s);
            if r != Regs::default() {
                m.insert((l, s), r);
            }
        };
        let max = cpuid(0, 0).eax.min(0x40);
        for l in 0..=max {
            match l {
                7 => (0..=cpuid(7, 0).eax.min(8)).for_each(|s| put(7, s)),
                0xd => (0..64).for_each(|s| put(0xd, s)),
                _ => put(l, 0),
            }
        }
        let ext = cpuid(0x8000_0000, 0).eax.clamp(0x8000_0000, 0x8000_0040);
        for l in 0x8000_0000..=ext {
            put(l, 0);
        }
        m
    }

    /// XCR0 of this process (0 when the OS has not enabled XSAVE).
    pub fn host_xcr0() -> u64 {
        let leaf1 = cpuid(1, 0);
        if leaf1.ecx & (1 << 27) == 0 {
            return 0;
        }
        // SAFETY: OSXSAVE is set, so XGETBV is enabled; it only reads XCR0.
        unsafe { _xgetbv(0) }
    }

    fn hugepage_kb() -> Option<u64> {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("Hugepagesize:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Reads every input from this host through the open `/dev/kvm`.
    pub fn read(kvm: &Kvm) -> Result<ProbeInputs, kvm_ioctls::Error> {
        let host = host_cpuid();
        let brand: Vec<u8> = (0x8000_0002u32..=0x8000_0004)
            .flat_map(|l| {
                let r = host.get(&(l, 0)).copied().unwrap_or_default();
                [r.eax, r.ebx, r.ecx, r.edx]
            })
            .flat_map(u32::to_le_bytes)
            .filter(|b| *b != 0)
            .collect();
        let supported = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)?;
        let kvm_table = supported
            .as_slice()
            .iter()
            .map(|e| ((e.function, e.index), (e.flags, Regs::of(e))))
            .collect();
        let c = |cap: Cap| kvm.check_extension_int(cap);
        let caps = KvmCaps {
            sync_regs: c(Cap::SyncRegs),
            immediate_exit: c(Cap::ImmediateExit),
            xsave: c(Cap::Xsave),
            xsave2: c(Cap::Xsave2),
            xcrs: c(Cap::Xcrs),
            manual_dirty_log_protect2: kvm
                .check_extension_raw(u64::from(kvm_bindings::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)),
            dirty_log_ring: c(Cap::DirtyLogRing),
            nr_memslots: c(Cap::NrMemslots),
            get_tsc_khz: c(Cap::GetTscKhz),
        };
        let tsc_khz = kvm
            .create_vm()
            .and_then(|vm| vm.create_vcpu(0))
            .and_then(|vcpu| vcpu.get_tsc_khz())
            .ok();
        Ok(ProbeInputs {
            label: String::from_utf8_lossy(&brand).trim().to_string(),
            host,
            host_xcr0: host_xcr0(),
            kvm: kvm_table,
            caps,
            pvm: std::path::Path::new("/sys/module/kvm_pvm").exists(),
            hugepage_kb: hugepage_kb(),
            tsc_khz,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let mut p = ProbeInputs {
            label: "test cpu".into(),
            host_xcr0: 0xe7,
            pvm: true,
            hugepage_kb: Some(2048),
            tsc_khz: Some(2_596_000),
            ..Default::default()
        };
        p.caps.xsave2 = 4096;
        p.caps.sync_regs = 7;
        p.host.insert(
            (1, 0),
            Regs {
                eax: 1,
                ebx: 2,
                ecx: 0xfffa_3203,
                edx: 4,
            },
        );
        p.kvm.insert((0xd, 1), (1, Regs::default()));
        let back = ProbeInputs::from_record(&p.to_record()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn bad_records_name_the_line() {
        let e = ProbeInputs::from_record("pvm 1\nhost 0x1 0 1 2 3\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = ProbeInputs::from_record("cap warp_drive 1\n").unwrap_err();
        assert!(e.what.contains("warp_drive"), "{e}");
        let e = ProbeInputs::from_record("host 0x1 0 0x1ffffffff 0 0 0\n").unwrap_err();
        assert!(e.to_string().contains("32 bits"), "{e}");
    }

    #[test]
    fn live_host_cpuid_has_the_basics() {
        let m = live::host_cpuid();
        let l1 = m[&(1, 0)];
        // SSE2 is architectural on x86-64.
        assert_ne!(l1.edx & (1 << 26), 0);
        assert!(m.keys().any(|k| k.0 >= 0x8000_0000));
    }
}
