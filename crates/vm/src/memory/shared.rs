//! Snapshot pages shared copy-on-write by every VM forked from the snapshot.
//!
//! A warm QuickJS program holds ~500 pages (2 MB) at its snapshot, and each VM used to
//! get a private copy of all of them, although a request writes only a few dozen. Here
//! the snapshot's pages live once, in a sealed memfd; each VM maps the runs of pages
//! that hold data `MAP_PRIVATE | MAP_FIXED` over its anonymous pool (the way Firecracker
//! maps a snapshot's memory file). Reads, by the guest through KVM or by the host, share
//! the memfd's pages; the first write to a page (guest or host) gives that VM a private
//! copy. Pages outside the runs stay anonymous, so untouched memory still reads as the
//! zero page and costs nothing.
//!
//! The memfd is sealed (no write, grow, shrink) before any VM maps it: no VM, and no bug
//! in the host, can change what another VM reads.
//!
//! What this changes for resets ([`super::restore`]): a page inside a run that is dropped
//! (MADV_DONTNEED) reads as the snapshot's content again, not as zero, so guest memory
//! zeroes those pages with stores ([`SharedPages::split`] tells which).

use super::mapping::Mapping;
use crate::layout::PAGE_SIZE;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Errors from sharing snapshot pages.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The host backs shared memory with transparent huge pages.
    #[error("sharing snapshot pages: shared-memory transparent huge pages are [{0}] (/sys/kernel/mm/transparent_hugepage/shmem_enabled or hugepages-*/shmem_enabled), which would back each touched 2 MiB of the snapshot with a huge page; VMs fall back to private copies of the snapshot (set them to never or advise to share)")]
    ShmemHugePages(String),
    /// A memfd or mapping call failed.
    #[error("sharing snapshot pages: {call} failed: {source}; VMs fall back to private copies of the snapshot (more memory per VM)")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ShareError>;

/// Runs a VM maps, where gaps allow: each run splits the pool's mapping into two more
/// VMAs, and a process may hold only vm.max_map_count (65,530 by default) of them, for
/// every VM of every program. Runs separated by the smallest gaps (at most
/// [`MAX_GAP_PAGES`]) are merged until this many are left; a gap page reads as zero.
pub const MAX_RUNS: usize = 12;

/// Largest gap merged (64 pages: 256 KiB): merged gaps are allocated zero pages (once per
/// snapshot), so a program whose pages are spread more widely maps more runs instead.
pub const MAX_GAP_PAGES: usize = 64;

/// The snapshot's pages in a sealed memfd, and where they go.
#[derive(Debug)]
pub struct SharedPages {
    fd: OwnedFd,
    size: u64,
    /// (first page, pages) mapped from the memfd, ascending, disjoint.
    runs: Vec<(usize, usize)>,
}

fn os(call: &'static str) -> ShareError {
    ShareError::Os {
        call,
        source: io::Error::last_os_error(),
    }
}

impl SharedPages {
    /// Writes `pages` (page index, 4096 bytes; ascending) into a new sealed memfd of
    /// `size` bytes; the pages not named stay holes.
    pub fn new<'a>(size: u64, pages: impl IntoIterator<Item = (usize, &'a [u8])>) -> Result<Self> {
        if let Some(mode) = shmem_huge_pages() {
            return Err(ShareError::ShmemHugePages(mode));
        }
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new
        // descriptor or -1.
        let fd = unsafe {
            libc::memfd_create(
                c"kvmjs-snapshot".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(os("memfd_create"));
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on the descriptor just created; a sparse file, nothing allocated.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(os("ftruncate"));
        }
        let ps = PAGE_SIZE as usize;
        let file = std::mem::ManuallyDrop::new(
            // SAFETY: a borrowed view of the descriptor, never closed (ManuallyDrop).
            unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) },
        );
        let mut present: Vec<usize> = Vec::new();
        // Contiguous pages go out in one pwritev (a hello snapshot: ~500 pages in ~8 runs).
        let mut batch: Vec<&[u8]> = Vec::new();
        for (page, bytes) in pages {
            debug_assert_eq!(bytes.len(), ps);
            let next = present.last().is_some_and(|&p| p + 1 == page);
            if !next || batch.len() == IOV_BATCH {
                write_pages(&file, present.len() - batch.len(), &present, &batch)?;
                batch.clear();
            }
            present.push(page);
            batch.push(bytes);
        }
        write_pages(&file, present.len() - batch.len(), &present, &batch)?;
        let runs = merge_runs(&present, MAX_RUNS, MAX_GAP_PAGES);
        for &(start, n) in &runs {
            // The gaps merged into runs become zero pages of the memfd now, once: left as
            // holes, the first touch of one (by any VM, any request) would allocate it for
            // every VM, and a later request could time whether that had happened.
            // SAFETY: fallocate on our own memfd, inside its size.
            let rc = unsafe {
                libc::fallocate(
                    fd.as_raw_fd(),
                    0,
                    (start * ps) as libc::off_t,
                    (n * ps) as libc::off_t,
                )
            };
            if rc != 0 {
                return Err(os("fallocate"));
            }
        }
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS on our own memfd; no shared writable mapping of it exists.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(os("fcntl(F_ADD_SEALS)"));
        }
        Ok(SharedPages { fd, size, runs })
    }

    /// The runs of pages VMs map from the memfd.
    pub fn runs(&self) -> &[(usize, usize)] {
        &self.runs
    }

    /// A read-only view of every page (the snapshot's own, for resets to compare and
    /// copy from). Holes must not be read through it (they would be allocated).
    pub(super) fn view(&self) -> Result<Mapping> {
        // SAFETY: a new shared read-only mapping of our memfd, at no fixed address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.size as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os("mmap of the snapshot memfd"));
        }
        Ok(Mapping::adopt(ptr.cast(), self.size as usize))
    }

    /// Maps every run over `map` (guest memory of the same size), copy-on-write. On a
    /// failure (vm.max_map_count reached: ENOMEM) the runs already mapped are made
    /// anonymous again with the snapshot's bytes in them, so `map` reads as it did (the
    /// snapshot's contents, or zero) and holds no mapping of the memfd.
    pub(super) fn overlay(&self, map: &Mapping) -> Result<()> {
        assert_eq!(map.size as u64, self.size, "snapshot of another size");
        let ps = PAGE_SIZE as usize;
        for (k, &(start, n)) in self.runs.iter().enumerate() {
            // SAFETY: `[start, start+n)` pages lie inside `map` (same size as the memfd,
            // runs are inside it); MAP_FIXED replaces exactly those pages of a mapping we
            // own with a private mapping of the sealed memfd at the same offset.
            let ptr = unsafe {
                libc::mmap(
                    map.ptr.as_ptr().add(start * ps).cast(),
                    n * ps,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                    self.fd.as_raw_fd(),
                    (start * ps) as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                let err = os("mmap of snapshot pages into guest memory");
                for &(s, n) in &self.runs[..k] {
                    if let Err(e) = self.unshare(map, s, n, true) {
                        // Unmappable and unreadable: nothing sound is left to give back.
                        panic!("cannot undo a partial snapshot mapping: {e}");
                    }
                }
                return Err(err);
            }
            // SAFETY: advice on the range just mapped (see Mapping::new on THP).
            unsafe { libc::madvise(ptr, n * ps, libc::MADV_NOHUGEPAGE) };
        }
        Ok(())
    }

    /// Makes pages `[start, start+n)` of `map` anonymous again, zero or (`keep`) with the
    /// memfd's bytes (read with pread, which allocates nothing for a hole).
    pub(super) fn unshare(&self, map: &Mapping, start: usize, n: usize, keep: bool) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let ps = PAGE_SIZE as usize;
        // SAFETY: the pages lie inside `map`, a mapping we own; MAP_FIXED puts fresh
        // anonymous memory there in place of the memfd's pages.
        let ptr = unsafe {
            libc::mmap(
                map.ptr.as_ptr().add(start * ps).cast(),
                n * ps,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os("mmap of anonymous memory over snapshot pages"));
        }
        // SAFETY: advice on the range just mapped.
        unsafe { libc::madvise(ptr, n * ps, libc::MADV_NOHUGEPAGE) };
        if keep {
            // SAFETY: the range was just mapped read-write and belongs to `map`.
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), n * ps) };
            let file = std::mem::ManuallyDrop::new(
                // SAFETY: a borrowed view of our descriptor, never closed (ManuallyDrop).
                unsafe { std::fs::File::from_raw_fd(self.fd.as_raw_fd()) },
            );
            file.read_exact_at(dst, (start * ps) as u64)
                .map_err(|source| ShareError::Os {
                    call: "pread of snapshot pages",
                    source,
                })?;
        }
        Ok(())
    }

    /// Splits pages `[start, start+n)` into pieces inside runs (`true`: dropping them
    /// would bring the snapshot's contents back) and outside (`false`).
    pub fn split(&self, start: usize, n: usize) -> Vec<(usize, usize, bool)> {
        let mut out = Vec::new();
        let end = start + n;
        let mut at = start;
        let first = self.runs.partition_point(|&(s, len)| s + len <= start);
        for &(s, len) in &self.runs[first..] {
            if s >= end {
                break;
            }
            if s > at {
                out.push((at, s - at, false));
                at = s;
            }
            let stop = (s + len).min(end);
            if stop > at {
                out.push((at, stop - at, true));
                at = stop;
            }
        }
        if at < end {
            out.push((at, end - at, false));
        }
        out
    }
}

/// Pages per pwritev (IOV_MAX is 1024).
const IOV_BATCH: usize = 256;

/// Writes `batch` (contiguous pages, the first being `present[first]`) into the memfd.
fn write_pages(
    file: &std::fs::File,
    first: usize,
    present: &[usize],
    batch: &[&[u8]],
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let Some(&page) = present.get(first) else {
        return Ok(());
    };
    let ps = PAGE_SIZE as usize;
    let iov: Vec<libc::iovec> = batch
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: each iovec names one of `batch`'s slices, alive and unchanged for the call.
    let n = unsafe {
        libc::pwritev(
            file.as_raw_fd(),
            iov.as_ptr(),
            iov.len() as libc::c_int,
            (page * ps) as libc::off_t,
        )
    };
    let done = if n < 0 { 0 } else { n as usize };
    // A short write (not seen on a memfd, but allowed): the rest page by page.
    let mut at = 0;
    for (i, b) in batch.iter().enumerate() {
        let end = at + b.len();
        if end > done {
            let skip = done.saturating_sub(at);
            file.write_all_at(&b[skip..], ((page + i) * ps + skip) as u64)
                .map_err(|source| ShareError::Os {
                    call: "pwrite",
                    source,
                })?;
        }
        at = end;
    }
    Ok(())
}

/// Pages of `map` (guest memory) that are this VM's own: present in its page tables,
/// not a file page (the snapshot's, still shared) and mapped only here (not the shared
/// zero page that reads of untouched memory map). mincore names the candidates (it also
/// counts the zero page, and every page of the runs as the memfd's), pagemap decides.
pub(super) fn private_pages(map: &Mapping) -> u64 {
    use std::os::unix::fs::FileExt;
    let ps = PAGE_SIZE as usize;
    let pages = map.size / ps;
    let mut vec = vec![0u8; pages];
    // SAFETY: mincore reads no memory; it writes one byte per page of our mapping into
    // `vec`, which has exactly that many.
    let rc = unsafe { libc::mincore(map.ptr.as_ptr().cast(), map.size, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    let Ok(pagemap) = std::fs::File::open("/proc/self/pagemap") else {
        return vec.iter().filter(|&&b| b & 1 != 0).count() as u64;
    };
    const PRESENT: u64 = 1 << 63;
    const FILE_OR_SHARED: u64 = 1 << 61;
    const EXCLUSIVE: u64 = 1 << 56;
    let base = map.ptr.as_ptr() as u64 / PAGE_SIZE;
    let mut total = 0;
    let mut buf = Vec::new();
    let mut count = |start: usize, n: usize| {
        buf.resize(n * 8, 0);
        if pagemap
            .read_exact_at(&mut buf, (base + start as u64) * 8)
            .is_ok()
        {
            total += buf
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .filter(|&e| e & (PRESENT | FILE_OR_SHARED | EXCLUSIVE) == PRESENT | EXCLUSIVE)
                .count() as u64;
        }
    };
    let mut run: Option<(usize, usize)> = None;
    for (page, b) in vec.iter().enumerate() {
        if b & 1 == 0 {
            if let Some((s, n)) = run.take() {
                count(s, n);
            }
            continue;
        }
        run = match run {
            Some((s, n)) => Some((s, n + 1)),
            None => Some((page, 1)),
        };
    }
    if let Some((s, n)) = run {
        count(s, n);
    }
    total
}

/// The shared-memory huge-page mode that would put huge pages into the memfd, if any:
/// the global shmem_enabled, or a per-size one (Linux 6.11+) set to always/within_size
/// (or inherit, when the global one forces them).
fn shmem_huge_pages() -> Option<String> {
    let dir = std::path::Path::new("/sys/kernel/mm/transparent_hugepage");
    let global = std::fs::read_to_string(dir.join("shmem_enabled")).ok();
    let forced = global
        .as_deref()
        .and_then(shmem_thp_forced)
        .map(str::to_string);
    if forced.is_some() {
        return forced;
    }
    let sizes = std::fs::read_dir(dir).ok()?;
    for e in sizes.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("hugepages-") {
            continue;
        }
        let Ok(set) = std::fs::read_to_string(e.path().join("shmem_enabled")) else {
            continue;
        };
        if let Some(mode) = shmem_thp_forced(&set).filter(|m| *m != "inherit") {
            return Some(format!("{mode} for {name}"));
        }
    }
    None
}

/// The selected mode of shmem_enabled (`always [within_size] advise never deny force`)
/// when it puts huge pages into a memfd written page by page: anything but never,
/// advise and deny.
fn shmem_thp_forced(setting: &str) -> Option<&str> {
    let mode = setting
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))?;
    (!matches!(mode, "never" | "advise" | "deny" | "inherit")).then_some(mode)
}

/// Runs of the ascending page numbers `pages`, merging the smallest gaps (of at most
/// `max_gap` pages) until at most `max` runs are left.
fn merge_runs(pages: &[usize], max: usize, max_gap: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &p in pages {
        match runs.last_mut() {
            Some((s, n)) if *s + *n == p => *n += 1,
            _ => runs.push((p, 1)),
        }
    }
    while runs.len() > max.max(1) {
        let (i, gap) = runs
            .windows(2)
            .enumerate()
            .map(|(i, w)| (i, w[1].0 - (w[0].0 + w[0].1)))
            .min_by_key(|&(_, gap)| gap)
            .expect("more than one run");
        if gap > max_gap {
            break;
        }
        let (s, _) = runs[i];
        let (s2, n2) = runs.remove(i + 1);
        runs[i].1 = s2 + n2 - s;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_the_smallest_gaps_first() {
        assert_eq!(merge_runs(&[], 4, 64), vec![]);
        assert_eq!(
            merge_runs(&[1, 2, 3, 7, 8, 20], 8, 64),
            vec![(1, 3), (7, 2), (20, 1)]
        );
        // Gaps: 3 pages (4..7), 11 pages (9..20): the smaller goes first.
        assert_eq!(
            merge_runs(&[1, 2, 3, 7, 8, 20], 2, 64),
            vec![(1, 8), (20, 1)]
        );
        assert_eq!(merge_runs(&[1, 2, 3, 7, 8, 20], 1, 64), vec![(1, 20)]);
        // A gap over the limit stays a gap, however many runs that leaves.
        assert_eq!(
            merge_runs(&[1, 2, 3, 7, 8, 20], 1, 10),
            vec![(1, 8), (20, 1)]
        );
    }

    #[test]
    fn shmem_huge_pages_are_detected() {
        let forced = |s| shmem_thp_forced(s);
        assert_eq!(forced("always within_size advise [never] deny force"), None);
        assert_eq!(forced("always within_size [advise] never deny force"), None);
        assert_eq!(
            forced("[always] within_size advise never deny force"),
            Some("always")
        );
        assert_eq!(
            forced("always [within_size] advise never deny force"),
            Some("within_size")
        );
        assert_eq!(
            forced("always within_size advise never deny [force]"),
            Some("force")
        );
        assert_eq!(forced(""), None);
    }

    #[test]
    fn split_names_the_pieces_inside_runs() {
        let page = [7u8; 4096];
        let s =
            SharedPages::new(64 * 4096, [(4, &page[..]), (5, &page[..]), (10, &page[..])]).unwrap();
        assert_eq!(s.runs(), &[(4, 2), (10, 1)]);
        assert_eq!(
            s.split(0, 16),
            vec![
                (0, 4, false),
                (4, 2, true),
                (6, 4, false),
                (10, 1, true),
                (11, 5, false)
            ]
        );
        assert_eq!(s.split(5, 1), vec![(5, 1, true)]);
        assert_eq!(s.split(6, 3), vec![(6, 3, false)]);
        assert_eq!(s.split(12, 4), vec![(12, 4, false)]);
    }

    #[test]
    fn vms_share_pages_until_they_write_and_the_memfd_is_sealed() {
        let page = [0x5au8; 4096];
        let s = SharedPages::new(16 * 4096, [(2, &page[..])]).unwrap();
        let a = Mapping::new(16 * 4096, false).unwrap();
        let b = Mapping::new(16 * 4096, false).unwrap();
        s.overlay(&a).unwrap();
        s.overlay(&b).unwrap();
        // SAFETY: page 2 lies inside both 16-page mappings.
        let (pa, pb) = unsafe { (a.ptr.as_ptr().add(2 * 4096), b.ptr.as_ptr().add(2 * 4096)) };
        // SAFETY: reads and a write inside mappings this test owns.
        unsafe {
            assert_eq!((*pa, *pb), (0x5a, 0x5a));
            *pa = 1;
            assert_eq!((*pa, *pb), (1, 0x5a), "a write stays in its VM");
            // Page 0 is outside the runs: anonymous, zero.
            assert_eq!(*a.ptr.as_ptr(), 0);
        }
        let view = s.view().unwrap();
        // SAFETY: page 2 lies inside the view.
        assert_eq!(unsafe { *view.ptr.as_ptr().add(2 * 4096) }, 0x5a);
        // SAFETY: pwrite of one byte from a local into our memfd.
        let rc = unsafe { libc::pwrite(s.fd.as_raw_fd(), [0u8].as_ptr().cast(), 1, 0) };
        assert_eq!(rc, -1, "the memfd refuses writes once sealed");
        // Private pages: page 2 of `a` (written), none of `b` (page 2 read only), not
        // page 0 of `a` (read: the zero page).
        assert_eq!(private_pages(&a), 1);
        assert_eq!(private_pages(&b), 0);
        // Made anonymous again with the memfd's bytes: same contents, no longer shared.
        s.unshare(&b, 2, 1, true).unwrap();
        // SAFETY: page 2 lies inside the mapping.
        assert_eq!(unsafe { *pb }, 0x5a);
        assert_eq!(private_pages(&b), 1);
        // A dropped page inside a run reads as the snapshot again: why resets zero by
        // stores there (SharedPages::split).
        a.discard(2 * 4096, 4096);
        // SAFETY: page 2 lies inside the mapping.
        assert_eq!(unsafe { *pa }, 0x5a);
    }
}
