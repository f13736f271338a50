//! The guest's memory map. Guest-virtual is not guest-physical (crate::mm): the
//! guest-physical pool (memslot 0, `address_space` bytes) holds the system pages below,
//! identity-mapped, and frames for everything the program maps, wherever in the lower
//! canonical half it maps it.
//!
//! ```text
//! 0x0000_0000  null page (not present: null dereferences fault)
//! 0x0000_1000  GDT (+ TSS)                      supervisor, read-only
//! 0x0000_2000  IDT                              supervisor, read-only
//! 0x0000_3000  exception stubs (ring 0)         supervisor, executable
//! 0x0000_4000  syscall entry + resume stub      user, read-only, executable
//! 0x0000_5000  resume slots (rip, rax, rdx)     user, read-only
//! 0x0000_6000  (unused)
//! 0x0000_7000  exception stack (rsp0)           supervisor, read-write
//! 0x0000_A000  #DF stack (IST1)                 supervisor, read-write
//! 0x0000_B000  trap page -> unbacked GPA        user, write: every write exits (MMIO)
//! 0x0000_C000  XSAVE image of the snapshot      user, read-only; as many pages as the
//!              guest's XCR0 needs (caps::Caps::xsave_pages), at most 4
//! 0x0001_0000  page-table frames first, then program frames (physical only)
//! ```
//! Virtual addresses from 2 MiB up are the program's: its image (a static ELF at its
//! own address, a static-pie at 4 MiB, a dynamic PIE at Linux's 0x5555_5555_4000
//! region), the brk heap after it, mmap top-down below the stack (crate::mm::MMAP_TOP),
//! the main stack below crate::mm::STACK_TOP.

/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (PD-level) page.
pub const HUGE_PAGE: u64 = 2 << 20;

/// Global descriptor table.
pub const GDT_ADDR: u64 = 0x1000;
/// Task state segment (inside the GDT page).
pub const TSS_ADDR: u64 = 0x1080;
/// Interrupt descriptor table.
pub const IDT_ADDR: u64 = 0x2000;
/// Ring-0 exception stubs, 16 bytes per vector.
pub const EXCEPTION_STUBS: u64 = 0x3000;
/// User page holding the syscall entry (LSTAR) and the resume trampoline.
pub const USER_STUBS: u64 = 0x4000;
/// Read-only data for the resume trampoline.
pub const RESUME_SLOTS: u64 = 0x5000;
/// The snapshot's XSAVE image, restored in-guest by the resume trampoline. Its size
/// depends on the CPU (2.4 KiB with AVX-512 on Zen 4, 2.6 KiB on Intel; 11 KiB if AMX
/// were enabled), so it gets a window up to the page tables and the probe checks the fit.
pub const XSAVE_IMAGE: u64 = 0xC000;
/// End of the XSAVE image's window.
pub const XSAVE_WINDOW_END: u64 = PAGE_TABLES;
/// Top of the ring-0 stack used for exception frames (TSS.rsp0).
pub const EXCEPTION_STACK_TOP: u64 = 0xA000;
/// Top of the double-fault stack (TSS.ist1).
pub const DF_STACK_TOP: u64 = 0xB000;
/// Guest-virtual address of the trap page.
pub const TRAP_VA: u64 = 0xB000;
/// Offset in the trap page written by the syscall entry (data = syscall number).
pub const TRAP_SYSCALL: u64 = 0x0;
/// Offset in the trap page written by exception stubs (data = vector).
pub const TRAP_EXCEPTION: u64 = 0x8;
/// Offset written by the start-up probe.
pub const TRAP_PROBE: u64 = 0x10;
/// Page-table frames are allocated from here first.
pub const PAGE_TABLES: u64 = 0x1_0000;
/// End of the area page-table frames are taken from first.
pub const PAGE_TABLES_END: u64 = 0x20_0000;
/// Where a static-pie (ET_DYN without an interpreter) image is loaded.
pub const PIE_BASE: u64 = 0x40_0000;
/// Lowest address an ELF segment may use.
pub const IMAGE_MIN: u64 = 0x20_0000;
/// Size of the main stack.
pub const STACK_SIZE: u64 = 8 << 20;
/// Smallest address space the loader accepts.
pub const MIN_ADDRESS_SPACE: u64 = 16 << 20;
/// Largest guest-physical pool.
pub const MAX_ADDRESS_SPACE: u64 = 128 << 30;

/// GDT selectors (Linux's layout, so SYSCALL/SYSRET work with the usual STAR value).
pub mod sel {
    /// Ring-0 64-bit code.
    pub const KERNEL_CS: u16 = 0x10;
    /// Ring-0 data.
    pub const KERNEL_DS: u16 = 0x18;
    /// Base for SYSRET (STAR[63:48]); SYSRET uses base+8 for SS and base+16 for CS.
    pub const USER_BASE: u16 = 0x23;
    /// Ring-3 data.
    pub const USER_DS: u16 = 0x2b;
    /// Ring-3 64-bit code.
    pub const USER_CS: u16 = 0x33;
    /// Task state segment.
    pub const TSS: u16 = 0x40;
}

// The TSS shares the GDT's page, and the GDT (0x50 bytes) ends before it.
const _: () = assert!(TSS_ADDR + 104 <= GDT_ADDR + PAGE_SIZE && GDT_ADDR + 0x50 <= TSS_ADDR);

/// Rounds `v` up to a multiple of `align` (a power of two).
pub const fn align_up(v: u64, align: u64) -> u64 {
    (v + align - 1) & !(align - 1)
}

/// Rounds `v` down to a multiple of `align` (a power of two).
pub const fn align_down(v: u64, align: u64) -> u64 {
    v & !(align - 1)
}

/// Guest-physical address of the trap page: just past main memory, where no memslot is,
/// so every write to it leaves the guest as KVM_EXIT_MMIO.
pub fn trap_gpa(address_space: u64) -> u64 {
    align_up(address_space, HUGE_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_pages_do_not_overlap() {
        let pages = [
            GDT_ADDR,
            IDT_ADDR,
            EXCEPTION_STUBS,
            USER_STUBS,
            RESUME_SLOTS,
            XSAVE_IMAGE,
            EXCEPTION_STACK_TOP - PAGE_SIZE,
            DF_STACK_TOP - PAGE_SIZE,
            TRAP_VA,
        ];
        for (i, a) in pages.iter().enumerate() {
            assert_eq!(a % PAGE_SIZE, 0);
            assert!(*a < PAGE_TABLES);
            for b in &pages[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn trap_gpa_is_outside_memory() {
        assert_eq!(trap_gpa(64 << 20), 64 << 20);
        assert_eq!(trap_gpa((64 << 20) + 4096), (66 << 20));
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
    }
}
