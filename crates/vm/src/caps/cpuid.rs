//! The guest's CPUID table, normalised (as Firecracker does): computed once per process
//! from the probe, identical in every VM, and describing what ring-3 guest code can really
//! execute under the chosen XCR0. glibc (and V8, simdutf, OpenSSL) pick code paths from
//! CPUID once at start-up, before the snapshot; a table that changed between VMs of a pool
//! or lied about a feature would break them after a reset or fork.
//!
//! Starting point is KVM_GET_SUPPORTED_CPUID. Under PVM it hides ISA extensions that ring-3
//! code runs natively (SSE3-4.2, POPCNT, AVX/AVX2, BMI, AES…: `deno-in-vm.md` §13), so the
//! pure instruction-set bits below are taken from the host CPU; under VMX/SVM KVM already
//! reports them, so this changes nothing there. Then every feature whose state is outside
//! the guest's XCR0, or which the VM does not provide, is cleared.

use super::inputs::{ProbeInputs, Regs};
use super::xsave::{XsavePolicy, AMX, AVX, AVX512};
use kvm_bindings::kvm_cpuid_entry2;

const fn bits(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, FMA, CX16, SSE4.1, SSE4.2, MOVBE, POPCNT, AES, XSAVE,
// AVX, F16C, RDRAND.
const L1_ECX_ISA: u32 = bits(&[0, 1, 9, 12, 13, 19, 20, 22, 23, 25, 26, 28, 29, 30]);
const L1_ECX_OSXSAVE: u32 = 1 << 27;
const L1_ECX_AVX_FAMILY: u32 = bits(&[12, 28, 29]); // FMA, AVX, F16C
                                                    // Leaf 7.0 EBX: BMI1, AVX2, BMI2, ERMS, AVX512F, AVX512DQ, RDSEED, ADX, AVX512IFMA,
                                                    // CLFLUSHOPT, CLWB, AVX512PF, AVX512ER, AVX512CD, SHA, AVX512BW, AVX512VL.
const L7_EBX_ISA: u32 = bits(&[
    3, 5, 8, 9, 16, 17, 18, 19, 21, 23, 24, 26, 27, 28, 29, 30, 31,
]);
const L7_EBX_AVX512: u32 = bits(&[16, 17, 21, 26, 27, 28, 30, 31]);
const L7_EBX_AVX2: u32 = 1 << 5;
// Leaf 7.0 EBX bit 0: FSGSBASE. The guest's CR4 never enables it (and AT_HWCAP2 says so).
const L7_EBX_FSGSBASE: u32 = 1;
// Leaf 7.0 ECX: AVX512_VBMI, AVX512_VBMI2, GFNI, VAES, VPCLMULQDQ, AVX512_VNNI,
// AVX512_BITALG, AVX512_VPOPCNTDQ.
const L7_ECX_ISA: u32 = bits(&[1, 6, 8, 9, 10, 11, 12, 14]);
const L7_ECX_AVX512: u32 = bits(&[1, 6, 11, 12, 14]);
const L7_ECX_AVX: u32 = bits(&[9, 10]); // VAES, VPCLMULQDQ (VEX forms need AVX)
                                        // PKU, OSPKE (no protection keys), WAITPKG (UMWAIT is not for guests), LA57 (the guest has
                                        // 4-level paging).
const L7_ECX_NEVER: u32 = bits(&[3, 4, 5, 16]);
// Leaf 7.0 EDX: AVX512_4VNNIW, AVX512_4FMAPS, FSRM, AVX512_VP2INTERSECT, AVX512_FP16.
const L7_EDX_ISA: u32 = bits(&[2, 3, 4, 8, 23]);
const L7_EDX_AVX512: u32 = bits(&[2, 3, 8, 23]);
const L7_EDX_AMX: u32 = bits(&[22, 24, 25]);
// Leaf 7.1 EAX: AVX_VNNI, AVX512_BF16.
const L71_EAX_ISA: u32 = bits(&[4, 5]);
const L71_EAX_AVX512: u32 = 1 << 5;
// Leaf 0xD.1 EAX: XSAVEOPT, XSAVEC, XGETBV with ECX=1. Not XSAVES (supervisor state) or
// XFD.
const LD1_EAX_USER: u32 = bits(&[0, 1, 2]);
// Leaf 0x80000001 ECX: LAHF/SAHF, LZCNT, SSE4A, misaligned SSE, PREFETCHW, FMA4, TBM.
const LX1_ECX_ISA: u32 = bits(&[0, 5, 6, 7, 8, 16, 21]);
const LX1_ECX_AVX: u32 = 1 << 16; // FMA4

/// What a leaf of the guest's table should say, given KVM's entry (if any) and the host's.
fn leaf(p: &ProbeInputs, x: &XsavePolicy, function: u32, index: u32, kvm: Regs) -> Regs {
    let host = p.host_leaf(function, index);
    let avx = x.xcr0 & AVX != 0;
    let avx512 = x.xcr0 & AVX512 == AVX512;
    let amx = x.xcr0 & AMX == AMX;
    let mut r = kvm;
    match (function, index) {
        (1, 0) => {
            r.ecx = (kvm.ecx & !L1_ECX_ISA) | (host.ecx & L1_ECX_ISA);
            r.ecx &= !L1_ECX_OSXSAVE;
            if r.ecx & (1 << 26) != 0 {
                // The guest's CR4 has OSXSAVE set (cpu::user_sregs).
                r.ecx |= L1_ECX_OSXSAVE;
            }
            if !avx {
                r.ecx &= !L1_ECX_AVX_FAMILY;
            }
        }
        (7, 0) => {
            r.ebx = (kvm.ebx & !L7_EBX_ISA) | (host.ebx & L7_EBX_ISA);
            r.ebx &= !L7_EBX_FSGSBASE;
            r.ecx = (kvm.ecx & !L7_ECX_ISA) | (host.ecx & L7_ECX_ISA);
            r.ecx &= !L7_ECX_NEVER;
            r.edx = (kvm.edx & !L7_EDX_ISA) | (host.edx & L7_EDX_ISA);
            if !avx {
                r.ebx &= !L7_EBX_AVX2;
                r.ecx &= !L7_ECX_AVX;
            }
            if !avx512 {
                r.ebx &= !L7_EBX_AVX512;
                r.ecx &= !L7_ECX_AVX512;
                r.edx &= !L7_EDX_AVX512;
            }
            if !amx {
                r.edx &= !L7_EDX_AMX;
            }
        }
        (7, 1) => {
            r.eax = (kvm.eax & !L71_EAX_ISA) | (host.eax & L71_EAX_ISA);
            if !avx {
                r.eax &= !L71_EAX_ISA;
            }
            if !avx512 {
                r.eax &= !L71_EAX_AVX512;
            }
        }
        (0x8000_0001, 0) => {
            r.ecx = (kvm.ecx & !LX1_ECX_ISA) | (host.ecx & LX1_ECX_ISA);
            if !avx {
                r.ecx &= !LX1_ECX_AVX;
            }
        }
        _ => {}
    }
    r
}

/// Leaf 0xD, rebuilt for the policy: subleaf 0 (the XCR0 the guest may set and the image
/// sizes), subleaf 1 (user-mode XSAVE variants), one subleaf per enabled component.
fn xsave_leaves(p: &ProbeInputs, x: &XsavePolicy) -> Vec<(u32, Regs)> {
    let mut v = vec![(
        0,
        Regs {
            eax: x.xcr0 as u32,
            ebx: x.size,
            ecx: x.size,
            edx: (x.xcr0 >> 32) as u32,
        },
    )];
    let h1 = p.host_leaf(0xd, 1);
    let eax1 = h1.eax & LD1_EAX_USER;
    v.push((
        1,
        Regs {
            eax: eax1,
            ebx: if eax1 & 2 != 0 { x.compacted_size } else { 0 },
            ecx: 0,
            edx: 0,
        },
    ));
    for i in 2..63u32 {
        if x.xcr0 & (1 << i) != 0 {
            let h = p.host_leaf(0xd, i);
            v.push((
                i,
                Regs {
                    // Size, offset, and only the user-state/alignment flags.
                    ecx: h.ecx & 2,
                    edx: 0,
                    ..h
                },
            ));
        }
    }
    v
}

/// The guest's CPUID table.
pub fn guest_table(p: &ProbeInputs, x: &XsavePolicy) -> Vec<kvm_cpuid_entry2> {
    let mut out: Vec<kvm_cpuid_entry2> = Vec::new();
    for e in p.kvm_entries() {
        // Leaf 0xD is rebuilt below; AMX's tile leaves go unless AMX is enabled.
        if e.function == 0xd || (matches!(e.function, 0x1d | 0x1e) && x.xcr0 & AMX != AMX) {
            continue;
        }
        let r = leaf(p, x, e.function, e.index, Regs::of(&e));
        out.push(r.entry(e.function, e.index, e.flags));
    }
    let flags = kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    for (index, r) in xsave_leaves(p, x) {
        out.push(r.entry(0xd, index, flags));
    }
    out.sort_by_key(|e| (e.function, e.index));
    out
}

/// Looks a leaf up in a table.
pub fn find(table: &[kvm_cpuid_entry2], function: u32, index: u32) -> Regs {
    table
        .iter()
        .find(|e| e.function == function && e.index == index)
        .map(Regs::of)
        .unwrap_or_default()
}
