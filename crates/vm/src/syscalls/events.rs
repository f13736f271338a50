//! Event plumbing: eventfd, epoll and poll over in-VM objects ([`crate::net`]). A wait
//! with nothing ready and a non-zero timeout blocks the calling thread on the wait keys of
//! what it watches ([`Flow::Block`]); the scheduler runs other threads, sleeps until the
//! timeout, or reports that every thread is blocked forever.
//!
//! A wait that is woken re-runs its handler; when the wake does not make anything ready the
//! handler blocks again with its full timeout (the timeout is relative and the handler
//! keeps no state between runs), so a wait can outlast its timeout when woken without
//! result — rare, since only a change of a watched object wakes it.

use super::e;
use super::files::{desc, neg};
use super::{errno, Args, Ctx, Entry, Flow};
use crate::fs::{events, flags, OpenFile};
use crate::net::epoll::{Epoll, Op};
use crate::net::eventfd::EventFd;
use crate::tasks::{Block, Resume, WaitKey};
use std::sync::Arc;
use std::time::{Duration, Instant};
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::eventfd, eventfd),
    e(Sysno::eventfd2, eventfd2),
    e(Sysno::epoll_create, epoll_create),
    e(Sysno::epoll_create1, epoll_create1),
    e(Sysno::epoll_ctl, epoll_ctl),
    e(Sysno::epoll_wait, epoll_wait),
    e(Sysno::epoll_pwait, epoll_wait),
    e(Sysno::epoll_pwait2, epoll_pwait2),
    e(Sysno::poll, poll),
    e(Sysno::ppoll, ppoll),
];

const CLOEXEC: u64 = 0o2000000;
const NONBLOCK: u64 = 0o4000;
const EFD_SEMAPHORE: u64 = 1;
/// Most events one epoll_wait returns (Linux caps maxevents near INT_MAX / 12).
const MAX_EVENTS: u64 = 4096;
/// Most pollfds one poll takes (RLIMIT_NOFILE).
const MAX_POLLFDS: u64 = crate::fs::MAX_FDS as u64;

/// How long a wait may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timeout {
    /// Do not wait.
    Zero,
    /// At most this long.
    For(Duration),
    /// Until something happens.
    Forever,
}

impl Timeout {
    /// From a millisecond argument (negative: forever).
    pub(super) fn from_ms(ms: u64) -> Timeout {
        match ms as i32 {
            0 => Timeout::Zero,
            n if n < 0 => Timeout::Forever,
            n => Timeout::For(Duration::from_millis(n as u64)),
        }
    }

    /// From a guest `struct timespec *` (NULL: forever).
    pub(super) fn from_timespec(ctx: &Ctx<'_>, ptr: u64) -> Result<Timeout, i32> {
        if ptr == 0 {
            return Ok(Timeout::Forever);
        }
        // One 16-byte read: `ptr + 8` would overflow (a panic in debug builds) for a
        // pointer at the top of the address space.
        let mut b = [0u8; 16];
        if ctx.mem.read(ptr, &mut b).is_err() {
            return Err(errno::EFAULT);
        }
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let (s, ns) = (word(0), word(8));
        if (s as i64) < 0 || ns >= 1_000_000_000 {
            return Err(errno::EINVAL);
        }
        Ok(match (s, ns) {
            (0, 0) => Timeout::Zero,
            _ => Timeout::For(Duration::new(s, ns as u32)),
        })
    }
}

/// The one "would block" decision for waits: with a zero timeout the call returns
/// `empty` now; otherwise the thread blocks on `keys` until one is notified (the handler
/// then runs again) or the timeout passes (the call returns `empty`).
pub(super) fn wait_or_return(keys: Vec<u64>, timeout: Timeout, empty: u64) -> Flow {
    let deadline = match timeout {
        Timeout::Zero => return Flow::ok(empty),
        // A guest timeout past what `Instant` holds (`Instant + d` panics) is no deadline:
        // only the run's own deadline ends the wait.
        Timeout::For(d) => Instant::now().checked_add(d),
        Timeout::Forever => None,
    };
    Flow::Block(Block {
        keys: keys.into_iter().map(WaitKey::File).collect(),
        deadline,
        on_wake: Resume::Retry,
        on_timeout: Resume::Return(empty),
    })
}

fn install(ctx: &mut Ctx<'_>, d: Arc<OpenFile>, cloexec: bool) -> Flow {
    ctx.proc.changed = true;
    match ctx.proc.fds.insert(d, cloexec) {
        Ok(fd) => Flow::ok(fd),
        Err(e) => neg(e),
    }
}

fn make_eventfd(ctx: &mut Ctx<'_>, init: u64, fl: u64) -> Flow {
    if fl & !(CLOEXEC | NONBLOCK | EFD_SEMAPHORE) != 0 {
        return neg(errno::EINVAL);
    }
    let id = ctx.proc.fds.new_object_id();
    let ev = EventFd::new(id, init as u32, fl & EFD_SEMAPHORE != 0);
    let st = flags::RDWR
        | if fl & NONBLOCK != 0 {
            flags::NONBLOCK
        } else {
            0
        };
    install(ctx, OpenFile::new(Arc::new(ev), st), fl & CLOEXEC != 0)
}

fn eventfd(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    make_eventfd(ctx, a[0], 0)
}

fn eventfd2(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    make_eventfd(ctx, a[0], a[1])
}

fn make_epoll(ctx: &mut Ctx<'_>, cloexec: bool) -> Flow {
    let id = ctx.proc.fds.new_object_id();
    install(
        ctx,
        OpenFile::new(Arc::new(Epoll::new(id)), flags::RDWR),
        cloexec,
    )
}

fn epoll_create(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if (a[0] as i32) <= 0 {
        return neg(errno::EINVAL);
    }
    make_epoll(ctx, false)
}

fn epoll_create1(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] & !CLOEXEC != 0 {
        return neg(errno::EINVAL);
    }
    make_epoll(ctx, a[0] & CLOEXEC != 0)
}

/// The epoll instance behind `fd`.
fn epoll_of(ctx: &Ctx<'_>, fd: u64) -> Result<Arc<OpenFile>, i32> {
    let d = desc(ctx, fd)?;
    if d.file.as_any().is::<Epoll>() {
        Ok(d)
    } else {
        Err(errno::EINVAL)
    }
}

fn as_epoll(d: &OpenFile) -> &Epoll {
    d.file
        .as_any()
        .downcast_ref::<Epoll>()
        .expect("checked by epoll_of")
}

fn epoll_ctl(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (epfd, op, fd, ev_ptr) = (a[0], a[1], a[2], a[3]);
    let ep = match epoll_of(ctx, epfd) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let target = match desc(ctx, fd) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let op = match op {
        1 => Op::Add,
        2 => Op::Del,
        3 => Op::Mod,
        _ => return neg(errno::EINVAL),
    };
    // struct epoll_event is packed on x86-64: u32 events, u64 data.
    let (ev, data) = if op == Op::Del {
        (0, 0)
    } else {
        let mut b = [0u8; 12];
        if ctx.mem.read(ev_ptr, &mut b).is_err() {
            return neg(errno::EFAULT);
        }
        let ev = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let data = u64::from_le_bytes(b[4..12].try_into().unwrap_or([0; 8]));
        (ev, data)
    };
    match as_epoll(&ep).ctl(op, fd, &target, ev, data) {
        Ok(()) => {
            // A waiter on this instance must look again (the new entry may be ready).
            super::files::notify(ctx, &ep);
            Flow::ok(0)
        }
        Err(e) => neg(e),
    }
}

fn do_epoll_wait(ctx: &mut Ctx<'_>, epfd: u64, out: u64, max: u64, timeout: Timeout) -> Flow {
    let ep = match epoll_of(ctx, epfd) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if (max as i32) <= 0 {
        return neg(errno::EINVAL);
    }
    let max = (max as i32 as u64).min(MAX_EVENTS);
    // Check the buffer before taking events: edge-triggered events are consumed.
    if ctx.mem.slice_mut(out, max * 12).is_err() {
        return neg(errno::EFAULT);
    }
    let epoll = as_epoll(&ep);
    let ready = epoll.collect(max as usize);
    if ready.is_empty() {
        return wait_or_return(epoll.wait_keys(), timeout, 0);
    }
    ctx.proc.changed = true;
    let mut buf = Vec::with_capacity(ready.len() * 12);
    for ev in &ready {
        buf.extend_from_slice(&ev.events.to_le_bytes());
        buf.extend_from_slice(&ev.data.to_le_bytes());
    }
    match ctx.mem.write(out, &buf) {
        Ok(()) => Flow::ok(ready.len() as u64),
        Err(_) => neg(errno::EFAULT),
    }
}

fn epoll_wait(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_epoll_wait(ctx, a[0], a[1], a[2], Timeout::from_ms(a[3]))
}

fn epoll_pwait2(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match Timeout::from_timespec(ctx, a[3]) {
        Ok(t) => do_epoll_wait(ctx, a[0], a[1], a[2], t),
        Err(e) => neg(e),
    }
}

fn do_poll(ctx: &mut Ctx<'_>, fds: u64, n: u64, timeout: Timeout) -> Flow {
    if n > MAX_POLLFDS {
        return neg(errno::EINVAL);
    }
    let mut raw = vec![0u8; (n * 8) as usize];
    if ctx.mem.read(fds, &mut raw).is_err() {
        return neg(errno::EFAULT);
    }
    let mut ready = 0;
    let mut keys = Vec::new();
    for c in raw.chunks_exact_mut(8) {
        let fd = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let want = u32::from(u16::from_le_bytes([c[4], c[5]]));
        let got = if fd < 0 {
            0
        } else {
            match ctx.proc.fds.get(fd as u64) {
                None => events::NVAL,
                Some(d) => {
                    if let Some(id) = d.file.wait_id() {
                        keys.push(id);
                    }
                    d.file.poll().mask & (want | events::ERR | events::HUP)
                }
            }
        };
        if got != 0 {
            ready += 1;
        }
        c[6..8].copy_from_slice(&(got as u16).to_le_bytes());
    }
    if ctx.mem.write(fds, &raw).is_err() {
        return neg(errno::EFAULT);
    }
    if ready > 0 {
        return Flow::ok(ready);
    }
    keys.sort_unstable();
    keys.dedup();
    wait_or_return(keys, timeout, 0)
}

fn poll(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_poll(ctx, a[0], a[1], Timeout::from_ms(a[2]))
}

fn ppoll(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match Timeout::from_timespec(ctx, a[2]) {
        Ok(t) => do_poll(ctx, a[0], a[1], t),
        Err(e) => neg(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::dispatch;
    use super::super::testing::Fixture;
    use super::*;

    const EPOLLIN: u64 = 1;
    const EPOLLET: u64 = 1 << 31;

    fn ctl(f: &mut Fixture, ep: u64, op: u64, fd: u64, ev: u64, data: u64) -> i64 {
        let mut b = (ev as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&data.to_le_bytes());
        f.mem.write(0x71_0000, &b).unwrap();
        f.call(Sysno::epoll_ctl, [ep, op, fd, 0x71_0000, 0, 0])
    }

    fn kick(f: &mut Fixture, fd: u64) {
        f.mem.write(0x72_0000, &1u64.to_le_bytes()).unwrap();
        assert_eq!(f.call(Sysno::write, [fd, 0x72_0000, 8, 0, 0, 0]), 8);
    }

    /// epoll_wait with timeout 0; the (events, data) pairs it returned.
    fn wait0(f: &mut Fixture, ep: u64) -> Vec<(u32, u64)> {
        let n = f.call(Sysno::epoll_wait, [ep, 0x73_0000, 16, 0, 0, 0]);
        assert!(n >= 0, "epoll_wait: {n}");
        let raw = f.mem.slice(0x73_0000, n as u64 * 12).unwrap().to_vec();
        raw.chunks(12)
            .map(|c| {
                let ev = u32::from_le_bytes(c[..4].try_into().unwrap());
                (ev, u64::from_le_bytes(c[4..].try_into().unwrap()))
            })
            .collect()
    }

    #[test]
    fn tokio_style_waker_on_a_duplicated_epoll_fd() {
        let mut f = Fixture::new();
        let ep = f.call(Sysno::epoll_create1, [CLOEXEC, 0, 0, 0, 0, 0]) as u64;
        let reg = f.call(Sysno::fcntl, [ep, libc::F_DUPFD_CLOEXEC as u64, 0, 0, 0, 0]) as u64;
        let efd = f.call(Sysno::eventfd2, [0, CLOEXEC | NONBLOCK, 0, 0, 0, 0]) as u64;
        // Registered through the duplicate, waited on through the original.
        assert_eq!(ctl(&mut f, reg, 1, efd, EPOLLIN | EPOLLET | 0x2000, 7), 0);
        assert_eq!(
            ctl(&mut f, reg, 1, efd, EPOLLIN, 7),
            -i64::from(libc::EEXIST)
        );
        assert!(wait0(&mut f, ep).is_empty());
        kick(&mut f, efd);
        kick(&mut f, efd);
        assert_eq!(wait0(&mut f, ep), vec![(1, 7)]);
        assert!(
            wait0(&mut f, ep).is_empty(),
            "edge-triggered: reported once"
        );
        kick(&mut f, efd);
        assert_eq!(wait0(&mut f, ep), vec![(1, 7)], "a new write is a new edge");
        // The eventfd holds 3; a non-blocking read takes it, the next is EAGAIN.
        assert_eq!(f.call(Sysno::read, [efd, 0x72_0000, 8, 0, 0, 0]), 8);
        assert_eq!(f.mem.read_u64(0x72_0000).unwrap(), 3);
        assert_eq!(
            f.call(Sysno::read, [efd, 0x72_0000, 8, 0, 0, 0]),
            -i64::from(libc::EAGAIN)
        );
        assert_eq!(ctl(&mut f, ep, 2, efd, 0, 0), 0);
        assert_eq!(ctl(&mut f, ep, 2, efd, 0, 0), -i64::from(libc::ENOENT));
        assert_eq!(
            ctl(&mut f, efd, 1, ep, EPOLLIN, 0),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            ctl(&mut f, ep, 9, efd, EPOLLIN, 0),
            -i64::from(libc::EINVAL)
        );
    }

    #[test]
    fn empty_waits_block_or_time_out() {
        let mut f = Fixture::new();
        let ep = f.call(Sysno::epoll_create1, [0; 6]) as u64;
        let efd = f.call(Sysno::eventfd2, [0, 0, 0, 0, 0, 0]) as u64;
        assert_eq!(ctl(&mut f, ep, 1, efd, EPOLLIN, 1), 0);
        let a = [ep, 0x73_0000, 4, 500, 0, 0];
        match dispatch(&mut f.ctx(), Sysno::epoll_wait.id() as u64, &a) {
            Flow::Block(b) => {
                assert!(b.keys.len() == 2 && b.deadline.is_some(), "{b:?}");
                assert_eq!(b.on_timeout, Resume::Return(0));
            }
            other => panic!("expected a block, got {other:?}"),
        }
        let a = [ep, 0x73_0000, 4, u64::MAX, 0, 0];
        match dispatch(&mut f.ctx(), Sysno::epoll_wait.id() as u64, &a) {
            Flow::Block(b) => assert_eq!(b.deadline, None),
            other => panic!("expected a block, got {other:?}"),
        }
        // A blocking eventfd read with nothing to read blocks too.
        match dispatch(
            &mut f.ctx(),
            Sysno::read.id() as u64,
            &[efd, 0x72_0000, 8, 0, 0, 0],
        ) {
            Flow::Block(b) => assert_eq!(b.keys.len(), 1),
            other => panic!("expected a block, got {other:?}"),
        }
        assert_eq!(
            f.call(Sysno::epoll_wait, [ep, 0x73_0000, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::epoll_wait, [ep, u64::MAX - 4, 4, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
        assert_eq!(
            f.call(Sysno::epoll_wait, [efd, 0x73_0000, 4, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
    }

    #[test]
    fn huge_and_edge_timespecs_neither_panic_nor_fault_wrongly() {
        let mut f = Fixture::new();
        // {i64::MAX s, 0 ns}: past what Instant holds; a wait with no deadline.
        f.mem.write(0x75_0000, &i64::MAX.to_le_bytes()).unwrap();
        f.mem.write(0x75_0008, &0u64.to_le_bytes()).unwrap();
        match dispatch(
            &mut f.ctx(),
            Sysno::ppoll.id() as u64,
            &[0x74_0000, 0, 0x75_0000, 0, 0, 0],
        ) {
            Flow::Block(b) => assert_eq!(b.deadline, None),
            other => panic!("expected a block, got {other:?}"),
        }
        // A timespec pointer at the very top of the address space is EFAULT.
        assert_eq!(
            f.call(Sysno::ppoll, [0x74_0000, 0, u64::MAX - 3, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
    }

    #[test]
    fn poll_reports_readiness() {
        let mut f = Fixture::new();
        let efd = f.call(Sysno::eventfd2, [0, NONBLOCK, 0, 0, 0, 0]) as u64;
        let mut pfds = Vec::new();
        for (fd, ev) in [(efd as i32, 1u16), (1, 4), (-1, 1), (77, 1)] {
            pfds.extend_from_slice(&fd.to_le_bytes());
            pfds.extend_from_slice(&ev.to_le_bytes());
            pfds.extend_from_slice(&0u16.to_le_bytes());
        }
        f.mem.write(0x74_0000, &pfds).unwrap();
        assert_eq!(f.call(Sysno::poll, [0x74_0000, 4, 0, 0, 0, 0]), 2);
        let rev = |f: &Fixture, i: u64| f.mem.read_u16(0x74_0000 + i * 8 + 6).unwrap();
        assert_eq!(
            (rev(&f, 0), rev(&f, 1), rev(&f, 2), rev(&f, 3)),
            (0, 4, 0, 0x20)
        );
        kick(&mut f, efd);
        assert_eq!(f.call(Sysno::poll, [0x74_0000, 1, 0, 0, 0, 0]), 1);
        assert_eq!(rev(&f, 0), 1);
        assert_eq!(
            f.call(Sysno::poll, [0x74_0000, 100_000, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
    }
}
