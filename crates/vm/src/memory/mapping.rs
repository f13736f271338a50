//! The host mapping behind guest memory and snapshots: anonymous, private, never
//! reserved up front, huge pages only when asked for.

use super::{MemoryError, Result};
use crate::layout::PAGE_SIZE;
use std::ptr::NonNull;

/// An anonymous host mapping with its size.
#[derive(Debug)]
pub(super) struct Mapping {
    pub(super) ptr: NonNull<u8>,
    pub(super) size: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access is synchronised by the
// owner (`&`/`&mut`), so moving it or sharing `&` across threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: see above; shared access is read-only.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(super) fn new(size: u64, hugepages: bool) -> Result<Self> {
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
        if !hugepages {
            // Transparent huge pages (THP "always" on some hosts) would make the kernel
            // back each touched 2 MiB region of this mostly-empty mapping with a whole
            // huge page: a hello program touches ~500 scattered 4 KiB pages, which THP
            // turns into megabytes. Huge pages are what `hugepages` asks for explicitly.
            // SAFETY: advice on the mapping just created; it changes no contents.
            let rc = unsafe { libc::madvise(ptr, size as usize, libc::MADV_NOHUGEPAGE) };
            if rc != 0 {
                tracing::debug!(
                    "madvise(MADV_NOHUGEPAGE) on guest memory failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned a non-null pointer"),
            size: size as usize,
        })
    }

    /// Takes ownership of a mapping made elsewhere (unmapped on drop).
    pub(super) fn adopt(ptr: *mut u8, size: usize) -> Self {
        Mapping {
            ptr: NonNull::new(ptr).expect("mmap returned a non-null pointer"),
            size,
        }
    }

    /// Page `page` of the mapping.
    pub(super) fn page_mut(&mut self, page: usize) -> &mut [u8] {
        let ps = PAGE_SIZE as usize;
        assert!(
            (page + 1) * ps <= self.size,
            "page {page} outside the mapping"
        );
        // SAFETY: the page lies inside the mapping (asserted); `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(page * ps), ps) }
    }

    /// Drops the pages of `[off, off+len)`: they read as zero afterwards.
    pub(super) fn discard(&self, off: usize, len: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_memory_opts_out_of_transparent_huge_pages() {
        let m = Mapping::new(4 << 20, false).unwrap();
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            // A kernel without THP has nothing to opt out of (and refuses the advice).
            eprintln!("no transparent huge pages on this kernel: nothing to check");
            return;
        }
        let at = m.ptr.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        // The entry whose range holds the mapping (the kernel may merge it with a
        // neighbour that has the same flags) and that entry's VmFlags line.
        let mut flags = None;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| {
                let (lo, hi) = r.split_once('-')?;
                Some((
                    usize::from_str_radix(lo, 16).ok()?,
                    usize::from_str_radix(hi, 16).ok()?,
                ))
            });
            if let Some((lo, hi)) = range {
                inside = (lo..hi).contains(&at);
            } else if inside {
                if let Some(f) = line.strip_prefix("VmFlags:") {
                    flags = Some(f.to_string());
                }
            }
        }
        let flags = flags.expect("the mapping is in /proc/self/smaps");
        // "nh": VM_NOHUGEPAGE, set by MADV_NOHUGEPAGE.
        assert!(flags.split_whitespace().any(|f| f == "nh"), "{flags}");
    }
}
