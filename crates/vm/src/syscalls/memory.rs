//! brk, mmap, munmap, mprotect, mremap, madvise: thin decoders over the address space
//! (crate::mm), which keeps the guest's page tables. After every call that may have
//! taken rights away from a present page, KVM's stale translations are dropped before
//! the guest runs again (GuestMemory::sync_mappings).
//!
//! Scratch files map too: privately as a copy, shared as a window the calls here and the
//! file calls keep coherent with the file (crate::mm::shared, [`shared_before`],
//! [`shared_after`]).

use super::{errno, Args, Ctx, Entry, Flow};
use crate::fs::scratch::ScratchFile;
use crate::fs::{File, OpenFile};
use crate::layout::{align_up, PAGE_SIZE};
use crate::mm::{flags, FileBytes, FileSource, MmError};
use std::sync::Arc;
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
        handler: mprotect,
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
        handler: msync,
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
        ctx.proc.fds.shared_maps.check_room()?;
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
                    window = Some(d.file.clone());
                }
                mmap_scratch(ctx, a, &d)
            }
            Err(e) => Err(e),
        }
    };
    let r = r.and_then(|start| {
        let end = start + align_up(len, PAGE_SIZE);
        let w = &mut ctx.proc.fds.shared_maps;
        if fixed {
            w.forget(start, end);
        }
        match window {
            Some(file) => w
                .add(start, end, off, file)
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

fn munmap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
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
    // Pages of a PROT_NONE window get their frames here: they must show the file.
    flush_range(ctx, span(a[0], a[1]));
    let r = ctx
        .proc
        .mm
        .mprotect(ctx.mem, a[0], a[1], a[2], budget)
        .map(|()| 0);
    if r.is_ok() && !ctx.proc.fds.shared_maps.is_empty() {
        let (s, e) = span(a[0], a[1]);
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
    flush_range(ctx, span(old, old_len));
    if fl & flags::MREMAP_FIXED != 0 {
        flush_range(ctx, span(new_addr, new_len));
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
    }
    done(ctx, r)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use syscalls::Sysno;

    const ANON_PRIVATE: u64 = 0x22;

    /// A fixture whose guest-facing addresses go through the page tables.
    fn fixture() -> Fixture {
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

    const SHARED: u64 = 0x01;
    const PRIVATE: u64 = 0x02;
    const RW: u64 = 3;

    /// A fixture with one guest page for paths and buffers, and scratch file `name`
    /// opened with `flags` (O_CREAT added) holding `len` bytes of `fill`.
    fn with_file(name: &str, flags: u64, len: usize, fill: u8) -> (Fixture, u64, u64) {
        let mut f = fixture();
        let page = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
        let mut p = name.as_bytes().to_vec();
        p.push(0);
        f.mem.write(page, &p).unwrap();
        let fd = f.call(Sysno::open, [page, 0o100 | 2, 0o644, 0, 0, 0]) as u64;
        assert!((fd as i64) >= 3, "open: {}", fd as i64);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(2048);
            f.mem.write(page + 1024, &vec![fill; n]).unwrap();
            assert_eq!(
                f.call(
                    Sysno::pwrite64,
                    [fd, page + 1024, n as u64, at as u64, 0, 0]
                ),
                n as i64
            );
            at += n;
        }
        if flags != 2 {
            let again = f.call(Sysno::open, [page, flags, 0, 0, 0, 0]) as u64;
            assert_eq!(f.call(Sysno::close, [fd, 0, 0, 0, 0, 0]), 0);
            return (f, again, page);
        }
        (f, fd, page)
    }

    /// `n` bytes of the file at `off`, through pread.
    fn pread(f: &mut Fixture, fd: u64, page: u64, off: u64, n: u64) -> Vec<u8> {
        let got = f.call(Sysno::pread64, [fd, page + 2048, n, off, 0, 0]);
        assert_eq!(got, n as i64, "pread");
        f.mem.slice(page + 2048, n).unwrap().to_vec()
    }

    fn pwrite(f: &mut Fixture, fd: u64, page: u64, off: u64, bytes: &[u8]) {
        f.mem.write(page + 3072, bytes).unwrap();
        let n = bytes.len() as u64;
        assert_eq!(
            f.call(Sysno::pwrite64, [fd, page + 3072, n, off, 0, 0]),
            n as i64
        );
    }

    #[test]
    fn shared_scratch_mapping_is_coherent_with_the_file() {
        let (mut f, fd, page) = with_file("/tmp/db-shm", 2, 32768, 0);
        let m = f.call(Sysno::mmap, [0, 32768, RW, SHARED, fd, 0]) as u64;
        assert!((m as i64) > 0, "mmap: {}", m as i64);
        assert_eq!(f.proc.fds.shared_maps.len(), 1);
        // A store through the mapping is what pread sees.
        f.mem.write(m + 5000, b"stored").unwrap();
        assert_eq!(pread(&mut f, fd, page, 5000, 6), b"stored");
        // pwrite reaches the mapping, and keeps stores not yet seen by any call.
        f.mem.write(m + 100, b"mine").unwrap();
        pwrite(&mut f, fd, page, 30000, b"theirs");
        assert_eq!(f.mem.slice(m + 30000, 6).unwrap(), b"theirs");
        assert_eq!(f.mem.slice(m + 100, 4).unwrap(), b"mine");
        assert_eq!(pread(&mut f, fd, page, 100, 4), b"mine");
        // read(2) at the offset and a second description of the same file agree.
        let again = f.call(Sysno::open, [page, 2, 0, 0, 0, 0]) as u64;
        f.mem.write(m + 4096, b"via-read").unwrap();
        assert_eq!(f.call(Sysno::lseek, [again, 4096, 0, 0, 0, 0]), 4096);
        assert_eq!(f.call(Sysno::read, [again, page + 2048, 8, 0, 0, 0]), 8);
        assert_eq!(f.mem.slice(page + 2048, 8).unwrap(), b"via-read");
        // ftruncate shrinks the file: the mapping past the end reads zeros, and stores
        // there never reach the file (Linux would raise SIGBUS).
        assert_eq!(f.call(Sysno::ftruncate, [fd, 8192, 0, 0, 0, 0]), 0);
        assert_eq!(f.mem.slice(m + 30000, 6).unwrap(), &[0; 6]);
        f.mem.write(m + 9000, b"lost").unwrap();
        assert_eq!(f.call(Sysno::ftruncate, [fd, 16384, 0, 0, 0, 0]), 0);
        assert_eq!(pread(&mut f, fd, page, 9000, 4), &[0; 4]);
        assert_eq!(f.mem.slice(m + 9000, 4).unwrap(), &[0; 4]);
        // close does not unmap; munmap flushes.
        assert_eq!(f.call(Sysno::close, [fd, 0, 0, 0, 0, 0]), 0);
        f.mem.write(m + 200, b"after-close").unwrap();
        assert_eq!(f.call(Sysno::munmap, [m, 32768, 0, 0, 0, 0]), 0);
        assert!(f.proc.fds.shared_maps.is_empty());
        assert_eq!(pread(&mut f, again, page, 200, 11), b"after-close");
        // The file size never followed the mapping.
        assert_eq!(f.call(Sysno::lseek, [again, 0, 2, 0, 0, 0]), 16384);
    }

    #[test]
    fn msync_partial_munmap_and_mremap_keep_windows_right() {
        let (mut f, fd, page) = with_file("/tmp/w", 2, 16384, b'.');
        let m = f.call(Sysno::mmap, [0, 16384, RW, SHARED, fd, 0]) as u64;
        f.mem.write(m, b"synced").unwrap();
        assert_eq!(f.call(Sysno::msync, [m, 4096, 4, 0, 0, 0]), 0);
        assert_eq!(pread(&mut f, fd, page, 0, 6), b"synced");
        assert_eq!(
            f.call(Sysno::msync, [m + 1, 4096, 4, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        // Unmapping the middle keeps both ends as windows at the right offsets.
        f.mem.write(m + 4096, b"middle").unwrap();
        assert_eq!(f.call(Sysno::munmap, [m + 4096, 4096, 0, 0, 0, 0]), 0);
        assert_eq!(f.proc.fds.shared_maps.len(), 2);
        assert_eq!(pread(&mut f, fd, page, 4096, 6), b"middle");
        pwrite(&mut f, fd, page, 12288, b"tail");
        assert_eq!(f.mem.slice(m + 12288, 4).unwrap(), b"tail");
        // The tail moves; it still maps file offset 8192 onwards.
        let moved = f.call(Sysno::mremap, [m + 8192, 8192, 8192, 3, 0x4000_0000, 0]) as u64;
        assert_eq!(moved, 0x4000_0000);
        assert_eq!(f.mem.slice(moved + 4096, 4).unwrap(), b"tail");
        f.mem.write(moved, b"moved").unwrap();
        assert_eq!(pread(&mut f, fd, page, 8192, 5), b"moved");
        // A PROT_NONE window has no frames until mprotect gives it some: then it shows
        // the file.
        let none = f.call(Sysno::mmap, [0, 4096, 0, SHARED, fd, 8192]) as u64;
        assert_eq!(f.call(Sysno::mprotect, [none, 4096, RW, 0, 0, 0]), 0);
        assert_eq!(f.mem.slice(none, 5).unwrap(), b"moved");
        assert_eq!(f.call(Sysno::munmap, [none, 4096, 0, 0, 0, 0]), 0);
        // MAP_FIXED anonymous over a window ends it (after a last flush).
        f.mem.write(m, b"last").unwrap();
        let fixed = f.call(Sysno::mmap, [m, 4096, RW, ANON_PRIVATE | 0x10, u64::MAX, 0]);
        assert_eq!(fixed as u64, m);
        assert_eq!(pread(&mut f, fd, page, 0, 4), b"last");
        f.mem.write(m, b"anon").unwrap();
        assert_eq!(pread(&mut f, fd, page, 0, 4), b"last");
        assert_eq!(f.proc.fds.shared_maps.len(), 1);
    }

    #[test]
    fn private_scratch_mapping_is_a_copy() {
        let (mut f, fd, page) = with_file("/tmp/p", 2, 5000, b'x');
        let m = f.call(Sysno::mmap, [0, 8192, RW, PRIVATE, fd, 0]) as u64;
        assert!((m as i64) > 0);
        assert!(f.proc.fds.shared_maps.is_empty());
        assert_eq!(
            f.mem.slice(m + 4999, 2).unwrap(),
            b"x\0",
            "zero past the end"
        );
        f.mem.write(m, b"private").unwrap();
        assert_eq!(pread(&mut f, fd, page, 0, 7), b"xxxxxxx");
        pwrite(&mut f, fd, page, 10, b"later");
        assert_eq!(
            f.mem.slice(m + 10, 5).unwrap(),
            b"xxxxx",
            "a copy at mmap time"
        );
        assert_eq!(f.call(Sysno::munmap, [m, 8192, 0, 0, 0, 0]), 0);
        assert_eq!(pread(&mut f, fd, page, 0, 7), b"xxxxxxx");
    }

    #[test]
    fn scratch_mappings_check_access_and_the_memory_budget() {
        let (mut f, ro, _) = with_file("/tmp/ro", 0, 4096, b'r');
        assert_eq!(
            f.call(Sysno::mmap, [0, 4096, RW, SHARED, ro, 0]),
            -i64::from(libc::EACCES),
            "writable shared needs O_RDWR"
        );
        assert!(f.call(Sysno::mmap, [0, 4096, 1, SHARED, ro, 0]) > 0);
        assert!(f.call(Sysno::mmap, [0, 4096, RW, PRIVATE, ro, 0]) > 0);
        let (mut f, wo, _) = with_file("/tmp/wo", 1, 4096, b'w');
        assert_eq!(
            f.call(Sysno::mmap, [0, 4096, 1, PRIVATE, wo, 0]),
            -i64::from(libc::EACCES)
        );
        // Mapped bytes count like anonymous memory (max_memory is 16 MiB here).
        let (mut f, fd, _) = with_file("/tmp/big", 2, 4096, b'b');
        let used = f.proc.memory_used();
        assert_eq!(
            f.call(Sysno::mmap, [0, 32 << 20, RW, SHARED, fd, 0]),
            -i64::from(libc::ENOMEM)
        );
        assert!(f.proc.fds.shared_maps.is_empty());
        let m = f.call(Sysno::mmap, [0, 8 << 20, RW, SHARED, fd, 0]);
        assert!(m > 0);
        assert_eq!(f.proc.memory_used(), used + (8 << 20));
        assert_eq!(
            f.call(Sysno::mmap, [0, 9 << 20, RW, SHARED, fd, 0]),
            -i64::from(libc::ENOMEM)
        );
    }

    #[test]
    fn reset_restores_the_file_and_its_window_together() {
        let (mut f, fd, page) = with_file("/tmp/r", 2, 8192, 0);
        let m = f.call(Sysno::mmap, [0, 8192, RW, SHARED, fd, 0]) as u64;
        f.mem.write(m, b"snapshot").unwrap();
        f.mem.flush();
        let snap_mem = crate::memory::MemorySnapshot::capture(&f.mem).unwrap();
        let snap_proc = f.proc.clone();
        // A request stores, writes and truncates.
        f.mem.write(m + 8, b"-request").unwrap();
        pwrite(&mut f, fd, page, 4096, b"written");
        assert_eq!(pread(&mut f, fd, page, 0, 16), b"snapshot-request");
        assert_eq!(f.call(Sysno::ftruncate, [fd, 4096, 0, 0, 0, 0]), 0);
        // Reset: memory and process back.
        snap_mem.copy_into(&mut f.mem);
        f.proc = snap_proc.clone();
        assert_eq!(f.mem.slice(m, 16).unwrap(), b"snapshot\0\0\0\0\0\0\0\0");
        assert_eq!(f.call(Sysno::lseek, [fd, 0, 2, 0, 0, 0]), 8192);
        assert_eq!(pread(&mut f, fd, page, 0, 16), b"snapshot\0\0\0\0\0\0\0\0");
        assert_eq!(pread(&mut f, fd, page, 4096, 7), &[0; 7]);
        // The window is the restored inode's: the snapshot's copy is untouched.
        f.mem.write(m + 8, b"-again").unwrap();
        assert_eq!(pread(&mut f, fd, page, 8, 6), b"-again");
        let probe = snap_proc.clone();
        let d = probe.fds.file(fd).unwrap();
        let mut buf = [0u8; 6];
        assert_eq!(d.read(&mut buf, Some(8)), Ok(6));
        assert_eq!(&buf, &[0; 6]);
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
