//! `kvmjs run`: boot a guest and drive it with synthetic requests.

use crate::summary::{mean, p50_p99};
use kvmjs_vm::{AllowedPath, Request, RequestStats, Vm, VmConfig};
use std::path::PathBuf;
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
    /// Static x86-64 ELF speaking the libvmod-tinykvm guest ABI.
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
    /// Guest address space in MB.
    #[arg(long, default_value_t = 256)]
    address_space: u64,
    /// Guest memory limit in MB.
    #[arg(long, default_value_t = 256)]
    max_memory: u64,
    /// Seconds allowed per request.
    #[arg(long, default_value_t = 8.0)]
    max_request_time: f64,
    /// Seconds allowed until the guest pauses.
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

pub fn run(a: RunArgs) -> Result<(), RunError> {
    crate::host_caps().map_err(RunError::Host)?;
    let elf = std::fs::read(&a.guest).map_err(|source| RunError::Read {
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
        let abs = p.canonicalize().map_err(|source| RunError::Allow {
            path: p.clone(),
            source,
        })?;
        allowed_paths.push(AllowedPath::same(abs));
    }
    let name = a
        .guest
        .file_name()
        .map_or_else(|| "guest".into(), |n| n.to_string_lossy().into_owned());
    let cfg = VmConfig {
        name,
        address_space: a.address_space << 20,
        max_memory: a.max_memory << 20,
        max_request_time: Duration::from_secs_f64(a.max_request_time),
        max_boot_time: Duration::from_secs_f64(a.max_boot_time),
        ephemeral: a.ephemeral,
        main_arguments: a.guest_args.clone(),
        allowed_paths,
        environment: a.environment.clone(),
        ..Default::default()
    };
    let t = Instant::now();
    let mut vm = Vm::boot(Arc::new(cfg), &elf)?;
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
    Ok(())
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
