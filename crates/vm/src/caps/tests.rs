//! The probe's decisions on recorded CPUs: each fixture is a machine kvmjs runs on (or
//! could), so a decision that would fail on a CPU CI does not have fails here.

use super::cpuid::find;
use super::inputs::ProbeInputs;
use super::xsave::{self, AMX, AVX, AVX512, MPX, PKRU, SSE, X87};
use super::*;
use crate::cpu::stubs;

fn fixture(name: &str) -> ProbeInputs {
    let text = match name {
        "intel-spr-pvm" => include_str!("fixtures/intel-spr-pvm.txt"),
        "amd-zen4-pvm" => include_str!("fixtures/amd-zen4-pvm.txt"),
        "intel-avx2-vmx" => include_str!("fixtures/intel-avx2-vmx.txt"),
        "amd-zen3-svm-no-xsave2" => include_str!("fixtures/amd-zen3-svm-no-xsave2.txt"),
        _ => unreachable!("no fixture {name}"),
    };
    ProbeInputs::from_record(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn caps(name: &str) -> Caps {
    Caps::compute(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const ALL: [&str; 4] = [
    "intel-spr-pvm",
    "amd-zen4-pvm",
    "intel-avx2-vmx",
    "amd-zen3-svm-no-xsave2",
];

/// The XRSTOR mask the resume trampoline is built with (its two `mov imm32`s).
fn trampoline_mask(c: &Caps) -> u64 {
    let code = stubs::resume_entry(c.xsave.xcr0);
    let lo = u32::from_le_bytes(code[1..5].try_into().unwrap());
    let hi = u32::from_le_bytes(code[6..10].try_into().unwrap());
    u64::from(lo) | (u64::from(hi) << 32)
}

#[test]
fn sapphire_rapids_pvm_gets_avx512_but_never_amx() {
    let c = caps("intel-spr-pvm");
    assert_eq!(c.vendor, Vendor::Intel);
    assert_eq!(c.kind, KvmKind::Pvm);
    assert_eq!(c.host_xcr0, 0x600e7);
    // The bug of issue 9: the trampoline restored with mask -1 and so touched the 8 KiB
    // of AMX tile data past a one-page image. Now the mask is the guest's XCR0.
    assert_eq!(c.xsave.xcr0, X87 | SSE | AVX | AVX512);
    assert_eq!(trampoline_mask(&c), 0xe7);
    assert_eq!(trampoline_mask(&c) & AMX, 0);
    // Intel's standard layout: Hi16_ZMM ends at 1664 + 1024 (KVM's own leaf 0xD agrees).
    assert_eq!(c.xsave.size, 2688);
    assert_eq!(
        c.xsave.size,
        fixture("intel-spr-pvm").kvm_leaf(0xd, 0).unwrap().ebx
    );
    assert_eq!(c.xsave_pages, 1);
    assert!(c.xsave.dropped.iter().any(|d| d.mask == AMX));
    // The host's 11,008-byte area is what a -1 mask needs; it would not fit one page.
    assert_eq!(
        xsave::standard_size(&fixture("intel-spr-pvm"), 0x600e7),
        11008
    );
    assert_eq!(c.minsigstksz, 3632);
}

#[test]
fn pvm_cpuid_shows_what_ring3_really_executes() {
    // Under PVM KVM_GET_SUPPORTED_CPUID reports an SSE2-only CPU (leaf 1 ECX 0x81202000);
    // the guest must see the ISA extensions its ring-3 code runs natively.
    for name in ["intel-spr-pvm", "amd-zen4-pvm"] {
        let c = caps(name);
        let l1 = find(&c.cpuid, 1, 0);
        let l7 = find(&c.cpuid, 7, 0);
        for (bit, what) in [
            (0, "SSE3"),
            (9, "SSSE3"),
            (19, "SSE4.1"),
            (20, "SSE4.2"),
            (23, "POPCNT"),
            (25, "AES"),
            (26, "XSAVE"),
            (27, "OSXSAVE"),
            (28, "AVX"),
        ] {
            assert_ne!(l1.ecx & (1 << bit), 0, "{name}: leaf 1 ECX lacks {what}");
        }
        for (bit, what) in [(3, "BMI1"), (5, "AVX2"), (8, "BMI2"), (16, "AVX512F")] {
            assert_ne!(l7.ebx & (1 << bit), 0, "{name}: leaf 7 EBX lacks {what}");
        }
        // Never: FSGSBASE (guest CR4 lacks it), PKU/OSPKE, WAITPKG, LA57, AMX.
        assert_eq!(l7.ebx & 1, 0, "{name}: FSGSBASE");
        assert_eq!(l7.ecx & ((1 << 3) | (1 << 4) | (1 << 5) | (1 << 16)), 0);
        assert_eq!(
            l7.edx & ((1 << 22) | (1 << 24) | (1 << 25)),
            0,
            "{name}: AMX"
        );
        assert_eq!(u64::from(c.hwcap as u32), c.hwcap);
        assert_eq!(c.hwcap, u64::from(find(&c.cpuid, 1, 0).edx));
        assert_eq!(c.hwcap2, 0);
    }
}

#[test]
fn leaf_0xd_describes_exactly_the_guest_xcr0() {
    for name in ALL {
        let c = caps(name);
        let d0 = find(&c.cpuid, 0xd, 0);
        assert_eq!(
            u64::from(d0.eax) | (u64::from(d0.edx) << 32),
            c.xsave.xcr0,
            "{name}"
        );
        assert_eq!(d0.ebx, c.xsave.size, "{name}");
        assert_eq!(d0.ecx, c.xsave.size, "{name}");
        let d1 = find(&c.cpuid, 0xd, 1);
        assert_eq!(d1.eax & !0x7, 0, "{name}: XSAVES/XFD offered");
        for i in 2..63u32 {
            let present = c.cpuid.iter().any(|e| e.function == 0xd && e.index == i);
            assert_eq!(present, c.xsave.xcr0 & (1 << i) != 0, "{name}: 0xd.{i}");
        }
        // No AMX tile leaves without AMX.
        assert!(!c
            .cpuid
            .iter()
            .any(|e| e.function == 0x1d || e.function == 0x1e));
        // Table sorted and unique.
        for w in c.cpuid.windows(2) {
            assert!((w[0].function, w[0].index) < (w[1].function, w[1].index));
        }
    }
}

#[test]
fn zen4_recording_matches_linux() {
    let c = caps("amd-zen4-pvm");
    assert_eq!(c.vendor, Vendor::Amd);
    assert_eq!(c.xsave.xcr0, 0xe7);
    // AMD's layout is denser than Intel's: opmask at 832, Hi16_ZMM ends at 1408 + 1024.
    assert_eq!(c.xsave.size, 2432);
    assert_eq!(trampoline_mask(&c), 0xe7);
    // What Linux itself put in AT_MINSIGSTKSZ on that machine.
    assert_eq!(c.minsigstksz, 3376);
    assert_eq!(c.maxphyaddr, 48);
    assert!(c.tsc_invariant && c.manual_dirty_log);
    assert_eq!(c.guest_tsc_khz(), Some(2_596_150));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn avx2_only_vmx_host_gets_no_avx512_and_no_mpx() {
    let c = caps("intel-avx2-vmx");
    assert_eq!(c.kind, KvmKind::Hardware);
    assert_eq!(c.xsave.xcr0, X87 | SSE | AVX);
    assert_eq!(c.xsave.size, 832);
    assert_eq!(trampoline_mask(&c), 0x7);
    assert!(c.xsave.dropped.iter().any(|d| d.mask == MPX));
    let l7 = find(&c.cpuid, 7, 0);
    assert_ne!(l7.ebx & (1 << 5), 0, "AVX2");
    assert_eq!(l7.ebx & (1 << 16), 0, "AVX512F");
    assert_eq!(l7.ebx & (1 << 14), 0, "MPX");
    // A truthful KVM table is kept: the hypervisor bit stays, nothing is invented.
    let l1 = find(&c.cpuid, 1, 0);
    assert_ne!(l1.ecx & (1 << 31), 0);
    assert_eq!(c.minsigstksz, 1776);
    assert_eq!(c.labels()[2].1, "vmx");
}

#[test]
fn old_svm_host_without_xsave2_works_and_says_what_is_missing() {
    let c = caps("amd-zen3-svm-no-xsave2");
    assert_eq!(c.kvm_xsave2, 0);
    // PKRU is in the host's XCR0 but guests get no protection keys.
    assert_eq!(c.host_xcr0 & PKRU, PKRU);
    assert_eq!(c.xsave.xcr0, X87 | SSE | AVX);
    assert_eq!(c.xsave.size, 832);
    let l7 = find(&c.cpuid, 7, 0);
    assert_eq!(l7.ecx & ((1 << 3) | (1 << 4)), 0, "PKU/OSPKE");
    assert!(!c.manual_dirty_log);
    assert!(!c.tsc_invariant);
    assert_eq!(c.guest_tsc_khz(), None, "no TSC clock without invariance");
    assert_eq!(c.hugepage_bytes, None);
    assert_eq!(c.labels()[2].1, "svm");
    for want in ["MANUAL_DIRTY_LOG_PROTECT2", "not invariant", "pkru"] {
        assert!(
            c.warnings.iter().any(|w| w.contains(want)),
            "no warning about {want}: {:?}",
            c.warnings
        );
    }
}

#[test]
fn image_fits_its_window_and_kvm_buffer_on_every_fixture() {
    for name in ALL {
        let c = caps(name);
        assert!(c.xsave_pages * PAGE_SIZE <= XSAVE_WINDOW, "{name}");
        assert!(c.xsave.size <= xsave::KVM_XSAVE_LEGACY_SIZE, "{name}");
        assert!(
            u64::from(c.xsave.size) <= c.xsave_pages * PAGE_SIZE,
            "{name}"
        );
        assert_eq!(c.xsave.xcr0 & (AMX | PKRU | MPX), 0, "{name}");
        assert_eq!(trampoline_mask(&c), c.xsave.xcr0, "{name}");
        // KVM_SET_XCRS gets only what KVM accepts.
        let kvm_mask = fixture(name)
            .kvm_leaf(0xd, 0)
            .map_or(3, |r| u64::from(r.eax));
        assert_eq!(c.xsave.kvm_xcr0 & !kvm_mask, 0, "{name}");
        // The same inputs always give the same table (every VM of a pool agrees).
        let again = caps(name);
        assert_eq!(again.cpuid.len(), c.cpuid.len());
        for (a, b) in again.cpuid.iter().zip(&c.cpuid) {
            assert_eq!(
                (a.function, a.index, a.eax, a.ebx, a.ecx, a.edx),
                (b.function, b.index, b.eax, b.ebx, b.ecx, b.edx)
            );
        }
    }
}

#[test]
fn xsave_limit_drops_the_widest_components_first() {
    let mut p = fixture("intel-spr-pvm");
    // A KVM whose XSAVE buffer holds only the legacy area and AVX.
    p.caps.xsave2 = 1024;
    let c = Caps::compute(&p).unwrap();
    assert_eq!(c.xsave.xcr0, X87 | SSE | AVX);
    assert!(c.warnings.iter().any(|w| w.contains("avx512")));
    let l7 = find(&c.cpuid, 7, 0);
    assert_eq!(l7.ebx & (1 << 16), 0, "AVX512F must go with its state");
    assert_ne!(l7.ebx & (1 << 5), 0, "AVX2 stays");
}

#[test]
fn unusable_hosts_are_refused_with_what_to_change() {
    let mut p = fixture("amd-zen4-pvm");
    p.caps.sync_regs = 0;
    let e = Caps::compute(&p).unwrap_err();
    assert!(e.to_string().contains("KVM_CAP_SYNC_REGS"), "{e}");

    let mut p = fixture("amd-zen4-pvm");
    p.host_xcr0 = 0;
    let e = Caps::compute(&p).unwrap_err();
    assert!(matches!(e, CapsError::NoXsave), "{e}");

    // Address space against MAXPHYADDR.
    let mut c = caps("amd-zen4-pvm");
    assert!(c.check_address_space(128 << 30).is_ok());
    c.maxphyaddr = 32;
    let e = c.check_address_space(4 << 30).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("MAXPHYADDR is 32 bits"), "{msg}");
    assert!(msg.contains("at most 4094 MB"), "{msg}");
    assert!(c.check_address_space(4094 << 20).is_ok());
}

#[test]
fn the_live_host_agrees_with_itself() {
    // The live probe's raw inputs survive the text round trip, so a recording is faithful.
    let kvm = match kvm_ioctls::Kvm::new() {
        Ok(k) => k,
        Err(e) => panic!("/dev/kvm is required for kvmjs tests: {e}"),
    };
    let live = inputs::live::read(&kvm).unwrap();
    let back = ProbeInputs::from_record(&live.to_record()).unwrap();
    assert_eq!(back, live);
    let c = Caps::compute(&live).unwrap();
    // The guest never gets components the host has not enabled.
    assert_eq!(c.xsave.xcr0 & !live.host_xcr0, 0);
    assert_eq!(
        c.xsave.xcr0 & AVX512 == AVX512,
        std::is_x86_feature_detected!("avx512f")
    );
}
