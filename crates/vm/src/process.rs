//! What Linux would keep in the guest's process: program break, mappings, file
//! descriptors, signal dispositions, FS base. All of it is plain data, cloned into the
//! snapshot and cloned back on reset (only when a syscall changed it).

use crate::layout::{self, align_up, PAGE_SIZE};
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

/// First-fit allocator over a guest address range, for mmap.
#[derive(Clone, Debug)]
pub struct AddressAllocator {
    start: u64,
    end: u64,
    free: BTreeMap<u64, u64>,
    free_bytes: u64,
}

impl AddressAllocator {
    /// Manages `[start, end)`, all free.
    pub fn new(start: u64, end: u64) -> Self {
        let mut free = BTreeMap::new();
        if end > start {
            free.insert(start, end - start);
        }
        AddressAllocator {
            start,
            end,
            free,
            free_bytes: end.saturating_sub(start),
        }
    }

    /// Bytes allocated.
    pub fn used(&self) -> u64 {
        (self.end - self.start) - self.free_bytes
    }

    /// Whether `[start, start+len)` lies inside the managed range.
    pub fn contains(&self, start: u64, len: u64) -> bool {
        start >= self.start && start.checked_add(len).is_some_and(|e| e <= self.end)
    }

    /// Whether all of `[start, start+len)` is free.
    pub fn is_free(&self, start: u64, len: u64) -> bool {
        self.free
            .range(..=start)
            .next_back()
            .is_some_and(|(&s, &l)| s + l >= start + len)
    }

    /// Allocates `len` bytes at the lowest free address.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let start = self.free.iter().find(|(_, &l)| l >= len).map(|(&s, _)| s)?;
        self.take(start, len);
        Some(start)
    }

    /// Marks `[start, start+len)` allocated, whatever it was before.
    pub fn take(&mut self, start: u64, len: u64) {
        let end = start + len;
        let hits: Vec<(u64, u64)> = self
            .free
            .range(..end)
            .rev()
            .take_while(|(&s, &l)| s + l > start)
            .map(|(&s, &l)| (s, l))
            .collect();
        for (s, l) in hits {
            self.free.remove(&s);
            self.free_bytes -= l;
            if s < start {
                self.free.insert(s, start - s);
                self.free_bytes += start - s;
            }
            if s + l > end {
                self.free.insert(end, s + l - end);
                self.free_bytes += s + l - end;
            }
        }
    }

    /// Returns `[start, start+len)` to the free pool (parts already free are fine).
    pub fn release(&mut self, start: u64, len: u64) {
        let (mut s0, mut e0) = (start.max(self.start), (start + len).min(self.end));
        if s0 >= e0 {
            return;
        }
        let hits: Vec<(u64, u64)> = self
            .free
            .range(..=e0)
            .rev()
            .take_while(|(&s, &l)| s + l >= s0)
            .map(|(&s, &l)| (s, l))
            .collect();
        for (s, l) in hits {
            self.free.remove(&s);
            self.free_bytes -= l;
            s0 = s0.min(s);
            e0 = e0.max(s + l);
        }
        self.free.insert(s0, e0 - s0);
        self.free_bytes += e0 - s0;
    }
}

/// What a guest file descriptor refers to.
#[derive(Clone, Debug)]
pub enum FdKind {
    /// Standard input: always at end of file.
    Stdin,
    /// Standard output, forwarded to the host log.
    Stdout,
    /// Standard error, forwarded to the host log.
    Stderr,
    /// A read-only host file under an allowed path.
    File {
        /// The open host file (shared with the snapshot's table).
        file: Arc<File>,
        /// Its path as the guest named it.
        path: String,
        /// Our own offset: reads use pread, so a reset only has to restore this number.
        offset: u64,
        /// Whether it is a directory.
        dir: bool,
    },
}

/// Most open files a guest may hold.
pub const MAX_FDS: usize = 256;

/// The guest's file-descriptor table.
#[derive(Clone, Debug)]
pub struct FdTable {
    fds: Vec<Option<FdKind>>,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable {
            fds: vec![
                Some(FdKind::Stdin),
                Some(FdKind::Stdout),
                Some(FdKind::Stderr),
            ],
        }
    }
}

impl FdTable {
    /// Looks up a descriptor.
    pub fn get(&self, fd: u64) -> Option<&FdKind> {
        self.fds.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    /// Looks up a descriptor mutably.
    pub fn get_mut(&mut self, fd: u64) -> Option<&mut FdKind> {
        self.fds.get_mut(usize::try_from(fd).ok()?)?.as_mut()
    }

    /// Installs `kind` at the lowest free number.
    pub fn insert(&mut self, kind: FdKind) -> Option<u64> {
        if let Some(i) = self.fds.iter().position(Option::is_none) {
            self.fds[i] = Some(kind);
            return Some(i as u64);
        }
        if self.fds.len() >= MAX_FDS {
            return None;
        }
        self.fds.push(Some(kind));
        Some(self.fds.len() as u64 - 1)
    }

    /// Closes a descriptor; false if it was not open.
    pub fn close(&mut self, fd: u64) -> bool {
        match usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)) {
            Some(slot @ Some(_)) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }
}

/// Signal state: recorded so the calls succeed; kvmjs never delivers signals.
#[derive(Clone, Debug)]
pub struct Signals {
    /// Raw kernel `struct sigaction` (32 bytes) per signal 1..=64.
    pub actions: Vec<[u8; 32]>,
    /// Blocked set.
    pub mask: u64,
    /// Raw `stack_t` of sigaltstack.
    pub altstack: [u8; 24],
}

impl Default for Signals {
    fn default() -> Self {
        let mut altstack = [0u8; 24];
        altstack[8..12].copy_from_slice(&2u32.to_le_bytes()); // SS_DISABLE
        Signals {
            actions: vec![[0; 32]; 65],
            mask: 0,
            altstack,
        }
    }
}

/// The emulated process.
#[derive(Clone, Debug)]
pub struct Process {
    /// Initial program break.
    pub brk_start: u64,
    /// Current program break.
    pub brk: u64,
    /// Highest program break.
    pub brk_max: u64,
    /// Anonymous mappings.
    pub mmap: AddressAllocator,
    /// Where the host writes requests (reserved; not guest-allocatable).
    pub request_area: (u64, u64),
    /// Open files.
    pub fds: FdTable,
    /// Signal dispositions.
    pub signals: Signals,
    /// FS base (TLS), set through arch_prctl.
    pub fs_base: u64,
    /// Address from set_tid_address.
    pub tid_address: u64,
    /// Limit on brk + mmap bytes.
    pub max_memory: u64,
    /// Memory in use when the snapshot was taken, and the per-request allowance above it.
    pub request_memory_base: Option<(u64, u64)>,
    /// Set by any syscall that changes this struct, so a reset can skip the clone.
    pub changed: bool,
}

/// Size of the request area: 1 MiB of strings and header table, plus the body limit.
pub fn request_area_size(max_body: u64) -> u64 {
    align_up((1 << 20) + max_body, layout::HUGE_PAGE)
}

impl Process {
    /// Lays out brk, mmap and request areas for an image ending at `image_end`.
    pub fn new(image_end: u64, address_space: u64, max_memory: u64, max_body: u64) -> Self {
        let brk_start = align_up(image_end, PAGE_SIZE);
        let guard = layout::stack_guard(address_space);
        let room = guard.saturating_sub(brk_start);
        let brk_max = align_up(brk_start + (room / 4).min(1 << 30), layout::HUGE_PAGE);
        let req_size = request_area_size(max_body).min(room / 4);
        let req_start = layout::align_down(guard - req_size, layout::HUGE_PAGE);
        Process {
            brk_start,
            brk: brk_start,
            brk_max,
            mmap: AddressAllocator::new(brk_max, req_start),
            request_area: (req_start, guard),
            fds: FdTable::default(),
            signals: Signals::default(),
            fs_base: 0,
            tid_address: 0,
            max_memory,
            request_memory_base: None,
            changed: false,
        }
    }

    /// Bytes of heap and mappings in use.
    pub fn memory_used(&self) -> u64 {
        (self.brk - self.brk_start) + self.mmap.used()
    }

    /// Whether `extra` more bytes stay within max_memory and max_request_memory.
    pub fn may_grow(&self, extra: u64) -> bool {
        let after = self.memory_used().saturating_add(extra);
        if after > self.max_memory {
            return false;
        }
        match self.request_memory_base {
            Some((base, allowance)) => after <= base.saturating_add(allowance),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_first_fit_release_and_merge() {
        let mut a = AddressAllocator::new(0x1000, 0x11000);
        let x = a.alloc(0x2000).unwrap();
        let y = a.alloc(0x1000).unwrap();
        assert_eq!((x, y), (0x1000, 0x3000));
        assert_eq!(a.used(), 0x3000);
        a.release(x, 0x2000);
        assert_eq!(a.used(), 0x1000);
        assert_eq!(a.alloc(0x1000), Some(0x1000));
        a.release(0x0, 0x20000); // releasing more than was mapped is fine
        assert_eq!(a.used(), 0);
        assert!(a.is_free(0x1000, 0x10000));
        assert_eq!(a.alloc(0x20000), None);
    }

    #[test]
    fn allocator_take_splits_ranges() {
        let mut a = AddressAllocator::new(0, 0x10000);
        a.take(0x4000, 0x2000);
        assert_eq!(a.used(), 0x2000);
        assert!(!a.is_free(0x4000, 0x1000));
        assert!(a.is_free(0x6000, 0xa000));
        assert_eq!(a.alloc(0x5000), Some(0x6000));
        a.take(0x3000, 0x2000); // overlaps used and free
        assert_eq!(a.used(), 0x2000 + 0x5000 + 0x1000);
    }

    #[test]
    fn fd_table_reuses_lowest() {
        let mut t = FdTable::default();
        let f = Arc::new(File::open("/proc/self/stat").unwrap());
        let mk = || FdKind::File {
            file: f.clone(),
            path: "x".into(),
            offset: 0,
            dir: false,
        };
        assert_eq!(t.insert(mk()), Some(3));
        assert_eq!(t.insert(mk()), Some(4));
        assert!(t.close(3));
        assert!(!t.close(3));
        assert_eq!(t.insert(mk()), Some(3));
        assert!(t.get(99).is_none() && t.get(u64::MAX).is_none());
    }

    #[test]
    fn memory_limits() {
        let mut p = Process::new(0x50_0000, 256 << 20, 64 << 20, 1 << 20);
        assert!(p.may_grow(64 << 20));
        assert!(!p.may_grow((64 << 20) + 1));
        p.request_memory_base = Some((0, 1 << 20));
        assert!(!p.may_grow(2 << 20));
        assert!(p.request_area.0 > p.mmap.used());
    }
}
