//! epoll over the readiness of in-VM objects. The interest list belongs to the epoll's
//! open file description, so an fd made by `F_DUPFD_CLOEXEC` or `dup` shares it (mio
//! registers on the duplicate and waits on the original). Entries are keyed by (fd,
//! description) like Linux and hold the description weakly: when the last fd of a
//! description closes, its entries go away.
//!
//! Level-triggered entries report while ready. Edge-triggered entries report when ready
//! and a counter of a direction they watch ([`Readiness::read_gen`] for EPOLLIN,
//! [`Readiness::write_gen`] for EPOLLOUT) moved since they last reported: each write to an
//! eventfd, each chunk of bytes into a socket is a new edge, as in Linux, and the peer
//! reading (room to write) is not an edge for an entry that only watches EPOLLIN.
//! EPOLLONESHOT disables an entry after one report until EPOLL_CTL_MOD.

use crate::fs::{events, lock, CloneMap, File, Kind, OpenFile, Readiness, Stat, SysResult};
use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

/// EPOLLET.
pub const EPOLLET: u32 = 1 << 31;
/// EPOLLONESHOT.
pub const EPOLLONESHOT: u32 = 1 << 30;
/// Most entries one instance holds. Entries are keyed by (fd, description) and outlive
/// the fd while the description is open (as on Linux), so without a cap a guest could
/// grow a list to every fd number times every description it keeps open, per instance,
/// in host memory (and every wait scans the list). Linux caps watches per user
/// (max_user_watches) with ENOSPC; no program kvmjs runs needs more than a few per fd.
pub const MAX_WATCHES: usize = 4 * crate::fs::MAX_FDS;
/// Bits that are not events.
const CONTROL: u32 = EPOLLET | EPOLLONESHOT | (1 << 29) | (1 << 28);

#[derive(Clone, Debug)]
struct Interest {
    fd: u64,
    target: Weak<OpenFile>,
    events: u32,
    data: u64,
    /// Counters when it last reported (edge-triggered).
    seen: Option<(u64, u64)>,
    /// A one-shot entry that fired.
    disabled: bool,
}

/// One ready event, as epoll_wait returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event bits.
    pub events: u32,
    /// The user data registered with it.
    pub data: u64,
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    id: u64,
    interest: Mutex<Vec<Interest>>,
}

/// An epoll_ctl operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// EPOLL_CTL_ADD.
    Add,
    /// EPOLL_CTL_DEL.
    Del,
    /// EPOLL_CTL_MOD.
    Mod,
}

impl Epoll {
    /// An empty instance with wait key `id`.
    pub fn new(id: u64) -> Epoll {
        Epoll {
            id,
            interest: Mutex::new(Vec::new()),
        }
    }

    /// epoll_ctl on `fd` (whose description is `target`).
    pub fn ctl(
        &self,
        op: Op,
        fd: u64,
        target: &Arc<OpenFile>,
        ev: u32,
        data: u64,
    ) -> SysResult<()> {
        if std::ptr::eq(
            Arc::as_ptr(&target.file).cast::<()>(),
            (self as *const Epoll).cast(),
        ) {
            return Err(libc::EINVAL);
        }
        if target.file.as_any().is::<Epoll>() {
            // Nested epoll sets are not supported (nothing kvmjs runs uses them; refusing
            // them also rules out loops).
            return Err(libc::EINVAL);
        }
        if !target.file.epollable() {
            return Err(libc::EPERM);
        }
        let mut list = lock(&self.interest);
        list.retain(|i| i.target.strong_count() > 0);
        let pos = list
            .iter()
            .position(|i| i.fd == fd && std::ptr::eq(i.target.as_ptr(), Arc::as_ptr(target)));
        match (op, pos) {
            (Op::Add, Some(_)) => Err(libc::EEXIST),
            (Op::Add, None) if list.len() >= MAX_WATCHES => Err(libc::ENOSPC),
            (Op::Add, None) => {
                list.push(Interest {
                    fd,
                    target: Arc::downgrade(target),
                    events: ev,
                    data,
                    seen: None,
                    disabled: false,
                });
                Ok(())
            }
            (Op::Mod, Some(p)) => {
                let i = &mut list[p];
                i.events = ev;
                i.data = data;
                i.seen = None;
                i.disabled = false;
                Ok(())
            }
            (Op::Del, Some(p)) => {
                list.remove(p);
                Ok(())
            }
            (_, None) => Err(libc::ENOENT),
        }
    }

    /// The events and user data `target` is registered with here (the first entry, if
    /// it is registered under several descriptors).
    pub fn registration(&self, target: &Arc<OpenFile>) -> Option<(u32, u64)> {
        lock(&self.interest)
            .iter()
            .find(|i| std::ptr::eq(i.target.as_ptr(), Arc::as_ptr(target)) && !i.disabled)
            .map(|i| (i.events, i.data))
    }

    /// Marks the entry of `fd` (description `target`) as a one-shot entry that fired: it
    /// reports nothing until EPOLL_CTL_MOD re-arms it.
    pub fn disable(&self, fd: u64, target: &Arc<OpenFile>) {
        for i in lock(&self.interest).iter_mut() {
            if i.fd == fd && std::ptr::eq(i.target.as_ptr(), Arc::as_ptr(target)) {
                i.disabled = true;
            }
        }
    }

    /// Takes up to `max` ready events (marking edge-triggered and one-shot entries).
    pub fn collect(&self, max: usize) -> Vec<Event> {
        let mut list = lock(&self.interest);
        list.retain(|i| i.target.strong_count() > 0);
        let mut out = Vec::new();
        let mut last = None;
        for (idx, i) in list.iter_mut().enumerate() {
            if out.len() >= max {
                break;
            }
            let Some(t) = i.target.upgrade() else {
                continue;
            };
            if i.disabled {
                continue;
            }
            let r = t.file.poll();
            let mask = r.mask & ((i.events & !CONTROL) | events::ERR | events::HUP);
            if mask == 0 {
                continue;
            }
            if i.events & EPOLLET != 0 {
                let watch = |bits: u32, gen: u64| if i.events & bits != 0 { gen } else { 0 };
                let now = (
                    watch(events::IN | events::PRI | events::RDHUP, r.read_gen),
                    watch(events::OUT, r.write_gen),
                );
                if i.seen == Some(now) {
                    continue;
                }
                i.seen = Some(now);
            }
            if i.events & EPOLLONESHOT != 0 {
                i.disabled = true;
            }
            out.push(Event {
                events: mask,
                data: i.data,
            });
            last = Some(idx);
        }
        // Like Linux's ready list: entries that reported go behind the others, so a small
        // maxevents does not starve the rest.
        if let (Some(l), true) = (last, out.len() >= max) {
            list.rotate_left(l + 1);
        }
        out
    }

    /// Wait keys of everything registered, and the instance's own key (epoll_ctl
    /// notifies it, so a waiter sees new entries).
    pub fn wait_keys(&self) -> Vec<u64> {
        let list = lock(&self.interest);
        let mut keys: Vec<u64> = list
            .iter()
            .filter_map(|i| i.target.upgrade().and_then(|t| t.file.wait_id()))
            .collect();
        keys.push(self.id);
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Number of entries whose description is still open.
    pub fn len(&self) -> usize {
        lock(&self.interest)
            .iter()
            .filter(|i| i.target.strong_count() > 0)
            .count()
    }

    /// Whether no live entry is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl File for Epoll {
    fn kind(&self) -> Kind {
        Kind::Anon
    }

    fn stat(&self) -> SysResult<Stat> {
        Ok(Stat::synthetic(Kind::Anon, 0o600, 0x4000 + self.id, 0))
    }

    fn poll(&self) -> Readiness {
        // Readable when a level-triggered look finds something (nothing is consumed).
        let list = lock(&self.interest);
        let ready = list.iter().any(|i| {
            !i.disabled
                && i.target.upgrade().is_some_and(|t| {
                    t.file.poll().mask & ((i.events & !CONTROL) | events::ERR | events::HUP) != 0
                })
        });
        Readiness {
            mask: if ready { events::IN } else { 0 },
            ..Readiness::default()
        }
    }

    fn epollable(&self) -> bool {
        false
    }

    fn wait_id(&self) -> Option<u64> {
        Some(self.id)
    }

    fn deep_clone(&self, map: &mut CloneMap) -> Arc<dyn File> {
        let list = lock(&self.interest);
        let interest = list
            .iter()
            .filter_map(|i| {
                let t = i.target.upgrade()?;
                let t2 = map.share(&t, |m| Arc::new(t.deep_clone(m)));
                Some(Interest {
                    target: Arc::downgrade(&t2),
                    ..i.clone()
                })
            })
            .collect();
        Arc::new(Epoll {
            id: self.id,
            interest: Mutex::new(interest),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{flags, FdTable};
    use crate::net::eventfd::EventFd;
    use crate::net::pair::{pair, Flavor};

    fn desc(f: impl File + 'static) -> Arc<OpenFile> {
        OpenFile::new(Arc::new(f), flags::RDWR | flags::NONBLOCK)
    }

    #[test]
    fn entries_are_capped() {
        let ep = Epoll::new(1);
        let target = desc(EventFd::new(2, 0, false));
        for fd in 0..MAX_WATCHES as u64 {
            ep.ctl(Op::Add, fd, &target, events::IN, fd).unwrap();
        }
        let other = desc(EventFd::new(3, 0, false));
        assert_eq!(ep.ctl(Op::Add, 0, &other, events::IN, 0), Err(libc::ENOSPC));
        // Existing entries still change, and room comes back when one goes.
        ep.ctl(Op::Mod, 5, &target, events::OUT, 0).unwrap();
        ep.ctl(Op::Del, 5, &target, 0, 0).unwrap();
        ep.ctl(Op::Add, 0, &other, events::IN, 0).unwrap();
    }

    #[test]
    fn level_and_edge_triggering() {
        let ep = Epoll::new(1);
        let lt = desc(EventFd::new(2, 0, false));
        let et = desc(EventFd::new(3, 0, false));
        ep.ctl(Op::Add, 4, &lt, events::IN, 40).unwrap();
        ep.ctl(Op::Add, 5, &et, events::IN | EPOLLET, 50).unwrap();
        assert!(ep.collect(8).is_empty());
        lt.write(&1u64.to_le_bytes(), None).unwrap();
        et.write(&1u64.to_le_bytes(), None).unwrap();
        let both = ep.collect(8);
        assert_eq!(both.len(), 2);
        // Level: again while readable. Edge: not until a new write.
        assert_eq!(
            ep.collect(8),
            vec![Event {
                events: events::IN,
                data: 40
            }]
        );
        et.write(&1u64.to_le_bytes(), None).unwrap();
        assert_eq!(ep.collect(8).len(), 2);
        let mut b = [0u8; 8];
        lt.read(&mut b, None).unwrap();
        assert!(ep.collect(8).is_empty());
    }

    #[test]
    fn edges_are_per_direction() {
        let ep = Epoll::new(1);
        let (a, b) = pair(2, Flavor::Socket);
        let (a, b) = (desc(a), desc(b));
        ep.ctl(Op::Add, 3, &a, events::IN | EPOLLET, 1).unwrap();
        ep.ctl(Op::Add, 4, &b, events::OUT | EPOLLET, 2).unwrap();
        assert_eq!(
            ep.collect(8),
            vec![Event {
                events: events::OUT,
                data: 2
            }]
        );
        b.write(b"xy", None).unwrap();
        assert_eq!(
            ep.collect(8),
            vec![Event {
                events: events::IN,
                data: 1
            }]
        );
        // `a` reads one byte: room for `b` (an OUT edge), but no new data for `a`.
        let mut one = [0u8; 1];
        a.read(&mut one, None).unwrap();
        assert_eq!(
            ep.collect(8),
            vec![Event {
                events: events::OUT,
                data: 2
            }]
        );
        assert!(ep.collect(8).is_empty());
    }

    #[test]
    fn ctl_errors_oneshot_and_close() {
        let ep = Arc::new(Epoll::new(1));
        let epd = OpenFile::new(ep.clone(), flags::RDWR);
        let (a, b) = pair(2, Flavor::Socket);
        let (a, b) = (desc(a), desc(b));
        assert_eq!(ep.ctl(Op::Add, 3, &epd, events::IN, 0), Err(libc::EINVAL));
        assert_eq!(ep.ctl(Op::Mod, 4, &a, events::IN, 0), Err(libc::ENOENT));
        ep.ctl(Op::Add, 4, &a, events::IN | EPOLLONESHOT, 7)
            .unwrap();
        assert_eq!(ep.ctl(Op::Add, 4, &a, events::IN, 0), Err(libc::EEXIST));
        b.write(b"x", None).unwrap();
        assert_eq!(ep.collect(8).len(), 1);
        assert!(ep.collect(8).is_empty(), "one-shot fired");
        ep.ctl(Op::Mod, 4, &a, events::IN, 8).unwrap();
        assert_eq!(ep.collect(8)[0].data, 8);
        drop(b);
        let ev = ep.collect(8);
        assert_eq!(
            ev[0].events & events::HUP,
            events::HUP,
            "peer closed: {ev:?}"
        );
        drop(a);
        assert!(ep.is_empty(), "closing the last fd removes the entry");
        let file = desc(crate::fs::dev::Device::Null);
        assert_eq!(ep.ctl(Op::Add, 9, &file, events::IN, 0), Err(libc::EPERM));
    }

    #[test]
    fn maxevents_rotates() {
        let ep = Epoll::new(1);
        let fds: Vec<_> = (0..3)
            .map(|i| desc(EventFd::new(10 + i, 1, false)))
            .collect();
        for (i, d) in fds.iter().enumerate() {
            ep.ctl(Op::Add, i as u64, d, events::IN, i as u64).unwrap();
        }
        assert_eq!(
            ep.collect(2).iter().map(|e| e.data).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(
            ep.collect(2).iter().map(|e| e.data).collect::<Vec<_>>(),
            [2, 0]
        );
    }

    #[test]
    fn dup_shares_interest_and_clone_keeps_it_wired() {
        let mut t = FdTable::default();
        let ep = t
            .insert(OpenFile::new(Arc::new(Epoll::new(1)), flags::RDWR), true)
            .unwrap();
        let dup = t.insert_from(0, t.file(ep).unwrap(), true).unwrap();
        let efd = t.insert(desc(EventFd::new(2, 0, false)), true).unwrap();
        let on = |t: &FdTable, fd| {
            t.get(fd)
                .unwrap()
                .file
                .as_any()
                .downcast_ref::<Epoll>()
                .map(|e| e as *const Epoll)
        };
        assert_eq!(on(&t, ep), on(&t, dup));
        let epoll = |t: &FdTable, fd| t.file(fd).unwrap();
        let d = epoll(&t, dup);
        let e = d.file.as_any().downcast_ref::<Epoll>().unwrap();
        e.ctl(Op::Add, efd, &t.file(efd).unwrap(), events::IN | EPOLLET, 5)
            .unwrap();
        // Snapshot, then the request writes the eventfd: only the live table sees it.
        let snap = t.clone();
        t.file(efd)
            .unwrap()
            .write(&1u64.to_le_bytes(), None)
            .unwrap();
        let live = epoll(&t, ep);
        assert_eq!(
            live.file
                .as_any()
                .downcast_ref::<Epoll>()
                .unwrap()
                .collect(4)
                .len(),
            1
        );
        let s = epoll(&snap, ep);
        let se = s.file.as_any().downcast_ref::<Epoll>().unwrap();
        assert!(se.collect(4).is_empty());
        // The snapshot's entry points at the snapshot's eventfd.
        snap.file(efd)
            .unwrap()
            .write(&1u64.to_le_bytes(), None)
            .unwrap();
        assert_eq!(
            se.collect(4),
            vec![Event {
                events: events::IN,
                data: 5
            }]
        );
    }
}
