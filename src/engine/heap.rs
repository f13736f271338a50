//! The QuickJS heap: libc's allocator with `--memory-limit` enforced here instead of by
//! QuickJS, so the engine knows when the heap ran out.
//!
//! QuickJS reports running out of memory by throwing an InternalError, or `null` when even
//! that error cannot be allocated; `throw null` in an app looks the same. [`Heap::exhausted`]
//! tells the two apart: it is set when an allocation is refused. After a refusal the heap
//! may grow by a small reserve beyond the limit, so that the error can be built and the
//! failure reported (a handler's `catch`, the 500 response) instead of failing again.

use rquickjs::allocator::Allocator;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
struct State {
    /// Bytes allocated (usable sizes).
    used: AtomicUsize,
    /// Limit in bytes (0: none).
    limit: usize,
    /// Extra bytes allowed once an allocation has been refused.
    reserve: usize,
    /// Whether an allocation was refused since the last [`Heap::reset`].
    exhausted: AtomicBool,
    /// Whether an out-of-memory exception was caught and reported (by reportError).
    reported: AtomicBool,
}

/// The allocator given to the QuickJS runtime; clones share the state.
#[derive(Clone, Debug)]
pub struct Heap(Arc<State>);

impl Heap {
    /// A heap limited to `limit` bytes (0: unlimited).
    pub fn new(limit: usize) -> Heap {
        Heap(Arc::new(State {
            used: AtomicUsize::new(0),
            limit,
            reserve: (limit / 16).clamp(256 << 10, 4 << 20),
            exhausted: AtomicBool::new(false),
            reported: AtomicBool::new(false),
        }))
    }

    /// Whether an allocation was refused since the last [`Heap::reset`].
    pub fn exhausted(&self) -> bool {
        self.0.exhausted.load(Ordering::Relaxed)
    }

    /// Starts a new request (or the app's load): forgets earlier refusals and the reserve.
    pub fn reset(&self) {
        self.0.exhausted.store(false, Ordering::Relaxed);
        self.0.reported.store(false, Ordering::Relaxed);
    }

    /// Notes that an out-of-memory exception was caught and only reported (in a timer
    /// callback, say): the request still fails as out of memory.
    pub fn report_out_of_memory(&self) {
        self.0.reported.store(true, Ordering::Relaxed);
    }

    /// Whether [`Heap::report_out_of_memory`] was called since the last [`Heap::reset`].
    pub fn out_of_memory_reported(&self) -> bool {
        self.0.reported.load(Ordering::Relaxed)
    }

    /// Bytes allocated now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Whether `extra` more bytes fit; a refusal marks the heap exhausted.
    fn admit(&self, extra: usize) -> bool {
        let s = &self.0;
        if s.limit == 0 {
            return true;
        }
        let cap = if self.exhausted() {
            s.limit + s.reserve
        } else {
            s.limit
        };
        let fits = s
            .used
            .load(Ordering::Relaxed)
            .checked_add(extra)
            .is_some_and(|n| n <= cap);
        if !fits {
            s.exhausted.store(true, Ordering::Relaxed);
        }
        fits
    }

    // The runtime is single-threaded: plain loads and stores keep the count exact.
    fn add(&self, n: usize) {
        let u = &self.0.used;
        u.store(u.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        let u = &self.0.used;
        u.store(
            u.load(Ordering::Relaxed).saturating_sub(n),
            Ordering::Relaxed,
        );
    }

    /// Counts a fresh block, or marks the heap exhausted when libc had none.
    fn took(&self, p: *mut libc::c_void) -> *mut u8 {
        if p.is_null() {
            self.0.exhausted.store(true, Ordering::Relaxed);
        } else {
            // SAFETY: `p` was just returned by libc's allocator.
            self.add(unsafe { libc::malloc_usable_size(p) });
        }
        p.cast()
    }
}

// SAFETY: every block comes from libc's malloc, calloc or realloc, which align to 16 bytes
// (more than `usize` needs); `usable_size` is libc's own answer for such a block.
unsafe impl Allocator for Heap {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(size) {
            return std::ptr::null_mut();
        }
        // SAFETY: plain libc allocation.
        self.took(unsafe { libc::malloc(size) })
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        match count.checked_mul(size) {
            Some(n) if self.admit(n) => {
                // SAFETY: plain libc allocation.
                self.took(unsafe { libc::calloc(count, size) })
            }
            _ => std::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: the caller passes a block from this allocator, i.e. from libc.
        self.sub(unsafe { libc::malloc_usable_size(ptr.cast()) });
        // SAFETY: as above; QuickJS frees each block once.
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        // SAFETY: the caller passes a block from this allocator, i.e. from libc.
        let old = unsafe { libc::malloc_usable_size(ptr.cast()) };
        if new_size == 0 {
            // SAFETY: as above.
            unsafe { self.dealloc(ptr) };
            return std::ptr::null_mut();
        }
        if new_size > old && !self.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above; on failure libc leaves the old block as it was.
        let p = unsafe { libc::realloc(ptr.cast(), new_size) };
        if p.is_null() {
            self.0.exhausted.store(true, Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        self.sub(old);
        self.took(p)
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller passes a block from this allocator, i.e. from libc.
        unsafe { libc::malloc_usable_size(ptr.cast()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_set_exhausted_and_open_the_reserve() {
        let mut h = Heap::new(1 << 20);
        let a = h.alloc(800 << 10);
        assert!(!a.is_null() && !h.exhausted());
        assert!(h.used() >= 800 << 10);
        assert!(h.alloc(400 << 10).is_null(), "beyond the limit");
        assert!(h.exhausted());
        // The reserve (256 KiB here) lets the error be built.
        let b = h.alloc(64 << 10);
        assert!(!b.is_null());
        assert!(h.alloc(512 << 10).is_null(), "beyond limit + reserve");
        // SAFETY: blocks from this allocator.
        unsafe {
            let a = h.realloc(a, 100);
            assert!(!a.is_null());
            h.dealloc(a);
            h.dealloc(b);
        }
        assert_eq!(h.used(), 0);
        h.reset();
        assert!(!h.exhausted());
    }

    #[test]
    fn no_limit_never_refuses() {
        let mut h = Heap::new(0);
        let p = h.calloc(1 << 10, 1 << 10);
        assert!(!p.is_null() && !h.exhausted());
        // SAFETY: a block from this allocator.
        unsafe { h.dealloc(p) };
    }
}
