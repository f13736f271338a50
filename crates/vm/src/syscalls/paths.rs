//! Calls that name files by path: open, the stat family, access, readlink, getcwd, and
//! the namespace changes (mkdir, unlink, rename, chmod, chown, truncate) that only the
//! scratch filesystem accepts. What a path names is decided by [`crate::fs::path`].

use super::e;
use super::files::neg;
use super::{errno, Args, Ctx, Entry, Flow};
use crate::fs::dev::Device;
use crate::fs::host::{stat_of, HostFile};
use crate::fs::path::{self, Target};
use crate::fs::scratch::OpenHow;
use crate::fs::synth::SynthFile;
use crate::fs::{flags, File, Kind, OpenFile, Stat};
use std::sync::Arc;
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::open, open),
    e(Sysno::openat, openat),
    e(Sysno::creat, creat),
    e(Sysno::fstat, fstat),
    e(Sysno::stat, stat),
    e(Sysno::lstat, stat),
    e(Sysno::newfstatat, newfstatat),
    e(Sysno::statx, statx),
    e(Sysno::access, access),
    e(Sysno::faccessat, faccessat),
    e(Sysno::faccessat2, faccessat),
    e(Sysno::getcwd, getcwd),
    e(Sysno::readlink, readlink),
    e(Sysno::readlinkat, readlinkat),
    e(Sysno::mkdir, mkdir),
    e(Sysno::mkdirat, mkdirat),
    e(Sysno::unlink, unlink),
    e(Sysno::unlinkat, unlinkat),
    e(Sysno::rmdir, rmdir),
    e(Sysno::rename, rename),
    e(Sysno::renameat, renameat),
    e(Sysno::renameat2, renameat2),
    e(Sysno::chmod, chmod),
    e(Sysno::fchmodat, fchmodat),
    e(Sysno::chown, chown),
    e(Sysno::lchown, chown),
    e(Sysno::fchownat, fchownat),
    e(Sysno::truncate, truncate),
];

pub(super) const AT_FDCWD: i64 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_REMOVEDIR: u64 = 0x200;
const PATH_MAX: u64 = 4096;
const O_CREAT: u64 = 0o100;
const O_EXCL: u64 = 0o200;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;
const O_CLOEXEC: u64 = 0o2000000;
const O_TMPFILE: u64 = 0o20000000;

/// The guest string at `ptr` (at most PATH_MAX bytes).
fn guest_str(ctx: &Ctx<'_>, ptr: u64) -> Result<String, i32> {
    let raw = ctx
        .mem
        .read_cstr(ptr, PATH_MAX)
        .map_err(|_| errno::EFAULT)?;
    String::from_utf8(raw.to_vec()).map_err(|_| errno::ENOENT)
}

/// The absolute normalised guest path of (`dirfd`, `path`).
fn abs_path(ctx: &Ctx<'_>, dirfd: i64, path: &str) -> Result<String, i32> {
    if path.is_empty() {
        return Err(errno::ENOENT);
    }
    let base = if path.starts_with('/') || dirfd == AT_FDCWD {
        ctx.cfg.current_working_directory.clone()
    } else {
        let d = ctx.proc.fds.file(dirfd as u64)?;
        match (d.file.kind(), d.file.path()) {
            (Kind::Directory, Some(p)) => p.to_string(),
            _ => return Err(errno::ENOTDIR),
        }
    };
    Ok(path::normalize(&base, path))
}

fn guest_path(ctx: &Ctx<'_>, dirfd: i64, ptr: u64) -> Result<String, i32> {
    let p = guest_str(ctx, ptr)?;
    abs_path(ctx, dirfd, &p)
}

fn dirfd(a: u64) -> i64 {
    a as i32 as i64
}

/// The scratch root covering `vpath`, or the errno for changing a path outside it.
fn scratch_root(ctx: &Ctx<'_>, vpath: &str) -> Result<String, i32> {
    match path::scratch_root(ctx.cfg, vpath) {
        Some(r) => Ok(path::normalize("/", r)),
        None => {
            tracing::debug!(program = %ctx.cfg.name, "guest may not change {vpath:?}: not under scratch_paths");
            Err(errno::EACCES)
        }
    }
}

fn do_open(ctx: &mut Ctx<'_>, dirfd: i64, ptr: u64, fl: u64, mode: u64) -> Flow {
    let vpath = match guest_path(ctx, dirfd, ptr) {
        Ok(p) => p,
        Err(e) => return neg(e),
    };
    let acc = fl as u32 & flags::ACCMODE;
    let writing = acc != flags::RDONLY || fl & (O_CREAT | O_TRUNC) != 0;
    if fl & O_TMPFILE == O_TMPFILE {
        return neg(libc::EOPNOTSUPP);
    }
    let target = match path::lookup(ctx.cfg, &vpath) {
        Ok(t) => t,
        Err(e) => return neg(if writing { errno::EACCES } else { e }),
    };
    let file: Arc<dyn File> = match target {
        Target::Synth(node) if !writing => {
            Arc::new(SynthFile::open(node, &vpath, ctx.proc, ctx.cfg))
        }
        Target::Device(d) => Arc::new(d),
        Target::Provided(vpath) if !writing => match crate::fastpath::file_at(&vpath) {
            Some(f) => Arc::new(HostFile::provided(f.clone(), &vpath)),
            None => return neg(errno::ENOENT),
        },
        Target::Host { real, vpath } if !writing => match HostFile::open(&real, &vpath) {
            Ok(f) => Arc::new(f),
            Err(e) => return neg(e),
        },
        Target::Scratch(p) => {
            let root = match scratch_root(ctx, &p) {
                Ok(r) => r,
                Err(e) => return neg(e),
            };
            let how = OpenHow {
                create: fl & O_CREAT != 0,
                exclusive: fl & O_EXCL != 0,
                truncate: fl & O_TRUNC != 0 && acc != flags::RDONLY,
                directory: fl & O_DIRECTORY != 0,
                mode: mode as u32 & 0o7777 & !ctx.proc.fds.umask,
            };
            let limit = ctx.cfg.max_scratch_bytes;
            ctx.proc.changed = true;
            let truncate = how.truncate;
            match ctx.proc.fds.scratch.open(&root, &p, how, limit) {
                Ok(f) => {
                    if truncate {
                        // The stores of shared mappings died with the bytes: they show
                        // the cut (crate::mm::shared).
                        super::memory::shared_after(ctx, &*f);
                    }
                    f
                }
                Err(e) => return neg(e.errno()),
            }
        }
        _ => {
            tracing::debug!(program = %ctx.cfg.name, "guest may not write {vpath:?}: only scratch paths are writable");
            return neg(errno::EACCES);
        }
    };
    if file.kind() == Kind::Directory && acc != flags::RDONLY {
        return neg(errno::EISDIR);
    }
    if fl & O_DIRECTORY != 0 && file.kind() != Kind::Directory {
        return neg(errno::ENOTDIR);
    }
    let d = OpenFile::new(file, fl as u32);
    ctx.proc.changed = true;
    match ctx.proc.fds.insert(d, fl & O_CLOEXEC != 0) {
        Ok(fd) => Flow::ok(fd),
        Err(e) => neg(e),
    }
}

fn open(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_open(ctx, AT_FDCWD, a[0], a[1], a[2])
}

fn openat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_open(ctx, dirfd(a[0]), a[1], a[2], a[3])
}

fn creat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_open(ctx, AT_FDCWD, a[0], O_CREAT | O_TRUNC | 1, a[1])
}

/// Facts of a normalised guest path.
pub(super) fn stat_path(ctx: &Ctx<'_>, vpath: &str) -> Result<Stat, i32> {
    let target = match path::lookup(ctx.cfg, vpath) {
        Ok(t) => t,
        Err(_) if path::is_visible_ancestor(ctx.cfg, vpath) => {
            return Ok(Stat::synthetic(Kind::Directory, 0o555, 2, 4096));
        }
        Err(e) => return Err(e),
    };
    match target {
        Target::Synth(node) => SynthFile::open(node, vpath, ctx.proc, ctx.cfg).stat(),
        Target::Device(d) => d.stat(),
        Target::Host { real, .. } => std::fs::metadata(real)
            .map(|m| stat_of(&m))
            .map_err(|e| e.raw_os_error().unwrap_or(errno::ENOENT)),
        Target::Provided(p) => crate::fastpath::file_at(&p)
            .and_then(|f| f.metadata().ok())
            .map(|m| stat_of(&m))
            .ok_or(errno::ENOENT),
        Target::Scratch(p) => {
            let root = scratch_root(ctx, &p)?;
            ctx.proc.fds.scratch.stat(&root, &p).map_err(|e| e.errno())
        }
    }
}

fn stat_at(ctx: &Ctx<'_>, dirfd: i64, ptr: u64, fl: u64) -> Result<Stat, i32> {
    let p = guest_str(ctx, ptr)?;
    if p.is_empty() && fl & AT_EMPTY_PATH != 0 {
        let fd = if dirfd == AT_FDCWD {
            return stat_path(ctx, &ctx.cfg.current_working_directory);
        } else {
            dirfd as u64
        };
        return ctx.proc.fds.file(fd)?.file.stat();
    }
    let vpath = abs_path(ctx, dirfd, &p)?;
    stat_path(ctx, &vpath)
}

fn write_stat(ctx: &mut Ctx<'_>, buf: u64, f: Result<Stat, i32>) -> Flow {
    let f = match f {
        Ok(f) => f,
        Err(e) => return neg(e),
    };
    let mut s = [0u8; 144];
    let mut put = |off: usize, v: u64| s[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(0, f.dev);
    put(8, f.ino);
    put(16, f.nlink);
    put(24, u64::from(f.mode) | (u64::from(f.uid) << 32));
    put(32, u64::from(f.gid));
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
    let f = ctx.proc.fds.file(a[0]).and_then(|d| d.file.stat());
    write_stat(ctx, a[1], f)
}

fn stat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let f = stat_at(ctx, AT_FDCWD, a[0], 0);
    write_stat(ctx, a[1], f)
}

fn newfstatat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let f = stat_at(ctx, dirfd(a[0]), a[1], a[3]);
    write_stat(ctx, a[2], f)
}

fn statx(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let f = match stat_at(ctx, dirfd(a[0]), a[1], a[2]) {
        Ok(f) => f,
        Err(e) => return neg(e),
    };
    let mut s = [0u8; 256];
    s[0..4].copy_from_slice(&0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
    s[4..8].copy_from_slice(&4096u32.to_le_bytes());
    s[16..20].copy_from_slice(&(f.nlink as u32).to_le_bytes());
    s[20..24].copy_from_slice(&f.uid.to_le_bytes());
    s[24..28].copy_from_slice(&f.gid.to_le_bytes());
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

fn check_access(ctx: &Ctx<'_>, dirfd: i64, ptr: u64, mode: u64) -> Flow {
    let vpath = match guest_path(ctx, dirfd, ptr) {
        Ok(p) => p,
        Err(e) => return neg(e),
    };
    let st = match stat_path(ctx, &vpath) {
        Ok(s) => s,
        Err(e) => return neg(e),
    };
    let writable =
        path::scratch_root(ctx.cfg, &vpath).is_some() || Device::by_path(&vpath).is_some();
    if mode & 2 != 0 && !writable {
        return neg(errno::EACCES);
    }
    if mode & 1 != 0 && st.mode & 0o111 == 0 {
        return neg(errno::EACCES);
    }
    Flow::ok(0)
}

fn access(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    check_access(ctx, AT_FDCWD, a[0], a[1])
}

fn faccessat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    check_access(ctx, dirfd(a[0]), a[1], a[2])
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

/// What a symlink path reads as: /proc/self/exe names the program, /proc/self/fd/N the
/// file fd N was opened as; everything else that exists is not a link (EINVAL), which
/// is what realpath() needs to walk a path.
fn link_text(ctx: &Ctx<'_>, vpath: &str) -> Result<String, i32> {
    if vpath == "/proc/self/exe" || vpath == "/proc/1/exe" {
        return path::program_path(ctx.cfg)
            .map(str::to_string)
            .ok_or(errno::ENOENT);
    }
    if let Some(n) = vpath.strip_prefix("/proc/self/fd/") {
        let fd: u64 = n.parse().map_err(|_| errno::ENOENT)?;
        let d = ctx.proc.fds.file(fd).map_err(|_| errno::ENOENT)?;
        return Ok(d.file.path().map_or_else(
            || format!("anon_inode:[{:?}]", d.file.kind()),
            str::to_string,
        ));
    }
    stat_path(ctx, vpath)?;
    Err(errno::EINVAL)
}

fn do_readlink(ctx: &mut Ctx<'_>, dirfd: i64, ptr: u64, buf: u64, size: u64) -> Flow {
    if (size as i64) <= 0 {
        return neg(errno::EINVAL);
    }
    let text = match guest_path(ctx, dirfd, ptr).and_then(|p| link_text(ctx, &p)) {
        Ok(t) => t,
        Err(e) => return neg(e),
    };
    let n = text.len().min(size as usize);
    match ctx.mem.write(buf, &text.as_bytes()[..n]) {
        Ok(()) => Flow::ok(n as u64),
        Err(_) => neg(errno::EFAULT),
    }
}

fn readlink(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_readlink(ctx, AT_FDCWD, a[0], a[1], a[2])
}

fn readlinkat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_readlink(ctx, dirfd(a[0]), a[1], a[2], a[3])
}

/// Runs a change of the scratch tree at (`dirfd`, `ptr`).
fn scratch_change(
    ctx: &mut Ctx<'_>,
    dirfd: i64,
    ptr: u64,
    op: impl FnOnce(
        &mut crate::fs::scratch::ScratchFs,
        &str,
        &str,
    ) -> Result<(), crate::fs::scratch::ScratchError>,
) -> Flow {
    let vpath = match guest_path(ctx, dirfd, ptr) {
        Ok(p) => p,
        Err(e) => return neg(e),
    };
    let root = match scratch_root(ctx, &vpath) {
        Ok(r) => r,
        Err(e) => {
            return neg(if stat_path(ctx, &vpath).is_ok() {
                libc::EROFS
            } else {
                e
            })
        }
    };
    ctx.proc.changed = true;
    match op(&mut ctx.proc.fds.scratch, &root, &vpath) {
        Ok(()) => Flow::ok(0),
        Err(e) => neg(e.errno()),
    }
}

fn do_mkdir(ctx: &mut Ctx<'_>, dirfd: i64, ptr: u64, mode: u64) -> Flow {
    let mode = mode as u32 & 0o7777 & !ctx.proc.fds.umask;
    scratch_change(ctx, dirfd, ptr, |fs, root, p| fs.mkdir(root, p, mode))
}

fn mkdir(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_mkdir(ctx, AT_FDCWD, a[0], a[1])
}

fn mkdirat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_mkdir(ctx, dirfd(a[0]), a[1], a[2])
}

fn unlink(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    scratch_change(ctx, AT_FDCWD, a[0], |fs, root, p| fs.remove(root, p, false))
}

fn rmdir(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    scratch_change(ctx, AT_FDCWD, a[0], |fs, root, p| fs.remove(root, p, true))
}

fn unlinkat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[2] & !AT_REMOVEDIR != 0 {
        return neg(errno::EINVAL);
    }
    let dir = a[2] & AT_REMOVEDIR != 0;
    scratch_change(ctx, dirfd(a[0]), a[1], |fs, root, p| {
        fs.remove(root, p, dir)
    })
}

fn do_rename(ctx: &mut Ctx<'_>, olddir: i64, old: u64, newdir: i64, new: u64, fl: u64) -> Flow {
    const NOREPLACE: u64 = 1;
    if fl & !NOREPLACE != 0 {
        return neg(errno::EINVAL); // RENAME_EXCHANGE and RENAME_WHITEOUT are not supported
    }
    let (from, to) = match (guest_path(ctx, olddir, old), guest_path(ctx, newdir, new)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return neg(e),
    };
    let (rf, rt) = match (scratch_root(ctx, &from), scratch_root(ctx, &to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(_), Ok(_)) if stat_path(ctx, &from).is_ok() => return neg(libc::EXDEV),
        (Err(e), _) | (_, Err(e)) => return neg(e),
    };
    if fl & NOREPLACE != 0 && ctx.proc.fds.scratch.stat(&rt, &to).is_ok() {
        return neg(libc::EEXIST);
    }
    ctx.proc.changed = true;
    match ctx.proc.fds.scratch.rename(&rf, &from, &rt, &to) {
        Ok(()) => Flow::ok(0),
        Err(e) => neg(e.errno()),
    }
}

fn rename(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_rename(ctx, AT_FDCWD, a[0], AT_FDCWD, a[1], 0)
}

fn renameat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_rename(ctx, dirfd(a[0]), a[1], dirfd(a[2]), a[3], 0)
}

fn renameat2(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_rename(ctx, dirfd(a[0]), a[1], dirfd(a[2]), a[3], a[4])
}

fn do_chmod(ctx: &mut Ctx<'_>, dirfd: i64, ptr: u64, mode: u64) -> Flow {
    scratch_change(ctx, dirfd, ptr, |fs, root, p| {
        if p == root {
            return Ok(());
        }
        fs.chmod(p, mode as u32)
    })
}

fn chmod(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_chmod(ctx, AT_FDCWD, a[0], a[1])
}

fn fchmodat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_chmod(ctx, dirfd(a[0]), a[1], a[2])
}

/// chown on the scratch tree: everything belongs to root already, so only existence is
/// checked.
fn do_chown(ctx: &mut Ctx<'_>, dirfd: i64, ptr: u64) -> Flow {
    scratch_change(ctx, dirfd, ptr, |fs, root, p| fs.stat(root, p).map(|_| ()))
}

fn chown(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_chown(ctx, AT_FDCWD, a[0])
}

fn fchownat(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_chown(ctx, dirfd(a[0]), a[1])
}

fn truncate(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let len = a[1];
    if (len as i64) < 0 {
        return neg(errno::EINVAL);
    }
    let limit = ctx.cfg.max_scratch_bytes;
    let mut file = None;
    let found = scratch_change(ctx, AT_FDCWD, a[0], |fs, root, p| {
        file = Some(fs.open(root, p, OpenHow::default(), limit)?);
        Ok(())
    });
    let Some(f) = file else { return found };
    // Shared mappings of the file see the cut (crate::mm::shared).
    match super::memory::shared_truncate(ctx, &*f, len) {
        Ok(()) => Flow::ok(0),
        Err(e) => neg(match e {
            libc::EISDIR => crate::fs::scratch::ScratchError::IsDir,
            libc::ENOSPC => crate::fs::scratch::ScratchError::NoSpace,
            _ => crate::fs::scratch::ScratchError::TooBig,
        }
        .errno()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::tests::put_path;
    use super::super::testing::Fixture;
    use super::*;

    const RDWR_CREAT: u64 = 2 | O_CREAT;

    fn read_all(f: &mut Fixture, path: &str) -> String {
        let p = put_path(f, path);
        let fd = f.call(Sysno::open, [p, 0, 0, 0, 0, 0]);
        assert!(fd >= 0, "open {path}: {fd}");
        let n = f.call(Sysno::read, [fd as u64, 0x74_0000, 8192, 0, 0, 0]);
        assert!(n >= 0);
        f.call(Sysno::close, [fd as u64, 0, 0, 0, 0, 0]);
        String::from_utf8(f.mem.slice(0x74_0000, n as u64).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn scratch_files_through_syscalls_and_reset_by_clone() {
        let mut f = Fixture::new();
        let p = put_path(&mut f, "/tmp/cache.db");
        let fd = f.call(Sysno::open, [p, RDWR_CREAT, 0o644, 0, 0, 0]) as u64;
        f.mem.write(0x71_0000, b"sqlite").unwrap();
        assert_eq!(f.call(Sysno::write, [fd, 0x71_0000, 6, 0, 0, 0]), 6);
        assert_eq!(f.call(Sysno::pwrite64, [fd, 0x71_0000, 3, 100, 0, 0]), 3);
        assert_eq!(f.call(Sysno::ftruncate, [fd, 50, 0, 0, 0, 0]), 0);
        f.mem.write(0x75_0000, &[0u8; 144]).unwrap();
        assert_eq!(f.call(Sysno::fstat, [fd, 0x75_0000, 0, 0, 0, 0]), 0);
        assert_eq!(f.mem.read_u64(0x75_0000 + 48).unwrap(), 50);
        // The snapshot is taken here; the request then changes the tree.
        let snap = f.proc.clone();
        let q = put_path(&mut f, "/tmp/d");
        assert_eq!(f.call(Sysno::mkdir, [q, 0o755, 0, 0, 0, 0]), 0);
        let (old, new) = (0x76_0000, 0x76_1000);
        f.mem.write(old, b"/tmp/cache.db\0").unwrap();
        f.mem.write(new, b"/tmp/d/moved.db\0").unwrap();
        assert_eq!(f.call(Sysno::rename, [old, new, 0, 0, 0, 0]), 0);
        assert_eq!(read_all(&mut f, "/tmp/d/moved.db").len(), 50);
        assert_eq!(f.call(Sysno::unlink, [new, 0, 0, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::unlink, [new, 0, 0, 0, 0, 0]),
            -i64::from(libc::ENOENT)
        );
        let q = put_path(&mut f, "/tmp/d");
        assert_eq!(f.call(Sysno::rmdir, [q, 0, 0, 0, 0, 0]), 0);
        // Reset: the snapshot's tree and the snapshot's open file are back.
        f.proc = snap.clone();
        assert_eq!(
            read_all(&mut f, "/tmp/cache.db"),
            "sqlite".to_string() + &"\0".repeat(44)
        );
        assert_eq!(
            f.call(Sysno::lseek, [fd, 0, 1, 0, 0, 0]),
            6,
            "the fd's offset is the snapshot's"
        );
        let q = put_path(&mut f, "/tmp/d");
        assert_eq!(
            f.call(Sysno::stat, [q, 0x75_0000, 0, 0, 0, 0]),
            -i64::from(libc::ENOENT)
        );
        // Locks and fsync succeed (one process).
        assert_eq!(f.call(Sysno::fsync, [fd, 0, 0, 0, 0, 0]), 0);
        assert_eq!(f.call(Sysno::flock, [fd, 2, 0, 0, 0, 0]), 0);
        assert_eq!(f.call(Sysno::fchown, [fd, 0, 0, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::fcntl, [fd, libc::F_SETLK as u64, 0x75_0000, 0, 0, 0]),
            0
        );
        assert_eq!(
            f.call(Sysno::fcntl, [fd, libc::F_GETLK as u64, 0x75_0000, 0, 0, 0]),
            0
        );
        assert_eq!(f.mem.read_u16(0x75_0000).unwrap(), libc::F_UNLCK as u16);
    }

    #[test]
    fn scratch_limit_and_no_writes_outside() {
        let mut f = Fixture::new();
        f.cfg.max_scratch_bytes = 128 << 10;
        let p = put_path(&mut f, "/tmp/big");
        let fd = f.call(Sysno::open, [p, RDWR_CREAT, 0o644, 0, 0, 0]) as u64;
        assert_eq!(
            f.call(Sysno::write, [fd, 0x40_0000, 128 << 10, 0, 0, 0]),
            128 << 10
        );
        assert_eq!(
            f.call(Sysno::write, [fd, 0x40_0000, 1, 0, 0, 0]),
            -i64::from(libc::EFBIG)
        );
        let q = put_path(&mut f, "/tmp/more");
        let fd2 = f.call(Sysno::open, [q, RDWR_CREAT, 0o644, 0, 0, 0]) as u64;
        assert_eq!(
            f.call(Sysno::write, [fd2, 0x40_0000, 1, 0, 0, 0]),
            -i64::from(libc::ENOSPC)
        );
        for (path, want) in [
            ("/etc/passwd", libc::EACCES),
            ("/tmp/../etc/passwd", libc::EACCES),
            ("/proc/self/maps", libc::EACCES),
            ("/tmpx/a", libc::EACCES),
        ] {
            let p = put_path(&mut f, path);
            assert_eq!(
                f.call(Sysno::open, [p, RDWR_CREAT, 0o644, 0, 0, 0]),
                -i64::from(want),
                "{path}"
            );
        }
        let p = put_path(&mut f, "/etc/x");
        assert_eq!(
            f.call(Sysno::mkdir, [p, 0o755, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        assert_eq!(
            f.call(Sysno::access, [p, 2, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        let p = put_path(&mut f, "/etc/passwd");
        assert_eq!(
            f.call(Sysno::open, [p, 0, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        assert_eq!(
            f.call(Sysno::stat, [p, 0x75_0000, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        // In a directory the VM shows, a missing name is just missing.
        let p = put_path(&mut f, "/deno.json");
        assert_eq!(
            f.call(Sysno::open, [p, 0, 0, 0, 0, 0]),
            -i64::from(libc::ENOENT)
        );
        // Directories on the way to a visible path are directories (realpath, config walks).
        let p = put_path(&mut f, "/");
        assert_eq!(f.call(Sysno::stat, [p, 0x75_0000, 0, 0, 0, 0]), 0);
        assert_eq!(
            f.mem.read_u32(0x75_0000 + 24).unwrap() & libc::S_IFMT,
            libc::S_IFDIR
        );
        let t = put_path(&mut f, "/tmp");
        assert_eq!(f.call(Sysno::access, [t, 2, 0, 0, 0, 0]), 0);
    }

    #[test]
    fn proc_and_sys_files_describe_the_vm() {
        let mut f = Fixture::new();
        f.cfg.name = "deno".into();
        f.cfg.program_path = Some("/usr/bin/deno".into());
        assert_eq!(read_all(&mut f, "/proc/self/cgroup"), "0::/\n");
        assert_eq!(read_all(&mut f, "/sys/devices/system/cpu/online"), "0\n");
        assert_eq!(
            read_all(&mut f, "/proc/sys/kernel/osrelease"),
            "6.1.0-kvmjs\n"
        );
        assert!(read_all(&mut f, "/proc/meminfo").starts_with("MemTotal:          16384 kB"));
        assert_eq!(read_all(&mut f, "/proc/self/maps"), f.proc.mm.maps_text());
        let p = put_path(&mut f, "/proc/self/exe");
        assert_eq!(f.call(Sysno::readlink, [p, 0x71_0000, 64, 0, 0, 0]), 13);
        assert_eq!(f.mem.slice(0x71_0000, 13).unwrap(), b"/usr/bin/deno");
        let p = put_path(&mut f, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
        assert_eq!(
            f.call(Sysno::open, [p, 0, 0, 0, 0, 0]),
            -i64::from(libc::ENOENT)
        );
        // realpath() walks: existing non-links are EINVAL.
        let p = put_path(&mut f, "/tmp");
        assert_eq!(
            f.call(Sysno::readlink, [p, 0x71_0000, 64, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        let p = put_path(&mut f, "/dev/urandom");
        let fd = f.call(Sysno::open, [p, 0, 0, 0, 0, 0]) as u64;
        assert_eq!(f.call(Sysno::read, [fd, 0x71_0000, 32, 0, 0, 0]), 32);
        assert_eq!(
            f.call(Sysno::ioctl, [fd, 0x5401, 0x72_0000, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        f.mem.write(0x75_0000, &[0u8; 144]).unwrap();
        assert_eq!(f.call(Sysno::fstat, [fd, 0x75_0000, 0, 0, 0, 0]), 0);
        assert_eq!(
            f.mem.read_u32(0x75_0000 + 24).unwrap(),
            libc::S_IFCHR | 0o666
        );
    }
}
