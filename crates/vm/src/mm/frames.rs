//! The frame allocator: hands out 4 KiB pages of the guest-physical pool (memslot 0).
//!
//! Frames are plain numbers; what they hold lives in guest memory. A frame handed out
//! reads as zero: frames past the bump pointer were never used since the snapshot (the
//! reset restores both the pointer and the memory), and a freed frame is zeroed by its
//! owner ([`crate::mm::AddressSpace`]) before it goes back on the free list.
//!
//! Page-table pages come from a separate low range first (the former fixed page-table
//! area), so a small program's tables stay where the host's calibration treats them as
//! pages the guest cannot write.

use crate::layout::PAGE_SIZE;

/// Frame allocator state: plain data, cloned into the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frames {
    /// Table range: next free and end.
    table_next: u64,
    table_end: u64,
    /// General range: bump pointer and end.
    next: u64,
    end: u64,
    /// Frames returned by their owners (already zeroed), reused first.
    free: Vec<u64>,
    /// Frames handed out and not freed.
    in_use: u64,
}

impl Frames {
    /// Allocates tables from `[tables.0, tables.1)` first and everything else from
    /// `[pool.0, pool.1)`; all bounds page-aligned.
    pub fn new(tables: (u64, u64), pool: (u64, u64)) -> Self {
        Frames {
            table_next: tables.0,
            table_end: tables.1.max(tables.0),
            next: pool.0,
            end: pool.1.max(pool.0),
            free: Vec::new(),
            in_use: 0,
        }
    }

    /// A zeroed frame for data, or `None` when the pool is exhausted.
    pub fn alloc(&mut self) -> Option<u64> {
        let f = match self.free.pop() {
            Some(f) => f,
            None if self.next < self.end => {
                self.next += PAGE_SIZE;
                self.next - PAGE_SIZE
            }
            None => return None,
        };
        self.in_use += 1;
        Some(f)
    }

    /// A zeroed frame for a page table.
    pub fn alloc_table(&mut self) -> Option<u64> {
        if self.table_next < self.table_end {
            self.table_next += PAGE_SIZE;
            self.in_use += 1;
            return Some(self.table_next - PAGE_SIZE);
        }
        self.alloc()
    }

    /// Returns a frame that its owner has zeroed.
    pub fn free(&mut self, frame: u64) {
        debug_assert_eq!(frame % PAGE_SIZE, 0);
        self.free.push(frame);
        self.in_use = self.in_use.saturating_sub(1);
    }

    /// Frames handed out and not freed.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// Frames that can still be handed out.
    pub fn available(&self) -> u64 {
        (self.end - self.next) / PAGE_SIZE + self.free.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_first_then_pool_then_reuse() {
        let mut f = Frames::new((0x1_0000, 0x1_2000), (0x20_0000, 0x20_2000));
        assert_eq!(f.alloc_table(), Some(0x1_0000));
        assert_eq!(f.alloc_table(), Some(0x1_1000));
        assert_eq!(f.alloc_table(), Some(0x20_0000), "table range full: pool");
        assert_eq!(f.alloc(), Some(0x20_1000));
        assert_eq!(f.available(), 0);
        assert_eq!(f.alloc(), None);
        assert_eq!(f.in_use(), 4);
        f.free(0x20_0000);
        assert_eq!(f.in_use(), 3);
        assert_eq!(f.alloc(), Some(0x20_0000), "freed frames are reused");
        assert_eq!(f.alloc(), None);
    }
}
