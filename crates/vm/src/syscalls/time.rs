//! Clocks and sleeps, answered from the host's clocks.

use super::{e, errno, Args, Ctx, Entry, Flow};
use crate::tasks::Block;
use std::time::{Duration, Instant};
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::clock_gettime, clock_gettime),
    e(Sysno::clock_getres, clock_getres),
    e(Sysno::gettimeofday, gettimeofday),
    e(Sysno::time, time),
    e(Sysno::nanosleep, nanosleep),
    e(Sysno::clock_nanosleep, clock_nanosleep),
];

fn host_clock(clk: u64) -> Result<libc::timespec, i32> {
    if clk > 11 {
        return Err(errno::EINVAL);
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock id was range-checked.
    let rc = unsafe { libc::clock_gettime(clk as libc::clockid_t, &mut ts) };
    if rc != 0 {
        return Err(errno::EINVAL);
    }
    Ok(ts)
}

fn put_pair(ctx: &mut Ctx<'_>, at: u64, a: i64, b: i64) -> Flow {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_le_bytes());
    buf[8..].copy_from_slice(&b.to_le_bytes());
    match ctx.mem.write(at, &buf) {
        Ok(()) => Flow::ok(0),
        Err(_) => Flow::err(errno::EFAULT),
    }
}

fn clock_gettime(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match host_clock(a[0]) {
        Ok(ts) => put_pair(ctx, a[1], ts.tv_sec, ts.tv_nsec),
        Err(e) => Flow::err(e),
    }
}

fn clock_getres(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] > 11 {
        return Flow::err(errno::EINVAL);
    }
    if a[1] == 0 {
        return Flow::ok(0);
    }
    put_pair(ctx, a[1], 0, 1)
}

fn gettimeofday(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] == 0 {
        return Flow::ok(0);
    }
    match host_clock(0) {
        Ok(ts) => put_pair(ctx, a[0], ts.tv_sec, ts.tv_nsec / 1000),
        Err(e) => Flow::err(e),
    }
}

fn time(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let now = host_clock(0).map(|t| t.tv_sec).unwrap_or(0);
    if a[0] != 0 && ctx.mem.write_u64(a[0], now as u64).is_err() {
        return Flow::err(errno::EFAULT);
    }
    Flow::ok(now as u64)
}

/// Reads a `struct timespec` (16 bytes, bounds- and overflow-checked).
fn timespec(ctx: &Ctx<'_>, at: u64) -> Option<(u64, u64)> {
    let b = ctx.mem.slice(at, 16).ok()?;
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Some((word(0), word(8)))
}

/// Sleeps, but never past the run's deadline (just after it: the run then times out).
fn sleep(ctx: &Ctx<'_>, req: u64) -> Flow {
    let Some((sec, nsec)) = timespec(ctx, req) else {
        return Flow::err(errno::EFAULT);
    };
    if nsec >= 1_000_000_000 || (sec as i64) < 0 {
        return Flow::err(errno::EINVAL);
    }
    let mut d = Duration::new(sec, nsec as u32);
    if let Some(deadline) = ctx.deadline {
        d = d.min(deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
    }
    sleep_for(d)
}

/// Blocks the calling thread for `d` (other guest threads run meanwhile; with none, the
/// run loop sleeps on the host), then returns 0.
fn sleep_for(d: Duration) -> Flow {
    if d.is_zero() {
        return Flow::ok(0);
    }
    match Instant::now().checked_add(d) {
        Some(at) => Flow::Block(Block::sleep(at, 0)),
        // Further than Instant reaches: only the run's deadline ends it.
        None => Flow::Block(Block {
            deadline: None,
            ..Block::sleep(Instant::now(), 0)
        }),
    }
}

fn nanosleep(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    sleep(ctx, a[0])
}

fn clock_nanosleep(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    const TIMER_ABSTIME: u64 = 1;
    if a[1] & TIMER_ABSTIME != 0 {
        let Some((sec, nsec)) = timespec(ctx, a[2]) else {
            return Flow::err(errno::EFAULT);
        };
        let now = match host_clock(a[0]) {
            Ok(t) => t,
            Err(e) => return Flow::err(e),
        };
        let target = i128::from(sec) * 1_000_000_000 + i128::from(nsec);
        let cur = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
        let left = (target - cur).max(0) as u64;
        let mut d = Duration::from_nanos(left);
        if let Some(deadline) = ctx.deadline {
            d = d
                .min(deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
        }
        return sleep_for(d);
    }
    sleep(ctx, a[2])
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    #[test]
    fn clocks_write_timespecs() {
        let mut f = Fixture::new();
        assert_eq!(f.call(Sysno::clock_gettime, [1, 0x70_0000, 0, 0, 0, 0]), 0);
        let sec = f.mem.read_u64(0x70_0000).unwrap();
        assert!(sec > 0);
        assert_eq!(
            f.call(Sysno::clock_gettime, [99, 0x70_0000, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::clock_gettime, [0, u64::MAX, 0, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
        assert!(f.call(Sysno::time, [0; 6]) > 1_700_000_000);
    }

    #[test]
    fn sleep_is_bounded_by_the_deadline() {
        let mut f = Fixture::new();
        f.mem.write_u64(0x70_0000, 100).unwrap(); // 100 s
        f.mem.write_u64(0x70_0008, 0).unwrap();
        let mut ctx = f.ctx();
        ctx.deadline = Some(Instant::now() + Duration::from_millis(20));
        let Flow::Block(b) = nanosleep(&mut ctx, &[0x70_0000, 0, 0, 0, 0, 0]) else {
            panic!("a sleep blocks the calling thread")
        };
        assert!(b.deadline.unwrap() < Instant::now() + Duration::from_millis(30));
        assert_eq!(b.on_timeout, crate::tasks::Resume::Return(0));
        assert!(b.keys.is_empty());
        f.mem.write_u64(0x70_0000, 0).unwrap();
        assert_eq!(f.call(Sysno::nanosleep, [0x70_0000, 0, 0, 0, 0, 0]), 0);
    }
}
