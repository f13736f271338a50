//! Reading and writing descriptors: read/write and their positioned and vectored forms,
//! lseek, getdents64. The objects behind fds are in [`crate::fs`]; standard output and
//! error go to the host (as `VmConfig::output` says). Reads and writes that would block on
//! a blocking descriptor block the calling thread ([`Flow::Block`]).

use super::{e, errno, Args, Ctx, Entry, Flow, Stream};
use crate::fs::dev::Stdio;
use crate::fs::OpenFile;
use crate::tasks::{Block, WaitKey};
use std::sync::Arc;
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::read, read),
    e(Sysno::pread64, pread64),
    e(Sysno::readv, readv),
    e(Sysno::preadv, preadv),
    e(Sysno::preadv2, preadv2),
    e(Sysno::write, write),
    e(Sysno::pwrite64, pwrite64),
    e(Sysno::writev, writev),
    e(Sysno::pwritev, pwritev),
    e(Sysno::pwritev2, pwritev2),
    e(Sysno::lseek, lseek),
    e(Sysno::getdents64, getdents64),
];

/// Largest single transfer, so a guest cannot make the host touch gigabytes in one call
/// (a short read or write, as Linux allows).
pub(super) const MAX_IO: u64 = 16 << 20;
/// Most iovecs one call takes (Linux's UIO_MAXIOV).
const MAX_IOV: u64 = 1024;

pub(super) fn neg(e: i32) -> Flow {
    Flow::err(e)
}

/// The description behind `fd`.
pub(super) fn desc(ctx: &Ctx<'_>, fd: u64) -> Result<Arc<OpenFile>, i32> {
    ctx.proc.fds.file(fd)
}

/// Wakes tasks waiting on `d`'s object: call after anything that changed its state.
pub(super) fn notify(ctx: &mut Ctx<'_>, d: &OpenFile) {
    if let Some(id) = d.file.wait_id() {
        ctx.proc.tasks.notify(&WaitKey::File(id));
    }
    ctx.proc.changed = true;
}

/// The one "would block" decision for reads and writes: a non-blocking description (or
/// call) gets EAGAIN; a blocking one blocks its thread until the object is notified, then
/// the call runs again.
pub(super) fn would_block(d: &OpenFile, nonblock: bool) -> Flow {
    match d.file.wait_id() {
        Some(id) if !nonblock && !d.nonblocking() => {
            Flow::Block(Block::retry(vec![WaitKey::File(id)], None))
        }
        _ => neg(errno::EAGAIN),
    }
}

/// One transfer's outcome: bytes moved, or what the call returns instead.
pub(super) type Xfer = Result<u64, Flow>;

/// Runs one read or write call's transfers between the shared-mapping hooks, once per
/// call however many pieces it has: the file's windows are flushed before, and refreshed
/// after a write (crate::mm::shared).
pub(super) fn with_shared<T>(
    ctx: &mut Ctx<'_>,
    d: &Arc<OpenFile>,
    write: bool,
    xfer: impl FnOnce(&mut Ctx<'_>) -> T,
) -> T {
    super::memory::shared_before(ctx, &*d.file);
    let r = xfer(ctx);
    if write {
        super::memory::shared_after(ctx, &*d.file);
    }
    r
}

/// Reads from `d` into guest `[buf, buf+len)` (the caller runs [`with_shared`]).
pub(super) fn read_desc(
    ctx: &mut Ctx<'_>,
    d: &Arc<OpenFile>,
    buf: u64,
    len: u64,
    at: Option<u64>,
    nonblock: bool,
) -> Xfer {
    let len = len.min(MAX_IO);
    let dst = ctx
        .mem
        .slice_mut(buf, len)
        .map_err(|_| neg(errno::EFAULT))?;
    // Objects answer EAGAIN when empty; `nonblock` (MSG_DONTWAIT) only decides whether
    // that blocks.
    match d.read(dst, at) {
        Ok(n) => {
            notify(ctx, d);
            Ok(n as u64)
        }
        Err(libc::EAGAIN) => Err(would_block(d, nonblock)),
        Err(e) => Err(neg(e)),
    }
}

/// Writes guest `[buf, buf+len)` to `d` (the caller runs [`with_shared`]).
pub(super) fn write_desc(
    ctx: &mut Ctx<'_>,
    d: &Arc<OpenFile>,
    buf: u64,
    len: u64,
    at: Option<u64>,
    nonblock: bool,
) -> Xfer {
    let len = len.min(MAX_IO);
    let bytes = ctx.mem.slice(buf, len).map_err(|_| neg(errno::EFAULT))?;
    if let Some(s) = d.file.as_any().downcast_ref::<Stdio>() {
        let stream = match s {
            Stdio::Out => Stream::Stdout,
            Stdio::Err => Stream::Stderr,
            Stdio::In => return Err(neg(errno::EBADF)),
        };
        d.write(&[], at).map_err(neg)?; // access mode and ESPIPE checks
                                        // The log needs the context mutably: only console output is copied.
        let bytes = bytes.to_vec();
        ctx.guest_output_to(stream, &bytes);
        return Ok(len);
    }
    // Written straight from guest memory: a response body is not copied twice.
    match d.write(bytes, at) {
        Ok(n) => {
            notify(ctx, d);
            Ok(n as u64)
        }
        Err(libc::EAGAIN) => Err(would_block(d, nonblock)),
        Err(e) => Err(neg(e)),
    }
}

fn finish(x: Xfer) -> Flow {
    match x {
        Ok(n) => Flow::ok(n),
        Err(f) => f,
    }
}

fn rw(ctx: &mut Ctx<'_>, fd: u64, buf: u64, len: u64, at: Option<u64>, write: bool) -> Flow {
    let d = match desc(ctx, fd) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if at.is_some_and(|a| (a as i64) < 0) {
        return neg(errno::EINVAL);
    }
    finish(with_shared(ctx, &d, write, |ctx| {
        if write {
            write_desc(ctx, &d, buf, len, at, false)
        } else {
            read_desc(ctx, &d, buf, len, at, false)
        }
    }))
}

fn read(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rw(ctx, a[0], a[1], a[2], None, false)
}

fn pread64(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rw(ctx, a[0], a[1], a[2], Some(a[3]), false)
}

fn write(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rw(ctx, a[0], a[1], a[2], None, true)
}

fn pwrite64(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rw(ctx, a[0], a[1], a[2], Some(a[3]), true)
}

/// Reads `cnt` iovecs at guest `iov`.
pub(super) fn iovecs(ctx: &Ctx<'_>, iov: u64, cnt: u64) -> Result<Vec<(u64, u64)>, i32> {
    if cnt > MAX_IOV {
        return Err(errno::EINVAL);
    }
    let mut raw = vec![0u8; (cnt * 16) as usize];
    ctx.mem.read(iov, &mut raw).map_err(|_| errno::EFAULT)?;
    Ok(raw
        .chunks_exact(16)
        .map(|c| {
            let word = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap_or([0; 8]));
            (word(0), word(8))
        })
        .collect())
}

/// A vectored transfer: stops at the first short piece; an error after some progress
/// returns the progress (as Linux does).
pub(super) fn vectored(
    ctx: &mut Ctx<'_>,
    d: &Arc<OpenFile>,
    vecs: &[(u64, u64)],
    at: Option<u64>,
    write: bool,
    nonblock: bool,
) -> Flow {
    with_shared(ctx, d, write, |ctx| {
        pieces(ctx, d, vecs, at, write, nonblock)
    })
}

fn pieces(
    ctx: &mut Ctx<'_>,
    d: &Arc<OpenFile>,
    vecs: &[(u64, u64)],
    mut at: Option<u64>,
    write: bool,
    nonblock: bool,
) -> Flow {
    let mut total: u64 = 0;
    for &(base, len) in vecs {
        let len = len.min(MAX_IO - total);
        if len == 0 {
            if total >= MAX_IO {
                break;
            }
            continue;
        }
        let x = if write {
            write_desc(ctx, d, base, len, at, nonblock)
        } else {
            read_desc(ctx, d, base, len, at, nonblock)
        };
        match x {
            Ok(n) => {
                total += n;
                at = at.map(|a| a + n);
                if n < len {
                    break;
                }
            }
            Err(_) if total > 0 => break,
            Err(f) => return f,
        }
    }
    Flow::ok(total)
}

fn rwv(ctx: &mut Ctx<'_>, a: &Args, at: Option<u64>, write: bool) -> Flow {
    let d = match desc(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let vecs = match iovecs(ctx, a[1], a[2]) {
        Ok(v) => v,
        Err(e) => return neg(e),
    };
    // preadv2/pwritev2 take offset -1 as "the current offset".
    let at = at.filter(|&o| o as i64 != -1);
    if at.is_some_and(|o| (o as i64) < 0) {
        return neg(errno::EINVAL);
    }
    vectored(ctx, &d, &vecs, at, write, false)
}

fn readv(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rwv(ctx, a, None, false)
}

fn writev(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rwv(ctx, a, None, true)
}

fn preadv(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rwv(ctx, a, Some(a[3]), false)
}

fn pwritev(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rwv(ctx, a, Some(a[3]), true)
}

fn preadv2(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rwv(ctx, a, Some(a[3]), false)
}

fn pwritev2(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    rwv(ctx, a, Some(a[3]), true)
}

fn lseek(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match desc(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if !d.file.seekable() {
        return neg(errno::ESPIPE);
    }
    let size = d.file.size() as i64;
    let off = a[1] as i64;
    let new = match a[2] as u32 {
        0 => Some(off),
        1 => (d.offset() as i64).checked_add(off),
        2 => size.checked_add(off),
        // SEEK_DATA: all data, no holes; SEEK_HOLE: the end.
        3 if off < size => Some(off),
        4 if off < size => Some(size),
        3 | 4 => return neg(libc::ENXIO),
        _ => return neg(errno::EINVAL),
    };
    match new {
        Some(n) if n >= 0 => {
            d.set_offset(n as u64);
            ctx.proc.changed = true;
            Flow::ok(n as u64)
        }
        _ => neg(errno::EINVAL),
    }
}

fn getdents64(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match desc(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let entries = match d.file.entries() {
        Ok(e) => e,
        Err(e) => return neg(e),
    };
    let cap = a[2].min(MAX_IO) as usize;
    let mut out = Vec::new();
    let mut next = d.offset() as usize;
    for e in entries.iter().skip(next) {
        // struct linux_dirent64: ino, off, reclen, type, name, NUL, padded to 8.
        let reclen = (19 + e.name.len() + 1).next_multiple_of(8);
        if out.len() + reclen > cap {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&e.ino.to_le_bytes());
        out.extend_from_slice(&((next + 1) as u64).to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(e.kind);
        out.extend_from_slice(e.name.as_bytes());
        out.resize(start + reclen, 0);
        next += 1;
    }
    if out.is_empty() && next < entries.len() {
        return neg(errno::EINVAL); // buffer too small for one entry
    }
    if ctx.mem.write(a[1], &out).is_err() {
        return neg(errno::EFAULT);
    }
    d.set_offset(next as u64);
    ctx.proc.changed = true;
    Flow::ok(out.len() as u64)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::testing::Fixture;
    use super::*;
    use crate::config::AllowedPath;

    pub(crate) fn put_path(f: &mut Fixture, p: &str) -> u64 {
        let at = 0x70_0000;
        let mut b = p.as_bytes().to_vec();
        b.push(0);
        f.mem.write(at, &b).unwrap();
        at
    }

    #[test]
    fn open_read_seek_close_under_allowed_path() {
        let dir = std::env::temp_dir().join(format!("kvmjs-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.js"), b"hello world").unwrap();
        let mut f = Fixture::new();
        f.cfg.allowed_paths = vec![AllowedPath::same(&dir)];
        // The directory is below /tmp, a scratch path by default: the longer allowed
        // entry wins.
        let p = put_path(&mut f, &format!("{}/a.js", dir.display()));
        let fd = f.call(Sysno::open, [p, 0, 0, 0, 0, 0]);
        assert!(fd >= 3, "open returned {fd}");
        let fd = fd as u64;
        assert_eq!(f.call(Sysno::read, [fd, 0x71_0000, 5, 0, 0, 0]), 5);
        assert_eq!(f.mem.slice(0x71_0000, 5).unwrap(), b"hello");
        assert_eq!(f.call(Sysno::pread64, [fd, 0x71_0000, 5, 6, 0, 0]), 5);
        assert_eq!(f.mem.slice(0x71_0000, 5).unwrap(), b"world");
        // A dup shares the offset.
        let dup = f.call(Sysno::dup, [fd, 0, 0, 0, 0, 0]) as u64;
        assert_eq!(f.call(Sysno::lseek, [dup, 0, 1, 0, 0, 0]), 5);
        assert_eq!(f.call(Sysno::lseek, [fd, 0, 2, 0, 0, 0]), 11);
        assert_eq!(f.call(Sysno::lseek, [dup, 0, 1, 0, 0, 0]), 11);
        assert_eq!(f.call(Sysno::read, [fd, 0x71_0000, 5, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::lseek, [fd, (-1i64) as u64, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::read, [fd, u64::MAX - 2, 5, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
        assert_eq!(
            f.call(Sysno::write, [fd, 0x71_0000, 5, 0, 0, 0]),
            -i64::from(libc::EBADF),
            "read-only description"
        );
        // readv over two iovecs.
        f.call(Sysno::lseek, [fd, 0, 0, 0, 0, 0]);
        let iov: Vec<u8> = [0x72_0000u64, 3, 0x72_0100, 100]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        f.mem.write(0x71_0000, &iov).unwrap();
        assert_eq!(f.call(Sysno::readv, [fd, 0x71_0000, 2, 0, 0, 0]), 11);
        assert_eq!(f.mem.slice(0x72_0100, 8).unwrap(), b"lo world");
        assert_eq!(f.call(Sysno::close, [fd, 0, 0, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::close, [fd, 0, 0, 0, 0, 0]),
            -i64::from(libc::EBADF)
        );
        // Writing, escaping with .., and symlinks out are refused.
        assert_eq!(
            f.call(Sysno::open, [p, 1, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        let esc = put_path(&mut f, &format!("{}/../../etc/shadow", dir.display()));
        assert_eq!(
            f.call(Sysno::open, [esc, 0, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).ok();
        let link = put_path(&mut f, &format!("{}/link", dir.display()));
        assert_eq!(
            f.call(Sysno::open, [link, 0, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        // getdents64 lists the directory.
        let dp = put_path(&mut f, &dir.display().to_string());
        let dfd = f.call(Sysno::open, [dp, libc::O_DIRECTORY as u64, 0, 0, 0, 0]) as u64;
        let n = f.call(Sysno::getdents64, [dfd, 0x73_0000, 4096, 0, 0, 0]);
        assert!(n > 0);
        let raw = f.mem.slice(0x73_0000, n as u64).unwrap().to_vec();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("a.js") && text.contains("link"), "{text}");
        assert_eq!(
            f.call(Sysno::getdents64, [dfd, 0x73_0000, 4096, 0, 0, 0]),
            0
        );
        assert_eq!(
            f.call(Sysno::getdents64, [0, 0x73_0000, 4096, 0, 0, 0]),
            -i64::from(libc::ENOTDIR)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn stdout_goes_to_log_and_stdin_is_eof() {
        let mut f = Fixture::new();
        f.mem.write(0x70_0000, b"partial").unwrap();
        assert_eq!(f.call(Sysno::write, [1, 0x70_0000, 7, 0, 0, 0]), 7);
        assert_eq!(f.log.partial, b"partial");
        assert_eq!(f.log.recent(), "partial");
        assert_eq!(f.call(Sysno::read, [0, 0x70_0000, 7, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::write, [0, 0x70_0000, 7, 0, 0, 0]),
            -i64::from(libc::EBADF)
        );
        assert_eq!(
            f.call(Sysno::write, [9, 0x70_0000, 7, 0, 0, 0]),
            -i64::from(libc::EBADF)
        );
        assert_eq!(
            f.call(Sysno::lseek, [1, 0, 0, 0, 0, 0]),
            -i64::from(libc::ESPIPE)
        );
        assert_eq!(
            f.call(Sysno::ioctl, [1, 0x5401, 0, 0, 0, 0]),
            -i64::from(libc::ENOTTY)
        );
    }
}
