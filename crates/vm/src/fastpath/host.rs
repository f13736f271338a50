//! The host's side of the fast page (module docs in `fastpath/mod.rs`): the hand-over of a
//! request, what the host applies at every exit, and taking a connection over.

use super::{read_page, REGION_BYTES, RX, TX};
use crate::fs::{flags, OpenFile, MAX_FDS};
use crate::memory::GuestMemory;
use crate::mm::vma::{Backing, Special, PROT_READ, PROT_WRITE};
use crate::mm::{AddressSpace, MmError};
use crate::net::epoll::{Epoll, Op, EPOLLET, EPOLLONESHOT};
use crate::net::tcp::{SharedConn, TcpSocket};
use crate::process::Process;
use crate::syscalls::Args;
use crate::tasks::WaitKey;
use kvmjs_abi::fast::{self as abi, shut, state, EpollEntry, Page, Slot, EPOLLS, NO_SLOT, SLOTS};
use std::sync::Arc;
use syscalls::Sysno;

/// The host's record of the fast page (part of [`Process`], so snapshots and resets carry
/// it with the descriptors it names). Plain data: descriptors are named by number and
/// checked by the socket's wait key, never held.
#[derive(Clone, Debug)]
pub struct FastState {
    /// Guest address of the page (the region's start).
    addr: u64,
    /// The listener of the last hand-over: descriptor and wait key.
    listener: Option<(u64, u64)>,
    slots: [Option<HostSlot>; SLOTS],
}

/// What the host knows of a slot it filled.
#[derive(Clone, Copy, Debug)]
struct HostSlot {
    fd: u64,
    /// Wait key of the accepted socket: the descriptor still names it.
    id: u64,
    rx_len: u32,
    /// Request bytes already taken out of the host's connection.
    rx_applied: u32,
    shut_applied: u32,
    /// The accept4 flags were applied.
    opened: bool,
}

/// What [`FastState::sync`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synced {
    /// No connection is in the page: nothing was read.
    Idle,
    /// The page was applied (a response may have become complete).
    Applied,
}

impl FastState {
    /// Maps the region (page + rx + tx) into a booting program and fills the page.
    pub fn map(mem: &mut GuestMemory, mm: &mut AddressSpace) -> Result<FastState, MmError> {
        let addr = mm
            .find_free(REGION_BYTES, crate::layout::PAGE_SIZE)
            .ok_or(MmError::NoMemory)?;
        let rw = PROT_READ | PROT_WRITE;
        mm.map_special(
            mem,
            addr,
            addr + REGION_BYTES,
            rw,
            Special::Fast,
            Backing::Anon,
        )?;
        let page = Page {
            pid: crate::process::PID,
            ..Page::new((addr + TX.0, TX.1), (addr + RX.0, RX.1))
        };
        mm.write_init(mem, addr, &page.to_bytes())?;
        Ok(FastState {
            addr,
            listener: None,
            slots: [None; SLOTS],
        })
    }

    /// The page's guest address (the auxiliary vector's [`abi::AT_FAST_PAGE`]).
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Applies what the library did since the last look, before call `nr(args)` runs (or
    /// before a hand-over: `nr` = `u64::MAX`): response bytes into the connection, request
    /// bytes read, shutdowns, closes; takes over a connection the call names.
    pub fn sync(
        &mut self,
        mem: &mut GuestMemory,
        proc: &mut Process,
        nr: u64,
        args: &Args,
    ) -> Synced {
        if self.slots.iter().all(Option::is_none) {
            return Synced::Idle;
        }
        let Some(mut page) = read_page(mem, self.addr) else {
            // The program unmapped the page: the host owns every connection again.
            self.slots = [None; SLOTS];
            return Synced::Applied;
        };
        let before = page;
        // The buffered response first: it precedes anything this call sends.
        if page.tx_len > 0 {
            let n = page.tx_len.min(TX.1) as usize;
            let cur = page.current as usize;
            if let Some(d) = self
                .slots
                .get(cur)
                .copied()
                .flatten()
                .and_then(|h| h.desc(proc))
            {
                let mut buf = vec![0u8; n];
                if mem.read(self.addr + TX.0, &mut buf).is_ok() {
                    // A short write is the connection's response limit: the framer fails
                    // the request on what it holds.
                    let _ = d.write(&buf, None);
                }
            }
            page.tx_len = 0;
        }
        // A wait the library does not make (a raw epoll_wait, epoll_pwait2) would miss the
        // library's registrations in that instance: the host takes those over first.
        let raw_wait = is_wait(nr) && i64::from(page.waiting_epfd) != args[0] as i64 + 1
            || nr == Sysno::epoll_pwait2.id() as u64;
        let raw_instance = raw_wait
            .then(|| proc.fds.get(args[0]).and_then(|e| e.file.wait_id()))
            .flatten();
        for i in 0..SLOTS {
            let Some(mut h) = self.slots[i] else {
                continue;
            };
            let ps = page.slots[i];
            let Some(d) = h.desc(proc) else {
                // Closed or replaced through the host: nothing of ours is left.
                self.slots[i] = None;
                page.slots[i] = free_slot();
                continue;
            };
            match ps.state {
                state::PENDING => {
                    let listener_named = self.listener.is_some_and(|(fd, _)| touches(nr, args, fd));
                    if listener_named {
                        // The program reaches the listener past the library (a raw
                        // accept): the connection goes back to the listener's queue.
                        self.requeue(proc, &h, &d);
                        page.listen_fast = 0;
                        page.slots[i] = free_slot();
                        self.slots[i] = None;
                    }
                }
                state::OPEN | state::CLOSED => {
                    h.apply(proc, &ps, &d);
                    if ps.state == state::CLOSED {
                        let _ = proc.fds.close(h.fd);
                        proc.changed = true;
                        page.slots[i] = free_slot();
                        self.slots[i] = None;
                    } else if touches(nr, args, h.fd)
                        || (ps.reg_epoll != 0 && raw_instance == Some(ps.reg_epoll))
                    {
                        take_over(proc, &h, &ps, &d);
                        page.slots[i].state = state::HOST;
                        self.slots[i] = None;
                    } else {
                        self.slots[i] = Some(h);
                    }
                }
                _ => {
                    // HOST, or a state the host never leaves: the host owns it.
                    take_over(proc, &h, &ps, &d);
                    page.slots[i].state = state::HOST;
                    self.slots[i] = None;
                }
            }
        }
        if page != before {
            let _ = mem.write(self.addr, &page.to_bytes());
        }
        Synced::Applied
    }

    /// Hands `conn` (carrying `request`) to a program stopped in the library's call that
    /// makes the page's `waiting_epfd` equal `expect` (its epoll_wait on descriptor `e`:
    /// `e + 1`; its hand-over of a response: [`abi::FLUSHING`]), through listener
    /// `listen_fd`. `false` when the page does not allow it (no library, not that call,
    /// too large, no free slot): nothing changed then, and the caller queues the connection
    /// on the listener (the plain path).
    pub fn place(
        &mut self,
        mem: &mut GuestMemory,
        proc: &mut Process,
        listen_fd: u64,
        conn: &SharedConn,
        request: &[u8],
        expect: i32,
    ) -> bool {
        self.sync(mem, proc, u64::MAX, &[u64::MAX; 6]);
        let Some(mut page) = read_page(mem, self.addr) else {
            return false;
        };
        let ready = page.magic == abi::MAGIC
            && page.version == abi::VERSION
            && page.lib_ready == 1
            && page.waiting_epfd == expect
            && expect != 0
            && request.len() <= RX.1 as usize;
        if !ready {
            return false;
        }
        // Everything that can refuse comes before anything changes.
        let Some(l) = proc.fds.get(listen_fd).cloned() else {
            return false;
        };
        let Some(lsock) = l.file.as_any().downcast_ref::<TcpSocket>() else {
            return false;
        };
        if proc.fds.open_count() >= MAX_FDS {
            return false;
        }
        let (epolls, reg) = epolls_of(proc, &l);
        let Some((_, _, listen_epoll)) = reg else {
            // The library can only report a listener registered in an epoll instance.
            return false;
        };
        let lkey = l.file.wait_id().map(WaitKey::File);
        let wakes_the_listener = if expect == abi::FLUSHING {
            // After a response: the next wait is this thread's, unless another thread
            // already waits on the listener (that one must see the connection).
            !lkey.is_some_and(|k| proc.tasks.any_blocked_on(&k))
        } else {
            // A wait on the instance the listener is registered in.
            let epfd = u64::try_from(expect - 1).unwrap_or(u64::MAX);
            proc.fds.get(epfd).and_then(|e| e.file.wait_id()) == Some(listen_epoll)
        };
        if !wakes_the_listener {
            return false;
        }
        // The rx area is reused: a connection with request bytes still unread is the
        // host's from now on.
        for i in 0..SLOTS {
            if let Some(h) = self.slots[i] {
                let ps = page.slots[i];
                if ps.state == state::OPEN && ps.rx_pos < h.rx_len {
                    if let Some(d) = h.desc(proc) {
                        take_over(proc, &h, &ps, &d);
                    }
                    page.slots[i].state = state::HOST;
                    self.slots[i] = None;
                }
            }
        }
        let free = (0..SLOTS).find(|&i| {
            self.slots[i].is_none() && matches!(page.slots[i].state, state::FREE | state::HOST)
        });
        let placed = free.and_then(|i| {
            let id = proc.fds.new_object_id();
            let (sock, peer) = lsock.accept_conn(id, conn.clone()).ok()?;
            let local = sock.local_addr();
            // As deno's accept4 asks (the library applies what the program really asked).
            let desc = OpenFile::new(Arc::new(sock), flags::RDWR | flags::NONBLOCK);
            let fd = proc.fds.insert(desc, true).ok()?;
            Some((i, id, fd, peer, local))
        });
        let Some((i, id, fd, peer, local)) = placed else {
            // The take-overs above stand: the library must see them.
            let _ = mem.write(self.addr, &page.to_bytes());
            return false;
        };
        proc.changed = true;
        page.epolls = epolls;
        (page.listen_events, page.listen_data, page.listen_epoll) = reg.unwrap_or_default();
        page.listen_fd = listen_fd as i32;
        page.listen_fast = 1;
        page.listen_nonblock = u32::from(l.nonblocking());
        page.listen_reported = 0;
        let mut s = Slot {
            fd: fd as i32,
            state: state::PENDING,
            rx_len: request.len() as u32,
            nodelay: abi::NODELAY_UNSET,
            ..Slot::default()
        };
        let (p, lo) = (
            crate::syscalls::encode_addr(peer),
            crate::syscalls::encode_addr(local),
        );
        s.peer[..p.len()].copy_from_slice(&p);
        s.peer_len = p.len() as u32;
        s.local[..lo.len()].copy_from_slice(&lo);
        s.local_len = lo.len() as u32;
        page.slots[i] = s;
        page.current = i as u32;
        page.tx_len = 0;
        if mem.write(self.addr + RX.0, request).is_err()
            || mem.write(self.addr, &page.to_bytes()).is_err()
        {
            // Unreachable unless the program unmapped the page: undo, plain path.
            if let Some(d) = proc.fds.get(fd).cloned() {
                if let Some(s) = d.file.as_any().downcast_ref::<TcpSocket>() {
                    s.detach();
                }
            }
            let _ = proc.fds.close(fd);
            return false;
        }
        self.listener = l.file.wait_id().map(|w| (listen_fd, w));
        self.slots[i] = Some(HostSlot {
            fd,
            id,
            rx_len: request.len() as u32,
            rx_applied: 0,
            shut_applied: 0,
            opened: false,
        });
        true
    }

    /// The plain path is handing a connection to the listener's queue: the library must
    /// not answer accepts on the listener from the page any more.
    pub fn plain_hand_over(&mut self, mem: &mut GuestMemory) {
        let Some(mut page) = read_page(mem, self.addr) else {
            return;
        };
        if page.listen_fast != 0 {
            page.listen_fast = 0;
            let _ = mem.write(self.addr, &page.to_bytes());
        }
    }

    /// The host is done with the connection of the current slot (its response is taken):
    /// reads past the request see EOF, as on the host's socket.
    pub fn peer_gone(&mut self, mem: &mut GuestMemory) {
        let Some(mut page) = read_page(mem, self.addr) else {
            return;
        };
        let cur = page.current as usize;
        if self.slots.get(cur).is_some_and(Option::is_some) {
            let s = &mut page.slots[cur];
            s.peer_gone = 1;
            s.edge = s.edge.wrapping_add(1);
        }
        page.current = NO_SLOT;
        let _ = mem.write(self.addr, &page.to_bytes());
    }

    /// Puts a connection the program never accepted back on the listener's queue.
    fn requeue(&self, proc: &mut Process, h: &HostSlot, d: &Arc<OpenFile>) {
        let conn = d
            .file
            .as_any()
            .downcast_ref::<TcpSocket>()
            .and_then(TcpSocket::detach);
        let _ = proc.fds.close(h.fd);
        proc.changed = true;
        let (Some(conn), Some((lfd, _))) = (conn, self.listener) else {
            return;
        };
        if let Some(l) = proc.fds.get(lfd).cloned() {
            if let Some(ls) = l.file.as_any().downcast_ref::<TcpSocket>() {
                if ls.push(conn).is_ok() {
                    if let Some(w) = l.file.wait_id() {
                        proc.tasks.notify(&WaitKey::File(w));
                    }
                }
            }
        }
    }
}

impl HostSlot {
    /// The slot's descriptor, if it still names the socket the host installed.
    fn desc(&self, proc: &Process) -> Option<Arc<OpenFile>> {
        proc.fds
            .get(self.fd)
            .filter(|d| d.file.wait_id() == Some(self.id))
            .cloned()
    }

    /// Brings the host's socket up to the library's view: accept flags, bytes read,
    /// shutdowns. Counts from the page are clamped to what the host handed in.
    fn apply(&mut self, proc: &mut Process, ps: &Slot, d: &Arc<OpenFile>) {
        if !self.opened {
            self.opened = true;
            let nb = if ps.flags & libc::SOCK_NONBLOCK as u32 != 0 {
                flags::NONBLOCK
            } else {
                0
            };
            d.set_flags(flags::RDWR | nb);
            let _ = proc
                .fds
                .set_cloexec(self.fd, ps.flags & libc::SOCK_CLOEXEC as u32 != 0);
        }
        let pos = ps.rx_pos.clamp(self.rx_applied, self.rx_len);
        if pos > self.rx_applied {
            let mut sink = vec![0u8; (pos - self.rx_applied) as usize];
            let _ = d.read(&mut sink, None);
            self.rx_applied = pos;
        }
        let new = ps.shut & (shut::RD | shut::WR) & !self.shut_applied;
        if new != 0 {
            if let Some(s) = d.file.as_any().downcast_ref::<TcpSocket>() {
                let how = match new {
                    shut::RD => 0,
                    shut::WR => 1,
                    _ => 2,
                };
                let _ = s.shutdown(how);
            }
            self.shut_applied |= new;
        }
    }
}

/// Gives the host's socket what only the library knew: its epoll registration and
/// TCP_NODELAY. From then on the library leaves the descriptor alone.
fn take_over(proc: &mut Process, h: &HostSlot, ps: &Slot, d: &Arc<OpenFile>) {
    if ps.reg_epoll != 0 {
        let ep = (0..MAX_FDS as u64).find_map(|fd| {
            let e = proc.fds.get(fd)?;
            (e.file.as_any().is::<Epoll>() && e.file.wait_id() == Some(ps.reg_epoll))
                .then(|| e.clone())
        });
        if let Some(ep) = ep {
            if let Some(epoll) = ep.file.as_any().downcast_ref::<Epoll>() {
                // A fresh registration reports the current readiness once, as Linux does
                // after EPOLL_CTL_MOD: at worst one event the library already reported.
                if epoll
                    .ctl(Op::Add, h.fd, d, ps.reg_events, ps.reg_data)
                    .is_ok()
                {
                    // A one-shot entry the library already reported (no event bits left)
                    // stays quiet until the program re-arms it.
                    let fired = ps.reg_events & EPOLLONESHOT != 0
                        && ps.reg_events & !(EPOLLONESHOT | EPOLLET | (1 << 29) | (1 << 28)) == 0;
                    if fired {
                        epoll.disable(h.fd, d);
                    }
                    if let Some(w) = ep.file.wait_id() {
                        proc.tasks.notify(&WaitKey::File(w));
                    }
                }
            }
        }
    }
    if ps.nodelay != abi::NODELAY_UNSET {
        if let Some(s) = d.file.as_any().downcast_ref::<TcpSocket>() {
            let v = u32::from(ps.nodelay != 0).to_le_bytes();
            let _ = s.set_option(libc::IPPROTO_TCP, libc::TCP_NODELAY, &v);
        }
    }
}

/// The program's epoll instances (the first [`EPOLLS`] descriptors), and the listener's
/// registration (events, data, instance) in one of them.
fn epolls_of(
    proc: &Process,
    listener: &Arc<OpenFile>,
) -> ([EpollEntry; EPOLLS], Option<(u32, u64, u64)>) {
    let mut out = [EpollEntry {
        fd: -1,
        pad: 0,
        id: 0,
    }; EPOLLS];
    let mut reg = None;
    let mut n = 0;
    for fd in 0..MAX_FDS as u64 {
        let Some(e) = proc.fds.get(fd) else {
            continue;
        };
        let (Some(ep), Some(id)) = (e.file.as_any().downcast_ref::<Epoll>(), e.file.wait_id())
        else {
            continue;
        };
        if reg.is_none() {
            reg = ep.registration(listener).map(|(ev, data)| (ev, data, id));
        }
        if n < EPOLLS {
            out[n] = EpollEntry {
                fd: fd as i32,
                pad: 0,
                id,
            };
            n += 1;
        }
    }
    (out, reg)
}

fn free_slot() -> Slot {
    Slot {
        fd: -1,
        ..Slot::default()
    }
}

/// The epoll waits: the library's own (it adds its events to what they return) or raw.
fn is_wait(nr: u64) -> bool {
    [Sysno::epoll_wait, Sysno::epoll_pwait, Sysno::epoll_pwait2]
        .into_iter()
        .any(|s| s.id() as u64 == nr)
}

/// Calls whose first argument is not a descriptor (a flag, an id, an address) among those
/// servers make often: they name no connection.
const NO_FD_FIRST: &[Sysno] = &[
    Sysno::rt_sigaction,
    Sysno::rt_sigprocmask,
    Sysno::rt_sigreturn,
    Sysno::sigaltstack,
    Sysno::clock_gettime,
    Sysno::clock_getres,
    Sysno::clock_nanosleep,
    Sysno::nanosleep,
    Sysno::kill,
    Sysno::tkill,
    Sysno::tgkill,
    Sysno::prctl,
    Sysno::arch_prctl,
    Sysno::exit,
    Sysno::exit_group,
    Sysno::futex,
    Sysno::munmap,
    Sysno::mprotect,
    Sysno::madvise,
    Sysno::mremap,
    Sysno::brk,
    Sysno::socket,
    Sysno::eventfd2,
    Sysno::epoll_create1,
    Sysno::timerfd_create,
    Sysno::getrandom,
    Sysno::sched_yield,
    Sysno::sched_getaffinity,
    Sysno::prlimit64,
    Sysno::set_robust_list,
    Sysno::rseq,
    Sysno::getpid,
    Sysno::getppid,
    Sysno::gettid,
    Sysno::uname,
];

/// Whether call `nr(args)` names descriptor `fd` (then the host must own it before the call
/// runs). Errs on the side of yes: a take-over is always correct, only slower. Waits are
/// handled apart (`is_wait`).
fn touches(nr: u64, a: &Args, fd: u64) -> bool {
    let is = |s: Sysno| s.id() as u64 == nr;
    if is_wait(nr) || NO_FD_FIRST.iter().copied().any(is) {
        return false;
    }
    if is(Sysno::epoll_ctl) {
        return a[2] == fd;
    }
    if is(Sysno::dup2) || is(Sysno::dup3) {
        return a[0] == fd || a[1] == fd;
    }
    if is(Sysno::close_range) {
        return (a[0]..=a[1]).contains(&fd);
    }
    if is(Sysno::mmap) {
        return a[4] == fd;
    }
    if [
        Sysno::poll,
        Sysno::ppoll,
        Sysno::select,
        Sysno::pselect6,
        Sysno::io_uring_enter,
    ]
    .into_iter()
    .any(is)
    {
        return true;
    }
    if [
        Sysno::sendfile,
        Sysno::splice,
        Sysno::copy_file_range,
        Sysno::tee,
    ]
    .into_iter()
    .any(is)
    {
        return a[0] == fd || a[1] == fd || a[2] == fd;
    }
    a[0] == fd
}

#[cfg(test)]
mod tests;
