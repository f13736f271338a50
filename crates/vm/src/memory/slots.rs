//! Read-only file slots: large read-only file mappings (a 95 MB deno binary, libc's
//! text) are not copied into the pool. The host maps the file (MAP_PRIVATE, PROT_READ)
//! once, KVM gets it as a read-only memslot above the pool and the trap page, and the
//! guest's page tables point into it. A VM then costs only the page-cache pages the
//! guest touches, shared by every VM of the program. One slot per distinct file; the
//! registry is shared by the VMs forked from one snapshot, so a slot has the same
//! guest-physical address in all of them (their page tables are copies). Its host
//! mapping is shared too: invalidating a slot page drops it from every VM of the
//! process. It goes through write-protection where available ([`super::uffd`]), which
//! changes no VMA; mprotect splits and re-merges the shared mapping under the address
//! space's write lock, stalling every VM's host page faults meanwhile. (On 6.18 both
//! name exactly the page: a file mapping's split zaps no 2 MiB around it, measured in
//! tests/mm_shadow.rs.)

use super::uffd::{self, Uffd};
use super::Invalidation;
use crate::layout::{align_up, HUGE_PAGE, PAGE_SIZE};
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// KVM memslot numbers of file slots start here (slot 0 is the pool).
pub const FIRST_SLOT: u32 = 1;

/// One file mapped read-only into guest-physical memory.
#[derive(Debug)]
pub struct FileSlot {
    /// KVM memslot number.
    pub slot: u32,
    /// Guest-physical address of the file's first byte.
    pub gpa: u64,
    /// Bytes mapped (the file size, page-aligned).
    pub len: u64,
    /// Device and inode of the file (the key).
    pub key: (u64, u64),
    host: NonNull<u8>,
    /// The registry's userfaultfd, when this mapping is registered with it.
    uffd: Option<Arc<Uffd>>,
}

// SAFETY: the mapping is read-only for its whole life and owned by this value.
unsafe impl Send for FileSlot {}
// SAFETY: see above; nobody writes through it.
unsafe impl Sync for FileSlot {}

impl Drop for FileSlot {
    fn drop(&mut self) {
        // SAFETY: `host`/`len` describe the mapping this value created and owns; every
        // VM that registered it is gone (they hold the registry, which holds this).
        unsafe { libc::munmap(self.host.as_ptr().cast(), self.len as usize) };
    }
}

impl FileSlot {
    /// Host address of the slot's first byte (for the memslot).
    pub fn host_base(&self) -> u64 {
        self.host.as_ptr() as u64
    }

    /// Borrows `[gpa, gpa+len)`, which must lie inside the slot.
    pub fn bytes(&self, gpa: u64, len: u64) -> Option<&[u8]> {
        let off = gpa.checked_sub(self.gpa)?;
        if off.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: inside the read-only mapping, which lives as long as `self`.
        Some(unsafe {
            std::slice::from_raw_parts(self.host.as_ptr().add(off as usize), len as usize)
        })
    }

    /// Drops every KVM mapping of `[gpa, gpa+len)` (page-aligned) through the MMU
    /// notifier: write-protect and resolve, or a protection change there and back.
    pub fn invalidate(&self, gpa: u64, len: u64) -> std::io::Result<()> {
        let Some(b) = self.bytes(gpa, len) else {
            return Ok(());
        };
        // Inside this slot's read-only mapping (checked by `bytes`).
        match &self.uffd {
            Some(u) => u
                .invalidate(b.as_ptr() as u64, len)
                .map_err(std::io::Error::other),
            None => super::mprotect_round_trip(b.as_ptr() as u64, len, libc::PROT_READ),
        }
    }

    /// The invalidation mechanism of this slot.
    pub fn invalidation(&self) -> Invalidation {
        match self.uffd {
            Some(_) => Invalidation::WriteProtect,
            None => Invalidation::Mprotect,
        }
    }
}

/// The file slots of a program's VMs.
#[derive(Debug)]
pub struct FileSlots {
    /// Where the next slot goes (2 MiB-aligned, above the pool and its trap page).
    next_gpa: u64,
    /// Highest guest-physical address + 1 the CPU can address (MAXPHYADDR).
    limit: u64,
    /// Most slots KVM allows.
    max: usize,
    slots: Vec<Arc<FileSlot>>,
    /// Registers the slots for write-protection: opened at the first slot when the probe
    /// found write-protection works; `None` before, or when it does not (mprotect).
    uffd: Option<Arc<Uffd>>,
    /// Set: slots made from now on use mprotect (tests, comparisons).
    mprotect_only: bool,
}

/// Shared registry.
pub type SharedSlots = Arc<Mutex<FileSlots>>;

impl FileSlots {
    /// A registry for a pool of `pool` bytes, with `limit` = 1 << MAXPHYADDR and at most
    /// `max` KVM memslots.
    pub fn new(pool: u64, limit: u64, max: usize) -> SharedSlots {
        Arc::new(Mutex::new(FileSlots {
            next_gpa: align_up(pool, HUGE_PAGE) + HUGE_PAGE,
            limit,
            max,
            slots: Vec::new(),
            uffd: None,
            mprotect_only: false,
        }))
    }

    /// Slots made from now on use mprotect invalidation (the fallback).
    pub fn use_mprotect_invalidation(&mut self) {
        self.mprotect_only = true;
    }

    /// The userfaultfd a new slot registers with, if write-protection works.
    fn uffd(&mut self) -> Option<Arc<Uffd>> {
        if self.mprotect_only || uffd::write_protect_works().is_err() {
            return None;
        }
        if self.uffd.is_none() {
            match Uffd::open() {
                Ok(u) => self.uffd = Some(Arc::new(u)),
                Err(e) => {
                    tracing::debug!("file slot invalidation: mprotect ({e})");
                    self.mprotect_only = true;
                }
            }
        }
        self.uffd.clone()
    }

    /// The slot of the file `key`, mapping `file` (`size` bytes) on first use; `None`
    /// when no slot can be made (the caller copies instead).
    pub fn get_or_map(
        &mut self,
        file: &std::fs::File,
        size: u64,
        key: (u64, u64),
    ) -> Option<Arc<FileSlot>> {
        if let Some(s) = self.slots.iter().find(|s| s.key == key && s.len >= size) {
            return Some(s.clone());
        }
        let len = align_up(size, PAGE_SIZE);
        let gpa = self.next_gpa;
        let end = gpa.checked_add(align_up(len, HUGE_PAGE))?;
        if len == 0 || end > self.limit || self.slots.len() + 1 >= self.max {
            return None;
        }
        // SAFETY: a new private read-only mapping of an open file; no existing memory is
        // touched. Bytes past the end of the file in its last page read as zero.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // Write-protection of a file mapping needs the asynchronous mode (the probe's);
        // a slot that cannot be registered uses mprotect.
        let uffd = self.uffd().filter(|u| match u.register(p as u64, len) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("file slot invalidation: mprotect for this slot ({e})");
                false
            }
        });
        let slot = Arc::new(FileSlot {
            slot: FIRST_SLOT + self.slots.len() as u32,
            gpa,
            len,
            key,
            host: NonNull::new(p.cast())?,
            uffd,
        });
        self.next_gpa = end;
        self.slots.push(slot.clone());
        Some(slot)
    }

    /// Whether no slot can ever be made (tests; hosts without read-only memslots).
    pub fn disabled(&self) -> bool {
        self.max <= 1
    }

    /// The slot holding guest-physical `gpa`.
    pub fn find(&self, gpa: u64) -> Option<Arc<FileSlot>> {
        self.slots
            .iter()
            .find(|s| gpa >= s.gpa && gpa < s.gpa + s.len)
            .cloned()
    }

    /// All slots, oldest first (a slot is never removed, so a prefix stays the same).
    pub fn all(&self) -> &[Arc<FileSlot>] {
        &self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slot_per_file_above_the_pool() {
        let path = std::env::temp_dir().join(format!("kvmjs-slot-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 5000]).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let reg = FileSlots::new(64 << 20, 1 << 48, 100);
        let mut r = reg.lock().unwrap();
        let a = r.get_or_map(&f, 5000, (1, 2)).unwrap();
        assert_eq!(a.gpa, (64 << 20) + HUGE_PAGE);
        assert_eq!(a.len, 8192);
        assert!(Arc::ptr_eq(&a, &r.get_or_map(&f, 5000, (1, 2)).unwrap()));
        let b = r.get_or_map(&f, 5000, (1, 3)).unwrap();
        assert_eq!(b.gpa, a.gpa + HUGE_PAGE);
        assert_eq!(a.bytes(a.gpa + 4990, 10).unwrap(), &[7; 10]);
        assert_eq!(
            a.bytes(a.gpa + 5000, 4).unwrap(),
            &[0; 4],
            "zero past the end"
        );
        assert!(a.bytes(a.gpa + 8190, 4).is_none());
        assert!(r.find(b.gpa + 100).is_some_and(|s| s.slot == b.slot));
        assert!(r.find(b.gpa + 8192).is_none());
        let best = if uffd::write_protect_works().is_ok() {
            Invalidation::WriteProtect
        } else {
            Invalidation::Mprotect
        };
        assert_eq!(a.invalidation(), best);
        r.use_mprotect_invalidation();
        let c = r.get_or_map(&f, 5000, (1, 4)).unwrap();
        assert_eq!(c.invalidation(), Invalidation::Mprotect);
        for s in [&a, &c] {
            // One page never read (no host page-table entry yet), one read.
            s.invalidate(s.gpa + 4096, 4096).unwrap();
            s.invalidate(s.gpa, 8192).unwrap();
            assert_eq!(
                s.bytes(s.gpa, 1).unwrap(),
                &[7],
                "contents survive invalidation"
            );
            assert_eq!(s.bytes(s.gpa + 4096, 1).unwrap(), &[7]);
        }
        std::fs::remove_file(&path).ok();
    }
}
