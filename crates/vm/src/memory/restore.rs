//! The snapshot copy of guest memory and the reset that puts guest memory back to it.
//!
//! What a reset leaves behind must not depend on what the request wrote, since a later
//! request can time its own first write to a page: which pages are writable is fixed
//! by host-generated calibration requests ([`HotPages`], `Vm::calibrate`), a written
//! page keeps its mapping (zeroed in place, never dropped) and none of its cache lines
//! (non-temporal restore). What remains (CPU caches after reads, KVM mapping a page at
//! its first touch in a VM) is in the README, "What a request can learn about earlier
//! ones".

use super::{is_zero, GuestMemory, Mapping, Result, SharedPages};
use crate::layout::PAGE_SIZE;
use std::sync::Arc;

/// A read-only copy of guest memory taken at the snapshot point.
#[derive(Debug)]
pub struct MemorySnapshot {
    /// The pages: a read-only view of `shared`, or (huge pages, or the memfd failed) a
    /// private anonymous copy.
    map: Mapping,
    /// Per page: whether the snapshot holds data there (otherwise the page is zero).
    present: Vec<bool>,
    present_pages: usize,
    /// The pages in a sealed memfd that VMs map copy-on-write ([`super::shared`]).
    shared: Option<Arc<SharedPages>>,
}

/// What one reset did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetStats {
    /// Pages restored: every dirty page outside the writable set that holds data in the
    /// snapshot, and the other dirty pages whose contents differed from the snapshot.
    pub dirty_pages: u64,
    /// Of those, pages copied back from the snapshot (the rest were zeroed).
    pub copied_pages: u64,
    /// Pages compared with the snapshot (writable ones, and ones that are zero there).
    pub checked_pages: u64,
    /// Pages whose write tracking was re-armed.
    pub protected_pages: u64,
}

/// Runs of at least this many zero pages are dropped with madvise instead of memset (only
/// where guest memory may be discarded: see [`GuestMemory::set_keep_mapped`]).
const DISCARD_RUN_PAGES: usize = 16;

/// The pages that stay writable across resets (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).
///
/// Re-dirtying a write-tracked page costs a fault (~3 µs on PVM) per request, while
/// comparing and copying a page costs ~0.3 µs. So the pages the calibration requests
/// wrote stay writable ("hot"): every reset compares them with the snapshot and restores
/// them if they differ, and never re-arms their tracking. Every other page a request
/// wrote is restored and re-armed at every reset. The set is fixed before the first user
/// request and never changes afterwards: if requests could promote or demote pages, a
/// later request could read what an earlier one wrote from the cost of its own writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotPages {
    /// Bit `n`: page `n` stays writable (KVM's bitmap format).
    bits: Vec<u64>,
}

impl HotPages {
    /// No page stays writable.
    pub fn none(pages: usize) -> Self {
        HotPages {
            bits: vec![0; pages.div_ceil(64)],
        }
    }

    /// Every page stays writable (while measuring what calibration requests write).
    pub fn all(pages: usize) -> Self {
        HotPages {
            bits: vec![u64::MAX; pages.div_ceil(64)],
        }
    }

    /// The pages set in `bits`.
    pub fn from_bitmap(bits: Vec<u64>) -> Self {
        HotPages { bits }
    }

    /// Number of writable pages.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether page `page` stays writable.
    pub fn contains(&self, page: usize) -> bool {
        self.bits
            .get(page / 64)
            .is_some_and(|w| w & (1 << (page % 64)) != 0)
    }

    /// The set in KVM's bitmap format.
    pub fn bitmap(&self) -> &[u64] {
        &self.bits
    }

    /// Removes pages `start..end`.
    pub fn remove_range(&mut self, start: usize, end: usize) {
        for p in start..end.min(self.bits.len() * 64) {
            self.bits[p / 64] &= !(1 << (p % 64));
        }
    }

    /// Adds pages `start..end`.
    pub fn insert_range(&mut self, start: usize, end: usize) {
        for p in start..end.min(self.bits.len() * 64) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    /// Keeps only the pages also set in `other`.
    pub fn retain(&mut self, other: &[u64]) {
        for (i, w) in self.bits.iter_mut().enumerate() {
            *w &= other.get(i).copied().unwrap_or(0);
        }
    }

    /// The word of logged pages (`logged`, word `i` of KVM's log) whose tracking must be
    /// re-armed: every logged page outside the set.
    fn to_protect(&self, i: usize, logged: u64) -> u64 {
        logged & !self.bits.get(i).copied().unwrap_or(0)
    }
}

impl MemorySnapshot {
    /// Copies every page of `mem` that holds data.
    pub fn capture(mem: &GuestMemory) -> Result<Self> {
        let present = mem.resident_pages();
        let ps = PAGE_SIZE as usize;
        let pages = present
            .iter()
            .enumerate()
            .filter(|(_, &p)| p)
            .map(|(page, _)| {
                // SAFETY: `page` indexes a page of the mapping (one flag per page).
                let bytes =
                    unsafe { std::slice::from_raw_parts(mem.map.ptr.as_ptr().add(page * ps), ps) };
                (page, bytes)
            });
        Self::from_pages(mem.size(), mem.hugepages, pages)
    }

    /// Builds a snapshot of guest memory of `size` bytes from its pages (page index,
    /// 4096 bytes), as [`MemorySnapshot::pages`] lists them. Without `hugepages` the
    /// pages go into a sealed memfd that VMs share copy-on-write; with them (or when the
    /// memfd fails) into a private copy.
    pub fn from_pages<'a>(
        size: u64,
        hugepages: bool,
        pages: impl IntoIterator<Item = (usize, &'a [u8])>,
    ) -> Result<Self> {
        let n = (size / PAGE_SIZE) as usize;
        let mut present = vec![false; n];
        let mut list: Vec<(usize, &[u8])> = Vec::new();
        for (page, bytes) in pages {
            if page >= n || bytes.len() != PAGE_SIZE as usize {
                return Err(super::MemoryError::OutOfBounds {
                    addr: page as u64 * PAGE_SIZE,
                    len: bytes.len() as u64,
                    size,
                });
            }
            if !present[page] {
                present[page] = true;
                list.push((page, bytes));
            }
        }
        list.sort_unstable_by_key(|&(p, _)| p);
        let present_pages = list.len();
        if !hugepages {
            match SharedPages::new(size, list.iter().copied()).and_then(|s| Ok((s.view()?, s))) {
                Ok((map, shared)) => {
                    return Ok(MemorySnapshot {
                        map,
                        present,
                        present_pages,
                        shared: Some(Arc::new(shared)),
                    })
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let mut map = Mapping::new(size, false)?;
        for (page, bytes) in list {
            map.page_mut(page).copy_from_slice(bytes);
        }
        Ok(MemorySnapshot {
            map,
            present,
            present_pages,
            shared: None,
        })
    }

    /// Maps the snapshot's pages copy-on-write into `mem` (fresh, or the memory the
    /// snapshot was taken from); false when they are not shared (huge pages, or a memfd
    /// or mapping failed): the caller copies them instead.
    pub fn share_into(&self, mem: &mut GuestMemory) -> bool {
        let Some(s) = &self.shared else {
            return false;
        };
        match mem.share(s) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        }
    }

    /// Whether VMs share the snapshot's pages copy-on-write.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Every page holding data: (page index, its 4096 bytes), in ascending order.
    pub fn pages(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.present
            .iter()
            .enumerate()
            .filter(|(_, &p)| p)
            .map(|(i, _)| (i, Self::page(&self.map, i)))
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
    /// Pages in `hot` (writable across resets) are compared and restored if they differ.
    /// Every other page the guest wrote is restored with non-temporal stores, which leave
    /// none of its cache lines behind: a page a request wrote is then as cold as a page it
    /// did not write, and a later request cannot tell them apart by the cost of its own
    /// writes (pages that hold data in the snapshot are restored without comparing, which
    /// would pull their lines in; zero pages are checked first, see below). Without `hot`
    /// (KVM re-protects on every log read) every page is of that kind. The returned
    /// bitmap names the logged pages outside `hot`, whose write tracking must be re-armed
    /// (empty when there are none). `trace` collects the restored page numbers.
    pub fn restore(
        &self,
        mem: &mut GuestMemory,
        kvm_dirty: &[u64],
        hot: Option<&HotPages>,
        mut trace: Option<&mut Vec<u64>>,
    ) -> (ResetStats, Vec<u64>) {
        assert_eq!(mem.size(), self.map.size as u64, "snapshot of another size");
        mem.flush();
        let mut stats = ResetStats::default();
        // Filled only when a page outside the writable set was written (not on the usual
        // reset, where every page the guest writes is in the set): no allocation then.
        let mut protect: Vec<u64> = Vec::new();
        // Zeroing in place keeps the page mapped, so its next first touch costs the same
        // whatever happened before; a discard would let a request choose that cost.
        let discard = !mem.keep_mapped && !mem.hugepages;
        let host = std::mem::take(&mut mem.host_dirty.words);
        let mut zero_run: Option<(usize, usize)> = None;
        let mut streamed = false;
        for (i, &kw) in kvm_dirty.iter().enumerate() {
            let hw = host.get(i).copied().unwrap_or(0);
            let mut w = kw | hw;
            if w == 0 {
                // Most words: nothing dirty. Skip before touching the writable set, whose
                // bitmap is cold by now (8 KiB per 256 MiB of guest memory).
                continue;
            }
            let hot_word = match hot {
                Some(h) => {
                    let p = h.to_protect(i, kw);
                    if p != 0 {
                        if protect.is_empty() {
                            protect.resize(kvm_dirty.len(), 0);
                        }
                        protect[i] = p;
                    }
                    h.bits.get(i).copied().unwrap_or(0)
                }
                None => 0,
            };
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                let page = i * 64 + bit;
                if page >= self.present.len() {
                    continue;
                }
                let writable = hot_word & (1 << bit) != 0;
                // A page that is zero in the snapshot is checked first even when it is not
                // writable: a guest munmap of a large untouched range marks every page of
                // it, and writing those (even zeros) would allocate them all.
                if writable || !self.present[page] {
                    stats.checked_pages += 1;
                    let cur = Self::page(&mem.map, page);
                    let changed = if self.present[page] {
                        cur != Self::page(&self.map, page)
                    } else {
                        !is_zero(cur)
                    };
                    if !changed {
                        continue;
                    }
                }
                stats.dirty_pages += 1;
                if let Some(t) = trace.as_deref_mut() {
                    t.push(page as u64);
                }
                let src = self.present[page].then(|| Self::page(&self.map, page));
                if src.is_some() {
                    stats.copied_pages += 1;
                }
                if src.is_none() && discard {
                    zero_run = match zero_run {
                        Some((start, n)) if start + n == page => Some((start, n + 1)),
                        Some(run) => {
                            discard_run(mem, run);
                            Some((page, 1))
                        }
                        None => Some((page, 1)),
                    };
                } else if writable || kw & (1 << bit) == 0 {
                    // A writable page is compared at every reset anyway, so its cache lines
                    // are warm whether or not it changed: a plain copy keeps it that way. A
                    // page only the host wrote (the request, syscall outputs) was not
                    // written by the guest, so no later write of the guest's can tell.
                    let dst = mem.map.page_mut(page);
                    match src {
                        Some(s) => dst.copy_from_slice(s),
                        None => dst.fill(0),
                    }
                } else {
                    stream_page(mem.map.page_mut(page), src);
                    streamed = true;
                }
            }
        }
        if let Some(run) = zero_run {
            discard_run(mem, run);
        }
        if streamed {
            // SAFETY: SFENCE only orders stores; non-temporal stores need it before the
            // guest (another agent, as far as the memory model goes) reads the pages.
            unsafe { std::arch::x86_64::_mm_sfence() };
        }
        mem.host_dirty.words = host;
        mem.clear_host_dirty();
        stats.protected_pages = protect.iter().map(|w| u64::from(w.count_ones())).sum();
        (stats, protect)
    }
}

/// Writes `src` (or zeros) over `dst` with non-temporal stores, which bypass the cache
/// and evict any of `dst`'s lines it holds.
fn stream_page(dst: &mut [u8], src: Option<&[u8]>) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_setzero_si128, _mm_stream_si128};
    let n = PAGE_SIZE as usize;
    assert!(dst.len() == n && src.is_none_or(|s| s.len() == n));
    assert_eq!(dst.as_ptr() as usize % 16, 0, "pages are 16-byte aligned");
    let d = dst.as_mut_ptr().cast::<__m128i>();
    for k in 0..n / 16 {
        // SAFETY: SSE2 is part of x86-64. `dst` and `src` are whole pages (asserted), so
        // `k * 16 + 16 <= n` stays inside both; `dst` is 16-byte aligned (asserted), as
        // the streaming store needs; the load has no alignment requirement.
        unsafe {
            let v = match src {
                Some(s) => _mm_loadu_si128(s.as_ptr().cast::<__m128i>().add(k)),
                None => _mm_setzero_si128(),
            };
            _mm_stream_si128(d.add(k), v);
        }
    }
}

/// Zeroes pages `start..start+n` where pages may be dropped: madvise for long runs,
/// memset for short ones.
fn discard_run(mem: &GuestMemory, (start, n): (usize, usize)) {
    let ps = PAGE_SIZE as usize;
    if n >= DISCARD_RUN_PAGES {
        mem.discard(start * ps, n * ps);
    } else {
        // SAFETY: pages `start..start+n` lie inside the mapping (they came from its bitmap).
        unsafe { std::ptr::write_bytes(mem.map.ptr.as_ptr().add(start * ps), 0, n * ps) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for a guest write, which KVM logs and the host's bitmap does not see.
    fn guest_write(m: &GuestMemory, at: usize, v: u8, len: usize) {
        assert!(at + len <= m.map.size);
        // SAFETY: inside the mapping (checked above).
        unsafe { std::ptr::write_bytes(m.map.ptr.as_ptr().add(at), v, len) };
    }

    fn bitmap(m: &GuestMemory, pages: &[usize]) -> Vec<u64> {
        let mut b = vec![0u64; (m.size() / PAGE_SIZE).div_ceil(64) as usize];
        for &p in pages {
            b[p / 64] |= 1 << (p % 64);
        }
        b
    }

    /// Whether the page at `addr` is resident in the host (mincore).
    fn resident(m: &GuestMemory, addr: u64) -> bool {
        m.resident_pages()[(addr / PAGE_SIZE) as usize]
    }

    #[test]
    fn guest_memory_is_never_executable_on_the_host() {
        let m = GuestMemory::new(4 << 20, false).unwrap();
        let snap = MemorySnapshot::capture(&m).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            snap.is_shared(),
            "without huge pages the snapshot is a memfd"
        );
        for (base, want) in [
            (m.host_base(), "rw-"),
            (snap.map.ptr.as_ptr() as u64, "r--"),
        ] {
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
            assert_eq!(&perms[..3], want, "{line}");
        }
    }

    #[test]
    fn forks_share_the_snapshot_and_zeroing_a_shared_page_reads_zero() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        m.write(0x2000, b"snapshot").unwrap();
        m.write(0x9000, b"second").unwrap();
        let snap = MemorySnapshot::capture(&m).unwrap();
        assert!(
            snap.share_into(&mut m),
            "the VM it was taken from shares too"
        );
        let mut f = GuestMemory::new(1 << 20, false).unwrap();
        let wp = f.invalidation();
        assert!(snap.share_into(&mut f));
        assert_eq!(f.shared().unwrap().runs(), &[(2, 1), (9, 1)]);
        assert_eq!(
            f.invalidation(),
            wp,
            "write-protection registered again over the shared pages"
        );
        assert_eq!(f.slice(0x2000, 8).unwrap(), b"snapshot");
        f.clear_host_dirty();
        f.write(0x2000, b"request!").unwrap();
        assert_eq!(m.slice(0x2000, 8).unwrap(), b"snapshot", "copy-on-write");
        let none = vec![0u64; (f.size() / PAGE_SIZE / 64) as usize];
        let (st, _) = snap.restore(&mut f, &none, None, None);
        assert_eq!(st.copied_pages, 1);
        assert_eq!(f.slice(0x2000, 8).unwrap(), b"snapshot");
        // Dropping a shared page would bring the snapshot back: zeroing stores instead.
        f.phys_zero(0x2000, 0x8000).unwrap();
        assert_eq!(f.slice(0x2000, 8).unwrap(), &[0; 8]);
        assert_eq!(f.slice(0x9000, 6).unwrap(), &[0; 6]);
        assert_eq!(m.slice(0x9000, 6).unwrap(), b"second");
    }

    /// Inodes of the memfds mapped inside `m`'s range (/proc/self/maps).
    fn snapshot_inodes(m: &GuestMemory) -> std::collections::BTreeSet<String> {
        let (lo, hi) = (m.host_base(), m.host_base() + m.size());
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains("kvmjs-snapshot"))
            .filter(|l| {
                let (a, _) = l.split_once('-').unwrap();
                (lo..hi).contains(&u64::from_str_radix(a, 16).unwrap())
            })
            .map(|l| l.split_whitespace().nth(4).unwrap().to_string())
            .collect()
    }

    #[test]
    fn sharing_a_new_snapshot_lets_go_of_the_old_one() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        m.write(0x2000, b"first").unwrap();
        m.write(0x40000, b"far").unwrap();
        let a = MemorySnapshot::capture(&m).unwrap();
        assert!(a.share_into(&mut m));
        assert_eq!(snapshot_inodes(&m).len(), 1);
        // The program runs on (a listening program settling), then is captured again.
        m.phys_zero(0x40000, 0x1000).unwrap();
        m.write(0x8000, b"second").unwrap();
        let b = MemorySnapshot::capture(&m).unwrap();
        assert!(b.share_into(&mut m));
        let inodes = snapshot_inodes(&m);
        assert_eq!(inodes.len(), 1, "only the new memfd is mapped: {inodes:?}");
        assert_eq!(m.slice(0x2000, 5).unwrap(), b"first");
        assert_eq!(m.slice(0x8000, 6).unwrap(), b"second");
        assert_eq!(m.slice(0x40000, 3).unwrap(), &[0; 3]);
        // The old runs are anonymous now: dropping reads zero, whichever way it is done.
        m.phys_zero(0x2000, 0x1000).unwrap();
        assert_eq!(m.slice(0x2000, 5).unwrap(), &[0; 5]);
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
    fn long_zero_runs_are_discarded_only_where_mappings_may_change() {
        for keep in [false, true] {
            let mut m = GuestMemory::new(1 << 20, false).unwrap();
            m.set_keep_mapped(keep);
            let snap = MemorySnapshot::capture(&m).unwrap();
            m.clear_host_dirty();
            guest_write(&m, 0x10000, 0xAB, 40 * 4096);
            let logged = bitmap(&m, &(16..56).collect::<Vec<_>>());
            let (st, _) = snap.restore(&mut m, &logged, None, None);
            assert_eq!(st.dirty_pages, 40);
            // Before reading it back, which would map the zero page.
            assert_eq!(
                resident(&m, 0x10000),
                keep,
                "keep_mapped={keep}: a 40-page zero run is {}",
                if keep { "zeroed in place" } else { "discarded" }
            );
            assert!(m.slice(0x10000, 40 * 4096).unwrap().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn writable_pages_are_compared_and_others_rearmed_at_every_reset() {
        let mut m = GuestMemory::new(1 << 20, false).unwrap();
        m.write(0x2000, b"snapshot").unwrap();
        let snap = MemorySnapshot::capture(&m).unwrap();
        m.clear_host_dirty();
        // Pages 2 and 3 stay writable; page 7 does not.
        let hot = HotPages::from_bitmap(bitmap(&m, &[2, 3]));
        assert_eq!(hot.count(), 2);
        for round in 0..20 {
            // KVM keeps a writable page's bit set (manual protect); page 7 was written
            // in this round only.
            guest_write(&m, 0x2000, b'X', 1);
            guest_write(&m, 0x7000, 1, 1);
            let logged = bitmap(&m, &[2, 3, 7]);
            let (st, protect) = snap.restore(&mut m, &logged, Some(&hot), None);
            assert_eq!(
                (st.dirty_pages, st.checked_pages, st.protected_pages),
                (2, 3, 1),
                "round {round}: the same work every time, whatever came before"
            );
            assert_eq!(protect, bitmap(&m, &[7]), "only page 7 is re-armed");
            assert_eq!(m.slice(0x2000, 8).unwrap(), b"snapshot");
            assert_eq!(m.slice(0x7000, 1).unwrap(), &[0]);
        }
        // A round that writes nothing outside the set re-arms nothing and allocates no
        // bitmap; unchanged writable pages are never demoted.
        let logged = bitmap(&m, &[2, 3]);
        let (st, protect) = snap.restore(&mut m, &logged, Some(&hot), None);
        assert_eq!((st.dirty_pages, st.protected_pages), (0, 0));
        assert!(protect.is_empty());
    }

    #[test]
    fn zeroing_an_untouched_range_allocates_nothing() {
        let mut m = GuestMemory::new(8 << 20, false).unwrap();
        m.set_keep_mapped(true);
        let snap = MemorySnapshot::capture(&m).unwrap();
        m.clear_host_dirty();
        // A guest munmap of 4 MiB it never touched marks every page dirty.
        m.zero(2 << 20, 4 << 20).unwrap();
        let none = vec![0u64; (m.size() / PAGE_SIZE).div_ceil(64) as usize];
        let hot = HotPages::none((m.size() / PAGE_SIZE) as usize);
        let (st, _) = snap.restore(&mut m, &none, Some(&hot), None);
        assert_eq!(
            (st.checked_pages, st.dirty_pages),
            (1024, 0),
            "every page checked, none written (a write, even of zeros, would allocate it)"
        );
    }

    #[test]
    fn hot_page_sets() {
        let mut h = HotPages::all(130);
        assert!(h.contains(0) && h.contains(129));
        h.retain(&[1 << 5 | 1 << 9, 0, 1]);
        assert_eq!(h.count(), 3);
        h.remove_range(8, 10);
        assert_eq!(h.count(), 2);
        assert!(h.contains(5) && h.contains(128) && !h.contains(6) && !h.contains(9));
        h.remove_range(100, 1 << 20);
        assert_eq!(h.count(), 1, "a range past the end is clipped");
        h.insert_range(60, 70);
        assert_eq!(h.count(), 11);
        assert!(h.contains(63) && h.contains(64) && !h.contains(70));
        assert_eq!(HotPages::none(130).count(), 0);
        assert!(
            !HotPages::none(130).contains(1000),
            "out of range is not writable"
        );
    }
}
