//! brk and anonymous mappings. Page tables never change (all guest memory outside the
//! image is mapped read-write, no-exec), so mprotect records nothing and mmap only hands
//! out address ranges; freed ranges are discarded so they read as zero when reused.

use super::{errno, Args, Ctx, Entry, Flow};
use crate::layout::{align_up, PAGE_SIZE};
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    Entry {
        nr: Sysno::brk as usize,
        handler: brk,
    },
    Entry {
        nr: Sysno::mmap as usize,
        handler: mmap,
    },
    Entry {
        nr: Sysno::munmap as usize,
        handler: munmap,
    },
    Entry {
        nr: Sysno::mprotect as usize,
        handler: accept,
    },
    Entry {
        nr: Sysno::madvise as usize,
        handler: madvise,
    },
    Entry {
        nr: Sysno::mremap as usize,
        handler: mremap,
    },
    Entry {
        nr: Sysno::msync as usize,
        handler: accept,
    },
    Entry {
        nr: Sysno::mlock as usize,
        handler: accept,
    },
    Entry {
        nr: Sysno::munlock as usize,
        handler: accept,
    },
];

const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const MADV_DONTNEED: u64 = 4;
const MADV_FREE: u64 = 8;

fn accept(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::ok(0)
}

fn brk(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let p = &mut *ctx.proc;
    let want = a[0];
    if want < p.brk_start || want > p.brk_max {
        return Flow::ok(p.brk);
    }
    let (old_end, new_end) = (align_up(p.brk, PAGE_SIZE), align_up(want, PAGE_SIZE));
    if new_end > old_end && !p.may_grow(new_end - old_end) {
        return Flow::ok(p.brk);
    }
    if new_end < old_end {
        // Shrinking: the freed pages must read as zero if the heap grows again.
        if ctx.mem.zero(new_end, old_end - new_end).is_err() {
            return Flow::ok(p.brk);
        }
    }
    p.brk = want;
    p.changed = true;
    Flow::ok(want)
}

/// Rounds a guest length up to pages; lengths beyond guest memory are refused first, so
/// nothing overflows.
fn pages(ctx: &Ctx<'_>, len: u64) -> Option<u64> {
    (len <= ctx.mem.size()).then(|| align_up(len, PAGE_SIZE))
}

fn mmap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (addr, len, flags) = (a[0], a[1], a[3]);
    if len == 0 || !addr.is_multiple_of(PAGE_SIZE) {
        return Flow::err(errno::EINVAL);
    }
    // Linux ignores the fd of an anonymous mapping. File mappings would need page-cache
    // semantics; guests read files instead.
    if flags & MAP_ANONYMOUS == 0 {
        return Flow::err(errno::ENOSYS);
    }
    // A shared anonymous mapping acts as private: there is no other process to share with.
    let Some(len) = pages(ctx, len) else {
        return Flow::err(errno::ENOMEM);
    };
    let p = &mut *ctx.proc;
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
        if !p.mmap.contains(addr, len) {
            return Flow::err(errno::ENOMEM);
        }
        let was_free = p.mmap.is_free(addr, len);
        if flags & MAP_FIXED_NOREPLACE != 0 && !was_free {
            return Flow::err(libc::EEXIST);
        }
        if was_free && !p.may_grow(len) {
            return Flow::err(errno::ENOMEM);
        }
        if !was_free && ctx.mem.zero(addr, len).is_err() {
            return Flow::err(errno::ENOMEM);
        }
        p.mmap.take(addr, len);
        p.changed = true;
        return Flow::ok(addr);
    }
    if !p.may_grow(len) {
        return Flow::err(errno::ENOMEM);
    }
    match p.mmap.alloc(len) {
        Some(at) => {
            p.changed = true;
            Flow::ok(at)
        }
        None => Flow::err(errno::ENOMEM),
    }
}

fn unmap(ctx: &mut Ctx<'_>, addr: u64, len: u64) -> Result<(), i32> {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(errno::EINVAL);
    }
    let len = pages(ctx, len).ok_or(errno::EINVAL)?;
    if !ctx.proc.mmap.contains(addr, len) {
        // Linux allows unmapping anything; outside the mmap area there is nothing to do,
        // and in particular the image and stack stay mapped.
        return Ok(());
    }
    ctx.mem.zero(addr, len).map_err(|_| errno::EINVAL)?;
    ctx.proc.mmap.release(addr, len);
    ctx.proc.changed = true;
    Ok(())
}

fn munmap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match unmap(ctx, a[0], a[1]) {
        Ok(()) => Flow::ok(0),
        Err(e) => Flow::err(e),
    }
}

fn madvise(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (addr, advice) = (a[0], a[2]);
    let Some(len) = pages(ctx, a[1]) else {
        return Flow::err(errno::EINVAL);
    };
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Flow::err(errno::EINVAL);
    }
    if matches!(advice, MADV_DONTNEED | MADV_FREE)
        && ctx.proc.mmap.contains(addr, len)
        && ctx.mem.zero(addr, len).is_err()
    {
        return Flow::err(errno::ENOMEM);
    }
    Flow::ok(0)
}

fn mremap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (old, flags) = (a[0], a[3]);
    let (Some(old_len), Some(new_len)) = (pages(ctx, a[1]), pages(ctx, a[2])) else {
        return Flow::err(errno::ENOMEM);
    };
    if !old.is_multiple_of(PAGE_SIZE) || new_len == 0 || flags & MREMAP_FIXED != 0 {
        return Flow::err(errno::EINVAL);
    }
    let p = &mut *ctx.proc;
    if !p.mmap.contains(old, old_len) || !p.mmap.contains(old, 0) {
        return Flow::err(errno::EFAULT);
    }
    if new_len <= old_len {
        if new_len < old_len {
            if let Err(e) = unmap(ctx, old + new_len, old_len - new_len) {
                return Flow::err(e);
            }
        }
        return Flow::ok(old);
    }
    let grow = new_len - old_len;
    if !p.may_grow(grow) {
        return Flow::err(errno::ENOMEM);
    }
    if p.mmap.contains(old + old_len, grow) && p.mmap.is_free(old + old_len, grow) {
        p.mmap.take(old + old_len, grow);
        p.changed = true;
        return Flow::ok(old);
    }
    if flags & MREMAP_MAYMOVE == 0 {
        return Flow::err(errno::ENOMEM);
    }
    let Some(at) = p.mmap.alloc(new_len) else {
        return Flow::err(errno::ENOMEM);
    };
    p.changed = true;
    if ctx.mem.copy_within(old, at, old_len).is_err() {
        return Flow::err(errno::EFAULT);
    }
    match unmap(ctx, old, old_len) {
        Ok(()) => Flow::ok(at),
        Err(e) => Flow::err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use syscalls::Sysno;

    const ANON_PRIVATE: u64 = 0x22;

    #[test]
    fn brk_grows_within_limits() {
        let mut f = Fixture::new();
        let start = f.call(Sysno::brk, [0; 6]) as u64;
        assert_eq!(start, f.proc.brk_start);
        assert_eq!(
            f.call(Sysno::brk, [start + 0x10000, 0, 0, 0, 0, 0]) as u64,
            start + 0x10000
        );
        // Beyond max_memory (16 MiB): the break stays.
        assert_eq!(
            f.call(Sysno::brk, [start + (32 << 20), 0, 0, 0, 0, 0]) as u64,
            start + 0x10000
        );
    }

    #[test]
    fn mmap_munmap_reuse_reads_zero() {
        let mut f = Fixture::new();
        let a = f.call(Sysno::mmap, [0, 8192, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        assert!(f.proc.mmap.contains(a, 8192));
        f.mem.write(a, b"secret").unwrap();
        assert_eq!(f.call(Sysno::munmap, [a, 8192, 0, 0, 0, 0]), 0);
        let b = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        assert_eq!(a, b);
        assert_eq!(f.mem.slice(b, 6).unwrap(), &[0; 6]);
    }

    #[test]
    fn mmap_enforces_max_memory_and_rejects_files() {
        let mut f = Fixture::new();
        let r = f.call(Sysno::mmap, [0, 32 << 20, 3, ANON_PRIVATE, u64::MAX, 0]);
        assert_eq!(r, -i64::from(libc::ENOMEM));
        let r = f.call(Sysno::mmap, [0, 4096, 1, 0x2, 3, 0]);
        assert_eq!(r, -i64::from(libc::ENOSYS));
        let r = f.call(Sysno::mmap, [0, u64::MAX, 3, ANON_PRIVATE, u64::MAX, 0]);
        assert_eq!(r, -i64::from(libc::ENOMEM));
        for nr in [Sysno::munmap, Sysno::madvise] {
            assert!(
                f.call(nr, [0x100_0000, u64::MAX - 10, 4, 0, 0, 0]) < 0,
                "{nr:?} with a huge length"
            );
        }
        assert!(f.call(Sysno::mremap, [0x100_0000, u64::MAX, u64::MAX - 1, 1, 0, 0]) < 0);
    }

    #[test]
    fn mremap_moves_and_keeps_data() {
        let mut f = Fixture::new();
        let a = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        let _b = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        f.mem.write(a, b"keep").unwrap();
        let c = f.call(Sysno::mremap, [a, 4096, 16384, 1, 0, 0]) as u64;
        assert_ne!(c, a);
        assert_eq!(f.mem.slice(c, 4).unwrap(), b"keep");
        assert_eq!(f.call(Sysno::mremap, [c, 16384, 4096, 0, 0, 0]) as u64, c);
    }
}
