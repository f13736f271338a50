//! brk, mmap, munmap, mprotect, mremap, madvise: thin decoders over the address space
//! (crate::mm), which keeps the guest's page tables. After every call that may have
//! taken rights away from a present page, KVM's stale translations are dropped before
//! the guest runs again (GuestMemory::sync_mappings).
//!
//! Scratch files map too: privately as a copy, shared as a window the calls here and the
//! file calls keep coherent with the file (crate::mm::shared, [`shared_before`],
//! [`shared_after`]).

use super::{e, errno, Args, Ctx, Entry, Flow};
use crate::fs::scratch::ScratchFile;
use crate::fs::{File, OpenFile};
use crate::layout::{align_up, PAGE_SIZE};
use crate::mm::{flags, FileBytes, FileSource, MmError};
use std::sync::Arc;
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::brk, brk),
    e(Sysno::mmap, mmap),
    e(Sysno::munmap, munmap),
    e(Sysno::mprotect, mprotect),
    e(Sysno::madvise, madvise),
    e(Sysno::mremap, mremap),
    e(Sysno::msync, msync),
    e(Sysno::mlock, accept),
    e(Sysno::munlock, accept),
];

fn accept(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::ok(0)
}

/// Ends a memory call: drops KVM translations the call made stale, then returns.
fn done(ctx: &mut Ctx<'_>, r: Result<u64, MmError>) -> Flow {
    ctx.proc.changed = true;
    if let Err(e) = ctx.mem.sync_mappings() {
        // The guest cannot continue safely with stale translations.
        return Flow::Stop(super::Stop::Fatal(format!(
            "kvmjs could not invalidate guest mappings: {e}"
        )));
    }
    match r {
        Ok(v) => Flow::ok(v),
        Err(e) => {
            if matches!(e, MmError::NoMemory) {
                ctx.proc.memory_refused = true;
            }
            Flow::err(e.errno())
        }
    }
}

fn brk(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let budget = ctx.proc.memory_budget();
    let v = ctx.proc.mm.set_brk(ctx.mem, a[0], budget);
    done(ctx, Ok(v))
}

/// Before a call reads or changes `file` (or maps it): stores through its shared
/// mappings reach it. One branch when nothing is mapped shared.
pub(super) fn shared_before(ctx: &mut Ctx<'_>, file: &dyn File) {
    let w = &ctx.proc.fds.shared_maps;
    if !w.is_empty() && w.flush_file(&ctx.proc.mm, ctx.mem, file) {
        ctx.proc.changed = true;
    }
}

/// After a call changed `file`: its shared mappings show the new bytes.
pub(super) fn shared_after(ctx: &mut Ctx<'_>, file: &dyn File) {
    let w = &ctx.proc.fds.shared_maps;
    if !w.is_empty() {
        w.refresh_file(&ctx.proc.mm, ctx.mem, file);
    }
}

/// Truncates `file` to `len` between the hooks (truncate by path, where no description
/// runs them); the file's errno on failure.
pub(super) fn shared_truncate(ctx: &mut Ctx<'_>, file: &dyn File, len: u64) -> Result<(), i32> {
    shared_before(ctx, file);
    file.truncate(len)?;
    shared_after(ctx, file);
    Ok(())
}

/// Guest `[addr, addr + len)` rounded to pages, saturating (for window bookkeeping only;
/// the address space validates the range itself).
fn span(addr: u64, len: u64) -> (u64, u64) {
    (
        addr,
        addr.saturating_add(align_up(len.min(1 << 48), PAGE_SIZE)),
    )
}

/// Flushes the shared windows overlapping `[start, end)` before a call reworks it.
fn flush_range(ctx: &mut Ctx<'_>, (start, end): (u64, u64)) {
    let w = &ctx.proc.fds.shared_maps;
    if !w.is_empty() {
        w.flush_range(&ctx.proc.mm, ctx.mem, start, end);
    }
}

/// What a file mapping copies from.
enum Source {
    /// A read-only host file under the allowed paths.
    Host(Arc<std::fs::File>, Arc<str>),
    /// A scratch file, through its open description.
    Scratch(Arc<OpenFile>),
}

/// The file behind `fd` for a file mapping.
fn mmap_source(ctx: &Ctx<'_>, fd: u64) -> Result<Source, MmError> {
    let d = ctx.proc.fds.get(fd).ok_or(MmError::Io(errno::EBADF))?;
    if d.file.as_any().is::<ScratchFile>() {
        return Ok(Source::Scratch(d.clone()));
    }
    match (d.file.host_file(), d.file.path()) {
        (Some(file), Some(path)) => Ok(Source::Host(file.clone(), Arc::from(path))),
        _ => Err(MmError::NoDevice),
    }
}

/// Maps a scratch file: a private copy, or the frames of a shared window (which the
/// caller records once the call succeeded).
fn mmap_scratch(ctx: &mut Ctx<'_>, a: &Args, d: &Arc<OpenFile>) -> Result<u64, MmError> {
    use crate::fs::flags::{ACCMODE, RDWR, WRONLY};
    let (addr, len, prot, fl, off) = (a[0], a[1], a[2], a[3], a[5]);
    let shared = fl & 3 != flags::PRIVATE;
    // Linux: the description must be readable, and writable for a writable shared map.
    let mode = d.flags() & ACCMODE;
    if mode == WRONLY || (shared && prot & 2 != 0 && mode != RDWR) {
        return Err(MmError::Io(errno::EACCES));
    }
    if shared {
        let fixed = (fl & (flags::FIXED | flags::FIXED_NOREPLACE) != 0).then(|| span(addr, len));
        let cap = ctx.proc.max_memory;
        ctx.proc.fds.shared_maps.check_map(fixed, off, len, cap)?;
    }
    // The new mapping starts from the file's latest bytes.
    shared_before(ctx, &*d.file);
    let src = FileSource {
        file: FileBytes::Scratch(&*d.file),
        path: Arc::from(d.file.path().unwrap_or("")),
    };
    let budget = ctx.proc.memory_budget();
    ctx.proc
        .mm
        .mmap(ctx.mem, addr, len, prot, fl, Some((src, off)), budget)
}

fn mmap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (addr, len, prot, fl, fd, off) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let budget = ctx.proc.memory_budget();
    // A MAP_FIXED mapping replaces what was there: shared windows in the way are flushed
    // now and forgotten once it succeeds.
    let fixed = fl & (flags::FIXED | flags::FIXED_NOREPLACE) != 0;
    if fixed {
        if let Err(e) = ctx
            .proc
            .fds
            .shared_maps
            .check_forget(addr, span(addr, len).1)
        {
            return done(ctx, Err(e));
        }
        flush_range(ctx, span(addr, len));
    }
    // Linux ignores the fd of an anonymous mapping; a shared anonymous mapping acts as
    // private: there is no other process to share with.
    let mut window = None;
    let r = if fl & flags::ANONYMOUS != 0 {
        ctx.proc.mm.mmap(ctx.mem, addr, len, prot, fl, None, budget)
    } else {
        match mmap_source(ctx, fd) {
            Ok(Source::Host(file, path)) => {
                let src = FileSource {
                    file: FileBytes::Host(&file),
                    path,
                };
                ctx.proc
                    .mm
                    .mmap(ctx.mem, addr, len, prot, fl, Some((src, off)), budget)
            }
            Ok(Source::Scratch(d)) => {
                if fl & 3 != flags::PRIVATE {
                    let may_write = d.flags() & crate::fs::flags::ACCMODE == crate::fs::flags::RDWR;
                    window = Some((d.file.clone(), may_write));
                }
                mmap_scratch(ctx, a, &d)
            }
            Err(e) => Err(e),
        }
    };
    if r.is_err() && fixed {
        // A MAP_FIXED that failed after unmapping the range: its windows are gone too.
        forget_if_unmapped(ctx, span(addr, len));
    }
    let r = r.and_then(|start| {
        let end = start + align_up(len, PAGE_SIZE);
        let w = &mut ctx.proc.fds.shared_maps;
        if fixed {
            w.forget(start, end);
        }
        match window {
            Some((file, may_write)) => w
                .add(start, end, off, may_write, file)
                .map(|()| start)
                .inspect_err(|_| {
                    // Room was checked before mapping; never leave an untracked window.
                    let _ = ctx.proc.mm.munmap(ctx.mem, start, end - start);
                }),
            None => Ok(start),
        }
    });
    done(ctx, r)
}

/// Forgets the windows in `[start, end)` if nothing is mapped there any more (a failed
/// MAP_FIXED or MREMAP_FIXED may have unmapped its destination before failing).
fn forget_if_unmapped(ctx: &mut Ctx<'_>, (start, end): (u64, u64)) {
    if start < end && ctx.proc.mm.range_is_free(start, end) {
        ctx.proc.fds.shared_maps.forget(start, end);
    }
}

fn munmap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (s, e) = span(a[0], a[1]);
    if let Err(e) = ctx.proc.fds.shared_maps.check_forget(s, e) {
        return done(ctx, Err(e));
    }
    flush_range(ctx, span(a[0], a[1]));
    let r = ctx.proc.mm.munmap(ctx.mem, a[0], a[1]).map(|()| 0);
    if r.is_ok() {
        let (s, e) = span(a[0], a[1]);
        ctx.proc.fds.shared_maps.forget(s, e);
    }
    done(ctx, r)
}

/// msync: shared windows in the range reach their files (which are in memory: nothing
/// further to write).
fn msync(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    const FLAGS: u64 = 1 | 2 | 4; // MS_ASYNC | MS_INVALIDATE | MS_SYNC
    if !a[0].is_multiple_of(PAGE_SIZE) || a[2] & !FLAGS != 0 || a[2] & 5 == 5 {
        return Flow::err(errno::EINVAL);
    }
    flush_range(ctx, span(a[0], a[1]));
    ctx.proc.changed = true;
    Flow::ok(0)
}

fn mprotect(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let budget = ctx.proc.memory_budget();
    let (s, e) = span(a[0], a[1]);
    if let Err(e) = ctx.proc.fds.shared_maps.check_protect(s, e, a[2]) {
        return done(ctx, Err(e));
    }
    // Pages of a PROT_NONE window get their frames here: they must show the file.
    flush_range(ctx, span(a[0], a[1]));
    let r = ctx
        .proc
        .mm
        .mprotect(ctx.mem, a[0], a[1], a[2], budget)
        .map(|()| 0);
    if r.is_ok() && !ctx.proc.fds.shared_maps.is_empty() {
        ctx.proc
            .fds
            .shared_maps
            .refresh_range(&ctx.proc.mm, ctx.mem, s, e);
    }
    done(ctx, r)
}

fn madvise(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    // MADV_DONTNEED on a shared file page reads the file again: flush, drop, refresh.
    flush_range(ctx, span(a[0], a[1]));
    let r = ctx.proc.mm.madvise(ctx.mem, a[0], a[1], a[2]).map(|()| 0);
    let (s, e) = span(a[0], a[1]);
    if !ctx.proc.fds.shared_maps.is_empty() {
        ctx.proc
            .fds
            .shared_maps
            .refresh_range(&ctx.proc.mm, ctx.mem, s, e);
    }
    done(ctx, r)
}

fn mremap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (old, old_len, new_len, fl, new_addr) = (a[0], a[1], a[2], a[3], a[4]);
    let budget = ctx.proc.memory_budget();
    let fixed = (fl & flags::MREMAP_FIXED != 0).then(|| span(new_addr, new_len));
    let (cap, w) = (ctx.proc.max_memory, &ctx.proc.fds.shared_maps);
    let (old_len_pages, new_len_pages) = (
        align_up(old_len.clamp(1, 1 << 48), PAGE_SIZE),
        align_up(new_len.min(1 << 48), PAGE_SIZE),
    );
    if let Err(e) = w.check_remap(fixed, old, old_len_pages, new_len_pages, cap) {
        return done(ctx, Err(e));
    }
    flush_range(ctx, span(old, old_len));
    if let Some(dest) = fixed {
        flush_range(ctx, dest);
    }
    let r = ctx
        .proc
        .mm
        .mremap(ctx.mem, old, old_len, new_len, fl, new_addr, budget);
    if let Ok(dest) = r {
        let w = &mut ctx.proc.fds.shared_maps;
        if !w.is_empty() {
            let (old_len, new_len) = (
                align_up(old_len.max(1), PAGE_SIZE),
                align_up(new_len, PAGE_SIZE),
            );
            if fl & flags::MREMAP_FIXED != 0 {
                w.forget(dest, dest + new_len);
            }
            w.moved(old, old_len, dest, new_len);
            w.refresh_range(&ctx.proc.mm, ctx.mem, dest, dest + new_len);
        }
    } else if let Some(dest) = fixed {
        forget_if_unmapped(ctx, dest);
    }
    done(ctx, r)
}

#[cfg(test)]
mod shared_tests;

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use syscalls::Sysno;

    pub(super) const ANON_PRIVATE: u64 = 0x22;

    /// A fixture whose guest-facing addresses go through the page tables.
    pub(super) fn fixture() -> Fixture {
        let mut f = Fixture::new();
        let root = f.proc.mm.root(&mut f.mem).unwrap();
        f.mem.set_root(Some(root));
        f
    }

    #[test]
    fn brk_grows_within_limits() {
        let mut f = fixture();
        let start = f.call(Sysno::brk, [0; 6]) as u64;
        assert_eq!(start, f.proc.mm.brk_start());
        assert_eq!(
            f.call(Sysno::brk, [start + 0x10000, 0, 0, 0, 0, 0]) as u64,
            start + 0x10000
        );
        f.mem.write(start + 0xf000, b"heap").unwrap();
        // Beyond max_memory (16 MiB): the break stays.
        assert_eq!(
            f.call(Sysno::brk, [start + (32 << 20), 0, 0, 0, 0, 0]) as u64,
            start + 0x10000
        );
    }

    #[test]
    fn mmap_munmap_reuse_reads_zero() {
        let mut f = fixture();
        let a = f.call(Sysno::mmap, [0, 8192, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        f.mem.write(a, b"secret").unwrap();
        assert_eq!(f.call(Sysno::munmap, [a, 8192, 0, 0, 0, 0]), 0);
        assert!(f.mem.slice(a, 1).is_err());
        let b = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        assert_eq!(f.mem.slice(b, 6).unwrap(), &[0; 6]);
    }

    #[test]
    fn mmap_enforces_max_memory_and_checks_files() {
        let mut f = fixture();
        let r = f.call(Sysno::mmap, [0, 32 << 20, 3, ANON_PRIVATE, u64::MAX, 0]);
        assert_eq!(r, -i64::from(libc::ENOMEM));
        // A reservation of any size costs nothing.
        let r = f.call(Sysno::mmap, [0, 16 << 30, 0, ANON_PRIVATE, u64::MAX, 0]);
        assert!(r > 0);
        let r = f.call(Sysno::mmap, [0, 4096, 1, 0x2, 99, 0]);
        assert_eq!(r, -i64::from(libc::EBADF));
        let r = f.call(Sysno::mmap, [0, 4096, 1, 0x2, 1, 0]);
        assert_eq!(r, -i64::from(libc::ENODEV), "stdout cannot be mapped");
        let r = f.call(Sysno::mmap, [0, u64::MAX, 3, ANON_PRIVATE, u64::MAX, 0]);
        assert!(r < 0);
        for nr in [Sysno::munmap, Sysno::madvise, Sysno::mprotect] {
            assert!(
                f.call(nr, [0x100_0000, u64::MAX - 10, 4, 0, 0, 0]) < 0,
                "{nr:?} with a huge length"
            );
        }
        assert!(f.call(Sysno::mremap, [0x100_0000, u64::MAX, u64::MAX - 1, 1, 0, 0]) < 0);
    }

    #[test]
    fn mprotect_changes_what_the_guest_may_do() {
        let mut f = fixture();
        let a = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        f.mem.write(a, b"code").unwrap();
        assert_eq!(f.call(Sysno::mprotect, [a, 4096, 5, 0, 0, 0]), 0);
        assert!(f.mem.write(a, b"x").is_err());
        assert_eq!(f.mem.slice(a, 4).unwrap(), b"code");
        assert_eq!(
            f.call(Sysno::mprotect, [a + 4096, 4096, 1, 0, 0, 0]),
            -i64::from(libc::ENOMEM),
            "unmapped"
        );
    }

    #[test]
    fn mremap_moves_and_keeps_data() {
        let mut f = fixture();
        // Top-down: `a` ends where `_b` starts, so it has to move to grow.
        let _b = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        let a = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        f.mem.write(a, b"keep").unwrap();
        let c = f.call(Sysno::mremap, [a, 4096, 16384, 1, 0, 0]) as u64;
        assert_ne!(c, a);
        assert_eq!(f.mem.slice(c, 4).unwrap(), b"keep");
        assert_eq!(f.call(Sysno::mremap, [c, 16384, 4096, 0, 0, 0]) as u64, c);
    }
}
