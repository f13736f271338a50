//! The scheduler and futex model without KVM.

use super::futex::{self, MATCH_ANY};
use super::*;
use std::time::Duration;

fn call(nr: u64) -> Call {
    Call { nr, args: [0; 6] }
}

fn futex_block(addr: u64, deadline: Option<Instant>) -> Block {
    Block {
        keys: vec![futex::key(addr, MATCH_ANY)],
        deadline,
        on_wake: Resume::Return(0),
        on_timeout: Resume::Return(-110i64 as u64),
    }
}

fn run(t: &mut Tasks) -> (Tid, Resume) {
    match t.next(Instant::now()) {
        Next::Run { tid, resume, .. } => (tid, resume),
        other => panic!("expected a runnable task, got {other:?}"),
    }
}

/// Main spawns three threads; each blocks on a futex in turn.
fn three_waiters(t: &mut Tasks) -> Vec<Tid> {
    let kids: Vec<Tid> = (0..3).map(|_| t.spawn().unwrap()).collect();
    t.block_current(futex_block(0x2000, None), call(202)); // main waits elsewhere
    for &k in &kids {
        assert_eq!(run(t), (k, Resume::Return(0)));
        t.block_current(futex_block(0x1000, None), call(202));
    }
    kids
}

#[test]
fn spawned_tasks_run_in_fifo_order_after_the_parent_blocks() {
    let mut t = Tasks::new();
    assert_eq!(t.current(), MAIN_TID);
    let a = t.spawn().unwrap();
    let b = t.spawn().unwrap();
    assert_eq!((a, b), (2, 3));
    assert_eq!(t.current(), MAIN_TID, "spawning does not switch");
    t.yield_current(0);
    assert_eq!(run(&mut t).0, a);
    t.yield_current(0);
    assert_eq!(run(&mut t).0, b);
    t.yield_current(0);
    assert_eq!(run(&mut t).0, MAIN_TID);
}

#[test]
fn futex_wake_takes_oldest_waiters_first() {
    let mut t = Tasks::new();
    let kids = three_waiters(&mut t);
    assert!(t.futex_has_waiters(0x1000));
    assert_eq!(t.futex_wake(0x1000, 2, MATCH_ANY), 2);
    assert_eq!(run(&mut t), (kids[0], Resume::Return(0)));
    t.block_current(futex_block(0x3000, None), call(202));
    assert_eq!(run(&mut t), (kids[1], Resume::Return(0)));
    assert_eq!(
        t.futex_wake(0x1000, 5, MATCH_ANY),
        1,
        "only kids[2] is left"
    );
    assert_eq!(t.futex_wake(0x1000, 5, MATCH_ANY), 0);
}

#[test]
fn wake_bitset_only_wakes_matching_waiters() {
    let mut t = Tasks::new();
    let k = t.spawn().unwrap();
    t.block_current(
        Block {
            keys: vec![futex::key(0x1000, 0b01)],
            ..futex_block(0, None)
        },
        call(202),
    );
    assert_eq!(run(&mut t).0, k);
    assert_eq!(t.futex_wake(0x1000, 1, 0b10), 0);
    assert_eq!(t.futex_wake(0x1004, 1, MATCH_ANY), 0, "other address");
    assert_eq!(t.futex_wake(0x1000, 1, 0b11), 1);
}

#[test]
fn requeue_moves_the_rest_to_the_second_word() {
    let mut t = Tasks::new();
    let kids = three_waiters(&mut t);
    // Wake one, move one: the third stays on 0x1000.
    assert_eq!(t.futex_requeue(0x1000, 0x5000, 1, 1), 2);
    assert_eq!(t.futex_wake(0x1000, 9, MATCH_ANY), 1);
    assert_eq!(t.futex_wake(0x5000, 9, MATCH_ANY), 1);
    let order: Vec<Tid> = (0..3)
        .map(|_| {
            let (tid, _) = run(&mut t);
            t.block_current(futex_block(0x9000, None), call(202));
            tid
        })
        .collect();
    assert_eq!(
        order,
        vec![kids[0], kids[2], kids[1]],
        "wake order: FIFO of wakes"
    );
}

#[test]
fn timeouts_fire_earliest_first_and_sleep_is_reported() {
    let mut t = Tasks::new();
    let now = Instant::now();
    let (late, early) = (now + Duration::from_secs(60), now + Duration::from_secs(30));
    let k = t.spawn().unwrap();
    t.block_current(futex_block(0x1000, Some(late)), call(202));
    assert_eq!(run(&mut t).0, k);
    t.block_current(futex_block(0x1000, Some(early)), call(202));
    assert_eq!(t.next(now), Next::SleepUntil(early));
    match t.next(late) {
        Next::Run { tid, resume, .. } => {
            assert_eq!(tid, k, "the earlier deadline times out first");
            assert_eq!(resume, Resume::Return(-110i64 as u64));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deadlock_names_every_thread_and_what_it_waits_on() {
    let mut t = Tasks::new();
    let k = t.spawn().unwrap();
    t.block_current(futex_block(0x1000, None), call(202));
    assert_eq!(run(&mut t).0, k);
    t.block_current(Block::retry(vec![WaitKey::File(7)], None), call(0));
    match t.next(Instant::now()) {
        Next::Deadlock(m) => {
            assert!(
                m.contains("thread 1 in futex waiting on futex 0x1000"),
                "{m}"
            );
            assert!(
                m.contains("thread 2 in read waiting on file object 7"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn retry_hands_back_the_blocked_call_and_notify_wakes_all() {
    let mut t = Tasks::new();
    let k = t.spawn().unwrap();
    let c = Call {
        nr: 232,
        args: [3, 0x1000, 8, u64::MAX, 0, 0],
    };
    t.block_current(Block::retry(vec![WaitKey::File(3)], None), c);
    assert_eq!(run(&mut t).0, k);
    t.block_current(Block::retry(vec![WaitKey::File(3)], None), call(0));
    assert_eq!(t.notify(&WaitKey::File(4)), 0);
    assert_eq!(t.notify(&WaitKey::File(3)), 2);
    assert_eq!(
        t.next(Instant::now()),
        Next::Run {
            tid: MAIN_TID,
            resume: Resume::Retry,
            call: Some(c)
        }
    );
}

#[test]
fn exited_tasks_leave_and_the_limit_holds() {
    let mut t = Tasks::new();
    let mut kids = Vec::new();
    while let Ok(k) = t.spawn() {
        kids.push(k);
    }
    assert_eq!(t.alive(), MAX_THREADS);
    assert_eq!(t.spawn(), Err(TaskError::TooMany));
    t.block_current(futex_block(0x1000, None), call(202));
    assert_eq!(run(&mut t).0, kids[0]);
    t.exit_current();
    assert_eq!(t.alive(), MAX_THREADS - 1);
    assert_eq!(run(&mut t).0, kids[1]);
    assert!(t.get(kids[0]).is_none());
    let fresh = t.spawn().unwrap();
    assert!(fresh > *kids.last().unwrap(), "tids are not reused");
}

#[test]
fn same_inputs_give_the_same_interleaving() {
    fn script() -> Vec<Tid> {
        let mut t = Tasks::new();
        let mut trace = Vec::new();
        for _ in 0..4 {
            t.spawn().unwrap();
        }
        for round in 0..40u64 {
            let cur = t.current();
            trace.push(cur);
            match round % 4 {
                0 => t.yield_current(0),
                1 => {
                    t.futex_wake(0x1000, 1, MATCH_ANY);
                    t.block_current(futex_block(0x1000, None), call(202));
                }
                2 => {
                    t.futex_requeue(0x1000, 0x2000, 1, 1);
                    t.futex_wake(0x2000, 2, MATCH_ANY);
                    t.yield_current(0);
                }
                _ => {
                    t.futex_wake(0x1000, 3, MATCH_ANY);
                    t.yield_current(0);
                }
            }
            match t.next(Instant::now()) {
                Next::Run { .. } => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        trace
    }
    let a = script();
    assert_eq!(a, script());
    assert!(a.iter().collect::<std::collections::HashSet<_>>().len() == 5);
}

#[test]
fn wake_op_decodes_linux_encodings() {
    // glibc's FUTEX_OP_CLEAR_WAKE_IF_GT_ONE: set 0, wake if old > 1.
    let enc = 4 << 24; // operation 0 (SET), comparison 4 (GT)
    assert_eq!(futex::wake_op(enc | 1, 2), Some((0, true)));
    assert_eq!(futex::wake_op(enc | 1, 1), Some((0, false)));
    // ADD 5, compare EQ 3.
    let add = (1 << 28) | (5 << 12) | 3;
    assert_eq!(futex::wake_op(add, 3), Some((8, true)));
    // OR with (1 << 4) via the shift flag.
    assert_eq!(
        futex::wake_op((8 << 28) | (2 << 28) | (4 << 12), 1),
        Some((17, false))
    );
    assert_eq!(futex::wake_op(7 << 28, 0), None, "unknown operation");
    assert_eq!(futex::wake_op(6 << 24, 0), None, "unknown comparison");
}

#[test]
fn per_thread_fs_base_signal_mask_and_altstack_follow_the_switch() {
    let mut p = Process::new(0x60_0000, 64 << 20, 16 << 20, 1 << 20);
    p.fs_base = 0x1000;
    p.signals.mask = 0b1010;
    let k = p.tasks.spawn().unwrap();
    {
        let t = p.tasks.get_mut(k).unwrap();
        t.fs_base = 0x2000;
        t.regs.rip = 0x40_1000;
    }
    let main_regs = kvm_regs {
        rip: 0x40_2000,
        ..Default::default()
    };
    save_current(&mut p, &main_regs);
    p.tasks.yield_current(0);
    assert!(matches!(p.tasks.next(Instant::now()), Next::Run { tid, .. } if tid == k));
    let (regs, _) = enter(&mut p, k);
    assert_eq!(
        (regs.rip, p.fs_base, p.signals.mask),
        (0x40_1000, 0x2000, 0)
    );
    // The thread changes its own mask and altstack; main's are untouched.
    p.signals.mask = 0b1;
    p.signals.altstack[0] = 7;
    save_current(&mut p, &regs);
    p.tasks.yield_current(0);
    assert!(matches!(
        p.tasks.next(Instant::now()),
        Next::Run { tid: MAIN_TID, .. }
    ));
    let (regs, _) = enter(&mut p, MAIN_TID);
    assert_eq!(
        (regs.rip, p.fs_base, p.signals.mask),
        (0x40_2000, 0x1000, 0b1010)
    );
    assert_eq!(p.signals.altstack[0], 0);
    let t = p.tasks.get(k).unwrap();
    assert_eq!((t.sigmask, t.altstack[0]), (0b1, 7));
}
