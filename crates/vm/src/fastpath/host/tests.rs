//! The host's side of the fast page against a library simulated by writing the page.

use super::*;
use crate::config::ListenSpec;
use crate::fs::lock;
use crate::net::tcp::Conn;
use crate::syscalls::testing::Fixture;
use std::sync::Mutex;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

struct Setup {
    f: Fixture,
    fast: FastState,
    lfd: u64,
    epfd: u64,
    conn: SharedConn,
}

impl Setup {
    fn page(&self) -> Page {
        read_page(&self.f.mem, self.fast.addr).unwrap()
    }

    fn set(&mut self, change: impl FnOnce(&mut Page)) {
        let mut p = self.page();
        change(&mut p);
        self.f.mem.write(self.fast.addr, &p.to_bytes()).unwrap();
    }

    fn sync(&mut self, nr: Sysno, args: Args) -> Synced {
        self.fast
            .sync(&mut self.f.mem, &mut self.f.proc, nr.id() as u64, &args)
    }

    /// What the library does on accept4: the slot is open with deno's flags.
    fn accept(&mut self) -> u64 {
        self.set(|p| {
            p.slots[0].state = state::OPEN;
            p.slots[0].flags = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u32;
        });
        self.page().slots[0].fd as u64
    }

    /// What the library does on send: bytes into the tx area.
    fn send(&mut self, bytes: &[u8]) {
        let p = self.page();
        self.f
            .mem
            .write(p.tx_addr + u64::from(p.tx_len), bytes)
            .unwrap();
        self.set(|p| p.tx_len += bytes.len() as u32);
    }
}

/// A listener on 127.0.0.1:8000 registered (EPOLLIN|EPOLLET, data 77) in an epoll
/// instance, the library waiting there, and `REQUEST` handed over.
fn setup() -> Setup {
    let mut f = Fixture::new();
    let root = f.proc.mm.root(&mut f.mem).unwrap();
    f.mem.set_root(Some(root));
    f.cfg.listen = Some(ListenSpec {
        addr: "127.0.0.1:8000".parse().unwrap(),
    });
    let buf = f.call(Sysno::mmap, [0, 4096, 3, 0x22, u64::MAX, 0]) as u64;
    let lfd = f.call(Sysno::socket, [2, 1 | 0x800, 0, 0, 0, 0]) as u64;
    let mut sa = [0u8; 16];
    sa[0] = 2;
    sa[2..4].copy_from_slice(&8000u16.to_be_bytes());
    sa[4..8].copy_from_slice(&[127, 0, 0, 1]);
    f.mem.write(buf, &sa).unwrap();
    assert_eq!(f.call(Sysno::bind, [lfd, buf, 16, 0, 0, 0]), 0);
    assert_eq!(f.call(Sysno::listen, [lfd, 16, 0, 0, 0, 0]), 0);
    let epfd = f.call(Sysno::epoll_create1, [0; 6]) as u64;
    let mut ev = [0u8; 12];
    ev[..4].copy_from_slice(&(1u32 | 1 << 31).to_le_bytes());
    ev[4..].copy_from_slice(&77u64.to_le_bytes());
    f.mem.write(buf + 64, &ev).unwrap();
    assert_eq!(f.call(Sysno::epoll_ctl, [epfd, 1, lfd, buf + 64, 0, 0]), 0);
    let fast = FastState::map(&mut f.mem, &mut f.proc.mm).unwrap();
    let conn = Arc::new(Mutex::new(Conn::new(REQUEST.to_vec(), 49152)));
    let mut s = Setup {
        f,
        fast,
        lfd,
        epfd,
        conn,
    };
    s.set(|p| {
        p.lib_ready = 1;
        p.waiting_epfd = epfd as i32 + 1;
    });
    let conn = s.conn.clone();
    assert!(s.fast.place(
        &mut s.f.mem,
        &mut s.f.proc,
        lfd,
        &conn,
        REQUEST,
        epfd as i32 + 1
    ));
    s
}

#[test]
fn a_hand_over_fills_the_page_and_installs_the_socket() {
    let s = setup();
    let p = s.page();
    let slot = p.slots[0];
    assert_eq!(
        (slot.state, slot.rx_len),
        (state::PENDING, REQUEST.len() as u32)
    );
    assert_eq!(p.listen_fd as u64, s.lfd);
    assert_eq!(
        (p.listen_fast, p.listen_data, p.listen_events),
        (1, 77, 1 | 1 << 31)
    );
    assert_eq!(p.epolls[0].fd as u64, s.epfd);
    assert_eq!(p.listen_epoll, p.epolls[0].id);
    assert_eq!(p.current, 0);
    let mut rx = vec![0u8; REQUEST.len()];
    s.f.mem.read(p.rx_addr, &mut rx).unwrap();
    assert_eq!(rx, REQUEST);
    // The peer is the listener's loopback; the descriptor names the accepted socket.
    assert_eq!(&slot.peer[..8], &[2, 0, 0xc0, 0, 127, 0, 0, 1]);
    let d = s.f.proc.fds.get(slot.fd as u64).unwrap();
    assert!(d
        .file
        .as_any()
        .downcast_ref::<TcpSocket>()
        .unwrap()
        .conn()
        .is_some());
    // The listener itself has nothing queued: its readiness is the library's to report.
    let l = s.f.proc.fds.get(s.lfd).unwrap();
    assert_eq!(
        l.file
            .as_any()
            .downcast_ref::<TcpSocket>()
            .unwrap()
            .pending(),
        0
    );
}

#[test]
fn the_library_s_reads_writes_and_close_reach_the_host_s_connection() {
    let mut s = setup();
    let fd = s.accept();
    s.set(|p| p.slots[0].rx_pos = REQUEST.len() as u32);
    s.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
    assert_eq!(s.sync(Sysno::getppid, [0; 6]), Synced::Applied);
    {
        let c = lock(&s.conn);
        assert_eq!(c.unread(), 0);
        assert_eq!(
            c.response(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
        );
        assert!(!c.done_writing());
    }
    assert_eq!(s.page().tx_len, 0, "taken");
    let d = s.f.proc.fds.get(fd).unwrap();
    assert!(d.nonblocking(), "accept4's SOCK_NONBLOCK applied");
    assert_eq!(s.f.proc.fds.cloexec(fd), Ok(true));
    s.set(|p| p.slots[0].state = state::CLOSED);
    s.sync(Sysno::getppid, [0; 6]);
    assert!(s.f.proc.fds.get(fd).is_none(), "the descriptor is released");
    assert!(lock(&s.conn).guest_closed);
    assert_eq!(s.page().slots[0].state, state::FREE);
    assert_eq!(s.sync(Sysno::getppid, [0; 6]), Synced::Idle);
}

#[test]
fn counts_and_states_a_program_scribbled_are_clamped_or_taken_over() {
    let mut s = setup();
    s.accept();
    s.set(|p| {
        p.slots[0].rx_pos = u32::MAX;
        p.tx_len = u32::MAX;
    });
    s.sync(Sysno::getppid, [0; 6]);
    {
        let c = lock(&s.conn);
        assert_eq!(c.unread(), 0, "no more than the request is consumed");
        assert_eq!(
            c.response().len(),
            TX.1 as usize,
            "no more than the tx area is taken"
        );
    }
    s.set(|p| p.slots[0].state = 99);
    s.sync(Sysno::getppid, [0; 6]);
    assert_eq!(
        s.page().slots[0].state,
        state::HOST,
        "an unknown state: the host owns it"
    );
    assert_eq!(s.sync(Sysno::getppid, [0; 6]), Synced::Idle);
}

#[test]
fn a_call_naming_the_connection_takes_it_over_with_its_registration() {
    let mut s = setup();
    let fd = s.accept();
    let (id, epfd) = (s.page().epolls[0].id, s.epfd as i32);
    s.set(|p| {
        let sl = &mut p.slots[0];
        sl.reg_epoll = id;
        sl.reg_epfd = epfd;
        sl.reg_events = 1 | 4 | 1 << 31;
        sl.reg_data = 99;
        sl.nodelay = 1;
    });
    s.sync(Sysno::fcntl, [fd, 3, 0, 0, 0, 0]);
    assert_eq!(s.page().slots[0].state, state::HOST);
    let d = s.f.proc.fds.get(fd).unwrap().clone();
    let ep = s.f.proc.fds.get(s.epfd).unwrap().clone();
    let epoll = ep.file.as_any().downcast_ref::<Epoll>().unwrap();
    assert_eq!(epoll.registration(&d), Some((1 | 4 | 1 << 31, 99)));
    let sock = d.file.as_any().downcast_ref::<TcpSocket>().unwrap();
    assert_eq!(
        sock.option(libc::IPPROTO_TCP, libc::TCP_NODELAY),
        Some(1u32.to_le_bytes().to_vec())
    );
}

#[test]
fn an_accept_past_the_library_gets_the_connection_from_the_listener() {
    let mut s = setup();
    let fd = s.page().slots[0].fd as u64;
    s.sync(Sysno::accept4, [s.lfd, 0, 0, 0, 0, 0]);
    assert!(s.f.proc.fds.get(fd).is_none());
    assert_eq!(s.page().listen_fast, 0);
    let l = s.f.proc.fds.get(s.lfd).unwrap();
    assert_eq!(
        l.file
            .as_any()
            .downcast_ref::<TcpSocket>()
            .unwrap()
            .pending(),
        1
    );
    assert!(
        !lock(&s.conn).guest_closed,
        "the connection itself lives on"
    );
}

#[test]
fn no_hand_over_unless_the_library_waits_in_that_very_call() {
    let mut s = setup();
    let before = s.f.proc.fds.open_count();
    let conn = Arc::new(Mutex::new(Conn::new(REQUEST.to_vec(), 49153)));
    // The library waits on another descriptor.
    assert!(!s
        .fast
        .place(&mut s.f.mem, &mut s.f.proc, s.lfd, &conn, REQUEST, 99));
    // Too large for the rx area.
    let big = vec![b'x'; RX.1 as usize + 1];
    let expect = s.epfd as i32 + 1;
    assert!(!s
        .fast
        .place(&mut s.f.mem, &mut s.f.proc, s.lfd, &conn, &big, expect));
    // No library.
    s.set(|p| p.lib_ready = 0);
    assert!(!s
        .fast
        .place(&mut s.f.mem, &mut s.f.proc, s.lfd, &conn, REQUEST, expect));
    assert_eq!(s.f.proc.fds.open_count(), before);
    assert_eq!(lock(&conn).socket_id, None);
}

#[test]
fn touches_names_the_descriptor_where_each_call_takes_it() {
    let n = |s: Sysno| s.id() as u64;
    assert!(touches(n(Sysno::fcntl), &[21, 3, 0, 0, 0, 0], 21));
    assert!(!touches(n(Sysno::fcntl), &[20, 3, 0, 0, 0, 0], 21));
    assert!(touches(n(Sysno::epoll_ctl), &[5, 1, 21, 0, 0, 0], 21));
    assert!(!touches(n(Sysno::epoll_ctl), &[21, 1, 7, 0, 0, 0], 21));
    assert!(!touches(n(Sysno::epoll_wait), &[21, 0, 0, 0, 0, 0], 21));
    assert!(touches(n(Sysno::dup2), &[4, 21, 0, 0, 0, 0], 21));
    assert!(touches(n(Sysno::close_range), &[3, 100, 0, 0, 0, 0], 21));
    assert!(touches(n(Sysno::poll), &[0, 0, 0, 0, 0, 0], 21));
    assert!(touches(n(Sysno::mmap), &[0, 4096, 1, 1, 21, 0], 21));
    assert!(!touches(
        n(Sysno::mmap),
        &[21, 4096, 1, 0x22, u64::MAX, 0],
        21
    ));
    assert!(!touches(u64::MAX, &[u64::MAX; 6], 21));
    // A signal number, a clock id: no descriptor.
    assert!(!touches(n(Sysno::rt_sigaction), &[21, 0, 0, 8, 0, 0], 21));
    assert!(!touches(n(Sysno::clock_gettime), &[21, 0, 0, 0, 0, 0], 21));
}

#[test]
fn a_raw_wait_on_the_connection_s_instance_takes_it_over() {
    let mut s = setup();
    let fd = s.accept();
    let (id, epfd) = (s.page().epolls[0].id, s.epfd);
    s.set(|p| {
        let sl = &mut p.slots[0];
        sl.reg_epoll = id;
        sl.reg_epfd = epfd as i32;
        sl.reg_events = 1 | 1 << 31;
        sl.reg_data = 5;
    });
    // The library's own wait (it says so in the page): the library keeps it.
    s.set(|p| p.waiting_epfd = epfd as i32 + 1);
    s.sync(Sysno::epoll_wait, [epfd, 0, 8, 0, 0, 0]);
    assert_eq!(s.page().slots[0].state, state::OPEN);
    // A wait the library does not make would never see it: the host takes it over.
    s.set(|p| p.waiting_epfd = 0);
    s.sync(Sysno::epoll_pwait2, [epfd, 0, 8, 0, 0, 0]);
    assert_eq!(s.page().slots[0].state, state::HOST);
    let d = s.f.proc.fds.get(fd).unwrap().clone();
    let ep = s.f.proc.fds.get(epfd).unwrap().clone();
    let epoll = ep.file.as_any().downcast_ref::<Epoll>().unwrap();
    assert_eq!(epoll.registration(&d), Some((1 | 1 << 31, 5)));
}

#[test]
fn a_fired_one_shot_registration_stays_quiet_after_a_take_over() {
    let mut s = setup();
    let fd = s.accept();
    let (id, epfd) = (s.page().epolls[0].id, s.epfd as i32);
    s.set(|p| {
        let sl = &mut p.slots[0];
        sl.reg_epoll = id;
        sl.reg_epfd = epfd;
        // What the library leaves of EPOLLIN|EPOLLONESHOT once it reported it.
        sl.reg_events = 1 << 30;
    });
    s.sync(Sysno::fcntl, [fd, 3, 0, 0, 0, 0]);
    let d = s.f.proc.fds.get(fd).unwrap().clone();
    let ep = s.f.proc.fds.get(s.epfd).unwrap().clone();
    let epoll = ep.file.as_any().downcast_ref::<Epoll>().unwrap();
    assert_eq!(epoll.registration(&d), None, "disabled until re-armed");
    assert!(epoll.collect(8).is_empty());
}

#[test]
fn no_hand_over_in_a_wait_on_an_instance_without_the_listener() {
    let mut s = setup();
    // A second epoll instance, without the listener; the library waits there.
    let other = s.f.call(Sysno::epoll_create1, [0; 6]) as u64;
    s.set(|p| p.waiting_epfd = other as i32 + 1);
    let conn = Arc::new(Mutex::new(Conn::new(REQUEST.to_vec(), 49153)));
    let expect = other as i32 + 1;
    assert!(!s
        .fast
        .place(&mut s.f.mem, &mut s.f.proc, s.lfd, &conn, REQUEST, expect));
    // The library handing a response over, no other thread waiting: allowed.
    s.set(|p| p.waiting_epfd = kvmjs_abi::fast::FLUSHING);
    let flushing = kvmjs_abi::fast::FLUSHING;
    assert!(s
        .fast
        .place(&mut s.f.mem, &mut s.f.proc, s.lfd, &conn, REQUEST, flushing));
}
