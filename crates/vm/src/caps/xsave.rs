//! Which XSAVE state components a guest gets (its XCR0), and the size of their image.
//!
//! The resume trampoline restores the snapshot's vector state with a ring-3 XRSTOR whose
//! mask is exactly the chosen XCR0, from an image of exactly the size those components
//! need in the standard format. Both come from here, so a CPU with more state (AMX's 8 KiB
//! of tile data on Sapphire Rapids) can no longer make the restore read past its image.

use super::inputs::ProbeInputs;

/// x87 state.
pub const X87: u64 = 1 << 0;
/// SSE state (XMM0-15, MXCSR).
pub const SSE: u64 = 1 << 1;
/// AVX state (upper halves of YMM0-15).
pub const AVX: u64 = 1 << 2;
/// MPX bound registers and configuration (deprecated; never given to guests).
pub const MPX: u64 = (1 << 3) | (1 << 4);
/// AVX-512: opmask, ZMM_Hi256, Hi16_ZMM. Usable only all together.
pub const AVX512: u64 = (1 << 5) | (1 << 6) | (1 << 7);
/// Protection-key rights register (PKRU).
pub const PKRU: u64 = 1 << 9;
/// AMX: TILECFG and TILEDATA.
pub const AMX: u64 = (1 << 17) | (1 << 18);

/// Size of the legacy region plus the XSAVE header: where component 2 may start.
pub const LEGACY_AND_HEADER: u32 = 512 + 64;
/// Offset of XSTATE_BV in the XSAVE header.
pub const XSTATE_BV_OFFSET: usize = 512;
/// Offset of XCOMP_BV in the XSAVE header.
pub const XCOMP_BV_OFFSET: usize = 520;
/// What KVM_GET_XSAVE returns without KVM_CAP_XSAVE2.
pub const KVM_XSAVE_LEGACY_SIZE: u32 = 4096;

/// A component left out of the guest's XCR0, and why (logged at start-up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The component bits.
    pub mask: u64,
    /// Why.
    pub why: &'static str,
}

/// The decision: the guest's XCR0 and its image size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XsavePolicy {
    /// Components the guest may use; the trampoline's XRSTOR mask.
    pub xcr0: u64,
    /// The value given to KVM_SET_XCRS: `xcr0` limited to what KVM accepts. Under PVM the
    /// guest's ring-3 code runs with the host's XCR0 whatever this says.
    pub kvm_xcr0: u64,
    /// Standard-format XSAVE image size for `xcr0`, in bytes.
    pub size: u32,
    /// Compacted-format size for `xcr0` (CPUID 0xD.1 EBX, what XSAVEC writes).
    pub compacted_size: u32,
    /// What was left out, and why.
    pub dropped: Vec<Dropped>,
}

/// Standard-format size of the components in `mask`, from the host's CPUID leaf 0xD
/// subleaves (offsets there are the CPU's, and a VM sees the same layout).
pub fn standard_size(p: &ProbeInputs, mask: u64) -> u32 {
    (2..63)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| {
            let r = p.host_leaf(0xd, i);
            r.ebx + r.eax
        })
        .fold(LEGACY_AND_HEADER, u32::max)
}

/// Compacted-format size of the components in `mask`: components in index order, each
/// 64-byte aligned when CPUID 0xD.i ECX bit 1 says so.
pub fn compacted_size(p: &ProbeInputs, mask: u64) -> u32 {
    (2..63)
        .filter(|i| mask & (1 << i) != 0)
        .fold(LEGACY_AND_HEADER, |off, i| {
            let r = p.host_leaf(0xd, i);
            let start = if r.ecx & 2 != 0 {
                off.div_ceil(64) * 64
            } else {
                off
            };
            start + r.eax
        })
}

/// Chooses the guest's XCR0: x87 and SSE always; AVX when the CPU has it; AVX-512 when the
/// CPU has all three of its components; never MPX (deprecated), PKRU (guests get no
/// protection keys) or AMX (8 KiB more to restore per reset and no guest uses it). Then
/// components are dropped, widest first, while the image is larger than KVM can hand
/// over (`KVM_CAP_XSAVE2`, or 4096 bytes without it).
///
/// Where the components come from: the host's own XCR0 and CPUID are what ring-3 guest
/// code really executes with under PVM, and under VMX/SVM they bound what KVM can give.
/// KVM's supported table (leaf 0xD) is a further limit only off PVM, because PVM
/// under-reports it (see `deno-in-vm.md` §13).
pub fn choose(p: &ProbeInputs) -> XsavePolicy {
    let host = p.host_xcr0;
    let l1 = p.host_leaf(1, 0);
    let l7 = p.host_leaf(7, 0);
    let kvm_mask = p
        .kvm_leaf(0xd, 0)
        .map(|r| u64::from(r.eax) | (u64::from(r.edx) << 32))
        .unwrap_or(X87 | SSE);
    let mut dropped = Vec::new();
    let mut x = X87 | SSE;
    let has_avx = l1.ecx & (1 << 28) != 0 && host & AVX != 0;
    if has_avx {
        x |= AVX;
    }
    if has_avx && l7.ebx & (1 << 16) != 0 && host & AVX512 == AVX512 {
        x |= AVX512;
    }
    for (mask, why) in [
        (MPX, "MPX is deprecated"),
        (PKRU, "guests get no protection keys"),
        (AMX, "AMX tile state (8 KiB) is never given to guests"),
    ] {
        if host & mask != 0 {
            dropped.push(Dropped { mask, why });
        }
    }
    if !p.pvm {
        let lost = x & !kvm_mask & !(X87 | SSE);
        if lost != 0 {
            x &= kvm_mask | X87 | SSE;
            if x & AVX == 0 {
                x &= !AVX512;
            }
            dropped.push(Dropped {
                mask: lost,
                why: "KVM does not support it",
            });
        }
    }
    // The snapshot reads the vCPU's state with KVM_GET_XSAVE: 4096 bytes at most, and
    // less only if KVM_CAP_XSAVE2 says so.
    let limit = match u32::try_from(p.caps.xsave2) {
        Ok(n) if n > 0 => n.min(KVM_XSAVE_LEGACY_SIZE),
        _ => KVM_XSAVE_LEGACY_SIZE,
    };
    for (mask, why) in [
        (AVX512, "KVM cannot hand over an XSAVE image that large"),
        (
            AVX | AVX512,
            "KVM cannot hand over an XSAVE image that large",
        ),
    ] {
        if standard_size(p, x) > limit && x & mask != 0 {
            dropped.push(Dropped {
                mask: x & mask,
                why,
            });
            x &= !mask;
        }
    }
    XsavePolicy {
        xcr0: x,
        kvm_xcr0: x & (kvm_mask | X87 | SSE),
        size: standard_size(p, x),
        compacted_size: compacted_size(p, x),
        dropped,
    }
}

/// Makes a KVM_GET_XSAVE image safe to restore with mask `xcr0`: exactly `size` bytes,
/// standard format (XCOMP_BV = 0), and XSTATE_BV limited to `xcr0`, so nothing outside
/// the chosen components is ever loaded from it.
pub fn sanitize_image(raw: &[u8], xcr0: u64, size: usize) -> Option<Vec<u8>> {
    if raw.len() < size || size < LEGACY_AND_HEADER as usize {
        return None;
    }
    let mut img = raw[..size].to_vec();
    let bv = u64::from_le_bytes(
        img[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8]
            .try_into()
            .ok()?,
    );
    img[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&(bv & xcr0).to_le_bytes());
    img[XCOMP_BV_OFFSET..XCOMP_BV_OFFSET + 8].copy_from_slice(&0u64.to_le_bytes());
    Some(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_masks_the_header() {
        let mut raw = vec![0u8; 4096];
        raw[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&0x600e7u64.to_le_bytes());
        raw[XCOMP_BV_OFFSET] = 0xff;
        let img = sanitize_image(&raw, 0xe7, 2688).unwrap();
        assert_eq!(img.len(), 2688);
        assert_eq!(u64::from_le_bytes(img[512..520].try_into().unwrap()), 0xe7);
        assert_eq!(img[XCOMP_BV_OFFSET], 0);
        assert!(sanitize_image(&raw[..1000], 0xe7, 2688).is_none());
    }
}
