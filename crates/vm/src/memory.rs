//! Guest memory: one anonymous mapping that backs memslot 0, the only place the host
//! touches guest bytes. Every access is bounds-checked; every host write is recorded in a
//! dirty bitmap so a reset restores it just like pages the guest dirtied itself.

use crate::layout::PAGE_SIZE;
use std::ptr::NonNull;

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
    /// A guest pointer names memory the guest may not write (system pages, program code).
    #[error("guest range {addr:#x}+{len:#x} is not writable guest memory (kvmjs system pages or read-only program segments)")]
    Protected {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, MemoryError>;

/// An anonymous host mapping with its size.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access is synchronised by the
// owner (`&`/`&mut`), so moving it or sharing `&` across threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: see above; shared access is read-only.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(size: u64, hugepages: bool) -> Result<Self> {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        if hugepages {
            // Name the size: a bare MAP_HUGETLB takes the host's *default* huge page size,
            // which is 1 GiB on some hosts; the layout (2 MiB-aligned regions, 2 MiB page
            // table entries) assumes 2 MiB, and /proc/sys/vm/nr_hugepages reserves those.
            flags |= libc::MAP_HUGETLB | libc::MAP_HUGE_2MB;
        }
        // SAFETY: an anonymous mapping with no address hint touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let hint = if hugepages {
                "; no huge pages are reserved: reserve 2 MiB pages (e.g. `echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`) or set hugepages to false"
            } else {
                "; lower address_space"
            };
            return Err(MemoryError::Map {
                size,
                source: std::io::Error::last_os_error(),
                hint,
            });
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned a non-null pointer"),
            size: size as usize,
        })
    }

    /// Drops the pages of `[off, off+len)`: they read as zero afterwards.
    fn discard(&self, off: usize, len: usize) {
        // SAFETY: the range lies inside this mapping (callers check); MADV_DONTNEED on a
        // private anonymous mapping only replaces its pages with zero pages.
        let rc =
            unsafe { libc::madvise(self.ptr.as_ptr().add(off).cast(), len, libc::MADV_DONTNEED) };
        debug_assert_eq!(rc, 0, "madvise(DONTNEED) on guest memory failed");
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`size` describe a mapping this value created and still owns.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

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
}

impl GuestMemory {
    /// Maps `size` bytes of guest memory (not committed until touched).
    pub fn new(size: u64, hugepages: bool) -> Result<Self> {
        let map = Mapping::new(size, hugepages)?;
        Ok(GuestMemory {
            map,
            host_dirty: DirtyBitmap::new((size / PAGE_SIZE) as usize),
            hugepages,
            protected: Vec::new(),
        })
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

    /// Like [`GuestMemory::check`], and the range must be writable by the guest.
    pub fn check_writable(&self, addr: u64, len: u64) -> Result<usize> {
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

    /// Borrows guest bytes.
    pub fn slice(&self, addr: u64, len: u64) -> Result<&[u8]> {
        let off = self.check(addr, len)?;
        // SAFETY: `check` proved the range lies inside the mapping, which lives as long as
        // `self`; the vCPU is stopped while the host holds this borrow.
        Ok(unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(off), len as usize) })
    }

    /// Mutably borrows guest-writable bytes, marking them dirty.
    pub fn slice_mut(&mut self, addr: u64, len: u64) -> Result<&mut [u8]> {
        let off = self.check_writable(addr, len)?;
        if len > 0 {
            self.host_dirty
                .mark_range(addr / PAGE_SIZE, (addr + len - 1) / PAGE_SIZE);
        }
        // SAFETY: as in `slice`, and `&mut self` makes the borrow exclusive.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(off), len as usize) })
    }

    /// Copies guest bytes out.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        buf.copy_from_slice(self.slice(addr, buf.len() as u64)?);
        Ok(())
    }

    /// Copies bytes into the guest.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        self.slice_mut(addr, data.len() as u64)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&self, addr: u64) -> Result<u32> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian u16.
    pub fn read_u16(&self, addr: u64) -> Result<u16> {
        let mut b = [0; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&mut self, addr: u64, v: u64) -> Result<()> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstr(&self, addr: u64, max: u64) -> Result<&[u8]> {
        let avail = self.size().saturating_sub(addr).min(max);
        let bytes = self.slice(addr, avail)?;
        match bytes.iter().position(|&b| b == 0) {
            Some(n) => Ok(&bytes[..n]),
            None => Err(MemoryError::OutOfBounds {
                addr,
                len: max,
                size: self.size(),
            }),
        }
    }

    /// Makes `[addr, addr+len)` read as zero (page-aligned), marking it dirty.
    pub fn zero(&mut self, addr: u64, len: u64) -> Result<()> {
        let off = self.check_writable(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        self.host_dirty
            .mark_range(addr / PAGE_SIZE, (addr + len - 1) / PAGE_SIZE);
        if self.hugepages {
            // SAFETY: the range was bounds-checked above.
            unsafe { std::ptr::write_bytes(self.map.ptr.as_ptr().add(off), 0, len as usize) };
        } else {
            self.map.discard(off, len as usize);
        }
        Ok(())
    }

    /// Copies `len` bytes inside guest memory (ranges may overlap).
    pub fn copy_within(&mut self, src: u64, dst: u64, len: u64) -> Result<()> {
        let s = self.check(src, len)?;
        self.slice_mut(dst, len)?;
        let d = dst as usize;
        // SAFETY: both ranges were bounds-checked above; `copy` allows overlap.
        unsafe {
            let base = self.map.ptr.as_ptr();
            std::ptr::copy(base.add(s), base.add(d), len as usize);
        }
        Ok(())
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

/// A read-only copy of guest memory taken at the snapshot point.
#[derive(Debug)]
pub struct MemorySnapshot {
    map: Mapping,
    /// Per page: whether the snapshot holds data there (otherwise the page is zero).
    present: Vec<bool>,
    present_pages: usize,
}

/// What one reset did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetStats {
    /// Pages whose contents differed from the snapshot and were restored.
    pub dirty_pages: u64,
    /// Of those, pages copied back from the snapshot (the rest were zeroed).
    pub copied_pages: u64,
    /// Pages compared because they were writable or logged as dirty.
    pub checked_pages: u64,
    /// Pages whose write tracking was re-armed.
    pub protected_pages: u64,
}

/// Runs of at least this many zero pages are dropped with madvise instead of memset.
const DISCARD_RUN_PAGES: usize = 16;
/// A writable ("hot") page unchanged for this many resets gets write-tracked again.
const DEMOTE_AFTER: u8 = 8;

/// Adaptive reset state for one VM (manual dirty-log protection).
///
/// Re-dirtying a write-tracked page costs a fault (~3 µs on PVM) per request, while
/// comparing and copying a page costs ~0.3 µs. So a page the guest dirtied stays writable
/// ("hot") and is compared with the snapshot at every reset, restored if it differs; a hot
/// page that stays unchanged for [`DEMOTE_AFTER`] resets is tracked again.
#[derive(Debug)]
pub struct HotPages {
    /// Per page: 0 = tracked; n > 0 = hot, unchanged for n-1 resets.
    streak: Vec<u8>,
}

impl HotPages {
    /// No hot pages yet.
    pub fn new(pages: usize) -> Self {
        HotPages {
            streak: vec![0; pages],
        }
    }

    /// Number of hot pages.
    pub fn count(&self) -> usize {
        self.streak.iter().filter(|&&s| s > 0).count()
    }
}

fn is_zero(page: &[u8]) -> bool {
    let (pre, mid, post) = {
        // SAFETY: reinterpreting bytes as u64 words is valid for any bit pattern.
        unsafe { page.align_to::<u64>() }
    };
    pre.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}

impl MemorySnapshot {
    /// Copies every page of `mem` that holds data.
    pub fn capture(mem: &GuestMemory) -> Result<Self> {
        let map = Mapping::new(mem.size(), false)?;
        let present = mem.resident_pages();
        let mut present_pages = 0;
        let ps = PAGE_SIZE as usize;
        for (page, _) in present.iter().enumerate().filter(|(_, &p)| p) {
            present_pages += 1;
            // SAFETY: both mappings have the same size and `page` indexes a page in them.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    mem.map.ptr.as_ptr().add(page * ps),
                    map.ptr.as_ptr().add(page * ps),
                    ps,
                );
            }
        }
        Ok(MemorySnapshot {
            map,
            present,
            present_pages,
        })
    }

    /// Pages holding data in the snapshot.
    pub fn present_pages(&self) -> usize {
        self.present_pages
    }

    /// Size of the memory it was taken from.
    pub fn size(&self) -> u64 {
        self.map.size as u64
    }

    /// Fills fresh (all-zero) guest memory with the snapshot's pages.
    pub fn copy_into(&self, mem: &mut GuestMemory) {
        assert_eq!(mem.size(), self.size(), "snapshot of another size");
        let ps = PAGE_SIZE as usize;
        for (page, _) in self.present.iter().enumerate().filter(|(_, &p)| p) {
            // SAFETY: same-size mappings, `page` indexes a page of both.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.map.ptr.as_ptr().add(page * ps),
                    mem.map.ptr.as_ptr().add(page * ps),
                    ps,
                );
            }
        }
    }

    fn page(map: &Mapping, page: usize) -> &[u8] {
        let ps = PAGE_SIZE as usize;
        // SAFETY: callers pass a page index inside the mapping.
        unsafe { std::slice::from_raw_parts(map.ptr.as_ptr().add(page * ps), ps) }
    }

    /// Restores every page dirty in `kvm_dirty` (KVM's log) or in the host's bitmap.
    ///
    /// Without `hot` (KVM re-protects on every log read) every such page is restored.
    /// With `hot`, pages are compared first and the returned bitmap names the pages whose
    /// write tracking must be re-armed. `trace` collects the restored page numbers.
    pub fn restore(
        &self,
        mem: &mut GuestMemory,
        kvm_dirty: &[u64],
        mut hot: Option<&mut HotPages>,
        mut trace: Option<&mut Vec<u64>>,
    ) -> (ResetStats, Vec<u64>) {
        assert_eq!(mem.size(), self.map.size as u64, "snapshot of another size");
        let mut stats = ResetStats::default();
        // Filled only when a page is re-armed (rare): no allocation on the usual reset.
        let mut protect: Vec<u64> = Vec::new();
        let ps = PAGE_SIZE as usize;
        let host = std::mem::take(&mut mem.host_dirty.words);
        let mut zero_run: Option<(usize, usize)> = None;
        for (i, &kw) in kvm_dirty.iter().enumerate() {
            let hw = host.get(i).copied().unwrap_or(0);
            let mut w = kw | hw;
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                let page = i * 64 + bit;
                if page >= self.present.len() {
                    continue;
                }
                let logged = kw & (1 << bit) != 0;
                let changed = match hot {
                    None => true,
                    Some(_) => {
                        stats.checked_pages += 1;
                        let cur = Self::page(&mem.map, page);
                        if self.present[page] {
                            cur != Self::page(&self.map, page)
                        } else {
                            !is_zero(cur)
                        }
                    }
                };
                if let (Some(h), true) = (hot.as_deref_mut(), logged) {
                    let s = &mut h.streak[page];
                    if changed {
                        *s = 1;
                    } else {
                        *s = s.saturating_add(1);
                        if *s > DEMOTE_AFTER {
                            *s = 0;
                            mark(&mut protect, kvm_dirty.len(), page);
                        }
                    }
                }
                if !changed {
                    continue;
                }
                stats.dirty_pages += 1;
                if let Some(t) = trace.as_deref_mut() {
                    t.push(page as u64);
                }
                if self.present[page] {
                    stats.copied_pages += 1;
                    // SAFETY: same-size mappings; `page` is in range (checked above).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            self.map.ptr.as_ptr().add(page * ps),
                            mem.map.ptr.as_ptr().add(page * ps),
                            ps,
                        );
                    }
                } else {
                    zero_run = match zero_run {
                        Some((start, n)) if start + n == page => Some((start, n + 1)),
                        Some(run) => {
                            zero_pages(
                                &mem.map,
                                run,
                                mem.hugepages,
                                hot.as_deref_mut(),
                                &mut protect,
                            );
                            Some((page, 1))
                        }
                        None => Some((page, 1)),
                    };
                }
            }
        }
        if let Some(run) = zero_run {
            zero_pages(&mem.map, run, mem.hugepages, hot, &mut protect);
        }
        mem.host_dirty.words = host;
        mem.clear_host_dirty();
        stats.protected_pages = protect.iter().map(|w| u64::from(w.count_ones())).sum();
        (stats, protect)
    }
}

/// Sets page `p`'s bit in `bitmap`, sizing it to `words` on first use.
fn mark(bitmap: &mut Vec<u64>, words: usize, p: usize) {
    if bitmap.is_empty() {
        bitmap.resize(words, 0);
    }
    bitmap[p / 64] |= 1 << (p % 64);
}

/// Zeroes pages `start..start+n`: memset for short runs, madvise for long ones. Discarded
/// pages are unmapped anyway, so their write tracking is re-armed at once.
fn zero_pages(
    map: &Mapping,
    (start, n): (usize, usize),
    huge: bool,
    hot: Option<&mut HotPages>,
    protect: &mut Vec<u64>,
) {
    let ps = PAGE_SIZE as usize;
    if n >= DISCARD_RUN_PAGES && !huge {
        map.discard(start * ps, n * ps);
        if let Some(h) = hot {
            let words = h.streak.len().div_ceil(64);
            for p in start..start + n {
                h.streak[p] = 0;
                mark(protect, words, p);
            }
        }
    } else {
        // SAFETY: pages `start..start+n` lie inside the mapping (they came from its bitmap).
        unsafe { std::ptr::write_bytes(map.ptr.as_ptr().add(start * ps), 0, n * ps) };
    }
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
    fn guest_memory_is_never_executable_on_the_host() {
        let m = GuestMemory::new(4 << 20, false).unwrap();
        let snap = MemorySnapshot::capture(&m).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for base in [m.host_base(), snap.map.ptr.as_ptr() as u64] {
            let line = maps
                .lines()
                .find(|l| {
                    let (range, _) = l.split_once(' ').unwrap();
                    let (lo, hi) = range.split_once('-').unwrap();
                    let (lo, hi) = (
                        u64::from_str_radix(lo, 16).unwrap(),
                        u64::from_str_radix(hi, 16).unwrap(),
                    );
                    (lo..hi).contains(&base)
                })
                .expect("mapping listed");
            let perms = line.split_whitespace().nth(1).unwrap();
            assert_eq!(&perms[..3], "rw-", "{line}");
        }
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
    fn host_writes_are_tracked_and_restored() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        m.write(0x2000, b"snapshot").unwrap();
        let snap = MemorySnapshot::capture(&m).unwrap();
        m.clear_host_dirty();
        m.write(0x2000, b"changed!").unwrap();
        m.write(0x5000, b"new page").unwrap();
        m.write_u64(0x40000, 7).unwrap();
        let none = vec![0u64; (m.size() / PAGE_SIZE / 64) as usize];
        let (st, _) = snap.restore(&mut m, &none, None, None);
        assert_eq!(st.dirty_pages, 3);
        assert_eq!(st.copied_pages, 1);
        assert_eq!(m.slice(0x2000, 8).unwrap(), b"snapshot");
        assert_eq!(m.slice(0x5000, 8).unwrap(), &[0; 8]);
        assert_eq!(m.read_u64(0x40000).unwrap(), 0);
    }

    #[test]
    fn kvm_bitmap_pages_are_restored_and_long_zero_runs_discarded() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        let snap = MemorySnapshot::capture(&m).unwrap();
        m.clear_host_dirty();
        // Pretend the guest wrote 40 pages (bypassing host tracking).
        // SAFETY: the range is inside the 1 MiB mapping.
        unsafe { std::ptr::write_bytes(m.map.ptr.as_ptr().add(0x10000), 0xAB, 40 * 4096) };
        let mut bitmap = vec![0u64; 4];
        for p in 16..56 {
            bitmap[p / 64] |= 1 << (p % 64);
        }
        let (st, _) = snap.restore(&mut m, &bitmap, None, None);
        assert_eq!(st.dirty_pages, 40);
        assert!(m.slice(0x10000, 40 * 4096).unwrap().iter().all(|&b| b == 0));
    }

    #[test]
    fn hot_pages_are_compared_and_demoted_when_unchanged() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        m.write(0x2000, b"snapshot").unwrap();
        let snap = MemorySnapshot::capture(&m).unwrap();
        m.clear_host_dirty();
        let mut hot = HotPages::new(256);
        let mut logged = vec![0u64; 4];
        logged[0] = 1 << 2 | 1 << 3; // pages 2 and 3 writable and logged
        let guest_write = |m: &GuestMemory, at: usize, v: u8| {
            // SAFETY: inside the 1 MiB mapping; stands in for a guest write KVM logs.
            unsafe { *m.map.ptr.as_ptr().add(at) = v };
        };
        guest_write(&m, 0x2000, b'X');
        let (st, protect) = snap.restore(&mut m, &logged, Some(&mut hot), None);
        assert_eq!(
            (st.dirty_pages, st.checked_pages, st.protected_pages),
            (1, 2, 0)
        );
        assert_eq!(m.slice(0x2000, 8).unwrap(), b"snapshot");
        assert_eq!(
            hot.count(),
            2,
            "both logged pages stay writable; page 3 starts an unchanged streak"
        );
        assert!(protect.iter().all(|w| *w == 0));
        let mut demoted = 0;
        for _ in 0..DEMOTE_AFTER + 1 {
            let (st, protect) = snap.restore(&mut m, &logged, Some(&mut hot), None);
            assert_eq!(st.dirty_pages, 0);
            demoted += st.protected_pages;
            // As KVM does: a re-protected page is logged again only after a new write.
            for (l, p) in logged.iter_mut().zip(&protect) {
                *l &= !p;
            }
        }
        assert_eq!(
            demoted, 2,
            "both unchanged pages are re-protected after the streak"
        );
        assert_eq!(hot.count(), 0);
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
}
