//! Identity-mapped 4-level page tables, built once before boot and never changed, so
//! nothing can leave stale translations behind across a reset.

use crate::layout::{HUGE_PAGE, PAGE_SIZE, PAGE_TABLES, PAGE_TABLES_END};
use crate::memory::{GuestMemory, MemoryError};

/// Present.
pub const P: u64 = 1;
/// Writable.
pub const RW: u64 = 1 << 1;
/// User-accessible.
pub const US: u64 = 1 << 2;
/// Large page (at PD level: 2 MiB).
pub const PS: u64 = 1 << 7;
/// No-execute.
pub const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Errors while building page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// The table area is full.
    #[error("page tables need more than {0:#x} bytes; lower address_space")]
    Full(u64),
    /// A table write failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Builds page tables in guest memory from [`PAGE_TABLES`] up.
pub struct PageTables<'m> {
    mem: &'m mut GuestMemory,
    next: u64,
}

impl<'m> PageTables<'m> {
    /// Starts with an empty PML4.
    pub fn new(mem: &'m mut GuestMemory) -> Result<Self, PagingError> {
        let mut pt = PageTables {
            mem,
            next: PAGE_TABLES,
        };
        pt.alloc()?;
        Ok(pt)
    }

    /// Guest-physical address of the PML4 (CR3).
    pub fn root(&self) -> u64 {
        PAGE_TABLES
    }

    fn alloc(&mut self) -> Result<u64, PagingError> {
        if self.next >= PAGE_TABLES_END {
            return Err(PagingError::Full(PAGE_TABLES_END - PAGE_TABLES));
        }
        let t = self.next;
        self.next += PAGE_SIZE;
        self.mem.write(t, &[0; PAGE_SIZE as usize])?;
        Ok(t)
    }

    /// Returns the next-level table behind entry `idx` of `table`, creating it.
    fn child(&mut self, table: u64, idx: u64) -> Result<u64, PagingError> {
        let slot = table + idx * 8;
        let e = self.mem.read_u64(slot)?;
        if e & P != 0 {
            return Ok(e & ADDR_MASK);
        }
        let t = self.alloc()?;
        self.mem.write_u64(slot, t | P | RW | US)?;
        Ok(t)
    }

    fn pd_for(&mut self, va: u64) -> Result<u64, PagingError> {
        let pdpt = self.child(PAGE_TABLES, (va >> 39) & 511)?;
        self.child(pdpt, (va >> 30) & 511)
    }

    /// Maps one 2 MiB page.
    pub fn map_2m(&mut self, va: u64, gpa: u64, flags: u64) -> Result<(), PagingError> {
        debug_assert_eq!(va % HUGE_PAGE, 0);
        let pd = self.pd_for(va)?;
        self.mem
            .write_u64(pd + ((va >> 21) & 511) * 8, gpa | flags | P | PS)?;
        Ok(())
    }

    /// Maps one 4 KiB page; `flags` without [`P`] leaves it not present.
    pub fn map_4k(&mut self, va: u64, gpa: u64, flags: u64) -> Result<(), PagingError> {
        let pd = self.pd_for(va)?;
        let pt = self.child(pd, (va >> 21) & 511)?;
        let entry = if flags & P == 0 { 0 } else { gpa | flags };
        self.mem.write_u64(pt + ((va >> 12) & 511) * 8, entry)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_4k_and_2m_pages() {
        let mut mem = GuestMemory::new(16 << 20, false).unwrap();
        {
            let mut pt = PageTables::new(&mut mem).unwrap();
            pt.map_4k(0x5000, 0x5000, P | US).unwrap();
            pt.map_2m(0x40_0000, 0x40_0000, RW | US | NX).unwrap();
        }
        let pml4 = mem.read_u64(PAGE_TABLES).unwrap();
        let pdpt = pml4 & ADDR_MASK;
        let pd = mem.read_u64(pdpt).unwrap() & ADDR_MASK;
        let pt = mem.read_u64(pd).unwrap() & ADDR_MASK;
        assert_eq!(mem.read_u64(pt + 5 * 8).unwrap(), 0x5000 | P | US);
        assert_eq!(
            mem.read_u64(pd + 2 * 8).unwrap(),
            0x40_0000 | RW | US | NX | P | PS
        );
    }
}
