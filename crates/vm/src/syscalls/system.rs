//! What the system is: uname, prctl names, and the optional kernel features programs probe
//! and fall back from (protection keys, membarrier).

use super::e;
use super::files::neg;
use super::{errno, Args, Ctx, Entry, Flow};
use crate::fs::synth::OS_RELEASE;
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::uname, uname),
    e(Sysno::prctl, prctl),
    e(Sysno::pkey_alloc, pkey_alloc),
    e(Sysno::pkey_free, pkey_free),
    e(Sysno::pkey_mprotect, pkey_mprotect),
    e(Sysno::membarrier, membarrier),
];

const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
/// Longest thread name with its NUL (TASK_COMM_LEN).
const COMM_LEN: usize = 16;

/// uname: Linux on x86-64, the release of [`OS_RELEASE`] (why that one is said there),
/// the program's name (its last path component) as the host name.
fn uname(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let mut u = [0u8; 65 * 6];
    let node: String = crate::fs::synth::base_name(&ctx.cfg.name)
        .chars()
        .take(64)
        .collect();
    for (i, s) in [
        "Linux",
        &node,
        OS_RELEASE,
        "#1 SMP kvmjs",
        "x86_64",
        "(none)",
    ]
    .iter()
    .enumerate()
    {
        let b = s.as_bytes();
        let n = b.len().min(64);
        u[i * 65..i * 65 + n].copy_from_slice(&b[..n]);
    }
    match ctx.mem.write(a[0], &u) {
        Ok(()) => Flow::ok(0),
        Err(_) => neg(errno::EFAULT),
    }
}

/// prctl: thread names (each thread its own, like Linux; thread 1's is the process's
/// /proc/self/comm). Everything else, PR_SET_VMA (anonymous mapping names) included, is
/// EINVAL, which glibc, Rust std and V8 treat as "not supported".
fn prctl(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let tid = ctx.proc.tasks.current();
    match a[0] {
        PR_SET_NAME => {
            // Like strncpy_from_user: up to 16 bytes, the name ends at a NUL or 15 bytes.
            let mut raw = [0u8; COMM_LEN];
            let raw: &[u8] = if ctx.mem.read(a[1], &mut raw).is_ok() {
                &raw
            } else {
                match ctx.mem.read_cstr(a[1], COMM_LEN as u64) {
                    Ok(r) => r,
                    Err(_) => return neg(errno::EFAULT),
                }
            };
            let end = raw
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(raw.len())
                .min(COMM_LEN - 1);
            let name = String::from_utf8_lossy(&raw[..end]).into_owned();
            ctx.proc.thread_names.insert(tid, name);
            ctx.proc.changed = true;
            Flow::ok(0)
        }
        PR_GET_NAME => {
            let name = match ctx.proc.thread_names.get(&tid) {
                Some(n) => n.clone(),
                None => crate::fs::synth::comm(ctx.proc, ctx.cfg),
            };
            let mut b = [0u8; COMM_LEN];
            let n = name.len().min(COMM_LEN - 1);
            b[..n].copy_from_slice(&name.as_bytes()[..n]);
            match ctx.mem.write(a[1], &b) {
                Ok(()) => Flow::ok(0),
                Err(_) => neg(errno::EFAULT),
            }
        }
        _ => neg(errno::EINVAL),
    }
}

/// No protection keys: V8 and glibc fall back to plain page protections.
fn pkey_alloc(_: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] != 0 || a[1] & !3 != 0 {
        return neg(errno::EINVAL);
    }
    neg(libc::ENOSPC)
}

fn pkey_free(_: &mut Ctx<'_>, _: &Args) -> Flow {
    neg(errno::EINVAL) // no key was ever handed out
}

/// pkey_mprotect with key -1 is mprotect; any other key was never allocated.
fn pkey_mprotect(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[3] as i32 != -1 {
        return neg(errno::EINVAL);
    }
    super::dispatch(
        ctx,
        Sysno::mprotect.id() as u64,
        &[a[0], a[1], a[2], 0, 0, 0],
    )
}

/// membarrier: with one vCPU every barrier is trivially done, but the call is not
/// offered (research: glibc, deno and node never use it); ENOSYS is the documented
/// "not available" answer.
fn membarrier(_: &mut Ctx<'_>, _: &Args) -> Flow {
    neg(errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    #[test]
    fn uname_names_the_vm() {
        let mut f = Fixture::new();
        f.cfg.name = "deno".into();
        assert_eq!(f.call(Sysno::uname, [0x70_0000, 0, 0, 0, 0, 0]), 0);
        let field = |f: &Fixture, i: u64| {
            let b = f.mem.slice(0x70_0000 + i * 65, 65).unwrap();
            String::from_utf8(b[..b.iter().position(|&c| c == 0).unwrap()].to_vec()).unwrap()
        };
        assert_eq!(field(&f, 0), "Linux");
        assert_eq!(field(&f, 1), "deno");
        assert_eq!(field(&f, 2), OS_RELEASE);
        assert_eq!(field(&f, 4), "x86_64");
        assert_eq!(
            f.call(Sysno::uname, [u64::MAX - 10, 0, 0, 0, 0, 0]),
            -i64::from(libc::EFAULT)
        );
    }

    #[test]
    fn prctl_names_and_refusals() {
        let mut f = Fixture::new();
        f.cfg.name = "program".into();
        assert_eq!(
            f.call(Sysno::prctl, [PR_GET_NAME, 0x70_0000, 0, 0, 0, 0]),
            0
        );
        assert_eq!(f.mem.slice(0x70_0000, 8).unwrap(), b"program\0");
        f.mem.write(0x71_0000, b"tokio-runtime-worker\0").unwrap();
        assert_eq!(
            f.call(Sysno::prctl, [PR_SET_NAME, 0x71_0000, 0, 0, 0, 0]),
            0
        );
        assert_eq!(
            f.call(Sysno::prctl, [PR_GET_NAME, 0x70_0000, 0, 0, 0, 0]),
            0
        );
        assert_eq!(f.mem.slice(0x70_0000, 16).unwrap(), b"tokio-runtime-w\0");
        // PR_SET_VMA, PR_SET_VMA_ANON_NAME.
        assert_eq!(
            f.call(Sysno::prctl, [0x53564d41, 0, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::pkey_alloc, [0, 1, 0, 0, 0, 0]),
            -i64::from(libc::ENOSPC)
        );
        assert_eq!(
            f.call(Sysno::pkey_alloc, [1, 0, 0, 0, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(f.call(Sysno::membarrier, [0; 6]), -i64::from(libc::ENOSYS));
        assert_eq!(f.call(Sysno::rseq, [0; 6]), -i64::from(libc::ENOSYS));
    }
}
