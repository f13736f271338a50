//! The run loop's side of threads: carrying out what a handler's [`Flow`] asked for
//! (a new thread, a block, a yield, an exit) and switching the vCPU between threads.
//!
//! A switch costs no VM exit: the outgoing thread is already trapped in a system call.
//! Its general registers come from the trap (KVM_CAP_SYNC_REGS, no ioctl), the incoming
//! thread's go back the same way, and its FS base through the sync-regs system registers
//! (no ioctl). Only the FPU/SSE/AVX state costs ioctls (KVM_GET_XSAVE of the outgoing
//! thread, KVM_SET_XSAVE of the incoming one, ~5 µs each on PVM), and only when the
//! thread really changes: a single-threaded guest that blocks with a deadline (a sleep)
//! or yields continues without any.

use super::{enter, save_current, Call, Next, Resume};
use crate::cpu;
use crate::syscalls::{Args, Flow};
use crate::vm::{RequestError, Trap, Via, Vm};
use kvm_bindings::kvm_regs;
use std::sync::Arc;
use std::time::Instant;

/// A system call to run (again) on behalf of the thread now on the vCPU.
pub(crate) type Pending = (u64, Args, Trap);

impl Vm {
    /// Carries out a thread `flow` returned for call `nr(args)` that trapped as `trap`.
    /// Returns a call to re-run for the thread that now runs ([`Resume::Retry`]), if any;
    /// otherwise the vCPU is ready to continue.
    pub(crate) fn task_flow(
        &mut self,
        flow: Flow,
        nr: u64,
        args: Args,
        trap: Trap,
        deadline: Instant,
    ) -> Result<Option<Pending>, RequestError> {
        if trap.via == Via::Out {
            // A ring-3 `out` exit is completed by KVM at the next entry (it skips the
            // instruction), which would corrupt another thread's RIP.
            return Err(RequestError::Guest(
                "a thread operation arrived through the upstream `out` call form; threads need the `syscall` instruction".into(),
            ));
        }
        match flow {
            Flow::Spawned(tid) => {
                let x = Arc::new(self.machine.xsave_words()?);
                let t = self
                    .proc
                    .tasks
                    .get_mut(tid)
                    .expect("the clone handler spawned this task");
                // The child continues from the same system call, on its own stack, with 0.
                t.regs = kvm_regs {
                    rax: 0,
                    rsp: t.regs.rsp,
                    ..trap.cont
                };
                t.xsave = Some(x);
                self.resume(trap, u64::from(tid))?;
                Ok(None)
            }
            Flow::Yield => {
                save_current(&mut self.proc, &trap.cont);
                self.proc.tasks.yield_current(0);
                self.schedule(trap, deadline)
            }
            Flow::Block(b) => {
                save_current(&mut self.proc, &trap.cont);
                self.proc.tasks.block_current(b, Call { nr, args });
                self.schedule(trap, deadline)
            }
            Flow::ThreadExited => self.schedule(trap, deadline),
            Flow::Return(_) | Flow::Stop(_) => {
                unreachable!("the run loop handles Return and Stop itself")
            }
        }
    }

    /// Picks the next thread (sleeping while all are blocked with deadlines) and puts it
    /// on the vCPU. `trap` is the trap of the thread that just gave the vCPU up.
    fn schedule(&mut self, trap: Trap, deadline: Instant) -> Result<Option<Pending>, RequestError> {
        let prev = self.proc.tasks.current();
        loop {
            let now = Instant::now();
            match self.proc.tasks.next(now) {
                Next::Run { tid, resume, call } if tid == prev => {
                    // The same thread: the vCPU still holds all of its state.
                    enter(&mut self.proc, tid);
                    if let Some(c) = call {
                        return Ok(Some((c.nr, c.args, trap)));
                    }
                    let v = match resume {
                        Resume::Return(v) => v,
                        Resume::Retry => trap.cont.rax,
                    };
                    self.resume(trap, v)?;
                    return Ok(None);
                }
                Next::Run { tid, resume, call } => {
                    if let Some(p) = self.proc.tasks.get_mut(prev) {
                        p.xsave = Some(Arc::new(self.machine.xsave_words()?));
                    }
                    let (mut regs, xsave) = enter(&mut self.proc, tid);
                    if let Some(x) = xsave {
                        self.machine.set_xsave_words(&x)?;
                    }
                    if let Resume::Return(v) = resume {
                        regs.rax = v;
                    }
                    self.load_thread(&regs);
                    let trap = Trap {
                        via: Via::Syscall,
                        cont: regs,
                    };
                    return Ok(call.map(|c| (c.nr, c.args, trap)));
                }
                Next::SleepUntil(at) => {
                    if at >= deadline {
                        std::thread::sleep(deadline.saturating_duration_since(now));
                        return Err(RequestError::Timeout(self.cfg.max_request_time));
                    }
                    std::thread::sleep(at.saturating_duration_since(now));
                }
                Next::Deadlock(what) => {
                    return Err(RequestError::Guest(format!(
                        "all guest threads are blocked forever: {what}"
                    )))
                }
            }
        }
    }

    /// Puts a thread's ring-3 registers and FS base on the vCPU for the next entry, with
    /// no ioctl (KVM_CAP_SYNC_REGS). The vCPU is at a trap, so this also leaves the entry
    /// stub (ring 0 on VMX/SVM) straight for the thread's continuation in ring 3.
    fn load_thread(&mut self, regs: &kvm_regs) {
        self.machine.set_regs(regs);
        self.machine.set_sregs_at_entry(&cpu::user_sregs(
            &self.base_sregs,
            self.cr3,
            self.proc.fs_base,
        ));
        self.fs_applied = self.proc.fs_base;
    }
}
