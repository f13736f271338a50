//! The descriptor table: slots pointing at shared open file descriptions, close-on-exec
//! flags, the dup family, and the aliasing-preserving deep clone the snapshot relies on.

use super::dev::Stdio;
use super::scratch::ScratchFs;
use super::{flags, OpenFile, SysResult};
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// Most open files a guest may hold.
pub const MAX_FDS: usize = 256;

#[derive(Debug)]
struct Slot {
    desc: Arc<OpenFile>,
    cloexec: bool,
}

/// The process's file state: the descriptor table and the scratch filesystem. They are one
/// struct so that one clone (snapshot, reset) copies the tree and the open files pointing
/// into it consistently.
#[derive(Debug)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
    /// The per-VM in-memory filesystem behind the configured scratch paths.
    pub scratch: ScratchFs,
    /// File-mode creation mask.
    pub umask: u32,
    /// MAP_SHARED mappings of scratch files ([`crate::mm::shared`]): here so the clone
    /// that copies the tree points them at the copied inodes.
    pub shared_maps: crate::mm::shared::Windows,
    /// Next id for an object tasks can wait on ([`super::File::wait_id`]).
    next_object: u64,
}

impl Default for FdTable {
    fn default() -> Self {
        let std = |s: Stdio, f: u32| {
            Some(Slot {
                desc: OpenFile::new(Arc::new(s), f),
                cloexec: false,
            })
        };
        FdTable {
            slots: vec![
                std(Stdio::In, flags::RDONLY),
                std(Stdio::Out, flags::WRONLY),
                std(Stdio::Err, flags::WRONLY),
            ],
            scratch: ScratchFs::default(),
            umask: 0o022,
            shared_maps: Default::default(),
            next_object: 1,
        }
    }
}

impl Clone for FdTable {
    /// Deep: shares no mutable state with `self`, keeps the sharing inside (module docs of
    /// [`crate::fs`]).
    fn clone(&self) -> Self {
        let mut map = CloneMap::default();
        let scratch = self.scratch.deep_clone(&mut map);
        let slots = self
            .slots
            .iter()
            .map(|s| {
                s.as_ref().map(|s| Slot {
                    desc: map.share(&s.desc, |m| Arc::new(s.desc.deep_clone(m))),
                    cloexec: s.cloexec,
                })
            })
            .collect();
        FdTable {
            slots,
            scratch,
            umask: self.umask,
            shared_maps: self.shared_maps.deep_clone(&mut map),
            next_object: self.next_object,
        }
    }
}

impl FdTable {
    /// The description behind `fd`.
    pub fn get(&self, fd: u64) -> Option<&Arc<OpenFile>> {
        let i = usize::try_from(fd).ok()?;
        self.slots.get(i)?.as_ref().map(|s| &s.desc)
    }

    /// The description behind `fd`, or EBADF.
    pub fn file(&self, fd: u64) -> SysResult<Arc<OpenFile>> {
        self.get(fd).cloned().ok_or(libc::EBADF)
    }

    /// A fresh id for an object tasks can wait on.
    pub fn new_object_id(&mut self) -> u64 {
        self.next_object += 1;
        self.next_object
    }

    /// Number of open descriptors.
    pub fn open_count(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Installs `desc` at the lowest free number >= `min`.
    pub fn insert_from(&mut self, min: u64, desc: Arc<OpenFile>, cloexec: bool) -> SysResult<u64> {
        let min = usize::try_from(min).map_err(|_| libc::EINVAL)?;
        if min >= MAX_FDS {
            return Err(libc::EINVAL);
        }
        let free = (min..MAX_FDS).find(|&i| self.slots.get(i).is_none_or(Option::is_none));
        let Some(i) = free else {
            return Err(libc::EMFILE);
        };
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(Slot { desc, cloexec });
        Ok(i as u64)
    }

    /// Installs `desc` at the lowest free number.
    pub fn insert(&mut self, desc: Arc<OpenFile>, cloexec: bool) -> SysResult<u64> {
        self.insert_from(0, desc, cloexec)
    }

    /// Closes `fd`.
    pub fn close(&mut self, fd: u64) -> SysResult<()> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(libc::EBADF)?;
        slot.take().map(|_| ()).ok_or(libc::EBADF)
    }

    /// dup2/dup3: makes `new` refer to `old`'s description (closing what `new` was).
    pub fn dup_to(&mut self, old: u64, new: u64, cloexec: bool) -> SysResult<u64> {
        let desc = self.file(old)?;
        let i = usize::try_from(new)
            .ok()
            .filter(|&i| i < MAX_FDS)
            .ok_or(libc::EBADF)?;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(Slot { desc, cloexec });
        Ok(new)
    }

    /// The close-on-exec flag of `fd`.
    pub fn cloexec(&self, fd: u64) -> SysResult<bool> {
        let i = usize::try_from(fd).map_err(|_| libc::EBADF)?;
        self.slots
            .get(i)
            .and_then(Option::as_ref)
            .map(|s| s.cloexec)
            .ok_or(libc::EBADF)
    }

    /// Sets the close-on-exec flag of `fd`.
    pub fn set_cloexec(&mut self, fd: u64, on: bool) -> SysResult<()> {
        let i = usize::try_from(fd).map_err(|_| libc::EBADF)?;
        match self.slots.get_mut(i).and_then(Option::as_mut) {
            Some(s) => {
                s.cloexec = on;
                Ok(())
            }
            None => Err(libc::EBADF),
        }
    }
}

// Snapshot files: the table as plain data (crate::persist).
mod persist;
pub(crate) use persist::PersistedFds;

/// Copies shared state once per deep clone, so what was shared stays shared among the
/// copies and nothing is shared with the originals. Keys are the originals' addresses,
/// which stay valid because the originals outlive the clone.
#[derive(Default)]
pub struct CloneMap {
    seen: HashMap<usize, Box<dyn Any>>,
}

impl CloneMap {
    /// The copy of `old`: made by `make` the first time, the same `Arc` afterwards.
    pub fn share<T: ?Sized + 'static>(
        &mut self,
        old: &Arc<T>,
        make: impl FnOnce(&mut CloneMap) -> Arc<T>,
    ) -> Arc<T> {
        let key = Arc::as_ptr(old).cast::<()>() as usize;
        if let Some(done) = self.seen.get(&key).and_then(|b| b.downcast_ref::<Arc<T>>()) {
            return done.clone();
        }
        let new = make(self);
        self.seen.insert(key, Box::new(new.clone()));
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::dev::Device;

    fn null() -> Arc<OpenFile> {
        OpenFile::new(Arc::new(Device::Null), flags::RDWR)
    }

    #[test]
    fn lowest_free_dup_and_cloexec() {
        let mut t = FdTable::default();
        assert_eq!(t.insert(null(), false), Ok(3));
        assert_eq!(t.insert(null(), true), Ok(4));
        assert_eq!(t.cloexec(4), Ok(true));
        assert_eq!(t.close(3), Ok(()));
        assert_eq!(t.close(3), Err(libc::EBADF));
        assert_eq!(t.insert_from(10, t.file(4).unwrap(), false), Ok(10));
        assert!(Arc::ptr_eq(t.get(10).unwrap(), t.get(4).unwrap()));
        assert_eq!(t.insert(null(), false), Ok(3));
        assert_eq!(t.dup_to(4, 200, true), Ok(200));
        assert_eq!(t.dup_to(4, MAX_FDS as u64, false), Err(libc::EBADF));
        assert_eq!(t.dup_to(77, 5, false), Err(libc::EBADF));
        assert_eq!(
            t.insert_from(MAX_FDS as u64, null(), false),
            Err(libc::EINVAL)
        );
        assert!(t.get(u64::MAX).is_none());
        t.set_cloexec(200, false).unwrap();
        assert_eq!(t.cloexec(200), Ok(false));
    }

    #[test]
    fn table_full_is_emfile() {
        let mut t = FdTable::default();
        for _ in 3..MAX_FDS {
            t.insert(null(), false).unwrap();
        }
        assert_eq!(t.insert(null(), false), Err(libc::EMFILE));
        assert_eq!(t.open_count(), MAX_FDS);
    }

    #[test]
    fn clone_keeps_sharing_inside_and_none_with_the_original() {
        let mut t = FdTable::default();
        let d = null();
        t.insert(d.clone(), false).unwrap(); // 3
        t.insert(d, false).unwrap(); // 4: same description
        t.insert(null(), false).unwrap(); // 5: another one
        let c = t.clone();
        assert!(Arc::ptr_eq(c.get(3).unwrap(), c.get(4).unwrap()));
        assert!(!Arc::ptr_eq(c.get(3).unwrap(), c.get(5).unwrap()));
        assert!(!Arc::ptr_eq(c.get(3).unwrap(), t.get(3).unwrap()));
        // Offsets are per copy.
        t.get(3).unwrap().set_offset(9);
        assert_eq!(c.get(4).unwrap().offset(), 0);
        assert_eq!(t.get(4).unwrap().offset(), 9);
    }
}
