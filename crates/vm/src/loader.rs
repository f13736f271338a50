//! Loads an x86-64 ELF program into a fresh address space the way Linux's binfmt_elf
//! does: a static executable at its own addresses, a static-pie at [`layout::PIE_BASE`],
//! a dynamically linked program at Linux's PIE base with its interpreter (PT_INTERP,
//! read through the configured allowed paths) placed top-down like an mmap; then the
//! main stack, the vDSO and the initial stack contents ([`stack`]).

mod stack;

pub use stack::{build_stack, CpuAux, StackInfo};

use crate::config::VmConfig;
use crate::layout::{self, align_down, align_up, PAGE_SIZE};
use crate::memory::{GuestMemory, MemoryError};
use crate::mm::vma::{Backing, Special, PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::mm::{AddressSpace, MmError, USER_END};
use goblin::elf::{header, program_header, Elf};
use std::sync::Arc;

/// Linux's ELF_ET_DYN_BASE on x86-64 (2/3 of TASK_SIZE, page-aligned): where a
/// dynamically linked PIE goes.
pub const DYN_BASE: u64 = 0x5555_5555_4000;

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
    /// The interpreter cannot be read.
    #[error("the program's interpreter {path:?} cannot be read ({reason}); add its directory to allowed_paths (kvmjs run --allow)")]
    Interpreter {
        /// PT_INTERP.
        path: String,
        /// Why.
        reason: String,
    },
    /// Neither executable nor PIE.
    #[error("ELF type {0} is not an executable; build an executable or PIE")]
    Kind(u16),
    /// A segment does not fit the address space.
    #[error(
        "segment at {vaddr:#x}+{memsz:#x} does not fit the user address space ({lo:#x}..{hi:#x})"
    )]
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
    /// Mapping failed (out of frames: raise address_space).
    #[error("mapping the program failed: {0}; raise address_space")]
    Map(#[from] MmError),
    /// Writing guest memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// One ELF image in guest memory.
#[derive(Clone, Debug, Default)]
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
    /// Load bias (AT_BASE for an interpreter).
    pub bias: u64,
    /// PT_INTERP, if any.
    pub interp: Option<String>,
}

/// Where an ELF goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The main program.
    Main,
    /// The interpreter: anywhere free, top-down.
    Interpreter,
}

/// The PT_INTERP path of `elf_bytes` (its dynamic loader), if it names one; `None` for a
/// static program or bytes that are not an ELF (loading reports those).
pub fn interpreter(elf_bytes: &[u8]) -> Option<String> {
    Elf::parse(elf_bytes).ok()?.interpreter.map(str::to_owned)
}

/// Maps the loadable segments of `elf_bytes` (named `path` in /proc/self/maps).
pub fn load_elf(
    mem: &mut GuestMemory,
    mm: &mut AddressSpace,
    elf_bytes: &[u8],
    path: &str,
    placement: Placement,
    file: Option<&std::fs::File>,
) -> Result<LoadedImage, LoaderError> {
    let elf = Elf::parse(elf_bytes)?;
    if elf.header.e_machine != header::EM_X86_64 || !elf.is_64 {
        return Err(LoaderError::Arch {
            machine: elf.header.e_machine,
            is_64: elf.is_64,
        });
    }
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|ph| ph.p_type == program_header::PT_LOAD && ph.p_memsz > 0)
        .collect();
    let seg_err = |vaddr, memsz| LoaderError::Segment {
        vaddr,
        memsz,
        lo: layout::IMAGE_MIN,
        hi: USER_END,
    };
    let lo = loads.iter().map(|p| p.p_vaddr).min().unwrap_or(0);
    let mut hi = 0u64;
    let mut align = PAGE_SIZE;
    for ph in &loads {
        let end = ph
            .p_vaddr
            .checked_add(ph.p_memsz)
            .filter(|&e| e <= USER_END && ph.p_filesz <= ph.p_memsz)
            .ok_or_else(|| seg_err(ph.p_vaddr, ph.p_memsz))?;
        hi = hi.max(end);
        if ph.p_align.is_power_of_two() && ph.p_align <= layout::HUGE_PAGE {
            align = align.max(ph.p_align);
        }
    }
    let span = align_up(hi, PAGE_SIZE) - align_down(lo, PAGE_SIZE);
    let bias = match (elf.header.e_type, placement) {
        (header::ET_EXEC, Placement::Main) => 0,
        (header::ET_DYN, Placement::Main) if elf.interpreter.is_some() => {
            align_up(DYN_BASE, align) - align_down(lo, PAGE_SIZE)
        }
        (header::ET_DYN, Placement::Main) => layout::PIE_BASE,
        (header::ET_DYN, Placement::Interpreter) => {
            let at = mm
                .find_free(span, align)
                .ok_or(LoaderError::Map(MmError::NoMemory))?;
            at - align_down(lo, PAGE_SIZE)
        }
        (t, _) => return Err(LoaderError::Kind(t)),
    };
    let path: Arc<str> = Arc::from(path);
    let mut mapped_end = 0u64;
    let mut image_slot = None;
    let mut image_end = 0;
    let mut phdr = elf
        .program_headers
        .iter()
        .find(|ph| ph.p_type == program_header::PT_PHDR)
        .map(|ph| ph.p_vaddr + bias);
    for ph in &loads {
        let vaddr = ph.p_vaddr.checked_add(bias);
        let end = vaddr.and_then(|v| v.checked_add(ph.p_memsz));
        let (vaddr, end) = match (vaddr, end) {
            (Some(v), Some(e)) if v >= layout::IMAGE_MIN && e <= USER_END => (v, e),
            _ => return Err(seg_err(ph.p_vaddr, ph.p_memsz)),
        };
        let off = ph.p_offset as usize;
        let data = off
            .checked_add(ph.p_filesz as usize)
            .and_then(|e| elf_bytes.get(off..e))
            .ok_or(LoaderError::Truncated(ph.p_offset))?;
        let prot = PROT_READ
            | if ph.is_write() { PROT_WRITE } else { 0 }
            | if ph.is_executable() { PROT_EXEC } else { 0 };
        let (ps, pe) = (align_down(vaddr, PAGE_SIZE), align_up(end, PAGE_SIZE));
        // A page shared with the previous segment gets both segments' rights.
        if ps < mapped_end {
            let shared_end = mapped_end.min(pe);
            let old = mm.vmas().find(ps).map_or(0, |v| v.prot);
            mm.mprotect(mem, ps, shared_end - ps, u64::from(old | prot), u64::MAX)?;
        }
        let fresh = ps.max(mapped_end);
        let backing = |at: u64| Backing::File {
            path: path.clone(),
            offset: align_down(ph.p_offset, PAGE_SIZE) + (at - ps),
            dev: 0,
            inode: 0,
        };
        // The whole pages of a large read-only segment stay in a read-only file slot
        // (the file's bytes shared by every VM); edge pages are copied into frames.
        let (mut ss, mut se) = (
            align_up(vaddr, PAGE_SIZE).max(fresh),
            align_down(vaddr + ph.p_filesz, PAGE_SIZE),
        );
        let congruent = vaddr % PAGE_SIZE == ph.p_offset % PAGE_SIZE;
        let slot = if prot & PROT_WRITE == 0 && congruent && se >= ss + crate::mm::SLOT_MIN {
            if image_slot.is_none() {
                // The file itself when it holds these bytes (page cache shared with
                // the host), else a copy in a memfd (shared by this program's VMs).
                image_slot = file
                    .filter(|f| {
                        f.metadata()
                            .is_ok_and(|m| m.len() == elf_bytes.len() as u64)
                    })
                    .and_then(|f| mem.file_slot(f))
                    .or_else(|| mem.bytes_slot(elf_bytes));
            }
            image_slot.clone()
        } else {
            None
        };
        if slot.is_none() {
            (ss, se) = (pe, pe);
        }
        if fresh < ss {
            mm.map_special(mem, fresh, ss, prot, Special::None, backing(fresh))?;
        }
        if let Some(slot) = &slot {
            let vma = crate::mm::vma::Vma {
                backing: backing(ss),
                ..crate::mm::vma::Vma::anon(ss, se, prot)
            };
            let off = ph.p_offset + (ss - vaddr);
            mm.map_slot(mem, ss, se, prot, slot, off, vma, u64::MAX)?;
            if se < pe {
                mm.map_special(mem, se, pe, prot, Special::None, backing(se))?;
            }
        }
        mapped_end = mapped_end.max(pe);
        // Copy what is not in the slot (all of it without one).
        let head = (ss.max(vaddr) - vaddr).min(data.len() as u64) as usize;
        mm.write_init(mem, vaddr, &data[..head])?;
        let tail = (se.max(vaddr) - vaddr).min(data.len() as u64) as usize;
        if tail > head {
            mm.write_init(mem, vaddr + tail as u64, &data[tail..])?;
        }
        if phdr.is_none() && ph.p_offset == 0 {
            phdr = Some(vaddr + elf.header.e_phoff);
        }
        image_end = image_end.max(end);
    }
    Ok(LoadedImage {
        entry: elf.header.e_entry.wrapping_add(bias),
        phdr: phdr.unwrap_or(0),
        phnum: u64::from(elf.header.e_phnum),
        phent: u64::from(elf.header.e_phentsize),
        image_end: align_up(image_end, PAGE_SIZE),
        bias,
        interp: elf.interpreter.map(str::to_string),
    })
}

/// Reads the interpreter `path` through the configured allowed paths (symlinks must
/// stay inside their entry).
pub fn read_interpreter(cfg: &VmConfig, path: &str) -> Result<Vec<u8>, LoaderError> {
    let mut f = open_allowed(cfg, path)?;
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut v).map_err(|e| LoaderError::Interpreter {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    Ok(v)
}

/// Opens guest path `path` through the configured allowed paths (symlinks must stay
/// inside them).
fn open_allowed(cfg: &VmConfig, path: &str) -> Result<std::fs::File, LoaderError> {
    let err = |reason: String| LoaderError::Interpreter {
        path: path.to_string(),
        reason,
    };
    let (host, _) = crate::fs::path::allowed_host_path(&cfg.allowed_paths, path)
        .ok_or_else(|| err("it is not under allowed_paths".into()))?;
    let real = host.canonicalize().map_err(|e| err(e.to_string()))?;
    // Symlinks may lead from one allowed entry to another (/lib64/ld-linux-x86-64.so.2
    // -> /usr/lib/...), never outside all of them.
    let inside = cfg.allowed_paths.iter().any(|e| {
        e.real
            .canonicalize()
            .is_ok_and(|root| real == root || (e.prefix && real.starts_with(&root)))
    });
    if !inside {
        return Err(err("a symlink leads outside the allowed paths".into()));
    }
    std::fs::File::open(&real).map_err(|e| err(e.to_string()))
}

/// The program and its interpreter in memory.
#[derive(Clone, Debug)]
pub struct Program {
    /// The main program.
    pub main: LoadedImage,
    /// Where execution starts: the interpreter's entry, or the program's.
    pub start: u64,
    /// AT_BASE: the interpreter's load bias (0 without one).
    pub interp_base: u64,
}

/// Loads the program named `path` and, if it asks for one, its interpreter.
pub fn load_program(
    mem: &mut GuestMemory,
    mm: &mut AddressSpace,
    cfg: &VmConfig,
    elf_bytes: &[u8],
    path: &str,
) -> Result<Program, LoaderError> {
    // The program's own file backs its read-only slot: the one the guest may open, else
    // the host file its bytes came from (without either, each program's slot would be a
    // private copy of the whole binary). load_elf checks the length still matches.
    let own = open_allowed(cfg, path).ok();
    let file = own.as_ref().or(cfg.image_file.as_deref());
    let main = load_elf(mem, mm, elf_bytes, path, Placement::Main, file)?;
    let Some(interp) = main.interp.clone() else {
        let start = main.entry;
        return Ok(Program {
            main,
            start,
            interp_base: 0,
        });
    };
    let bytes = read_interpreter(cfg, &interp)?;
    let ld = load_elf(mem, mm, &bytes, &interp, Placement::Interpreter, None)?;
    Ok(Program {
        main,
        start: ld.entry,
        interp_base: ld.bias,
    })
}

/// Maps the main stack (8 MiB below crate::mm::STACK_TOP, a guard gap below it).
pub fn map_stack(mem: &mut GuestMemory, mm: &mut AddressSpace) -> Result<u64, LoaderError> {
    let top = crate::mm::STACK_TOP;
    mm.map_special(
        mem,
        top - layout::STACK_SIZE,
        top,
        PROT_READ | PROT_WRITE,
        Special::Stack,
        Backing::Anon,
    )?;
    Ok(top)
}

/// Maps the vDSO: its data page ("vvar") read-only immediately below the image, the
/// image read-execute; returns the image's address (AT_SYSINFO_EHDR), or `None` when
/// this build has no vDSO. The data page is filled by the caller (crate::vdso).
pub fn map_vdso(
    mem: &mut GuestMemory,
    mm: &mut AddressSpace,
    image: &[u8],
) -> Result<Option<u64>, LoaderError> {
    if image.is_empty() {
        return Ok(None);
    }
    let len = align_up(image.len() as u64, PAGE_SIZE);
    let at = mm
        .find_free(len + PAGE_SIZE, PAGE_SIZE)
        .ok_or(LoaderError::Map(MmError::NoMemory))?;
    let base = at + PAGE_SIZE;
    mm.map_special(mem, at, base, PROT_READ, Special::Vvar, Backing::Anon)?;
    mm.map_special(
        mem,
        base,
        base + len,
        PROT_READ | PROT_EXEC,
        Special::Vdso,
        Backing::Anon,
    )?;
    mm.write_init(mem, base, image)?;
    Ok(Some(base))
}

#[cfg(test)]
mod tests;
