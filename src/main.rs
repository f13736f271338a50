//! kvmjs guest program: QuickJS-ng running a Workers/Deno-style app, speaking the
//! libvmod-tinykvm guest ABI. It loads the app, warms it up, then pauses in
//! `wait_for_requests_paused`; the host snapshots it there and resets to that point after
//! every request.

mod engine;
mod host;
mod native;
mod options;

use engine::clock::Clock;
use engine::{Engine, HttpRequest};
use kvmjs_abi::guest::{self, CallMode};
use std::process::exit;

/// Environment variables the host sets for itself: not part of the app's `env`.
const HOST_VARS: &[&str] = &[
    "LC_ALL",
    "LC_TYPE",
    "USER",
    "KVM_NAME",
    "KVM_GROUP",
    "KVM_TYPE",
    "KVM_STATE",
    "KVM_DEBUG",
    "KVMJS_HOST",
    "KVMJS_TSC_KHZ",
    "KVMJS_DEBUG",
];

fn app_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| !HOST_VARS.contains(&k.as_str()))
        .collect()
}

/// In a VM every brk/mmap/munmap is a VM exit, and each request starts from the same
/// snapshot, so glibc trimming the heap or serving a large block with mmap would repeat
/// the same system calls in every request. Keep freed memory in the heap instead: it grows
/// during warm-up and is reused from then on.
fn keep_the_heap() {
    // SAFETY: mallopt only changes malloc's tuning; no allocation is in flight here.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TOP_PAD, 4 << 20);
    }
}

fn main() {
    let under_kvmjs = std::env::var_os(kvmjs_abi::KVMJS_HOST_ENV).is_some();
    let in_vm = under_kvmjs || std::env::var_os("KVM_NAME").is_some();
    if under_kvmjs {
        guest::set_call_mode(CallMode::Syscall);
    }
    if in_vm {
        keep_the_heap();
    }
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let clock = Clock::from_env();
    let opts = match options::Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kvmjs: {e}");
            exit(2);
        }
    };
    if !in_vm && opts.serve.is_none() {
        eprintln!("kvmjs: this program runs inside a kvmjs or TinyKVM micro-VM (e.g. `kvmjs run`), or natively with --serve ADDR");
        exit(2);
    }
    let mut engine = Engine::new(opts.clone(), clock, wall_ms, in_vm).unwrap_or_else(|e| {
        eprintln!("kvmjs: {e}");
        exit(1);
    });
    if let Err(e) = engine.load_app(&opts.app, &app_env()) {
        eprintln!("kvmjs: {e}");
        exit(1);
    }
    for i in 0..opts.warmup {
        let req = HttpRequest {
            method: "GET".into(),
            url: "http://localhost/".into(),
            headers: vec![("host".into(), "localhost".into())],
            body: None,
        };
        let res = engine.handle(&req);
        if i == 0 && res.status >= 500 {
            eprintln!(
                "kvmjs: warm-up request answered {} (continuing)",
                res.status
            );
        }
    }
    // Before the snapshot: the Intl/crypto.subtle code the app's source names.
    engine.after_warmup();
    engine.gc();
    if let Some(addr) = opts.serve.as_deref() {
        if let Err(e) = native::serve(&mut engine, addr, opts.fork) {
            eprintln!("kvmjs: {e}");
            exit(1);
        }
        return;
    }
    host::serve(&mut engine);
}
