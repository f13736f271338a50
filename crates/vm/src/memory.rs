//! Guest memory: one anonymous mapping that backs memslot 0 (the guest-physical pool),
//! the only place the host touches guest bytes. Every access is bounds-checked; every
//! host write is recorded in a dirty bitmap so a reset restores it just like pages the
//! guest dirtied itself. The snapshot and the reset are in [`restore`].
//!
//! Two views: `phys_*` methods take guest-physical addresses (the host's own structures:
//! page tables, system pages, frames). The guest-facing methods (`read`, `write`,
//! `slice`, ...) take guest-virtual addresses once [`GuestMemory::set_root`] names the
//! page tables, and check the guest's own permissions page by page ([`user`]).

use crate::layout::PAGE_SIZE;
use std::sync::Mutex;

mod mapping;
mod restore;
pub mod shared;
pub mod slots;
mod uffd;
mod user;
use mapping::Mapping;
pub use restore::{HotPages, MemorySnapshot, ResetStats};
pub use shared::{ShareError, SharedPages};
pub use slots::{FileSlot, FileSlots, SharedSlots};
pub use uffd::UffdError;

/// How guest memory makes KVM drop its mappings of frames ([`GuestMemory::invalidate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// userfaultfd write-protect and resolve: the MMU notifier names exactly the frames.
    WriteProtect,
    /// mprotect to read-only and back: splits the host mapping, and the split also zaps
    /// KVM's mappings of the 2 MiB-aligned range around each split point.
    Mprotect,
}

/// Errors from guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A guest pointer/length pair falls outside guest memory.
    #[error("guest range {addr:#x}+{len:#x} lies outside guest memory (size {size:#x}); the guest passed a bad pointer or length")]
    OutOfBounds {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
        /// Size of guest memory.
        size: u64,
    },
    /// mmap of guest memory failed.
    #[error("cannot map {size} bytes of guest memory: {source}{hint}")]
    Map {
        /// Requested size.
        size: u64,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// A guest pointer names memory the guest may not access this way (not mapped, a
    /// system page, or a write to a read-only mapping).
    #[error("guest range {addr:#x}+{len:#x} is not mapped for this access in the guest (unmapped, kvmjs system pages, or read-only)")]
    Fault {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// A guest pointer names memory the guest may not write (system pages, program code).
    #[error("guest range {addr:#x}+{len:#x} is not writable guest memory (unmapped, kvmjs system pages, or read-only)")]
    Protected {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, MemoryError>;

/// A dirty-page bitmap in KVM's format (bit `n` = page `n`).
#[derive(Clone, Debug)]
pub struct DirtyBitmap {
    words: Vec<u64>,
    /// Words `lo..hi` may be non-zero; keeps clearing cheap for huge address spaces.
    lo: usize,
    hi: usize,
}

impl DirtyBitmap {
    fn new(pages: usize) -> Self {
        DirtyBitmap {
            words: vec![0; pages.div_ceil(64)],
            lo: usize::MAX,
            hi: 0,
        }
    }

    fn mark_range(&mut self, first_page: u64, last_page: u64) {
        for p in first_page..=last_page {
            let w = (p / 64) as usize;
            self.words[w] |= 1 << (p % 64);
            self.lo = self.lo.min(w);
            self.hi = self.hi.max(w + 1);
        }
    }

    fn clear(&mut self) {
        if self.lo < self.hi {
            self.words[self.lo..self.hi].fill(0);
        }
        self.lo = usize::MAX;
        self.hi = 0;
    }
}

/// Guest main memory.
#[derive(Debug)]
pub struct GuestMemory {
    map: Mapping,
    host_dirty: DirtyBitmap,
    /// Backed by MAP_HUGETLB: madvise cannot drop 4 KiB pages, so zeroing writes zeros.
    hugepages: bool,
    /// Ranges guest-facing writes may not touch: the guest's page tables forbid it, so the
    /// host must not do it on the guest's behalf either (e.g. through a syscall's output).
    protected: Vec<(u64, u64)>,
    /// Never drop a page that may be mapped into the VM (see [`GuestMemory::set_keep_mapped`]).
    keep_mapped: bool,
    /// Root of the guest's page tables: guest-facing addresses are virtual. `None`:
    /// guest-facing addresses are physical (tests, and before the tables exist).
    root: Option<u64>,
    /// Frames whose present mapping changed since [`GuestMemory::take_retired`]
    /// (see [`crate::mm`] on shadow paging).
    retired: Vec<u64>,
    /// Frames whose mapping changed since the snapshot: the reset puts the tables back,
    /// which changes those mappings again.
    changed: Vec<u64>,
    /// Copies handed out by `slice`/`read_cstr` for ranges whose frames are not
    /// contiguous; freed at the next `&mut self` call.
    bounce: Mutex<Vec<Box<[u8]>>>,
    /// A `slice_mut` copy to write back: (pieces as (gpa, len), bytes).
    pending: Mutex<Option<user::Pending>>,
    /// Read-only file slots above the pool (shared by the VMs of one snapshot).
    slots: SharedSlots,
    /// The pool registered for write-protection ([`Invalidation::WriteProtect`]);
    /// `None`: mprotect.
    uffd: Option<uffd::Uffd>,
    /// Snapshot pages mapped copy-on-write over the pool ([`shared`]).
    shared: Option<std::sync::Arc<SharedPages>>,
}

impl GuestMemory {
    /// Maps `size` bytes of guest memory (not committed until touched).
    pub fn new(size: u64, hugepages: bool) -> Result<Self> {
        let map = Mapping::new(size, hugepages)?;
        let uffd = Self::register_pool(&map);
        Ok(GuestMemory {
            map,
            host_dirty: DirtyBitmap::new((size / PAGE_SIZE) as usize),
            hugepages,
            protected: Vec::new(),
            keep_mapped: false,
            root: None,
            retired: Vec::new(),
            changed: Vec::new(),
            bounce: Mutex::new(Vec::new()),
            pending: Mutex::new(None),
            // No slots until the VM says how many KVM allows (tests copy files instead).
            slots: FileSlots::new(size, 0, 0),
            uffd,
            shared: None,
        })
    }

    /// Maps the snapshot's pages over this memory copy-on-write ([`shared`]): it must
    /// hold the snapshot's contents already (the VM that took it) or be fresh (a fork).
    /// Write-protection is registered again, since the new mappings are not.
    pub fn share(
        &mut self,
        pages: &std::sync::Arc<SharedPages>,
    ) -> std::result::Result<(), ShareError> {
        self.flush();
        let wp = self.uffd.take().is_some();
        let r = self.remap_shared(pages);
        if wp {
            self.uffd = Self::register_pool(&self.map);
        }
        r
    }

    fn remap_shared(
        &mut self,
        pages: &std::sync::Arc<SharedPages>,
    ) -> std::result::Result<(), ShareError> {
        // A snapshot taken again (a listening program settling): this memory holds the
        // new snapshot's contents, so the previous snapshot's runs become anonymous with
        // the new one's bytes, and no mapping keeps the old memfd alive.
        if let Some(old) = self.shared.take() {
            for &(s, n) in old.runs() {
                if let Err(e) = pages.unshare(&self.map, s, n, true) {
                    // The runs not done still map the old memfd (through copies where
                    // written, so they read right): dropping there must still store zeros.
                    self.shared = Some(old);
                    return Err(e);
                }
            }
        }
        pages.overlay(&self.map)?;
        self.shared = Some(pages.clone());
        Ok(())
    }

    /// Host memory this VM's guest memory holds on its own, bytes: pages resident in its
    /// pool that are not shared with the snapshot (see [`shared::private_pages`]).
    pub fn private_bytes(&self) -> u64 {
        shared::private_pages(&self.map) * PAGE_SIZE
    }

    /// The snapshot pages this memory maps copy-on-write, if any.
    pub fn shared(&self) -> Option<&std::sync::Arc<SharedPages>> {
        self.shared.as_ref()
    }

    /// Makes pages at `[off, off+len)` read as zero where they may be dropped: outside
    /// shared snapshot pages, MADV_DONTNEED; inside, stores (a dropped page there would
    /// read as the snapshot's again).
    pub(super) fn discard(&self, off: usize, len: usize) {
        let ps = PAGE_SIZE as usize;
        let Some(shared) = &self.shared else {
            return self.map.discard(off, len);
        };
        for (start, n, in_run) in shared.split(off / ps, len.div_ceil(ps)) {
            if !in_run {
                self.map.discard(start * ps, n * ps);
                continue;
            }
            for page in start..start + n {
                // SAFETY: the page lies inside the mapping (callers pass ranges inside it);
                // pages already zero are left alone so that they stay shared.
                unsafe {
                    let p =
                        std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(page * ps), ps);
                    if !is_zero(p) {
                        p.fill(0);
                    }
                }
            }
        }
    }

    /// Registers the pool for write-protection when the probe found it works; `None`
    /// (mprotect) otherwise, or when this mapping cannot be registered.
    fn register_pool(map: &Mapping) -> Option<uffd::Uffd> {
        uffd::write_protect_works().ok()?;
        let r = uffd::Uffd::open().and_then(|u| {
            u.register(map.ptr.as_ptr() as u64, map.size as u64)?;
            Ok(u)
        });
        match r {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::debug!("guest memory invalidation: mprotect for this pool ({e})");
                None
            }
        }
    }

    /// The invalidation mechanism this memory uses.
    pub fn invalidation(&self) -> Invalidation {
        if self.uffd.is_some() {
            Invalidation::WriteProtect
        } else {
            Invalidation::Mprotect
        }
    }

    /// Uses mprotect from now on (the fallback, for tests and comparisons): closing the
    /// userfaultfd ends the registration.
    pub fn use_mprotect_invalidation(&mut self) {
        self.uffd = None;
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.map.size as u64
    }

    /// Host address of guest-physical 0, for the memslot.
    pub fn host_base(&self) -> u64 {
        self.map.ptr.as_ptr() as u64
    }

    /// Checks that `[addr, addr+len)` is inside guest memory and returns it as offsets.
    pub fn check(&self, addr: u64, len: u64) -> Result<usize> {
        match addr.checked_add(len) {
            Some(end) if end <= self.size() => Ok(addr as usize),
            _ => Err(MemoryError::OutOfBounds {
                addr,
                len,
                size: self.size(),
            }),
        }
    }

    /// From now on, guest-facing writes to these `[start, end)` ranges fail.
    pub fn protect(&mut self, ranges: Vec<(u64, u64)>) {
        self.protected = ranges;
    }

    /// The protected ranges.
    pub fn protected(&self) -> &[(u64, u64)] {
        &self.protected
    }

    /// With `on`, zeroing never drops (MADV_DONTNEED) a page the VM may have mapped: it
    /// writes zeros instead, so KVM's mapping of the page survives. Ephemeral VMs set it
    /// at the snapshot: a dropped page costs the next request a host fault on its first
    /// touch, and whether that happens must not be something a request can choose for a
    /// later one. The price: pages a request wrote stay allocated after the reset.
    pub fn set_keep_mapped(&mut self, on: bool) {
        self.keep_mapped = on;
    }

    /// Like [`GuestMemory::check`], and (physical view) outside the protected ranges.
    fn check_writable_phys(&self, addr: u64, len: u64) -> Result<usize> {
        let off = self.check(addr, len)?;
        if len > 0
            && self
                .protected
                .iter()
                .any(|&(s, e)| addr < e && addr + len > s)
        {
            return Err(MemoryError::Protected { addr, len });
        }
        Ok(off)
    }

    /// Writes the host's own structures (stubs, resume slots): no guest permission check.
    pub(crate) fn write_system(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        self.phys_write(addr, data)
    }

    /// Writes guest-physical bytes (no permission check), marking them dirty.
    pub fn phys_write(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        self.flush();
        let off = self.check(addr, data.len() as u64)?;
        if !data.is_empty() {
            self.host_dirty
                .mark_range(addr / PAGE_SIZE, (addr + data.len() as u64 - 1) / PAGE_SIZE);
        }
        // SAFETY: `check` proved the range lies inside the mapping; `&mut self` is exclusive.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.ptr.as_ptr().add(off), data.len())
        };
        Ok(())
    }

    /// Borrows guest-physical bytes (of the pool or of a read-only file slot).
    pub fn phys_slice(&self, addr: u64, len: u64) -> Result<&[u8]> {
        if addr >= self.size() {
            return self.slot_bytes(addr, len);
        }
        let off = self.check(addr, len)?;
        // SAFETY: `check` proved the range lies inside the mapping, which lives as long as
        // `self`; the vCPU is stopped while the host holds this borrow.
        Ok(unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(off), len as usize) })
    }

    /// The read-only file slots (crate::memory::slots).
    pub fn slots(&self) -> &SharedSlots {
        &self.slots
    }

    /// Uses `slots` (a VM's registry, or its snapshot's for a fork).
    pub fn set_slots(&mut self, slots: SharedSlots) {
        self.slots = slots;
    }

    /// Bytes of a file slot.
    fn slot_bytes(&self, addr: u64, len: u64) -> Result<&[u8]> {
        let out = || MemoryError::OutOfBounds {
            addr,
            len,
            size: self.size(),
        };
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .find(addr)
            .ok_or_else(out)?;
        let b = slot.bytes(addr, len).ok_or_else(out)?;
        let (ptr, n) = (b.as_ptr(), b.len());
        // SAFETY: slots are never removed from the registry this memory holds (and
        // replacing the registry takes `&mut self`), so the mapping outlives `&self`.
        Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
    }

    /// The file slot for `file` (mapped on first use), or `None` when slots are off or
    /// full: the caller copies the file instead.
    pub fn file_slot(&self, file: &std::fs::File) -> Option<std::sync::Arc<FileSlot>> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().ok()?;
        if !m.is_file() {
            return None;
        }
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_map(file, m.len(), (m.dev(), m.ino()))
    }

    /// A file slot holding `bytes` (through a memfd), or `None` as for `file_slot`.
    pub fn bytes_slot(&self, bytes: &[u8]) -> Option<std::sync::Arc<FileSlot>> {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        if self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .disabled()
        {
            return None;
        }
        // SAFETY: memfd_create with a static NUL-terminated name returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(c"kvmjs-image".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        f.write_all(bytes).ok()?;
        self.file_slot(&f)
    }

    /// Mutably borrows guest-physical bytes, marking them dirty.
    fn phys_slice_mut(&mut self, addr: u64, len: u64) -> Result<&mut [u8]> {
        let off = self.check(addr, len)?;
        if len > 0 {
            self.host_dirty
                .mark_range(addr / PAGE_SIZE, (addr + len - 1) / PAGE_SIZE);
        }
        // SAFETY: as in `phys_slice`, and `&mut self` makes the borrow exclusive.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(off), len as usize) })
    }

    /// Reads a little-endian u64 at a guest-physical address.
    pub fn phys_read_u64(&self, addr: u64) -> Result<u64> {
        let b = self.phys_slice(addr, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// Writes a little-endian u64 at a guest-physical address.
    pub fn phys_write_u64(&mut self, addr: u64, v: u64) -> Result<()> {
        self.phys_write(addr, &v.to_le_bytes())
    }

    /// Makes guest-physical `[addr, addr+len)` read as zero, marking it dirty.
    pub fn phys_zero(&mut self, addr: u64, len: u64) -> Result<()> {
        self.flush();
        let off = self.check(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        self.host_dirty
            .mark_range(addr / PAGE_SIZE, (addr + len - 1) / PAGE_SIZE);
        let ps = PAGE_SIZE as usize;
        let aligned = off.is_multiple_of(ps) && len.is_multiple_of(PAGE_SIZE);
        if self.hugepages || !aligned {
            // SAFETY: the range was bounds-checked above.
            unsafe { std::ptr::write_bytes(self.map.ptr.as_ptr().add(off), 0, len as usize) };
        } else if self.keep_mapped {
            self.zero_in_place(off, len as usize);
        } else {
            self.discard(off, len as usize);
        }
        Ok(())
    }

    /// Copies guest-physical bytes (ranges may overlap), marking the target dirty.
    fn phys_copy_within(&mut self, src: u64, dst: u64, len: u64) -> Result<()> {
        let s = self.check(src, len)?;
        self.phys_slice_mut(dst, len)?;
        let d = dst as usize;
        // SAFETY: both ranges were bounds-checked above; `copy` allows overlap.
        unsafe {
            let base = self.map.ptr.as_ptr();
            std::ptr::copy(base.add(s), base.add(d), len as usize);
        }
        Ok(())
    }

    /// Records that the present mapping of `frame` was removed, downgraded or retargeted:
    /// KVM's shadow entries for it must be dropped ([`GuestMemory::invalidate`]).
    pub fn note_retired(&mut self, frame: u64) {
        self.retired.push(frame & !(PAGE_SIZE - 1));
    }

    /// The frames noted as retired (tests).
    #[cfg(test)]
    pub fn take_retired_for_test(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.retired)
    }

    /// Records that the mapping of `frame` changed (for the reset).
    pub fn note_changed(&mut self, frame: u64) {
        self.changed.push(frame & !(PAGE_SIZE - 1));
        // A VM that is not reset after every request keeps noting: stay within one entry
        // per distinct frame.
        if self.changed.len() >= 4096 && self.changed.len() == self.changed.capacity() {
            self.changed.sort_unstable();
            self.changed.dedup();
            self.changed.reserve(self.changed.len());
        }
    }

    /// Before the guest runs again: drops KVM's mappings of the frames noted with
    /// [`GuestMemory::note_retired`]. Returns the ranges invalidated.
    pub fn sync_mappings(&mut self) -> std::io::Result<usize> {
        if self.retired.is_empty() {
            return Ok(0);
        }
        let mut v = std::mem::take(&mut self.retired);
        v.sort_unstable();
        v.dedup();
        let n = self.invalidate(&v);
        self.changed.extend_from_slice(&v);
        n
    }

    /// At a reset (after the memory is restored): drops KVM's mappings of every frame
    /// whose mapping changed since the snapshot. Returns the ranges invalidated.
    pub fn reset_mappings(&mut self) -> std::io::Result<usize> {
        self.changed.append(&mut self.retired);
        if self.changed.is_empty() {
            return Ok(0);
        }
        let mut v = std::mem::take(&mut self.changed);
        v.sort_unstable();
        v.dedup();
        self.invalidate(&v)
    }

    /// At the snapshot: mapping changes before it are part of it.
    pub fn forget_mapping_changes(&mut self) -> std::io::Result<usize> {
        let n = self.sync_mappings()?;
        self.changed.clear();
        Ok(n)
    }

    /// Drops every KVM mapping of the frames in `frames` (guest-physical, sorted) through
    /// the host MMU notifier, which makes KVM zap the shadow (or EPT/NPT) entries that map
    /// those pages and flush the guest TLB. The contents stay. Pool frames go through
    /// [`Invalidation`] (write-protect and resolve, or mprotect to read-only and back),
    /// contiguous frames in one call; file-slot frames through their slot; others (the
    /// trap page) are skipped. Returns the number of ranges invalidated.
    pub fn invalidate(&self, frames: &[u64]) -> std::io::Result<usize> {
        let mut calls = 0;
        let mut i = 0;
        // A hugetlb pool can only change protection in whole huge pages.
        let unit = if self.hugepages {
            crate::layout::HUGE_PAGE
        } else {
            PAGE_SIZE
        };
        while i < frames.len() {
            let start = frames[i] & !(unit - 1);
            let mut end = start + unit;
            i += 1;
            while i < frames.len() && frames[i] < end + unit && frames[i] >= start {
                end = end.max((frames[i] & !(unit - 1)) + unit);
                i += 1;
            }
            if end > self.size() {
                let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                let mut at = start;
                while at < end {
                    if let Some(s) = slots.find(at) {
                        s.invalidate(at, PAGE_SIZE)?;
                        calls += 1;
                    }
                    at += PAGE_SIZE;
                }
                continue;
            }
            calls += 1;
            // `[start, end)` lies inside this mapping (checked above).
            let host = self.host_base() + start;
            let len = end - start;
            match &self.uffd {
                Some(u) => u.invalidate(host, len).map_err(std::io::Error::other)?,
                None => mprotect_round_trip(host, len, libc::PROT_READ | libc::PROT_WRITE)?,
            }
        }
        Ok(calls)
    }

    /// Zeroes page-aligned `[off, off+len)` without dropping resident pages: a resident
    /// page that is not already zero is overwritten (one that reads as zero, e.g. the
    /// shared zero page after a read, is left alone, so nothing new is allocated). Pages
    /// that are not resident are dropped: either never touched (nothing to drop, no
    /// mapping to lose) or swapped out (already unmapped from the VM).
    fn zero_in_place(&mut self, off: usize, len: usize) {
        let ps = PAGE_SIZE as usize;
        let mut vec = vec![0u8; len / ps];
        // SAFETY: `[off, off+len)` lies inside the mapping (callers check) and is
        // page-aligned; `vec` has one byte per page.
        let rc =
            unsafe { libc::mincore(self.map.ptr.as_ptr().add(off).cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            // Without residency information treat every page as resident: reading a
            // non-resident page maps the zero page, which is already zero. Correct, slower.
            vec.fill(1);
        }
        let mut run: Option<(usize, usize)> = None;
        for (i, r) in vec.iter().enumerate() {
            let at = off + i * ps;
            if r & 1 == 0 {
                run = match run {
                    Some((s, n)) if s + n == at => Some((s, n + ps)),
                    Some((s, n)) => {
                        self.discard(s, n);
                        Some((at, ps))
                    }
                    None => Some((at, ps)),
                };
                continue;
            }
            let page = self.map.page_mut(at / ps);
            if !is_zero(page) {
                page.fill(0);
            }
        }
        if let Some((s, n)) = run {
            self.discard(s, n);
        }
    }

    /// Pages the host itself wrote since the last [`GuestMemory::clear_host_dirty`].
    pub fn host_dirty(&self) -> &DirtyBitmap {
        &self.host_dirty
    }

    /// Forgets host-side dirty marks (after a reset or when taking the snapshot).
    pub fn clear_host_dirty(&mut self) {
        self.host_dirty.clear();
    }

    /// Page numbers that hold data: resident pages of the mapping (never-touched pages of
    /// an anonymous mapping read as zero and need no copy).
    fn resident_pages(&self) -> Vec<bool> {
        let pages = self.map.size / PAGE_SIZE as usize;
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is exactly this mapping and `vec` has one byte per page.
        let rc = unsafe {
            libc::mincore(
                self.map.ptr.as_ptr().cast(),
                self.map.size,
                vec.as_mut_ptr(),
            )
        };
        if rc != 0 {
            // Without residency information every page counts as data: correct, only slower.
            return vec![true; pages];
        }
        vec.iter().map(|b| b & 1 == 1).collect()
    }
}

/// Drops KVM's mappings of host `[addr, addr+len)` (page-aligned, inside a mapping this
/// process owns whose protection is `prot`) with mprotect to read-only or less and back:
/// the fallback when write-protection is unavailable. Read-only mappings go through
/// PROT_NONE.
fn mprotect_round_trip(addr: u64, len: u64, prot: libc::c_int) -> std::io::Result<()> {
    let low = if prot & libc::PROT_WRITE != 0 {
        libc::PROT_READ
    } else {
        libc::PROT_NONE
    };
    let p = addr as *mut libc::c_void;
    // SAFETY: callers pass a range inside a mapping they own; lowering its protection and
    // restoring it leaves contents and ownership unchanged, and no host thread touches it
    // in between (the vCPU is stopped).
    unsafe {
        if libc::mprotect(p, len as usize, low) != 0 || libc::mprotect(p, len as usize, prot) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn is_zero(page: &[u8]) -> bool {
    let (pre, mid, post) = {
        // SAFETY: reinterpreting bytes as u64 words is valid for any bit pattern.
        unsafe { page.align_to::<u64>() }
    };
    pre.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_including_overflow() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        assert!(m.slice(0, 1 << 20).is_ok());
        assert!(m.slice(1, 1 << 20).is_err());
        assert!(m.slice(u64::MAX, 2).is_err());
        assert!(m.write(u64::MAX - 1, &[1, 2, 3]).is_err());
        m.write(0xffff0, &[b'a'; 16]).unwrap();
        assert!(m.read_cstr(0xffff0, 100).is_err(), "no NUL before the end");
        m.write(0x100, b"hi\0").unwrap();
        assert_eq!(m.read_cstr(0x100, 10).unwrap(), b"hi");
    }

    #[test]
    fn protected_ranges_refuse_guest_facing_writes_only() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        m.protect(vec![(0, 0x2000), (0x8000, 0x9000)]);
        assert!(matches!(
            m.write(0x1ff0, &[0; 32]),
            Err(MemoryError::Protected { .. })
        ));
        assert!(m.write_u64(0x8ff8, 1).is_err());
        assert!(m.zero(0x8000, 0x1000).is_err());
        assert!(m.copy_within(0x3000, 0x8000, 8).is_err());
        assert!(m.write(0x2000, b"ok").is_ok());
        assert_eq!(m.slice(0x8000, 4).unwrap(), &[0; 4], "reads stay allowed");
        m.write_system(0x1000, b"stub").unwrap();
        assert_eq!(m.slice(0x1000, 4).unwrap(), b"stub");
    }

    #[test]
    fn zero_and_copy_within() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        m.write(0x3000, b"abcdef").unwrap();
        m.copy_within(0x3000, 0x3002, 4).unwrap();
        assert_eq!(m.slice(0x3000, 6).unwrap(), b"ababcd");
        m.zero(0x3000, 0x1000).unwrap();
        assert_eq!(m.slice(0x3000, 6).unwrap(), &[0; 6]);
        assert!(m.zero(0xff000, 0x2000).is_err());
    }

    #[test]
    fn zeroing_keeps_resident_pages_when_asked() {
        for keep in [false, true] {
            let mut m = GuestMemory::new(1 << 20, false).unwrap();
            m.set_keep_mapped(keep);
            m.write(0x10000, &[7; 0x4000]).unwrap();
            let _ = m.slice(0x20000, 1).unwrap()[0]; // read only: maps the zero page
            m.zero(0x10000, 0x20000).unwrap();
            // Before reading it back, which would map the zero page.
            let res = m.resident_pages();
            assert_eq!(res[0x10], keep, "keep_mapped={keep}: written page");
            assert!(!res[0x18], "a never-touched page stays unallocated");
            assert!(m.slice(0x10000, 0x20000).unwrap().iter().all(|&b| b == 0));
            if keep {
                // An unaligned range is written over.
                m.write(0x30000, b"abc").unwrap();
                m.zero(0x30001, 2).unwrap();
                assert_eq!(m.slice(0x30000, 3).unwrap(), b"a\0\0");
            }
        }
    }
}
