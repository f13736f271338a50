//! The guest's file surface: descriptors, open file descriptions and the objects behind
//! them (host files, synthesized /proc and /sys files, devices, the scratch filesystem, and
//! the in-VM event objects of [`crate::net`]).
//!
//! # Shapes
//! - An fd is a slot in [`FdTable`]: an `Arc<`[`OpenFile`]`>` plus its close-on-exec flag.
//! - An [`OpenFile`] is Linux's *open file description*: the offset and status flags that
//!   `dup`, `dup2`, `F_DUPFD` and `fork` share, and the object (`Arc<dyn File>`).
//! - A [`File`] is the object: a host file, a scratch inode handle, an eventfd, one end of
//!   a socketpair, an epoll instance… Everything a syscall can do to it is a trait method
//!   whose default answers with the errno Linux gives for an object that cannot do it.
//!
//! # The reset rule
//! `Process` is cloned into the snapshot and back on every reset, so everything here that
//! a request can change must not be shared between the live process and the snapshot:
//! - [`FdTable`]'s `Clone` is a **deep clone that keeps aliasing**: every shared piece of
//!   state (an open file description, a scratch inode, a socketpair's buffers, an epoll
//!   interest list) is copied once per clone through a [`CloneMap`], so two fds that shared
//!   a description before share the (new) description after, and nothing is shared with
//!   the source. The scratch filesystem lives inside [`FdTable`] so one clone covers the
//!   tree and the open files pointing into it.
//! - Bulk data is copy-on-write: scratch file contents are `Arc` chunks
//!   ([`scratch`]), so a clone copies pointers, and a write copies only the chunk it
//!   touches. Host files are read-only (`pread`, the offset lives in the description), so
//!   the `std::fs::File` itself is shared.
//! - A new [`File`] type must implement [`File::deep_clone`] accordingly: immutable state
//!   may be shared by `Arc`, mutable state goes through [`CloneMap::share`].

pub mod dev;
pub mod host;
pub mod path;
pub mod scratch;
pub mod synth;
pub mod table;

pub use table::{CloneMap, FdTable, MAX_FDS};

use std::any::Any;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

/// A Linux errno value (positive).
pub type Errno = i32;

/// Result of a file operation: a value or a positive errno.
pub type SysResult<T> = Result<T, Errno>;

/// `poll`/`epoll` event bits (the same values in both).
pub mod events {
    /// Readable.
    pub const IN: u32 = 0x001;
    /// Urgent data.
    pub const PRI: u32 = 0x002;
    /// Writable.
    pub const OUT: u32 = 0x004;
    /// Error.
    pub const ERR: u32 = 0x008;
    /// Hang-up (the peer is gone).
    pub const HUP: u32 = 0x010;
    /// Invalid descriptor (poll only).
    pub const NVAL: u32 = 0x020;
    /// Peer closed its writing half.
    pub const RDHUP: u32 = 0x2000;
}

/// Open-file status flags kept in the description (`F_GETFL`/`F_SETFL`).
pub mod flags {
    /// Access mode mask.
    pub const ACCMODE: u32 = 0o3;
    /// Read only.
    pub const RDONLY: u32 = 0o0;
    /// Write only.
    pub const WRONLY: u32 = 0o1;
    /// Read and write.
    pub const RDWR: u32 = 0o2;
    /// Writes go to the end.
    pub const APPEND: u32 = 0o2000;
    /// Calls that would block fail with EAGAIN.
    pub const NONBLOCK: u32 = 0o4000;
    /// The flags F_SETFL may change.
    pub const SETTABLE: u32 = APPEND | NONBLOCK;
}

/// What kind of object a file is (for `st_mode` and the calls that only some kinds take).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A character device (stdio, /dev/null...).
    CharDevice,
    /// A pipe.
    Fifo,
    /// A socket.
    Socket,
    /// An anonymous inode (eventfd, epoll).
    Anon,
}

impl Kind {
    /// The `S_IF*` bits.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::Regular => libc::S_IFREG,
            Kind::Directory => libc::S_IFDIR,
            Kind::CharDevice => libc::S_IFCHR,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
            // Linux reports anon inodes with no type bits and mode 0600.
            Kind::Anon => 0,
        }
    }
}

/// File facts in the shape both stat and statx need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Links.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Device number of a device file.
    pub rdev: u64,
}

impl Stat {
    /// Facts for an object with no backing file: `kind` with permissions `perm`.
    pub fn synthetic(kind: Kind, perm: u32, ino: u64, size: u64) -> Stat {
        Stat {
            dev: SYNTH_DEV,
            ino,
            mode: kind.mode_bits() | perm,
            nlink: 1,
            size,
            blocks: size.div_ceil(512),
            ..Stat::default()
        }
    }
}

/// Device number reported for objects kvmjs makes up (like Linux's anon/proc devices).
pub const SYNTH_DEV: u64 = 0x16;

/// Current readiness of an object, and counters of the events that make it so: what
/// Linux's wake-ups are to edge-triggered epoll (an entry reports when a counter of a
/// direction it watches moved, as Linux wakes it only with a matching key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// [`events`] bits that are true now.
    pub mask: u32,
    /// Bumped by events on the reading side: data arrived, the peer closed or shut down.
    pub read_gen: u64,
    /// Bumped by events on the writing side: room was freed, the peer went away.
    pub write_gen: u64,
}

/// One directory entry, for getdents64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// `DT_*` type.
    pub kind: u8,
    /// Name (no slash).
    pub name: String,
}

/// An object an fd can refer to. Defaults answer as Linux does for an object that does not
/// support the call. `offset` is the description's offset for seekable objects and is
/// ignored by streams; `nonblock` is the description's O_NONBLOCK.
pub trait File: Debug + Send + Sync {
    /// What it is.
    fn kind(&self) -> Kind;

    /// Whether reads and writes use (and advance) the description's offset.
    fn seekable(&self) -> bool {
        matches!(self.kind(), Kind::Regular | Kind::Directory)
    }

    /// Reads into `buf`; `Err(EAGAIN)` when nothing is there yet.
    fn read(&self, _buf: &mut [u8], _offset: u64, _nonblock: bool) -> SysResult<usize> {
        Err(if self.kind() == Kind::Directory {
            libc::EISDIR
        } else {
            libc::EINVAL
        })
    }

    /// Writes `buf`; `append` asks for the end of the file. Returns bytes written and
    /// the offset after the write (seekable objects).
    fn write(&self, _buf: &[u8], _offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        Err(if self.kind() == Kind::Directory {
            libc::EISDIR
        } else {
            libc::EBADF
        })
    }

    /// Facts for fstat.
    fn stat(&self) -> SysResult<Stat>;

    /// Size for SEEK_END.
    fn size(&self) -> u64 {
        self.stat().map(|s| s.size).unwrap_or(0)
    }

    /// Readiness now. Objects that never block are always readable and writable.
    fn poll(&self) -> Readiness {
        Readiness {
            mask: events::IN | events::OUT,
            ..Readiness::default()
        }
    }

    /// Whether epoll accepts it (Linux: EPERM for regular files and directories).
    fn epollable(&self) -> bool {
        !matches!(self.kind(), Kind::Regular | Kind::Directory)
    }

    /// ioctl `request` (the syscall layer does the guest memory side).
    fn ioctl(&self, _request: u64) -> SysResult<IoctlAnswer> {
        Err(libc::ENOTTY)
    }

    /// ftruncate.
    fn truncate(&self, _len: u64) -> SysResult<()> {
        Err(libc::EINVAL)
    }

    /// The directory's entries (getdents64).
    fn entries(&self) -> SysResult<Vec<DirEntry>> {
        Err(libc::ENOTDIR)
    }

    /// The absolute guest path it was opened as (dirfd-relative lookups, readlink).
    fn path(&self) -> Option<&str> {
        None
    }

    /// The key blocked tasks wait on for this object (`WaitKey::File`), stable across
    /// clones; `None` for objects that never block. Whoever changes the object's state
    /// notifies this key.
    fn wait_id(&self) -> Option<u64> {
        None
    }

    /// Host file to map from, for file-backed mmap (read-only host files only).
    fn host_file(&self) -> Option<&Arc<std::fs::File>> {
        None
    }

    /// A copy for the snapshot that shares no mutable state with `self` (see the module
    /// docs); mutable state shared with other objects goes through `map`.
    fn deep_clone(&self, map: &mut CloneMap) -> Arc<dyn File>;

    /// For the calls that need the concrete type (epoll_ctl on an epoll, socket calls).
    fn as_any(&self) -> &dyn Any;
}

/// What an ioctl asks the syscall layer to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoctlAnswer {
    /// Return this value.
    Value(u64),
    /// Store this `int` at the argument pointer, return 0 (FIONREAD).
    PutInt(i32),
}

/// Linux's open file description: what dup'ed descriptors share.
#[derive(Debug)]
pub struct OpenFile {
    /// The object.
    pub file: Arc<dyn File>,
    state: Mutex<DescState>,
}

#[derive(Clone, Copy, Debug)]
struct DescState {
    offset: u64,
    flags: u32,
}

impl OpenFile {
    /// A description at offset 0 with status flags `flags` (access mode and
    /// [`flags::SETTABLE`] bits).
    pub fn new(file: Arc<dyn File>, flags: u32) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            file,
            state: Mutex::new(DescState {
                offset: 0,
                flags: flags & (flags::ACCMODE | flags::SETTABLE),
            }),
        })
    }

    /// Status flags.
    pub fn flags(&self) -> u32 {
        lock(&self.state).flags
    }

    /// Changes the settable status flags.
    pub fn set_flags(&self, f: u32) {
        let mut s = lock(&self.state);
        s.flags = (s.flags & !flags::SETTABLE) | (f & flags::SETTABLE);
    }

    /// Whether calls on it must not block.
    pub fn nonblocking(&self) -> bool {
        self.flags() & flags::NONBLOCK != 0
    }

    /// The offset.
    pub fn offset(&self) -> u64 {
        lock(&self.state).offset
    }

    /// Sets the offset.
    pub fn set_offset(&self, off: u64) {
        lock(&self.state).offset = off;
    }

    fn readable(&self) -> bool {
        self.flags() & flags::ACCMODE != flags::WRONLY
    }

    fn writable(&self) -> bool {
        matches!(self.flags() & flags::ACCMODE, flags::WRONLY | flags::RDWR)
    }

    /// read(2): at `at` (pread) or at and past the shared offset.
    pub fn read(&self, buf: &mut [u8], at: Option<u64>) -> SysResult<usize> {
        if !self.readable() {
            return Err(libc::EBADF);
        }
        if at.is_some() && !self.file.seekable() {
            return Err(libc::ESPIPE);
        }
        let nonblock = self.nonblocking();
        if !self.file.seekable() {
            return self.file.read(buf, 0, nonblock);
        }
        let off = at.unwrap_or_else(|| self.offset());
        let n = self.file.read(buf, off, nonblock)?;
        if at.is_none() {
            self.set_offset(off + n as u64);
        }
        Ok(n)
    }

    /// write(2): at `at` (pwrite) or at the shared offset (or the end with O_APPEND).
    pub fn write(&self, buf: &[u8], at: Option<u64>) -> SysResult<usize> {
        if !self.writable() {
            return Err(libc::EBADF);
        }
        if at.is_some() && !self.file.seekable() {
            return Err(libc::ESPIPE);
        }
        if !self.file.seekable() {
            return self.file.write(buf, 0, false).map(|(n, _)| n);
        }
        let append = at.is_none() && self.flags() & flags::APPEND != 0;
        let (n, end) = self
            .file
            .write(buf, at.unwrap_or_else(|| self.offset()), append)?;
        if at.is_none() {
            self.set_offset(end);
        }
        Ok(n)
    }

    /// A copy with its own state, through `map` (see the module docs).
    pub(crate) fn deep_clone(&self, map: &mut CloneMap) -> OpenFile {
        OpenFile {
            file: self.file.deep_clone(map),
            state: Mutex::new(*lock(&self.state)),
        }
    }
}

/// Locks `m`; a poisoned lock (a panic while held) still holds consistent plain data here.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `DT_*` value of a kind.
pub fn dirent_type(kind: Kind) -> u8 {
    match kind {
        Kind::Regular => libc::DT_REG,
        Kind::Directory => libc::DT_DIR,
        Kind::CharDevice => libc::DT_CHR,
        Kind::Fifo => libc::DT_FIFO,
        Kind::Socket => libc::DT_SOCK,
        Kind::Anon => libc::DT_UNKNOWN,
    }
}
