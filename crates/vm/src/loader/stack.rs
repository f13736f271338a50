//! The initial stack Linux builds for a new program: argc, argv, envp and the auxiliary
//! vector glibc's start-up (and ld.so) reads.

use super::LoaderError;
use crate::layout::{self, PAGE_SIZE};
use crate::memory::GuestMemory;

/// What the auxiliary vector says about the program.
#[derive(Clone, Debug, Default)]
pub struct StackInfo {
    /// AT_PHDR of the main program.
    pub phdr: u64,
    /// AT_PHENT.
    pub phent: u64,
    /// AT_PHNUM.
    pub phnum: u64,
    /// AT_ENTRY: the main program's entry (not the interpreter's).
    pub entry: u64,
    /// AT_BASE: the interpreter's load address (0 without one).
    pub base: u64,
    /// AT_SYSINFO_EHDR: the vDSO, when mapped.
    pub sysinfo_ehdr: Option<u64>,
    /// AT_EXECFN: the program's path.
    pub execfn: String,
    /// The fast path's page (crate::fastpath), under [`kvmjs_abi::fast::AT_FAST_PAGE`].
    pub fast_page: Option<u64>,
}

/// Auxiliary vector keys (linux/auxvec.h).
pub(super) mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
    pub const SYSINFO_EHDR: u64 = 33;
    pub const MINSIGSTKSZ: u64 = 51;
}

/// The CPU-dependent auxv entries, from the host probe.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuAux {
    /// AT_HWCAP.
    pub hwcap: u64,
    /// AT_HWCAP2.
    pub hwcap2: u64,
    /// AT_MINSIGSTKSZ.
    pub minsigstksz: u64,
}

/// Builds the initial stack below `top`; returns the entry stack pointer (at argc).
pub fn build_stack(
    mem: &mut GuestMemory,
    top: u64,
    info: &StackInfo,
    argv: &[String],
    envp: &[String],
    cpu: &CpuAux,
    random: [u8; 16],
) -> Result<u64, LoaderError> {
    let strings: usize =
        argv.iter().chain(envp).map(|s| s.len() + 1).sum::<usize>() + info.execfn.len() + 1;
    if strings > (layout::STACK_SIZE / 4) as usize {
        return Err(LoaderError::StackTooSmall(strings));
    }
    // Linux ends the stack with a zero word above the last string (its end marker), so a
    // string scan that reads a byte past a NUL stays on the stack; glibc's
    // GLIBC_TUNABLES hwcaps parser does exactly that.
    let mut sp = top - 8;
    mem.write_u64(sp, 0)?;
    let mut push_bytes = |mem: &mut GuestMemory, b: &[u8]| -> Result<u64, LoaderError> {
        sp -= b.len() as u64;
        mem.write(sp, b)?;
        Ok(sp)
    };
    let cstr = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    // AT_EXECFN names the file that was executed; when argv[0] says the same, point at
    // its string rather than growing the stack (keeps a static guest's stack layout).
    let own_execfn = argv.first().map(String::as_str) != Some(info.execfn.as_str());
    let execfn = if own_execfn {
        push_bytes(mem, &cstr(&info.execfn))?
    } else {
        0
    };
    let platform = push_bytes(mem, &cstr("x86_64"))?;
    let rand = push_bytes(mem, &random)?;
    let mut argv_ptrs = Vec::with_capacity(argv.len());
    for a in argv {
        argv_ptrs.push(push_bytes(mem, &cstr(a))?);
    }
    let mut env_ptrs = Vec::with_capacity(envp.len());
    for e in envp {
        env_ptrs.push(push_bytes(mem, &cstr(e))?);
    }
    let mut auxv = vec![
        (at::PHDR, info.phdr),
        (at::PHENT, info.phent),
        (at::PHNUM, info.phnum),
        (at::PAGESZ, PAGE_SIZE),
        (at::BASE, info.base),
        (at::FLAGS, 0),
        (at::ENTRY, info.entry),
        (at::UID, 0),
        (at::EUID, 0),
        (at::GID, 0),
        (at::EGID, 0),
        (at::PLATFORM, platform),
        (at::HWCAP, cpu.hwcap),
        (at::CLKTCK, 100),
        (at::SECURE, 0),
        (at::RANDOM, rand),
        (at::HWCAP2, cpu.hwcap2),
        (at::MINSIGSTKSZ, cpu.minsigstksz),
        (at::EXECFN, if own_execfn { execfn } else { argv_ptrs[0] }),
    ];
    if let Some(v) = info.sysinfo_ehdr {
        auxv.push((at::SYSINFO_EHDR, v));
    }
    if let Some(v) = info.fast_page {
        auxv.push((kvmjs_abi::fast::AT_FAST_PAGE, v));
    }
    auxv.push((at::NULL, 0));
    let mut words = Vec::with_capacity(3 + argv_ptrs.len() + env_ptrs.len() + auxv.len() * 2);
    words.push(argv_ptrs.len() as u64);
    words.extend(&argv_ptrs);
    words.push(0);
    words.extend(&env_ptrs);
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    // argc must sit on a 16-byte boundary.
    let vec_bytes = words.len() as u64 * 8;
    let sp = (sp - vec_bytes) & !15;
    for (i, w) in words.iter().enumerate() {
        mem.write_u64(sp + i as u64 * 8, *w)?;
    }
    Ok(sp)
}
