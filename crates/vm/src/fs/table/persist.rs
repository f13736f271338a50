//! The descriptor table as plain data, for snapshot files (crate::persist).
//!
//! Only objects that hold no host resource and no state beyond their open description
//! can be written: the standard streams and the /dev character devices. Everything else
//! (sockets, eventfds, epoll instances, socketpairs, open host or /proc files, a scratch
//! tree with files in it) is refused by name: a file restored in another process could
//! not give the guest back what it had (a host fd, waiters, a connection).

use super::{FdTable, Slot};
use crate::fs::dev::{Device, Stdio};
use crate::fs::scratch::ScratchFs;
use crate::fs::{File, Kind, OpenFile};
use std::sync::Arc;

/// What a descriptor points at, as written to a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Object {
    Stdin,
    Stdout,
    Stderr,
    Null,
    Zero,
    Random,
}

/// One open file description: its object, offset and status flags.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Desc {
    object: Object,
    offset: u64,
    flags: u32,
}

/// The table: descriptions once each (so dup'ed descriptors share one again), and per
/// descriptor number the description's index and the close-on-exec flag.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PersistedFds {
    descs: Vec<Desc>,
    slots: Vec<Option<(u32, bool)>>,
    umask: u32,
    next_object: u64,
}

/// A descriptor (or the scratch tree) that cannot go into a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unpersistable {
    /// The descriptor number; `None` for the scratch tree and shared mappings.
    pub fd: Option<usize>,
    /// What it is, for the message ("an open socket").
    pub what: String,
}

/// Names an object the format does not hold, for the refusal message.
fn describe(f: &dyn File) -> String {
    let any = f.as_any();
    if any.is::<crate::net::eventfd::EventFd>() {
        return "an eventfd".into();
    }
    if any.is::<crate::net::epoll::Epoll>() {
        return "an epoll instance".into();
    }
    if any.is::<crate::net::pair::End>() {
        return "one end of a socketpair or pipe".into();
    }
    if any.is::<crate::fs::host::HostFile>() {
        return "an open host file or directory".into();
    }
    if any.is::<crate::fs::synth::SynthFile>() {
        return "an open /proc or /sys file".into();
    }
    match f.kind() {
        Kind::Socket => "an open socket".into(),
        Kind::Fifo => "a pipe".into(),
        Kind::Regular | Kind::Directory => "an open scratch file or directory".into(),
        Kind::CharDevice => "a character device".into(),
        Kind::Anon => "an anonymous kernel object".into(),
    }
}

fn object_of(f: &dyn File) -> Option<Object> {
    let any = f.as_any();
    if let Some(s) = any.downcast_ref::<Stdio>() {
        return Some(match s {
            Stdio::In => Object::Stdin,
            Stdio::Out => Object::Stdout,
            Stdio::Err => Object::Stderr,
        });
    }
    any.downcast_ref::<Device>().map(|d| match d {
        Device::Null => Object::Null,
        Device::Zero => Object::Zero,
        Device::Random => Object::Random,
    })
}

fn file_of(o: Object) -> Arc<dyn File> {
    match o {
        Object::Stdin => Arc::new(Stdio::In),
        Object::Stdout => Arc::new(Stdio::Out),
        Object::Stderr => Arc::new(Stdio::Err),
        Object::Null => Arc::new(Device::Null),
        Object::Zero => Arc::new(Device::Zero),
        Object::Random => Arc::new(Device::Random),
    }
}

impl FdTable {
    /// The table as plain data, or what in it cannot be written.
    pub(crate) fn to_persisted(&self) -> Result<PersistedFds, Unpersistable> {
        if !self.scratch.is_pristine() {
            return Err(Unpersistable {
                fd: None,
                what: "files or directories in the scratch filesystem (made before the snapshot)"
                    .into(),
            });
        }
        if !self.shared_maps.is_empty() {
            return Err(Unpersistable {
                fd: None,
                what: "MAP_SHARED mappings of scratch files".into(),
            });
        }
        let mut descs: Vec<Desc> = Vec::new();
        let mut seen: Vec<*const OpenFile> = Vec::new();
        let mut slots = Vec::with_capacity(self.slots.len());
        for (fd, s) in self.slots.iter().enumerate() {
            let Some(s) = s else {
                slots.push(None);
                continue;
            };
            let ptr = Arc::as_ptr(&s.desc);
            let idx = match seen.iter().position(|&p| p == ptr) {
                Some(i) => i,
                None => {
                    let object = object_of(s.desc.file.as_ref()).ok_or_else(|| Unpersistable {
                        fd: Some(fd),
                        what: describe(s.desc.file.as_ref()),
                    })?;
                    seen.push(ptr);
                    descs.push(Desc {
                        object,
                        offset: s.desc.offset(),
                        flags: s.desc.flags(),
                    });
                    descs.len() - 1
                }
            };
            slots.push(Some((idx as u32, s.cloexec)));
        }
        Ok(PersistedFds {
            descs,
            slots,
            umask: self.umask,
            next_object: self.next_object,
        })
    }

    /// The table back from plain data; `Err` names what is inconsistent (a corrupt
    /// file that passed its checksum, or a bug).
    pub(crate) fn from_persisted(p: PersistedFds) -> Result<FdTable, String> {
        let descs: Vec<Arc<OpenFile>> = p
            .descs
            .iter()
            .map(|d| {
                let desc = OpenFile::new(file_of(d.object), d.flags);
                desc.set_offset(d.offset);
                desc
            })
            .collect();
        if p.slots.len() > super::MAX_FDS {
            return Err(format!(
                "{} descriptor slots (at most {})",
                p.slots.len(),
                super::MAX_FDS
            ));
        }
        let slots = p
            .slots
            .iter()
            .map(|s| match s {
                None => Ok(None),
                Some((i, cloexec)) => descs
                    .get(*i as usize)
                    .map(|d| {
                        Some(Slot {
                            desc: d.clone(),
                            cloexec: *cloexec,
                        })
                    })
                    .ok_or_else(|| {
                        format!("descriptor points at description {i} of {}", descs.len())
                    }),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(FdTable {
            slots,
            scratch: ScratchFs::default(),
            umask: p.umask,
            shared_maps: Default::default(),
            next_object: p.next_object,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_and_devices_round_trip_with_sharing() {
        let mut t = FdTable::default();
        let null = OpenFile::new(Arc::new(Device::Null), crate::fs::flags::RDWR);
        null.set_offset(7);
        let a = t.insert(null, true).unwrap();
        let b = t.insert_from(10, t.file(a).unwrap(), false).unwrap();
        let p = t.to_persisted().unwrap();
        assert_eq!(p.descs.len(), 4, "fds {a} and {b} share one description");
        let back = FdTable::from_persisted(p.clone()).unwrap();
        assert!(Arc::ptr_eq(back.get(a).unwrap(), back.get(b).unwrap()));
        assert_eq!(back.get(b).unwrap().offset(), 7);
        assert!(back.cloexec(a).unwrap() && !back.cloexec(b).unwrap());
        assert_eq!(back.to_persisted().unwrap(), p);
    }

    #[test]
    fn a_used_scratch_tree_is_refused() {
        let mut t = FdTable::default();
        t.scratch.mkdir("/tmp", "/tmp/made-at-boot", 0o755).unwrap();
        let e = t.to_persisted().unwrap_err();
        assert_eq!(e.fd, None);
        assert!(e.what.contains("scratch filesystem"), "{}", e.what);
    }

    #[test]
    fn an_eventfd_is_refused_by_number() {
        let mut t = FdTable::default();
        let ev = crate::net::eventfd::EventFd::new(t.new_object_id(), 0, false);
        let fd = t.insert(OpenFile::new(Arc::new(ev), 0), false).unwrap();
        let e = t.to_persisted().unwrap_err();
        assert_eq!(e.fd, Some(fd as usize));
        assert_eq!(e.what, "an eventfd");
    }
}
