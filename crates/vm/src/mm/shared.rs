//! MAP_SHARED mappings of scratch files ([`crate::fs::scratch`]), kept coherent with the
//! file for the one process a VM runs.
//!
//! Scratch file data lives in host memory (copy-on-write chunks), guest mappings in guest
//! frames, so a shared mapping cannot *be* the file's pages. Instead each mapping is a
//! [`Window`] (file, file offset, guest range) over ordinary frames, counted against the
//! memory budget like anonymous memory, and the syscall layer keeps both sides equal at
//! every point the process could tell them apart:
//! - before any call reads or changes the file (read, pread, readv, write, ftruncate,
//!   fallocate, a new mapping of it) the windows' bytes are *flushed* into the file;
//! - after any call changed the file, its windows are *refreshed* from it;
//! - munmap, msync, MAP_FIXED over a window, mremap and madvise flush first.
//!
//! Only one process exists, so no other observer can see the file between two system
//! calls: this is exactly what Linux's shared page cache shows it. Each flush or refresh
//! costs time proportional to the window (SQLite's WAL index is 32 KiB) and touches only
//! pages whose bytes differ, so an unchanged window dirties nothing.
//!
//! Approximations (documented): pages of a window past the end of the file read as zeros
//! and stores to them are dropped at the next flush (Linux raises SIGBUS); two windows
//! over the same file bytes are separate copies between system calls (the later flush
//! wins), where Linux would alias them.
//!
//! The windows live in [`crate::fs::FdTable`], so the same deep clone that copies the
//! scratch tree and the open files (snapshot, reset) copies them, pointing at the copied
//! inodes; the guest frames behind them are restored with guest memory.

use super::pagetable::{ADDR_MASK, P, SW_FRAME};
use super::{AddressSpace, MmError, Result};
use crate::fs::scratch::ScratchFile;
use crate::fs::{CloneMap, File};
use crate::layout::PAGE_SIZE;
use crate::memory::GuestMemory;
use std::sync::Arc;

/// Most shared file mappings a process may hold: every read or write of a mapped file
/// walks them.
pub const MAX_WINDOWS: usize = 1024;

/// One shared mapping of a scratch file.
#[derive(Debug)]
struct Window {
    /// Guest range (page-aligned, end exclusive).
    start: u64,
    end: u64,
    /// File offset of `start`.
    offset: u64,
    /// The file (a [`ScratchFile`]).
    file: Arc<dyn File>,
}

/// The process's shared scratch-file mappings.
#[derive(Debug, Default)]
pub struct Windows {
    list: Vec<Window>,
}

/// The inode `f` is, if it is a scratch file.
fn key(f: &dyn File) -> Option<usize> {
    f.as_any()
        .downcast_ref::<ScratchFile>()
        .map(ScratchFile::inode_key)
}

impl AddressSpace {
    /// The frame behind `va`, accessible or not (host rights).
    fn frame_of(&self, mem: &mut GuestMemory, va: u64) -> Option<u64> {
        let e = self.pt?.get(mem, va);
        (e & (P | SW_FRAME) != 0).then_some(e & ADDR_MASK)
    }
}

impl Window {
    /// Guest bytes -> file, within the file's size, page by page where they differ.
    fn flush(&self, mm: &AddressSpace, mem: &mut GuestMemory) {
        // Host copies into guest memory that span pages land at the next flush.
        mem.flush();
        let size = self.file.size();
        if size <= self.offset {
            return;
        }
        let stop = self.end.min(self.start.saturating_add(size - self.offset));
        let mut theirs = [0u8; PAGE_SIZE as usize];
        let mut va = self.start;
        while va < stop {
            let n = (stop - va).min(PAGE_SIZE) as usize;
            let pos = self.offset + (va - self.start);
            if let Some(frame) = mm.frame_of(mem, va) {
                if let Ok(ours) = mem.phys_slice(frame, n as u64) {
                    let got = self.file.read(&mut theirs[..n], pos, true).unwrap_or(0);
                    if got != n || theirs[..n] != *ours {
                        // Within the file's size, so no growth; a hole may need a chunk
                        // and fail with ENOSPC: the stores are lost, as on a full disk.
                        let _ = self.file.write(ours, pos, false);
                    }
                }
            }
            va += PAGE_SIZE;
        }
    }

    /// File -> guest bytes (zeros past the end), page by page where they differ.
    fn refresh(&self, mm: &AddressSpace, mem: &mut GuestMemory) {
        mem.flush();
        let mut theirs = [0u8; PAGE_SIZE as usize];
        let mut va = self.start;
        while va < self.end {
            let pos = self.offset + (va - self.start);
            let got = self.file.read(&mut theirs, pos, true).unwrap_or(0);
            theirs[got..].fill(0);
            if let Some(frame) = mm.frame_of(mem, va) {
                let same = mem
                    .phys_slice(frame, PAGE_SIZE)
                    .is_ok_and(|ours| *ours == theirs);
                if !same {
                    let _ = mem.phys_write(frame, &theirs);
                }
            }
            va += PAGE_SIZE;
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

impl Windows {
    /// Whether there are none (the common case: every hook returns at once).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether one more window fits ([`MAX_WINDOWS`]; ENOMEM past it): checked before
    /// mapping, so a mapping is never left without its window.
    pub fn check_room(&self) -> Result<()> {
        if self.list.len() >= MAX_WINDOWS {
            return Err(MmError::NoMemory);
        }
        Ok(())
    }

    /// Records a shared mapping of `file` at guest `[start, end)` from file `offset`.
    pub fn add(&mut self, start: u64, end: u64, offset: u64, file: Arc<dyn File>) -> Result<()> {
        self.check_room()?;
        if key(&*file).is_none() || start >= end {
            return Err(MmError::Invalid);
        }
        self.list.push(Window {
            start,
            end,
            offset,
            file,
        });
        Ok(())
    }

    /// Flushes the windows of `file`; returns whether it has any.
    pub fn flush_file(&self, mm: &AddressSpace, mem: &mut GuestMemory, file: &dyn File) -> bool {
        let Some(k) = key(file) else { return false };
        let mut any = false;
        for w in self.list.iter().filter(|w| key(&*w.file) == Some(k)) {
            w.flush(mm, mem);
            any = true;
        }
        any
    }

    /// Refreshes the windows of `file` from it; returns whether it has any.
    pub fn refresh_file(&self, mm: &AddressSpace, mem: &mut GuestMemory, file: &dyn File) -> bool {
        let Some(k) = key(file) else { return false };
        let mut any = false;
        for w in self.list.iter().filter(|w| key(&*w.file) == Some(k)) {
            w.refresh(mm, mem);
            any = true;
        }
        any
    }

    /// Flushes every window overlapping guest `[start, end)`; returns whether any did.
    pub fn flush_range(
        &self,
        mm: &AddressSpace,
        mem: &mut GuestMemory,
        start: u64,
        end: u64,
    ) -> bool {
        let mut any = false;
        for w in self.list.iter().filter(|w| w.overlaps(start, end)) {
            w.flush(mm, mem);
            any = true;
        }
        any
    }

    /// Refreshes every window overlapping guest `[start, end)` from its file.
    pub fn refresh_range(&self, mm: &AddressSpace, mem: &mut GuestMemory, start: u64, end: u64) {
        for w in self.list.iter().filter(|w| w.overlaps(start, end)) {
            w.refresh(mm, mem);
        }
    }

    /// Guest `[start, end)` is no longer a shared mapping (munmap, MAP_FIXED over it):
    /// windows are cut, keeping the parts on either side.
    pub fn forget(&mut self, start: u64, end: u64) {
        let mut kept = Vec::with_capacity(self.list.len());
        for w in self.list.drain(..) {
            if !w.overlaps(start, end) {
                kept.push(w);
                continue;
            }
            if w.start < start {
                kept.push(Window {
                    end: start,
                    file: w.file.clone(),
                    ..w
                });
            }
            if w.end > end {
                kept.push(Window {
                    start: end,
                    offset: w.offset + (end - w.start),
                    file: w.file.clone(),
                    ..w
                });
            }
        }
        self.list = kept;
    }

    /// mremap moved guest `[old, old + old_len)` to `[dest, dest + new_len)`: the kept part
    /// of each window moves with it, and a window that ended at the old end grows with the
    /// mapping (the caller refreshes the new range so the grown part shows the file).
    pub fn moved(&mut self, old: u64, old_len: u64, dest: u64, new_len: u64) {
        let old_end = old.saturating_add(old_len);
        let keep_end = old.saturating_add(old_len.min(new_len));
        let mut out = Vec::with_capacity(self.list.len());
        for w in self.list.drain(..) {
            if !w.overlaps(old, old_end) {
                out.push(w);
                continue;
            }
            // Parts outside the remapped range stay where they are.
            if w.start < old {
                out.push(Window {
                    end: old,
                    file: w.file.clone(),
                    ..w
                });
            }
            if w.end > old_end {
                out.push(Window {
                    start: old_end,
                    offset: w.offset + (old_end - w.start),
                    file: w.file.clone(),
                    ..w
                });
            }
            let (s, e) = (w.start.max(old), w.end.min(keep_end));
            if s >= e {
                continue;
            }
            let grows = new_len > old_len && w.end >= old_end;
            out.push(Window {
                start: dest + (s - old),
                end: if grows {
                    dest + new_len
                } else {
                    dest + (e - old)
                },
                offset: w.offset + (s - w.start),
                file: w.file.clone(),
            });
        }
        self.list = out;
    }

    /// A copy pointing at the copied inodes, through `map` (see [`crate::fs`]).
    pub fn deep_clone(&self, map: &mut CloneMap) -> Windows {
        Windows {
            list: self
                .list
                .iter()
                .map(|w| Window {
                    file: w.file.deep_clone(map),
                    ..*w
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::scratch::{OpenHow, ScratchFs};

    fn file(fs: &mut ScratchFs, name: &str) -> Arc<dyn File> {
        let how = OpenHow {
            create: true,
            mode: 0o644,
            ..OpenHow::default()
        };
        fs.open("/tmp", name, how, 1 << 20).unwrap()
    }

    fn spans(w: &Windows) -> Vec<(u64, u64, u64)> {
        let mut v: Vec<_> = w.list.iter().map(|w| (w.start, w.end, w.offset)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn forget_and_moved_cut_and_shift_windows() {
        let mut fs = ScratchFs::default();
        let f = file(&mut fs, "/tmp/a");
        let mut w = Windows::default();
        w.add(0x10000, 0x14000, 0x2000, f.clone()).unwrap();
        w.forget(0x11000, 0x12000);
        assert_eq!(
            spans(&w),
            vec![(0x10000, 0x11000, 0x2000), (0x12000, 0x14000, 0x4000)]
        );
        // The tail window moves to 0x40000 and grows by a page.
        w.moved(0x12000, 0x2000, 0x40000, 0x3000);
        assert_eq!(
            spans(&w),
            vec![(0x10000, 0x11000, 0x2000), (0x40000, 0x43000, 0x4000)]
        );
        // Shrinking in place drops the end.
        w.moved(0x40000, 0x3000, 0x40000, 0x1000);
        assert_eq!(
            spans(&w),
            vec![(0x10000, 0x11000, 0x2000), (0x40000, 0x41000, 0x4000)]
        );
        w.forget(0, u64::MAX);
        assert!(w.is_empty());
    }

    #[test]
    fn only_scratch_files_have_windows_and_clones_follow_the_tree() {
        let mut fs = ScratchFs::default();
        let f = file(&mut fs, "/tmp/a");
        let g = file(&mut fs, "/tmp/a");
        assert_eq!(key(&*f), key(&*g), "two opens of one file are one inode");
        let mut w = Windows::default();
        let null: Arc<dyn File> = Arc::new(crate::fs::dev::Device::Null);
        assert_eq!(w.add(0x1000, 0x2000, 0, null), Err(MmError::Invalid));
        w.add(0x1000, 0x2000, 0, f.clone()).unwrap();
        let mut map = CloneMap::default();
        let fs2 = fs.deep_clone(&mut map);
        let w2 = w.deep_clone(&mut map);
        let copied = w2.list[0].file.clone();
        assert_ne!(key(&*copied), key(&*f), "the copy is another inode");
        // ... the same inode as the copied tree's file.
        let mut fs2 = fs2;
        let h = fs2
            .open("/tmp", "/tmp/a", OpenHow::default(), 1 << 20)
            .unwrap();
        assert_eq!(key(&*copied), key(&*h));
        for _ in 0..MAX_WINDOWS - 1 {
            w.add(0x1000, 0x2000, 0, f.clone()).unwrap();
        }
        assert_eq!(w.check_room(), Err(MmError::NoMemory));
    }
}
