//! Issue 13's acceptance: on the deno engine a request costs one VM exit (the fast path,
//! kvmjs_vm::fastpath), for hello and the React renderer, whether the client keeps its
//! connection alive or opens one per request (ephemeral, and hello non-ephemeral; a
//! non-ephemeral renderer's V8 grows its heap now and then, which the host must map); a
//! warm-up count that would leave V8 growing its heap in every request is settled at boot;
//! and `"fast_path": false` still serves the same answers, an exit per socket call.
//! Counted from `GET /metrics`.
//! Needs /dev/kvm, the deno CLI (.deno/) and the renderer bundle; fails without them.

mod common;
use common::*;
use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

fn config() -> String {
    let programs: Vec<String> = [
        ("hello", "hello", true, true),
        ("hellon", "hello", false, true),
        ("renderer", "renderer", true, true),
        ("renderern", "renderer", false, true),
        ("plain", "hello", true, false),
        // A warm-up count at which a request from the snapshot would grow V8's heap every
        // time (measured: 8 exits per request): the boot moves the snapshot on.
        ("renderer110", "renderer", true, true),
    ]
    .iter()
    .map(|(name, app, ephemeral, fast)| {
        let warm = if *name == "renderer110" {
            r#", "warmup": { "num_requests": 110 }"#
        } else {
            ""
        };
        format!(
            r#""{name}": {{ "filename": "$REPO/js/{app}.js", "engine": "deno", "concurrency": 1, "ephemeral": {ephemeral}, "fast_path": {fast}, "max_memory": 1024, "address_space": 4096, "max_boot_time": 120, "max_request_time": 20{warm} }}"#
        )
    })
    .collect();
    format!("{{\n{}\n}}", programs.join(",\n"))
}

fn exits(port: u16, program: &str) -> f64 {
    metric(
        port,
        &format!("kvmjs_vm_exits_total{{program=\"{program}\"}}"),
    )
}

/// `n` GETs of `/{program}/` over one kept-alive connection.
fn keep_alive(port: u16, program: &str, n: usize) -> Vec<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (0..n)
        .map(|_| {
            write!(s, "GET /{program}/ HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            read_response(&mut s)
        })
        .collect()
}

#[test]
fn deno_requests_cost_one_exit_each_with_fresh_and_kept_alive_connections() {
    assert!(
        deno().exists(),
        "the deno CLI is missing: run .ci/install-deps"
    );
    let (k, port) = kvmjs(&config(), "deno-fast-path", &[]);
    let hello = b"Hello, World!\n".to_vec();
    let page = std::fs::read(repo().join("tests/fixtures/renderer.html")).unwrap();
    for (program, want) in [
        ("hello", &hello),
        ("hellon", &hello),
        ("renderer", &page),
        ("renderern", &page),
        ("plain", &hello),
        ("renderer110", &page),
    ] {
        // The first request boots the program (lazily).
        let first = get(port, &format!("/{program}/"));
        assert_eq!(
            first.status,
            200,
            "{program}: {}\n{}",
            first.text(),
            k.log()
        );
        let before = exits(port, program);
        let mut answers: Vec<Resp> = (0..10)
            .map(|_| get(port, &format!("/{program}/")))
            .collect();
        let fresh = exits(port, program) - before;
        answers.extend(keep_alive(port, program, 10));
        let kept = exits(port, program) - before - fresh;
        for r in &answers {
            assert_eq!(r.status, 200, "{program}");
            assert!(
                &r.body == want,
                "{program}: {} bytes, want {}",
                r.body.len(),
                want.len()
            );
        }
        eprintln!(
            "{program}: exits per request: fresh connections {:.2}, kept alive {:.2}",
            fresh / 10.0,
            kept / 10.0
        );
        if program == "plain" {
            assert!(
                fresh >= 50.0,
                "without the fast path every socket call exits: {fresh}"
            );
        } else if program == "renderern" {
            // A V8 that keeps its heap between requests grows it now and then (mmap, brk:
            // page tables are the host's): measured 1.1 to 1.7 per request over 10.
            assert!(
                fresh <= 20.0 && kept <= 20.0,
                "{program}: {fresh} and {kept} exits for 10 requests each"
            );
        } else {
            assert_eq!(
                fresh, 10.0,
                "{program}, a connection per request: one exit each"
            );
            assert_eq!(
                kept, 10.0,
                "{program}, one kept-alive connection: one exit each"
            );
        }
    }
    drop(k);
}
