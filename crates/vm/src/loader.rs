//! Loads a static (ET_EXEC) or static-pie (ET_DYN) x86-64 ELF and builds the Linux
//! initial stack: argc, argv, envp and the auxiliary vector glibc's start-up reads.

use crate::cpu::Region;
use crate::layout::{self, align_up, PAGE_SIZE};
use crate::memory::{GuestMemory, MemoryError};
use goblin::elf::{header, program_header, Elf};

/// Errors while loading a guest program.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Not parseable as ELF.
    #[error("not an ELF file: {0}")]
    Parse(#[from] goblin::error::Error),
    /// Wrong machine or class.
    #[error("the guest must be a 64-bit x86-64 ELF (found machine {machine}, 64-bit {is_64})")]
    Arch {
        /// e_machine.
        machine: u16,
        /// ELF class.
        is_64: bool,
    },
    /// Has an interpreter.
    #[error("the guest is dynamically linked (it asks for {0}); link it statically, e.g. RUSTFLAGS=\"-C target-feature=+crt-static\"")]
    Dynamic(String),
    /// Neither executable nor PIE.
    #[error("ELF type {0} is not an executable; build a static or static-pie binary")]
    Kind(u16),
    /// A segment does not fit the address space.
    #[error("segment at {vaddr:#x}+{memsz:#x} does not fit guest memory ({lo:#x}..{hi:#x}); raise address_space")]
    Segment {
        /// Load address.
        vaddr: u64,
        /// Size in memory.
        memsz: u64,
        /// Lowest allowed address.
        lo: u64,
        /// Highest allowed address.
        hi: u64,
    },
    /// The file is shorter than a segment says.
    #[error("segment data at file offset {0:#x} runs past the end of the file")]
    Truncated(u64),
    /// Arguments and environment do not fit the stack.
    #[error("arguments and environment ({0} bytes) are too large for the stack")]
    StackTooSmall(usize),
    /// Writing guest memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// A program in guest memory.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    /// Entry point.
    pub entry: u64,
    /// Guest address of the program headers (AT_PHDR).
    pub phdr: u64,
    /// Number of program headers.
    pub phnum: u64,
    /// Size of one program header.
    pub phent: u64,
    /// End of the highest segment, page-aligned: the initial program break.
    pub image_end: u64,
    /// Segment permissions for the page tables.
    pub regions: Vec<Region>,
}

/// Copies the loadable segments of `elf_bytes` into guest memory.
pub fn load_elf(
    mem: &mut GuestMemory,
    elf_bytes: &[u8],
    address_space: u64,
) -> Result<LoadedImage, LoaderError> {
    let elf = Elf::parse(elf_bytes)?;
    if elf.header.e_machine != header::EM_X86_64 || !elf.is_64 {
        return Err(LoaderError::Arch {
            machine: elf.header.e_machine,
            is_64: elf.is_64,
        });
    }
    if let Some(interp) = elf.interpreter {
        return Err(LoaderError::Dynamic(interp.to_string()));
    }
    let bias = match elf.header.e_type {
        header::ET_EXEC => 0,
        header::ET_DYN => layout::PIE_BASE,
        t => return Err(LoaderError::Kind(t)),
    };
    // Leave room above the image for a heap, the mmap area and the stack.
    let hi = layout::stack_guard(address_space) / 2;
    let mut regions = Vec::new();
    let mut image_end = 0;
    let mut phdr = None;
    for ph in &elf.program_headers {
        if ph.p_type == program_header::PT_PHDR {
            phdr = Some(ph.p_vaddr + bias);
        }
        if ph.p_type != program_header::PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let vaddr = ph.p_vaddr.checked_add(bias);
        let end = vaddr.and_then(|v| v.checked_add(ph.p_memsz));
        let (vaddr, end) = match (vaddr, end) {
            (Some(v), Some(e))
                if v >= layout::IMAGE_MIN && e <= hi && ph.p_filesz <= ph.p_memsz =>
            {
                (v, e)
            }
            _ => {
                return Err(LoaderError::Segment {
                    vaddr: ph.p_vaddr,
                    memsz: ph.p_memsz,
                    lo: layout::IMAGE_MIN,
                    hi,
                })
            }
        };
        let off = ph.p_offset as usize;
        let data = off
            .checked_add(ph.p_filesz as usize)
            .and_then(|e| elf_bytes.get(off..e))
            .ok_or(LoaderError::Truncated(ph.p_offset))?;
        mem.write(vaddr, data)?;
        if phdr.is_none() && ph.p_offset == 0 {
            phdr = Some(vaddr + elf.header.e_phoff);
        }
        regions.push(Region {
            start: vaddr,
            end,
            write: ph.is_write(),
            exec: ph.is_executable(),
        });
        image_end = image_end.max(end);
    }
    Ok(LoadedImage {
        entry: elf.header.e_entry + bias,
        phdr: phdr.unwrap_or(0),
        phnum: u64::from(elf.header.e_phnum),
        phent: u64::from(elf.header.e_phentsize),
        image_end: align_up(image_end, PAGE_SIZE),
        regions,
    })
}

/// Auxiliary vector keys (linux/auxvec.h).
mod at {
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
    image: &LoadedImage,
    argv: &[String],
    envp: &[String],
    cpu: &CpuAux,
    random: [u8; 16],
) -> Result<u64, LoaderError> {
    let strings: usize = argv.iter().chain(envp).map(|s| s.len() + 1).sum();
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
    let execfn = argv_ptrs.first().copied().unwrap_or(0);
    let auxv = [
        (at::PHDR, image.phdr),
        (at::PHENT, image.phent),
        (at::PHNUM, image.phnum),
        (at::PAGESZ, PAGE_SIZE),
        (at::BASE, 0),
        (at::FLAGS, 0),
        (at::ENTRY, image.entry),
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
        (at::EXECFN, execfn),
        (at::NULL, 0),
    ];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_foreign_elves() {
        let mut mem = GuestMemory::new(32 << 20, false).unwrap();
        assert!(matches!(
            load_elf(&mut mem, b"not an elf", 32 << 20),
            Err(LoaderError::Parse(_))
        ));
        // The test binary itself is a static-pie x86-64 ELF: it must load.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let mut big = GuestMemory::new(1 << 30, false).unwrap();
        let img = load_elf(&mut big, &me, 1 << 30).unwrap();
        assert!(img.entry >= layout::PIE_BASE && img.image_end > img.entry);
        assert!(img.regions.iter().any(|r| r.exec && !r.write));
        let mut bad = me.clone();
        bad[18] = 0x28; // e_machine = ARM
        assert!(matches!(
            load_elf(&mut big, &bad, 1 << 30),
            Err(LoaderError::Arch { .. })
        ));
    }

    #[test]
    fn stack_layout_is_linux_abi() {
        let mut mem = GuestMemory::new(32 << 20, false).unwrap();
        let img = LoadedImage {
            entry: 0x401000,
            phdr: 0x400040,
            phnum: 4,
            phent: 56,
            image_end: 0x500000,
            regions: vec![],
        };
        let top = 32 << 20;
        let argv = vec!["prog".to_string(), "arg1".to_string()];
        let env = vec!["A=b".to_string()];
        let sp = build_stack(
            &mut mem,
            top,
            &img,
            &argv,
            &env,
            &CpuAux {
                hwcap: 0x178b_fbff,
                hwcap2: 0,
                minsigstksz: 3376,
            },
            [7; 16],
        )
        .unwrap();
        assert_eq!(sp % 16, 0);
        // Linux's end marker: a zero word above every string.
        assert_eq!(mem.read_u64(top - 8).unwrap(), 0);
        let auxv = |key: u64| {
            (0..40)
                .map(|i| sp + 48 + i * 16)
                .find(|a| mem.read_u64(*a).unwrap() == key)
                .map(|a| mem.read_u64(a + 8).unwrap())
        };
        assert_eq!(auxv(at::HWCAP), Some(0x178b_fbff));
        assert_eq!(auxv(at::HWCAP2), Some(0));
        assert_eq!(auxv(at::MINSIGSTKSZ), Some(3376));
        assert_eq!(mem.read_u64(sp).unwrap(), 2);
        let a1 = mem.read_u64(sp + 16).unwrap();
        assert_eq!(mem.read_cstr(a1, 64).unwrap(), b"arg1");
        assert_eq!(mem.read_u64(sp + 24).unwrap(), 0);
        let e0 = mem.read_u64(sp + 32).unwrap();
        assert_eq!(mem.read_cstr(e0, 64).unwrap(), b"A=b");
        assert_eq!(mem.read_u64(sp + 40).unwrap(), 0);
        assert_eq!(mem.read_u64(sp + 48).unwrap(), at::PHDR);
        assert_eq!(mem.read_u64(sp + 56).unwrap(), 0x400040);
    }
}
