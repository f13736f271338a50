//! A pool's VMs and how the pool grows: VMs forked from the program's snapshot, each on
//! its own thread, counted until their thread ends.

use super::{serve, Activity, Cause, Job};
use crate::metrics::Metrics;
use kvmjs_vm::{Snapshot, Vm};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A pool's VMs: started at pool start (`start_vms`), and forked from the snapshot when
/// a request waited [`GROW_AFTER`] without a VM taking it, up to `concurrency`.
pub(super) struct Vms {
    pub(super) snap: Arc<Snapshot>,
    /// Weak: the queue's receivers are the VMs' own, so that when the last VM is gone
    /// sends fail and the next request boots the program again.
    pub(super) rx: async_channel::WeakReceiver<Job>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) activity: Arc<Activity>,
    pub(super) name: String,
    pub(super) max: usize,
    /// VMs running or starting (each VM thread takes itself off when it ends).
    pub(super) count: Arc<AtomicUsize>,
    /// When a fork last failed: no new try for [`GROW_RETRY`].
    pub(super) failed: std::sync::Mutex<Option<Instant>>,
    /// Their threads; `None` once the pool stopped (no VM starts after that).
    pub(super) threads: std::sync::Mutex<Option<Vec<std::thread::JoinHandle<()>>>>,
}

/// How long a request waits for a VM before the pool forks another: far longer than a
/// VM's reset (tens of µs) and than a busy host's scheduling delays, so a client sending
/// its next request the moment it has the previous answer does not grow the pool; short
/// next to a fork (~4 ms for hello here).
pub(super) const GROW_AFTER: Duration = Duration::from_millis(10);
/// Pause after a failed fork before the pool tries again.
const GROW_RETRY: Duration = Duration::from_secs(1);

/// Counts a VM thread in [`Vms::count`] until it ends, however it ends.
pub(super) struct Counted(pub(super) Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Vms {
    /// Whether the pool may still grow.
    pub(super) fn can_grow(&self) -> bool {
        self.count.load(Ordering::SeqCst) < self.max
    }

    /// A request waited for a VM: forks one more, unless the pool has `concurrency` VMs
    /// or a fork failed moments ago.
    pub(super) fn grow(self: &Arc<Self>) {
        let recent = |t: &Option<Instant>| t.is_some_and(|t| t.elapsed() < GROW_RETRY);
        if recent(&self.failed.lock().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let max = self.max;
        let counted = self
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        if let Ok(n) = counted {
            self.fork(n, true);
        }
    }

    /// Starts VM `i` (already counted) on its own thread, forked from the snapshot;
    /// `growth`: a waiting request asked for it (cause pool_growth).
    pub(super) fn fork(self: &Arc<Self>, i: usize, growth: bool) {
        let counted = Counted(self.count.clone());
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(list), Some(rx)) = (threads.as_mut(), self.rx.upgrade()) else {
            return; // stopped, or every VM is gone (the next request boots again)
        };
        let me = self.clone();
        let t0 = Instant::now();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-vm{i}", self.name))
            .spawn(move || {
                let _counted = counted;
                match Vm::from_snapshot(me.snap.clone()) {
                    Ok(vm) => {
                        let stopped = me.threads.lock().map_or(true, |t| t.is_none());
                        if growth && !stopped {
                            me.metrics.cold_start(
                                &me.name,
                                t0.elapsed(),
                                Cause::PoolGrowth.label(),
                            );
                        }
                        let (m, a) = (me.metrics.clone(), me.activity.clone());
                        serve(vm, me.snap.clone(), rx, m, a);
                    }
                    Err(e) => {
                        *me.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                        tracing::error!(program = %me.name, "cannot fork VM {i}: {e}");
                    }
                }
            });
        match spawned {
            Ok(t) => list.push(t),
            Err(e) => tracing::error!(program = %self.name, "cannot start a VM thread: {e}"),
        }
    }
}
