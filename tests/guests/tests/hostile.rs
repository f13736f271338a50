//! The hostile-guest suite: each case states its expected outcome; after every case the
//! host is alive and the next request sees a fresh VM (counter 1, its own URL).

use kvmjs_vm::{AllowedPath, Request, RequestError, Response, Vm, VmConfig};
use std::sync::Arc;
use std::time::Duration;

fn guest_elf() -> Vec<u8> {
    std::fs::read(env!("CARGO_BIN_EXE_echo-guest")).expect("echo guest is built by cargo")
}

fn config(allowed: &std::path::Path) -> VmConfig {
    VmConfig {
        name: "hostile".into(),
        address_space: 64 << 20,
        max_memory: 32 << 20,
        max_request_memory: 16 << 20,
        max_response_body: 1 << 20,
        max_request_time: Duration::from_millis(300),
        allowed_paths: vec![AllowedPath::same(allowed)],
        ..Default::default()
    }
}

/// What a case must produce.
enum Expect {
    /// A response with this status whose body satisfies the check.
    Ok(u16, fn(&str) -> bool),
    /// A request error whose message contains all of these.
    Err(&'static [&'static str]),
    /// A timeout.
    Timeout,
}

fn check(name: &str, got: &Result<Response, RequestError>, want: &Expect) -> String {
    match (got, want) {
        (Ok(r), Expect::Ok(status, f)) => {
            let body = String::from_utf8_lossy(&r.body);
            assert!(
                r.status == *status && f(&body),
                "{name}: got {} {body:?}",
                r.status
            );
            format!("{} {}", r.status, body.chars().take(60).collect::<String>())
        }
        (Err(RequestError::Timeout(d)), Expect::Timeout) => format!("timeout after {d:?}"),
        (Err(e), Expect::Err(parts)) => {
            let m = e.to_string();
            assert!(parts.iter().all(|p| m.contains(p)), "{name}: {m}");
            m.chars().take(100).collect()
        }
        (got, _) => panic!("{name}: unexpected {got:?}"),
    }
}

#[test]
fn hostile_guest_suite() {
    let dir = std::env::temp_dir().join(format!("kvmjs-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ok.txt"), "allowed").unwrap();
    let mut vm = Vm::boot(Arc::new(config(&dir)), &guest_elf()).unwrap();
    let d = dir.display();
    let escape = format!("/read?{d}/../../etc/passwd");
    let cases: Vec<(&str, String, Expect)> = vec![
        ("infinite loop", "/loop".into(), Expect::Timeout),
        (
            "unbounded recursion",
            "/recurse".into(),
            Expect::Err(&["stack overflow"]),
        ),
        (
            "allocation bomb",
            "/oom".into(),
            Expect::Err(&["SIGABRT", "memory allocation of"]),
        ),
        (
            "huge response body (8 MB, limit 1 MB)",
            "/huge-body".into(),
            Expect::Err(&["exceeds", "max_response_body"]),
        ),
        (
            "response with 10,000 headers",
            "/many-headers".into(),
            Expect::Err(&["10000 extra headers", "at most 64"]),
        ),
        (
            "backend_response: bad body pointer",
            "/bad-body".into(),
            Expect::Err(&["body: guest range"]),
        ),
        (
            "backend_response: bad content-type pointer",
            "/bad-ctype".into(),
            Expect::Err(&["content-type: guest range"]),
        ),
        (
            "backend_response: bad extra pointer",
            "/bad-headers".into(),
            Expect::Err(&["extra: guest range"]),
        ),
        (
            "backend_response: invalid status",
            "/bad-status".into(),
            Expect::Err(&["status 7 is outside"]),
        ),
        (
            "bad/wrapping pointers in every other API call",
            "/bad-api-args".into(),
            Expect::Ok(200, |b| b == "[-14, -14, -22, -14, -14, -14, -14, -38]"),
        ),
        (
            "request buffer in the system pages",
            "/bad-wait".into(),
            Expect::Err(&["wait_for_requests_paused", "not writable"]),
        ),
        (
            "unknown, forbidden and task-creating syscalls",
            "/syscalls".into(),
            // socket(0, 0, 0) is refused as Linux refuses AF_UNSPEC (EAFNOSUPPORT); the
            // VM has no network sockets of any family yet.
            Expect::Ok(200, |b| b == "[-38, -38, -38, -38, -97, -38, -38]"),
        ),
        (
            "open /etc/shadow",
            "/read?/etc/shadow".into(),
            Expect::Ok(403, |b| b.contains("ermission denied")),
        ),
        (
            "open ../ out of an allowed path",
            escape,
            Expect::Ok(403, |b| b.contains("ermission denied")),
        ),
        (
            "open inside the allowed path",
            format!("/read?{d}/ok.txt"),
            Expect::Ok(200, |b| b == "allowed"),
        ),
        (
            "write to its own code",
            "/write-code".into(),
            Expect::Err(&["write to read-only memory"]),
        ),
        (
            "syscall writing over the ring-0 stub",
            "/overwrite-stub".into(),
            Expect::Ok(200, |b| b == "0 -14"),
        ),
        (
            "SIGSEGV to itself",
            "/raise-segv".into(),
            Expect::Err(&["guest raised SIGSEGV"]),
        ),
        ("abort()", "/abort".into(), Expect::Err(&["SIGABRT"])),
        (
            "exit(3) during a request",
            "/exit".into(),
            Expect::Err(&["exited with status 3"]),
        ),
        (
            "null dereference",
            "/null".into(),
            Expect::Err(&["null pointer dereference"]),
        ),
        (
            "invalid opcode",
            "/ud2".into(),
            Expect::Err(&["invalid opcode"]),
        ),
        (
            "timing probe (rdtsc)",
            "/timing".into(),
            Expect::Ok(200, |b| b == "true"),
        ),
    ];
    eprintln!("| case | outcome |\n|---|---|");
    for (i, (name, url, want)) in cases.iter().enumerate() {
        // A Host header so http_find has something to copy (into a bad buffer).
        let got = vm.handle(&Request {
            headers: vec!["Host: example.com".into()],
            ..Request::get(url)
        });
        let outcome = check(name, &got, want);
        eprintln!("| {name} | {outcome} |");
        let next = format!("/next/{i}");
        let r = vm
            .handle(&Request::get(&next))
            .unwrap_or_else(|e| panic!("after {name}: {e}"));
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.starts_with(&format!("method=GET url={next} counter=1\n")),
            "after {name}: {body}"
        );
    }
    // Data of a previous request, kept in the guest's memory: never seen again.
    for i in 0..50 {
        let req = Request {
            body: format!("secret-{i}").into_bytes(),
            ..Request::get("/store")
        };
        assert_eq!(
            vm.handle(&req).unwrap().body,
            b"",
            "request {i} saw an earlier secret"
        );
    }
    eprintln!("| previous request's data (50 requests) | never seen |");
    std::fs::remove_dir_all(&dir).ok();
}

/// A VM thread under the seccomp filter serves every kind of request; a host system call
/// missing from the filter would kill this test process.
#[test]
fn vm_threads_work_under_seccomp() {
    let dir = std::env::temp_dir().join(format!("kvmjs-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ok.txt"), "allowed").unwrap();
    let d = dir.clone();
    let worker = std::thread::spawn(move || {
        let vm = Vm::boot(Arc::new(config(&d)), &guest_elf()).unwrap();
        let snap = vm.snapshot().unwrap();
        kvmjs_vm::limits::prepare_thread().unwrap();
        kvmjs_vm::seccomp::apply_to_this_thread().unwrap();
        let mut vm = vm;
        let mut served = 0;
        for url in [
            "/hello",
            "/time",
            "/log",
            "/loop",
            "/oom",
            "/null",
            "/syscalls",
            "/bad-api-args",
        ] {
            let _ = vm.handle(&Request::get(url));
            served += 1;
        }
        let r = vm
            .handle(&Request::get(&format!("/read?{}/ok.txt", d.display())))
            .unwrap();
        assert_eq!(r.body, b"allowed");
        // Replacing a VM (new KVM VM from the snapshot) works under the filter too.
        let mut fresh = Vm::from_snapshot(snap).unwrap();
        assert!(
            String::from_utf8_lossy(&fresh.handle(&Request::get("/x")).unwrap().body)
                .contains("counter=1")
        );
        served + 2
    });
    assert_eq!(worker.join().expect("the filtered VM thread"), 10);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_boot_behaviour() {
    let dir = std::env::temp_dir();
    let boot = |args: &[&str], ms: u64| {
        let cfg = VmConfig {
            main_arguments: args.iter().map(|s| s.to_string()).collect(),
            max_boot_time: Duration::from_millis(ms),
            ..config(&dir)
        };
        Vm::boot(Arc::new(cfg), &guest_elf())
            .err()
            .expect("boot must fail")
            .to_string()
    };
    let e = boot(&["--never-pause"], 300);
    assert!(e.contains("did not pause within max_boot_time"), "{e}");
    eprintln!("| guest that never pauses at boot | {e} |");
    let e = boot(&["--respond-at-boot"], 5000);
    assert!(e.contains("response before waiting"), "{e}");
    eprintln!(
        "| API call (response) before the pause | {} |",
        e.lines().next().unwrap_or("")
    );
}
