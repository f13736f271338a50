//! Guest threads on the single vCPU, against real /dev/kvm, with the threads test guest
//! (std threads: clone3, futexes, robust lists, thread exit). These tests fail (they do not
//! skip) when KVM is unavailable.

use kvmjs_vm::{Request, RequestError, Vm, VmConfig};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const GUEST: &str = env!("CARGO_BIN_EXE_threads-guest");

fn boot() -> Vm {
    boot_with(true)
}

fn boot_with(ephemeral: bool) -> Vm {
    let cfg = VmConfig {
        ephemeral,
        name: "threads".into(),
        address_space: 256 << 20,
        max_memory: 128 << 20,
        max_request_memory: 64 << 20,
        max_request_time: Duration::from_secs(5),
        ..Default::default()
    };
    let elf = std::fs::read(GUEST).expect("the threads guest is built by cargo");
    Vm::boot(Arc::new(cfg), &elf).unwrap_or_else(|e| panic!("boot failed: {e}"))
}

fn get(vm: &mut Vm, url: &str) -> String {
    let r = vm
        .handle(&Request::get(url))
        .unwrap_or_else(|e| panic!("{url} failed: {e}"));
    assert_eq!(r.status, 200, "{url}");
    String::from_utf8(r.body).unwrap()
}

/// What the same binary prints natively for `url` (after its boot-time `turns(3)`).
fn native(url: &str) -> String {
    let out = Command::new(GUEST)
        .args(["--native", url])
        .output()
        .expect("run the guest natively");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn four_threads_with_mutex_and_condvar_match_a_native_run() {
    let mut vm = boot();
    for url in ["/turns?3", "/turns?5"] {
        let want = native(url);
        let got = get(&mut vm, url);
        assert!(got.contains("round 4 thread 3") == url.ends_with('5'));
        assert!(got.contains("distinct tids 5\n"), "{got}");
        assert!(want.ends_with(&got), "VM:\n{got}\nnative:\n{want}");
        // The same request again (after a reset): the same bytes.
        assert_eq!(get(&mut vm, url), got);
    }
}

#[test]
fn a_thread_blocked_at_the_snapshot_serves_every_request() {
    let mut vm = boot();
    for n in [1u64, 10, 100, 1000] {
        let got = get(&mut vm, &format!("/worker?{n}"));
        // jobs=1 every time: the worker is back at its snapshot state after each reset.
        assert_eq!(got, format!("sum={} jobs=1\n", n * (n + 1) / 2));
    }
}

#[test]
fn timeouts_sleeps_and_yields_in_threads() {
    let mut vm = boot();
    assert_eq!(get(&mut vm, "/timeout"), "timed_out=true\n");
    let t0 = std::time::Instant::now();
    assert_eq!(get(&mut vm, "/sleep"), "slept=7\n");
    assert!(t0.elapsed() >= Duration::from_millis(20));
    assert_eq!(get(&mut vm, "/yield"), "count=15\n");
}

#[test]
fn threads_beyond_the_limit_fail_to_spawn_cleanly() {
    let mut vm = boot();
    // 64 threads at most: main, the worker and 62 more.
    assert_eq!(get(&mut vm, "/many"), "started=62 failed=18\n");
    assert_eq!(get(&mut vm, "/turns?2").lines().count(), 8 + 2);
}

#[test]
fn all_threads_blocked_forever_is_an_error_not_a_hang() {
    let mut vm = boot();
    let t0 = std::time::Instant::now();
    let e = vm.handle(&Request::get("/deadlock")).unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "no hang until the time limit"
    );
    let RequestError::Guest(m) = &e else {
        panic!("{e}")
    };
    assert!(
        m.starts_with("all guest threads are blocked forever: "),
        "{m}"
    );
    assert!(m.contains("thread 1 in futex waiting on futex 0x"), "{m}");
    assert!(
        m.contains("thread 6 in futex waiting on futex 0x"),
        "the worker (after 4 boot threads): {m}"
    );
    // The VM was reset and serves on.
    assert_eq!(get(&mut vm, "/worker?3"), "sum=6 jobs=1\n");
}

#[test]
fn scheduling_is_deterministic_and_vector_state_is_per_thread() {
    let mut vm = boot();
    // FIFO round robin: each yield passes the vCPU to the next thread in line.
    for _ in 0..5 {
        assert_eq!(get(&mut vm, "/interleave"), "order=012012012012\n");
    }
    let mut other = boot();
    assert_eq!(get(&mut other, "/interleave"), "order=012012012012\n");
    for _ in 0..3 {
        assert_eq!(get(&mut vm, "/xmm"), "vector mismatches=0\n");
    }
}

#[test]
fn without_resets_the_worker_thread_keeps_its_state() {
    let mut vm = boot_with(false);
    for jobs in 1..=5u64 {
        assert_eq!(get(&mut vm, "/worker?4"), format!("sum=10 jobs={jobs}\n"));
        assert!(get(&mut vm, "/turns?1").contains("distinct tids 5\n"));
    }
}
