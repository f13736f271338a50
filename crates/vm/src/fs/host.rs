//! Read-only host files and directories under the allowed paths. Reads use `pread` at
//! the description's offset, so the host file itself holds no guest-visible state and is
//! shared by clones.

use super::{CloneMap, DirEntry, File, Kind, Stat, SysResult};
use std::any::Any;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

/// An open host file or directory.
#[derive(Debug)]
pub struct HostFile {
    file: Arc<std::fs::File>,
    path: String,
    /// A directory's entries, read at open (the guest's view does not change under it).
    entries: Option<Arc<Vec<DirEntry>>>,
}

impl HostFile {
    /// Opens canonical host path `real` read-only as guest path `vpath`. Only regular
    /// files and directories are served.
    pub fn open(real: &Path, vpath: &str) -> SysResult<HostFile> {
        // Non-blocking, so a FIFO under an allowed path cannot hang the VM's thread.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(real)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
        let meta = file.metadata().map_err(|_| libc::EIO)?;
        if !meta.is_file() && !meta.is_dir() {
            return Err(libc::EACCES);
        }
        let entries = if meta.is_dir() {
            Some(Arc::new(list_dir(real, &meta)?))
        } else {
            None
        };
        Ok(HostFile {
            file: Arc::new(file),
            path: vpath.to_string(),
            entries,
        })
    }
}

impl HostFile {
    /// A regular file kvmjs opened itself (crate::fastpath), shown as guest path `vpath`.
    pub fn provided(file: Arc<std::fs::File>, vpath: &str) -> HostFile {
        HostFile {
            file,
            path: vpath.to_string(),
            entries: None,
        }
    }
}

fn list_dir(real: &Path, meta: &std::fs::Metadata) -> SysResult<Vec<DirEntry>> {
    let mut out = vec![
        DirEntry {
            ino: meta.ino(),
            kind: libc::DT_DIR,
            name: ".".into(),
        },
        DirEntry {
            ino: 1,
            kind: libc::DT_DIR,
            name: "..".into(),
        },
    ];
    let rd = std::fs::read_dir(real).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let kind = if ft.is_dir() {
            libc::DT_DIR
        } else if ft.is_file() {
            libc::DT_REG
        } else if ft.is_symlink() {
            libc::DT_LNK
        } else if ft.is_fifo() {
            libc::DT_FIFO
        } else {
            libc::DT_UNKNOWN
        };
        out.push(DirEntry {
            ino: e.metadata().map(|m| m.ino()).unwrap_or(0),
            kind,
            name: e.file_name().to_string_lossy().into_owned(),
        });
    }
    Ok(out)
}

/// Facts of host metadata, with the write bits cleared (the guest cannot write).
pub fn stat_of(m: &std::fs::Metadata) -> Stat {
    Stat {
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode() & !0o222,
        nlink: m.nlink(),
        uid: 0,
        gid: 0,
        size: m.size(),
        blocks: m.blocks(),
        mtime: (m.mtime(), m.mtime_nsec()),
        rdev: 0,
    }
}

impl File for HostFile {
    fn kind(&self) -> Kind {
        if self.entries.is_some() {
            Kind::Directory
        } else {
            Kind::Regular
        }
    }

    fn read(&self, buf: &mut [u8], offset: u64, _nonblock: bool) -> SysResult<usize> {
        if self.entries.is_some() {
            return Err(libc::EISDIR);
        }
        self.file
            .read_at(buf, offset)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }

    fn write(&self, _buf: &[u8], _offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        Err(libc::EBADF)
    }

    fn stat(&self) -> SysResult<Stat> {
        self.file
            .metadata()
            .map(|m| stat_of(&m))
            .map_err(|_| libc::EIO)
    }

    fn entries(&self) -> SysResult<Vec<DirEntry>> {
        self.entries
            .as_ref()
            .map(|e| e.as_ref().clone())
            .ok_or(libc::ENOTDIR)
    }

    fn path(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn host_file(&self) -> Option<&Arc<std::fs::File>> {
        self.entries.is_none().then_some(&self.file)
    }

    fn deep_clone(&self, _: &mut CloneMap) -> Arc<dyn File> {
        Arc::new(HostFile {
            file: self.file.clone(),
            path: self.path.clone(),
            entries: self.entries.clone(),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_and_lists_directories() {
        let dir = std::env::temp_dir().join(format!("kvmjs-host-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        let f = HostFile::open(&dir.join("a.txt"), "/app/a.txt").unwrap();
        let mut b = [0u8; 8];
        assert_eq!(f.read(&mut b, 1, false), Ok(4));
        assert_eq!(&b[..4], b"ello");
        assert_eq!(f.stat().unwrap().mode & 0o222, 0);
        assert_eq!(f.entries(), Err(libc::ENOTDIR));
        assert!(f.host_file().is_some());
        let d = HostFile::open(&dir, "/app").unwrap();
        assert_eq!(d.kind(), Kind::Directory);
        assert_eq!(d.read(&mut b, 0, false), Err(libc::EISDIR));
        let mut names: Vec<String> = d.entries().unwrap().into_iter().map(|e| e.name).collect();
        names.sort();
        assert_eq!(names, [".", "..", "a.txt", "sub"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
