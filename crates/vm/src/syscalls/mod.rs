//! Linux system-call emulation: a table of small handlers, one module per family.
//! Unknown calls get -ENOSYS and one log line naming the call.

mod counts;
pub use counts::SyscallCounts;
mod events;
mod fds;
mod files;
mod inet;
pub(crate) use inet::encode_addr;
mod memory;
mod paths;
mod process;
pub(crate) use process::fill_random;
mod signals;
mod sockets;
mod system;
mod tasks;
mod time;

use crate::config::{GuestOutput, VmConfig};
use crate::memory::GuestMemory;
use crate::process::Process;
use crate::request::Response;
use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Instant;

/// Arguments in Linux syscall order (RDI, RSI, RDX, R10, R8, R9).
pub type Args = [u64; 6];

/// Why the guest stopped running.
#[derive(Debug)]
pub enum Stop {
    /// `wait_for_requests_paused(req)`.
    Paused {
        /// Where the guest wants the request struct.
        req_ptr: u64,
    },
    /// `backend_response(...)`, or a complete HTTP response on the request's connection
    /// (`VmConfig::listen`, crate::listen).
    Responded(Response),
    /// A call continuing a streamed response (`stream_append`, `stream_end`).
    Stream(crate::request::StreamStep),
    /// A program that listens (`VmConfig::listen`) is about to block in wait call `nr`
    /// with the listening socket in its set and no connection queued: the call has not
    /// run and is to be re-run when the guest continues (crate::listen).
    Listening {
        /// The call's number.
        nr: u64,
        /// Its arguments.
        args: Args,
    },
    /// exit/exit_group.
    Exited(i32),
    /// The guest asked for something that ends the request (bad response arguments,
    /// a fatal signal to itself, an unsupported mode).
    Fatal(String),
}

/// What a handler wants next.
///
/// # Blocking calls (threads, crate::tasks)
///
/// Guest threads share the one vCPU and switch only inside system calls. A handler whose
/// call cannot complete yet (a read of an empty eventfd or socket, epoll_wait or poll with
/// nothing ready, a sleep) returns [`Flow::Block`] instead of sleeping on the host:
///
/// ```text
/// // nothing to read: wait until the object is notified or the timeout passes, then run
/// // this handler again with the same arguments (it may block again)
/// return Flow::Block(Block::retry(vec![WaitKey::File(object_id)], deadline));
/// // a sleep: at `deadline` the call returns 0
/// return Flow::Block(Block::sleep(deadline, 0));
/// ```
///
/// and whatever makes the object ready (a write to the eventfd, the peer's send, a
/// request arriving) calls `crate::tasks::notify(ctx.proc, &WaitKey::File(object_id))`,
/// which makes every task blocked on that key runnable (and marks the process changed so
/// a reset restores the snapshot's task states); it does not switch by itself. A
/// [`crate::tasks::Resume::Retry`] handler must be idempotent up to the point it blocks,
/// and should check a deadline it computed from its own timeout argument, and answer
/// "timed out" (0 events, -EAGAIN, ...) once `Instant::now()` has reached it, because a
/// deadline wake re-runs it too.
///
/// The run loop then runs other tasks (FIFO); when every task is blocked it sleeps until
/// the earliest deadline (never past the run's [`Ctx::deadline`]), and when none has a
/// deadline the run stops with "all guest threads are blocked forever: ..." naming each
/// thread and what it waits on. A single-threaded guest that blocks with a deadline just
/// sleeps: no extra VM exit or vCPU ioctl.
#[derive(Debug)]
pub enum Flow {
    /// Put this in RAX and continue.
    Return(u64),
    /// Stop running the guest.
    Stop(Stop),
    /// The calling thread blocks (see above).
    Block(crate::tasks::Block),
    /// sched_yield with another thread runnable: the caller goes to the back of the run
    /// queue and its call returns 0.
    Yield,
    /// clone/clone3 added thread `tid` (syscalls/tasks.rs only): the run loop gives it the
    /// caller's registers with RAX = 0 and the new stack, then returns `tid` to the caller.
    Spawned(crate::tasks::Tid),
    /// The calling thread ended while others live on (syscalls/tasks.rs only).
    ThreadExited,
}

impl Flow {
    /// A negative errno.
    pub fn err(errno: i32) -> Flow {
        Flow::Return((-i64::from(errno)) as u64)
    }

    /// A non-negative result.
    pub fn ok(v: u64) -> Flow {
        Flow::Return(v)
    }
}

/// Per-request header state the guest API reads and changes.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Request method.
    pub method: String,
    /// Request header fields.
    pub req_headers: Vec<String>,
    /// Response header fields set through http_append/http_set.
    pub resp_headers: Vec<String>,
    /// The request's open fetches (crate::fetch): none at its start, dropped at the reset.
    pub fetch: crate::fetch::Fetches,
}

/// Everything a handler may touch.
pub struct Ctx<'a> {
    /// Guest memory.
    pub mem: &'a mut GuestMemory,
    /// Process state.
    pub proc: &'a mut Process,
    /// Program settings.
    pub cfg: &'a VmConfig,
    /// Current request's headers.
    pub exchange: &'a mut Exchange,
    /// Deadline of the current run, for sleeps.
    pub deadline: Option<Instant>,
    /// Guest output.
    pub log: &'a mut GuestLog,
}

/// Guest stdout/stderr: logged line by line (or passed through, [`GuestOutput`]); the last
/// few KiB are kept for error reports. Also the VM's system-call counts.
#[derive(Debug, Default)]
pub struct GuestLog {
    /// System calls made, by number (counted in [`dispatch`]).
    pub calls: SyscallCounts,
    /// Output not yet logged (a partial line).
    pub partial: Vec<u8>,
    /// The most recent output.
    pub tail: std::collections::VecDeque<u8>,
    /// Bytes written in all.
    pub written: u64,
}

/// Bytes of recent output kept in [`GuestLog::tail`] (and longest logged line).
const TAIL: usize = 4096;
/// Lines one write may add to the host log.
const MAX_LOG_LINES: usize = 64;

impl GuestLog {
    /// Records `bytes` and logs complete lines under `program`. Linear in the input, and
    /// at most [`MAX_LOG_LINES`] lines per call reach the log (the rest are counted).
    pub fn write(&mut self, program: &str, bytes: &[u8]) {
        self.written += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(TAIL)..];
        self.tail.extend(keep.iter().copied());
        while self.tail.len() > TAIL {
            self.tail.pop_front();
        }
        let mut logged = 0;
        let mut dropped = 0;
        let mut start = 0;
        for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'\n') {
            if logged < MAX_LOG_LINES {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&bytes[start..i]);
                tracing::info!(
                    program,
                    "{}",
                    String::from_utf8_lossy(&line[..line.len().min(TAIL)])
                );
                logged += 1;
            } else {
                self.partial.clear();
                dropped += 1;
            }
            start = i + 1;
        }
        let rest = &bytes[start..];
        self.partial
            .extend_from_slice(&rest[..rest.len().min(TAIL.saturating_sub(self.partial.len()))]);
        if dropped > 0 {
            tracing::warn!(
                program,
                "{dropped} more lines of guest output were not logged"
            );
        }
    }

    /// The first two meaningful lines written after byte count `since`, if any.
    pub fn summary_since(&self, since: u64) -> Option<String> {
        let n = usize::try_from(self.written - since)
            .unwrap_or(usize::MAX)
            .min(self.tail.len());
        if n == 0 {
            return None;
        }
        let bytes: Vec<u8> = self
            .tail
            .iter()
            .skip(self.tail.len() - n)
            .copied()
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note:"))
            .take(2)
            .collect();
        (!lines.is_empty()).then(|| lines.join(" / "))
    }

    /// The recent output as text.
    pub fn recent(&self) -> String {
        let v: Vec<u8> = self.tail.iter().copied().collect();
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// One of the guest's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl GuestLog {
    /// Writes `bytes` to the host's `stream` unchanged, keeping the tail for error reports.
    pub fn pass_through(&mut self, stream: Stream, bytes: &[u8]) {
        use std::io::Write;
        self.written += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(TAIL)..];
        self.tail.extend(keep.iter().copied());
        while self.tail.len() > TAIL {
            self.tail.pop_front();
        }
        // A closed host stream (EPIPE) must not end the guest: its writes still succeed,
        // as they would into a full log.
        let _ = match stream {
            Stream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(bytes).and_then(|()| o.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(bytes),
        };
    }
}

impl Ctx<'_> {
    /// Writes guest stdout output to the host log (or passes it through).
    pub fn guest_output(&mut self, bytes: &[u8]) {
        self.guest_output_to(Stream::Stdout, bytes);
    }

    /// Writes guest output of `stream` where [`VmConfig::output`] says.
    pub fn guest_output_to(&mut self, stream: Stream, bytes: &[u8]) {
        match self.cfg.output {
            GuestOutput::Log => self.log.write(&self.cfg.name, bytes),
            GuestOutput::Passthrough => self.log.pass_through(stream, bytes),
        }
    }
}

/// A system-call handler.
pub type Handler = fn(&mut Ctx<'_>, &Args) -> Flow;

/// One table row.
pub struct Entry {
    /// Linux x86-64 number.
    pub nr: usize,
    /// Handler.
    pub handler: Handler,
}

/// A table row: `e(Sysno::read, read)`.
pub(super) const fn e(nr: syscalls::Sysno, handler: Handler) -> Entry {
    Entry {
        nr: nr as usize,
        handler,
    }
}

/// Linux errno values used by the handlers.
pub mod errno {
    pub use libc::{
        EACCES, EAGAIN, EBADF, EFAULT, EINVAL, EISDIR, ENOENT, ENOMEM, ENOSYS, ENOTDIR, ENOTTY,
        EPERM, ERANGE, ESPIPE,
    };
}

const TABLE_SIZE: usize = 512;

static TABLE: LazyLock<Vec<Option<Handler>>> = LazyLock::new(|| {
    let mut t: Vec<Option<Handler>> = vec![None; TABLE_SIZE];
    for family in [
        events::HANDLERS,
        fds::HANDLERS,
        files::HANDLERS,
        paths::HANDLERS,
        sockets::HANDLERS,
        inet::HANDLERS,
        system::HANDLERS,
        memory::HANDLERS,
        process::HANDLERS,
        signals::HANDLERS,
        tasks::HANDLERS,
        time::HANDLERS,
    ] {
        for e in family {
            assert!(t[e.nr].is_none(), "syscall {} has two handlers", e.nr);
            t[e.nr] = Some(e.handler);
        }
    }
    t
});

static WARNED: LazyLock<std::sync::Mutex<HashSet<u64>>> = LazyLock::new(Default::default);

/// Runs Linux system call `nr` and counts it.
pub fn dispatch(ctx: &mut Ctx<'_>, nr: u64, args: &Args) -> Flow {
    let flow = call(ctx, nr, args);
    // A handler's `slice_mut` copy (a range over non-contiguous frames) reaches guest
    // memory before the guest runs again.
    ctx.mem.flush();
    ctx.log.calls.record(nr, &flow);
    // An strace for guests: RUST_LOG=kvmjs_vm::syscall=trace.
    tracing::trace!(
        target: "kvmjs_vm::syscall",
        "{}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {}",
        SyscallCounts::name(nr),
        args[0],
        args[1],
        args[2],
        args[3],
        args[4],
        args[5],
        match &flow {
            Flow::Return(v) if (*v as i64) < 0 && (*v as i64) > -4096 => format!("-{}", -(*v as i64)),
            Flow::Return(v) => format!("{v:#x}"),
            other => format!("{other:?}"),
        }
    );
    flow
}

fn call(ctx: &mut Ctx<'_>, nr: u64, args: &Args) -> Flow {
    if let Some(h) = usize::try_from(nr)
        .ok()
        .and_then(|n| TABLE.get(n))
        .and_then(|h| *h)
    {
        return h(ctx, args);
    }
    let first = WARNED.lock().map(|mut w| w.insert(nr)).unwrap_or(false);
    if first {
        let name = syscalls::Sysno::new(nr as usize).map_or("unknown", |s| s.name());
        tracing::warn!(program = %ctx.cfg.name, "guest made unsupported system call {nr} ({name}); returning ENOSYS");
    }
    Flow::err(errno::ENOSYS)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A context over fresh memory and process state, for handler tests.
    pub struct Fixture {
        pub mem: GuestMemory,
        pub proc: Process,
        pub cfg: VmConfig,
        pub exchange: Exchange,
        pub log: GuestLog,
    }

    impl Fixture {
        pub fn new() -> Self {
            let cfg = VmConfig {
                address_space: 64 << 20,
                max_memory: 16 << 20,
                ..Default::default()
            };
            Fixture {
                mem: GuestMemory::new(cfg.address_space, false).unwrap(),
                proc: Process::new(0x60_0000, cfg.address_space, cfg.max_memory, 1 << 20),
                cfg,
                exchange: Exchange::default(),
                log: GuestLog::default(),
            }
        }

        pub fn call(&mut self, nr: syscalls::Sysno, args: Args) -> i64 {
            match dispatch(&mut self.ctx(), nr.id() as u64, &args) {
                Flow::Return(v) => v as i64,
                other => panic!("unexpected {other:?}"),
            }
        }

        pub fn ctx(&mut self) -> Ctx<'_> {
            Ctx {
                mem: &mut self.mem,
                proc: &mut self.proc,
                cfg: &self.cfg,
                exchange: &mut self.exchange,
                deadline: None,
                log: &mut self.log,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Fixture;
    use super::*;

    #[test]
    fn unknown_and_out_of_range_numbers_are_enosys() {
        let mut f = Fixture::new();
        assert_eq!(
            f.call(syscalls::Sysno::io_uring_setup, [0; 6]),
            -i64::from(errno::ENOSYS)
        );
        let r = dispatch(&mut f.ctx(), u64::MAX, &[0; 6]);
        assert!(matches!(r, Flow::Return(v) if v as i64 == -i64::from(errno::ENOSYS)));
    }

    #[test]
    fn table_builds_without_duplicates() {
        assert!(TABLE.iter().filter(|h| h.is_some()).count() > 40);
    }
}
