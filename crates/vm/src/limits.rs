//! Time limits. A per-thread POSIX timer sends a real-time signal to the vCPU's own
//! thread; the handler sets `immediate_exit` in the thread's `kvm_run`, so KVM_RUN returns
//! EINTR whether the signal lands inside the guest or just before entering it. No watchdog
//! thread, no cross-thread hop.

use std::cell::{Cell, RefCell};
use std::sync::Once;
use std::time::Duration;

/// Errors setting up the timer.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// timer_create or the signal handler failed.
    #[error("cannot set up the request timer: {0}")]
    Timer(std::io::Error),
    /// Another handler owns the timer signal: another copy of this code (e.g. a
    /// different build of the VMOD, loaded by a newer VCL) runs in the process, and
    /// only one copy's handler can stop its VMs at their time limit.
    #[error("signal {0} (the request timer's) already has another handler: another copy of kvmjs, e.g. a different build of the VMOD, runs in this process; restart the process to load this one")]
    SignalTaken(libc::c_int),
}

/// Checks that the timer signal is free or already this copy's: requests of VMs this
/// copy runs could not be stopped at their time limit otherwise.
pub fn check_timer_signal() -> Result<(), LimitsError> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`.
    let rc = unsafe { libc::sigaction(signal_number(), std::ptr::null(), old.as_mut_ptr()) };
    if rc != 0 {
        return Err(LimitsError::Timer(std::io::Error::last_os_error()));
    }
    // SAFETY: sigaction succeeded and filled `old`.
    let handler = unsafe { old.assume_init() }.sa_sigaction;
    let ours = kick as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN || handler == ours {
        Ok(())
    } else {
        Err(LimitsError::SignalTaken(signal_number()))
    }
}

thread_local! {
    /// The `kvm_run` of the vCPU this thread is running, for the signal handler.
    static KVM_RUN: Cell<*mut kvm_bindings::kvm_run> = const { Cell::new(std::ptr::null_mut()) };
    static TIMER: RefCell<Option<ThreadTimer>> = const { RefCell::new(None) };
}

fn signal_number() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 2
}

extern "C" fn kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // `try_with` never allocates; a thread without a vCPU just ignores the signal.
    let _ = KVM_RUN.try_with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: the pointer is the mmap'd kvm_run of the vCPU this thread is
            // running (set by `arm`, cleared by `disarm` before the vCPU can go away);
            // a volatile byte store is async-signal-safe.
            unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
        }
    });
}

struct ThreadTimer {
    id: libc::timer_t,
}

impl ThreadTimer {
    fn new() -> Result<Self, LimitsError> {
        static HANDLER: Once = Once::new();
        let mut err = None;
        HANDLER.call_once(|| {
            if let Err(e) = vmm_sys_util::signal::register_signal_handler(signal_number(), kick) {
                err = Some(std::io::Error::from_raw_os_error(e.errno()));
            }
        });
        if let Some(e) = err {
            return Err(LimitsError::Timer(e));
        }
        // SAFETY: zeroed is a valid sigevent; the fields we need are set below.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = signal_number();
        // SAFETY: gettid has no preconditions.
        sev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a sigevent and a timer id.
        let rc = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
        if rc != 0 {
            return Err(LimitsError::Timer(std::io::Error::last_os_error()));
        }
        Ok(ThreadTimer { id })
    }

    fn set(&self, after: Duration) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            // A zero value would disarm instead of firing at once.
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(after.subsec_nanos().max(u32::from(after.is_zero()))),
            },
        };
        // SAFETY: `id` is a live timer of this thread; `spec` is valid.
        unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) };
    }

    fn clear(&self) {
        // SAFETY: as above; an all-zero value disarms.
        let spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        // SAFETY: `id` is a live timer of this thread.
        unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) };
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: `id` came from timer_create and is deleted once.
        unsafe { libc::timer_delete(self.id) };
    }
}

/// Arms this thread's timer to kick `run` out of KVM_RUN after `after`.
pub fn arm(run: *mut kvm_bindings::kvm_run, after: Duration) -> Result<(), LimitsError> {
    prepare_thread()?;
    KVM_RUN.with(|p| p.set(run));
    TIMER.with(|t| {
        t.borrow()
            .as_ref()
            .expect("prepare_thread created the timer")
            .set(after);
    });
    Ok(())
}

/// Creates this thread's timer now (before a seccomp filter forbids timer_create).
pub fn prepare_thread() -> Result<(), LimitsError> {
    TIMER.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            *t = Some(ThreadTimer::new()?);
        }
        Ok(())
    })
}

/// Disarms this thread's timer and forgets the vCPU.
pub fn disarm() {
    TIMER.with(|t| {
        if let Some(t) = t.borrow().as_ref() {
            t.clear();
        }
    });
    KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_sets_immediate_exit() {
        // SAFETY: kvm_run is plain old data; an all-zero value is valid.
        let mut run: kvm_bindings::kvm_run = unsafe { std::mem::zeroed() };
        arm(&mut run, Duration::from_millis(5)).unwrap();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            // SAFETY: reading a byte the signal handler may have written.
            if unsafe { std::ptr::addr_of!(run.immediate_exit).read_volatile() } == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        disarm();
        assert_eq!(run.immediate_exit, 1);
        assert!(check_timer_signal().is_ok(), "this copy's own handler");
    }

    extern "C" fn foreign(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

    #[test]
    fn a_foreign_timer_signal_handler_is_refused() {
        // In a child process: a foreign handler there cannot disturb the other tests'
        // timers in this one.
        if std::env::var_os("KVMJS_LIMITS_CHILD").is_some() {
            vmm_sys_util::signal::register_signal_handler(signal_number(), foreign).unwrap();
            let e = check_timer_signal().unwrap_err();
            assert!(matches!(e, LimitsError::SignalTaken(_)), "{e}");
            assert!(e.to_string().contains("restart the process"), "{e}");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "limits::tests::a_foreign_timer_signal_handler_is_refused",
                "--exact",
                "--test-threads=1",
            ])
            .env("KVMJS_LIMITS_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran the check: {text}");
    }
}
