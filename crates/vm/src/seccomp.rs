//! The seccomp filter for VM threads: a thread that runs a guest may only make the system
//! calls the run loop and the syscall emulation need. Anything else kills the process: a
//! host compromised through the emulation gets no further than this list. (Two sandbox
//! layers: syscall emulation decides what the guest may do; this filter, what the host
//! thread may do.)

use std::collections::BTreeMap;
use syscalls::Sysno;

/// Errors building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The filter could not be built.
    #[error("cannot build the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    /// The kernel refused it.
    #[error("cannot install the seccomp filter: {0}; run without it only for debugging (KVMJS_NO_SECCOMP=1)")]
    Install(#[from] seccompiler::Error),
}

/// What a VM thread uses, grouped by why.
const ALLOWED: &[Sysno] = &[
    // KVM: run, registers, dirty log; new VMs when a broken one is replaced.
    Sysno::ioctl,
    // Guest files (read-only, allowed paths) and their metadata; logs to stderr.
    Sysno::openat,
    Sysno::read,
    Sysno::pread64,
    Sysno::write,
    Sysno::writev,
    Sysno::close,
    Sysno::fstat,
    Sysno::newfstatat,
    Sysno::statx,
    Sysno::readlink,
    Sysno::lseek,
    Sysno::getcwd,
    // F_GETFD: Rust's std checks a descriptor is open before closing it.
    Sysno::fcntl,
    // Memory: the host allocator, guest-memory resets and VM replacement.
    Sysno::mmap,
    Sysno::munmap,
    Sysno::mremap,
    Sysno::mprotect,
    Sysno::madvise,
    Sysno::mincore,
    Sysno::brk,
    // A replacement VM's memory registers for write-protect invalidation (memory::uffd;
    // its ioctls are allowed above). Killing here would turn a container profile's EPERM
    // fallback into a crash.
    Sysno::userfaultfd,
    // Queues between threads, sleeps, time, randomness.
    Sysno::futex,
    Sysno::sched_yield,
    Sysno::nanosleep,
    Sysno::clock_nanosleep,
    Sysno::clock_gettime,
    Sysno::getrandom,
    // The request timer and its signal.
    Sysno::timer_settime,
    Sysno::timer_delete,
    Sysno::rt_sigreturn,
    Sysno::rt_sigprocmask,
    Sysno::sigaltstack,
    // Thread and process end, and abort() on a bug.
    Sysno::exit,
    Sysno::exit_group,
    Sysno::gettid,
    Sysno::getpid,
    Sysno::tgkill,
    Sysno::restart_syscall,
    Sysno::rseq,
    Sysno::set_robust_list,
];

/// Installs the filter on the calling thread (only). Call it after the thread's VM and
/// request timer exist.
pub fn apply_to_this_thread() -> Result<(), SeccompError> {
    // fetch() runs on threads this one cannot start once filtered (crate::fetch::service).
    crate::fetch::service::start();
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = ALLOWED
        .iter()
        .map(|s| (s.id() as i64, Vec::new()))
        .collect();
    let filter = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::KillProcess,
        seccompiler::SeccompAction::Allow,
        seccompiler::TargetArch::x86_64,
    )?;
    let prog: seccompiler::BpfProgram = filter.try_into()?;
    seccompiler::apply_filter(&prog)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filtered_thread_keeps_what_it_needs() {
        let t = std::thread::spawn(|| {
            apply_to_this_thread().unwrap();
            // Allowed: allocation, time, randomness, reading a file.
            let v = vec![7u8; 1 << 20];
            let _ = std::time::Instant::now();
            let mut b = [0u8; 8];
            crate::syscalls::fill_random(&mut b);
            let data = std::fs::read("/proc/self/stat")
                .map(|d| d.len())
                .unwrap_or(0);
            // A replacement VM's memory: userfaultfd registration and invalidation.
            let m = crate::memory::GuestMemory::new(1 << 20, false).unwrap();
            m.invalidate(&[0x1000]).unwrap();
            (v.len() + data, m.invalidation())
        });
        let (n, how) = t.join().unwrap();
        assert!(n > 1 << 20);
        let outside = crate::memory::GuestMemory::new(1 << 20, false).unwrap();
        assert_eq!(
            how,
            outside.invalidation(),
            "the filter changed the mechanism"
        );
    }
}
