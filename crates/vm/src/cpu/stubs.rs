//! Hand-encoded guest machine code. Each stub is a few instructions, so an assembler
//! dependency would cost more than it saves; every byte is annotated and the encodings
//! are pinned by the tests below.

use crate::layout::{RESUME_SLOTS, TRAP_EXCEPTION, TRAP_SYSCALL, TRAP_VA, XSAVE_IMAGE};

/// Offset of the syscall entry (LSTAR) in the user stub page.
pub const SYSCALL_ENTRY: u64 = 0x0;
/// Offset of the instruction after the trap write in the syscall entry.
pub const SYSCALL_TAIL: u64 = 0x7;
/// Offset of the resume trampoline in the user stub page.
pub const RESUME_ENTRY: u64 = 0x10;
/// Bytes per exception stub.
pub const EXCEPTION_STUB_SIZE: u64 = 16;

/// Resume slot: the continuation RIP.
pub const SLOT_RIP: u64 = RESUME_SLOTS;
/// Resume slot: RAX at the continuation.
pub const SLOT_RAX: u64 = RESUME_SLOTS + 8;
/// Resume slot: RDX at the continuation.
pub const SLOT_RDX: u64 = RESUME_SLOTS + 16;

fn disp32(v: u64) -> [u8; 4] {
    u32::try_from(v)
        .expect("stub operand above 4 GiB")
        .to_le_bytes()
}

/// How the syscall entry returns to the caller. Detected by the host probe's VM
/// (`caps::Flavour`), because a ring-3 SYSCALL stays in ring 3 under PVM but enters ring 0
/// under VMX/SVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallReturn {
    /// The entry ran in ring 3 (PVM): `jmp *%rcx`.
    JumpRcx,
    /// The entry ran in ring 0 (VMX/SVM): `sysretq` (RIP=RCX, RFLAGS=R11, back to ring 3).
    Sysret,
}

impl SyscallReturn {
    /// Machine code of the tail.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            SyscallReturn::JumpRcx => &[0xff, 0xe1],
            SyscallReturn::Sysret => &[0x48, 0x0f, 0x07],
        }
    }
}

/// The syscall entry: report the number through the trap page, then return.
/// The tail is `ud2` until `cpu::write_system_area` writes the return the host probe
/// detected, so nothing in the probe VM can run past its trap.
pub fn syscall_entry() -> Vec<u8> {
    let mut c = vec![0x89, 0x04, 0x25]; // mov [disp32], eax
    c.extend(disp32(TRAP_VA + TRAP_SYSCALL));
    debug_assert_eq!(c.len() as u64, SYSCALL_TAIL);
    c.extend([0x0f, 0x0b, 0x90]); // ud2; nop (room for sysretq)
    c
}

/// The resume trampoline: after a reset the vCPU enters here with every GPR of the
/// snapshot except RAX/RDX/RIP, restores the snapshot's FPU/SSE/AVX state in-guest (a
/// ring-3 XRSTOR is native and saves a ~5 µs SET_XSAVE ioctl), then continues.
///
/// The XRSTOR mask is the guest's XCR0 (`xcr0`), never -1: under PVM the effective XCR0 is
/// the host's, and with -1 an AMX host's XRSTOR touched 8 KiB of tile data past the image.
pub fn resume_entry(xcr0: u64) -> Vec<u8> {
    let mut c = vec![0xb8]; // mov eax, imm32 (mask bits 0-31)
    c.extend((xcr0 as u32).to_le_bytes());
    c.push(0xba); // mov edx, imm32 (mask bits 32-63)
    c.extend(((xcr0 >> 32) as u32).to_le_bytes());
    c.extend([0x48, 0x0f, 0xae, 0x2c, 0x25]); // xrstor64 [disp32]
    c.extend(disp32(XSAVE_IMAGE));
    c.extend([0x48, 0x8b, 0x04, 0x25]); // mov rax, [disp32]
    c.extend(disp32(SLOT_RAX));
    c.extend([0x48, 0x8b, 0x14, 0x25]); // mov rdx, [disp32]
    c.extend(disp32(SLOT_RDX));
    c.extend([0xff, 0x24, 0x25]); // jmp [disp32]
    c.extend(disp32(SLOT_RIP));
    c
}

/// Ring-0 stub for exception `vector`: report the vector, then halt for good (the host
/// never resumes a faulted context; it resets the VM).
pub fn exception_stub(vector: u8) -> [u8; EXCEPTION_STUB_SIZE as usize] {
    let mut s = [0x90u8; EXCEPTION_STUB_SIZE as usize];
    s[..3].copy_from_slice(&[0xc7, 0x04, 0x25]); // mov dword [disp32], imm32
    s[3..7].copy_from_slice(&disp32(TRAP_VA + TRAP_EXCEPTION));
    s[7..11].copy_from_slice(&u32::from(vector).to_le_bytes());
    s[11] = 0xf4; // hlt
    s[12..14].copy_from_slice(&[0xeb, 0xfd]); // jmp back to hlt
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_entry_encoding() {
        let c = syscall_entry();
        assert_eq!(&c[..7], &[0x89, 0x04, 0x25, 0x00, 0xb0, 0x00, 0x00]);
        assert_eq!(&c[7..9], &[0x0f, 0x0b]);
        assert!(c.len() as u64 <= RESUME_ENTRY);
        assert!(SyscallReturn::Sysret.bytes().len() <= c.len() - SYSCALL_TAIL as usize);
    }

    #[test]
    fn resume_entry_encoding() {
        let c = resume_entry(0x2_0000_00e7);
        assert_eq!(c.len(), 5 + 5 + 9 + 8 + 8 + 7);
        assert_eq!(&c[..10], &[0xb8, 0xe7, 0, 0, 0, 0xba, 2, 0, 0, 0]);
        assert_eq!(
            &c[10..19],
            &[0x48, 0x0f, 0xae, 0x2c, 0x25, 0x00, 0xc0, 0x00, 0x00]
        );
        assert_eq!(&c[35..42], &[0xff, 0x24, 0x25, 0x00, 0x50, 0x00, 0x00]);
    }

    #[test]
    fn exception_stub_encoding() {
        let s = exception_stub(14);
        assert_eq!(&s[..11], &[0xc7, 0x04, 0x25, 0x08, 0xb0, 0, 0, 14, 0, 0, 0]);
        assert_eq!(s[11], 0xf4);
    }
}
