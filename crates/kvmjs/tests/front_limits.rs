//! `kvmjs serve` under attack: slow and large bodies, connection floods, RFC edge cases
//! and what a failing program tells clients. Real KVM and sockets on 127.0.0.1.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

/// Waits up to `within` for `cond`, polling.
fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Whether a connection is closed (EOF or reset), read until `deadline`; data before the
/// close (a 408 or 503) is fine.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

const ECHO_CONFIG: &str = r#"{
    "echo": { "filename": "$REPO/js/echo.js", "concurrency": 1, "max_request_body": 16 },
    "hello": { "filename": "$REPO/js/hello.js", "concurrency": 1 }
}"#;

/// Finding 2: a body must arrive within --body-timeout (plus 1 s per --body-min-rate
/// bytes); the fd limit is raised to the hard limit; at the connection cap the oldest
/// idle/slow connection is shed, so /healthz answers while slow clients flood the server.
#[test]
fn slow_bodies_time_out_and_healthz_answers_while_connections_are_shed() {
    // Soft 128, hard 256: the server raises the soft limit to 256, which leaves
    // 256 - 64 - 64 - 16 * 2 VMs = 96 connections.
    let (k, port) = kvmjs_with_nofile(
        ECHO_CONFIG,
        "slowbody",
        &["--body-timeout", "1", "--body-min-rate", "1000"],
        Some((128, 256)),
    );
    assert!(
        k.log()
            .contains("open-file limit raised from 128 to 256 (the hard limit)"),
        "{}",
        k.log()
    );
    assert!(k.log().contains("limits: 96 connections"), "{}", k.log());
    // One body trickling at 10 bytes/s (the minimum rate is 1000): 408 after ~1 s.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "no 408 after {:?}",
            t.elapsed()
        );
        let _ = s.write_all(b"x");
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => panic!("closed without a 408: {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let took = t.elapsed();
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "408 after {took:?} (--body-timeout 1)"
    );
    // 300 stalled bodies: beyond the connection cap (96) and the fd limit (256).
    let t_flood = Instant::now();
    let mut flood: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
                .unwrap();
            s
        })
        .collect();
    // /healthz and a real request keep answering, promptly, during the flood.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(port, "/healthz").status, 200, "{}", k.log());
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "/healthz took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(port, "/hello/").text(), "Hello, World!\n");
    // Every stalled connection is closed (shed, refused or 408) within the body timeout.
    let deadline = t_flood + Duration::from_secs(4);
    let open = flood
        .iter_mut()
        .map(|s| closed_by(s, deadline))
        .filter(|closed| !closed)
        .count();
    assert_eq!(open, 0, "{open} slow connections still open after 4 s");
    // Each was shed for a newer one, refused, or timed out (how many of each depends on
    // how fast the flood arrived).
    let closed = |reason: &str| {
        metric(
            port,
            &format!("kvmjs_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };
    let (shed, refused, timed_out) = (closed("shed"), closed("refused"), closed("body_timeout"));
    assert!(
        shed >= 1.0 && shed + refused + timed_out >= 300.0,
        "shed {shed}, refused {refused}, body timeouts {timed_out}"
    );
    assert!(
        wait_until(Duration::from_secs(3), || metric(
            port,
            "kvmjs_connections "
        ) <= 1.0),
        "connections still counted: {}",
        metric(port, "kvmjs_connections ")
    );
    let log = k.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("accept failed"), "{log}");
}

/// Finding 3: a declared body over max_request_body is refused before it is read, and all
/// bodies in flight together stay under --max-body-memory (503 + Retry-After beyond).
#[test]
fn body_memory_is_capped_and_oversized_bodies_are_refused_at_once() {
    const SIZE: usize = 15 << 20;
    let (k, port) = kvmjs(ECHO_CONFIG, "bodymem", &["--max-body-memory", "64"]);
    // Boot the program first, so its VMs are part of the baseline.
    assert_eq!(
        request(port, "POST", "/echo/", &[], b"warm").status,
        200,
        "{}",
        k.log()
    );
    let pid = k.child.id();
    let before = rss_kib(pid);
    let head = format!("POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n");
    let send_all_but_one = move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!("POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n");
        // A refused body ends in a write error: the server closed the connection.
        let _ = s
            .write_all(head.as_bytes())
            .and_then(|()| s.write_all(&vec![b'x'; SIZE - 1]));
        s
    };
    let clients: Vec<_> = (0..40)
        .map(|_| std::thread::spawn(send_all_but_one))
        .collect();
    let mut conns: Vec<TcpStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    // The server reads the last bytes the clients wrote: wait until the count settles.
    let mut used = metric(port, "kvmjs_request_body_bytes");
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::thread::sleep(Duration::from_millis(200));
            let now = metric(port, "kvmjs_request_body_bytes");
            std::mem::replace(&mut used, now) == now
        }),
        "the buffered byte count does not settle"
    );
    let used = used as usize;
    let after = rss_kib(pid);
    let (mut held, mut refused) = (0, 0);
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                let t = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                assert!(
                    t.starts_with("http/1.1 503") && t.contains("retry-after: 1"),
                    "{t}"
                );
                refused += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => held += 1,
            // Closed or reset while the client was still writing: refused too.
            _ => refused += 1,
        }
    }
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!("body memory: {held} held, {refused} refused, {used} bytes buffered, RSS {} -> {} MiB (+{growth_mib})", before / 1024, after / 1024);
    assert!(
        (1..=4).contains(&held),
        "{held} bodies of 15 MB held under a 64 MB cap"
    );
    assert_eq!(held + refused, 40);
    assert!(
        used <= 64 << 20 && used == held * (SIZE - 1),
        "{used} bytes for {held} bodies"
    );
    assert!(
        growth_mib < 64 + 40,
        "RSS grew {growth_mib} MiB with a 64 MB body cap"
    );
    // Closing the clients gives the memory back.
    drop(conns);
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            port,
            "kvmjs_request_body_bytes"
        ) == 0.0),
        "body bytes still accounted after the clients left"
    );
    // A declared length over max_request_body (16 MB): 413 at once, nothing read.
    let t = Instant::now();
    let r = raw(
        port,
        b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n\r\n",
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "413 after {:?}",
        t.elapsed()
    );
    assert!(r.text().contains("max_request_body"), "{}", r.text());
    // Four bodies held (60 of 64 MB): a declared 15 MB body gets 503 at once.
    let held: Vec<TcpStream> = (0..4).map(|_| send_all_but_one()).collect();
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            port,
            "kvmjs_request_body_bytes"
        ) == (4 * (SIZE - 1)) as f64),
        "{}",
        metric(port, "kvmjs_request_body_bytes")
    );
    let t = Instant::now();
    let r = raw(port, head.as_bytes());
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "503 after {:?}",
        t.elapsed()
    );
    assert!(r.text().contains("--max-body-memory"), "{}", r.text());
    drop(held);
}

/// Finding 5: header count bounded only by the 64 KiB head size; RFC 9112 Host rules;
/// TRACE/CONNECT refused with 405 and Allow.
#[test]
fn http_rules_follow_the_rfcs() {
    let (k, port) = kvmjs(ECHO_CONFIG, "rules", &[]);
    // 150 headers of ~60 bytes reach the app, every one of them.
    let many: Vec<String> = (0..150)
        .map(|i| format!("X-H{i:03}: {}", "v".repeat(52)))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = request(port, "GET", "/echo/", &refs, b"");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), k.log());
    let t = r.text();
    assert_eq!(t.matches("\"x-h").count(), 150, "{t}");
    // 2000 headers in ~60 KB: still under the 64 KiB head limit.
    let many: Vec<String> = (0..2000)
        .map(|i| format!("X-L{i:04}: {}", "w".repeat(20)))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = request(port, "GET", "/echo/", &refs, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().matches("\"x-l").count(), 2000);
    // Over 64 KiB: 431.
    let big = format!("X-Big: {}", "a".repeat(70_000));
    assert_eq!(request(port, "GET", "/echo/", &[&big], b"").status, 431);
    // Host: required once in HTTP/1.1, at most once otherwise (RFC 9112 section 3.2).
    let r = raw(port, b"GET /hello/ HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Host"), "{}", r.text());
    let r = raw(
        port,
        b"GET /hello/ HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = raw(
        port,
        b"GET /hello/ HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = raw(port, b"GET /hello/ HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!\n"));
    // TRACE and CONNECT: 405 with Allow (RFC 9110 section 15.5.6), never the app.
    for req in [
        &b"TRACE /hello/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
        b"TRACK /hello/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw(port, req);
        assert_eq!(r.status, 405, "{}", r.text());
        let allow = r.header("allow").unwrap_or_default();
        assert!(allow.contains("GET") && !allow.contains("TRACE"), "{allow}");
    }
}

/// Finding 6: a program that fails to boot answers 502 with a short message and a request
/// id; the guest's output and the app's path go only to the log, under that id.
#[test]
fn boot_failures_answer_briefly_and_log_the_details() {
    let dir = tmpdir("bootfail-app");
    let app = dir.join("broken-app.js");
    std::fs::write(
        &app,
        "throw new Error(\"secret boot detail\");\nexport default {};\n",
    )
    .unwrap();
    let cfg = format!(
        r#"{{ "broken": {{ "filename": "{}", "concurrency": 1 }} }}"#,
        app.display()
    );
    let (k, port) = kvmjs(&cfg, "bootfail", &[]);
    let r = get(port, "/broken/");
    assert_eq!(r.status, 502, "{}", r.text());
    let id = r.header("x-request-id").expect("an X-Request-Id header");
    let body = r.text();
    assert!(body.contains(&id), "{body}");
    assert!(body.contains("failed to start"), "{body}");
    for secret in ["secret boot detail", "guest output", "broken-app.js", "/"] {
        assert!(!body.contains(secret), "{secret:?} in {body:?}");
    }
    let log = k.log();
    // One log entry (a multi-line message, then its fields) has the details and the id
    // (whether the guest's trace names the app by absolute path is the guest's business).
    let at = log
        .find(&format!("request_id={id}"))
        .unwrap_or_else(|| panic!("no log entry with {id}:\n{log}"));
    let entry = &log[log[..at].rfind(" ERROR ").expect("an ERROR entry")..at];
    for want in ["failed to boot", "secret boot detail", "guest output"] {
        assert!(entry.contains(want), "{want:?} missing from {entry}");
    }
    assert!(
        !log.contains("failed to boot: program"),
        "doubled prefix:\n{log}"
    );
}
