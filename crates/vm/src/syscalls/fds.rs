//! Calls on descriptors themselves: close, the dup family, fcntl, ioctl, and the file
//! calls that need an open fd (ftruncate, fsync, flock, fchown, fchmod, fallocate),
//! plus umask.

use super::e;
use super::files::{desc, neg, notify};
use super::memory::{shared_after, shared_before};
use super::{errno, Args, Ctx, Entry, Flow};
use crate::fs::scratch::ScratchFile;
use crate::fs::{flags, IoctlAnswer, Kind};
use crate::tasks::WaitKey;
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::close, close),
    e(Sysno::close_range, close_range),
    e(Sysno::dup, dup),
    e(Sysno::dup2, dup2),
    e(Sysno::dup3, dup3),
    e(Sysno::fcntl, fcntl),
    e(Sysno::ioctl, ioctl),
    e(Sysno::flock, flock),
    e(Sysno::ftruncate, ftruncate),
    e(Sysno::fallocate, fallocate),
    e(Sysno::fsync, fsync),
    e(Sysno::fdatasync, fsync),
    e(Sysno::syncfs, fsync),
    e(Sysno::fadvise64, fsync),
    e(Sysno::sync, sync),
    e(Sysno::fchown, fchown),
    e(Sysno::fchmod, fchmod),
    e(Sysno::umask, umask),
];

const O_CLOEXEC: u64 = 0o2000000;
const FIONBIO: u64 = 0x5421;
const FIOCLEX: u64 = 0x5451;
const FIONCLEX: u64 = 0x5450;

/// Closes `fd`; if that was the object's last description, tasks waiting on its peer
/// (a socketpair's other end, an epoll watching it) are woken to see the close.
pub(super) fn close_fd(ctx: &mut Ctx<'_>, fd: u64) -> Result<(), i32> {
    let id = ctx.proc.fds.get(fd).and_then(|d| d.file.wait_id());
    ctx.proc.fds.close(fd)?;
    ctx.proc.changed = true;
    if let Some(id) = id {
        ctx.proc.tasks.notify(&WaitKey::File(id));
    }
    Ok(())
}

fn close(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match close_fd(ctx, a[0]) {
        Ok(()) => Flow::ok(0),
        Err(e) => neg(e),
    }
}

fn close_range(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    const UNSHARE: u64 = 2;
    const CLOEXEC: u64 = 4;
    let (first, last, fl) = (a[0] as u32 as u64, a[1] as u32 as u64, a[2]);
    if first > last || fl & !(UNSHARE | CLOEXEC) != 0 {
        return neg(errno::EINVAL);
    }
    let last = last.min(crate::fs::MAX_FDS as u64 - 1);
    for fd in first..=last {
        if fl & CLOEXEC != 0 {
            let _ = ctx.proc.fds.set_cloexec(fd, true);
        } else {
            let _ = close_fd(ctx, fd);
        }
    }
    ctx.proc.changed = true;
    Flow::ok(0)
}

fn dup(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match desc(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    ctx.proc.changed = true;
    match ctx.proc.fds.insert(d, false) {
        Ok(fd) => Flow::ok(fd),
        Err(e) => neg(e),
    }
}

fn dup_to(ctx: &mut Ctx<'_>, old: u64, new: u64, cloexec: bool) -> Flow {
    // What `new` referred to is closed first, with the same wake-ups as close.
    if let Err(e) = desc(ctx, old) {
        return neg(e);
    }
    let _ = close_fd(ctx, new);
    ctx.proc.changed = true;
    match ctx.proc.fds.dup_to(old, new, cloexec) {
        Ok(fd) => Flow::ok(fd),
        Err(e) => neg(e),
    }
}

fn dup2(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] == a[1] {
        return match desc(ctx, a[0]) {
            Ok(_) => Flow::ok(a[1]),
            Err(e) => neg(e),
        };
    }
    dup_to(ctx, a[0], a[1], false)
}

fn dup3(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] == a[1] || a[2] & !O_CLOEXEC != 0 {
        return neg(errno::EINVAL);
    }
    dup_to(ctx, a[0], a[1], a[2] & O_CLOEXEC != 0)
}

fn fcntl(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (fd, cmd, arg) = (a[0], a[1] as i32, a[2]);
    let d = match desc(ctx, fd) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let r = match cmd {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            ctx.proc.changed = true;
            ctx.proc
                .fds
                .insert_from(arg, d, cmd == libc::F_DUPFD_CLOEXEC)
        }
        libc::F_GETFD => ctx.proc.fds.cloexec(fd).map(u64::from),
        libc::F_SETFD => {
            ctx.proc.changed = true;
            ctx.proc.fds.set_cloexec(fd, arg & 1 != 0).map(|()| 0)
        }
        libc::F_GETFL => {
            let large = if d.file.kind() == Kind::Regular {
                libc::O_LARGEFILE as u32
            } else {
                0
            };
            Ok(u64::from(d.flags() | large))
        }
        libc::F_SETFL => {
            ctx.proc.changed = true;
            d.set_flags(arg as u32);
            Ok(0)
        }
        // Record locks: one process, so every lock is granted and none conflicts.
        libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW => Ok(0),
        libc::F_GETLK | libc::F_OFD_GETLK => {
            // struct flock starts with l_type (short): nothing would block the lock.
            match ctx.mem.write(arg, &(libc::F_UNLCK as u16).to_le_bytes()) {
                Ok(()) => Ok(0),
                Err(_) => Err(errno::EFAULT),
            }
        }
        libc::F_GETPIPE_SZ if matches!(d.file.kind(), Kind::Fifo) => {
            Ok(crate::net::pair::PIPE_CAPACITY as u64)
        }
        _ => Err(errno::EINVAL),
    };
    match r {
        Ok(v) => Flow::ok(v),
        Err(e) => neg(e),
    }
}

fn ioctl(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (fd, req, arg) = (a[0], a[1] & 0xffff_ffff, a[2]);
    let d = match desc(ctx, fd) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    match req {
        FIONBIO => {
            let Ok(on) = ctx.mem.read_u32(arg) else {
                return neg(errno::EFAULT);
            };
            let f = d.flags();
            d.set_flags(if on != 0 {
                f | flags::NONBLOCK
            } else {
                f & !flags::NONBLOCK
            });
            ctx.proc.changed = true;
            return Flow::ok(0);
        }
        FIOCLEX | FIONCLEX => {
            ctx.proc.changed = true;
            return match ctx.proc.fds.set_cloexec(fd, req == FIOCLEX) {
                Ok(()) => Flow::ok(0),
                Err(e) => neg(e),
            };
        }
        _ => {}
    }
    match d.file.ioctl(req) {
        Ok(IoctlAnswer::Value(v)) => Flow::ok(v),
        Ok(IoctlAnswer::PutInt(v)) => match ctx.mem.write(arg, &v.to_le_bytes()) {
            Ok(()) => Flow::ok(0),
            Err(_) => neg(errno::EFAULT),
        },
        Err(e) => neg(e),
    }
}

/// flock: one process holds every lock it asks for.
fn flock(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    const LOCK_SH: u64 = 1;
    const LOCK_EX: u64 = 2;
    const LOCK_UN: u64 = 8;
    const LOCK_NB: u64 = 4;
    if let Err(e) = desc(ctx, a[0]) {
        return neg(e);
    }
    match a[1] & !LOCK_NB {
        LOCK_SH | LOCK_EX | LOCK_UN => Flow::ok(0),
        _ => neg(errno::EINVAL),
    }
}

fn ftruncate(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match desc(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if (a[1] as i64) < 0 || d.flags() & flags::ACCMODE == flags::RDONLY {
        return neg(errno::EINVAL);
    }
    shared_before(ctx, &*d.file);
    match d.file.truncate(a[1]) {
        Ok(()) => {
            shared_after(ctx, &*d.file);
            notify(ctx, &d);
            Flow::ok(0)
        }
        Err(e) => neg(e),
    }
}

/// fallocate mode 0: make sure the file is at least `off + len` long.
fn fallocate(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match desc(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let (off, len) = (a[2] as i64, a[3] as i64);
    if a[1] != 0 {
        return neg(libc::EOPNOTSUPP);
    }
    if off < 0 || len <= 0 {
        return neg(errno::EINVAL);
    }
    if d.flags() & flags::ACCMODE == flags::RDONLY {
        return neg(errno::EBADF);
    }
    let Some(end) = off.checked_add(len) else {
        return neg(libc::EFBIG);
    };
    if (end as u64) <= d.file.size() {
        return Flow::ok(0);
    }
    shared_before(ctx, &*d.file);
    match d.file.truncate(end as u64) {
        Ok(()) => {
            shared_after(ctx, &*d.file);
            notify(ctx, &d);
            Flow::ok(0)
        }
        Err(libc::EINVAL) => neg(libc::EOPNOTSUPP),
        Err(e) => neg(e),
    }
}

/// fsync and friends: nothing is ever written anywhere but memory.
fn fsync(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match desc(ctx, a[0]) {
        Ok(_) => Flow::ok(0),
        Err(e) => neg(e),
    }
}

fn sync(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::ok(0)
}

/// The guest runs as root and owns everything; only host files (read-only) refuse.
fn fchown(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match desc(ctx, a[0]) {
        Ok(d) if d.file.host_file().is_some() => neg(libc::EROFS),
        Ok(_) => Flow::ok(0),
        Err(e) => neg(e),
    }
}

fn fchmod(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match desc(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if d.file.host_file().is_some() {
        return neg(libc::EROFS);
    }
    ctx.proc.changed = true;
    // A scratch file changes its own inode: the name it was opened as may since have been
    // renamed or unlinked, and even given to another file.
    if let Some(f) = d.file.as_any().downcast_ref::<ScratchFile>() {
        f.set_mode(a[1] as u32);
        return Flow::ok(0);
    }
    let Some(p) = d.file.path().map(str::to_string) else {
        return Flow::ok(0);
    };
    // A scratch directory (its name is all it holds) or an object with no mode to keep.
    let _ = ctx.proc.fds.scratch.chmod(&p, a[1] as u32);
    Flow::ok(0)
}

fn umask(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let old = ctx.proc.fds.umask;
    ctx.proc.fds.umask = a[0] as u32 & 0o777;
    ctx.proc.changed = true;
    Flow::ok(u64::from(old))
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// Random calls over the whole fd surface (paths, fds, events, sockets, system) with
    /// small fds, plausible pointers and garbage: nothing panics, the table stays within
    /// its limit, and a deep clone at any point is usable.
    #[test]
    fn random_calls_never_panic() {
        let calls = [
            Sysno::read,
            Sysno::write,
            Sysno::pread64,
            Sysno::pwrite64,
            Sysno::readv,
            Sysno::writev,
            Sysno::lseek,
            Sysno::getdents64,
            Sysno::open,
            Sysno::openat,
            Sysno::close,
            Sysno::dup,
            Sysno::dup2,
            Sysno::dup3,
            Sysno::fcntl,
            Sysno::ioctl,
            Sysno::ftruncate,
            Sysno::fallocate,
            Sysno::mkdir,
            Sysno::unlink,
            Sysno::rmdir,
            Sysno::rename,
            Sysno::renameat2,
            Sysno::stat,
            Sysno::statx,
            Sysno::readlink,
            Sysno::access,
            Sysno::eventfd2,
            Sysno::epoll_create1,
            Sysno::epoll_ctl,
            Sysno::epoll_wait,
            Sysno::poll,
            Sysno::socketpair,
            Sysno::pipe2,
            Sysno::sendto,
            Sysno::recvfrom,
            Sysno::sendmsg,
            Sysno::recvmsg,
            Sysno::shutdown,
            Sysno::getsockopt,
            Sysno::prctl,
            Sysno::uname,
            Sysno::close_range,
            Sysno::umask,
            Sysno::mmap,
            Sysno::munmap,
            Sysno::mremap,
            Sysno::mprotect,
            Sysno::madvise,
            Sysno::msync,
            Sysno::truncate,
            Sysno::preadv,
            Sysno::pwritev,
        ];
        let mut f = Fixture::new();
        f.cfg.max_scratch_bytes = 1 << 20;
        let names: &[&[u8]] = &[
            b"/tmp/a\0",
            b"/tmp/d\0",
            b"/tmp/d/b\0",
            b"/proc/self/maps\0",
            b"/dev/zero\0",
            b"/etc/passwd\0",
            b"/tmp/../tmp/a\0",
        ];
        for (i, n) in names.iter().enumerate() {
            f.mem.write(0x70_0000 + i as u64 * 64, n).unwrap();
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // fd 3: a scratch file, which mmap below often maps shared (windows over it).
        let a = f.call(Sysno::open, [0x70_0000, 0o102, 0o644, 0, 0, 0]);
        assert_eq!(a, 3);
        assert_eq!(f.call(Sysno::ftruncate, [3, 12_288, 0, 0, 0, 0]), 0);
        let mut windows = 0;
        for round in 0..20_000 {
            let nr = calls[(next() % calls.len() as u64) as usize];
            let mut args = [0u64; 6];
            for a in &mut args {
                let r = next();
                *a = match r % 6 {
                    0 => r % 12,                        // a small fd or number
                    1 => 0x70_0000 + (r >> 8) % 7 * 64, // a path
                    2 => 0x71_0000 + (r >> 8) % 0x1000, // a buffer
                    3 => (r >> 8) % 0x2_0000,           // a length
                    4 => u64::MAX - (r >> 8) % 16,      // garbage near the top
                    _ => r >> (r % 64),
                };
            }
            if nr == Sysno::mmap && args[0] % 2 == 0 {
                let off = (args[5] % 4) * 4096;
                // Shared, sometimes PROT_NONE or read-only, at times far past the file.
                let off = if args[1] % 7 == 0 {
                    u64::MAX - 0xfff
                } else {
                    off
                };
                let prot = args[2] % 4;
                args[2..6].copy_from_slice(&[prot, 1, 3, off]);
            }
            let _ = super::super::dispatch(&mut f.ctx(), nr.id() as u64, &args);
            assert!(f.proc.fds.open_count() <= crate::fs::MAX_FDS);
            windows = windows.max(f.proc.fds.shared_maps.len());
            if round % 1000 == 0 {
                let c = f.proc.clone();
                f.proc = c;
            }
        }
        assert!(windows > 0, "no shared mapping of a scratch file was made");
    }

    #[test]
    fn dup_family_and_cloexec() {
        let mut f = Fixture::new();
        assert_eq!(f.call(Sysno::dup, [1, 0, 0, 0, 0, 0]), 3);
        assert_eq!(f.call(Sysno::dup2, [1, 10, 0, 0, 0, 0]), 10);
        assert_eq!(f.call(Sysno::dup2, [10, 10, 0, 0, 0, 0]), 10);
        assert_eq!(
            f.call(Sysno::dup3, [10, 10, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(f.call(Sysno::dup3, [1, 11, O_CLOEXEC, 0, 0, 0]), 11);
        assert_eq!(
            f.call(Sysno::fcntl, [11, libc::F_GETFD as u64, 0, 0, 0, 0]),
            1
        );
        assert_eq!(
            f.call(Sysno::fcntl, [1, libc::F_DUPFD_CLOEXEC as u64, 5, 0, 0, 0]),
            5
        );
        assert_eq!(
            f.call(Sysno::fcntl, [5, libc::F_GETFD as u64, 0, 0, 0, 0]),
            1
        );
        assert_eq!(
            f.call(Sysno::fcntl, [1, libc::F_DUPFD as u64, 5, 0, 0, 0]),
            6
        );
        assert_eq!(
            f.call(Sysno::fcntl, [6, libc::F_GETFD as u64, 0, 0, 0, 0]),
            0
        );
        assert_eq!(
            f.call(Sysno::fcntl, [1, libc::F_GETFL as u64, 0, 0, 0, 0]),
            1
        );
        assert_eq!(
            f.call(Sysno::fcntl, [99, libc::F_GETFL as u64, 0, 0, 0, 0]),
            -i64::from(libc::EBADF)
        );
        assert_eq!(
            f.call(Sysno::fcntl, [1, 999, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        // F_SETFL on a dup changes the shared description.
        f.call(
            Sysno::fcntl,
            [3, libc::F_SETFL as u64, flags::NONBLOCK as u64, 0, 0, 0],
        );
        assert_eq!(
            f.call(Sysno::fcntl, [1, libc::F_GETFL as u64, 0, 0, 0, 0]),
            i64::from(flags::WRONLY | flags::NONBLOCK)
        );
        assert_eq!(
            f.call(Sysno::close_range, [5, u32::MAX as u64, 0, 0, 0, 0]),
            0
        );
        assert_eq!(
            f.call(Sysno::close, [10, 0, 0, 0, 0, 0]),
            -i64::from(libc::EBADF)
        );
        assert_eq!(f.call(Sysno::umask, [0o077, 0, 0, 0, 0, 0]), 0o022);
        assert_eq!(f.call(Sysno::umask, [0o022, 0, 0, 0, 0, 0]), 0o077);
        assert_eq!(
            f.call(Sysno::flock, [0, 99, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::ftruncate, [0, 0, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
    }

    #[test]
    fn fchmod_changes_the_open_file_not_its_old_name() {
        let mut f = Fixture::new();
        let (a, b, st) = (0x70_0000, 0x70_1000, 0x71_0000);
        f.mem.write(a, b"/tmp/a\0").unwrap();
        f.mem.write(b, b"/tmp/b\0").unwrap();
        let fd = f.call(Sysno::open, [a, 0o102, 0o644, 0, 0, 0]) as u64;
        assert_eq!(f.call(Sysno::rename, [a, b, 0, 0, 0, 0]), 0);
        // Another file now has the name the open one was opened as.
        let other = f.call(Sysno::open, [a, 0o102, 0o644, 0, 0, 0]);
        assert!(other >= 0);
        assert_eq!(f.call(Sysno::fchmod, [fd, 0o600, 0, 0, 0, 0]), 0);
        let mode = |f: &mut Fixture, p: u64| {
            assert_eq!(f.call(Sysno::stat, [p, st, 0, 0, 0, 0]), 0);
            f.mem.read_u32(st + 24).unwrap() & 0o7777
        };
        assert_eq!(mode(&mut f, b), 0o600, "the open file changed");
        assert_eq!(mode(&mut f, a), 0o644, "the file now named /tmp/a did not");
    }
}
