//! Sockets and pipes inside the VM: socketpair(AF_UNIX, SOCK_STREAM) and pipe2 as
//! in-VM byte streams ([`crate::net::pair`]), with send/recv (and their msghdr forms),
//! shutdown, socket options and names. TCP sockets are virtual ([`crate::net::tcp`],
//! their own calls in inet.rs); other network sockets are refused.

use super::e;
use super::files::{desc, iovecs, neg, notify, read_desc, vectored, write_desc};
use super::inet::{self, as_tcp};
use super::{errno, Args, Ctx, Entry, Flow};
use crate::fs::{flags, OpenFile};
use crate::net::pair::{pair, End, Flavor, SOCKET_CAPACITY};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::socket, socket),
    e(Sysno::socketpair, socketpair),
    e(Sysno::pipe, pipe),
    e(Sysno::pipe2, pipe2),
    e(Sysno::shutdown, shutdown),
    e(Sysno::sendto, sendto),
    e(Sysno::recvfrom, recvfrom),
    e(Sysno::sendmsg, sendmsg),
    e(Sysno::recvmsg, recvmsg),
    e(Sysno::getsockopt, getsockopt),
    e(Sysno::setsockopt, setsockopt),
    e(Sysno::getsockname, getsockname),
    e(Sysno::getpeername, getpeername),
];

const AF_UNIX: u64 = 1;
const SOCK_STREAM: u64 = 1;
const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const MSG_PEEK: u64 = 2;
const MSG_DONTWAIT: u64 = 0x40;
const SOL_SOCKET: u64 = 1;

/// One warning per host process about the missing network, then debug lines.
static WARNED_NET: AtomicBool = AtomicBool::new(false);

fn socket(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (domain, ty) = (a[0], a[1]);
    if matches!(domain as i32, libc::AF_INET | libc::AF_INET6)
        && ty & 0xf == SOCK_STREAM
        && ty & !(SOCK_NONBLOCK | SOCK_CLOEXEC | 0xf) == 0
        && matches!(a[2] as i32, 0 | libc::IPPROTO_TCP)
    {
        return inet::make_socket(ctx, domain as u16, ty);
    }
    if !WARNED_NET.swap(true, Ordering::Relaxed) {
        tracing::warn!(program = %ctx.cfg.name, "guest asked for a socket (domain {domain}, type {:#x}); only virtual TCP sockets, socketpair and pipes exist in the VM, answering EAFNOSUPPORT", ty);
    } else {
        tracing::debug!(program = %ctx.cfg.name, "guest socket(domain {domain}, type {ty:#x}) refused");
    }
    neg(libc::EAFNOSUPPORT)
}

fn install_pair(
    ctx: &mut Ctx<'_>,
    flavor: Flavor,
    out: u64,
    nonblock: bool,
    cloexec: bool,
) -> Flow {
    // Check the output first, so a bad pointer leaves no fds behind.
    if ctx.mem.write(out, &[0u8; 8]).is_err() {
        return neg(errno::EFAULT);
    }
    let id = ctx.proc.fds.new_object_id();
    let (a, b) = pair(id, flavor);
    let nb = if nonblock { flags::NONBLOCK } else { 0 };
    let (fa, fb) = match flavor {
        Flavor::Socket => (flags::RDWR, flags::RDWR),
        Flavor::Pipe => (flags::RDONLY, flags::WRONLY),
    };
    let da = OpenFile::new(Arc::new(a), fa | nb);
    let db = OpenFile::new(Arc::new(b), fb | nb);
    ctx.proc.changed = true;
    let x = match ctx.proc.fds.insert(da, cloexec) {
        Ok(fd) => fd,
        Err(e) => return neg(e),
    };
    let y = match ctx.proc.fds.insert(db, cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = ctx.proc.fds.close(x);
            return neg(e);
        }
    };
    let mut v = (x as i32).to_le_bytes().to_vec();
    v.extend_from_slice(&(y as i32).to_le_bytes());
    match ctx.mem.write(out, &v) {
        Ok(()) => Flow::ok(0),
        Err(_) => neg(errno::EFAULT),
    }
}

fn socketpair(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (domain, ty, out) = (a[0], a[1], a[3]);
    if domain != AF_UNIX {
        return neg(libc::EAFNOSUPPORT);
    }
    if ty & !(SOCK_NONBLOCK | SOCK_CLOEXEC | 0xf) != 0 {
        return neg(errno::EINVAL);
    }
    if ty & 0xf != SOCK_STREAM {
        // Datagram and seqpacket pairs keep message boundaries; not built.
        return neg(libc::EOPNOTSUPP);
    }
    install_pair(
        ctx,
        Flavor::Socket,
        out,
        ty & SOCK_NONBLOCK != 0,
        ty & SOCK_CLOEXEC != 0,
    )
}

fn pipe(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    install_pair(ctx, Flavor::Pipe, a[0], false, false)
}

fn pipe2(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    const O_DIRECT: u64 = 0o40000;
    if a[1] & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return neg(if a[1] & O_DIRECT != 0 {
            libc::EOPNOTSUPP
        } else {
            errno::EINVAL
        });
    }
    install_pair(
        ctx,
        Flavor::Pipe,
        a[0],
        a[1] & SOCK_NONBLOCK != 0,
        a[1] & SOCK_CLOEXEC != 0,
    )
}

/// The socket behind `fd` (a socketpair end or a TCP socket): ENOTSOCK for anything else.
fn sock(ctx: &Ctx<'_>, fd: u64) -> Result<Arc<OpenFile>, i32> {
    let d = desc(ctx, fd)?;
    match d.file.as_any().downcast_ref::<End>() {
        Some(e) if e.flavor() == Flavor::Socket => Ok(d),
        None if as_tcp(&d).is_some() => Ok(d),
        _ => Err(libc::ENOTSOCK),
    }
}

/// The socket behind `fd` for a send/recv call with flags `fl`, and whether the call may
/// not block (MSG_DONTWAIT). MSG_PEEK is not supported.
fn sock_io(ctx: &Ctx<'_>, fd: u64, fl: u64) -> Result<(Arc<OpenFile>, bool), i32> {
    let d = sock(ctx, fd)?;
    if fl & MSG_PEEK != 0 {
        return Err(libc::EOPNOTSUPP);
    }
    Ok((d, fl & MSG_DONTWAIT != 0))
}

fn shutdown(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match sock(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let r = match (d.file.as_any().downcast_ref::<End>(), as_tcp(&d)) {
        (Some(end), _) => end.shutdown(a[1]),
        (None, Some(t)) => t.shutdown(a[1]),
        (None, None) => Err(libc::ENOTSOCK),
    };
    match r {
        Ok(()) => {
            notify(ctx, &d);
            Flow::ok(0)
        }
        Err(e) => neg(e),
    }
}

fn sendto(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (d, nonblock) = match sock_io(ctx, a[0], a[3]) {
        Ok(x) => x,
        Err(e) => return neg(e),
    };
    if a[4] != 0 {
        return neg(libc::EISCONN);
    }
    match write_desc(ctx, &d, a[1], a[2], None, nonblock) {
        Ok(n) => Flow::ok(n),
        Err(f) => f,
    }
}

/// Writes an empty peer address (`*addrlen = 0`: the peer is unnamed) if asked for.
fn no_name(ctx: &mut Ctx<'_>, addrlen: u64) -> Result<(), i32> {
    if addrlen != 0 {
        ctx.mem
            .write(addrlen, &0u32.to_le_bytes())
            .map_err(|_| errno::EFAULT)?;
    }
    Ok(())
}

fn recvfrom(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (d, nonblock) = match sock_io(ctx, a[0], a[3]) {
        Ok(x) => x,
        Err(e) => return neg(e),
    };
    match read_desc(ctx, &d, a[1], a[2], None, nonblock) {
        Ok(n) => match no_name(ctx, a[5]) {
            Ok(()) => Flow::ok(n),
            Err(e) => neg(e),
        },
        Err(f) => f,
    }
}

/// struct msghdr fields: (iov, iovlen, controllen).
fn msghdr(ctx: &Ctx<'_>, at: u64) -> Result<(u64, u64, u64), i32> {
    let mut b = [0u8; 56];
    ctx.mem.read(at, &mut b).map_err(|_| errno::EFAULT)?;
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    Ok((word(16), word(24), word(40)))
}

fn sendmsg(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (d, nonblock) = match sock_io(ctx, a[0], a[2]) {
        Ok(x) => x,
        Err(e) => return neg(e),
    };
    let (iov, n, control) = match msghdr(ctx, a[1]) {
        Ok(m) => m,
        Err(e) => return neg(e),
    };
    if control != 0 {
        // Passing descriptors (SCM_RIGHTS) or credentials is not supported.
        return neg(libc::EOPNOTSUPP);
    }
    match iovecs(ctx, iov, n) {
        Ok(v) => vectored(ctx, &d, &v, None, true, nonblock),
        Err(e) => neg(e),
    }
}

fn recvmsg(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (d, nonblock) = match sock_io(ctx, a[0], a[2]) {
        Ok(x) => x,
        Err(e) => return neg(e),
    };
    let (iov, n, _) = match msghdr(ctx, a[1]) {
        Ok(m) => m,
        Err(e) => return neg(e),
    };
    let vecs = match iovecs(ctx, iov, n) {
        Ok(v) => v,
        Err(e) => return neg(e),
    };
    let r = vectored(ctx, &d, &vecs, None, false, nonblock);
    if matches!(r, Flow::Return(v) if (v as i64) >= 0) {
        // No name, no control data, no flags.
        let ok = ctx.mem.write(a[1] + 8, &0u32.to_le_bytes()).is_ok()
            && ctx.mem.write(a[1] + 40, &0u64.to_le_bytes()).is_ok()
            && ctx.mem.write(a[1] + 48, &0u32.to_le_bytes()).is_ok();
        if !ok {
            return neg(errno::EFAULT);
        }
    }
    r
}

fn getsockopt(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match sock(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if let Some(t) = as_tcp(&d) {
        return match inet::get_option(t, a[1] as i32, a[2] as i32) {
            Ok(v) => put_option(ctx, a[3], a[4], &v),
            Err(e) => neg(e),
        };
    }
    if a[1] != SOL_SOCKET {
        return neg(libc::ENOPROTOOPT);
    }
    let v: i32 = match a[2] as i32 {
        libc::SO_ERROR => 0,
        libc::SO_TYPE => SOCK_STREAM as i32,
        libc::SO_DOMAIN => AF_UNIX as i32,
        libc::SO_SNDBUF | libc::SO_RCVBUF => SOCKET_CAPACITY as i32,
        libc::SO_ACCEPTCONN => 0,
        _ => return neg(libc::ENOPROTOOPT),
    };
    put_option(ctx, a[3], a[4], &v.to_le_bytes())
}

/// Stores an option value at (optval, optlen) truncated to the caller's length.
fn put_option(ctx: &mut Ctx<'_>, at: u64, lenp: u64, bytes: &[u8]) -> Flow {
    let Ok(len) = ctx.mem.read_u32(lenp) else {
        return neg(errno::EFAULT);
    };
    // socklen_t is read as an int: Linux refuses a negative one.
    if (len as i32) < 0 {
        return neg(errno::EINVAL);
    }
    let n = (len as usize).min(bytes.len());
    let ok = ctx.mem.write(at, &bytes[..n]).is_ok()
        && ctx.mem.write(lenp, &(n as u32).to_le_bytes()).is_ok();
    if ok {
        Flow::ok(0)
    } else {
        neg(errno::EFAULT)
    }
}

/// Socket-level options are accepted (buffer sizes are fixed; the rest have no effect on
/// an in-VM pair); other levels are not socket options of a unix stream.
fn setsockopt(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match sock(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if let Some(t) = as_tcp(&d) {
        // Options are small (ints, linger, timevals): at most 256 bytes are kept.
        let Ok(v) = ctx.mem.slice(a[3], a[4].min(256)).map(<[u8]>::to_vec) else {
            return neg(errno::EFAULT);
        };
        ctx.proc.changed = true;
        return match inet::set_option(t, a[1] as i32, a[2] as i32, &v) {
            Ok(()) => Flow::ok(0),
            Err(e) => neg(e),
        };
    }
    if a[1] == SOL_SOCKET {
        Flow::ok(0)
    } else {
        neg(libc::ENOPROTOOPT)
    }
}

/// A TCP socket's peer; an unnamed AF_UNIX address for a socketpair end.
fn getpeername(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match sock(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    match as_tcp(&d).map(|t| t.peer_addr()) {
        Some(Ok(addr)) => match inet::put_addr(ctx, a[1], a[2], addr) {
            Ok(()) => Flow::ok(0),
            Err(e) => neg(e),
        },
        Some(Err(e)) => neg(e),
        None => getsockname(ctx, a),
    }
}

/// A TCP socket's address; an unnamed AF_UNIX address (just the family) for a
/// socketpair end.
fn getsockname(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let d = match sock(ctx, a[0]) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    if let Some(t) = as_tcp(&d) {
        let addr = t.local_addr();
        return match inet::put_addr(ctx, a[1], a[2], addr) {
            Ok(()) => Flow::ok(0),
            Err(e) => neg(e),
        };
    }
    let Ok(len) = ctx.mem.read_u32(a[2]) else {
        return neg(errno::EFAULT);
    };
    let fam = (AF_UNIX as u16).to_le_bytes();
    let n = (len as usize).min(2);
    let ok =
        ctx.mem.write(a[1], &fam[..n]).is_ok() && ctx.mem.write(a[2], &2u32.to_le_bytes()).is_ok();
    if ok {
        Flow::ok(0)
    } else {
        neg(errno::EFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::super::dispatch;
    use super::super::testing::Fixture;
    use super::*;

    fn pair_fds(f: &mut Fixture, ty: u64) -> (u64, u64) {
        assert_eq!(
            f.call(Sysno::socketpair, [AF_UNIX, ty, 0, 0x70_0000, 0, 0]),
            0
        );
        (
            u64::from(f.mem.read_u32(0x70_0000).unwrap()),
            u64::from(f.mem.read_u32(0x70_0004).unwrap()),
        )
    }

    #[test]
    fn socketpair_eagain_eof_and_msghdr() {
        let mut f = Fixture::new();
        let (a, b) = pair_fds(&mut f, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC);
        assert_eq!(
            f.call(Sysno::fcntl, [a, libc::F_GETFD as u64, 0, 0, 0, 0]),
            1
        );
        assert_eq!(
            f.call(Sysno::recvfrom, [b, 0x71_0000, 16, 0, 0, 0]),
            -i64::from(libc::EAGAIN)
        );
        f.mem.write(0x72_0000, b"hi").unwrap();
        assert_eq!(f.call(Sysno::sendto, [a, 0x72_0000, 2, 0x4000, 0, 0]), 2);
        // sendmsg with two iovecs.
        let iov: Vec<u8> = [0x72_0000u64, 1, 0x72_0001, 1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        f.mem.write(0x73_0000, &iov).unwrap();
        let mut msg = [0u8; 56];
        msg[16..24].copy_from_slice(&0x73_0000u64.to_le_bytes());
        msg[24..32].copy_from_slice(&2u64.to_le_bytes());
        f.mem.write(0x74_0000, &msg).unwrap();
        assert_eq!(f.call(Sysno::sendmsg, [a, 0x74_0000, 0, 0, 0, 0]), 2);
        assert_eq!(f.call(Sysno::ioctl, [b, 0x541B, 0x75_0000, 0, 0, 0]), 0);
        assert_eq!(f.mem.read_u32(0x75_0000).unwrap(), 4);
        assert_eq!(f.call(Sysno::read, [b, 0x71_0000, 16, 0, 0, 0]), 4);
        assert_eq!(f.mem.slice(0x71_0000, 4).unwrap(), b"hihi");
        // recvmsg after the peer closed: EOF.
        assert_eq!(f.call(Sysno::close, [a, 0, 0, 0, 0, 0]), 0);
        assert_eq!(f.call(Sysno::recvmsg, [b, 0x74_0000, 0, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::write, [b, 0x72_0000, 2, 0, 0, 0]),
            -i64::from(libc::EPIPE)
        );
        assert_eq!(
            f.call(Sysno::sendto, [1, 0x72_0000, 2, 0, 0, 0]),
            -i64::from(libc::ENOTSOCK)
        );
        assert_eq!(
            f.call(Sysno::socket, [2, 2, 0, 0, 0, 0]),
            -i64::from(libc::EAFNOSUPPORT),
            "UDP"
        );
        assert_eq!(
            f.call(Sysno::socketpair, [2, 1, 0, 0x70_0000, 0, 0]),
            -i64::from(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            f.call(Sysno::socketpair, [AF_UNIX, 1, 0, u64::MAX - 3, 0, 0]),
            -i64::from(libc::EFAULT)
        );
    }

    #[test]
    fn blocking_reader_blocks_and_pipe_works() {
        let mut f = Fixture::new();
        let (a, _b) = pair_fds(&mut f, SOCK_STREAM);
        match dispatch(
            &mut f.ctx(),
            Sysno::read.id() as u64,
            &[a, 0x71_0000, 4, 0, 0, 0],
        ) {
            Flow::Block(b) => assert_eq!(b.deadline, None),
            other => panic!("expected a block, got {other:?}"),
        }
        // MSG_DONTWAIT on a blocking socket.
        assert_eq!(
            f.call(Sysno::recvfrom, [a, 0x71_0000, 4, MSG_DONTWAIT, 0, 0]),
            -i64::from(libc::EAGAIN)
        );
        assert_eq!(
            f.call(Sysno::pipe2, [0x70_0000, SOCK_NONBLOCK, 0, 0, 0, 0]),
            0
        );
        let r = u64::from(f.mem.read_u32(0x70_0000).unwrap());
        let w = u64::from(f.mem.read_u32(0x70_0004).unwrap());
        f.mem.write(0x72_0000, b"xyz").unwrap();
        assert_eq!(f.call(Sysno::write, [w, 0x72_0000, 3, 0, 0, 0]), 3);
        assert_eq!(
            f.call(Sysno::write, [r, 0x72_0000, 3, 0, 0, 0]),
            -i64::from(libc::EBADF)
        );
        assert_eq!(f.call(Sysno::read, [r, 0x71_0000, 8, 0, 0, 0]), 3);
        assert_eq!(
            f.call(Sysno::read, [r, 0x71_0000, 8, 0, 0, 0]),
            -i64::from(libc::EAGAIN)
        );
        f.call(Sysno::close, [w, 0, 0, 0, 0, 0]);
        assert_eq!(f.call(Sysno::read, [r, 0x71_0000, 8, 0, 0, 0]), 0);
        assert_eq!(
            f.call(Sysno::pipe2, [0x70_0000, 1, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
    }
}
