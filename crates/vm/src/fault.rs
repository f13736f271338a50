//! Turns a guest CPU exception into a message a developer can act on.

use crate::cpu::has_error_code;
use crate::layout::{self, PAGE_SIZE};
use crate::memory::GuestMemory;

/// The frame the CPU pushed on the exception stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct Frame {
    /// Error code (0 for vectors without one).
    pub error: u64,
    /// Faulting RIP.
    pub rip: u64,
    /// Code segment (RPL = privilege level at the fault).
    pub cs: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
}

/// Reads the exception frame for `vector`.
pub fn read_frame(mem: &GuestMemory, vector: u8) -> Option<Frame> {
    let top = if matches!(vector, 2 | 8 | 18) {
        layout::DF_STACK_TOP
    } else {
        layout::EXCEPTION_STACK_TOP
    };
    let (base, error) = if has_error_code(vector) {
        (top - 48, mem.phys_read_u64(top - 48).ok()?)
    } else {
        (top - 40, 0)
    };
    let off = if has_error_code(vector) { 8 } else { 0 };
    Some(Frame {
        error,
        rip: mem.phys_read_u64(base + off).ok()?,
        cs: mem.phys_read_u64(base + off + 8).ok()?,
        rflags: mem.phys_read_u64(base + off + 16).ok()?,
        rsp: mem.phys_read_u64(base + off + 24).ok()?,
    })
}

fn vector_name(v: u8) -> &'static str {
    match v {
        0 => "divide error",
        1 => "debug trap",
        2 => "NMI",
        3 => "breakpoint (int3)",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode (ud2 or an instruction this CPU lacks)",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point exception",
        _ => "CPU exception",
    }
}

/// Describes exception `vector` with its frame and (for #PF) CR2.
pub fn describe(vector: u8, frame: &Frame, cr2: u64) -> String {
    let ring = if frame.cs & 3 == 3 {
        ""
    } else {
        " in the kvmjs entry code"
    };
    if vector != 14 {
        return format!(
            "guest {} at rip {:#x}{ring}",
            vector_name(vector),
            frame.rip
        );
    }
    let guard = crate::mm::STACK_TOP - layout::STACK_SIZE - PAGE_SIZE;
    let (present, write, fetch) = (
        frame.error & 1 != 0,
        frame.error & 2 != 0,
        frame.error & 0x10 != 0,
    );
    let what = if cr2 < PAGE_SIZE {
        format!("null pointer dereference (address {cr2:#x})")
    } else if cr2 >= guard && cr2 < guard + PAGE_SIZE {
        "stack overflow (hit the guard page below the 8 MiB stack)".to_string()
    } else if fetch && present {
        format!("jump to non-executable memory at {cr2:#x}")
    } else if write && present {
        format!("write to read-only memory at {cr2:#x} (program code or constants)")
    } else if cr2 >= crate::mm::USER_END {
        format!("access to {cr2:#x}, outside the user address space")
    } else {
        format!("access to unmapped memory at {cr2:#x}")
    };
    format!("guest page fault: {what} at rip {:#x}{ring}", frame.rip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(error: u64) -> Frame {
        Frame {
            error,
            rip: 0x401000,
            cs: 0x33,
            ..Default::default()
        }
    }

    #[test]
    fn page_faults_are_classified() {
        assert!(describe(14, &f(4), 0).contains("null pointer"));
        assert!(
            describe(14, &f(6), crate::mm::STACK_TOP - layout::STACK_SIZE - 4088)
                .contains("stack overflow")
        );
        assert!(describe(14, &f(7), 0x401000).contains("read-only"));
        assert!(describe(14, &f(0x15), 0x600000).contains("non-executable"));
        assert!(describe(14, &f(4), 1 << 47).contains("outside"));
        assert!(describe(6, &f(0), 0).contains("invalid opcode"));
        let k = Frame { cs: 0x10, ..f(0) };
        assert!(describe(13, &k, 0).contains("entry code"));
    }

    #[test]
    fn frame_is_read_below_the_stack_top() {
        let mut mem = GuestMemory::new(16 << 20, false).unwrap();
        let top = layout::EXCEPTION_STACK_TOP;
        for (i, v) in [0xe, 0x401234, 0x33, 0x202, 0x7fff00].iter().enumerate() {
            mem.write_u64(top - 48 + i as u64 * 8, *v).unwrap();
        }
        let fr = read_frame(&mem, 14).unwrap();
        assert_eq!(
            (fr.error, fr.rip, fr.cs, fr.rsp),
            (0xe, 0x401234, 0x33, 0x7fff00)
        );
    }
}
