//! Process identity and limits, TLS and randomness (threads, futexes and exit are in
//! tasks.rs).

use super::{e, errno, Args, Ctx, Entry, Flow};
use syscalls::Sysno;

/// The VM's one process ([`crate::process::PID`]; the fast-path library answers the same).
fn getpid(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::ok(u64::from(crate::process::PID))
}

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::getpid, getpid),
    e(Sysno::getppid, zero),
    e(Sysno::getuid, zero),
    e(Sysno::geteuid, zero),
    e(Sysno::getgid, zero),
    e(Sysno::getegid, zero),
    e(Sysno::rseq, enosys),
    e(Sysno::arch_prctl, arch_prctl),
    e(Sysno::prlimit64, prlimit64),
    e(Sysno::getrlimit, getrlimit),
    e(Sysno::setrlimit, zero),
    e(Sysno::sched_getaffinity, sched_getaffinity),
    e(Sysno::getrandom, getrandom),
    e(Sysno::sysinfo, sysinfo),
    e(Sysno::execve, no_tasks),
];

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;
const RLIM_INFINITY: u64 = u64::MAX;

fn zero(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::ok(0)
}

/// rseq is optional: glibc turns it off when the kernel says ENOSYS.
fn enosys(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::err(errno::ENOSYS)
}

/// One process: a new program cannot be started.
fn no_tasks(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::err(errno::EAGAIN)
}

fn arch_prctl(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    match a[0] {
        ARCH_SET_FS => {
            if a[1] >= 1 << 47 {
                return Flow::err(errno::EPERM);
            }
            ctx.proc.fs_base = a[1];
            ctx.proc.changed = true;
            Flow::ok(0)
        }
        ARCH_GET_FS => match ctx.mem.write_u64(a[1], ctx.proc.fs_base) {
            Ok(()) => Flow::ok(0),
            Err(_) => Flow::err(errno::EFAULT),
        },
        ARCH_GET_GS => match ctx.mem.write_u64(a[1], 0) {
            Ok(()) => Flow::ok(0),
            Err(_) => Flow::err(errno::EFAULT),
        },
        ARCH_SET_GS => Flow::err(errno::EPERM),
        _ => Flow::err(errno::EINVAL),
    }
}

fn rlimit_of(ctx: &Ctx<'_>, resource: u64) -> u64 {
    match resource as u32 {
        libc::RLIMIT_STACK => crate::layout::STACK_SIZE,
        libc::RLIMIT_NOFILE => crate::process::MAX_FDS as u64,
        libc::RLIMIT_AS | libc::RLIMIT_DATA => ctx.proc.max_memory,
        libc::RLIMIT_NPROC => 1,
        _ => RLIM_INFINITY,
    }
}

fn put_rlimit(ctx: &mut Ctx<'_>, at: u64, resource: u64) -> Flow {
    if at == 0 {
        return Flow::ok(0);
    }
    let v = rlimit_of(ctx, resource);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.to_le_bytes());
    b[8..].copy_from_slice(&v.to_le_bytes());
    match ctx.mem.write(at, &b) {
        Ok(()) => Flow::ok(0),
        Err(_) => Flow::err(errno::EFAULT),
    }
}

fn prlimit64(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] != 0 && a[0] != 1 {
        return Flow::err(libc::ESRCH);
    }
    put_rlimit(ctx, a[3], a[1])
}

fn getrlimit(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    put_rlimit(ctx, a[1], a[0])
}

fn sched_getaffinity(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[1] < 8 {
        return Flow::err(errno::EINVAL);
    }
    match ctx.mem.write_u64(a[2], 1) {
        Ok(()) => Flow::ok(8),
        Err(_) => Flow::err(errno::EFAULT),
    }
}

fn getrandom(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let len = a[1].min(1 << 20);
    let Ok(buf) = ctx.mem.slice_mut(a[0], len) else {
        return Flow::err(errno::EFAULT);
    };
    fill_random(buf);
    Flow::ok(len)
}

/// Fills `buf` from the host's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n <= 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::Interrupted,
                "the host's getrandom failed: {e}"
            );
            continue;
        }
        done += n as usize;
    }
}

fn sysinfo(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let mut s = [0u8; 112];
    let total = ctx.proc.max_memory;
    let free = total.saturating_sub(ctx.proc.memory_used());
    s[32..40].copy_from_slice(&total.to_le_bytes());
    s[40..48].copy_from_slice(&free.to_le_bytes());
    s[80..82].copy_from_slice(&1u16.to_le_bytes()); // procs
    s[104..108].copy_from_slice(&1u32.to_le_bytes()); // mem_unit
    match ctx.mem.write(a[0], &s) {
        Ok(()) => Flow::ok(0),
        Err(_) => Flow::err(errno::EFAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    #[test]
    fn arch_prctl_sets_fs_and_flags_sregs() {
        let mut f = Fixture::new();
        assert_eq!(
            f.call(Sysno::arch_prctl, [ARCH_SET_FS, 0x7000, 0, 0, 0, 0]),
            0
        );
        assert_eq!(
            f.proc.fs_base, 0x7000,
            "the base the vCPU gets on the next resume"
        );
        assert_eq!(
            f.call(Sysno::arch_prctl, [ARCH_GET_FS, 0x70_0000, 0, 0, 0, 0]),
            0
        );
        assert_eq!(f.mem.read_u64(0x70_0000).unwrap(), 0x7000);
        assert_eq!(
            f.call(Sysno::arch_prctl, [ARCH_SET_FS, 1 << 60, 0, 0, 0, 0]),
            -i64::from(libc::EPERM)
        );
    }

    #[test]
    fn getrandom_is_fresh_and_bounds_checked() {
        let mut f = Fixture::new();
        assert_eq!(f.call(Sysno::getrandom, [0x70_0000, 32, 0, 0, 0, 0]), 32);
        let a = f.mem.slice(0x70_0000, 32).unwrap().to_vec();
        f.call(Sysno::getrandom, [0x70_0000, 32, 0, 0, 0, 0]);
        assert_ne!(a, f.mem.slice(0x70_0000, 32).unwrap());
        assert_eq!(
            f.call(Sysno::getrandom, [u64::MAX - 8, 32, 0, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
    }
}
