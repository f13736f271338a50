//! eventfd: a 64-bit counter. Writes add, reads take the whole count (or 1 with
//! EFD_SEMAPHORE); reading 0 or overflowing the counter would block (EAGAIN here, the
//! syscall layer turns that into a block for blocking descriptors).

use crate::fs::{events, lock, CloneMap, File, Kind, Readiness, Stat, SysResult};
use std::any::Any;
use std::sync::{Arc, Mutex};

/// Largest value the counter holds.
const MAX: u64 = u64::MAX - 1;

#[derive(Clone, Copy, Debug)]
struct State {
    count: u64,
    /// Writes (the counter grew).
    read_gen: u64,
    /// Reads (room for writers).
    write_gen: u64,
}

/// An eventfd object.
#[derive(Debug)]
pub struct EventFd {
    id: u64,
    semaphore: bool,
    state: Mutex<State>,
}

impl EventFd {
    /// A counter starting at `initial`, wait key `id`.
    pub fn new(id: u64, initial: u32, semaphore: bool) -> EventFd {
        EventFd {
            id,
            semaphore,
            state: Mutex::new(State {
                count: u64::from(initial),
                read_gen: 0,
                write_gen: 0,
            }),
        }
    }
}

impl File for EventFd {
    fn kind(&self) -> Kind {
        Kind::Anon
    }

    fn read(&self, buf: &mut [u8], _offset: u64, _nonblock: bool) -> SysResult<usize> {
        if buf.len() < 8 {
            return Err(libc::EINVAL);
        }
        let mut s = lock(&self.state);
        if s.count == 0 {
            return Err(libc::EAGAIN);
        }
        let v = if self.semaphore { 1 } else { s.count };
        s.count -= v;
        s.write_gen += 1;
        buf[..8].copy_from_slice(&v.to_le_bytes());
        Ok(8)
    }

    fn write(&self, buf: &[u8], _offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        let Some(b) = buf.get(..8) else {
            return Err(libc::EINVAL);
        };
        let v = u64::from_le_bytes(b.try_into().map_err(|_| libc::EINVAL)?);
        if v == u64::MAX {
            return Err(libc::EINVAL);
        }
        let mut s = lock(&self.state);
        if v > MAX - s.count {
            return Err(libc::EAGAIN);
        }
        s.count += v;
        // Every successful write is an event for edge-triggered waiters (Linux wakes on
        // each one, which is what tokio's waker relies on).
        s.read_gen += 1;
        Ok((8, 0))
    }

    fn stat(&self) -> SysResult<Stat> {
        Ok(Stat::synthetic(Kind::Anon, 0o600, 0x2000 + self.id, 0))
    }

    fn poll(&self) -> Readiness {
        let s = lock(&self.state);
        let mut mask = 0;
        if s.count > 0 {
            mask |= events::IN;
        }
        if s.count < MAX {
            mask |= events::OUT;
        }
        Readiness {
            mask,
            read_gen: s.read_gen,
            write_gen: s.write_gen,
        }
    }

    fn wait_id(&self) -> Option<u64> {
        Some(self.id)
    }

    fn deep_clone(&self, _: &mut CloneMap) -> Arc<dyn File> {
        Arc::new(EventFd {
            id: self.id,
            semaphore: self.semaphore,
            state: Mutex::new(*lock(&self.state)),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(e: &EventFd) -> SysResult<u64> {
        let mut b = [0u8; 8];
        e.read(&mut b, 0, true)?;
        Ok(u64::from_le_bytes(b))
    }

    #[test]
    fn counter_and_semaphore() {
        let e = EventFd::new(1, 0, false);
        assert_eq!(read(&e), Err(libc::EAGAIN));
        assert_eq!(e.poll().mask, events::OUT);
        e.write(&3u64.to_le_bytes(), 0, false).unwrap();
        e.write(&4u64.to_le_bytes(), 0, false).unwrap();
        assert_eq!(e.poll().mask, events::IN | events::OUT);
        assert_eq!(read(&e), Ok(7));
        assert_eq!(read(&e), Err(libc::EAGAIN));
        let s = EventFd::new(2, 2, true);
        assert_eq!(read(&s), Ok(1));
        assert_eq!(read(&s), Ok(1));
        assert_eq!(read(&s), Err(libc::EAGAIN));
    }

    #[test]
    fn bad_sizes_and_overflow() {
        let e = EventFd::new(1, 0, false);
        let mut small = [0u8; 4];
        assert_eq!(e.read(&mut small, 0, true), Err(libc::EINVAL));
        assert_eq!(e.write(&[1, 2], 0, false), Err(libc::EINVAL));
        assert_eq!(
            e.write(&u64::MAX.to_le_bytes(), 0, false),
            Err(libc::EINVAL)
        );
        e.write(&MAX.to_le_bytes(), 0, false).unwrap();
        assert_eq!(e.write(&1u64.to_le_bytes(), 0, false), Err(libc::EAGAIN));
        assert_eq!(e.poll().mask, events::IN);
        let g = e.poll().write_gen;
        let c = e.deep_clone(&mut CloneMap::default());
        assert_eq!(read(&e), Ok(MAX));
        assert!(e.poll().write_gen > g);
        assert_eq!(c.poll().mask, events::IN, "the clone kept its own count");
    }
}
