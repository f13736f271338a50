//! Virtual TCP sockets. Nothing here touches the host network: a listening socket's
//! connections are made by the host ([`Listener::connect`] through [`TcpSocket::push`]),
//! one per request, and carry the serialised HTTP request in and the guest's response out.
//!
//! One [`TcpSocket`] type covers a socket's life (socket → bind → listen, or an accepted
//! connection), because the object behind an fd never changes while `bind`/`listen` change
//! what it is. A connection's bytes live in a [`Conn`] shared (behind an `Arc`) by the
//! guest's socket and the host, which reads the response from it; it is part of the
//! process like everything else in [`crate::fs`], so a reset drops it.

use crate::fs::{events, lock, CloneMap, File, IoctlAnswer, Kind, Readiness, Stat, SysResult};
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Distinct socket options one socket remembers (Linux has about 60 per family).
pub const MAX_OPTIONS: usize = 32;

/// Most connections a listener queues (Linux's somaxconn default).
pub const MAX_BACKLOG: usize = 4096;

/// One connection's bytes: the request the host hands in, the response the guest writes.
#[derive(Clone, Debug, Default)]
pub struct Conn {
    request: Vec<u8>,
    read_pos: usize,
    response: Vec<u8>,
    /// The guest's port for this connection's peer (synthesised).
    pub peer_port: u16,
    /// The guest shut down its writing half (or closed).
    pub guest_shut_wr: bool,
    guest_shut_rd: bool,
    /// The guest closed its last descriptor of the connection.
    pub guest_closed: bool,
    /// The host has its response and is gone (as a client that sent `Connection: close`
    /// does): guest reads see EOF, writes EPIPE, so nothing accumulates after it.
    pub host_closed: bool,
    /// Wait key of the guest socket that accepted it (whom a host-side change wakes).
    pub socket_id: Option<u64>,
    read_gen: u64,
    write_gen: u64,
    /// Most response bytes kept: the host stops reading past what it would accept, so a
    /// guest's huge write cannot make it hold more (see [`Conn::limit_response`]).
    limit: Option<usize>,
}

impl Conn {
    /// A connection carrying `request`, from peer port `peer_port`.
    pub fn new(request: Vec<u8>, peer_port: u16) -> Conn {
        Conn {
            request,
            peer_port,
            read_gen: 1,
            write_gen: 1,
            ..Conn::default()
        }
    }

    /// Keeps at most `limit` response bytes: a write past it is short (the host, which
    /// set the limit above the largest response it accepts, fails the request then).
    pub fn limit_response(&mut self, limit: usize) {
        self.limit = Some(limit);
    }

    /// What the guest has written so far.
    pub fn response(&self) -> &[u8] {
        &self.response
    }

    /// Whether the guest will write no more (closed or shut down its writing half).
    pub fn done_writing(&self) -> bool {
        self.guest_closed || self.guest_shut_wr
    }

    /// The host is done with the connection (see `host_closed`): a readiness change for
    /// both directions.
    pub fn close_host_side(&mut self) {
        self.host_closed = true;
        // The host has taken the response and the guest can read no more: drop both
        // buffers, or a guest that keeps its accepted fds open (non-ephemeral) would pin
        // a request and a response of host memory per connection.
        self.request = Vec::new();
        self.read_pos = 0;
        self.response = Vec::new();
        self.read_gen += 1;
        self.write_gen += 1;
    }

    /// Request bytes not read yet.
    pub fn unread(&self) -> usize {
        self.request.len() - self.read_pos
    }
}

/// A connection shared by the guest's socket and the host.
pub type SharedConn = Arc<Mutex<Conn>>;

#[derive(Debug)]
enum State {
    /// Fresh from socket().
    Unbound,
    /// Bound to an address.
    Bound(SocketAddr),
    /// Listening: the queue of connections not accepted yet.
    Listening {
        addr: SocketAddr,
        queue: VecDeque<SharedConn>,
        backlog: usize,
        /// Bumped per connection queued (edge-triggered epoll).
        read_gen: u64,
    },
    /// An accepted connection.
    Connected { local: SocketAddr, conn: SharedConn },
}

/// A virtual TCP socket (AF_INET or AF_INET6, SOCK_STREAM).
#[derive(Debug)]
pub struct TcpSocket {
    id: u64,
    /// AF_INET or AF_INET6.
    family: u16,
    state: Mutex<State>,
    /// Options set with setsockopt, by (level, name): accepted and remembered.
    options: Mutex<BTreeMap<(i32, i32), Vec<u8>>>,
}

impl TcpSocket {
    /// A fresh socket of `family` with wait key `id`.
    pub fn new(id: u64, family: u16) -> TcpSocket {
        TcpSocket {
            id,
            family,
            state: Mutex::new(State::Unbound),
            options: Mutex::new(BTreeMap::new()),
        }
    }

    /// An accepted connection.
    fn connected(id: u64, family: u16, local: SocketAddr, conn: SharedConn) -> TcpSocket {
        TcpSocket {
            id,
            family,
            state: Mutex::new(State::Connected { local, conn }),
            options: Mutex::new(BTreeMap::new()),
        }
    }

    /// AF_INET or AF_INET6.
    pub fn family(&self) -> u16 {
        self.family
    }

    /// bind(2) to `addr` (the syscall layer checked it against the configuration).
    pub fn bind(&self, addr: SocketAddr) -> SysResult<()> {
        let mut s = lock(&self.state);
        match *s {
            State::Unbound => {
                *s = State::Bound(addr);
                Ok(())
            }
            _ => Err(libc::EINVAL),
        }
    }

    /// listen(2). Listening again only changes the backlog, as on Linux. Linux compares
    /// the backlog as unsigned, so a negative one means the maximum (somaxconn); 0 still
    /// queues one connection.
    pub fn listen(&self, backlog: i32) -> SysResult<()> {
        let backlog = usize::try_from(backlog as u32)
            .unwrap_or(MAX_BACKLOG)
            .clamp(1, MAX_BACKLOG);
        let mut s = lock(&self.state);
        match &mut *s {
            State::Bound(addr) => {
                *s = State::Listening {
                    addr: *addr,
                    queue: VecDeque::new(),
                    backlog,
                    read_gen: 0,
                };
                Ok(())
            }
            State::Listening { backlog: b, .. } => {
                *b = backlog;
                Ok(())
            }
            // Linux would autobind an unbound socket to a random port: refused, as every
            // address but the configured one is.
            State::Unbound => Err(libc::EACCES),
            State::Connected { .. } => Err(libc::EINVAL),
        }
    }

    /// The address it is bound to (listening or not).
    pub fn bound_to(&self) -> Option<SocketAddr> {
        match &*lock(&self.state) {
            State::Bound(a) | State::Listening { addr: a, .. } => Some(*a),
            _ => None,
        }
    }

    /// The address it listens on, if it is a listener.
    pub fn listening_on(&self) -> Option<SocketAddr> {
        match &*lock(&self.state) {
            State::Listening { addr, .. } => Some(*addr),
            _ => None,
        }
    }

    /// Connections waiting to be accepted (0 for a socket that does not listen).
    pub fn pending(&self) -> usize {
        match &*lock(&self.state) {
            State::Listening { queue, .. } => queue.len(),
            _ => 0,
        }
    }

    /// Queues a connection on a listener (the host's side of connect). ECONNREFUSED when
    /// it does not listen or its backlog is full.
    pub fn push(&self, conn: SharedConn) -> SysResult<()> {
        match &mut *lock(&self.state) {
            State::Listening {
                queue,
                backlog,
                read_gen,
                ..
            } if queue.len() < *backlog => {
                queue.push_back(conn);
                *read_gen += 1;
                Ok(())
            }
            _ => Err(libc::ECONNREFUSED),
        }
    }

    /// accept(2): the next queued connection as a new socket with wait key `id`, and the
    /// peer's address. EAGAIN when none is queued, EINVAL when it does not listen.
    pub fn accept(&self, id: u64) -> SysResult<(TcpSocket, SocketAddr)> {
        let mut s = lock(&self.state);
        let State::Listening { addr, queue, .. } = &mut *s else {
            return Err(libc::EINVAL);
        };
        let conn = queue.pop_front().ok_or(libc::EAGAIN)?;
        let peer = {
            let mut c = lock(&conn);
            c.socket_id = Some(id);
            peer_addr(*addr, c.peer_port)
        };
        Ok((TcpSocket::connected(id, self.family, *addr, conn), peer))
    }

    /// The fast path's accept (crate::fastpath): `conn` as an accepted socket of this
    /// listener with wait key `id`, and the peer's address, without queueing it first
    /// (a queued connection would make the listener ready in the host's epoll too).
    /// EINVAL when it does not listen.
    pub fn accept_conn(&self, id: u64, conn: SharedConn) -> SysResult<(TcpSocket, SocketAddr)> {
        let s = lock(&self.state);
        let State::Listening { addr, .. } = &*s else {
            return Err(libc::EINVAL);
        };
        let peer = {
            let mut c = lock(&conn);
            c.socket_id = Some(id);
            peer_addr(*addr, c.peer_port)
        };
        Ok((TcpSocket::connected(id, self.family, *addr, conn), peer))
    }

    /// Takes the connection out of an accepted socket the program never saw (the fast
    /// path's connection it did not accept): dropping the socket then does not end it.
    pub fn detach(&self) -> Option<SharedConn> {
        let mut s = lock(&self.state);
        match std::mem::replace(&mut *s, State::Unbound) {
            State::Connected { conn, .. } => Some(conn),
            other => {
                *s = other;
                None
            }
        }
    }

    /// getsockname: the bound address (unspecified, port 0 before bind).
    pub fn local_addr(&self) -> SocketAddr {
        match &*lock(&self.state) {
            State::Unbound => match self.family as i32 {
                libc::AF_INET6 => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
                _ => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            },
            State::Bound(a) | State::Listening { addr: a, .. } => *a,
            State::Connected { local, .. } => *local,
        }
    }

    /// getpeername: the synthesised peer of a connection; ENOTCONN otherwise.
    pub fn peer_addr(&self) -> SysResult<SocketAddr> {
        match &*lock(&self.state) {
            State::Connected { local, conn } => Ok(peer_addr(*local, lock(conn).peer_port)),
            _ => Err(libc::ENOTCONN),
        }
    }

    /// shutdown(2).
    pub fn shutdown(&self, how: u64) -> SysResult<()> {
        let s = lock(&self.state);
        let State::Connected { conn, .. } = &*s else {
            return Err(libc::ENOTCONN);
        };
        let mut c = lock(conn);
        match how {
            0 => c.guest_shut_rd = true,
            1 => c.guest_shut_wr = true,
            2 => {
                c.guest_shut_rd = true;
                c.guest_shut_wr = true;
            }
            _ => return Err(libc::EINVAL),
        }
        c.read_gen += 1;
        c.write_gen += 1;
        Ok(())
    }

    /// setsockopt: remembered (no option changes how an in-VM connection behaves), at
    /// most [`MAX_OPTIONS`] distinct ones per socket: the map is host memory the guest
    /// chooses the keys of, so without a cap a loop over option names grows it without
    /// bound (and every reset clones it). ENOMEM beyond, as for a full kernel buffer.
    pub fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), i32> {
        let mut opts = lock(&self.options);
        if opts.len() >= MAX_OPTIONS && !opts.contains_key(&(level, name)) {
            return Err(libc::ENOMEM);
        }
        opts.insert((level, name), value.to_vec());
        Ok(())
    }

    /// getsockopt of an option set before.
    pub fn option(&self, level: i32, name: i32) -> Option<Vec<u8>> {
        lock(&self.options).get(&(level, name)).cloned()
    }

    /// Whether it listens (SO_ACCEPTCONN).
    pub fn is_listening(&self) -> bool {
        self.listening_on().is_some()
    }

    /// The connection behind an accepted socket.
    pub fn conn(&self) -> Option<SharedConn> {
        match &*lock(&self.state) {
            State::Connected { conn, .. } => Some(conn.clone()),
            _ => None,
        }
    }
}

/// The peer of every connection: the loopback address of the listener's family (the
/// v4-mapped IPv4 loopback for an IPv6 socket bound to a v4-mapped address, as Linux
/// reports an IPv4 client there).
fn peer_addr(local: SocketAddr, port: u16) -> SocketAddr {
    match local {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), port))
        }
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    }
}

/// `addr` with a v4-mapped IPv6 address as the IPv4 address it stands for: an IPv6
/// socket bound to `::ffff:a.b.c.d` serves the IPv4 address (Linux), so that is what
/// is compared with the configured listen address.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, a.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        // The last descriptor closed: the host sees the connection end.
        if let State::Connected { conn, .. } = &*lock(&self.state) {
            let mut c = lock(conn);
            c.guest_closed = true;
            c.guest_shut_wr = true;
        }
    }
}

impl File for TcpSocket {
    fn kind(&self) -> Kind {
        Kind::Socket
    }

    fn read(&self, buf: &mut [u8], _offset: u64, _nonblock: bool) -> SysResult<usize> {
        let s = lock(&self.state);
        let State::Connected { conn, .. } = &*s else {
            return Err(libc::ENOTCONN);
        };
        let mut c = lock(conn);
        let left = c.unread();
        if left == 0 || c.host_closed {
            // The host never half-closes (a server that sees EOF may drop the request):
            // after the request there is nothing more, until the guest gives up reading.
            return if buf.is_empty() || c.guest_shut_rd || c.host_closed {
                Ok(0)
            } else {
                Err(libc::EAGAIN)
            };
        }
        let n = buf.len().min(left);
        let at = c.read_pos;
        buf[..n].copy_from_slice(&c.request[at..at + n]);
        c.read_pos += n;
        Ok(n)
    }

    fn write(&self, buf: &[u8], _offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        let s = lock(&self.state);
        let State::Connected { conn, .. } = &*s else {
            return Err(libc::ENOTCONN);
        };
        let mut c = lock(conn);
        if c.guest_shut_wr || c.host_closed {
            return Err(libc::EPIPE);
        }
        let room = c
            .limit
            .map_or(usize::MAX, |l| l.saturating_sub(c.response.len()));
        let n = buf.len().min(room);
        c.response.extend_from_slice(&buf[..n]);
        Ok((n, 0))
    }

    fn stat(&self) -> SysResult<Stat> {
        Ok(Stat::synthetic(Kind::Socket, 0o777, 0x8000 + self.id, 0))
    }

    fn poll(&self) -> Readiness {
        match &*lock(&self.state) {
            State::Listening {
                queue, read_gen, ..
            } => Readiness {
                mask: if queue.is_empty() { 0 } else { events::IN },
                read_gen: *read_gen,
                write_gen: 0,
            },
            State::Connected { conn, .. } => {
                let c = lock(conn);
                let mut mask = 0;
                if c.unread() > 0 || c.guest_shut_rd || c.host_closed {
                    mask |= events::IN;
                }
                if c.guest_shut_rd || c.host_closed {
                    mask |= events::RDHUP;
                }
                if !c.guest_shut_wr {
                    mask |= events::OUT;
                }
                if (c.guest_shut_rd && c.guest_shut_wr) || c.host_closed {
                    mask |= events::HUP;
                }
                Readiness {
                    mask,
                    read_gen: c.read_gen,
                    write_gen: c.write_gen,
                }
            }
            // Linux: a socket that is neither connected nor listening is writable and hung up.
            _ => Readiness {
                mask: events::OUT | events::HUP,
                ..Readiness::default()
            },
        }
    }

    fn ioctl(&self, request: u64) -> SysResult<IoctlAnswer> {
        match request {
            // FIONREAD
            0x541B => {
                Ok(IoctlAnswer::PutInt(self.conn().map_or(0, |c| {
                    i32::try_from(lock(&c).unread()).unwrap_or(i32::MAX)
                })))
            }
            // FIONBIO is handled by the fd layer; everything else is not a socket ioctl.
            _ => Err(libc::ENOTTY),
        }
    }

    fn wait_id(&self) -> Option<u64> {
        Some(self.id)
    }

    fn deep_clone(&self, map: &mut CloneMap) -> Arc<dyn File> {
        let state = match &*lock(&self.state) {
            State::Unbound => State::Unbound,
            State::Bound(a) => State::Bound(*a),
            State::Listening {
                addr,
                queue,
                backlog,
                read_gen,
            } => State::Listening {
                addr: *addr,
                queue: queue
                    .iter()
                    .map(|c| map.share(c, |_| Arc::new(Mutex::new(lock(c).clone()))))
                    .collect(),
                backlog: *backlog,
                read_gen: *read_gen,
            },
            State::Connected { local, conn } => State::Connected {
                local: *local,
                conn: map.share(conn, |_| Arc::new(Mutex::new(lock(conn).clone()))),
            },
        };
        Arc::new(TcpSocket {
            id: self.id,
            family: self.family,
            state: Mutex::new(state),
            options: Mutex::new(lock(&self.options).clone()),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn remembered_options_are_capped() {
        let s = TcpSocket::new(1, libc::AF_INET as u16);
        for name in 0..MAX_OPTIONS as i32 {
            s.set_option(libc::SOL_SOCKET, name, &[1; 256]).unwrap();
        }
        // A new name beyond the cap is refused; an existing one may still change.
        assert_eq!(
            s.set_option(libc::SOL_SOCKET, 10_000, &[1]),
            Err(libc::ENOMEM)
        );
        s.set_option(libc::SOL_SOCKET, 3, &[2]).unwrap();
        assert_eq!(s.option(libc::SOL_SOCKET, 3), Some(vec![2]));
    }

    use super::*;
    use crate::fs::{flags, FdTable, OpenFile};

    fn listener() -> TcpSocket {
        let s = TcpSocket::new(7, libc::AF_INET as u16);
        s.bind("127.0.0.1:8000".parse().unwrap()).unwrap();
        s.listen(128).unwrap();
        s
    }

    #[test]
    fn lifecycle_accept_read_write_close() {
        let l = listener();
        assert_eq!(l.poll().mask, 0);
        assert_eq!(l.accept(8).err(), Some(libc::EAGAIN));
        let conn = Arc::new(Mutex::new(Conn::new(
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            40000,
        )));
        let g0 = l.poll().read_gen;
        l.push(conn.clone()).unwrap();
        assert_eq!(l.poll().mask, events::IN);
        assert!(l.poll().read_gen > g0, "a queued connection is a new edge");
        let (c, peer) = l.accept(8).unwrap();
        assert_eq!(peer, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(c.peer_addr().unwrap(), peer);
        assert_eq!(c.local_addr(), "127.0.0.1:8000".parse().unwrap());
        assert_eq!(l.poll().mask, 0);
        assert_eq!(c.poll().mask, events::IN | events::OUT);
        let mut b = [0u8; 4];
        assert_eq!(c.read(&mut b, 0, true), Ok(4));
        assert_eq!(&b, b"GET ");
        let mut rest = [0u8; 64];
        assert_eq!(c.read(&mut rest, 0, true), Ok(14));
        assert_eq!(c.read(&mut rest, 0, true), Err(libc::EAGAIN));
        assert_eq!(c.poll().mask, events::OUT);
        assert_eq!(c.write(b"HTTP/1.1 200 OK\r\n", 0, false), Ok((17, 0)));
        c.shutdown(1).unwrap();
        assert_eq!(c.write(b"x", 0, false), Err(libc::EPIPE));
        assert!(lock(&conn).done_writing());
        assert!(!lock(&conn).guest_closed);
        drop(c);
        assert!(lock(&conn).guest_closed);
        assert_eq!(lock(&conn).response(), b"HTTP/1.1 200 OK\r\n");
        // The host gone: EOF and EPIPE.
        let c2 = Arc::new(Mutex::new(Conn::new(b"x".to_vec(), 1)));
        l.push(c2.clone()).unwrap();
        let (c, _) = l.accept(9).unwrap();
        lock(&c2).close_host_side();
        assert_eq!(c.read(&mut b, 0, true), Ok(0));
        assert_eq!(c.write(b"x", 0, false), Err(libc::EPIPE));
        assert_eq!(c.poll().mask & events::HUP, events::HUP);
    }

    #[test]
    fn state_errors_and_options() {
        let s = TcpSocket::new(1, libc::AF_INET6 as u16);
        assert_eq!(s.listen(1), Err(libc::EACCES));
        assert_eq!(s.peer_addr(), Err(libc::ENOTCONN));
        assert_eq!(s.read(&mut [0u8; 1], 0, true), Err(libc::ENOTCONN));
        assert_eq!(s.write(b"x", 0, false), Err(libc::ENOTCONN));
        assert_eq!(s.shutdown(1), Err(libc::ENOTCONN));
        assert_eq!(s.local_addr().port(), 0);
        assert!(s.push(Arc::default()).is_err());
        s.bind("[::1]:80".parse().unwrap()).unwrap();
        assert_eq!(s.bind("[::1]:81".parse().unwrap()), Err(libc::EINVAL));
        s.set_option(6, 1, &1i32.to_le_bytes()).unwrap();
        assert_eq!(s.option(6, 1), Some(1i32.to_le_bytes().to_vec()));
        assert_eq!(s.option(6, 2), None);
        s.listen(1).unwrap();
        s.push(Arc::default()).unwrap();
        assert_eq!(s.push(Arc::default()), Err(libc::ECONNREFUSED), "backlog 1");
    }

    #[test]
    fn backlog_as_linux_and_response_limit() {
        let l = TcpSocket::new(1, libc::AF_INET as u16);
        l.bind("127.0.0.1:8000".parse().unwrap()).unwrap();
        l.listen(-1).unwrap();
        for _ in 0..MAX_BACKLOG {
            l.push(Arc::default()).unwrap();
        }
        assert_eq!(l.push(Arc::default()), Err(libc::ECONNREFUSED));
        // Listening again with 0: one connection, as Linux queues with backlog 0.
        let l = TcpSocket::new(2, libc::AF_INET as u16);
        l.bind("127.0.0.1:8000".parse().unwrap()).unwrap();
        l.listen(0).unwrap();
        l.push(Arc::default()).unwrap();
        assert_eq!(l.push(Arc::default()), Err(libc::ECONNREFUSED));
        // The host keeps no more response than it asked for.
        let l = listener();
        let conn = Arc::new(Mutex::new(Conn::new(Vec::new(), 1)));
        lock(&conn).limit_response(10);
        l.push(conn.clone()).unwrap();
        let (c, _) = l.accept(9).unwrap();
        assert_eq!(c.write(&[b'x'; 8], 0, false), Ok((8, 0)));
        assert_eq!(c.write(&[b'x'; 1 << 20], 0, false), Ok((2, 0)));
        assert_eq!(lock(&conn).response().len(), 10);
    }

    #[test]
    fn v4_mapped_addresses() {
        let m: SocketAddr = "[::ffff:127.0.0.1]:8000".parse().unwrap();
        assert_eq!(canonical(m), "127.0.0.1:8000".parse().unwrap());
        let v6: SocketAddr = "[::1]:8000".parse().unwrap();
        assert_eq!(canonical(v6), v6);
        assert_eq!(peer_addr(m, 5), "[::ffff:127.0.0.1]:5".parse().unwrap());
        assert_eq!(peer_addr(v6, 5), "[::1]:5".parse().unwrap());
    }

    #[test]
    fn clone_is_deep_and_keeps_queue() {
        let mut t = FdTable::default();
        let l = listener();
        l.push(Arc::new(Mutex::new(Conn::new(b"abc".to_vec(), 1))))
            .unwrap();
        t.insert(OpenFile::new(Arc::new(l), flags::RDWR), false)
            .unwrap();
        let copy = t.clone();
        let orig = t
            .get(3)
            .unwrap()
            .file
            .as_any()
            .downcast_ref::<TcpSocket>()
            .unwrap();
        let (c, _) = orig.accept(9).unwrap();
        let mut b = [0u8; 3];
        c.read(&mut b, 0, true).unwrap();
        let other = copy
            .get(3)
            .unwrap()
            .file
            .as_any()
            .downcast_ref::<TcpSocket>()
            .unwrap();
        assert_eq!(other.pending(), 1, "the copy's queue is its own");
        let (c2, _) = other.accept(9).unwrap();
        assert_eq!(c2.read(&mut b, 0, true), Ok(3), "and so are its bytes");
    }
}
