//! Host engine against real /dev/kvm with the echo test guest. These tests fail (they do
//! not skip) when KVM is unavailable: per-request isolation is the product.

use kvmjs_vm::{AllowedPath, Request, RequestError, Vm, VmConfig, VmError};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn guest_elf() -> Vec<u8> {
    std::fs::read(env!("CARGO_BIN_EXE_echo-guest")).expect("echo guest is built by cargo")
}

fn config() -> VmConfig {
    VmConfig {
        name: "echo".into(),
        address_space: 64 << 20,
        max_memory: 32 << 20,
        max_request_memory: 16 << 20,
        max_request_time: Duration::from_secs(2),
        ..Default::default()
    }
}

fn boot(cfg: VmConfig) -> Vm {
    Vm::boot(Arc::new(cfg), &guest_elf()).unwrap_or_else(|e| panic!("boot failed: {e}"))
}

fn body(vm: &mut Vm, req: &Request) -> String {
    let r = vm
        .handle(req)
        .unwrap_or_else(|e| panic!("{} failed: {e}", req.url));
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[test]
fn ephemeral_every_request_sees_the_snapshot() {
    let mut vm = boot(config());
    for i in 0..10_000 {
        let url = format!("/echo/{i}?q={i}");
        let req = Request {
            headers: vec![format!("X-Req: {i}")],
            ..Request::get(&url)
        };
        let b = body(&mut vm, &req);
        assert!(
            b.starts_with(&format!("method=GET url={url} counter=1\n")),
            "request {i}: {b}"
        );
        assert!(b.contains(&format!("X-Req: {i}\n")), "request {i}: {b}");
        let st = vm.last_stats();
        assert_eq!(
            st.exits, 1,
            "request {i}: echo path must cost exactly one exit"
        );
        assert!(
            st.dirty_pages > 0 && st.dirty_pages < 64,
            "request {i}: {} dirty pages",
            st.dirty_pages
        );
    }
}

#[test]
fn non_ephemeral_state_carries_over() {
    let mut vm = boot(VmConfig {
        ephemeral: false,
        ..config()
    });
    for i in 1..=10_000u64 {
        let b = body(&mut vm, &Request::get("/n"));
        assert!(b.contains(&format!("counter={i}\n")), "request {i}: {b}");
    }
    // Non-ephemeral costs two exits: return from the response, pause again.
    assert_eq!(vm.last_stats().exits, 2);
    assert_eq!(
        vm.last_stats().dirty_pages,
        0,
        "no reset in non-ephemeral mode"
    );
}

#[test]
fn request_data_never_leaks_into_the_next_request() {
    let mut vm = boot(config());
    for i in 0..200 {
        let req = Request {
            method: "POST".into(),
            body: format!("secret-{i}").into_bytes(),
            ..Request::get("/store")
        };
        let b = body(&mut vm, &req);
        assert_eq!(b, "", "request {i} saw an earlier request's data");
    }
    // Without reset the previous secret comes back: the check above can fail.
    let mut keep = boot(VmConfig {
        ephemeral: false,
        ..config()
    });
    let mk = |s: &str| Request {
        body: s.into(),
        ..Request::get("/store")
    };
    body(&mut keep, &mk("first"));
    assert_eq!(body(&mut keep, &mk("second")), "first");
}

#[test]
fn infinite_loop_times_out_and_the_next_request_works() {
    for ephemeral in [true, false] {
        let mut vm = boot(VmConfig {
            max_request_time: Duration::from_millis(200),
            ephemeral,
            ..config()
        });
        body(&mut vm, &Request::get("/warm"));
        let t = Instant::now();
        let err = vm.handle(&Request::get("/loop")).unwrap_err();
        let took = t.elapsed();
        assert!(matches!(err, RequestError::Timeout(_)), "{err}");
        assert!(
            took >= Duration::from_millis(200) && took <= Duration::from_millis(400),
            "took {took:?}"
        );
        let b = body(&mut vm, &Request::get("/after"));
        assert!(b.contains("url=/after"), "{b}");
        if !ephemeral {
            // A failed request resets even a non-ephemeral VM: the counter starts over.
            assert!(b.contains("counter=1\n"), "{b}");
        }
    }
}

#[test]
fn host_never_writes_system_pages_for_the_guest() {
    let mut vm = boot(config());
    assert_eq!(
        body(&mut vm, &Request::get("/overwrite-stub")),
        "0 -14",
        "EFAULT for the stub page"
    );
    // The #UD stub is intact: ud2 is still reported as such.
    let err = vm.handle(&Request::get("/ud2")).unwrap_err().to_string();
    assert!(err.contains("invalid opcode"), "{err}");
}

#[test]
fn segment_registers_do_not_survive_a_reset() {
    let mut vm = boot(config());
    // What a fresh request sees. (Under PVM ring-3 data selectors read back as 0 whatever
    // the guest loads, so the change only shows on VMX/SVM; the reset must hold on both.)
    let fresh = body(&mut vm, &Request::get("/ds"));
    body(&mut vm, &Request::get("/set-ds"));
    assert_eq!(
        body(&mut vm, &Request::get("/ds")),
        fresh,
        "DS carried over into the next request"
    );
}

#[test]
fn out_of_memory_is_enomem_inside_the_guest() {
    // The allocation bomb fails inside the guest (mmap/brk say ENOMEM) and the guest's
    // allocator aborts; the host stays within max_memory.
    let mut vm = boot(config());
    let err = vm.handle(&Request::get("/oom")).unwrap_err().to_string();
    assert!(
        err.contains("SIGABRT") && err.contains("memory allocation of"),
        "{err}"
    );
    body(&mut vm, &Request::get("/ok"));
}

#[test]
fn syscalls_during_a_request_work_and_are_counted() {
    let mut vm = boot(config());
    let b = body(&mut vm, &Request::get("/time"));
    let secs: u64 = b.trim_start_matches("time=").parse().unwrap();
    assert!(secs > 1_700_000_000, "{b}");
    body(&mut vm, &Request::get("/log"));
    assert!(vm.last_stats().syscalls >= 1);
    assert!(vm.last_stats().exits >= 2);
}

#[test]
fn files_open_only_under_allowed_paths() {
    let dir = std::env::temp_dir().join(format!("kvmjs-vm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.js"), "export default 1;\n").unwrap();
    let mut vm = boot(VmConfig {
        allowed_paths: vec![AllowedPath::same(&dir)],
        ..config()
    });
    let ok = body(
        &mut vm,
        &Request::get(&format!("/read?{}/app.js", dir.display())),
    );
    assert_eq!(ok, "export default 1;\n");
    for bad in [
        "/etc/shadow",
        "/etc/passwd",
        &format!("{}/../../etc/passwd", dir.display()),
    ] {
        let r = vm.handle(&Request::get(&format!("/read?{bad}"))).unwrap();
        assert_eq!(r.status, 403, "{bad}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("ermission denied"),
            "{bad}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn upstream_out_call_form_works() {
    let mut vm = boot(config());
    let req = Request {
        method: "PATCH".into(),
        ..Request::get("/out-method")
    };
    assert_eq!(body(&mut vm, &req), "PATCH");
    assert!(
        kvmjs_vm::flavour().is_some(),
        "the host probe records the KVM flavour"
    );
}

#[test]
fn request_and_response_headers_round_trip() {
    let mut vm = boot(config());
    let req = Request {
        method: "POST".into(),
        headers: vec![
            "Host: example.com".into(),
            "Content-Type: text/plain".into(),
        ],
        content_type: "text/plain".into(),
        body: b"payload".to_vec(),
        ..Request::get("/echo")
    };
    let r = vm.handle(&req).unwrap();
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("Host: example.com\n") && text.ends_with("body=7\npayload"),
        "{text}"
    );
    assert_eq!(r.content_type, b"text/plain");
    assert_eq!(r.headers, vec![b"X-Counter: 1".to_vec()]);
    let huge = Request {
        body: vec![7; 20 << 20],
        ..Request::get("/echo")
    };
    assert!(matches!(vm.handle(&huge), Err(RequestError::Place(_))));
    body(&mut vm, &Request::get("/after-huge"));
}

#[test]
fn boot_failures_are_reported() {
    let elf = guest_elf();
    let run = |args: &[&str], cfg: VmConfig| {
        let cfg = VmConfig {
            main_arguments: args.iter().map(|s| s.to_string()).collect(),
            ..cfg
        };
        Vm::boot(Arc::new(cfg), &elf)
            .err()
            .expect("boot must fail")
            .to_string()
    };
    let e = run(&["--exit-at-boot"], config());
    assert!(
        e.contains("exited with status 2") && e.contains("exiting at boot as asked"),
        "{e}"
    );
    let t = Instant::now();
    let e = run(
        &["--never-pause"],
        VmConfig {
            max_boot_time: Duration::from_millis(300),
            ..config()
        },
    );
    assert!(e.contains("did not pause within max_boot_time"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let e = run(&["--respond-at-boot"], config());
    assert!(e.contains("response before waiting"), "{e}");
    let e = Vm::boot(Arc::new(config()), b"\x7fELF garbage")
        .err()
        .unwrap();
    assert!(matches!(e, VmError::Loader(_)), "{e}");
    let e = Vm::boot(
        Arc::new(VmConfig {
            address_space: 1 << 20,
            ..config()
        }),
        &elf,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("address_space"), "{e}");
}

#[test]
fn vms_forked_from_a_snapshot_serve_independently_in_parallel() {
    let vm = boot(config());
    let snap = vm.snapshot().expect("booted VMs have a snapshot");
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let snap = snap.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let mut fork = Vm::from_snapshot(snap).unwrap();
                let created = t.elapsed();
                for i in 0..500 {
                    let url = format!("/w{w}/{i}");
                    let b = body(&mut fork, &Request::get(&url));
                    assert!(
                        b.starts_with(&format!("method=GET url={url} counter=1\n")),
                        "{b}"
                    );
                    assert_eq!(fork.last_stats().exits, 1);
                }
                created
            })
        })
        .collect();
    for w in workers {
        let created = w.join().expect("worker thread");
        assert!(
            created < Duration::from_millis(200),
            "fork took {created:?}"
        );
    }
}

#[test]
fn warmup_requests_run_before_the_snapshot() {
    let cfg = VmConfig {
        warmup: Some(kvmjs_vm::config::Warmup {
            num_requests: 5,
            url: "/warm".into(),
            method: "GET".into(),
            headers: vec![],
        }),
        ..config()
    };
    let mut vm = boot(cfg);
    // Five warm-up requests ran before the snapshot: every request now sees counter 6.
    for _ in 0..3 {
        assert!(body(&mut vm, &Request::get("/x")).contains("counter=6\n"));
    }
}

/// What the guest should find: the widest vector set this CPU has (the VM exposes it all).
/// AVX-512 also needs BW, as the guest does, for its 64-bit opmasks.
fn expected_vectors() -> &'static str {
    if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
        "avx512"
    } else if std::is_x86_feature_detected!("avx") {
        "avx"
    } else {
        "sse"
    }
}

#[test]
fn vector_registers_survive_every_reset() {
    // The guest loads known patterns into every ZMM/YMM/XMM register (and k1-k7, MXCSR,
    // the x87 control word) before its pause, overwrites them while answering, and checks
    // the next request finds the patterns again: the host's restore of the snapshot's
    // XSAVE state must cover every component the guest can use.
    let want = format!("vectors={} ok\n", expected_vectors());
    for (ephemeral, requests) in [(true, 200), (false, 50)] {
        let mut vm = boot(VmConfig {
            main_arguments: vec!["--vectors".into()],
            ephemeral,
            ..config()
        });
        for i in 0..requests {
            let url = format!("/v/{i}");
            let r = vm
                .handle(&Request::get(&url))
                .unwrap_or_else(|e| panic!("ephemeral={ephemeral} request {i}: {e}"));
            let b = String::from_utf8_lossy(&r.body);
            assert!(
                r.status == 200 && b.starts_with(&want),
                "ephemeral={ephemeral} request {i}: status {}: {b}",
                r.status
            );
            assert!(b.contains(&format!("url={url}\n")), "request {i}: {b}");
        }
    }
}

/// `ctx.waitUntil` semantics: the response leaves the VM before the background work runs;
/// the work then runs (bounded by max_background_time) and the VM resets after it.
#[test]
fn background_work_runs_after_the_response() {
    for ephemeral in [true, false] {
        let mut vm = boot(VmConfig {
            ephemeral,
            max_background_time: Duration::from_secs(2),
            ..config()
        });
        for i in 0..3u64 {
            let t0 = Instant::now();
            let b = body(&mut vm, &Request::get("/background?ms=300"));
            let responded = t0.elapsed();
            // The response does not wait for the 300 ms of work.
            assert!(
                responded < Duration::from_millis(150),
                "ephemeral={ephemeral}: response took {responded:?}"
            );
            // Ephemeral: every request starts from the snapshot, where no work was done;
            // non-ephemeral: the earlier requests' work had finished.
            let done = if ephemeral { 0 } else { i };
            assert!(
                b.contains(&format!("background work done before: {done}")),
                "ephemeral={ephemeral} request {i}: {b}"
            );
            let bg = vm.finish_background().expect("background work was pending");
            assert!(bg.result.is_ok(), "{:?}", bg.result);
            assert!(
                bg.duration >= Duration::from_millis(300) && bg.duration < Duration::from_secs(2),
                "{:?}",
                bg.duration
            );
            assert!(vm.finish_background().is_none());
        }
        // handle() finishes pending work itself when the caller did not.
        body(&mut vm, &Request::get("/background?ms=100"));
        let t0 = Instant::now();
        body(&mut vm, &Request::get("/x"));
        assert!(t0.elapsed() >= Duration::from_millis(100));
    }
}

#[test]
fn endless_background_work_is_stopped_and_the_vm_recovers() {
    let mut vm = boot(VmConfig {
        max_background_time: Duration::from_millis(200),
        ..config()
    });
    let b = body(&mut vm, &Request::get("/background"));
    assert!(b.starts_with("responded"), "{b}");
    let t0 = Instant::now();
    let bg = vm.finish_background().expect("pending");
    assert!(
        matches!(bg.result, Err(RequestError::Timeout(_))),
        "{:?}",
        bg.result
    );
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
    let b = body(&mut vm, &Request::get("/after"));
    assert!(b.contains("counter=1"), "{b}");
}

/// Which pages stay writable across resets is fixed before the first request and is the
/// same in every VM of a snapshot: requests that write other pages, fail or run out of
/// memory never change it, so no request can change what a later request's writes cost
/// (README, "What a request can learn about earlier ones").
#[test]
fn writable_set_is_fixed_before_requests_and_shared_by_forks() {
    let mut vm = boot(config());
    let n = vm.writable_pages();
    let manual = kvmjs_vm::Hypervisor::get().unwrap().caps().manual_dirty_log;
    assert_eq!(
        n > 0,
        manual,
        "calibration keeps the pages `GET /` writes writable"
    );
    let mut fork = Vm::from_snapshot(vm.snapshot().unwrap()).unwrap();
    assert_eq!(
        fork.writable_pages(),
        n,
        "a fork makes the same set writable"
    );
    for v in [&mut vm, &mut fork] {
        for i in 0..20 {
            let store = Request {
                method: "POST".into(),
                body: vec![i as u8; 256 << 10],
                ..Request::get("/store")
            };
            body(v, &store);
            let _ = v.handle(&Request::get("/oom"));
            let _ = v.handle(&Request::get("/recurse"));
            body(v, &Request::get(&format!("/echo/{i}")));
            assert_eq!(v.writable_pages(), n, "after round {i}");
        }
    }
    let still = boot(VmConfig {
        ephemeral: false,
        ..config()
    });
    assert_eq!(
        still.writable_pages(),
        0,
        "non-ephemeral VMs keep nothing writable"
    );
}

/// A calibration request that fails is sent once, then dropped (also by forks): a
/// configured warm-up URL that hangs costs one max_request_time, not one per request.
#[test]
fn a_failing_calibration_request_is_sent_once() {
    let cfg = VmConfig {
        warmup: Some(kvmjs_vm::config::Warmup {
            num_requests: 0,
            url: "/loop".into(),
            method: "GET".into(),
            headers: vec![],
        }),
        max_request_time: Duration::from_millis(500),
        ..config()
    };
    let t = Instant::now();
    let mut vm = boot(cfg);
    let booted = t.elapsed();
    let manual = kvmjs_vm::Hypervisor::get().unwrap().caps().manual_dirty_log;
    let timeouts = if manual { 1 } else { 0 };
    assert!(
        booted >= Duration::from_millis(500) * timeouts && booted < Duration::from_millis(1500),
        "boot took {booted:?}"
    );
    assert_eq!(
        vm.writable_pages() > 0,
        manual,
        "the other requests calibrated"
    );
    let t = Instant::now();
    let fork = Vm::from_snapshot(vm.snapshot().unwrap()).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "fork took {:?}",
        t.elapsed()
    );
    assert_eq!(fork.writable_pages(), vm.writable_pages());
    assert!(body(&mut vm, &Request::get("/x")).contains("counter=1\n"));
}

/// The guest's clock reads go through the vDSO: no exit, and the wall clock agrees with
/// the host's after every reset and in a VM forked from the snapshot (the data page is
/// snapshot memory; the TSC offset is carried to every VM).
#[test]
fn vdso_time_is_right_after_resets_and_in_forks() {
    fn check(vm: &mut Vm, round: usize) {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let b = body(vm, &Request::get("/clock"));
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let ns: u128 = b.parse().unwrap_or_else(|_| panic!("round {round}: {b}"));
        // 2 ms of slack each side: the vDSO's rate comes from the TSC kHz.
        assert!(
            ns + 2_000_000 >= before && ns <= after + 2_000_000,
            "round {round}: guest {ns}, host {before}..{after}"
        );
        assert_eq!(
            vm.last_stats().syscalls,
            0,
            "round {round}: a clock syscall"
        );
        assert_eq!(vm.last_stats().exits, 1, "round {round}");
    }
    let mut vm = boot(config());
    for round in 0..3 {
        check(&mut vm, round);
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut fork = Vm::from_snapshot(vm.snapshot().unwrap()).unwrap();
    for round in 3..5 {
        check(&mut fork, round);
        std::thread::sleep(Duration::from_millis(300));
    }
}
