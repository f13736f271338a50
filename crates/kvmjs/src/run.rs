//! `kvmjs run`: run a Linux program to completion, or, when it pauses in
//! `wait_for_requests_paused`, drive it with synthetic requests.
//!
//! A program that never pauses has its stdout/stderr passed straight through; kvmjs then
//! prints the run's figures to stderr and exits with the program's status.

use crate::mapped::MappedFile;
use crate::summary::{mean, p50_p99};
use kvmjs_vm::program::{self, Outcome, ProgramEnd};
use kvmjs_vm::{AllowedPath, GuestOutput, Request, RequestStats, Vm, VmConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of `kvmjs run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The host cannot run VMs (the probe says why).
    #[error("{0}")]
    Host(String),
    /// The guest file could not be read.
    #[error("cannot read guest program {path}: {source}")]
    Read {
        /// Path given.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Boot failed.
    #[error(transparent)]
    Boot(#[from] kvmjs_vm::VmError),
    /// An --allow path does not exist.
    #[error("--allow {path}: {source}")]
    Allow {
        /// Path given.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A header argument is malformed.
    #[error("header {0:?} must look like \"Name: value\"")]
    Header(String),
    /// Some requests failed.
    #[error("{failed} of {total} requests failed")]
    Failed {
        /// How many failed.
        failed: usize,
        /// How many were sent.
        total: usize,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// x86-64 Linux ELF: a program run to completion, or a guest speaking the
    /// libvmod-tinykvm API (it pauses in wait_for_requests_paused and gets requests).
    guest: PathBuf,
    /// URL of each request.
    #[arg(long, default_value = "/")]
    url: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body.
    #[arg(long, default_value = "")]
    body: String,
    /// Number of requests.
    #[arg(short = 'n', long, default_value_t = 1)]
    requests: usize,
    /// Reset the VM to its snapshot after every request.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ephemeral: bool,
    /// Guest-physical memory (the frame pool) in MB [default: 256; 4096 for a dynamically
    /// linked program: V8 commits a 512 MiB code range].
    #[arg(long)]
    address_space: Option<u64>,
    /// Guest memory limit in MB [default: 256; 2048 for a dynamically linked program].
    #[arg(long)]
    max_memory: Option<u64>,
    /// Do not add the system library directories to the allowed paths of a dynamically
    /// linked program.
    #[arg(long)]
    no_system_libs: bool,
    /// Seconds allowed per request.
    #[arg(long, default_value_t = 8.0)]
    max_request_time: f64,
    /// Seconds allowed until the guest pauses (a program that never pauses: until it exits).
    #[arg(long, default_value_t = 16.0)]
    max_boot_time: f64,
    /// File or directory the guest may read (repeatable).
    #[arg(long = "allow")]
    allowed_paths: Vec<PathBuf>,
    /// Environment variable for the guest, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    environment: Vec<String>,
    /// After the run, print where the last request's dirty pages were.
    #[arg(long)]
    dirty_map: bool,
    /// Print every response (default: only when sending at most 5 requests).
    #[arg(long)]
    print: bool,
    /// Arguments passed to the guest (after `--`).
    #[arg(last = true)]
    guest_args: Vec<String>,
}

/// Runs the command; the exit code is the program's status (requests: success/failure).
pub fn run(a: RunArgs) -> Result<ExitCode, RunError> {
    crate::host_caps().map_err(RunError::Host)?;
    let elf = MappedFile::open(&a.guest).map_err(|source| RunError::Read {
        path: a.guest.clone(),
        source,
    })?;
    for h in &a.headers {
        if !h.contains(':') {
            return Err(RunError::Header(h.clone()));
        }
    }
    let mut allowed_paths = Vec::new();
    for p in &a.allowed_paths {
        let real = p.canonicalize().map_err(|source| RunError::Allow {
            path: p.clone(),
            source,
        })?;
        // The guest sees the path as given (made absolute, symlinks kept: /lib64 stays
        // /lib64 where it links to /usr/lib64); the host reads the resolved one.
        let given = std::path::absolute(p).map_err(|source| RunError::Allow {
            path: p.clone(),
            source,
        })?;
        allowed_paths.push(AllowedPath {
            virtual_path: given.to_string_lossy().into_owned(),
            prefix: real.is_dir(),
            real,
        });
    }
    // argv[0] is the program's absolute path, which it may also open (deno maps its own
    // binary): reading what it was asked to run is allowed.
    let program_path = a.guest.canonicalize().map_err(|source| RunError::Read {
        path: a.guest.clone(),
        source,
    })?;
    allowed_paths.push(AllowedPath::same(&program_path));
    let name = program_path.to_string_lossy().into_owned();
    // A dynamically linked program needs its loader and libraries, and V8-sized memory:
    // make that the default so `kvmjs run .deno/bin/deno -- eval ...` just works.
    let dynamic = kvmjs_vm::loader::interpreter(elf.bytes()).is_some();
    if dynamic && !a.no_system_libs {
        allowed_paths.extend(AllowedPath::system_libs());
    }
    let (space, memory) = if dynamic { (4096, 2048) } else { (256, 256) };
    // The guest inherits nothing from the host's environment. A home in the VM's scratch
    // filesystem (/tmp) gives programs their usual cache places (deno: $HOME/.cache/deno),
    // reset with the VM, unless the user names one.
    let mut environment = a.environment.clone();
    if dynamic && !environment.iter().any(|e| e.starts_with("HOME=")) {
        environment.push("HOME=/tmp".into());
    }
    let cfg = VmConfig {
        name,
        address_space: a.address_space.unwrap_or(space) << 20,
        max_memory: a.max_memory.unwrap_or(memory) << 20,
        max_request_time: Duration::from_secs_f64(a.max_request_time),
        max_boot_time: Duration::from_secs_f64(a.max_boot_time),
        ephemeral: a.ephemeral,
        main_arguments: a.guest_args.clone(),
        allowed_paths,
        environment,
        // Like a process started from this shell: relative paths mean what they mean here
        // (the guest still reads only allowed paths).
        current_working_directory: std::env::current_dir()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "/".into()),
        output: GuestOutput::Passthrough,
        ..Default::default()
    };
    let t = Instant::now();
    let mut vm = match program::run_to_exit(Arc::new(cfg), elf.bytes())? {
        Outcome::Paused(vm) => vm,
        Outcome::Finished(report) => {
            eprint!("{}", report.figures());
            return Ok(match report.end {
                // Linux keeps the low 8 bits of the status.
                ProgramEnd::Exited(code) => ExitCode::from(code as u8),
                ProgramEnd::Failed(_) => ExitCode::FAILURE,
            });
        }
    };
    run_requests(&a, &mut vm, t)
}

/// Drives a guest that paused for requests: sends them and prints the counters.
fn run_requests(a: &RunArgs, vm: &mut Vm, t: Instant) -> Result<ExitCode, RunError> {
    vm.trace_dirty_pages(a.dirty_map);
    let boot = vm.boot_stats();
    println!(
        "booted {} in {:.2} ms ({} exits, {} system calls; snapshot {} pages); ephemeral={}",
        a.guest.display(),
        t.elapsed().as_secs_f64() * 1e3,
        boot.exits,
        boot.syscalls,
        vm.snapshot_pages(),
        a.ephemeral
    );
    if let Some(f) = kvmjs_vm::flavour() {
        println!(
            "KVM: SYSCALL entry at CPL {} ({}), RIP at MMIO exit {} the trapping write",
            f.syscall_cpl,
            if f.syscall_cpl == 3 {
                "PVM-style"
            } else {
                "VMX/SVM-style"
            },
            if f.rip_past_trap { "past" } else { "at" }
        );
    }
    let req = Request {
        method: a.method.clone(),
        url: a.url.clone(),
        headers: a.headers.clone(),
        content_type: a
            .headers
            .iter()
            .find_map(|h| {
                h.strip_prefix("Content-Type:")
                    .or_else(|| h.strip_prefix("content-type:"))
            })
            .map_or_else(String::new, |v| v.trim().to_string()),
        body: a.body.clone().into_bytes(),
        ..Default::default()
    };
    let print = a.print || a.requests <= 5;
    let mut stats: Vec<RequestStats> = Vec::with_capacity(a.requests);
    let mut failed = 0;
    let wall = Instant::now();
    for i in 0..a.requests {
        match vm.handle(&req) {
            Ok(r) if print => {
                println!("--- response {} ---\nstatus {}", i + 1, r.status);
                println!("Content-Type: {}", String::from_utf8_lossy(&r.content_type));
                for h in &r.headers {
                    println!("{}", String::from_utf8_lossy(h));
                }
                println!("\n{}", String::from_utf8_lossy(&r.body));
            }
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                if print || failed <= 5 {
                    println!("--- request {} failed: {e}", i + 1);
                }
            }
        }
        stats.push(vm.last_stats());
    }
    let wall = wall.elapsed();
    summarize(&mut stats, wall);
    if a.dirty_map {
        let mut by_region: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
        for (addr, region) in vm.dirty_trace() {
            by_region.entry(region).or_default().push(addr);
        }
        for (region, pages) in by_region {
            let first = pages.first().copied().unwrap_or(0);
            let last = pages.last().copied().unwrap_or(0);
            println!(
                "dirty {region:<13} {:>5} pages  {first:#x}..{last:#x}",
                pages.len()
            );
        }
    }
    if failed > 0 {
        return Err(RunError::Failed {
            failed,
            total: a.requests,
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// Extracts one counter from a request's stats.
type Column = fn(&RequestStats) -> f64;

fn summarize(stats: &mut [RequestStats], wall: Duration) {
    if stats.is_empty() {
        return;
    }
    let col = |f: fn(&RequestStats) -> f64| -> Vec<f64> { stats.iter().map(f).collect() };
    println!(
        "{} requests in {:.3} s ({:.0} req/s)",
        stats.len(),
        wall.as_secs_f64(),
        stats.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10}",
        "per request", "mean", "p50", "p99"
    );
    let rows: [(&str, Column); 5] = [
        ("total µs", |s| s.total_us),
        ("reset µs", |s| s.reset_us),
        ("VM exits", |s| s.exits as f64),
        ("dirty pages", |s| s.dirty_pages as f64),
        ("system calls", |s| s.syscalls as f64),
    ];
    for (name, f) in rows {
        let mut v = col(f);
        let m = mean(&v);
        let (p50, p99) = p50_p99(&mut v);
        println!("{name:<18} {m:>10.1} {p50:>10.1} {p99:>10.1}");
    }
}
