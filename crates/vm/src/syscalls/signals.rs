//! Signals are recorded, never delivered: there is no kernel to interrupt the guest.
//! A signal a guest sends itself with default action "terminate" ends the request.

use super::{e, errno, Args, Ctx, Entry, Flow, Stop};
use syscalls::Sysno;

pub(super) const HANDLERS: &[Entry] = &[
    e(Sysno::rt_sigaction, rt_sigaction),
    e(Sysno::rt_sigprocmask, rt_sigprocmask),
    e(Sysno::sigaltstack, sigaltstack),
    e(Sysno::rt_sigreturn, rt_sigreturn),
    e(Sysno::kill, kill),
];

fn rt_sigaction(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (sig, act, old) = (a[0], a[1], a[2]);
    if !(1..=64).contains(&sig) || (act != 0 && (sig == 9 || sig == 19)) {
        return Flow::err(errno::EINVAL);
    }
    let cur = ctx.proc.signals.actions[sig as usize];
    if old != 0 && ctx.mem.write(old, &cur).is_err() {
        return Flow::err(errno::EFAULT);
    }
    if act != 0 {
        let mut new = [0u8; 32];
        if ctx.mem.read(act, &mut new).is_err() {
            return Flow::err(errno::EFAULT);
        }
        ctx.proc.signals.actions[sig as usize] = new;
        ctx.proc.changed = true;
    }
    Flow::ok(0)
}

fn rt_sigprocmask(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (how, set, old) = (a[0], a[1], a[2]);
    let cur = ctx.proc.signals.mask;
    if old != 0 && ctx.mem.write_u64(old, cur).is_err() {
        return Flow::err(errno::EFAULT);
    }
    if set != 0 {
        let Ok(s) = ctx.mem.read_u64(set) else {
            return Flow::err(errno::EFAULT);
        };
        ctx.proc.signals.mask = match how {
            0 => cur | s,
            1 => cur & !s,
            2 => s,
            _ => return Flow::err(errno::EINVAL),
        };
        ctx.proc.changed = true;
    }
    Flow::ok(0)
}

fn sigaltstack(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let (ss, old) = (a[0], a[1]);
    let cur = ctx.proc.signals.altstack;
    if old != 0 && ctx.mem.write(old, &cur).is_err() {
        return Flow::err(errno::EFAULT);
    }
    if ss != 0 {
        let mut new = [0u8; 24];
        if ctx.mem.read(ss, &mut new).is_err() {
            return Flow::err(errno::EFAULT);
        }
        ctx.proc.signals.altstack = new;
        ctx.proc.changed = true;
    }
    Flow::ok(0)
}

fn rt_sigreturn(_: &mut Ctx<'_>, _: &Args) -> Flow {
    Flow::Stop(Stop::Fatal(
        "guest called rt_sigreturn, but no signal was delivered".into(),
    ))
}

/// Signals whose default action is to ignore (or that only stop/continue).
fn harmless(sig: u64) -> bool {
    matches!(sig, 0 | 17 | 18 | 19 | 20 | 21 | 22 | 23 | 28)
}

/// A signal for the process or one of its threads (tasks.rs decodes tkill/tgkill).
pub(super) fn to_self(ctx: &mut Ctx<'_>, sig: u64) -> Flow {
    if sig > 64 {
        return Flow::err(errno::EINVAL);
    }
    if harmless(sig) {
        return Flow::ok(0);
    }
    let handled = ctx.proc.signals.actions[sig as usize][..8] != [0; 8];
    let name = match sig {
        6 => "SIGABRT".to_string(),
        9 => "SIGKILL".to_string(),
        11 => "SIGSEGV".to_string(),
        15 => "SIGTERM".to_string(),
        n => format!("signal {n}"),
    };
    let note = if handled {
        " (its handler is not run: kvmjs delivers no signals)"
    } else {
        ""
    };
    Flow::Stop(Stop::Fatal(format!("guest raised {name}{note}")))
}

fn kill(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[0] as i64 > 1 || (a[0] as i64) < -1 {
        return Flow::err(libc::ESRCH);
    }
    to_self(ctx, a[1])
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    #[test]
    fn sigaction_round_trips() {
        let mut f = Fixture::new();
        f.mem.write(0x70_0000, &[0xAA; 32]).unwrap();
        assert_eq!(f.call(Sysno::rt_sigaction, [13, 0x70_0000, 0, 8, 0, 0]), 0);
        assert_eq!(f.call(Sysno::rt_sigaction, [13, 0, 0x70_1000, 8, 0, 0]), 0);
        assert_eq!(f.mem.slice(0x70_1000, 32).unwrap(), &[0xAA; 32]);
        assert_eq!(
            f.call(Sysno::rt_sigaction, [9, 0x70_0000, 0, 8, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        assert_eq!(
            f.call(Sysno::rt_sigaction, [13, u64::MAX - 4, 0, 8, 0, 0]),
            -i64::from(libc::EFAULT)
        );
    }

    #[test]
    fn raising_sigabrt_stops_the_guest() {
        let mut f = Fixture::new();
        assert!(
            matches!(dispatch_tgkill(&mut f, 6), Flow::Stop(Stop::Fatal(m)) if m.contains("SIGABRT"))
        );
        assert!(matches!(dispatch_tgkill(&mut f, 0), Flow::Return(0)));
    }

    fn dispatch_tgkill(f: &mut Fixture, sig: u64) -> Flow {
        super::super::dispatch(&mut f.ctx(), Sysno::tgkill as u64, &[1, 1, sig, 0, 0, 0])
    }
}
