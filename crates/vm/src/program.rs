//! Running an ordinary Linux program to completion (`kvmjs run PROGRAM -- ARGS`): no
//! request API and no snapshot, just the program's output and the figures of the run
//! (boot/wall time, VM exits by kind, system calls by name, resident memory, ENOSYS list).
//! A program that turns out to speak the request API (it pauses in
//! `wait_for_requests_paused`) is booted on into a request-serving [`Vm`] instead.

use crate::config::VmConfig;
use crate::syscalls::{Stop, SyscallCounts};
use crate::vcpu::ExitCounts;
use crate::vm::{RequestError, Vm, VmError};
use crate::RequestStats;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramEnd {
    /// exit/exit_group with this status.
    Exited(i32),
    /// A fault, a fatal signal, an API misuse or the time limit (max_boot_time).
    Failed(String),
}

/// What a run to completion did.
#[derive(Debug, Clone)]
pub struct ProgramReport {
    /// How it ended.
    pub end: ProgramEnd,
    /// Time to build the VM and load the program (before its first instruction).
    pub load: Duration,
    /// Time from start to the end of the program, load included.
    pub wall: Duration,
    /// VM exits by kind.
    pub exits: ExitCounts,
    /// System calls by number (and which got ENOSYS).
    pub syscalls: SyscallCounts,
    /// Guest memory pages resident on the host at the end.
    pub guest_resident_pages: u64,
    /// Resident set of the whole host process at the end, bytes.
    pub host_rss: u64,
    /// Of that, anonymous memory (guest RAM, page tables, kvmjs's heap), bytes.
    pub host_rss_anon: u64,
    /// Of that, file pages (the program and libraries mapped from the page cache), bytes.
    pub host_rss_file: u64,
}

/// Result of [`run_to_exit`].
pub enum Outcome {
    /// The program ran to its end.
    Finished(Box<ProgramReport>),
    /// It paused for a request: booted (warmed up, snapshotted) and ready to serve.
    Paused(Box<Vm>),
}

/// Runs `elf` with `cfg` (argv[0] = `cfg.name`, then `cfg.main_arguments`; environment
/// `cfg.environment`) until it exits, fails, or pauses for a request, within
/// `cfg.max_boot_time`. Output goes where `cfg.output` says.
pub fn run_to_exit(cfg: Arc<VmConfig>, elf: &[u8]) -> Result<Outcome, VmError> {
    let t0 = Instant::now();
    let mut vm = Vm::load(cfg, elf)?;
    let load = t0.elapsed();
    let deadline = t0 + vm.cfg.max_boot_time;
    let mut stats = RequestStats::default();
    let first = vm.run(deadline, &mut stats);
    if matches!(first, Ok((Stop::Paused { .. } | Stop::Listening { .. }, _))) {
        return Ok(Outcome::Paused(Box::new(
            vm.finish_boot(t0, deadline, first, stats)?,
        )));
    }
    let end = match first {
        Ok((Stop::Exited(code), _)) => ProgramEnd::Exited(code),
        Ok((Stop::Fatal(m), _)) => ProgramEnd::Failed(m),
        Ok((Stop::Responded(_) | Stop::Stream(_), _)) => {
            ProgramEnd::Failed("it sent a response without being asked a request".into())
        }
        Ok((Stop::Paused { .. } | Stop::Listening { .. }, _)) => unreachable!("handled above"),
        Err(RequestError::Timeout(_)) => ProgramEnd::Failed(format!(
            "it did not exit within max_boot_time ({:?})",
            vm.cfg.max_boot_time
        )),
        Err(e) => ProgramEnd::Failed(e.to_string()),
    };
    let end = match end {
        ProgramEnd::Failed(m) => ProgramEnd::Failed(with_output(m, &vm.log.recent())),
        e => e,
    };
    Ok(Outcome::Finished(Box::new(ProgramReport {
        end,
        load,
        wall: t0.elapsed(),
        exits: vm.machine.exits.clone(),
        syscalls: vm.log.calls.clone(),
        guest_resident_pages: resident_pages(vm.mem.host_base(), vm.mem.size()),
        host_rss: status_kib("VmRSS:") << 10,
        host_rss_anon: status_kib("RssAnon:") << 10,
        host_rss_file: status_kib("RssFile:") << 10,
    })))
}

fn with_output(mut m: String, recent: &str) -> String {
    // In passthrough mode the output is already on the terminal; only a short hint is kept.
    let last: Vec<&str> = recent.lines().rev().take(3).collect();
    if !last.is_empty() {
        m.push_str(" (last output: ");
        m.push_str(&last.into_iter().rev().collect::<Vec<_>>().join(" / "));
        m.push(')');
    }
    m
}

/// Pages of the host mapping `[base, base + size)` that are resident (mincore, a GiB at
/// a time so the buffer stays small however large the guest's address space is).
fn resident_pages(base: u64, size: u64) -> u64 {
    const PAGE: u64 = 4096;
    const CHUNK: u64 = 1 << 30;
    let mut vec = vec![0u8; (CHUNK / PAGE) as usize];
    let end = base.saturating_add(size);
    let mut at = base;
    let mut total = 0;
    while at < end {
        let len = CHUNK.min(end - at);
        let pages = len.div_ceil(PAGE) as usize;
        // SAFETY: mincore reads no memory; it writes one byte per page of the range into
        // `vec`, which holds CHUNK / PAGE ≥ `pages` bytes.
        let rc = unsafe { libc::mincore(at as *mut libc::c_void, len as usize, vec.as_mut_ptr()) };
        if rc == 0 {
            total += vec[..pages].iter().filter(|&&b| b & 1 != 0).count() as u64;
        }
        at += len;
    }
    total
}

/// A kB figure of /proc/self/status (`field` like "VmRSS:"); 0 when it cannot be read.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

impl ProgramReport {
    /// The figures as text for a terminal (one item per line).
    pub fn figures(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "kvmjs: {}; load {:.2} ms, wall {:.2} ms",
            match &self.end {
                ProgramEnd::Exited(c) => format!("exited with status {c}"),
                ProgramEnd::Failed(m) => format!("failed: {m}"),
            },
            self.load.as_secs_f64() * 1e3,
            self.wall.as_secs_f64() * 1e3
        );
        let _ = writeln!(
            s,
            "kvmjs: memory: {} guest pages resident ({:.1} MiB), host process RSS {:.1} MiB (anon {:.1}, file {:.1})",
            self.guest_resident_pages,
            self.guest_resident_pages as f64 * 4096.0 / 1048576.0,
            self.host_rss as f64 / 1048576.0,
            self.host_rss_anon as f64 / 1048576.0,
            self.host_rss_file as f64 / 1048576.0
        );
        let kinds: Vec<String> = self
            .exits
            .by_kind()
            .into_iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "kvmjs: VM exits: {} ({})",
            self.exits.total(),
            kinds.join(", ")
        );
        let hist: Vec<String> = self
            .syscalls
            .histogram()
            .into_iter()
            .map(|(nr, n)| format!("{} {n}", SyscallCounts::name(nr)))
            .collect();
        let _ = writeln!(
            s,
            "kvmjs: system calls: {} ({})",
            self.syscalls.total(),
            hist.join(", ")
        );
        let enosys: Vec<String> = self
            .syscalls
            .enosys()
            .into_iter()
            .map(|(nr, n)| format!("{} x{n}", SyscallCounts::name(nr)))
            .collect();
        let _ = writeln!(
            s,
            "kvmjs: ENOSYS: {}",
            if enosys.is_empty() {
                "none".to_string()
            } else {
                enosys.join(", ")
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::Flow;

    #[test]
    fn figures_name_everything() {
        let mut calls = SyscallCounts::default();
        calls.record(1, &Flow::ok(2));
        calls.record(1, &Flow::ok(2));
        calls.record(425, &Flow::err(libc::ENOSYS));
        let mut exits = ExitCounts {
            syscall: 3,
            ..Default::default()
        };
        exits.exception[14] = 2;
        let r = ProgramReport {
            end: ProgramEnd::Exited(3),
            load: Duration::from_millis(2),
            wall: Duration::from_millis(10),
            exits,
            syscalls: calls,
            guest_resident_pages: 256,
            host_rss: 8 << 20,
            host_rss_anon: 6 << 20,
            host_rss_file: 2 << 20,
        };
        let f = r.figures();
        assert!(f.contains("exited with status 3"), "{f}");
        assert!(
            f.contains("VM exits: 5 (syscall 3, exception 14 (#PF) 2)"),
            "{f}"
        );
        assert!(
            f.contains("system calls: 3 (write 2, io_uring_setup 1)"),
            "{f}"
        );
        assert!(f.contains("ENOSYS: io_uring_setup x1"), "{f}");
        assert!(
            f.contains(
                "256 guest pages resident (1.0 MiB), host process RSS 8.0 MiB (anon 6.0, file 2.0)"
            ),
            "{f}"
        );
    }

    #[test]
    fn resident_pages_follow_touched_memory() {
        let len = 64 << 20;
        // SAFETY: a fresh anonymous mapping, unmapped below; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(resident_pages(p as u64, len as u64), 0);
        for i in 0..100 {
            // SAFETY: inside the mapping (100 × 64 KiB < 64 MiB).
            unsafe { *p.cast::<u8>().add(i * 65536) = 1 };
        }
        assert_eq!(resident_pages(p as u64, len as u64), 100);
        // SAFETY: unmaps the mapping made above.
        unsafe { libc::munmap(p, len) };
        assert!(status_kib("VmRSS:") > 0 && status_kib("RssAnon:") > 0);
    }
}
