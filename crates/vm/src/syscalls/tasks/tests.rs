//! Handler tests for syscalls/tasks.rs.

use super::super::testing::Fixture;
use super::*;
use crate::tasks::{State, WaitKey};

const PTHREAD: u64 = 0x3d_0f00;
const M: u64 = 0x70_0000;

fn flow(f: &mut Fixture, nr: Sysno, a: Args) -> Flow {
    super::super::dispatch(&mut f.ctx(), nr.id() as u64, &a)
}

fn neg(e: i32) -> i64 {
    -i64::from(e)
}

#[test]
fn clone_with_pthread_flags_spawns_a_thread() {
    let mut f = Fixture::new();
    let (ptid, ctid) = (M, M + 8);
    let r = flow(
        &mut f,
        Sysno::clone,
        [PTHREAD, M + 0x8000, ptid, ctid, 0x1234_0000, 0],
    );
    let Flow::Spawned(tid) = r else {
        panic!("{r:?}")
    };
    assert_eq!(tid, 2);
    assert_eq!(f.mem.read_u32(ptid).unwrap(), 2, "CLONE_PARENT_SETTID");
    let t = f.proc.tasks.get(tid).unwrap();
    assert_eq!(
        (t.fs_base, t.regs.rsp, t.clear_child_tid),
        (0x1234_0000, M + 0x8000, ctid)
    );
    assert_eq!(f.proc.tasks.current(), 1, "the parent keeps running");
    assert!(f.proc.changed);
}

#[test]
fn clone3_reads_its_struct_and_uses_the_stack_top() {
    let mut f = Fixture::new();
    let mut ca = [0u64; 11];
    ca[0] = PTHREAD;
    ca[2] = M + 0x100; // child_tid
    ca[3] = M + 0x108; // parent_tid
    ca[5] = M + 0x1000; // stack
    ca[6] = 0x4000; // stack_size
    ca[7] = 0x5000; // tls
    let b: Vec<u8> = ca.iter().flat_map(|w| w.to_le_bytes()).collect();
    f.mem.write(M, &b).unwrap();
    let r = flow(&mut f, Sysno::clone3, [M, 88, 0, 0, 0, 0]);
    let Flow::Spawned(tid) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.proc.tasks.get(tid).unwrap().regs.rsp, M + 0x5000);
    assert_eq!(f.mem.read_u32(M + 0x108).unwrap(), tid);
    // Unknown trailing fields must be zero; too small a struct is invalid.
    f.mem.write(M + 88, &[1]).unwrap();
    assert_eq!(f.call(Sysno::clone3, [M, 96, 0, 0, 0, 0]), neg(libc::E2BIG));
    assert_eq!(
        f.call(Sysno::clone3, [M, 32, 0, 0, 0, 0]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        f.call(Sysno::clone3, [M, 4097, 0, 0, 0, 0]),
        neg(libc::E2BIG),
        "larger than a page"
    );
}

#[test]
fn processes_and_odd_threads_are_refused() {
    let mut f = Fixture::new();
    // fork as glibc does it, vfork-style posix_spawn, and fork/vfork themselves.
    assert_eq!(
        f.call(Sysno::clone, [0x120_0011, 0, 0, 0, 0, 0]),
        neg(libc::ENOSYS)
    );
    assert_eq!(
        f.call(Sysno::clone, [0x4100 | 17, M, 0, 0, 0, 0]),
        neg(libc::ENOSYS)
    );
    assert_eq!(f.call(Sysno::fork, [0; 6]), neg(libc::ENOSYS));
    assert_eq!(f.call(Sysno::vfork, [0; 6]), neg(libc::ENOSYS));
    // A thread with an exit signal, a new namespace, or no stack.
    assert_eq!(
        f.call(Sysno::clone, [PTHREAD | 17, M, 0, 0, 0, 0]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        f.call(Sysno::clone, [PTHREAD | 0x2_0000, M, 0, 0, 0, 0]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        f.call(Sysno::clone, [PTHREAD, 0, 0, 0, 0, 0]),
        neg(libc::EINVAL)
    );
    // A bad parent_tid pointer undoes the spawn.
    assert_eq!(
        f.call(Sysno::clone, [PTHREAD, M, u64::MAX - 2, 0, 0, 0]),
        neg(libc::EFAULT)
    );
    assert_eq!(f.proc.tasks.alive(), 1);
}

#[test]
fn the_thread_limit_is_eagain() {
    let mut f = Fixture::new();
    for _ in 1..crate::tasks::MAX_THREADS {
        assert!(matches!(
            flow(&mut f, Sysno::clone, [PTHREAD, M, 0, 0, 0, 0]),
            Flow::Spawned(_)
        ));
    }
    assert_eq!(
        f.call(Sysno::clone, [PTHREAD, M, 0, 0, 0, 0]),
        neg(libc::EAGAIN)
    );
}

#[test]
fn futex_wait_checks_the_word_and_blocks_with_a_deadline() {
    let mut f = Fixture::new();
    f.mem.write(M, &5u32.to_le_bytes()).unwrap();
    assert_eq!(
        f.call(Sysno::futex, [M, 128, 4, 0, 0, 0]),
        neg(libc::EAGAIN)
    );
    assert_eq!(
        f.call(Sysno::futex, [M + 1, 0, 5, 0, 0, 0]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        f.call(Sysno::futex, [u64::MAX - 3, 0, 5, 0, 0, 0]),
        neg(libc::EFAULT)
    );
    // Relative 5 ms: a block with a deadline, -ETIMEDOUT at it.
    f.mem.write(M + 16, &[0u8; 8]).unwrap();
    f.mem.write(M + 24, &5_000_000u64.to_le_bytes()).unwrap();
    let before = Instant::now();
    let Flow::Block(b) = flow(&mut f, Sysno::futex, [M, 128, 5, M + 16, 0, 0]) else {
        panic!("FUTEX_WAIT on a matching word blocks")
    };
    assert_eq!(
        b.keys,
        vec![WaitKey::Futex {
            addr: M,
            bitset: u32::MAX
        }]
    );
    let d = b.deadline.unwrap();
    assert!(d > before && d <= Instant::now() + Duration::from_millis(5));
    assert_eq!(b.on_wake, Resume::Return(0));
    assert_eq!(b.on_timeout, Resume::Return(neg(libc::ETIMEDOUT) as u64));
    // No timeout: no deadline.
    let Flow::Block(b) = flow(&mut f, Sysno::futex, [M, 0, 5, 0, 0, 0]) else {
        panic!()
    };
    assert_eq!(b.deadline, None);
    // Bad timespec.
    f.mem
        .write(M + 24, &2_000_000_000u64.to_le_bytes())
        .unwrap();
    assert_eq!(
        f.call(Sysno::futex, [M, 0, 5, M + 16, 0, 0]),
        neg(libc::EINVAL)
    );
}

#[test]
fn wait_bitset_timeouts_are_absolute_on_either_clock() {
    let mut f = Fixture::new();
    f.mem.write(M, &0u32.to_le_bytes()).unwrap();
    for (op, clock) in [
        (9 | 128, libc::CLOCK_MONOTONIC),
        (9 | 128 | 256, libc::CLOCK_REALTIME),
    ] {
        let now = clock_now(clock);
        // Already past: -ETIMEDOUT at once.
        let past = now - Duration::from_millis(1);
        f.mem.write(M + 16, &past.as_secs().to_le_bytes()).unwrap();
        f.mem
            .write(M + 24, &u64::from(past.subsec_nanos()).to_le_bytes())
            .unwrap();
        assert_eq!(
            f.call(Sysno::futex, [M, op, 0, M + 16, 0, 1]),
            neg(libc::ETIMEDOUT)
        );
        // One second ahead: a deadline about a second from now.
        let later = now + Duration::from_secs(1);
        f.mem.write(M + 16, &later.as_secs().to_le_bytes()).unwrap();
        f.mem
            .write(M + 24, &u64::from(later.subsec_nanos()).to_le_bytes())
            .unwrap();
        let Flow::Block(b) = flow(&mut f, Sysno::futex, [M, op, 0, M + 16, 0, 1]) else {
            panic!()
        };
        let left = b.deadline.unwrap() - Instant::now();
        assert!(
            left > Duration::from_millis(900) && left <= Duration::from_secs(1),
            "{left:?}"
        );
    }
    assert_eq!(
        f.call(Sysno::futex, [M, 9, 0, 0, 0, 0]),
        neg(libc::EINVAL),
        "bitset 0"
    );
    assert_eq!(
        f.call(Sysno::futex, [M, 1 | 256, 1, 0, 0, 0]),
        neg(libc::ENOSYS)
    );
    assert_eq!(
        f.call(Sysno::futex, [M, 6, 1, 0, 0, 0]),
        neg(libc::ENOSYS),
        "LOCK_PI"
    );
}

/// Main (tid 1) spawns a thread and blocks on futex `M`; the thread now runs.
fn main_waits_on_m(f: &mut Fixture) -> Tid {
    let Flow::Spawned(k) = flow(f, Sysno::clone, [PTHREAD, M + 0x8000, 0, M + 0x40, 0, 0]) else {
        panic!()
    };
    f.mem.write(M, &0u32.to_le_bytes()).unwrap();
    let Flow::Block(b) = flow(f, Sysno::futex, [M, 128, 0, 0, 0, 0]) else {
        panic!()
    };
    f.proc.tasks.block_current(
        b,
        crate::tasks::Call {
            nr: 202,
            args: [0; 6],
        },
    );
    assert!(
        matches!(f.proc.tasks.next(Instant::now()), crate::tasks::Next::Run { tid, .. } if tid == k)
    );
    k
}

#[test]
fn wake_requeue_and_wake_op_reach_the_waiter() {
    let mut f = Fixture::new();
    main_waits_on_m(&mut f);
    assert_eq!(
        f.call(Sysno::futex, [M + 4, 1, 1, 0, 0, 0]),
        0,
        "other word"
    );
    // CMP_REQUEUE with a stale value fails; with the right one moves main to M+4.
    assert_eq!(
        f.call(Sysno::futex, [M, 4, 0, 1, M + 4, 9]),
        neg(libc::EAGAIN)
    );
    assert_eq!(f.call(Sysno::futex, [M, 4, 0, 1, M + 4, 0]), 1);
    assert_eq!(
        f.call(Sysno::futex, [M, 1, 1, 0, 0, 0]),
        0,
        "nobody left on M"
    );
    // WAKE_OP: M+8 = 1 (SET), wake M (none), and M+4 when old == 0 (it was).
    f.mem.write(M + 8, &0u32.to_le_bytes()).unwrap();
    assert_eq!(
        f.call(Sysno::futex, [M + 4, 5, 0, 1, M + 8, 0x0000_1000]),
        0
    );
    f.proc.tasks.futex_requeue(M + 4, M + 8, 0, 1);
    // SET 2, wake M+8 when old (1) != 0: main wakes.
    assert_eq!(f.call(Sysno::futex, [M, 5, 1, 1, M + 8, 0x0100_2000]), 1);
    assert_eq!(f.mem.read_u32(M + 8).unwrap(), 2);
    assert!(matches!(
        f.proc.tasks.get(1).unwrap().state,
        State::Runnable(Resume::Return(0))
    ));
}

#[test]
fn thread_exit_clears_child_tid_wakes_the_joiner_and_runs_the_robust_list() {
    let mut f = Fixture::new();
    let k = main_waits_on_m(&mut f);
    // The thread holds a robust mutex whose word is at entry+0x10, with waiters.
    let (head, entry) = (M + 0x100, M + 0x200);
    f.mem.write_u64(head, entry).unwrap();
    f.mem.write_u64(head + 8, 0x10).unwrap();
    f.mem.write_u64(head + 16, 0).unwrap();
    f.mem.write_u64(entry, head).unwrap();
    f.mem
        .write(entry + 0x10, &(k | FUTEX_WAITERS).to_le_bytes())
        .unwrap();
    assert_eq!(f.call(Sysno::set_robust_list, [head, 24, 0, 0, 0, 0]), 0);
    assert_eq!(
        f.call(Sysno::set_robust_list, [head, 16, 0, 0, 0, 0]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        f.call(Sysno::get_robust_list, [0, M + 0x300, M + 0x308, 0, 0, 0]),
        0
    );
    assert_eq!(f.mem.read_u64(M + 0x300).unwrap(), head);
    // The joiner waits on clear_child_tid (M + 0x40) instead of M: requeue it there.
    f.mem.write(M + 0x40, &k.to_le_bytes()).unwrap();
    f.proc.tasks.futex_requeue(M, M + 0x40, 0, 1);
    assert_eq!(f.call(Sysno::gettid, [0; 6]), i64::from(k));
    assert!(matches!(
        flow(&mut f, Sysno::exit, [0; 6]),
        Flow::ThreadExited
    ));
    assert_eq!(f.mem.read_u32(M + 0x40).unwrap(), 0);
    assert_eq!(
        f.mem.read_u32(entry + 0x10).unwrap(),
        FUTEX_WAITERS | FUTEX_OWNER_DIED
    );
    assert!(matches!(
        f.proc.tasks.get(1).unwrap().state,
        State::Runnable(Resume::Return(0))
    ));
    // Back on main, alone: exit ends the process.
    assert!(matches!(
        f.proc.tasks.next(Instant::now()),
        crate::tasks::Next::Run { tid: 1, .. }
    ));
    assert!(matches!(
        flow(&mut f, Sysno::exit, [3, 0, 0, 0, 0, 0]),
        Flow::Stop(Stop::Exited(3))
    ));
}

#[test]
fn identity_yield_and_thread_signals() {
    let mut f = Fixture::new();
    assert_eq!(f.call(Sysno::gettid, [0; 6]), 1);
    assert_eq!(f.call(Sysno::set_tid_address, [M, 0, 0, 0, 0, 0]), 1);
    assert_eq!(f.call(Sysno::sched_yield, [0; 6]), 0, "alone: no switch");
    let Flow::Spawned(k) = flow(&mut f, Sysno::clone, [PTHREAD, M, 0, 0, 0, 0]) else {
        panic!()
    };
    assert!(matches!(
        flow(&mut f, Sysno::sched_yield, [0; 6]),
        Flow::Yield
    ));
    assert_eq!(f.call(Sysno::tgkill, [1, u64::from(k), 0, 0, 0, 0]), 0);
    assert_eq!(f.call(Sysno::tgkill, [1, 99, 0, 0, 0, 0]), neg(libc::ESRCH));
    assert_eq!(f.call(Sysno::tgkill, [2, 1, 0, 0, 0, 0]), neg(libc::ESRCH));
    assert!(matches!(
        flow(&mut f, Sysno::tkill, [u64::from(k), 6, 0, 0, 0, 0]),
        Flow::Stop(Stop::Fatal(m)) if m.contains("SIGABRT")
    ));
    assert!(matches!(
        flow(&mut f, Sysno::exit_group, [4, 0, 0, 0, 0, 0]),
        Flow::Stop(Stop::Exited(4))
    ));
}

#[test]
fn refusal_log_memory_is_bounded() {
    // Every distinct odd clone flag set is a distinct message; the host-global set of
    // logged refusals must not grow with them.
    let mut f = Fixture::new();
    for i in 0..(2 * MAX_WARNED as u64) {
        let flags = PTHREAD | (1 << 33) | (i << 40);
        assert_eq!(
            f.call(Sysno::clone, [flags, M + 0x8000, 0, 0, 0, 0]),
            neg(errno::EINVAL)
        );
    }
    let n = WARNED.lock().map(|s| s.len()).unwrap_or(0);
    assert!(n <= MAX_WARNED, "{n} refusals remembered");
}

#[test]
fn an_exited_thread_leaves_no_name_behind() {
    let mut f = Fixture::new();
    let k = main_waits_on_m(&mut f);
    f.mem.write(M + 0x500, b"worker\0").unwrap();
    assert_eq!(f.call(Sysno::prctl, [15, M + 0x500, 0, 0, 0, 0]), 0);
    assert!(f.proc.thread_names.contains_key(&k));
    assert!(matches!(
        flow(&mut f, Sysno::exit, [0; 6]),
        Flow::ThreadExited
    ));
    assert!(
        !f.proc.thread_names.contains_key(&k),
        "the dead thread's name is dropped"
    );
}
