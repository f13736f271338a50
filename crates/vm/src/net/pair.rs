//! In-VM byte streams: socketpair(AF_UNIX, SOCK_STREAM) and pipe2. Both ends share one
//! state (two byte queues and who has closed or shut down what); nothing leaves the VM.
//! Closing an end (dropping its last description) is EOF for the peer's reads and EPIPE
//! for its writes.

use crate::fs::{events, lock, CloneMap, File, IoctlAnswer, Kind, Readiness, Stat, SysResult};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Bytes a socketpair direction buffers (Linux's default send buffer is about this).
pub const SOCKET_CAPACITY: usize = 208 << 10;
/// Bytes a pipe buffers (Linux: 16 pages).
pub const PIPE_CAPACITY: usize = 64 << 10;

#[derive(Clone, Debug)]
struct State {
    /// `queue[i]`: bytes end `i` can read.
    queue: [VecDeque<u8>; 2],
    /// End `i` is closed.
    closed: [bool; 2],
    /// End `i` shut down its writing half (shutdown SHUT_WR).
    shut_wr: [bool; 2],
    /// End `i` shut down its reading half.
    shut_rd: [bool; 2],
    capacity: usize,
    /// `read_gen[i]`: events that may make end `i` readable (see [`Readiness`]).
    read_gen: [u64; 2],
    /// `write_gen[i]`: events that may make end `i` writable.
    write_gen: [u64; 2],
}

/// Which kind of stream an end belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// A connected AF_UNIX stream socket.
    Socket,
    /// A pipe (end 0 reads, end 1 writes).
    Pipe,
}

/// One end of a socketpair or pipe.
#[derive(Debug)]
pub struct End {
    id: u64,
    side: usize,
    flavor: Flavor,
    shared: Arc<Mutex<State>>,
}

/// Two connected ends with wait key `id`.
pub fn pair(id: u64, flavor: Flavor) -> (End, End) {
    let shared = Arc::new(Mutex::new(State {
        queue: [VecDeque::new(), VecDeque::new()],
        closed: [false; 2],
        shut_wr: [false; 2],
        shut_rd: [false; 2],
        capacity: match flavor {
            Flavor::Socket => SOCKET_CAPACITY,
            Flavor::Pipe => PIPE_CAPACITY,
        },
        read_gen: [0; 2],
        write_gen: [0; 2],
    }));
    let end = |side| End {
        id,
        side,
        flavor,
        shared: shared.clone(),
    };
    (end(0), end(1))
}

impl End {
    /// Socket or pipe.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// shutdown(2): `how` is SHUT_RD (0), SHUT_WR (1) or SHUT_RDWR (2).
    pub fn shutdown(&self, how: u64) -> SysResult<()> {
        let mut s = lock(&self.shared);
        match how {
            0 => s.shut_rd[self.side] = true,
            1 => s.shut_wr[self.side] = true,
            2 => {
                s.shut_rd[self.side] = true;
                s.shut_wr[self.side] = true;
            }
            _ => return Err(libc::EINVAL),
        }
        let (me, peer) = (self.side, self.peer());
        s.read_gen[me] += 1;
        s.read_gen[peer] += 1;
        s.write_gen[peer] += 1;
        Ok(())
    }

    /// Bytes waiting to be read (FIONREAD).
    pub fn pending(&self) -> usize {
        lock(&self.shared).queue[self.side].len()
    }

    fn peer(&self) -> usize {
        1 - self.side
    }

    /// Whether the peer can no longer send to this end.
    fn peer_done(s: &State, side: usize) -> bool {
        s.closed[1 - side] || s.shut_wr[1 - side] || s.shut_rd[side]
    }
}

impl Drop for End {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.closed[self.side] = true;
        s.queue[self.side].clear();
        let peer = 1 - self.side;
        s.read_gen[peer] += 1;
        s.write_gen[peer] += 1;
    }
}

impl File for End {
    fn kind(&self) -> Kind {
        match self.flavor {
            Flavor::Socket => Kind::Socket,
            Flavor::Pipe => Kind::Fifo,
        }
    }

    fn read(&self, buf: &mut [u8], _offset: u64, _nonblock: bool) -> SysResult<usize> {
        let mut s = lock(&self.shared);
        if self.flavor == Flavor::Pipe && self.side != 0 {
            return Err(libc::EBADF);
        }
        let q = &mut s.queue[self.side];
        if q.is_empty() {
            if buf.is_empty() || Self::peer_done(&s, self.side) {
                return Ok(0);
            }
            return Err(libc::EAGAIN);
        }
        let n = buf.len().min(q.len());
        for (d, b) in buf.iter_mut().zip(q.drain(..n)) {
            *d = b;
        }
        // Room for the peer's writes.
        let peer = self.peer();
        s.write_gen[peer] += 1;
        Ok(n)
    }

    fn write(&self, buf: &[u8], _offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        let mut s = lock(&self.shared);
        if self.flavor == Flavor::Pipe && self.side != 1 {
            return Err(libc::EBADF);
        }
        let peer = self.peer();
        if s.shut_wr[self.side] || s.closed[peer] || s.shut_rd[peer] {
            // No SIGPIPE is delivered (kvmjs delivers no signals): the caller sees EPIPE.
            return Err(libc::EPIPE);
        }
        if buf.is_empty() {
            return Ok((0, 0));
        }
        let room = s.capacity.saturating_sub(s.queue[peer].len());
        if room == 0 {
            return Err(libc::EAGAIN);
        }
        let n = room.min(buf.len());
        s.queue[peer].extend(&buf[..n]);
        s.read_gen[peer] += 1;
        Ok((n, 0))
    }

    fn stat(&self) -> SysResult<Stat> {
        Ok(Stat::synthetic(
            self.kind(),
            0o600,
            0x3000 + self.id * 2 + self.side as u64,
            0,
        ))
    }

    fn poll(&self) -> Readiness {
        let s = lock(&self.shared);
        let (me, peer) = (self.side, self.peer());
        let mut mask = 0;
        let readable_end = self.flavor == Flavor::Socket || me == 0;
        let writable_end = self.flavor == Flavor::Socket || me == 1;
        if readable_end && (!s.queue[me].is_empty() || Self::peer_done(&s, me)) {
            mask |= events::IN;
        }
        if readable_end && Self::peer_done(&s, me) {
            mask |= if self.flavor == Flavor::Socket {
                events::RDHUP
            } else {
                events::HUP
            };
        }
        if self.flavor == Flavor::Socket && s.closed[peer] {
            mask |= events::HUP;
        }
        if writable_end {
            if s.closed[peer] && self.flavor == Flavor::Pipe {
                mask |= events::ERR;
            } else if s.queue[peer].len() < s.capacity {
                mask |= events::OUT;
            }
        }
        Readiness {
            mask,
            read_gen: s.read_gen[me],
            write_gen: s.write_gen[me],
        }
    }

    fn ioctl(&self, request: u64) -> SysResult<IoctlAnswer> {
        match request {
            // FIONREAD / SIOCINQ.
            0x541B => Ok(IoctlAnswer::PutInt(
                i32::try_from(self.pending()).unwrap_or(i32::MAX),
            )),
            _ => Err(libc::ENOTTY),
        }
    }

    fn wait_id(&self) -> Option<u64> {
        Some(self.id)
    }

    fn deep_clone(&self, map: &mut CloneMap) -> Arc<dyn File> {
        let shared = map.share(&self.shared, |_| {
            Arc::new(Mutex::new(lock(&self.shared).clone()))
        });
        Arc::new(End {
            id: self.id,
            side: self.side,
            flavor: self.flavor,
            shared,
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_flow_both_ways_then_eof_on_close() {
        let (a, b) = pair(1, Flavor::Socket);
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf, 0, true), Err(libc::EAGAIN));
        assert_eq!(a.poll().mask, events::OUT);
        assert_eq!(a.write(b"ping", 0, false), Ok((4, 0)));
        assert_eq!(b.poll().mask, events::IN | events::OUT);
        assert_eq!(b.read(&mut buf, 0, true), Ok(4));
        assert_eq!(&buf[..4], b"ping");
        b.write(b"pong", 0, false).unwrap();
        a.write(b"last", 0, false).unwrap();
        drop(a);
        // What was sent before the close is still read, then EOF.
        assert_eq!(b.read(&mut buf, 0, true), Ok(4));
        assert_eq!(b.read(&mut buf, 0, true), Ok(0));
        let m = b.poll().mask;
        assert_eq!(
            m & (events::IN | events::RDHUP | events::HUP),
            events::IN | events::RDHUP | events::HUP
        );
        assert_eq!(b.write(b"x", 0, false), Err(libc::EPIPE));
    }

    #[test]
    fn full_buffer_is_eagain_and_shutdown_is_eof() {
        let (a, b) = pair(1, Flavor::Socket);
        let big = vec![7u8; SOCKET_CAPACITY + 10];
        assert_eq!(a.write(&big, 0, false), Ok((SOCKET_CAPACITY, 0)));
        assert_eq!(a.write(b"x", 0, false), Err(libc::EAGAIN));
        assert_eq!(a.poll().mask & events::OUT, 0);
        assert_eq!(b.pending(), SOCKET_CAPACITY);
        a.shutdown(1).unwrap();
        let mut buf = vec![0u8; SOCKET_CAPACITY];
        assert_eq!(b.read(&mut buf, 0, true), Ok(SOCKET_CAPACITY));
        assert_eq!(b.read(&mut buf, 0, true), Ok(0));
        assert_eq!(a.write(b"x", 0, false), Err(libc::EPIPE));
        assert_eq!(a.shutdown(9), Err(libc::EINVAL));
    }

    #[test]
    fn pipe_ends_are_one_way_and_clones_are_separate() {
        let (r, w) = pair(3, Flavor::Pipe);
        let mut buf = [0u8; 4];
        assert_eq!(r.write(b"x", 0, false), Err(libc::EBADF));
        assert_eq!(w.read(&mut buf, 0, true), Err(libc::EBADF));
        w.write(b"abc", 0, false).unwrap();
        let mut map = CloneMap::default();
        let r2 = r.deep_clone(&mut map);
        let w2 = w.deep_clone(&mut map);
        assert_eq!(r.read(&mut buf, 0, true), Ok(3));
        assert_eq!(
            r2.read(&mut buf, 0, true),
            Ok(3),
            "the clone has its own bytes"
        );
        drop(w);
        assert_eq!(r.read(&mut buf, 0, true), Ok(0));
        assert_eq!(
            r2.read(&mut buf, 0, true),
            Err(libc::EAGAIN),
            "the clone's writer is open"
        );
        drop(w2);
        assert_eq!(r2.read(&mut buf, 0, true), Ok(0));
    }
}
