//! Threads: clone/clone3 with the pthread flag set, futexes, thread exit, robust lists,
//! sched_yield, gettid and signals aimed at one thread. Thin decoders over
//! [`crate::tasks`]; the run loop (vm.rs) does the switching these calls ask for through
//! [`Flow::Block`], [`Flow::Yield`], [`Flow::Spawned`] and [`Flow::ThreadExited`].

use super::{e, errno, Args, Ctx, Entry, Flow, Stop};
use crate::tasks::{futex, Block, Resume, Tid};
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::clone, clone),
    e(Sysno::clone3, clone3),
    e(Sysno::fork, fork),
    e(Sysno::vfork, fork),
    e(Sysno::futex, futex),
    e(Sysno::exit, exit),
    e(Sysno::exit_group, exit_group),
    e(Sysno::set_tid_address, set_tid_address),
    e(Sysno::gettid, gettid),
    e(Sysno::sched_yield, sched_yield),
    e(Sysno::set_robust_list, set_robust_list),
    e(Sysno::get_robust_list, get_robust_list),
    e(Sysno::tkill, tkill),
    e(Sysno::tgkill, tgkill),
];

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;
/// What every thread of a process shares: glibc's and musl's pthread_create set all of it.
const THREAD_REQUIRED: u64 = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
const THREAD_OPTIONAL: u64 = CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_CHILD_SETTID
    | CLONE_DETACHED;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// Robust-futex word bits (linux/futex.h).
const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Entries of a robust list Linux follows at most (ROBUST_LIST_LIMIT).
const ROBUST_LIST_LIMIT: usize = 2048;
/// sizeof(struct robust_list_head).
const ROBUST_HEAD_SIZE: u64 = 24;

/// Most distinct refusals [`warn_once`] remembers. The messages carry guest-chosen values
/// (clone flags, futex operations) and the set is host-global, outliving every reset: without
/// a cap a guest could grow host memory one call at a time. Past it, refusals log at debug.
const MAX_WARNED: usize = 64;

/// Refusals already logged (host-global: the log is the host's, not the guest's).
static WARNED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// Whether `what` is new and fits in [`WARNED`] (and is now remembered).
fn first_sighting(what: &str) -> bool {
    let Ok(mut seen) = WARNED.lock() else {
        return false;
    };
    if seen.len() >= MAX_WARNED || seen.contains(what) {
        return false;
    }
    seen.insert(what.to_string())
}

/// One log line per distinct refusal, not one per call.
fn warn_once(ctx: &Ctx<'_>, what: String) {
    if first_sighting(&what) {
        tracing::warn!(program = %ctx.cfg.name, "{what}");
    } else {
        tracing::debug!(program = %ctx.cfg.name, "{what}");
    }
}

/// The decoded request to start a thread.
struct CloneArgs {
    flags: u64,
    exit_signal: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
}

/// clone(flags, stack, parent_tid, child_tid, tls): the low byte of `flags` is the exit
/// signal.
fn clone(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    spawn(
        ctx,
        CloneArgs {
            flags: a[0] & !0xff,
            exit_signal: a[0] & 0xff,
            stack: a[1],
            parent_tid: a[2],
            child_tid: a[3],
            tls: a[4],
        },
    )
}

/// clone3(struct clone_args *, size).
fn clone3(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    const VER0: u64 = 64;
    const KNOWN: u64 = 88;
    let (at, size) = (a[0], a[1]);
    // Linux: larger than a page is E2BIG, smaller than the first version EINVAL.
    if size > 4096 {
        return Flow::err(libc::E2BIG);
    }
    if size < VER0 {
        return Flow::err(errno::EINVAL);
    }
    let Ok(raw) = ctx.mem.slice(at, size) else {
        return Flow::err(errno::EFAULT);
    };
    // Fields a newer libc knows and kvmjs does not must be zero (as Linux requires).
    if raw
        .get(KNOWN as usize..)
        .is_some_and(|r| r.iter().any(|&b| b != 0))
    {
        return Flow::err(libc::E2BIG);
    }
    let mut buf = [0u8; KNOWN as usize];
    let n = raw.len().min(buf.len());
    buf[..n].copy_from_slice(&raw[..n]);
    let f = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    // f(1), the pidfd pointer, only matters with CLONE_PIDFD (refused as an odd flag);
    // glibc fills it in anyway.
    let (flags, child_tid, parent_tid, exit_signal) = (f(0), f(2), f(3), f(4));
    let (stack, stack_size, tls, set_tid_size, cgroup) = (f(5), f(6), f(7), f(9), f(10));
    if set_tid_size != 0 || cgroup != 0 {
        warn_once(
            ctx,
            "clone3 with set_tid or a cgroup is not supported; returning EINVAL".into(),
        );
        return Flow::err(errno::EINVAL);
    }
    if (stack == 0) != (stack_size == 0) {
        return Flow::err(errno::EINVAL);
    }
    let Some(top) = stack.checked_add(stack_size) else {
        return Flow::err(errno::EINVAL);
    };
    spawn(
        ctx,
        CloneArgs {
            flags,
            exit_signal,
            stack: top,
            parent_tid,
            child_tid,
            tls,
        },
    )
}

fn fork(ctx: &mut Ctx<'_>, _: &Args) -> Flow {
    warn_once(
        ctx,
        "guest called fork/vfork: a kvmjs VM runs one process; returning ENOSYS".into(),
    );
    Flow::err(errno::ENOSYS)
}

fn spawn(ctx: &mut Ctx<'_>, c: CloneArgs) -> Flow {
    if c.flags & (CLONE_VM | CLONE_THREAD) != (CLONE_VM | CLONE_THREAD) {
        warn_once(
            ctx,
            format!(
                "guest tried to start a new process (clone flags {:#x}): a kvmjs VM runs one process; returning ENOSYS",
                c.flags
            ),
        );
        return Flow::err(errno::ENOSYS);
    }
    let odd = c.flags & !(THREAD_REQUIRED | THREAD_OPTIONAL);
    if c.flags & THREAD_REQUIRED != THREAD_REQUIRED || odd != 0 || c.exit_signal != 0 {
        warn_once(
            ctx,
            format!(
                "guest started a thread with clone flags {:#x} (exit signal {}): only the pthread set {:#x} is supported; returning EINVAL",
                c.flags,
                c.exit_signal,
                THREAD_REQUIRED | THREAD_OPTIONAL
            ),
        );
        return Flow::err(errno::EINVAL);
    }
    if c.stack == 0 {
        // Two threads on one stack corrupt each other; pthread always passes one.
        warn_once(
            ctx,
            "guest started a thread without a stack; returning EINVAL".into(),
        );
        return Flow::err(errno::EINVAL);
    }
    if c.flags & CLONE_SETTLS != 0 && c.tls >= 1 << 47 {
        return Flow::err(errno::EPERM);
    }
    let tid = match ctx.proc.tasks.spawn() {
        Ok(t) => t,
        Err(e) => {
            warn_once(ctx, format!("{e}; clone returns EAGAIN"));
            return Flow::err(errno::EAGAIN);
        }
    };
    ctx.proc.changed = true;
    let tid_bytes = tid.to_le_bytes();
    let wrote = (c.flags & CLONE_PARENT_SETTID == 0
        || ctx.mem.write(c.parent_tid, &tid_bytes).is_ok())
        && (c.flags & CLONE_CHILD_SETTID == 0 || ctx.mem.write(c.child_tid, &tid_bytes).is_ok());
    if !wrote {
        ctx.proc.tasks.unspawn(tid);
        return Flow::err(errno::EFAULT);
    }
    let (fs, mask) = (ctx.proc.fs_base, ctx.proc.signals.mask);
    let t = ctx
        .proc
        .tasks
        .get_mut(tid)
        .expect("the task was just spawned");
    t.fs_base = if c.flags & CLONE_SETTLS != 0 {
        c.tls
    } else {
        fs
    };
    t.sigmask = mask;
    t.regs.rsp = c.stack;
    if c.flags & CLONE_CHILD_CLEARTID != 0 {
        t.clear_child_tid = c.child_tid;
    }
    Flow::Spawned(tid)
}

/// A guest `struct timespec` as a duration; `Err` is the errno.
fn read_timespec(ctx: &Ctx<'_>, at: u64) -> Result<Duration, i32> {
    let b = ctx.mem.slice(at, 16).map_err(|_| errno::EFAULT)?;
    let sec = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let nsec = i64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(errno::EINVAL);
    }
    Ok(Duration::new(sec as u64, nsec as u32))
}

/// The host's reading of a guest clock (guest clocks are the host's: syscalls/time.rs).
fn clock_now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer and the clock id a constant Linux always has.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn futex(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (addr, op, val) = (a[0], a[1], a[2] as u32);
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    if !addr.is_multiple_of(4) {
        return Flow::err(errno::EINVAL);
    }
    if realtime && !matches!(cmd, FUTEX_WAIT | FUTEX_WAIT_BITSET) {
        return Flow::err(errno::ENOSYS);
    }
    let n = |v: u64| (v as u32).min(i32::MAX as u32) as usize;
    match cmd {
        FUTEX_WAIT => futex_wait(ctx, addr, val, a[3], futex::MATCH_ANY, false, realtime),
        FUTEX_WAIT_BITSET => futex_wait(ctx, addr, val, a[3], a[5] as u32, true, realtime),
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE {
                futex::MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 {
                return Flow::err(errno::EINVAL);
            }
            let woken = ctx.proc.tasks.futex_wake(addr, n(a[2]), bitset);
            ctx.proc.changed |= woken > 0;
            Flow::ok(woken as u64)
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            let to = a[4];
            if !to.is_multiple_of(4) || (a[2] as i32) < 0 || (a[3] as i32) < 0 {
                return Flow::err(errno::EINVAL);
            }
            if cmd == FUTEX_CMP_REQUEUE {
                match ctx.mem.read_u32(addr) {
                    Ok(cur) if cur == a[5] as u32 => {}
                    Ok(_) => return Flow::err(errno::EAGAIN),
                    Err(_) => return Flow::err(errno::EFAULT),
                }
            }
            let moved = ctx.proc.tasks.futex_requeue(addr, to, n(a[2]), n(a[3]));
            ctx.proc.changed |= moved > 0;
            Flow::ok(moved as u64)
        }
        FUTEX_WAKE_OP => {
            let to = a[4];
            if !to.is_multiple_of(4) {
                return Flow::err(errno::EINVAL);
            }
            let Ok(old) = ctx.mem.read_u32(to) else {
                return Flow::err(errno::EFAULT);
            };
            let Some((new, second)) = futex::wake_op(a[5] as u32, old) else {
                return Flow::err(errno::ENOSYS);
            };
            if ctx.mem.write(to, &new.to_le_bytes()).is_err() {
                return Flow::err(errno::EFAULT);
            }
            let mut woken = ctx.proc.tasks.futex_wake(addr, n(a[2]), futex::MATCH_ANY);
            if second {
                woken += ctx.proc.tasks.futex_wake(to, n(a[3]), futex::MATCH_ANY);
            }
            ctx.proc.changed |= woken > 0;
            Flow::ok(woken as u64)
        }
        _ => {
            warn_once(
                ctx,
                format!("guest used futex operation {cmd} (PI futexes and the like are not supported); returning ENOSYS"),
            );
            Flow::err(errno::ENOSYS)
        }
    }
}

/// FUTEX_WAIT (relative timeout, CLOCK_MONOTONIC) and FUTEX_WAIT_BITSET (absolute, on
/// CLOCK_MONOTONIC or CLOCK_REALTIME).
fn futex_wait(
    ctx: &mut Ctx<'_>,
    addr: u64,
    val: u32,
    timeout: u64,
    bitset: u32,
    absolute: bool,
    realtime: bool,
) -> Flow {
    if bitset == 0 {
        return Flow::err(errno::EINVAL);
    }
    let deadline = if timeout == 0 {
        None
    } else {
        let t = match read_timespec(ctx, timeout) {
            Ok(t) => t,
            Err(e) => return Flow::err(e),
        };
        let left = if absolute {
            let clock = if realtime {
                libc::CLOCK_REALTIME
            } else {
                libc::CLOCK_MONOTONIC
            };
            t.saturating_sub(clock_now(clock))
        } else {
            t
        };
        // A deadline past what Instant can hold is no deadline.
        Instant::now().checked_add(left)
    };
    match ctx.mem.read_u32(addr) {
        Ok(cur) if cur != val => return Flow::err(errno::EAGAIN),
        Ok(_) => {}
        Err(_) => return Flow::err(errno::EFAULT),
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return Flow::err(libc::ETIMEDOUT);
    }
    Flow::Block(Block {
        keys: vec![futex::key(addr, bitset)],
        deadline,
        on_wake: Resume::Return(0),
        on_timeout: Resume::Return((-i64::from(libc::ETIMEDOUT)) as u64),
    })
}

fn exit(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if ctx.proc.tasks.alive() <= 1 {
        return Flow::Stop(Stop::Exited(a[0] as i32));
    }
    let tid = ctx.proc.tasks.current();
    let t = ctx.proc.tasks.current_task();
    let (clear, robust) = (t.clear_child_tid, t.robust_list);
    exit_robust_list(ctx, tid, robust);
    // CLONE_CHILD_CLEARTID: pthread_join waits for this word to become 0. A bad address
    // is ignored, as Linux does.
    if clear != 0 && ctx.mem.write(clear, &0u32.to_le_bytes()).is_ok() {
        ctx.proc.tasks.futex_wake(clear, 1, futex::MATCH_ANY);
    }
    // Ids are never reused, so a dead thread's name would only pile up (a guest starting,
    // naming and ending threads in a loop grows it without bound). Thread 1's stays: it
    // is the process's name (/proc/self/comm), as on Linux after the main thread exits.
    if tid != crate::tasks::MAIN_TID {
        ctx.proc.thread_names.remove(&tid);
    }
    ctx.proc.tasks.exit_current();
    ctx.proc.changed = true;
    Flow::ThreadExited
}

/// Marks the robust futexes the exiting thread `tid` still holds as owner-died and wakes
/// one waiter of each (what Linux's exit_robust_list does), so a robust mutex's next
/// locker gets EOWNERDEAD instead of waiting forever.
fn exit_robust_list(ctx: &mut Ctx<'_>, tid: Tid, head: u64) {
    if head == 0 {
        return;
    }
    let (Ok(first), Ok(offset), Ok(pending)) = (
        ctx.mem.read_u64(head),
        ctx.mem.read_u64(head.wrapping_add(8)),
        ctx.mem.read_u64(head.wrapping_add(16)),
    ) else {
        return;
    };
    let mut entries = Vec::new();
    let mut entry = first & !1;
    while entry != head && entry != 0 && entries.len() < ROBUST_LIST_LIMIT {
        entries.push(entry);
        match ctx.mem.read_u64(entry) {
            Ok(next) => entry = next & !1,
            Err(_) => break,
        }
    }
    if pending & !1 != 0 {
        entries.push(pending & !1);
    }
    for e in entries {
        let word = e.wrapping_add(offset);
        let Ok(v) = ctx.mem.read_u32(word) else {
            continue;
        };
        if v & FUTEX_TID_MASK != tid {
            continue;
        }
        let new = (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        if ctx.mem.write(word, &new.to_le_bytes()).is_ok() && v & FUTEX_WAITERS != 0 {
            ctx.proc.tasks.futex_wake(word, 1, futex::MATCH_ANY);
        }
    }
}

fn exit_group(_: &mut Ctx<'_>, a: &Args) -> Flow {
    Flow::Stop(Stop::Exited(a[0] as i32))
}

fn set_tid_address(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    ctx.proc.tasks.current_task().clear_child_tid = a[0];
    ctx.proc.changed = true;
    Flow::ok(u64::from(ctx.proc.tasks.current()))
}

fn gettid(ctx: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::ok(u64::from(ctx.proc.tasks.current()))
}

fn sched_yield(ctx: &mut Ctx<'_>, _: &Args) -> Flow {
    // Alone on the vCPU: nothing to switch to, and no cost.
    if ctx.proc.tasks.has_runnable() {
        Flow::Yield
    } else {
        Flow::ok(0)
    }
}

fn set_robust_list(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[1] != ROBUST_HEAD_SIZE {
        return Flow::err(errno::EINVAL);
    }
    ctx.proc.tasks.current_task().robust_list = a[0];
    ctx.proc.changed = true;
    Flow::ok(0)
}

fn get_robust_list(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let tid = match a[0] {
        0 => Some(ctx.proc.tasks.current()),
        pid => Tid::try_from(pid).ok(),
    };
    let Some(head) = tid
        .and_then(|t| ctx.proc.tasks.get(t))
        .map(|t| t.robust_list)
    else {
        return Flow::err(libc::ESRCH);
    };
    if ctx.mem.write_u64(a[1], head).is_err() || ctx.mem.write_u64(a[2], ROBUST_HEAD_SIZE).is_err()
    {
        return Flow::err(errno::EFAULT);
    }
    Flow::ok(0)
}

/// A signal for thread `tid`: kvmjs delivers none, so only signals that do nothing
/// succeed and fatal ones end the run (see signals.rs).
fn signal_thread(ctx: &mut Ctx<'_>, tid: u64, sig: u64) -> Flow {
    if u32::try_from(tid)
        .ok()
        .and_then(|t| ctx.proc.tasks.get(t))
        .is_none()
    {
        return Flow::err(libc::ESRCH);
    }
    super::signals::to_self(ctx, sig)
}

fn tkill(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    signal_thread(ctx, a[0], a[1])
}

fn tgkill(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] != u64::from(crate::tasks::MAIN_TID) {
        return Flow::err(libc::ESRCH);
    }
    signal_thread(ctx, a[1], a[2])
}

#[cfg(test)]
mod tests;
