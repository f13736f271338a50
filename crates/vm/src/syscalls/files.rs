//! Files: stdout/stderr go to the host log; other paths open read-only, and only under the
//! program's allowed paths (checked lexically, then again after resolving symlinks).

use super::{errno, Args, Ctx, Entry, Flow};
use crate::config::AllowedPath;
use crate::process::FdKind;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    Entry {
        nr: Sysno::read as usize,
        handler: read,
    },
    Entry {
        nr: Sysno::pread64 as usize,
        handler: pread64,
    },
    Entry {
        nr: Sysno::readv as usize,
        handler: readv,
    },
    Entry {
        nr: Sysno::write as usize,
        handler: write,
    },
    Entry {
        nr: Sysno::writev as usize,
        handler: writev,
    },
    Entry {
        nr: Sysno::open as usize,
        handler: open,
    },
    Entry {
        nr: Sysno::openat as usize,
        handler: openat,
    },
    Entry {
        nr: Sysno::close as usize,
        handler: close,
    },
    Entry {
        nr: Sysno::lseek as usize,
        handler: lseek,
    },
    Entry {
        nr: Sysno::fstat as usize,
        handler: fstat,
    },
    Entry {
        nr: Sysno::stat as usize,
        handler: stat,
    },
    Entry {
        nr: Sysno::lstat as usize,
        handler: stat,
    },
    Entry {
        nr: Sysno::newfstatat as usize,
        handler: newfstatat,
    },
    Entry {
        nr: Sysno::statx as usize,
        handler: statx,
    },
    Entry {
        nr: Sysno::access as usize,
        handler: access,
    },
    Entry {
        nr: Sysno::faccessat as usize,
        handler: faccessat,
    },
    Entry {
        nr: Sysno::faccessat2 as usize,
        handler: faccessat,
    },
    Entry {
        nr: Sysno::ioctl as usize,
        handler: ioctl,
    },
    Entry {
        nr: Sysno::fcntl as usize,
        handler: fcntl,
    },
    Entry {
        nr: Sysno::poll as usize,
        handler: poll,
    },
    Entry {
        nr: Sysno::getcwd as usize,
        handler: getcwd,
    },
    Entry {
        nr: Sysno::readlink as usize,
        handler: readlink,
    },
    Entry {
        nr: Sysno::readlinkat as usize,
        handler: readlink,
    },
];

const AT_FDCWD: i64 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
const O_ACCMODE: u64 = 3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;
/// Largest single read, so a guest cannot make the host touch gigabytes in one call.
const MAX_IO: u64 = 16 << 20;
const PATH_MAX: u64 = 4096;

fn neg(e: i32) -> Flow {
    Flow::err(e)
}

fn read_at(ctx: &mut Ctx<'_>, fd: u64, buf: u64, len: u64, at: Option<u64>) -> Flow {
    let len = len.min(MAX_IO);
    let (file, offset) = match ctx.proc.fds.get(fd) {
        Some(FdKind::Stdin) => return Flow::ok(0),
        Some(FdKind::File { dir: true, .. }) => return neg(errno::EISDIR),
        Some(FdKind::File { file, offset, .. }) => (file.clone(), at.unwrap_or(*offset)),
        Some(_) => return neg(errno::EBADF),
        None => return neg(errno::EBADF),
    };
    let dst = match ctx.mem.slice_mut(buf, len) {
        Ok(d) => d,
        Err(_) => return neg(errno::EFAULT),
    };
    let n = match file.read_at(dst, offset) {
        Ok(n) => n as u64,
        Err(e) => return neg(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    if at.is_none() {
        if let Some(FdKind::File { offset, .. }) = ctx.proc.fds.get_mut(fd) {
            *offset += n;
            ctx.proc.changed = true;
        }
    }
    Flow::ok(n)
}

fn read(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    read_at(ctx, a[0], a[1], a[2], None)
}

fn pread64(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    read_at(ctx, a[0], a[1], a[2], Some(a[3]))
}

fn iovecs(ctx: &Ctx<'_>, iov: u64, cnt: u64) -> Result<Vec<(u64, u64)>, i32> {
    if cnt > 1024 {
        return Err(errno::EINVAL);
    }
    let raw = ctx.mem.slice(iov, cnt * 16).map_err(|_| errno::EFAULT)?;
    Ok(raw
        .chunks_exact(16)
        .map(|c| {
            let base = u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
            let len = u64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
            (base, len)
        })
        .collect())
}

fn readv(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let vecs = match iovecs(ctx, a[1], a[2]) {
        Ok(v) => v,
        Err(e) => return neg(e),
    };
    let mut total = 0;
    for (base, len) in vecs {
        match read_at(ctx, a[0], base, len, None) {
            Flow::Return(n) if (n as i64) < 0 => {
                return if total > 0 {
                    Flow::ok(total)
                } else {
                    Flow::Return(n)
                }
            }
            Flow::Return(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            stop => return stop,
        }
    }
    Flow::ok(total)
}

fn write_out(ctx: &mut Ctx<'_>, fd: u64, buf: u64, len: u64) -> Result<u64, i32> {
    match ctx.proc.fds.get(fd) {
        Some(FdKind::Stdout | FdKind::Stderr) => {}
        Some(_) => return Err(errno::EBADF),
        None => return Err(errno::EBADF),
    }
    let len = len.min(MAX_IO);
    let bytes = ctx.mem.slice(buf, len).map_err(|_| errno::EFAULT)?.to_vec();
    ctx.guest_output(&bytes);
    Ok(len)
}

fn write(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match write_out(ctx, a[0], a[1], a[2]) {
        Ok(n) => Flow::ok(n),
        Err(e) => neg(e),
    }
}

fn writev(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let vecs = match iovecs(ctx, a[1], a[2]) {
        Ok(v) => v,
        Err(e) => return neg(e),
    };
    let mut total: u64 = 0;
    for (base, len) in vecs {
        // One call moves at most MAX_IO bytes, like a short write.
        let len = len.min(MAX_IO - total);
        if len == 0 {
            break;
        }
        match write_out(ctx, a[0], base, len) {
            Ok(n) => total += n,
            Err(e) => return neg(e),
        }
    }
    Flow::ok(total)
}

/// Lexically normalises `path` against `base` into an absolute guest path.
pub(crate) fn normalize(base: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base}/{path}")
    };
    for c in Path::new(&joined).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// Maps a normalised guest path to a host path if an allowed entry covers it.
pub(crate) fn allowed_host_path(
    allowed: &[AllowedPath],
    vpath: &str,
) -> Option<(PathBuf, PathBuf)> {
    for e in allowed {
        let v = e.virtual_path.trim_end_matches('/');
        let rest = if vpath == v || (v.is_empty() && e.prefix) {
            Some(vpath.trim_start_matches(v).trim_start_matches('/'))
        } else if e.prefix && vpath.starts_with(v) && vpath.as_bytes().get(v.len()) == Some(&b'/') {
            Some(&vpath[v.len() + 1..])
        } else {
            None
        };
        if let Some(rest) = rest {
            let host = if rest.is_empty() {
                e.real.clone()
            } else {
                e.real.join(rest)
            };
            return Some((host, e.real.clone()));
        }
    }
    None
}

/// Resolves a guest (dirfd, path) to a host path it may read.
fn resolve(ctx: &Ctx<'_>, dirfd: i64, path_ptr: u64) -> Result<(PathBuf, String), i32> {
    let raw = ctx
        .mem
        .read_cstr(path_ptr, PATH_MAX)
        .map_err(|_| errno::EFAULT)?;
    let path = std::str::from_utf8(raw).map_err(|_| errno::ENOENT)?;
    if path.is_empty() {
        return Err(errno::ENOENT);
    }
    let base = if path.starts_with('/') || dirfd == AT_FDCWD {
        ctx.cfg.current_working_directory.clone()
    } else {
        match ctx.proc.fds.get(dirfd as u64) {
            Some(FdKind::File {
                path, dir: true, ..
            }) => path.clone(),
            Some(_) => return Err(errno::ENOTDIR),
            None => return Err(errno::EBADF),
        }
    };
    let vpath = normalize(&base, path);
    let Some((host, root)) = allowed_host_path(&ctx.cfg.allowed_paths, &vpath) else {
        if vpath.starts_with("/proc/") || vpath.starts_with("/sys/") {
            // libc and std probe these routinely (e.g. /proc/self/maps) and cope without.
            tracing::debug!(program = %ctx.cfg.name, "guest may not open {vpath:?}");
        } else {
            tracing::warn!(program = %ctx.cfg.name, "guest may not open {vpath:?}: not under allowed_paths");
        }
        return Err(errno::EACCES);
    };
    // Symlinks must not lead out of the allowed entry.
    let real = host
        .canonicalize()
        .map_err(|e| e.raw_os_error().unwrap_or(errno::ENOENT))?;
    let root = root.canonicalize().map_err(|_| errno::ENOENT)?;
    if !real.starts_with(&root) {
        tracing::warn!(program = %ctx.cfg.name, "guest path {vpath:?} resolves outside its allowed path");
        return Err(errno::EACCES);
    }
    Ok((real, vpath))
}

fn do_open(ctx: &mut Ctx<'_>, dirfd: i64, path: u64, flags: u64) -> Flow {
    if flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0 {
        return neg(errno::EACCES);
    }
    let (real, vpath) = match resolve(ctx, dirfd, path) {
        Ok(r) => r,
        Err(e) => return neg(e),
    };
    // Non-blocking, so a FIFO under an allowed path cannot hang the VM's thread; only
    // regular files and directories are served.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&real)
    {
        Ok(f) => f,
        Err(e) => return neg(e.raw_os_error().unwrap_or(errno::ENOENT)),
    };
    let Ok(meta) = file.metadata() else {
        return neg(libc::EIO);
    };
    if !meta.is_file() && !meta.is_dir() {
        return neg(errno::EACCES);
    }
    let dir = meta.is_dir();
    if flags & O_DIRECTORY != 0 && !dir {
        return neg(errno::ENOTDIR);
    }
    let kind = FdKind::File {
        file: Arc::new(file),
        path: vpath,
        offset: 0,
        dir,
    };
    ctx.proc.changed = true;
    match ctx.proc.fds.insert(kind) {
        Some(fd) => Flow::ok(fd),
        None => neg(libc::EMFILE),
    }
}

fn open(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_open(ctx, AT_FDCWD, a[0], a[1])
}

fn openat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_open(ctx, a[0] as i32 as i64, a[1], a[2])
}

fn close(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    ctx.proc.changed = true;
    if ctx.proc.fds.close(a[0]) {
        Flow::ok(0)
    } else {
        neg(errno::EBADF)
    }
}

fn lseek(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let Some(FdKind::File { file, offset, .. }) = ctx.proc.fds.get_mut(a[0]) else {
        return neg(if ctx.proc.fds.get(a[0]).is_some() {
            errno::ESPIPE
        } else {
            errno::EBADF
        });
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0) as i64;
    let base = match a[2] {
        0 => 0,
        1 => *offset as i64,
        2 => size,
        _ => return neg(errno::EINVAL),
    };
    match base.checked_add(a[1] as i64) {
        Some(n) if n >= 0 => {
            *offset = n as u64;
            ctx.proc.changed = true;
            Flow::ok(n as u64)
        }
        _ => neg(errno::EINVAL),
    }
}

/// File facts in the shape both stat and statx need.
struct Facts {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    size: u64,
    blocks: u64,
    mtime: (i64, i64),
    rdev: u64,
}

fn facts_of_meta(m: &std::fs::Metadata) -> Facts {
    Facts {
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode() & !0o222, // read-only to the guest
        nlink: m.nlink(),
        size: m.size(),
        blocks: m.blocks(),
        mtime: (m.mtime(), m.mtime_nsec()),
        rdev: 0,
    }
}

fn facts_of_fd(ctx: &Ctx<'_>, fd: u64) -> Result<Facts, i32> {
    match ctx.proc.fds.get(fd) {
        Some(FdKind::File { file, .. }) => file
            .metadata()
            .map(|m| facts_of_meta(&m))
            .map_err(|_| libc::EIO),
        Some(_) => Ok(Facts {
            dev: 5,
            ino: fd + 1,
            mode: libc::S_IFCHR | 0o620,
            nlink: 1,
            size: 0,
            blocks: 0,
            mtime: (0, 0),
            rdev: 0x8800 + fd,
        }),
        None => Err(errno::EBADF),
    }
}

fn facts_of_path(ctx: &Ctx<'_>, dirfd: i64, path: u64, flags: u64) -> Result<Facts, i32> {
    if flags & AT_EMPTY_PATH != 0
        && ctx
            .mem
            .read_cstr(path, 1)
            .map(|s| s.is_empty())
            .unwrap_or(false)
    {
        return facts_of_fd(ctx, dirfd as u64);
    }
    let (real, _) = resolve(ctx, dirfd, path)?;
    std::fs::metadata(real)
        .map(|m| facts_of_meta(&m))
        .map_err(|e| e.raw_os_error().unwrap_or(errno::ENOENT))
}

fn write_stat(ctx: &mut Ctx<'_>, buf: u64, f: Result<Facts, i32>) -> Flow {
    let f = match f {
        Ok(f) => f,
        Err(e) => return neg(e),
    };
    let mut s = [0u8; 144];
    let mut put = |off: usize, v: u64| s[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(0, f.dev);
    put(8, f.ino);
    put(16, f.nlink);
    put(24, u64::from(f.mode)); // st_mode, then st_uid = 0
    put(40, f.rdev);
    put(48, f.size);
    put(56, 4096);
    put(64, f.blocks);
    for off in [72, 88, 104] {
        put(off, f.mtime.0 as u64);
        put(off + 8, f.mtime.1 as u64);
    }
    match ctx.mem.write(buf, &s) {
        Ok(()) => Flow::ok(0),
        Err(_) => neg(errno::EFAULT),
    }
}

fn fstat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let f = facts_of_fd(ctx, a[0]);
    write_stat(ctx, a[1], f)
}

fn stat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let f = facts_of_path(ctx, AT_FDCWD, a[0], 0);
    write_stat(ctx, a[1], f)
}

fn newfstatat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let f = facts_of_path(ctx, a[0] as i32 as i64, a[1], a[3]);
    write_stat(ctx, a[2], f)
}

fn statx(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let f = match facts_of_path(ctx, a[0] as i32 as i64, a[1], a[2]) {
        Ok(f) => f,
        Err(e) => return neg(e),
    };
    let mut s = [0u8; 256];
    s[0..4].copy_from_slice(&0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
    s[4..8].copy_from_slice(&4096u32.to_le_bytes());
    s[16..20].copy_from_slice(&(f.nlink as u32).to_le_bytes());
    s[28..30].copy_from_slice(&(f.mode as u16).to_le_bytes());
    s[32..40].copy_from_slice(&f.ino.to_le_bytes());
    s[40..48].copy_from_slice(&f.size.to_le_bytes());
    s[48..56].copy_from_slice(&f.blocks.to_le_bytes());
    for off in [64, 96, 112] {
        s[off..off + 8].copy_from_slice(&f.mtime.0.to_le_bytes());
        s[off + 8..off + 12].copy_from_slice(&(f.mtime.1 as u32).to_le_bytes());
    }
    s[128..132].copy_from_slice(&((f.rdev >> 8) as u32).to_le_bytes());
    s[132..136].copy_from_slice(&((f.rdev & 0xff) as u32).to_le_bytes());
    s[136..140].copy_from_slice(&((f.dev >> 8) as u32).to_le_bytes());
    s[140..144].copy_from_slice(&((f.dev & 0xff) as u32).to_le_bytes());
    match ctx.mem.write(a[4], &s) {
        Ok(()) => Flow::ok(0),
        Err(_) => neg(errno::EFAULT),
    }
}

fn check_access(ctx: &Ctx<'_>, dirfd: i64, path: u64, mode: u64) -> Flow {
    if mode & 2 != 0 {
        return neg(errno::EACCES); // W_OK: everything is read-only
    }
    match resolve(ctx, dirfd, path) {
        Ok(_) => Flow::ok(0),
        Err(e) => neg(e),
    }
}

fn access(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    check_access(ctx, AT_FDCWD, a[0], a[1])
}

fn faccessat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    check_access(ctx, a[0] as i32 as i64, a[1], a[2])
}

fn ioctl(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if ctx.proc.fds.get(a[0]).is_none() {
        return neg(errno::EBADF);
    }
    neg(errno::ENOTTY)
}

fn fcntl(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let Some(kind) = ctx.proc.fds.get(a[0]).cloned() else {
        return neg(errno::EBADF);
    };
    match a[1] as i32 {
        libc::F_GETFD | libc::F_SETFD | libc::F_SETFL => Flow::ok(0),
        libc::F_GETFL => Flow::ok(match kind {
            FdKind::Stdout | FdKind::Stderr => libc::O_WRONLY as u64,
            _ => libc::O_RDONLY as u64,
        }),
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            ctx.proc.changed = true;
            match ctx.proc.fds.insert(kind) {
                Some(fd) => Flow::ok(fd),
                None => neg(libc::EMFILE),
            }
        }
        _ => neg(errno::EINVAL),
    }
}

fn poll(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (fds, n) = (a[0], a[1]);
    if n > 1024 {
        return neg(errno::EINVAL);
    }
    let Ok(raw) = ctx.mem.slice(fds, n * 8).map(<[u8]>::to_vec) else {
        return neg(errno::EFAULT);
    };
    let mut ready = 0;
    let mut out = raw.clone();
    for (i, c) in raw.chunks_exact(8).enumerate() {
        let fd = i32::from_le_bytes(c[..4].try_into().expect("4 bytes"));
        let events = i16::from_le_bytes(c[4..6].try_into().expect("2 bytes"));
        let revents: i16 = if fd < 0 {
            0
        } else if ctx.proc.fds.get(fd as u64).is_none() {
            libc::POLLNVAL
        } else {
            events & (libc::POLLIN | libc::POLLOUT)
        };
        if revents != 0 {
            ready += 1;
        }
        out[i * 8 + 6..i * 8 + 8].copy_from_slice(&revents.to_le_bytes());
    }
    match ctx.mem.write(fds, &out) {
        Ok(()) => Flow::ok(ready),
        Err(_) => neg(errno::EFAULT),
    }
}

fn getcwd(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let mut cwd = ctx.cfg.current_working_directory.clone().into_bytes();
    cwd.push(0);
    if (cwd.len() as u64) > a[1] {
        return neg(errno::ERANGE);
    }
    match ctx.mem.write(a[0], &cwd) {
        Ok(()) => Flow::ok(cwd.len() as u64),
        Err(_) => neg(errno::EFAULT),
    }
}

fn readlink(_: &mut Ctx<'_>, _: &Args) -> Flow {
    // No symlinks are visible inside the guest (not even /proc/self/exe).
    neg(errno::ENOENT)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    #[test]
    fn normalize_handles_dots() {
        assert_eq!(normalize("/app", "x.js"), "/app/x.js");
        assert_eq!(normalize("/app", "../etc/shadow"), "/etc/shadow");
        assert_eq!(normalize("/", "/a/./b/../../../c"), "/c");
    }

    #[test]
    fn allowed_paths_match_on_component_boundaries() {
        let allowed = vec![AllowedPath {
            virtual_path: "/app".into(),
            real: "/host/app".into(),
            prefix: true,
        }];
        assert_eq!(
            allowed_host_path(&allowed, "/app/x.js").unwrap().0,
            PathBuf::from("/host/app/x.js")
        );
        assert!(allowed_host_path(&allowed, "/application").is_none());
        assert!(allowed_host_path(&allowed, "/etc/shadow").is_none());
    }

    fn put_path(f: &mut Fixture, p: &str) -> u64 {
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
        let p = put_path(&mut f, &format!("{}/a.js", dir.display()));
        let fd = f.call(Sysno::open, [p, 0, 0, 0, 0, 0]);
        assert!(fd >= 3, "open returned {fd}");
        assert_eq!(f.call(Sysno::read, [fd as u64, 0x71_0000, 5, 0, 0, 0]), 5);
        assert_eq!(f.mem.slice(0x71_0000, 5).unwrap(), b"hello");
        assert_eq!(f.call(Sysno::lseek, [fd as u64, 0, 2, 0, 0, 0]), 11);
        assert_eq!(f.call(Sysno::read, [fd as u64, 0x71_0000, 5, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::read, [fd as u64, u64::MAX - 2, 5, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
        assert_eq!(f.call(Sysno::close, [fd as u64, 0, 0, 0, 0, 0]), 0);
        // Writing, escaping with .., and paths outside are refused.
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
            f.call(Sysno::write, [9, 0x70_0000, 7, 0, 0, 0]),
            -i64::from(libc::EBADF)
        );
        assert_eq!(
            f.call(Sysno::ioctl, [1, 0x5401, 0, 0, 0, 0]),
            -i64::from(libc::ENOTTY)
        );
    }
}
