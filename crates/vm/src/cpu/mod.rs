//! x86-64 CPU state for a kernel-less guest: descriptor tables, page tables, register
//! values, MSRs, CPUID and XCR0. Guest code runs in ring 3 (ring 0 is emulated, ~4000x
//! slower, on PVM hosts); ring 0 only ever runs the exception stubs.

pub mod stubs;

use crate::caps::Caps;
use crate::layout::{self, sel, PAGE_SIZE};
use crate::memory::GuestMemory;
use crate::mm::pagetable::{NX, P, RW, US};
use crate::mm::{AddressSpace, MmError};
use kvm_bindings::{kvm_dtable, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_AM: u64 = 1 << 18;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
const EFER_SCE: u64 = 1;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

// Architectural MSR numbers (Intel SDM vol. 4, AMD APM vol. 2); kvm-bindings has none.
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SFMASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Vectors that push an error code.
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Writes the GDT, TSS, IDT and stubs (guest-physical, identity-mapped) and maps the
/// system pages into `mm`'s tables; returns CR3. The XSAVE image window and the resume
/// trampoline's XRSTOR mask come from the host probe. Everything else of the address
/// space is the program's (crate::mm).
pub fn write_system_area(
    mem: &mut GuestMemory,
    mm: &mut AddressSpace,
    caps: &Caps,
) -> Result<u64, MmError> {
    // GDT: accessed bits preset so the CPU never writes the (read-only) table.
    let gdt: [u64; 8] = [
        0,
        0,
        0x00af_9b00_0000_ffff, // 0x10 kernel code64
        0x00cf_9300_0000_ffff, // 0x18 kernel data
        0x00cf_fb00_0000_ffff, // 0x20 user code32 (SYSRET base; unused)
        0x00cf_f300_0000_ffff, // 0x28 user data
        0x00af_fb00_0000_ffff, // 0x30 user code64
        0,
    ];
    for (i, d) in gdt.iter().enumerate() {
        mem.phys_write_u64(layout::GDT_ADDR + i as u64 * 8, *d)?;
    }
    let (lo, hi) = tss_descriptor(layout::TSS_ADDR, 103);
    mem.phys_write_u64(layout::GDT_ADDR + u64::from(sel::TSS), lo)?;
    mem.phys_write_u64(layout::GDT_ADDR + u64::from(sel::TSS) + 8, hi)?;
    // TSS: rsp0 at offset 4, ist1 at 36, I/O map base at 102 (past the limit: no bitmap).
    let mut tss = [0u8; 104];
    tss[4..12].copy_from_slice(&layout::EXCEPTION_STACK_TOP.to_le_bytes());
    tss[36..44].copy_from_slice(&layout::DF_STACK_TOP.to_le_bytes());
    tss[102..104].copy_from_slice(&104u16.to_le_bytes());
    mem.phys_write(layout::TSS_ADDR, &tss)?;

    for v in 0..32u8 {
        let handler = layout::EXCEPTION_STUBS + u64::from(v) * stubs::EXCEPTION_STUB_SIZE;
        let ist = if matches!(v, 2 | 8 | 18) { 1 } else { 0 };
        let (lo, hi) = interrupt_gate(handler, ist);
        mem.phys_write_u64(layout::IDT_ADDR + u64::from(v) * 16, lo)?;
        mem.phys_write_u64(layout::IDT_ADDR + u64::from(v) * 16 + 8, hi)?;
        mem.phys_write(handler, &stubs::exception_stub(v))?;
    }
    mem.phys_write(
        layout::USER_STUBS + stubs::SYSCALL_ENTRY,
        &stubs::syscall_entry(),
    )?;
    // The entry's return, as the probe found it; the probe VM itself keeps the `ud2`.
    if let Some(f) = caps.flavour {
        mem.phys_write(
            layout::USER_STUBS + stubs::SYSCALL_TAIL,
            f.syscall_return().bytes(),
        )?;
    }
    mem.phys_write(
        layout::USER_STUBS + stubs::RESUME_ENTRY,
        &stubs::resume_entry(caps.xsave.xcr0),
    )?;

    let sys = [
        (layout::GDT_ADDR, P),
        (layout::IDT_ADDR, P),
        (layout::EXCEPTION_STUBS, P),
        (layout::USER_STUBS, P | US),
        (layout::RESUME_SLOTS, P | US | NX),
        (layout::EXCEPTION_STACK_TOP - 3 * PAGE_SIZE, P | RW | NX),
        (layout::EXCEPTION_STACK_TOP - 2 * PAGE_SIZE, P | RW | NX),
        (layout::EXCEPTION_STACK_TOP - PAGE_SIZE, P | RW | NX),
        (layout::DF_STACK_TOP - PAGE_SIZE, P | RW | NX),
    ];
    for (va, flags) in sys {
        mm.map_system(mem, va, va, flags)?;
    }
    for i in 0..caps.xsave_pages {
        let va = layout::XSAVE_IMAGE + i * PAGE_SIZE;
        mm.map_system(mem, va, va, P | US | NX)?;
    }
    mm.map_system(
        mem,
        layout::TRAP_VA,
        layout::trap_gpa(mem.size()),
        P | RW | US | NX,
    )?;
    mm.root(mem)
}

fn tss_descriptor(base: u64, limit: u64) -> (u64, u64) {
    let lo = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x8b << 40) // present, busy 64-bit TSS
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    (lo, base >> 32)
}

fn interrupt_gate(handler: u64, ist: u64) -> (u64, u64) {
    let lo = (handler & 0xffff)
        | (u64::from(sel::KERNEL_CS) << 16)
        | (ist << 32)
        | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
        | (((handler >> 16) & 0xffff) << 48);
    (lo, handler >> 32)
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: (selector & 3) as u8,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// System registers for ring-3 execution in long mode, with FS base `fs_base`.
pub fn user_sregs(base: &kvm_sregs, cr3: u64, fs_base: u64) -> kvm_sregs {
    let mut s = *base;
    s.cs = segment(sel::USER_CS, true);
    let data = segment(sel::USER_DS, false);
    s.ss = data;
    s.ds = data;
    s.es = data;
    s.fs = kvm_segment {
        selector: 0,
        base: fs_base,
        ..data
    };
    s.gs = kvm_segment {
        selector: 0,
        ..data
    };
    s.tr = kvm_segment {
        base: layout::TSS_ADDR,
        limit: 103,
        selector: sel::TSS,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 0,
        s: 0,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    s.ldt = kvm_segment {
        selector: 0,
        type_: 2,
        present: 1,
        unusable: 1,
        ..s.tr
    };
    s.gdt = kvm_dtable {
        base: layout::GDT_ADDR,
        limit: 0x4f,
        padding: [0; 3],
    };
    s.idt = kvm_dtable {
        base: layout::IDT_ADDR,
        limit: 32 * 16 - 1,
        padding: [0; 3],
    };
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
    s.cr3 = cr3;
    s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE;
    s.efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    s
}

/// General registers at the ELF entry point.
pub fn entry_regs(entry: u64, sp: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: sp,
        // IF plus IOPL 3, so upstream's ring-3 `out` API works on VMX/SVM hosts.
        rflags: 0x3202,
        ..Default::default()
    }
}

/// SYSCALL MSRs: LSTAR points at the user-page entry stub.
pub fn syscall_msrs() -> Msrs {
    let e = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    Msrs::from_entries(&[
        e(
            MSR_STAR,
            (u64::from(sel::USER_BASE) << 48) | (u64::from(sel::KERNEL_CS) << 32),
        ),
        e(MSR_LSTAR, layout::USER_STUBS + stubs::SYSCALL_ENTRY),
        e(MSR_CSTAR, 0),
        // RFLAGS is left as it was: the entry runs no code that cares.
        e(MSR_SFMASK, 0),
        e(MSR_KERNEL_GS_BASE, 0),
    ])
    .expect("five MSR entries fit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_encode_like_the_sdm_says() {
        let (lo, hi) = tss_descriptor(0x1080, 103);
        assert_eq!(lo & 0xffff, 103);
        assert_eq!((lo >> 16) & 0xff_ffff, 0x1080);
        assert_eq!((lo >> 40) & 0xff, 0x8b);
        assert_eq!(hi, 0);
        let (lo, _) = interrupt_gate(0x3040, 1);
        assert_eq!(lo & 0xffff, 0x3040);
        assert_eq!((lo >> 16) & 0xffff, 0x10);
        assert_eq!((lo >> 32) & 7, 1);
    }

    #[test]
    fn error_code_vectors() {
        assert!(has_error_code(14) && has_error_code(13) && has_error_code(8));
        assert!(!has_error_code(6) && !has_error_code(0) && !has_error_code(3));
    }
}
