//! The deno engine's adapter on disk: js/deno-adapter.js, built into kvmjs, written to
//! `$TMPDIR/kvmjs-<uid>/deno-adapter-<hash>.js` for the guest to read.
//!
//! A shared /tmp is the usual place, so the write goes through directory file descriptors,
//! never a path checked and then used: `$TMPDIR` (resolved) is opened from `/` one
//! component at a time without following symlinks, each directory checked with fstat
//! (owned by root or this user; if others may write to it, it must be sticky, as /tmp is),
//! then `kvmjs-<uid>` (must be this user's, writable by no one else), and the file is
//! created with O_EXCL|O_NOFOLLOW in that directory and renamed within it. Nobody else can
//! swap a directory between the check and the write, nor, as no one else may replace any
//! directory on the path, afterwards, when the VM opens the adapter by its path.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The adapter, built into kvmjs so a deployed binary needs no js/ directory.
pub const ADAPTER_SOURCE: &str = include_str!("../../../../js/deno-adapter.js");

/// Errors writing the adapter.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A system call failed.
    #[error("cannot write the deno adapter to {path}: {source}; set TMPDIR to a private writable directory")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `kvmjs-<uid>` is not this user's own directory.
    #[error("{path} is not a private directory ({why}); it must be a directory owned by this user that no one else may write to: remove it or set TMPDIR elsewhere")]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A directory on the way to `$TMPDIR` lets another user swap what lies below it.
    #[error("{path}: {why}, so another user could replace the deno adapter; set TMPDIR to a directory reached only through directories owned by root or this user (others may write only to sticky ones, as to /tmp)")]
    UnsafePath {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Writes the built-in adapter (once per process) and returns its path. It is rewritten on
/// every start (a rename), so the guest reads exactly the adapter this kvmjs was built with.
pub fn adapter_file() -> Result<PathBuf, AdapterError> {
    // Once per process; the lock also keeps two threads off the same temporary file.
    static PATH: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut written = PATH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = written.as_ref() {
        return Ok(p.clone());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let path = write_adapter(&std::env::temp_dir(), uid, ADAPTER_SOURCE)?;
    *written = Some(path.clone());
    Ok(path)
}

/// Writes `source` as `<base>/kvmjs-<uid>/deno-adapter-<hash>.js` through checked
/// directory fds (see the module comment).
fn write_adapter(base: &Path, uid: libc::uid_t, source: &str) -> Result<PathBuf, AdapterError> {
    let base = base.canonicalize().map_err(|source| AdapterError::Io {
        path: base.to_path_buf(),
        source,
    })?;
    let dir = Dir::open_trusted(&base, uid)?.private_subdir(&format!("kvmjs-{uid}"), uid)?;
    dir.write_file(
        &format!("deno-adapter-{:016x}.js", fnv1a(source)),
        source.as_bytes(),
    )
}

/// A directory held open (O_PATH) after its checks, and the path it was reached by.
struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the absolute, resolved `path` from `/`, component by component without
    /// following symlinks, refusing any directory another user could change.
    fn open_trusted(path: &Path, uid: libc::uid_t) -> Result<Dir, AdapterError> {
        let mut dir = Dir {
            fd: open_at(None, Path::new("/"), Path::new("/"))?,
            path: PathBuf::from("/"),
        };
        dir.check_trusted(uid)?;
        for c in path.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(name) => {
                    let path = dir.path.join(name);
                    dir = Dir {
                        fd: open_at(Some(&dir), Path::new(name), &path)?,
                        path,
                    };
                    dir.check_trusted(uid)?;
                }
                // canonicalize() leaves neither `.`, `..` nor a prefix.
                _ => {
                    return Err(AdapterError::UnsafePath {
                        path: path.to_path_buf(),
                        why: "not a resolved absolute path",
                    })
                }
            }
        }
        Ok(dir)
    }

    /// A directory of the path to `$TMPDIR`: root's or ours, and if others may write to
    /// it, sticky (they can then remove or rename only their own entries).
    fn check_trusted(&self, uid: libc::uid_t) -> Result<(), AdapterError> {
        let st = self.stat()?;
        let why = if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            Some("not a directory")
        } else if st.st_uid != 0 && st.st_uid != uid {
            Some("owned by another user")
        } else if st.st_mode & 0o022 != 0 && st.st_mode & libc::S_ISVTX == 0 {
            Some("others may write to it and it is not sticky")
        } else {
            None
        };
        match why {
            Some(why) => Err(AdapterError::UnsafePath {
                path: self.path.clone(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// `name` in this directory, created (mode 0700) unless it exists, then opened without
    /// following a symlink and checked through the fd: a directory of `uid` that no one
    /// else may write to.
    fn private_subdir(&self, name: &str, uid: libc::uid_t) -> Result<Dir, AdapterError> {
        let path = self.path.join(name);
        let c_name = c_path(Path::new(name), &path)?;
        // SAFETY: self.fd is an open directory fd and c_name a NUL-terminated string that
        // outlives the call.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c_name.as_ptr(), 0o700) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(AdapterError::Io { path, source: e });
            }
        }
        let not_private = |why| AdapterError::NotPrivate {
            path: path.clone(),
            why,
        };
        let fd = match open_at(Some(self), Path::new(name), &path) {
            Ok(fd) => fd,
            Err(AdapterError::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) =>
            {
                return Err(not_private("a symlink or not a directory"))
            }
            Err(e) => return Err(e),
        };
        let dir = Dir {
            fd,
            path: path.clone(),
        };
        let st = dir.stat()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(not_private("not a directory"));
        }
        if st.st_uid != uid {
            return Err(not_private("owned by another user"));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(not_private("others may write to it"));
        }
        Ok(dir)
    }

    /// Replaces `name` in this directory with `contents`: written to a new temporary file
    /// (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600) and renamed over it, both relative to the fd.
    fn write_file(&self, name: &str, contents: &[u8]) -> Result<PathBuf, AdapterError> {
        let path = self.path.join(name);
        let tmp_name = format!(".{name}.{}.tmp", std::process::id());
        let tmp_path = self.path.join(&tmp_name);
        let c_tmp = c_path(Path::new(&tmp_name), &tmp_path)?;
        let c_name = c_path(Path::new(name), &path)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AdapterError::Io { path, source }
        };
        // A temporary file a killed kvmjs with this pid left behind; the directory is ours.
        // SAFETY: a valid directory fd and a NUL-terminated name that outlives the call.
        unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_tmp.as_ptr(), 0) };
        // SAFETY: as above; O_CREAT takes the mode as the variadic argument.
        let raw = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c_tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if raw < 0 {
            return Err(io(&tmp_path)(std::io::Error::last_os_error()));
        }
        // SAFETY: openat just returned this fd and nothing else owns it.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        let written = file.write_all(contents).map_err(io(&tmp_path));
        let renamed = written.and_then(|()| {
            let fd = self.fd.as_raw_fd();
            // SAFETY: a valid directory fd and NUL-terminated names that outlive the call.
            match unsafe { libc::renameat(fd, c_tmp.as_ptr(), fd, c_name.as_ptr()) } {
                0 => Ok(()),
                _ => Err(io(&path)(std::io::Error::last_os_error())),
            }
        });
        if renamed.is_err() {
            // SAFETY: valid directory fd and a NUL-terminated name that outlives the call.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_tmp.as_ptr(), 0) };
        }
        renamed.map(|()| path)
    }

    fn stat(&self) -> Result<libc::stat, AdapterError> {
        // SAFETY: stat is plain old data, for which all-zero bytes are a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: self.fd is open (an O_PATH fd suffices for fstat) and st is writable.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } != 0 {
            return Err(AdapterError::Io {
                path: self.path.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(st)
    }
}

/// Opens directory `name` relative to `at` (`/` when None) as an O_PATH fd, not following
/// a symlink; `path` names it in errors.
fn open_at(at: Option<&Dir>, name: &Path, path: &Path) -> Result<OwnedFd, AdapterError> {
    let c_name = c_path(name, path)?;
    let dirfd = at.map_or(libc::AT_FDCWD, |d| d.fd.as_raw_fd());
    // SAFETY: dirfd is AT_FDCWD or an open directory fd and c_name a NUL-terminated
    // string that outlives the call.
    let raw = unsafe {
        libc::openat(
            dirfd,
            c_name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(AdapterError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn c_path(name: &Path, path: &Path) -> Result<CString, AdapterError> {
    CString::new(name.as_os_str().as_bytes()).map_err(|_| AdapterError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte in the path"),
    })
}

/// A stable 64-bit hash (FNV-1a), naming the adapter file by its content.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A fresh directory under the temp dir (root's /tmp here), mode 0755.
    fn base(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kvmjs-adapter-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        chmod(&d, 0o755);
        d
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn uid() -> libc::uid_t {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// Gives `p` to another user (the tests run as root, as the KVM tests do).
    fn give_away(p: &Path) {
        std::os::unix::fs::chown(p, Some(uid() + 4242), None)
            .expect("chown to another user: run the tests as root");
    }

    #[test]
    fn adapter_is_written_privately_with_its_source() {
        let p = adapter_file().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), ADAPTER_SOURCE);
        let mode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        assert_eq!(adapter_file().unwrap(), p);
    }

    #[test]
    fn written_through_the_checked_directory_and_replaced_atomically() {
        let b = base("ok");
        let p = write_adapter(&b, uid(), "one").unwrap();
        let dir = b.canonicalize().unwrap().join(format!("kvmjs-{}", uid()));
        assert_eq!(p.parent(), Some(dir.as_path()));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one");
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.uid()), (0o700, uid()));
        // A stale temporary file of this pid is replaced; the same content keeps its name.
        let stale = dir.join(format!(
            ".{}.{}.tmp",
            p.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        std::fs::write(&stale, "stale").unwrap();
        assert_eq!(write_adapter(&b, uid(), "one").unwrap(), p);
        assert!(!stale.exists());
        let q = write_adapter(&b, uid(), "two").unwrap();
        assert_ne!(p, q);
        assert_eq!(std::fs::read_to_string(&q).unwrap(), "two");
        // A sticky, world-writable base (as /tmp) is fine.
        chmod(&b, 0o1777);
        write_adapter(&b, uid(), "one").unwrap();
        std::fs::remove_dir_all(&b).ok();
    }

    #[test]
    fn a_foreign_or_open_adapter_directory_is_refused() {
        let b = base("refused");
        let own = b.join(format!("kvmjs-{}", uid()));
        let elsewhere = b.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        // A symlink in place of kvmjs-<uid>, even to a directory of ours.
        std::os::unix::fs::symlink(&elsewhere, &own).unwrap();
        let e = write_adapter(&b, uid(), "x").unwrap_err().to_string();
        assert!(e.contains("is not a private directory (a symlink"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        std::fs::remove_file(&own).unwrap();
        // Writable by others; owned by another user.
        std::fs::create_dir(&own).unwrap();
        chmod(&own, 0o777);
        let e = write_adapter(&b, uid(), "x").unwrap_err().to_string();
        assert!(
            e.contains("(others may write to it)") && e.contains("set TMPDIR"),
            "{e}"
        );
        chmod(&own, 0o700);
        give_away(&own);
        let e = write_adapter(&b, uid(), "x").unwrap_err().to_string();
        assert!(e.contains("(owned by another user)"), "{e}");
        std::fs::remove_dir_all(&b).ok();
    }

    #[test]
    fn a_path_another_user_could_change_is_refused() {
        // $TMPDIR writable by others without the sticky bit: they could rename kvmjs-<uid>
        // away and put their own in its place after the check.
        let b = base("path");
        let tmpdir = b.join("tmp");
        std::fs::create_dir(&tmpdir).unwrap();
        chmod(&tmpdir, 0o777);
        let e = write_adapter(&tmpdir, uid(), "x").unwrap_err().to_string();
        assert!(
            e.contains("others may write to it and it is not sticky"),
            "{e}"
        );
        // An ancestor owned by another user could swap $TMPDIR itself.
        chmod(&tmpdir, 0o755);
        give_away(&b);
        let e = write_adapter(&tmpdir, uid(), "x").unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}: owned by another user", b.display())) && e.contains("TMPDIR"),
            "{e}"
        );
        // A symlinked TMPDIR is resolved first, then checked along its real path.
        std::os::unix::fs::chown(&b, Some(uid()), None).unwrap();
        let link = base("link");
        std::fs::remove_dir(&link).unwrap();
        std::os::unix::fs::symlink(&tmpdir, &link).unwrap();
        let p = write_adapter(&link, uid(), "x").unwrap();
        assert!(
            p.starts_with(tmpdir.canonicalize().unwrap()),
            "{}",
            p.display()
        );
        std::fs::remove_file(&link).ok();
        std::fs::remove_dir_all(&b).ok();
    }

    #[test]
    fn a_directory_swapped_after_the_check_does_not_redirect_the_write() {
        // The race the fds close: kvmjs-<uid> is checked, then replaced by a symlink to
        // another directory before the write. The write still lands in the checked one.
        let b = base("race").canonicalize().unwrap();
        let name = format!("kvmjs-{}", uid());
        let dir = Dir::open_trusted(&b, uid())
            .unwrap()
            .private_subdir(&name, uid())
            .unwrap();
        let (moved, attacker) = (b.join("moved"), b.join("attacker"));
        std::fs::rename(b.join(&name), &moved).unwrap();
        std::fs::create_dir(&attacker).unwrap();
        std::os::unix::fs::symlink(&attacker, b.join(&name)).unwrap();
        dir.write_file("a.js", b"checked").unwrap();
        assert_eq!(
            std::fs::read_to_string(moved.join("a.js")).unwrap(),
            "checked"
        );
        assert_eq!(std::fs::read_dir(&attacker).unwrap().count(), 0);
        std::fs::remove_dir_all(&b).ok();
    }
}
