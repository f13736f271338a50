//! `kvmjs serve` end to end: real KVM, real varnishd (Debian's 7.1) in front, raw sockets
//! for the malformed and slow cases. varnishd must be installed (.ci/run installs it); the
//! tests fail rather than skip without it.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn varnish_routes_to_programs_and_limits_hold() {
    let (k, kport) = kvmjs(CONFIG, "main", &["--header-timeout", "0.5"]);
    let (_v, vport) = varnish(kport, "varnish");
    // Two programs routed by Varnish.
    let r = get(vport, "/hello/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello, World!\n"),
        "{}",
        k.log()
    );
    assert_eq!(r.header("x-served-by").as_deref(), Some("varnish+kvmjs"));
    let r = request(
        vport,
        "POST",
        "/echo/path?q=1",
        &["X-Echo: round trip", "Content-Type: text/plain"],
        b"the body",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    assert!(
        t.contains(r#""method":"POST""#)
            && t.contains(r#""body":"the body""#)
            && t.contains(r#""x-echo":"round trip""#),
        "{t}"
    );
    assert_eq!(r.header("x-echo").as_deref(), Some("round trip"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    // Unknown program.
    let r = get(vport, "/nope/x");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("no program named \"nope\""),
        "{}",
        r.text()
    );
    // Oversized body (max_request_body 1 MB).
    let r = request(vport, "POST", "/echo/", &[], &vec![b'x'; 2 << 20]);
    assert_eq!(r.status, 413, "{}", r.text());
    // Malformed requests: directly and through Varnish.
    for port in [kport, vport] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).status, 400);
    }
    // Headers too large, and too slow (slowloris), directly.
    let big = format!("X-Big: {}", "a".repeat(100_000));
    assert_eq!(request(kport, "GET", "/hello/", &[&big], b"").status, 431);
    let mut s = TcpStream::connect(("127.0.0.1", kport)).unwrap();
    s.write_all(b"GET /hello/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(read_response(&mut s).status, 408);
    assert!(t.elapsed() < Duration::from_secs(3));
    // A handler loop ends with 504 within max_request_time (1 s).
    let t = Instant::now();
    let r = get(vport, "/apps/loop");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_millis(1800),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(get(vport, "/apps/ok").text(), "ok");
    // Framing headers from the guest are dropped (JS `Headers` allows setting them).
    let r = get(kport, "/apps/framing");
    assert_eq!(
        (
            r.text().as_str(),
            r.header("content-length").as_deref(),
            r.header("x-kept").as_deref()
        ),
        ("four", Some("4"), Some("yes"))
    );
    // ctx.waitUntil: the response does not wait for 800 ms of background work, which then
    // runs on its VM (kvmjs_background_seconds) while the other VM serves on.
    let t = Instant::now();
    let r = get(kport, "/apps/wait-until-slow?ms=800");
    assert_eq!(r.text(), "responded first");
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(get(kport, "/apps/ok").text(), "ok");
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        metric(kport, "kvmjs_background_seconds_count{program=\"apps\"}"),
        1.0
    );
    // Two clients in parallel on concurrency 2: both 300 ms sleeps finish together.
    get(vport, "/apps/sleep");
    let t = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(vport, "/apps/sleep")))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().text(), "slept");
    }
    assert!(
        t.elapsed() < Duration::from_millis(550),
        "not parallel: {:?}",
        t.elapsed()
    );
    // An idle program unloads and boots again.
    assert_eq!(get(vport, "/idle/").status, 200);
    assert_eq!(
        metric(kport, "kvmjs_cold_starts_total{program=\"idle\"}"),
        1.0
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        metric(kport, "kvmjs_program_loaded{program=\"idle\"}"),
        0.0,
        "{}",
        k.log()
    );
    assert_eq!(get(vport, "/idle/").text(), "Hello, World!\n");
    assert_eq!(
        metric(kport, "kvmjs_cold_starts_total{program=\"idle\"}"),
        2.0
    );
    // ... by cause: its first request, then one after the keep-alive unload.
    for (cause, n) in [("first", 1.0), ("after_unload", 1.0), ("prewarm", 0.0)] {
        assert_eq!(
            metric(
                kport,
                &format!("kvmjs_cold_start_causes_total{{program=\"idle\",cause=\"{cause}\"}}")
            ),
            n,
            "{cause}"
        );
    }
    // The fixed policy's window is its idle_timeout (1 s), with no pre-warm.
    assert_eq!(
        metric(
            kport,
            "kvmjs_keep_alive_seconds{program=\"idle\",window=\"keep_alive\"}"
        ),
        1.0
    );
    // Counters per program.
    assert!(metric(kport, "kvmjs_vm_exits_total{program=\"hello\"}") >= 1.0);
    // The host probe is exported as an info metric, with the guest's XCR0 in it.
    let m = get(kport, "/metrics").text();
    let info = m
        .lines()
        .find(|l| l.starts_with("kvmjs_host_info{"))
        .unwrap_or_else(|| panic!("no kvmjs_host_info in:\n{m}"));
    for key in [
        "vendor=",
        "kvm=",
        "guest_xcr0=\"0x",
        "xsave_bytes=",
        "syscall_cpl=",
    ] {
        assert!(info.contains(key), "{key} missing: {info}");
    }
    assert!(
        metric(
            kport,
            "kvmjs_errors_total{program=\"apps\",kind=\"timeout\"}"
        ) >= 1.0
    );
    assert!(k.log().contains("cold start in"), "{}", k.log());
}

#[test]
fn config_errors_are_clear() {
    let run = |cfg: &str, tag: &str| {
        let dir = tmpdir(tag);
        let path = dir.join("tinykvm.json");
        std::fs::write(&path, cfg.replace("$REPO", &repo().to_string_lossy())).unwrap();
        Command::new(env!("CARGO_BIN_EXE_kvmjs"))
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--guest")
            .arg(guest())
            .output()
            .unwrap()
    };
    let o = run(
        r#"{ "a": { "filename": "$REPO/js/hello.js", "concurrency": "two" } }"#,
        "type",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(
            "\"a\": key \"concurrency\": expected a whole number from 1 to 255, got \"two\""
        ),
        "{err}"
    );
    let o = run(
        r#"{ "a": { "filename": "$REPO/js/missing.js" } }"#,
        "missing",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("missing.js") && err.contains("No such file"),
        "{err}"
    );
    let o = run(
        r#"{ "a": { "filename": "$REPO/js/hello.js", "max_memroy": 64 } "#,
        "syntax",
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not valid JSON"));
    // Huge pages without reserved pages: a start-up error that says how to reserve them.
    let free: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:")?.trim().parse().ok())
        .unwrap_or(0);
    if free == 0 {
        let o = run(
            r#"{ "a": { "filename": "$REPO/js/hello.js", "hugepages": true } }"#,
            "huge",
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("hugepages-2048kB/nr_hugepages"),
            "{err}"
        );
    } else {
        // With pages reserved, a huge-page program boots and serves.
        let cfg = r#"{ "a": { "filename": "$REPO/js/hello.js", "hugepages": true, "concurrency": 1, "address_space": 64, "max_memory": 64 } }"#;
        let (k, port) = kvmjs(cfg, "hugeok", &[]);
        assert_eq!(get(port, "/a/").text(), "Hello, World!\n", "{}", k.log());
    }
    // An unknown key is a warning; the server starts.
    let (k, port) = kvmjs(
        r#"{ "a": { "filename": "$REPO/js/hello.js", "max_memroy": 64 } }"#,
        "unknown",
        &[],
    );
    assert_eq!(get(port, "/a/").status, 200);
    assert!(
        k.log().contains("unknown key \"max_memroy\""),
        "{}",
        k.log()
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let (mut k, port) = kvmjs(CONFIG, "term", &[]);
    get(port, "/apps/ok");
    let clients: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(port, "/apps/sleep")))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(k.child.id() as i32, libc::SIGTERM) }, 0);
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    }
    let status = k.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", k.log());
}
