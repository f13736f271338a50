//! brk, mmap, munmap, mprotect, mremap, madvise: thin decoders over the address space
//! (crate::mm), which keeps the guest's page tables. After every call that may have
//! taken rights away from a present page, KVM's stale translations are dropped before
//! the guest runs again (GuestMemory::sync_mappings).

use super::{errno, Args, Ctx, Entry, Flow};
use crate::mm::{flags, FileSource, MmError};
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

/// The host file behind `fd` for a file mapping.
fn mmap_source(ctx: &Ctx<'_>, fd: u64) -> Result<(Arc<std::fs::File>, Arc<str>), MmError> {
    let d = ctx.proc.fds.get(fd).ok_or(MmError::Io(errno::EBADF))?;
    match (d.file.host_file(), d.file.path()) {
        (Some(file), Some(path)) => Ok((file.clone(), Arc::from(path))),
        _ => Err(MmError::NoDevice),
    }
}

fn mmap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (addr, len, prot, fl, fd, off) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let budget = ctx.proc.memory_budget();
    // Linux ignores the fd of an anonymous mapping; a shared anonymous mapping acts as
    // private: there is no other process to share with.
    let r = if fl & flags::ANONYMOUS != 0 {
        ctx.proc.mm.mmap(ctx.mem, addr, len, prot, fl, None, budget)
    } else {
        match mmap_source(ctx, fd) {
            Ok((file, path)) => {
                let src = FileSource { file: &file, path };
                ctx.proc
                    .mm
                    .mmap(ctx.mem, addr, len, prot, fl, Some((src, off)), budget)
            }
            Err(e) => Err(e),
        }
    };
    done(ctx, r)
}

fn munmap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let r = ctx.proc.mm.munmap(ctx.mem, a[0], a[1]).map(|()| 0);
    done(ctx, r)
}

fn mprotect(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let budget = ctx.proc.memory_budget();
    let r = ctx
        .proc
        .mm
        .mprotect(ctx.mem, a[0], a[1], a[2], budget)
        .map(|()| 0);
    done(ctx, r)
}

fn madvise(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let r = ctx.proc.mm.madvise(ctx.mem, a[0], a[1], a[2]).map(|()| 0);
    done(ctx, r)
}

fn mremap(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let budget = ctx.proc.memory_budget();
    let r = ctx
        .proc
        .mm
        .mremap(ctx.mem, a[0], a[1], a[2], a[3], a[4], budget);
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
