//! The guest's address space, shaped like a small kernel's memory manager: VMAs
//! ([`vma`]), page tables the host keeps in guest-physical frames ([`pagetable`]) and a
//! frame allocator over the pool ([`frames`]).
//!
//! Guest-virtual is not guest-physical: the pool (memslot 0) only holds what is
//! committed, so reserving 16 GiB of PROT_NONE address space costs nothing, and the
//! host pays for the pages the guest touches (the pool is MAP_NORESERVE). The low 2 MiB
//! (system pages) stays identity-mapped. Committed anonymous ranges get their frames
//! eagerly at mmap/mprotect time: an untouched frame costs no host memory, and eager
//! frames mean no demand-paging exits.
//!
//! # Shadow paging and stale translations
//!
//! KVM here shadows the guest's tables (PVM, tdp_mmu=N) and does not see host writes to
//! them. A new leaf in a non-present slot is safe: the guest faults into KVM, which walks
//! the tables again. Removing, downgrading or retargeting a present leaf is not: KVM's
//! shadow entry would survive. So every frame whose present mapping goes away or loses
//! rights is noted ([`GuestMemory::note_retired`]) and its KVM mappings dropped through
//! the host MMU notifier before the guest runs again ([`GuestMemory::sync_mappings`]);
//! every frame whose mapping changed during a request is dropped again at the reset,
//! which puts the tables back ([`GuestMemory::reset_mappings`]). Upgrades need nothing:
//! the guest's access faults into KVM, which re-walks the tables.
//!
//! On VMX/SVM with EPT/NPT the CPU walks the guest tables itself and may cache
//! translations (TLB, paging-structure caches) tagged by the guest's VPID/ASID. The same
//! notifier call makes KVM zap the EPT/NPT entries of the frames and flush the guest's
//! TLB (INVEPT single-context / ASID flush invalidates combined linear mappings for the
//! whole guest), and a stale translation to a frame can only exist if the guest reached
//! the frame, i.e. if KVM has an entry to zap, so the flush always happens when needed.

pub mod frames;
mod maps;
pub mod pagetable;
mod resize;
pub mod shared;
pub mod vma;

use crate::layout::{self, align_up, PAGE_SIZE};
use crate::memory::{FileSlot, GuestMemory};
use frames::Frames;
use pagetable::{PageTable, PagingError, A, ADDR_MASK, NX, P, RW, SW_FOREIGN, SW_FRAME, US};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use vma::{Backing, Special, Vma, VmaTree, PROT_EXEC, PROT_READ, PROT_WRITE};

pub use maps::MapsStats;

/// Errors of memory-management calls; each maps to the errno Linux gives.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MmError {
    /// Bad alignment, length, flags or range.
    #[error("invalid address, length or flags")]
    Invalid,
    /// Out of address space, frames or the memory limit.
    #[error("out of guest memory (max_memory or the address_space pool)")]
    NoMemory,
    /// MAP_FIXED_NOREPLACE over an existing mapping.
    #[error("the range is already mapped")]
    Exists,
    /// The range is not (entirely) mapped as the call requires.
    #[error("the range is not mapped")]
    Fault,
    /// The kind of mapping is not supported (writable MAP_SHARED of a read-only host
    /// file, or an object with no bytes to map).
    #[error("this mapping type is not supported")]
    NoDevice,
    /// Below the lowest address programs may map.
    #[error("the address is reserved for kvmjs")]
    Perm,
    /// The file offset plus the length passes the largest file offset.
    #[error("the file offset plus the length is too large; map a smaller part of the file")]
    Overflow,
    /// The open file's access mode does not allow the protection asked for.
    #[error(
        "the file is not open for the access asked for; open it read-write to map it writable"
    )]
    Access,
    /// A file read failed.
    #[error("reading the mapped file failed (errno {0})")]
    Io(i32),
}

impl MmError {
    /// The errno for the guest.
    pub fn errno(&self) -> i32 {
        match self {
            MmError::Invalid => libc::EINVAL,
            MmError::NoMemory => libc::ENOMEM,
            MmError::Exists => libc::EEXIST,
            MmError::Fault => libc::EFAULT,
            MmError::NoDevice => libc::ENODEV,
            MmError::Perm => libc::EPERM,
            MmError::Overflow => libc::EOVERFLOW,
            MmError::Access => libc::EACCES,
            MmError::Io(e) => *e,
        }
    }
}

impl From<PagingError> for MmError {
    fn from(_: PagingError) -> Self {
        MmError::NoMemory
    }
}

impl From<crate::memory::MemoryError> for MmError {
    fn from(_: crate::memory::MemoryError) -> Self {
        MmError::Fault
    }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, MmError>;

/// mmap flags (asm-generic/mman-common.h, x86).
pub mod flags {
    /// MAP_SHARED.
    pub const SHARED: u64 = 0x01;
    /// MAP_PRIVATE.
    pub const PRIVATE: u64 = 0x02;
    /// MAP_SHARED_VALIDATE.
    pub const SHARED_VALIDATE: u64 = 0x03;
    /// MAP_FIXED.
    pub const FIXED: u64 = 0x10;
    /// MAP_ANONYMOUS.
    pub const ANONYMOUS: u64 = 0x20;
    /// MAP_FIXED_NOREPLACE.
    pub const FIXED_NOREPLACE: u64 = 0x10_0000;
    /// MREMAP_MAYMOVE.
    pub const MREMAP_MAYMOVE: u64 = 1;
    /// MREMAP_FIXED.
    pub const MREMAP_FIXED: u64 = 2;
}

/// Lowest address a guest mapping may use: below it are kvmjs's system pages.
pub const USER_MIN: u64 = layout::IMAGE_MIN;
/// End of the lower canonical half that user mappings may use (Linux's TASK_SIZE).
pub const USER_END: u64 = 0x7fff_ffff_f000;
/// Top of the main stack (fixed: kvmjs is deterministic, no ASLR).
pub const STACK_TOP: u64 = 0x7fff_fff0_0000;
/// Top of the area mmap fills top-down (Linux leaves a gap of at least 128 MiB below
/// the stack).
pub const MMAP_TOP: u64 = STACK_TOP - layout::STACK_SIZE - (128 << 20);

/// Read-only file mappings at least this large use a file slot instead of frames.
pub const SLOT_MIN: u64 = 1 << 20;

/// A file to copy into a mapping.
pub struct FileSource<'a> {
    /// Where its bytes come from.
    pub file: FileBytes<'a>,
    /// Its path as the guest named it.
    pub path: Arc<str>,
}

/// The bytes behind a file mapping.
#[derive(Clone, Copy)]
pub enum FileBytes<'a> {
    /// A read-only host file (allowed paths): writable shared mappings are refused, large
    /// read-only ones may use a file slot.
    Host(&'a std::fs::File),
    /// A scratch file ([`crate::fs::scratch`]): always copied into frames. Shared mappings
    /// are allowed; the caller keeps them coherent with the file ([`shared`]).
    Scratch(&'a dyn crate::fs::File),
}

impl FileBytes<'_> {
    /// Reads at `off`; a short count only at the end of the file.
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        match self {
            FileBytes::Host(f) => loop {
                match f.read_at(buf, off) {
                    Ok(k) => return Ok(k),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(MmError::Io(e.raw_os_error().unwrap_or(libc::EIO))),
                }
            },
            FileBytes::Scratch(f) => f.read(buf, off, true).map_err(MmError::Io),
        }
    }

    /// Device and inode numbers, for /proc/self/maps.
    fn ids(&self) -> (u64, u64) {
        match self {
            FileBytes::Host(f) => file_ids(f),
            FileBytes::Scratch(f) => f.stat().map(|s| (s.dev, s.ino)).unwrap_or((0, 0)),
        }
    }
}

/// The guest's address space. Plain data: cloned into the snapshot and back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddressSpace {
    vmas: VmaTree,
    frames: Frames,
    pt: Option<PageTable>,
    /// Program break: start and current value.
    brk_start: u64,
    brk: u64,
    /// User frames in use (pages with a frame, accessible or not).
    committed: u64,
}

/// Page flags for `prot`.
fn leaf(frame: u64, prot: u32) -> u64 {
    if prot & (PROT_READ | PROT_WRITE | PROT_EXEC) == 0 {
        return frame | SW_FRAME;
    }
    let mut e = frame | P | US | A;
    if prot & PROT_WRITE != 0 {
        e |= RW;
    }
    if prot & PROT_EXEC == 0 {
        e |= NX;
    }
    e
}

/// Whether leaf `e` maps a page of a read-only file slot (above the pool).
fn is_slot_page(mem: &GuestMemory, e: u64) -> bool {
    e & (P | SW_FRAME) != 0 && e & SW_FOREIGN != 0 && e & ADDR_MASK >= mem.size()
}

/// Whether going from `old` to `new` may leave KVM with more rights than the tables.
fn loses_rights(old: u64, new: u64) -> bool {
    old & P != 0
        && (new & P == 0
            || (old & ADDR_MASK) != (new & ADDR_MASK)
            || (old & RW != 0 && new & RW == 0)
            || (old & NX == 0 && new & NX != 0))
}

/// Checks a page-aligned `[addr, addr+len)` inside user space; returns the end.
fn user_range(addr: u64, len: u64) -> Result<u64> {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(MmError::Invalid);
    }
    let end = addr
        .checked_add(align_up(len.min(1 << 48), PAGE_SIZE))
        .filter(|_| len <= 1 << 48)
        .ok_or(MmError::Invalid)?;
    if end > USER_END {
        return Err(MmError::Invalid);
    }
    Ok(end)
}

impl AddressSpace {
    /// An address space over a pool of `pool` bytes, with its root table allocated.
    /// Tables come from the former fixed table area first.
    pub fn new(mem: &mut GuestMemory) -> Result<Self> {
        let mut a = Self::unrooted(mem.size());
        a.root(mem)?;
        Ok(a)
    }

    /// An address space whose tables are created at the first mapping (for tests that
    /// use guest memory without page tables).
    pub fn unrooted(pool: u64) -> Self {
        AddressSpace {
            vmas: VmaTree::default(),
            frames: Frames::new(
                (layout::PAGE_TABLES, layout::PAGE_TABLES_END),
                (layout::HUGE_PAGE, layout::align_down(pool, PAGE_SIZE)),
            ),
            pt: None,
            brk_start: 0,
            brk: 0,
            committed: 0,
        }
    }

    /// Root of the page tables (CR3), allocating it if needed.
    pub fn root(&mut self, mem: &mut GuestMemory) -> Result<u64> {
        if let Some(pt) = self.pt {
            return Ok(pt.root());
        }
        let pt = PageTable::new(mem, &mut self.frames)?;
        self.pt = Some(pt);
        Ok(pt.root())
    }

    fn pt(&mut self, mem: &mut GuestMemory) -> Result<PageTable> {
        self.root(mem)?;
        Ok(self.pt.expect("root just set"))
    }

    /// Maps one system page (identity or the trap page): never freed, not counted.
    pub fn map_system(
        &mut self,
        mem: &mut GuestMemory,
        va: u64,
        gpa: u64,
        flags: u64,
    ) -> Result<()> {
        let pt = self.pt(mem)?;
        pt.set(mem, &mut self.frames, va, gpa | flags | A | SW_FOREIGN)?;
        Ok(())
    }

    /// The mappings.
    pub fn vmas(&self) -> &VmaTree {
        &self.vmas
    }

    /// Bytes of user memory with frames.
    pub fn committed_bytes(&self) -> u64 {
        self.committed * PAGE_SIZE
    }

    /// The program break.
    pub fn brk(&self) -> u64 {
        self.brk
    }

    /// Where the program break started.
    pub fn brk_start(&self) -> u64 {
        self.brk_start
    }

    /// Sets the initial program break (after the loaded image).
    pub fn set_brk_start(&mut self, at: u64) {
        self.brk_start = align_up(at, PAGE_SIZE);
        self.brk = self.brk_start;
    }

    /// Pages in `[start, end)` that are read-only file-slot pages.
    fn slot_pages(&mut self, mem: &mut GuestMemory, start: u64, end: u64) -> Result<u64> {
        let pt = self.pt(mem)?;
        let mut n = 0;
        pt.for_each_leaf(mem, start, end, &mut |_, e| {
            if is_slot_page(mem, e) {
                n += 1;
            }
        });
        Ok(n)
    }

    /// Maps `[start, end)` onto the read-only file slot `slot` from file offset
    /// `file_off` (page-aligned); pages past the file's end get zeroed frames. No frame
    /// is used for the file's pages and none is counted against `budget`.
    #[allow(clippy::too_many_arguments)]
    pub fn map_slot(
        &mut self,
        mem: &mut GuestMemory,
        start: u64,
        end: u64,
        prot: u32,
        slot: &FileSlot,
        file_off: u64,
        vma: Vma,
        budget: u64,
    ) -> Result<()> {
        if prot & PROT_WRITE != 0 || !file_off.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Invalid);
        }
        let in_file = slot.len.saturating_sub(file_off).min(end - start);
        let mid = start + in_file;
        if mid < end {
            self.apply(mem, mid, end, prot, budget)?;
        }
        let pt = self.pt(mem)?;
        let mut va = start;
        while va < mid {
            let old = pt.get(mem, va);
            let gpa = slot.gpa + file_off + (va - start);
            self.set_leaf(mem, pt, va, old, leaf(gpa, prot) | SW_FOREIGN)?;
            va += PAGE_SIZE;
        }
        self.vmas.insert(Vma { start, end, ..vma });
        Ok(())
    }

    /// Pages in `[start, end)` without a frame.
    fn missing(&mut self, mem: &mut GuestMemory, start: u64, end: u64) -> Result<u64> {
        let pt = self.pt(mem)?;
        let mut have = 0;
        pt.for_each_leaf(mem, start, end, &mut |_, e| {
            if e & (P | SW_FRAME) != 0 {
                have += 1;
            }
        });
        Ok((end - start) / PAGE_SIZE - have)
    }

    /// Gives `[start, end)` protection `prot`, allocating frames for pages without one
    /// when `prot` allows access; `budget` bounds the new bytes.
    fn apply(
        &mut self,
        mem: &mut GuestMemory,
        start: u64,
        end: u64,
        prot: u32,
        budget: u64,
    ) -> Result<()> {
        let accessible = prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0;
        if accessible {
            let mut need = self.missing(mem, start, end)?;
            if prot & PROT_WRITE != 0 {
                need += self.slot_pages(mem, start, end)?;
            }
            // Tables for the range come on top: one per 2 MiB, plus the upper levels.
            let tables = (end - start).div_ceil(layout::HUGE_PAGE) + 2;
            if need.saturating_mul(PAGE_SIZE) > budget || need + tables > self.frames.available() {
                return Err(MmError::NoMemory);
            }
        }
        let pt = self.pt(mem)?;
        if !accessible {
            // Only pages that have frames change: a 16 GiB reservation costs one walk
            // over its (absent) tables.
            let mut leaves = Vec::new();
            pt.for_each_leaf(mem, start, end, &mut |va, e| {
                if e & (P | SW_FRAME) != 0 {
                    leaves.push((va, e));
                }
            });
            for (va, old) in leaves {
                let new = leaf(old & ADDR_MASK, prot) | (old & SW_FOREIGN);
                self.set_leaf(mem, pt, va, old, new)?;
            }
            return Ok(());
        }
        let mut va = start;
        while va < end {
            let old = pt.get(mem, va);
            let frame = if is_slot_page(mem, old) && prot & PROT_WRITE != 0 {
                // A page of a read-only file slot becomes writable: a private copy.
                let f = self.frames.alloc().ok_or(MmError::NoMemory)?;
                self.committed += 1;
                let page = mem.phys_slice(old & ADDR_MASK, PAGE_SIZE)?.to_vec();
                mem.phys_write(f, &page)?;
                f
            } else if old & (P | SW_FRAME) != 0 {
                old & ADDR_MASK
            } else {
                let f = self.frames.alloc().ok_or(MmError::NoMemory)?;
                self.committed += 1;
                f
            };
            let foreign = if frame == old & ADDR_MASK {
                old & SW_FOREIGN
            } else {
                0
            };
            let new = leaf(frame, prot) | foreign;
            self.set_leaf(mem, pt, va, old, new)?;
            va += PAGE_SIZE;
        }
        Ok(())
    }

    /// Replaces leaf `old` of `va` with `new`, noting what KVM must forget.
    fn set_leaf(
        &mut self,
        mem: &mut GuestMemory,
        pt: PageTable,
        va: u64,
        old: u64,
        new: u64,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        pt.set(mem, &mut self.frames, va, new)?;
        if loses_rights(old, new) {
            mem.note_retired(old & ADDR_MASK);
        }
        mem.note_changed(new & ADDR_MASK);
        Ok(())
    }

    /// Frees the frames of `[start, end)` (zeroed first) and clears their leaves.
    fn release(&mut self, mem: &mut GuestMemory, start: u64, end: u64) -> Result<()> {
        let Some(pt) = self.pt else { return Ok(()) };
        let mut leaves = Vec::new();
        pt.for_each_leaf(mem, start, end, &mut |va, e| leaves.push((va, e)));
        let mut freed = Vec::new();
        for (va, e) in leaves {
            if va < USER_MIN {
                continue;
            }
            pt.set(mem, &mut self.frames, va, 0)?;
            let f = e & ADDR_MASK;
            if e & P != 0 {
                mem.note_retired(f);
            }
            if e & (P | SW_FRAME) != 0 && e & SW_FOREIGN == 0 {
                freed.push(f);
            }
        }
        // Zeroed in runs (one madvise per run, not per page), then freed.
        for (f, len) in resize::frame_runs(&freed) {
            mem.phys_zero(f, len)?;
        }
        for f in freed {
            self.frames.free(f);
            self.committed = self.committed.saturating_sub(1);
            mem.note_changed(f);
        }
        Ok(())
    }

    /// Picks where a new mapping of `len` bytes goes: the hint if free, else top-down.
    fn place(&self, hint: u64, len: u64) -> Result<u64> {
        if hint >= USER_MIN && hint.is_multiple_of(PAGE_SIZE) {
            if let Some(end) = hint.checked_add(len).filter(|&e| e <= USER_END) {
                if self.vmas.is_free(hint, end) {
                    return Ok(hint);
                }
            }
        }
        self.vmas
            .find_gap_top_down(len, PAGE_SIZE, USER_MIN, MMAP_TOP)
            .ok_or(MmError::NoMemory)
    }

    /// mmap. `budget`: bytes that may still be committed.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap(
        &mut self,
        mem: &mut GuestMemory,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file: Option<(FileSource<'_>, u64)>,
        budget: u64,
    ) -> Result<u64> {
        if len == 0 || prot & !7 != 0 {
            return Err(MmError::Invalid);
        }
        if len > USER_END {
            return Err(MmError::NoMemory);
        }
        let len = align_up(len, PAGE_SIZE);
        let kind = flags & 3;
        if kind == 0 {
            return Err(MmError::Invalid);
        }
        let prot = prot as u32;
        let host = matches!(
            &file,
            Some((
                FileSource {
                    file: FileBytes::Host(_),
                    ..
                },
                _
            ))
        );
        if host && kind != flags::PRIVATE && prot & PROT_WRITE != 0 {
            // Host files are read-only to the guest: a writable shared mapping of one
            // would need its stores to reach the file. Refused; programs fall back.
            return Err(MmError::NoDevice);
        }
        if let Some((_, off)) = &file {
            if !off.is_multiple_of(PAGE_SIZE) {
                return Err(MmError::Invalid);
            }
            // Linux: EOVERFLOW past the largest file offset; keeps later offset sums
            // (mremap growth, windows) from overflowing.
            if off
                .checked_add(len)
                .is_none_or(|e| e > shared::MAX_FILE_END)
            {
                return Err(MmError::Overflow);
            }
        }
        let fixed = flags & (flags::FIXED | flags::FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(MmError::Invalid);
            }
            let end = user_range(addr, len).map_err(|_| MmError::NoMemory)?;
            if addr < USER_MIN {
                return Err(MmError::Perm);
            }
            if flags & flags::FIXED_NOREPLACE != 0 && !self.vmas.is_free(addr, end) {
                return Err(MmError::Exists);
            }
            addr
        } else {
            self.place(layout::align_down(addr, PAGE_SIZE), len)?
        };
        let end = start + len;
        // Check the budget before replacing anything, so a failed MAP_FIXED leaves the
        // old mapping in place.
        let already = if fixed {
            self.committed_in(mem, start, end)?
        } else {
            0
        };
        let budget = budget.saturating_add(already * PAGE_SIZE);
        // Large read-only file mappings share the page cache (memory::slots).
        let slot = match &file {
            Some((
                FileSource {
                    file: FileBytes::Host(f),
                    ..
                },
                _,
            )) if prot & PROT_WRITE == 0 && len >= SLOT_MIN => mem.file_slot(f),
            _ => None,
        };
        if prot & 7 != 0 && slot.is_none() {
            let need = len / PAGE_SIZE;
            if need * PAGE_SIZE > budget || need + 2 > self.frames.available() + already {
                return Err(MmError::NoMemory);
            }
        }
        self.release(mem, start, end)?;
        self.vmas.remove(start, end);
        if let Some((src, off)) = &file {
            if let Some(slot) = slot {
                let (dev, inode) = src.file.ids();
                let vma = Vma {
                    start,
                    end,
                    prot,
                    shared: kind != flags::PRIVATE,
                    backing: Backing::File {
                        path: src.path.clone(),
                        offset: *off,
                        dev,
                        inode,
                    },
                    special: Special::None,
                };
                self.map_slot(mem, start, end, prot, &slot, *off, vma, budget)?;
                return Ok(start);
            }
        }
        self.apply(mem, start, end, prot, budget)?;
        let backing = match &file {
            Some((src, off)) => {
                let (dev, inode) = src.file.ids();
                self.fill_from_file(mem, start, end, src.file, *off)?;
                Backing::File {
                    path: src.path.clone(),
                    offset: *off,
                    dev,
                    inode,
                }
            }
            None => Backing::Anon,
        };
        self.vmas.insert(Vma {
            start,
            end,
            prot,
            shared: kind != flags::PRIVATE,
            backing,
            special: Special::None,
        });
        Ok(start)
    }

    fn committed_in(&mut self, mem: &mut GuestMemory, start: u64, end: u64) -> Result<u64> {
        Ok((end - start) / PAGE_SIZE - self.missing(mem, start, end)?)
    }

    /// Copies file bytes at `off` into the frames of `[start, end)` (host writes: no
    /// permission check; bytes past the end of the file stay zero).
    fn fill_from_file(
        &mut self,
        mem: &mut GuestMemory,
        start: u64,
        end: u64,
        file: FileBytes<'_>,
        off: u64,
    ) -> Result<()> {
        let pt = self.pt(mem)?;
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        let mut va = start;
        while va < end {
            let e = pt.get(mem, va);
            let mut n = 0;
            while n < buf.len() {
                match file.read_at(&mut buf[n..], off + (va - start) + n as u64)? {
                    0 => break,
                    k => n += k,
                }
            }
            if n == 0 {
                break;
            }
            if e & (P | SW_FRAME) != 0 {
                mem.phys_write(e & ADDR_MASK, &buf[..n])?;
            }
            va += PAGE_SIZE;
        }
        Ok(())
    }

    /// Copies `data` to `va` with the host's rights (the loader filling read-only pages).
    pub fn write_init(&mut self, mem: &mut GuestMemory, va: u64, data: &[u8]) -> Result<()> {
        let pt = self.pt(mem)?;
        let mut at = 0usize;
        while at < data.len() {
            let v = va + at as u64;
            let e = pt.get(mem, v);
            if e & (P | SW_FRAME) == 0 {
                return Err(MmError::Fault);
            }
            let n = ((PAGE_SIZE - v % PAGE_SIZE) as usize).min(data.len() - at);
            mem.phys_write((e & ADDR_MASK) + v % PAGE_SIZE, &data[at..at + n])?;
            at += n;
        }
        Ok(())
    }

    /// Maps `[start, end)` anonymous at a fixed place with a special name (loader use).
    pub fn map_special(
        &mut self,
        mem: &mut GuestMemory,
        start: u64,
        end: u64,
        prot: u32,
        special: Special,
        backing: Backing,
    ) -> Result<()> {
        user_range(start, end.saturating_sub(start))?;
        if !self.vmas.is_free(start, end) {
            return Err(MmError::Exists);
        }
        self.apply(mem, start, end, prot, u64::MAX)?;
        self.vmas.insert(Vma {
            start,
            end,
            prot,
            shared: false,
            backing,
            special,
        });
        Ok(())
    }

    /// Finds room for `len` bytes top-down, aligned to `align` (loader use).
    pub fn find_free(&self, len: u64, align: u64) -> Option<u64> {
        self.vmas
            .find_gap_top_down(len, align.max(PAGE_SIZE), USER_MIN, MMAP_TOP)
    }

    /// munmap.
    pub fn munmap(&mut self, mem: &mut GuestMemory, addr: u64, len: u64) -> Result<()> {
        let end = user_range(addr, len)?;
        if addr < USER_MIN {
            return Err(MmError::Invalid);
        }
        self.release(mem, addr, end)?;
        self.vmas.remove(addr, end);
        Ok(())
    }

    /// mprotect.
    pub fn mprotect(
        &mut self,
        mem: &mut GuestMemory,
        addr: u64,
        len: u64,
        prot: u64,
        budget: u64,
    ) -> Result<()> {
        if prot & !7 != 0 {
            return Err(MmError::Invalid);
        }
        if len == 0 && addr.is_multiple_of(PAGE_SIZE) {
            return Ok(());
        }
        let end = user_range(addr, len)?;
        if !self.vmas.covers(addr, end) || addr < USER_MIN {
            return Err(MmError::NoMemory);
        }
        let prot = prot as u32;
        self.apply(mem, addr, end, prot, budget)?;
        for mut v in self.vmas.remove(addr, end) {
            v.prot = prot;
            self.vmas.insert(v);
        }
        Ok(())
    }

    /// Frames handed out (user pages and tables).
    pub fn frames_in_use(&self) -> u64 {
        self.frames.in_use()
    }
}

/// Device and inode numbers of a host file, for /proc/self/maps.
fn file_ids(f: &std::fs::File) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    f.metadata().map(|m| (m.dev(), m.ino())).unwrap_or((0, 0))
}

#[cfg(test)]
mod tests;
