//! x86-64 4-level page tables kept by the host in guest-physical frames.
//!
//! Every leaf the host writes is a 4 KiB entry with the accessed bit set (so reads never
//! make KVM write a table). The dirty bit is left to the first write, as Linux does:
//! with it preset, KVM's shadow MMU would map a clean page writable on a mere read (or a
//! prefetch of a neighbour) and log it dirty, so which pages a reset restores would
//! depend on KVM's fault order. Intermediate entries are always present, writable and
//! user: permissions live in the leaves only, so changing a range never touches an
//! upper level.
//!
//! A committed page whose protection is PROT_NONE keeps its frame in a non-present leaf
//! (hardware ignores every other bit of a non-present entry), tagged [`SW_FRAME`].
//!
//! Changing a present leaf is only half the job under shadow paging: see
//! [`crate::memory::GuestMemory::note_retired`] and the `mm` module docs.

use crate::layout::{HUGE_PAGE, PAGE_SIZE};
use crate::memory::{GuestMemory, MemoryError};
use crate::mm::frames::Frames;

/// Present.
pub const P: u64 = 1;
/// Writable.
pub const RW: u64 = 1 << 1;
/// User-accessible.
pub const US: u64 = 1 << 2;
/// Accessed.
pub const A: u64 = 1 << 5;
/// Dirty.
pub const D: u64 = 1 << 6;
/// Large page (at PD level: 2 MiB).
pub const PS: u64 = 1 << 7;
/// Software bit (ignored by hardware): a non-present leaf still owns the frame in its
/// address bits (a committed page made PROT_NONE).
pub const SW_FRAME: u64 = 1 << 9;
/// Software bit: the frame is not from the pool allocator (file pages, system pages)
/// and must never be freed into it.
pub const SW_FOREIGN: u64 = 1 << 10;
/// No-execute.
pub const NX: u64 = 1 << 63;
/// Physical-address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Flags of an intermediate entry.
const TABLE: u64 = P | RW | US | A;

/// Errors changing page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// No frame is left for a page table.
    #[error("no guest-physical frame left for a page table; raise address_space")]
    NoFrames,
    /// An entry points outside guest memory (only a corrupted table can).
    #[error("page-table entry for {va:#x} points outside guest memory")]
    Corrupt {
        /// The address being mapped.
        va: u64,
    },
    /// A table read or write failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// A page-table tree: its root (CR3). Plain data; the tables live in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageTable {
    root: u64,
}

/// Index of `va` at `level` (4 = PML4 .. 1 = PT).
const fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & 511
}

/// Bytes one entry covers at `level`.
const fn span(level: u32) -> u64 {
    1 << (12 + 9 * (level - 1))
}

impl PageTable {
    /// Allocates an empty PML4.
    pub fn new(mem: &mut GuestMemory, frames: &mut Frames) -> Result<Self, PagingError> {
        let root = new_table(mem, frames)?;
        Ok(PageTable { root })
    }

    /// The tree rooted at `root` (already in guest memory).
    pub fn from_root(root: u64) -> Self {
        PageTable { root }
    }

    /// Guest-physical address of the PML4 (CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Guest-physical address of the leaf entry for `va`, creating tables when `frames`
    /// is given; `None` when a table is missing and may not be created.
    fn slot(
        &self,
        mem: &mut GuestMemory,
        mut frames: Option<&mut Frames>,
        va: u64,
    ) -> Result<Option<u64>, PagingError> {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let slot = table + index(va, level) * 8;
            let e = mem.phys_read_u64(slot)?;
            table = if e & P != 0 {
                if e & PS != 0 {
                    return Err(PagingError::Corrupt { va });
                }
                e & ADDR_MASK
            } else {
                let Some(f) = frames.as_deref_mut() else {
                    return Ok(None);
                };
                let t = new_table(mem, f)?;
                mem.phys_write_u64(slot, t | TABLE)?;
                t
            };
            if mem.check(table, PAGE_SIZE).is_err() {
                return Err(PagingError::Corrupt { va });
            }
        }
        Ok(Some(table + index(va, 1) * 8))
    }

    /// Sets the 4 KiB leaf of `va` to `entry` (tables created as needed); returns the
    /// previous leaf.
    pub fn set(
        &self,
        mem: &mut GuestMemory,
        frames: &mut Frames,
        va: u64,
        entry: u64,
    ) -> Result<u64, PagingError> {
        let slot = self
            .slot(mem, Some(frames), va)?
            .ok_or(PagingError::NoFrames)?;
        let old = mem.phys_read_u64(slot)?;
        if old != entry {
            mem.phys_write_u64(slot, entry)?;
        }
        Ok(old)
    }

    /// The leaf of `va` (0 when no table covers it).
    pub fn get(&self, mem: &mut GuestMemory, va: u64) -> u64 {
        match self.slot(mem, None, va) {
            Ok(Some(slot)) => mem.phys_read_u64(slot).unwrap_or(0),
            _ => 0,
        }
    }

    /// Calls `f(va, entry)` for every non-zero 4 KiB leaf in `[start, end)`, skipping
    /// absent tables whole (a 16 GiB reservation costs nothing to walk).
    pub fn for_each_leaf(
        &self,
        mem: &GuestMemory,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, u64),
    ) {
        self.visit(mem, self.root, 4, 0, start, end, f);
    }

    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        mem: &GuestMemory,
        table: u64,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, u64),
    ) {
        let s = span(level);
        let first = if start > base { (start - base) / s } else { 0 };
        for i in first..512 {
            let va = base + i * s;
            if va >= end {
                break;
            }
            let Ok(e) = mem.phys_read_u64(table + i * 8) else {
                return;
            };
            if e == 0 {
                continue;
            }
            if level == 1 {
                f(va, e);
            } else if e & P != 0 && e & PS == 0 {
                let child = e & ADDR_MASK;
                if mem.check(child, PAGE_SIZE).is_ok() {
                    self.visit(mem, child, level - 1, va, start, end, f);
                }
            }
        }
    }
}

fn new_table(mem: &mut GuestMemory, frames: &mut Frames) -> Result<u64, PagingError> {
    let t = frames.alloc_table().ok_or(PagingError::NoFrames)?;
    // A frame from the allocator reads as zero already; tables are rare, so say it anyway
    // (a corrupted free list must not become a page table full of stale entries).
    mem.phys_zero(t, PAGE_SIZE)?;
    Ok(t)
}

/// What the walk found for one virtual page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Guest-physical address of the byte.
    pub gpa: u64,
    /// Writable at every level.
    pub write: bool,
    /// User-accessible at every level.
    pub user: bool,
}

/// Walks the tables at `root` for `va` like the CPU does (4 KiB and 2 MiB leaves).
pub fn walk(mem: &GuestMemory, root: u64, va: u64) -> Option<Translation> {
    if va >= 1 << 47 {
        return None;
    }
    let (mut table, mut write, mut user) = (root, true, true);
    for level in (1..=4).rev() {
        let e = mem.phys_read_u64(table + index(va, level) * 8).ok()?;
        if e & P == 0 {
            return None;
        }
        write &= e & RW != 0;
        user &= e & US != 0;
        if level == 2 && e & PS != 0 {
            let gpa = (e & ADDR_MASK & !(HUGE_PAGE - 1)) + (va & (HUGE_PAGE - 1));
            return Some(Translation { gpa, write, user });
        }
        table = e & ADDR_MASK;
    }
    Some(Translation {
        gpa: table + (va & (PAGE_SIZE - 1)),
        write,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_walk_and_visit() {
        let mut mem = GuestMemory::new(16 << 20, false).unwrap();
        let mut frames = Frames::new((0x1_0000, 0x2_0000), (0x20_0000, 16 << 20));
        let pt = PageTable::new(&mut mem, &mut frames).unwrap();
        assert_eq!(pt.root(), 0x1_0000);
        let va = 0x7fff_1234_5000;
        assert_eq!(
            pt.set(&mut mem, &mut frames, va, 0x30_0000 | P | US | A)
                .unwrap(),
            0
        );
        assert_eq!(pt.get(&mut mem, va), 0x30_0000 | P | US | A);
        let t = walk(&mem, pt.root(), va + 0x123).unwrap();
        assert_eq!(t.gpa, 0x30_0123);
        assert!(t.user && !t.write);
        assert!(walk(&mem, pt.root(), va + 0x1000).is_none());
        assert!(walk(&mem, pt.root(), u64::MAX).is_none());
        // Supervisor and non-present leaves.
        pt.set(&mut mem, &mut frames, 0x5000, 0x5000 | P | A)
            .unwrap();
        assert!(!walk(&mem, pt.root(), 0x5000).unwrap().user);
        pt.set(&mut mem, &mut frames, va + 0x1000, 0x31_0000 | SW_FRAME)
            .unwrap();
        assert!(walk(&mem, pt.root(), va + 0x1000).is_none());
        let mut seen = Vec::new();
        pt.for_each_leaf(&mem, 0, 1 << 47, &mut |v, e| seen.push((v, e)));
        assert_eq!(
            seen,
            vec![
                (0x5000, 0x5000 | P | A),
                (va, 0x30_0000 | P | US | A),
                (va + 0x1000, 0x31_0000 | SW_FRAME)
            ]
        );
        let mut n = 0;
        pt.for_each_leaf(&mem, va + 0x1000, va + 0x2000, &mut |_, _| n += 1);
        assert_eq!(n, 1, "the range bounds the walk");
        // Overwriting returns the old leaf.
        assert_eq!(
            pt.set(&mut mem, &mut frames, va, 0).unwrap(),
            0x30_0000 | P | US | A
        );
    }

    #[test]
    fn walk_handles_2m_leaves_and_garbage() {
        let mut mem = GuestMemory::new(16 << 20, false).unwrap();
        let mut frames = Frames::new((0x1_0000, 0x2_0000), (0x20_0000, 16 << 20));
        let pt = PageTable::new(&mut mem, &mut frames).unwrap();
        // Build a PD by hand: PML4[0] -> PDPT -> PD with a 2 MiB leaf at 4 MiB.
        pt.set(&mut mem, &mut frames, 0x40_0000 - 0x1000, 0)
            .unwrap();
        let pdpt = mem.phys_read_u64(pt.root()).unwrap() & ADDR_MASK;
        let pd = mem.phys_read_u64(pdpt).unwrap() & ADDR_MASK;
        mem.phys_write_u64(pd + 2 * 8, 0x80_0000 | P | RW | US | PS)
            .unwrap();
        let t = walk(&mem, pt.root(), 0x40_1234).unwrap();
        assert_eq!(t.gpa, 0x80_1234);
        // A 2 MiB leaf where a 4 KiB table is expected is refused, not followed.
        assert!(pt.set(&mut mem, &mut frames, 0x40_0000, 0).is_err());
        // An entry pointing outside memory is refused.
        mem.phys_write_u64(pd + 3 * 8, (1 << 40) | P | RW | US)
            .unwrap();
        assert!(matches!(
            pt.set(&mut mem, &mut frames, 0x60_0000, 0),
            Err(PagingError::Corrupt { .. })
        ));
        assert!(walk(&mem, pt.root(), 0x60_0000).is_none());
    }
}
