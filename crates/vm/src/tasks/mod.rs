//! Guest threads on the VM's single vCPU.
//!
//! kvmjs has one vCPU per VM, so guest threads are cooperative tasks: a task runs until it
//! makes a system call that blocks (futex wait, a read with nothing to read, a sleep), yields
//! or exits; the host then saves its registers here and loads the next runnable task's.
//! Scheduling is FIFO round robin over a run queue, so the same inputs (the same wakes, the
//! same timeouts) always give the same interleaving.
//!
//! Everything here is plain data inside [`crate::process::Process`]: it is cloned into the
//! snapshot and back on reset, so threads blocked when the guest paused for its snapshot are
//! blocked again, at the same point, after every reset. The thread that paused is the
//! current task in the snapshot and is the one that resumes with the next request (deno:
//! its main thread); the others run only when it blocks. A timed wait that was pending at
//! the snapshot has a deadline in the past after a reset, so it times out at the next
//! switch, as it would on Linux after that much time.
//!
//! The current task's FS base, signal mask and alternate signal stack live in the
//! `Process` fields the system calls already use (`fs_base`, `signals`); a task's own copy
//! is only meaningful while it is not running ([`save_current`], [`enter`]).

pub mod futex;
pub(crate) mod switch;

use crate::process::Process;
use crate::syscalls::{Args, Flow};
use kvm_bindings::kvm_regs;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// A thread id. The first thread's id is 1, which is also the process id.
pub type Tid = u32;

/// Most threads alive at once (clone answers -EAGAIN beyond): deno starts about 7.
pub const MAX_THREADS: usize = 64;

/// The first thread.
pub const MAIN_TID: Tid = 1;

/// Errors from task-table operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    /// Too many threads alive.
    #[error("the guest already has {MAX_THREADS} threads (the most kvmjs runs in one VM); join some before starting more")]
    TooMany,
}

/// What a blocked task waits for. Tasks blocked on a key become runnable when some system
/// call wakes that key ([`Tasks::notify`], futex wake).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WaitKey {
    /// A futex word at guest address `addr`; FUTEX_WAKE_BITSET wakes waiters whose
    /// `bitset` shares a bit with its own (plain FUTEX_WAIT uses all ones).
    Futex {
        /// Guest address of the 32-bit word.
        addr: u64,
        /// Wake mask.
        bitset: u32,
    },
    /// An open file description (eventfd, socket, epoll instance, ...): the number is
    /// whatever the fd layer chooses, as long as it is stable for that object.
    File(u64),
}

impl fmt::Display for WaitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitKey::Futex { addr, .. } => write!(f, "futex {addr:#x}"),
            WaitKey::File(id) => write!(f, "file object {id}"),
        }
    }
}

/// What a blocked call does when its task runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Resume {
    /// The call returns this value (RAX).
    Return(u64),
    /// The handler runs again with the same arguments, in the same task (it may block
    /// again).
    Retry,
}

/// A blocking system call's request to the scheduler (see `Flow::Block`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    /// Keys that wake the task early; empty: only the deadline ends the wait.
    pub keys: Vec<WaitKey>,
    /// When the wait ends by itself (host monotonic clock); `None`: never. A host instant
    /// means nothing in another process: snapshot files refuse it (crate::persist).
    #[serde(with = "crate::persist::state::no_deadline")]
    pub deadline: Option<Instant>,
    /// What the call does when a key wakes it.
    pub on_wake: Resume,
    /// What the call does at the deadline.
    pub on_timeout: Resume,
}

impl Block {
    /// Waits for any of `keys`, then re-runs the handler; at `deadline` (if any) re-runs
    /// it too (the handler then sees its own deadline has passed).
    pub fn retry(keys: Vec<WaitKey>, deadline: Option<Instant>) -> Block {
        Block {
            keys,
            deadline,
            on_wake: Resume::Retry,
            on_timeout: Resume::Retry,
        }
    }

    /// Sleeps until `deadline`, then returns `v`.
    pub fn sleep(deadline: Instant, v: u64) -> Block {
        Block {
            keys: Vec::new(),
            deadline: Some(deadline),
            on_wake: Resume::Return(v),
            on_timeout: Resume::Return(v),
        }
    }
}

/// The system call a blocked task is in: re-dispatched on [`Resume::Retry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Call {
    /// System call number.
    pub nr: u64,
    /// Its arguments.
    pub args: Args,
}

/// A task's scheduling state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// On the vCPU (the current task).
    Running,
    /// In the run queue; continues as said.
    Runnable(Resume),
    /// Waiting; `seq` orders waiters (first blocked, first woken).
    Blocked {
        /// What it waits for.
        block: Block,
        /// The call it is in.
        call: Call,
        /// Global blocking order.
        seq: u64,
    },
    /// Ended; removed at the next switch.
    Exited,
}

/// The vCPU's XSAVE area (KVM_GET_XSAVE's 4096 bytes) of a task that is not running.
pub type Xsave = Arc<[u32; 1024]>;

/// One guest thread.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Task {
    /// Its id.
    pub tid: Tid,
    /// Scheduling state.
    pub state: State,
    /// Ring-3 registers to continue with (RIP, RFLAGS and RSP included); valid while the
    /// task is not running.
    pub regs: kvm_regs,
    /// FS base while not running (the running task's is `Process::fs_base`).
    pub fs_base: u64,
    /// FPU/SSE/AVX state while not running; `None` until it first leaves the vCPU.
    #[serde(with = "crate::persist::state::xsave")]
    pub xsave: Option<Xsave>,
    /// Signal mask while not running.
    pub sigmask: u64,
    /// sigaltstack while not running.
    pub altstack: [u8; 24],
    /// CLONE_CHILD_CLEARTID / set_tid_address: zeroed and futex-woken at exit.
    pub clear_child_tid: u64,
    /// set_robust_list head (0: none).
    pub robust_list: u64,
    /// The call to re-run when it was woken with [`Resume::Retry`].
    retry: Option<Call>,
}

impl Task {
    fn new(tid: Tid, state: State) -> Task {
        Task {
            tid,
            state,
            regs: kvm_regs::default(),
            fs_base: 0,
            xsave: None,
            sigmask: 0,
            altstack: crate::process::Signals::default().altstack,
            clear_child_tid: 0,
            robust_list: 0,
            retry: None,
        }
    }
}

/// What the scheduler decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Run `tid`, which continues as `resume` (for [`Resume::Retry`] with `call`).
    Run {
        /// The task, now current.
        tid: Tid,
        /// How it continues.
        resume: Resume,
        /// The call to re-run for [`Resume::Retry`].
        call: Option<Call>,
    },
    /// Every task is blocked; the first deadline is at this instant.
    SleepUntil(Instant),
    /// Every task is blocked and none has a deadline: what each waits on.
    Deadlock(String),
}

/// The task table and run queue.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Tasks {
    tasks: BTreeMap<Tid, Task>,
    current: Tid,
    runq: VecDeque<Tid>,
    next_tid: Tid,
    seq: u64,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// One task, [`MAIN_TID`], running.
    pub fn new() -> Tasks {
        let mut tasks = BTreeMap::new();
        tasks.insert(MAIN_TID, Task::new(MAIN_TID, State::Running));
        Tasks {
            tasks,
            current: MAIN_TID,
            runq: VecDeque::new(),
            next_tid: MAIN_TID + 1,
            seq: 0,
        }
    }

    /// The task on the vCPU (or the one that just trapped).
    pub fn current(&self) -> Tid {
        self.current
    }

    /// Threads alive.
    pub fn alive(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| t.state != State::Exited)
            .count()
    }

    /// A task by id.
    pub fn get(&self, tid: Tid) -> Option<&Task> {
        self.tasks.get(&tid).filter(|t| t.state != State::Exited)
    }

    /// A task by id, mutably.
    pub fn get_mut(&mut self, tid: Tid) -> Option<&mut Task> {
        self.tasks
            .get_mut(&tid)
            .filter(|t| t.state != State::Exited)
    }

    /// The current task.
    pub fn current_task(&mut self) -> &mut Task {
        self.tasks
            .get_mut(&self.current)
            .expect("the current task is in the table")
    }

    /// Whether another task is waiting to run.
    pub fn has_runnable(&self) -> bool {
        !self.runq.is_empty()
    }

    /// A new task, runnable at the back of the queue, continuing from a clone with RAX=0.
    /// Its registers, FS base and vector state are the caller's to fill in.
    pub fn spawn(&mut self) -> Result<Tid, TaskError> {
        if self.alive() >= MAX_THREADS {
            return Err(TaskError::TooMany);
        }
        // Ids are never reused within a run: a stale tid then names no task at all.
        let tid = self.next_tid;
        self.next_tid += 1;
        self.tasks
            .insert(tid, Task::new(tid, State::Runnable(Resume::Return(0))));
        self.runq.push_back(tid);
        Ok(tid)
    }

    /// Undoes [`Tasks::spawn`] when the clone fails afterwards.
    pub fn unspawn(&mut self, tid: Tid) {
        self.runq.retain(|&t| t != tid);
        self.tasks.remove(&tid);
    }

    /// The current task blocks in `call`.
    pub fn block_current(&mut self, block: Block, call: Call) {
        self.seq += 1;
        let seq = self.seq;
        self.current_task().state = State::Blocked { block, call, seq };
    }

    /// The current task goes to the back of the run queue; its call returns `v`.
    pub fn yield_current(&mut self, v: u64) {
        self.current_task().state = State::Runnable(Resume::Return(v));
        let cur = self.current;
        self.runq.push_back(cur);
    }

    /// The current task has ended.
    pub fn exit_current(&mut self) {
        self.current_task().state = State::Exited;
    }

    /// Wakes up to `n` tasks blocked on a key for which `matches` holds, oldest waiter
    /// first; they join the run queue in that order. Returns how many woke.
    pub fn wake_where(&mut self, n: usize, matches: impl Fn(&WaitKey) -> bool) -> usize {
        let mut hits: Vec<(u64, Tid)> = self
            .tasks
            .values()
            .filter_map(|t| match &t.state {
                State::Blocked { block, seq, .. } if block.keys.iter().any(&matches) => {
                    Some((*seq, t.tid))
                }
                _ => None,
            })
            .collect();
        hits.sort_unstable();
        hits.truncate(n);
        for &(_, tid) in &hits {
            self.make_runnable(tid, |b| b.on_wake);
        }
        hits.len()
    }

    /// Whether a task is blocked on `key`.
    pub fn any_blocked_on(&self, key: &WaitKey) -> bool {
        self.tasks
            .values()
            .any(|t| matches!(&t.state, State::Blocked { block, .. } if block.keys.contains(key)))
    }

    /// Wakes every task blocked on `key`; handlers use [`notify`], which also marks the
    /// process changed. Returns how many woke.
    pub fn notify(&mut self, key: &WaitKey) -> usize {
        self.wake_where(usize::MAX, |k| k == key)
    }

    fn make_runnable(&mut self, tid: Tid, how: impl Fn(&Block) -> Resume) {
        let t = self.tasks.get_mut(&tid).expect("woken task exists");
        if let State::Blocked { block, call, .. } = &t.state {
            let resume = how(block);
            t.retry = (resume == Resume::Retry).then_some(*call);
            t.state = State::Runnable(resume);
            self.runq.push_back(tid);
        }
    }

    /// The keys of blocked tasks, oldest waiter first (for futex requeue).
    fn blocked_keys_mut(&mut self) -> Vec<(u64, &mut Vec<WaitKey>)> {
        let mut v: Vec<(u64, &mut Vec<WaitKey>)> = self
            .tasks
            .values_mut()
            .filter_map(|t| match &mut t.state {
                State::Blocked { block, seq, .. } => Some((*seq, &mut block.keys)),
                _ => None,
            })
            .collect();
        v.sort_unstable_by_key(|(s, _)| *s);
        v
    }

    /// Times out blocked tasks whose deadline is not after `now` (earliest deadline
    /// first), then takes the next task from the run queue and makes it current.
    pub fn next(&mut self, now: Instant) -> Next {
        let mut due: Vec<(Instant, u64, Tid)> = self
            .tasks
            .values()
            .filter_map(|t| match &t.state {
                State::Blocked {
                    block:
                        Block {
                            deadline: Some(d), ..
                        },
                    seq,
                    ..
                } if *d <= now => Some((*d, *seq, t.tid)),
                _ => None,
            })
            .collect();
        due.sort_unstable();
        for (_, _, tid) in due {
            self.make_runnable(tid, |b| b.on_timeout);
        }
        self.tasks.retain(|_, t| t.state != State::Exited);
        while let Some(tid) = self.runq.pop_front() {
            let Some(t) = self.tasks.get_mut(&tid) else {
                continue;
            };
            let State::Runnable(resume) = t.state else {
                continue;
            };
            t.state = State::Running;
            let call = t.retry.take();
            self.current = tid;
            return Next::Run { tid, resume, call };
        }
        let first = self
            .tasks
            .values()
            .filter_map(|t| match &t.state {
                State::Blocked { block, .. } => block.deadline,
                _ => None,
            })
            .min();
        match first {
            Some(at) => Next::SleepUntil(at),
            None => Next::Deadlock(self.describe_blocked()),
        }
    }

    /// "thread 1 in futex on futex 0x1000; thread 2 in read on file object 3".
    pub fn describe_blocked(&self) -> String {
        let parts: Vec<String> = self
            .tasks
            .values()
            .filter_map(|t| match &t.state {
                State::Blocked { block, call, .. } => {
                    let name = syscalls::Sysno::new(call.nr as usize).map_or("?", |s| s.name());
                    let on: Vec<String> = block.keys.iter().map(ToString::to_string).collect();
                    let on = if on.is_empty() {
                        "nothing".to_string()
                    } else {
                        on.join(" or ")
                    };
                    Some(format!("thread {} in {name} waiting on {on}", t.tid))
                }
                _ => None,
            })
            .collect();
        parts.join("; ")
    }
}

/// Wakes every thread blocked on `key` (what the fd layer calls when the object behind
/// `key` may have become ready: data written, a peer closed, ...). Returns how many woke.
/// Marks `proc` changed, so a reset restores the snapshot's task states.
pub fn notify(proc: &mut Process, key: &WaitKey) -> usize {
    let n = proc.tasks.notify(key);
    proc.changed |= n > 0;
    n
}

/// What the run loop does with a handler's `flow` for `call`, without a vCPU (registers
/// and vector state are not moved; a [`Resume::Retry`] call is not re-run): for the fuzzer
/// and tests, so the scheduler sees arbitrary call sequences. Time jumps to the next
/// deadline instead of passing. Returns false where the run would stop.
pub fn apply_without_vcpu(proc: &mut Process, flow: Flow, call: Call, mut now: Instant) -> bool {
    let regs = proc.tasks.current_task().regs;
    match flow {
        Flow::Return(_) | Flow::Spawned(_) => return true,
        Flow::Stop(_) => return false,
        Flow::Yield => {
            save_current(proc, &regs);
            proc.tasks.yield_current(0);
        }
        Flow::Block(b) => {
            save_current(proc, &regs);
            proc.tasks.block_current(b, call);
        }
        Flow::ThreadExited => {}
    }
    loop {
        match proc.tasks.next(now) {
            Next::Run { tid, .. } => {
                enter(proc, tid);
                return true;
            }
            Next::SleepUntil(at) => now = at,
            Next::Deadlock(_) => return false,
        }
    }
}

/// Saves the current task's context (its registers `regs`, and the per-thread fields of
/// `proc`) into its table entry, before it blocks, yields or is switched away from.
pub fn save_current(proc: &mut Process, regs: &kvm_regs) {
    let (fs, mask, alt) = (proc.fs_base, proc.signals.mask, proc.signals.altstack);
    let t = proc.tasks.current_task();
    t.regs = *regs;
    t.fs_base = fs;
    t.sigmask = mask;
    t.altstack = alt;
    proc.changed = true;
}

/// Makes the (already current) task `tid`'s per-thread fields the process's; returns its
/// registers and saved vector state.
pub fn enter(proc: &mut Process, tid: Tid) -> (kvm_regs, Option<Xsave>) {
    let t = proc
        .tasks
        .get(tid)
        .expect("the scheduler picked a live task");
    let (regs, fs, mask, alt, x) = (t.regs, t.fs_base, t.sigmask, t.altstack, t.xsave.clone());
    proc.fs_base = fs;
    proc.signals.mask = mask;
    proc.signals.altstack = alt;
    proc.changed = true;
    (regs, x)
}

#[cfg(test)]
mod tests;
