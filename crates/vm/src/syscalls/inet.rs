//! Virtual TCP sockets ([`crate::net::tcp`]): bind (only to the configured listen
//! address), listen, accept/accept4, connect (refused), and the TCP side of socket
//! options and names. Reads, writes, send/recv and shutdown go through the generic paths
//! in files.rs and sockets.rs.

use super::e;
use super::files::{desc, neg, notify, would_block};
use super::{errno, Args, Ctx, Entry, Flow};
use crate::fs::{flags, OpenFile, MAX_FDS};
use crate::net::tcp::{canonical, TcpSocket};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use syscalls::Sysno;

/// Whether a refused bind or connect was logged at warn level yet (process-wide): a guest
/// looping over connect() must not fill the host's log, so later ones go to debug.
static WARNED_REFUSAL: AtomicBool = AtomicBool::new(false);

/// Logs a refused bind/connect: the first at warn level, the rest at debug.
fn log_refusal(program: &str, what: std::fmt::Arguments<'_>) {
    if !WARNED_REFUSAL.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            program,
            "{what} (further refusals are logged at debug level)"
        );
    } else {
        tracing::debug!(program, "{what}");
    }
}

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::bind, bind),
    e(Sysno::listen, listen),
    e(Sysno::accept, accept),
    e(Sysno::accept4, accept4),
    e(Sysno::connect, connect),
];

const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;

/// socket(AF_INET/AF_INET6, SOCK_STREAM…): a virtual TCP socket.
pub(super) fn make_socket(ctx: &mut Ctx<'_>, family: u16, ty: u64) -> Flow {
    let id = ctx.proc.fds.new_object_id();
    let nb = if ty & SOCK_NONBLOCK != 0 {
        flags::NONBLOCK
    } else {
        0
    };
    let d = OpenFile::new(Arc::new(TcpSocket::new(id, family)), flags::RDWR | nb);
    ctx.proc.changed = true;
    match ctx.proc.fds.insert(d, ty & SOCK_CLOEXEC != 0) {
        Ok(fd) => Flow::ok(fd),
        Err(e) => neg(e),
    }
}

/// The TCP socket behind `fd`: ENOTSOCK for anything else.
fn tcp(ctx: &Ctx<'_>, fd: u64) -> Result<Arc<OpenFile>, i32> {
    let d = desc(ctx, fd)?;
    if d.file.as_any().is::<TcpSocket>() {
        Ok(d)
    } else {
        Err(libc::ENOTSOCK)
    }
}

/// The socket inside a description [`tcp`] checked.
pub(super) fn as_tcp(d: &OpenFile) -> Option<&TcpSocket> {
    d.file.as_any().downcast_ref::<TcpSocket>()
}

/// Reads a sockaddr_in/sockaddr_in6 of `len` bytes at `ptr`.
fn read_addr(ctx: &Ctx<'_>, ptr: u64, len: u64) -> Result<SocketAddr, i32> {
    let (family, b, n) = read_raw(ctx, ptr, len)?;
    decode_addr(family, &b, n)
}

/// The family, the first (up to 28) bytes and how many were read of the sockaddr of
/// `len` bytes at `ptr` (`len` at least 16, at most a sockaddr_storage, as Linux checks).
fn read_raw(ctx: &Ctx<'_>, ptr: u64, len: u64) -> Result<(i32, [u8; 28], usize), i32> {
    if !(16..=128).contains(&len) {
        return Err(errno::EINVAL);
    }
    let mut b = [0u8; 28];
    let n = (len as usize).min(28);
    ctx.mem.read(ptr, &mut b[..n]).map_err(|_| errno::EFAULT)?;
    Ok((i32::from(u16::from_le_bytes([b[0], b[1]])), b, n))
}

/// The address in sockaddr bytes `b` (`n` of them valid) of `family`.
fn decode_addr(family: i32, b: &[u8; 28], n: usize) -> Result<SocketAddr, i32> {
    let port = u16::from_be_bytes([b[2], b[3]]);
    match family {
        libc::AF_INET => Ok(SocketAddr::from((
            Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            port,
        ))),
        libc::AF_INET6 if n >= 24 => {
            let ip: [u8; 16] = b[8..24].try_into().map_err(|_| errno::EINVAL)?;
            let scope = if n >= 28 {
                u32::from_le_bytes([b[24], b[25], b[26], b[27]])
            } else {
                0
            };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                scope,
            )))
        }
        libc::AF_INET6 => Err(errno::EINVAL),
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// The address a bind on a socket of `domain` names, checked as Linux checks it: an
/// AF_INET socket takes a sockaddr_in of at least 16 bytes (or AF_UNSPEC with
/// INADDR_ANY, an old compatibility case), an AF_INET6 socket a sockaddr_in6 of at
/// least 24 (EINVAL when shorter, EAFNOSUPPORT for another family); a v4-mapped address
/// on an AF_INET6 socket is IPv4 unless IPV6_V6ONLY is set (EINVAL then).
fn bind_addr(ctx: &Ctx<'_>, s: &TcpSocket, ptr: u64, len: u64) -> Result<SocketAddr, i32> {
    let (family, b, n) = read_raw(ctx, ptr, len)?;
    match i32::from(s.family()) {
        libc::AF_INET6 => {
            if n < 24 {
                return Err(errno::EINVAL);
            }
            if family != libc::AF_INET6 {
                return Err(libc::EAFNOSUPPORT);
            }
            let a = decode_addr(family, &b, n)?;
            let v6only = s
                .option(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
                .is_some_and(|v| v.iter().any(|&x| x != 0));
            if v6only && canonical(a) != a {
                return Err(errno::EINVAL);
            }
            Ok(a)
        }
        _ => match family {
            libc::AF_INET => decode_addr(family, &b, n),
            libc::AF_UNSPEC if b[4..8] == [0; 4] => decode_addr(libc::AF_INET, &b, n),
            _ => Err(libc::EAFNOSUPPORT),
        },
    }
}

/// `addr` as a sockaddr_in/sockaddr_in6.
pub(crate) fn encode_addr(addr: SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(a) => {
            let mut b = vec![0u8; 16];
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b
        }
        SocketAddr::V6(a) => {
            let mut b = vec![0u8; 28];
            b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_le_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[8..24].copy_from_slice(&a.ip().octets());
            b[24..28].copy_from_slice(&a.scope_id().to_le_bytes());
            b
        }
    }
}

/// Writes `addr` to a (sockaddr *, socklen_t *) pair as Linux does: truncated to the
/// caller's length, the full length stored back. A null pointer pair writes nothing.
pub(super) fn put_addr(
    ctx: &mut Ctx<'_>,
    ptr: u64,
    lenp: u64,
    addr: SocketAddr,
) -> Result<(), i32> {
    if ptr == 0 || lenp == 0 {
        return Ok(());
    }
    let len = ctx.mem.read_u32(lenp).map_err(|_| errno::EFAULT)?;
    if (len as i32) < 0 {
        return Err(errno::EINVAL);
    }
    let b = encode_addr(addr);
    let n = (len as usize).min(b.len());
    ctx.mem.write(ptr, &b[..n]).map_err(|_| errno::EFAULT)?;
    ctx.mem
        .write(lenp, &(b.len() as u32).to_le_bytes())
        .map_err(|_| errno::EFAULT)
}

fn bind(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match tcp(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let Some(s) = as_tcp(&d) else {
        return neg(libc::ENOTSOCK);
    };
    let addr = match bind_addr(ctx, s, a[1], a[2]) {
        Ok(x) => x,
        Err(e) => return neg(e),
    };
    match ctx.cfg.listen {
        Some(l) if canonical(l.addr) == canonical(addr) => {}
        Some(l) => {
            log_refusal(&ctx.cfg.name, format_args!("guest tried to bind {addr}; only the configured listen address {} may be bound (EACCES)", l.addr));
            return neg(libc::EACCES);
        }
        None => {
            log_refusal(&ctx.cfg.name, format_args!("guest tried to bind {addr}, but no listen address is configured for it (EACCES); set `listen` to serve it"));
            return neg(libc::EACCES);
        }
    }
    // Linux: binding a bound socket again is EINVAL, checked before the port is looked up.
    if s.bound_to().is_some() {
        return neg(errno::EINVAL);
    }
    // Another socket bound to it: EADDRINUSE, as Linux without SO_REUSEPORT (the host
    // hands connections to one listener, so there is no sharing it between several).
    let taken = (0..MAX_FDS as u64).any(|fd| {
        ctx.proc.fds.get(fd).is_some_and(|o| {
            as_tcp(o).is_some_and(|t| {
                !std::ptr::eq(t, s) && t.bound_to().map(canonical) == Some(canonical(addr))
            })
        })
    });
    if taken {
        return neg(libc::EADDRINUSE);
    }
    ctx.proc.changed = true;
    match s.bind(addr) {
        Ok(()) => Flow::ok(0),
        Err(e) => neg(e),
    }
}

fn listen(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match tcp(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    ctx.proc.changed = true;
    match as_tcp(&d).map(|s| s.listen(a[1] as i32)) {
        Some(Ok(())) => Flow::ok(0),
        Some(Err(e)) => neg(e),
        None => neg(libc::ENOTSOCK),
    }
}

fn do_accept(ctx: &mut Ctx<'_>, fd: u64, addr: u64, lenp: u64, fl: u64) -> Flow {
    if fl & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return neg(errno::EINVAL);
    }
    let d = match tcp(ctx, fd) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let Some(l) = as_tcp(&d) else {
        return neg(libc::ENOTSOCK);
    };
    // Linux takes the descriptor before the connection: with none free, the connection
    // stays queued.
    if ctx.proc.fds.open_count() >= MAX_FDS {
        return neg(libc::EMFILE);
    }
    let id = ctx.proc.fds.new_object_id();
    let (sock, peer) = match l.accept(id) {
        Ok(x) => x,
        Err(libc::EAGAIN) => return would_block(&d, false),
        Err(e) => return neg(e),
    };
    let nb = if fl & SOCK_NONBLOCK != 0 {
        flags::NONBLOCK
    } else {
        0
    };
    notify(ctx, &d);
    let fd = match ctx.proc.fds.insert(
        OpenFile::new(Arc::new(sock), flags::RDWR | nb),
        fl & SOCK_CLOEXEC != 0,
    ) {
        Ok(fd) => fd,
        Err(e) => return neg(e),
    };
    match put_addr(ctx, addr, lenp, peer) {
        Ok(()) => Flow::ok(fd),
        Err(e) => {
            // Linux: the new descriptor is released and the connection is lost (the
            // host sees it closed).
            let _ = ctx.proc.fds.close(fd);
            neg(e)
        }
    }
}

fn accept(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_accept(ctx, a[0], a[1], a[2], 0)
}

fn accept4(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    do_accept(ctx, a[0], a[1], a[2], a[3])
}

fn connect(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if let Err(e) = tcp(ctx, a[0]) {
        // AF_UNIX pairs are connected already.
        return neg(if e == libc::ENOTSOCK && desc(ctx, a[0]).is_ok() {
            libc::EISCONN
        } else {
            e
        });
    }
    let to = read_addr(ctx, a[1], a[2])
        .map(|x| x.to_string())
        .unwrap_or_else(|_| "an unreadable address".into());
    log_refusal(
        &ctx.cfg.name,
        format_args!(
            "guest tried to connect to {to}: the VM has no outbound network (ECONNREFUSED)"
        ),
    );
    neg(libc::ECONNREFUSED)
}

/// getsockopt on a TCP socket: what setsockopt stored, or Linux's answer for the
/// options servers ask about.
pub(super) fn get_option(s: &TcpSocket, level: i32, name: i32) -> Result<Vec<u8>, i32> {
    if let Some(v) = s.option(level, name) {
        return Ok(v);
    }
    let v: i32 = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_ERROR) => 0,
        (libc::SOL_SOCKET, libc::SO_TYPE) => libc::SOCK_STREAM,
        (libc::SOL_SOCKET, libc::SO_DOMAIN) => i32::from(s.family()),
        (libc::SOL_SOCKET, libc::SO_PROTOCOL) => libc::IPPROTO_TCP,
        (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => i32::from(s.is_listening()),
        (libc::SOL_SOCKET, libc::SO_SNDBUF | libc::SO_RCVBUF) => 208 << 10,
        (libc::SOL_SOCKET, _) | (libc::IPPROTO_TCP, _) | (libc::IPPROTO_IPV6, _) => 0,
        _ => return Err(libc::ENOPROTOOPT),
    };
    Ok(v.to_le_bytes().to_vec())
}

/// setsockopt on a TCP socket: socket, TCP and IP-level options are remembered.
pub(super) fn set_option(s: &TcpSocket, level: i32, name: i32, value: &[u8]) -> Result<(), i32> {
    match level {
        libc::SOL_SOCKET | libc::IPPROTO_TCP | libc::IPPROTO_IP | libc::IPPROTO_IPV6 => {
            s.set_option(level, name, value)
        }
        _ => Err(libc::ENOPROTOOPT),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;
    use crate::config::ListenSpec;

    fn sockaddr(f: &mut Fixture, at: u64, a: &str) -> u64 {
        let b = encode_addr(a.parse().unwrap());
        f.mem.write(at, &b).unwrap();
        b.len() as u64
    }

    #[test]
    fn bind_only_the_configured_address_and_refuse_connect() {
        let mut f = Fixture::new();
        let s = f.call(Sysno::socket, [2, 1 | SOCK_NONBLOCK, 0, 0, 0, 0]) as u64;
        let n = sockaddr(&mut f, 0x70_0000, "127.0.0.1:8000");
        // No listen configuration.
        assert_eq!(
            f.call(Sysno::bind, [s, 0x70_0000, n, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        assert_eq!(
            f.call(Sysno::connect, [s, 0x70_0000, n, 0, 0, 0]),
            -i64::from(libc::ECONNREFUSED)
        );
        assert_eq!(
            f.call(Sysno::listen, [s, 1, 0, 0, 0, 0]),
            -i64::from(libc::EACCES)
        );
        assert_eq!(
            f.call(Sysno::bind, [1, 0x70_0000, n, 0, 0, 0]),
            -i64::from(libc::ENOTSOCK)
        );
        assert_eq!(
            f.call(Sysno::bind, [s, 0x70_0000, 3, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::bind, [s, u64::MAX - 4, 16, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
        let _ = ListenSpec {
            addr: "127.0.0.1:8000".parse().unwrap(),
        };
    }

    /// The calls deno makes per request (research §2.2), on a listener the test hands a
    /// connection to as the host does.
    #[test]
    fn deno_request_sequence() {
        use crate::net::tcp::Conn;
        use std::sync::Mutex;
        let mut f = Fixture::new();
        f.cfg.listen = Some(ListenSpec {
            addr: "127.0.0.1:8000".parse().unwrap(),
        });
        let l = f.call(
            Sysno::socket,
            [2, 1 | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, 0, 0, 0],
        ) as u64;
        let n = sockaddr(&mut f, 0x70_0000, "127.0.0.1:8001");
        assert_eq!(
            f.call(Sysno::bind, [l, 0x70_0000, n, 0, 0, 0]),
            -i64::from(libc::EACCES),
            "another port"
        );
        let n = sockaddr(&mut f, 0x70_0000, "127.0.0.1:8000");
        assert_eq!(f.call(Sysno::bind, [l, 0x70_0000, n, 0, 0, 0]), 0);
        assert_eq!(f.call(Sysno::listen, [l, 511, 0, 0, 0, 0]), 0);
        let ep = f.call(Sysno::epoll_create1, [0, 0, 0, 0, 0, 0]) as u64;
        let mut ev = (1u32 | (1 << 31)).to_le_bytes().to_vec();
        ev.extend_from_slice(&7u64.to_le_bytes());
        f.mem.write(0x71_0000, &ev).unwrap();
        assert_eq!(f.call(Sysno::epoll_ctl, [ep, 1, l, 0x71_0000, 0, 0]), 0);
        assert_eq!(f.call(Sysno::epoll_wait, [ep, 0x72_0000, 8, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::accept4, [l, 0, 0, SOCK_NONBLOCK, 0, 0]),
            -i64::from(libc::EAGAIN)
        );
        // The host queues a connection.
        let conn = Arc::new(Mutex::new(Conn::new(
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            5555,
        )));
        as_tcp(f.proc.fds.get(l).unwrap())
            .unwrap()
            .push(conn.clone())
            .unwrap();
        assert_eq!(f.call(Sysno::epoll_wait, [ep, 0x72_0000, 8, 0, 0, 0]), 1);
        assert_eq!(f.mem.read_u32(0x72_0000).unwrap(), 1);
        f.mem.write(0x73_0000, &128u32.to_le_bytes()).unwrap();
        let c = f.call(
            Sysno::accept4,
            [l, 0x74_0000, 0x73_0000, SOCK_NONBLOCK | SOCK_CLOEXEC, 0, 0],
        ) as u64;
        assert!(c > l);
        assert_eq!(f.mem.read_u32(0x73_0000).unwrap(), 16);
        assert_eq!(
            read_addr(&f.ctx(), 0x74_0000, 16).unwrap(),
            "127.0.0.1:5555".parse().unwrap()
        );
        f.mem.write(0x73_0000, &16u32.to_le_bytes()).unwrap();
        assert_eq!(
            f.call(Sysno::getpeername, [c, 0x75_0000, 0x73_0000, 0, 0, 0]),
            0
        );
        assert_eq!(
            f.call(Sysno::getsockname, [c, 0x75_0000, 0x73_0000, 0, 0, 0]),
            0
        );
        assert_eq!(
            read_addr(&f.ctx(), 0x75_0000, 16).unwrap(),
            "127.0.0.1:8000".parse().unwrap()
        );
        f.mem.write(0x76_0000, &1i32.to_le_bytes()).unwrap();
        assert_eq!(f.call(Sysno::setsockopt, [c, 6, 1, 0x76_0000, 4, 0]), 0);
        f.mem.write(0x73_0000, &4u32.to_le_bytes()).unwrap();
        f.mem.write(0x76_0000, &0i32.to_le_bytes()).unwrap();
        assert_eq!(
            f.call(Sysno::getsockopt, [c, 6, 1, 0x76_0000, 0x73_0000, 0]),
            0
        );
        assert_eq!(
            f.mem.read_u32(0x76_0000).unwrap(),
            1,
            "TCP_NODELAY remembered"
        );
        assert_eq!(
            f.call(Sysno::accept4, [l, 0, 0, SOCK_NONBLOCK, 0, 0]),
            -i64::from(libc::EAGAIN)
        );
        assert_eq!(f.call(Sysno::recvfrom, [c, 0x77_0000, 512, 0, 0, 0]), 18);
        assert_eq!(
            f.call(Sysno::recvfrom, [c, 0x77_0000, 512, 0, 0, 0]),
            -i64::from(libc::EAGAIN)
        );
        f.mem.write(0x78_0000, b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert_eq!(f.call(Sysno::sendto, [c, 0x78_0000, 19, 0x4000, 0, 0]), 19);
        assert_eq!(f.call(Sysno::shutdown, [c, 1, 0, 0, 0, 0]), 0);
        assert!(conn.lock().unwrap().done_writing());
        assert!(!conn.lock().unwrap().guest_closed);
        assert_eq!(f.call(Sysno::close, [c, 0, 0, 0, 0, 0]), 0);
        assert!(conn.lock().unwrap().guest_closed);
        assert_eq!(conn.lock().unwrap().response(), b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(
            f.call(Sysno::getpeername, [l, 0x75_0000, 0x73_0000, 0, 0, 0]),
            -i64::from(libc::ENOTCONN)
        );
    }

    fn listening_fixture() -> Fixture {
        let mut f = Fixture::new();
        f.cfg.listen = Some(ListenSpec {
            addr: "127.0.0.1:8000".parse().unwrap(),
        });
        f
    }

    #[test]
    fn bind_checks_family_length_and_address_in_use() {
        let mut f = listening_fixture();
        let v4 = f.call(Sysno::socket, [2, 1, 0, 0, 0, 0]) as u64;
        let v6 = f.call(Sysno::socket, [10, 1, 0, 0, 0, 0]) as u64;
        let n4 = sockaddr(&mut f, 0x70_0000, "127.0.0.1:8000");
        let n6 = sockaddr(&mut f, 0x70_1000, "[::ffff:127.0.0.1]:8000");
        let err = |e: i32| -i64::from(e);
        // An AF_INET socket with an IPv6 address, and the other way round.
        assert_eq!(
            f.call(Sysno::bind, [v4, 0x70_1000, n6, 0, 0, 0]),
            err(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            f.call(Sysno::bind, [v6, 0x70_0000, n4, 0, 0, 0]),
            err(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::bind, [v6, 0x70_0000, 24, 0, 0, 0]),
            err(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            f.call(Sysno::bind, [v6, 0x70_1000, 20, 0, 0, 0]),
            err(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::bind, [v4, 0x70_0000, 15, 0, 0, 0]),
            err(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::bind, [v4, 0x70_0000, 129, 0, 0, 0]),
            err(libc::EINVAL)
        );
        // The address once: a second socket gets EADDRINUSE, also through its v4-mapped
        // form, and a bound socket cannot bind again.
        assert_eq!(f.call(Sysno::bind, [v4, 0x70_0000, n4, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::bind, [v4, 0x70_0000, n4, 0, 0, 0]),
            err(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::bind, [v6, 0x70_1000, n6, 0, 0, 0]),
            err(libc::EADDRINUSE)
        );
        let other = f.call(Sysno::socket, [2, 1, 0, 0, 0, 0]) as u64;
        assert_eq!(
            f.call(Sysno::bind, [other, 0x70_0000, n4, 0, 0, 0]),
            err(libc::EADDRINUSE)
        );
        // Closed, the address is free: an AF_INET6 socket takes it v4-mapped and serves
        // it (unless IPV6_V6ONLY).
        assert_eq!(f.call(Sysno::close, [v4, 0, 0, 0, 0, 0]), 0);
        f.mem.write(0x71_0000, &1i32.to_le_bytes()).unwrap();
        let only6 = f.call(Sysno::socket, [10, 1, 0, 0, 0, 0]) as u64;
        assert_eq!(
            f.call(Sysno::setsockopt, [only6, 41, 26, 0x71_0000, 4, 0]),
            0
        );
        assert_eq!(
            f.call(Sysno::bind, [only6, 0x70_1000, n6, 0, 0, 0]),
            err(libc::EINVAL)
        );
        assert_eq!(f.call(Sysno::bind, [v6, 0x70_1000, n6, 0, 0, 0]), 0);
        assert_eq!(f.call(Sysno::listen, [v6, 1, 0, 0, 0, 0]), 0);
        let l = as_tcp(f.proc.fds.get(v6).unwrap()).unwrap();
        assert_eq!(
            l.listening_on().map(canonical),
            Some("127.0.0.1:8000".parse().unwrap())
        );
    }

    #[test]
    fn negative_backlog_is_the_maximum_and_a_faulting_accept_leaks_no_fd() {
        use crate::net::tcp::{Conn, MAX_BACKLOG};
        use std::sync::Mutex;
        let mut f = listening_fixture();
        let l = f.call(Sysno::socket, [2, 1 | SOCK_NONBLOCK, 0, 0, 0, 0]) as u64;
        let n = sockaddr(&mut f, 0x70_0000, "127.0.0.1:8000");
        assert_eq!(f.call(Sysno::bind, [l, 0x70_0000, n, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::listen, [l, u64::from(u32::MAX), 0, 0, 0, 0]),
            0
        );
        let sock = as_tcp(f.proc.fds.get(l).unwrap()).unwrap();
        let conns: Vec<_> = (0..MAX_BACKLOG)
            .map(|i| Arc::new(Mutex::new(Conn::new(b"x".to_vec(), i as u16))))
            .collect();
        for c in &conns {
            sock.push(c.clone()).unwrap();
        }
        assert!(sock.push(Arc::default()).is_err(), "somaxconn");
        let open = f.proc.fds.open_count();
        f.mem.write(0x73_0000, &16u32.to_le_bytes()).unwrap();
        // The address pointer faults: EFAULT, no new fd, the connection is gone.
        assert_eq!(
            f.call(Sysno::accept4, [l, u64::MAX - 4, 0x73_0000, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
        assert_eq!(f.proc.fds.open_count(), open);
        assert!(conns[0].lock().unwrap().guest_closed);
        // So does the length pointer.
        assert_eq!(
            f.call(Sysno::accept4, [l, 0x74_0000, u64::MAX - 2, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
        assert_eq!(f.proc.fds.open_count(), open);
        assert!(conns[1].lock().unwrap().guest_closed);
        let c = f.call(Sysno::accept4, [l, 0x74_0000, 0x73_0000, 0, 0, 0]);
        assert!(c > l as i64);
        assert!(!conns[2].lock().unwrap().guest_closed);
        // getsockopt with a negative length: EINVAL, as Linux.
        f.mem.write(0x73_0000, &(-1i32).to_le_bytes()).unwrap();
        assert_eq!(
            f.call(Sysno::getsockopt, [c as u64, 1, 3, 0x76_0000, 0x73_0000, 0]),
            -i64::from(libc::EINVAL)
        );
    }

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:8000", "[::1]:443", "0.0.0.0:1"] {
            let mut f = Fixture::new();
            let n = sockaddr(&mut f, 0x70_0000, a);
            assert_eq!(
                read_addr(&f.ctx(), 0x70_0000, n).unwrap(),
                a.parse().unwrap()
            );
        }
    }
}
