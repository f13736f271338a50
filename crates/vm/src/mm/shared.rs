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
//! looks only at pages that have frames (a flush only within the file's size), and touches
//! only pages whose bytes differ, so an unchanged window dirties nothing. A guest bounds
//! that work by the memory budget: all windows together, PROT_NONE ones too, may span at
//! most max_memory, and at most [`MAX_WINDOWS`] windows exist.
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
use super::vma::PROT_WRITE;
use super::{AddressSpace, MmError, Result};
use crate::fs::scratch::ScratchFile;
use crate::fs::{CloneMap, File};
use crate::layout::{align_up, PAGE_SIZE};
use crate::memory::GuestMemory;
use std::sync::Arc;

/// Most shared file mappings a process may hold: every read or write of a mapped file
/// walks them. A call that would need more (a new window, or a munmap, MAP_FIXED or
/// mremap cutting one in two) gets ENOMEM, as Linux does at `vm.max_map_count`.
pub const MAX_WINDOWS: usize = 1024;

/// Largest file offset a window may reach (Linux's MAX_LFS_FILESIZE): keeps every
/// `offset + length` far from overflow.
pub const MAX_FILE_END: u64 = i64::MAX as u64;

/// One shared mapping of a scratch file.
#[derive(Clone, Debug)]
struct Window {
    /// Guest range (page-aligned, end exclusive).
    start: u64,
    end: u64,
    /// File offset of `start`.
    offset: u64,
    /// The description was opened for writing: mprotect may add PROT_WRITE.
    may_write: bool,
    /// The file (a [`ScratchFile`]).
    file: Arc<dyn File>,
}

/// The process's shared scratch-file mappings.
#[derive(Debug, Default)]
pub struct Windows {
    list: Vec<Window>,
}

#[cfg(test)]
thread_local! {
    /// Pages flushes and refreshes looked at on this thread (tests bound one call's work).
    static VISITED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Pages flushes and refreshes looked at so far on this thread.
#[cfg(test)]
pub fn visited() -> u64 {
    VISITED.with(std::cell::Cell::get)
}

#[cfg(test)]
fn count(pages: u64) {
    VISITED.with(|v| v.set(v.get() + pages));
}

#[cfg(not(test))]
fn count(_: u64) {}

/// The inode `f` is, if it is a scratch file.
fn key(f: &dyn File) -> Option<usize> {
    f.as_any()
        .downcast_ref::<ScratchFile>()
        .map(ScratchFile::inode_key)
}

impl AddressSpace {
    /// The frames behind `[start, end)` as `(va, frame)`, accessible or not (host rights).
    /// Walks only the page tables that exist: a huge window with a few frames costs a few
    /// steps, never one per page of its range.
    fn frames_in(&self, mem: &GuestMemory, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if let Some(pt) = self.pt {
            pt.for_each_leaf(mem, start, end, &mut |va, e| {
                if e & (P | SW_FRAME) != 0 {
                    out.push((va, e & ADDR_MASK));
                }
            });
        }
        out
    }

    /// Whether nothing is mapped in `[start, end)` (a failed MAP_FIXED or MREMAP_FIXED
    /// that already unmapped its destination).
    pub fn range_is_free(&self, start: u64, end: u64) -> bool {
        self.vmas.is_free(start, end)
    }
}

impl Window {
    fn len(&self) -> u64 {
        self.end - self.start
    }

    /// The file offset of guest `va` (inside the window; offsets end by [`MAX_FILE_END`]).
    fn pos(&self, va: u64) -> u64 {
        self.offset.saturating_add(va - self.start)
    }

    /// Guest bytes -> file, within the file's size, page by page where they differ.
    /// Returns the pages looked at.
    fn flush(&self, mm: &AddressSpace, mem: &mut GuestMemory) -> u64 {
        // Host copies into guest memory that span pages land at the next flush.
        mem.flush();
        let size = self.file.size();
        if size <= self.offset {
            return 0;
        }
        let stop = self.end.min(self.start.saturating_add(size - self.offset));
        let frames = mm.frames_in(mem, self.start, stop);
        let mut theirs = [0u8; PAGE_SIZE as usize];
        for &(va, frame) in &frames {
            let n = (stop - va).min(PAGE_SIZE) as usize;
            let pos = self.pos(va);
            if let Ok(ours) = mem.phys_slice(frame, n as u64) {
                let got = self.file.read(&mut theirs[..n], pos, true).unwrap_or(0);
                if got != n || theirs[..n] != *ours {
                    // Within the file's size, so no growth; a hole may need a chunk and
                    // fail with ENOSPC: the stores are lost, as on a full disk.
                    let _ = self.file.write(ours, pos, false);
                }
            }
        }
        frames.len() as u64
    }

    /// File -> guest bytes (zeros past the end), for the pages that have frames (the
    /// others get theirs, and the file's bytes, when mprotect or mremap gives them).
    /// Returns the pages looked at.
    fn refresh(&self, mm: &AddressSpace, mem: &mut GuestMemory) -> u64 {
        mem.flush();
        let size = self.file.size();
        let frames = mm.frames_in(mem, self.start, self.end);
        let mut theirs = [0u8; PAGE_SIZE as usize];
        for &(va, frame) in &frames {
            let pos = self.pos(va);
            let got = if pos < size {
                self.file.read(&mut theirs, pos, true).unwrap_or(0)
            } else {
                0
            };
            theirs[got..].fill(0);
            let same = mem
                .phys_slice(frame, PAGE_SIZE)
                .is_ok_and(|ours| *ours == theirs);
            if !same {
                let _ = mem.phys_write(frame, &theirs);
            }
        }
        frames.len() as u64
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

/// How many windows `list` has and the bytes they span.
fn total(list: &[Window]) -> (usize, u64) {
    (list.len(), list.iter().map(Window::len).sum())
}

/// `list` without guest `[start, end)`: windows are cut, keeping the parts on either side.
fn cut(list: &[Window], start: u64, end: u64) -> Vec<Window> {
    let mut kept = Vec::with_capacity(list.len() + 1);
    for w in list {
        if !w.overlaps(start, end) {
            kept.push(w.clone());
            continue;
        }
        if w.start < start {
            kept.push(Window {
                end: start,
                ..w.clone()
            });
        }
        if w.end > end {
            kept.push(Window {
                start: end,
                offset: w.pos(end),
                ..w.clone()
            });
        }
    }
    kept
}

/// `list` after mremap moved guest `[old, old + old_len)` to `[dest, dest + new_len)`.
fn shifted(list: &[Window], old: u64, old_len: u64, dest: u64, new_len: u64) -> Vec<Window> {
    let old_end = old.saturating_add(old_len);
    let keep_end = old.saturating_add(old_len.min(new_len));
    let mut out = Vec::with_capacity(list.len() + 2);
    for w in list {
        if !w.overlaps(old, old_end) {
            out.push(w.clone());
            continue;
        }
        // Parts outside the remapped range stay where they are.
        out.extend(cut(std::slice::from_ref(w), old, old_end));
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
            offset: w.pos(s),
            ..w.clone()
        });
    }
    out
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

    /// Guest bytes all windows span, mapped accessible or not.
    pub fn bytes(&self) -> u64 {
        total(&self.list).1
    }

    /// Whether `count` windows of `bytes` in all stay within [`MAX_WINDOWS`] and `cap`
    /// bytes (a call that makes neither grow always may).
    fn fits(&self, count: usize, bytes: u64, cap: u64) -> Result<()> {
        if count > MAX_WINDOWS.max(self.list.len()) || (bytes > cap && bytes > self.bytes()) {
            return Err(MmError::NoMemory);
        }
        Ok(())
    }

    /// Checked before a shared mapping of `len` bytes at file `offset` is made (replacing
    /// `fixed`, a MAP_FIXED range, if any), so a refused call changes nothing: ENOMEM past
    /// [`MAX_WINDOWS`] or `cap` bytes of windows (PROT_NONE ones too: every flush and
    /// refresh walks them), EOVERFLOW past [`MAX_FILE_END`].
    pub fn check_map(
        &self,
        fixed: Option<(u64, u64)>,
        offset: u64,
        len: u64,
        cap: u64,
    ) -> Result<()> {
        let len = align_up(len.min(1 << 48), PAGE_SIZE);
        if offset.checked_add(len).is_none_or(|e| e > MAX_FILE_END) {
            return Err(MmError::Overflow);
        }
        let (count, bytes) = match fixed {
            Some((s, e)) => total(&cut(&self.list, s, e)),
            None => (self.list.len(), self.bytes()),
        };
        self.fits(count + 1, bytes.saturating_add(len), cap)
    }

    /// Checked before munmap or MAP_FIXED ends guest `[start, end)`: cutting a window in
    /// two past [`MAX_WINDOWS`] is ENOMEM.
    pub fn check_forget(&self, start: u64, end: u64) -> Result<()> {
        if self.list.iter().any(|w| w.start < start && w.end > end) {
            let (count, bytes) = total(&cut(&self.list, start, end));
            self.fits(count, bytes, u64::MAX)?;
        }
        Ok(())
    }

    /// Checked before mremap of guest `[old, old + old_len)` to `new_len` bytes (after
    /// ending `fixed`, an MREMAP_FIXED destination): ENOMEM past [`MAX_WINDOWS`] or `cap`
    /// bytes, EINVAL if a grown window would reach past [`MAX_FILE_END`].
    pub fn check_remap(
        &self,
        fixed: Option<(u64, u64)>,
        old: u64,
        old_len: u64,
        new_len: u64,
        cap: u64,
    ) -> Result<()> {
        if !self
            .list
            .iter()
            .any(|w| w.overlaps(old, old.saturating_add(old_len)))
        {
            // Nothing moves; a destination inside a window still cuts it.
            return match fixed {
                Some((s, e)) => self.check_forget(s, e),
                None => Ok(()),
            };
        }
        let list = match fixed {
            Some((s, e)) => cut(&self.list, s, e),
            None => self.list.clone(),
        };
        // Where it lands changes no count, size or offset.
        let after = shifted(&list, old, old_len, old, new_len);
        if after.iter().any(|w| {
            w.offset
                .checked_add(w.len())
                .is_none_or(|e| e > MAX_FILE_END)
        }) {
            return Err(MmError::Invalid);
        }
        let (count, bytes) = total(&after);
        self.fits(count, bytes, cap)
    }

    /// Checked before mprotect of guest `[start, end)` to `prot`: a window of a
    /// description not open for writing cannot become writable (EACCES, as Linux).
    pub fn check_protect(&self, start: u64, end: u64, prot: u64) -> Result<()> {
        let write = prot & u64::from(PROT_WRITE) != 0;
        if write
            && self
                .list
                .iter()
                .any(|w| !w.may_write && w.overlaps(start, end))
        {
            return Err(MmError::Access);
        }
        Ok(())
    }

    /// Records a shared mapping of `file` at guest `[start, end)` from file `offset`;
    /// `may_write`: its description is open for writing. [`Self::check_map`] came first.
    pub fn add(
        &mut self,
        start: u64,
        end: u64,
        offset: u64,
        may_write: bool,
        file: Arc<dyn File>,
    ) -> Result<()> {
        if self.list.len() >= MAX_WINDOWS {
            return Err(MmError::NoMemory);
        }
        if key(&*file).is_none()
            || start >= end
            || offset
                .checked_add(end - start)
                .is_none_or(|e| e > MAX_FILE_END)
        {
            return Err(MmError::Invalid);
        }
        self.list.push(Window {
            start,
            end,
            offset,
            may_write,
            file,
        });
        Ok(())
    }

    /// Flushes the windows of `file`; returns whether it has any.
    pub fn flush_file(&self, mm: &AddressSpace, mem: &mut GuestMemory, file: &dyn File) -> bool {
        let Some(k) = key(file) else { return false };
        let mut any = false;
        for w in self.list.iter().filter(|w| key(&*w.file) == Some(k)) {
            count(w.flush(mm, mem));
            any = true;
        }
        any
    }

    /// Refreshes the windows of `file` from it; returns whether it has any.
    pub fn refresh_file(&self, mm: &AddressSpace, mem: &mut GuestMemory, file: &dyn File) -> bool {
        let Some(k) = key(file) else { return false };
        let mut any = false;
        for w in self.list.iter().filter(|w| key(&*w.file) == Some(k)) {
            count(w.refresh(mm, mem));
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
            count(w.flush(mm, mem));
            any = true;
        }
        any
    }

    /// Refreshes every window overlapping guest `[start, end)` from its file.
    pub fn refresh_range(&self, mm: &AddressSpace, mem: &mut GuestMemory, start: u64, end: u64) {
        for w in self.list.iter().filter(|w| w.overlaps(start, end)) {
            count(w.refresh(mm, mem));
        }
    }

    /// Guest `[start, end)` is no longer a shared mapping (munmap, MAP_FIXED over it):
    /// windows are cut, keeping the parts on either side ([`Self::check_forget`] first).
    pub fn forget(&mut self, start: u64, end: u64) {
        self.list = cut(&self.list, start, end);
    }

    /// mremap moved guest `[old, old + old_len)` to `[dest, dest + new_len)`: the kept part
    /// of each window moves with it, and a window that ended at the old end grows with the
    /// mapping (the caller refreshes the new range so the grown part shows the file;
    /// [`Self::check_remap`] first).
    pub fn moved(&mut self, old: u64, old_len: u64, dest: u64, new_len: u64) {
        self.list = shifted(&self.list, old, old_len, dest, new_len);
    }

    /// A copy pointing at the copied inodes, through `map` (see [`crate::fs`]).
    pub fn deep_clone(&self, map: &mut CloneMap) -> Windows {
        Windows {
            list: self
                .list
                .iter()
                .map(|w| Window {
                    file: w.file.deep_clone(map),
                    ..w.clone()
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
        w.add(0x10000, 0x14000, 0x2000, true, f.clone()).unwrap();
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
        assert_eq!(w.add(0x1000, 0x2000, 0, true, null), Err(MmError::Invalid));
        w.add(0x1000, 0x2000, 0, true, f.clone()).unwrap();
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
            w.add(0x1000, 0x2000, 0, true, f.clone()).unwrap();
        }
        assert_eq!(w.check_map(None, 0, 4096, u64::MAX), Err(MmError::NoMemory));
    }
}
