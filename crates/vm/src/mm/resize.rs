//! The calls that resize or rework existing mappings: madvise, mremap, brk.

use super::pagetable::{ADDR_MASK, P, SW_FOREIGN, SW_FRAME};
use super::vma::{Backing, Special, Vma, PROT_READ, PROT_WRITE};
use super::{flags, user_range, AddressSpace, MmError, Result, USER_END, USER_MIN};
use crate::layout::{align_up, PAGE_SIZE};
use crate::memory::GuestMemory;

impl AddressSpace {
    /// madvise: DONTNEED/FREE make anonymous pages read as zero (file pages read the
    /// file again); other known advice is accepted and ignored.
    pub fn madvise(
        &mut self,
        mem: &mut GuestMemory,
        addr: u64,
        len: u64,
        advice: u64,
    ) -> Result<()> {
        const DONTNEED: u64 = 4;
        const FREE: u64 = 8;
        if len == 0 && addr.is_multiple_of(PAGE_SIZE) {
            return Ok(());
        }
        let end = user_range(addr, len)?;
        match advice {
            0..=4 | 8..=23 | 25 => {}
            100 | 101 => return Err(MmError::Perm),
            _ => return Err(MmError::Invalid),
        }
        if !self.vmas.covers(addr, end) {
            return Err(MmError::NoMemory);
        }
        if !matches!(advice, DONTNEED | FREE) {
            return Ok(());
        }
        let pt = self.pt(mem)?;
        let parts: Vec<Vma> = self.vmas.overlapping(addr, end).cloned().collect();
        for v in parts {
            let (s, e) = (v.start.max(addr), v.end.min(end));
            let mut frames = Vec::new();
            pt.for_each_leaf(mem, s, e, &mut |_, le| {
                if le & (P | SW_FRAME) != 0 && le & SW_FOREIGN == 0 {
                    frames.push(le & ADDR_MASK);
                }
            });
            // One call per run of contiguous frames: V8 drops its whole 512 MiB code range
            // (131,072 eagerly allocated, mostly contiguous frames) right after committing
            // it, and a madvise per page cost ~0.4 s of host time.
            for (start, len) in frame_runs(&frames) {
                mem.phys_zero(start, len)?;
            }
            if let Backing::File { .. } = v.backing {
                // A private file page goes back to the file's bytes; kvmjs keeps no file
                // handle per mapping, so it reads as zero (documented gap).
            }
        }
        Ok(())
    }

    /// mremap (MREMAP_MAYMOVE and MREMAP_FIXED; the old range must be one mapping).
    #[allow(clippy::too_many_arguments)]
    pub fn mremap(
        &mut self,
        mem: &mut GuestMemory,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
        budget: u64,
    ) -> Result<u64> {
        if flags & !(flags::MREMAP_MAYMOVE | flags::MREMAP_FIXED) != 0
            || (flags & flags::MREMAP_FIXED != 0 && flags & flags::MREMAP_MAYMOVE == 0)
            || !old.is_multiple_of(PAGE_SIZE)
            || new_len == 0
        {
            return Err(MmError::Invalid);
        }
        let old_end = user_range(old, old_len.max(1))?;
        let new_len = align_up(new_len.min(USER_END), PAGE_SIZE);
        let vma = self.vmas.find(old).cloned().ok_or(MmError::Fault)?;
        if vma.end < old_end || old < USER_MIN {
            return Err(MmError::Fault);
        }
        let old_len = old_end - old;
        if let Backing::File { offset, .. } = &vma.backing {
            // Linux: EINVAL when the grown mapping's file offsets would pass the largest.
            let at = offset.saturating_add(old - vma.start);
            if at
                .checked_add(new_len)
                .is_none_or(|e| e > super::shared::MAX_FILE_END)
            {
                return Err(MmError::Invalid);
            }
        }
        if flags & flags::MREMAP_FIXED == 0 {
            if new_len < old_len {
                self.munmap(mem, old + new_len, old_len - new_len)?;
            }
            if new_len <= old_len {
                return Ok(old);
            }
            let grow_end = old.checked_add(new_len).filter(|&e| e <= USER_END);
            if let Some(ge) = grow_end {
                if old_end == vma.end && self.vmas.is_free(old_end, ge) {
                    self.apply(mem, old_end, ge, vma.prot, budget)?;
                    let mut v = vma.clone();
                    v.start = old_end;
                    v.end = ge;
                    if let Backing::File { offset, .. } = &mut v.backing {
                        *offset += old_end - vma.start;
                    }
                    self.vmas.insert(v);
                    return Ok(old);
                }
            }
            if flags & flags::MREMAP_MAYMOVE == 0 {
                return Err(MmError::NoMemory);
            }
        }
        let keep = old_len.min(new_len);
        let extra = new_len - keep;
        let dest = if flags & flags::MREMAP_FIXED != 0 {
            let de = user_range(new_addr, new_len)?;
            if new_addr < USER_MIN || (new_addr < old_end && de > old) {
                return Err(MmError::Invalid);
            }
            // The budget is checked before the destination is unmapped, so a refused
            // call leaves it as it was.
            if extra > budget {
                return Err(MmError::NoMemory);
            }
            self.munmap(mem, new_addr, new_len)?;
            new_addr
        } else {
            if extra > budget {
                return Err(MmError::NoMemory);
            }
            self.place(0, new_len)?
        };
        // Move the leaves of the kept part (retargeting: the old addresses lose them).
        let pt = self.pt(mem)?;
        let mut moved = Vec::new();
        pt.for_each_leaf(mem, old, old + keep, &mut |va, e| moved.push((va, e)));
        for (va, e) in moved {
            pt.set(mem, &mut self.frames, va, 0)?;
            if e & P != 0 {
                mem.note_retired(e & ADDR_MASK);
            }
            mem.note_changed(e & ADDR_MASK);
            pt.set(mem, &mut self.frames, dest + (va - old), e)?;
        }
        let mut v = vma.clone();
        let shift = old - vma.start;
        v.start = dest;
        v.end = dest + new_len;
        if let Backing::File { offset, .. } = &mut v.backing {
            *offset += shift;
        }
        // The part of the old range past what moved is freed.
        self.release(mem, old + keep, old_end)?;
        self.vmas.remove(old, old_end);
        self.vmas.insert(v);
        if extra > 0 {
            self.apply(mem, dest + keep, dest + new_len, vma.prot, budget)?;
        }
        Ok(dest)
    }

    /// brk: grows or shrinks the heap; returns the new (or unchanged) break.
    pub fn set_brk(&mut self, mem: &mut GuestMemory, want: u64, budget: u64) -> u64 {
        if want < self.brk_start || want > USER_END {
            return self.brk;
        }
        let (old_end, new_end) = (align_up(self.brk, PAGE_SIZE), align_up(want, PAGE_SIZE));
        if new_end > old_end {
            if !self.vmas.is_free(old_end, new_end) {
                return self.brk;
            }
            if self
                .apply(mem, old_end, new_end, PROT_READ | PROT_WRITE, budget)
                .is_err()
            {
                // Frames handed out before the failure stay with the (unchanged) break's
                // page tables: release them.
                let _ = self.release(mem, old_end, new_end);
                return self.brk;
            }
            let mut v = Vma::anon(old_end, new_end, PROT_READ | PROT_WRITE);
            v.special = Special::Heap;
            self.vmas.insert(v);
        } else if new_end < old_end {
            if self.release(mem, new_end, old_end).is_err() {
                return self.brk;
            }
            self.vmas.remove(new_end, old_end);
        }
        self.brk = want;
        want
    }
}
/// Groups frames (in mapping order) into `(start, bytes)` runs of adjacent frames.
pub(super) fn frame_runs(frames: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &f in frames {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == f => *len += PAGE_SIZE,
            _ => runs.push((f, PAGE_SIZE)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_frames_form_runs() {
        let f = [0x1000, 0x2000, 0x3000, 0x9000, 0x8000, 0xa000];
        assert_eq!(
            frame_runs(&f),
            vec![
                (0x1000, 0x3000),
                (0x9000, 0x1000),
                (0x8000, 0x1000),
                (0xa000, 0x1000)
            ]
        );
        assert!(frame_runs(&[]).is_empty());
    }
}
