//! Programs that serve HTTP themselves, booted with `VmConfig::listen` (issue 12): the
//! pause point at their first wait on the listening socket, and requests handed in as
//! connections on the virtual network. Needs /dev/kvm, the system C compiler and the
//! deno CLI that `.ci/install-deps` installs into .deno/; without them these tests fail
//! (they never skip).
//!
//! `cargo test -p kvmjs-vm --test listen -- --nocapture` prints the per-request figures.

mod common;
use common::{compile_c, repo};
use kvmjs_vm::config::{AllowedPath, ListenSpec, VmConfig, Warmup};
use kvmjs_vm::request::{Request, RequestStats};
use kvmjs_vm::vm::{RequestError, Vm};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn listen_cfg(program: &Path, args: &[&str], env: &[&str], extra: &[PathBuf]) -> VmConfig {
    let program = program.canonicalize().expect("the program exists");
    let mut allowed = AllowedPath::system_libs();
    allowed.push(AllowedPath::same(&program));
    allowed.extend(extra.iter().map(AllowedPath::same));
    VmConfig {
        name: program.to_string_lossy().into_owned(),
        program_path: Some(program.to_string_lossy().into_owned()),
        address_space: 4096 * MIB,
        max_memory: 2048 * MIB,
        max_boot_time: Duration::from_secs(120),
        max_request_time: Duration::from_secs(20),
        main_arguments: args.iter().map(|s| (*s).to_owned()).collect(),
        environment: env.iter().map(|s| (*s).to_owned()).collect(),
        allowed_paths: allowed,
        current_working_directory: repo().to_string_lossy().into_owned(),
        listen: Some(ListenSpec {
            addr: "127.0.0.1:8000".parse().expect("an address"),
        }),
        ..VmConfig::default()
    }
}

/// A C test server's config: small memory, the rest as [`listen_cfg`].
fn c_cfg(bin: &Path) -> VmConfig {
    VmConfig {
        address_space: 512 * MIB,
        max_memory: 256 * MIB,
        ..listen_cfg(bin, &[], &[], &[])
    }
}

/// Boots `program` with `cfg`.
fn boot(cfg: VmConfig, program: &Path) -> Vm {
    let elf = std::fs::read(program).expect("read the program");
    Vm::boot(Arc::new(cfg), &elf).unwrap_or_else(|e| panic!("boot: {e}"))
}

fn report(what: &str, stats: &[RequestStats]) {
    let n = stats.len() as f64;
    let avg = |f: fn(&RequestStats) -> f64| stats.iter().map(f).sum::<f64>() / n;
    eprintln!(
        "{what}: {} requests: exits/request {:.1}, syscalls/request {:.1}, dirty pages/request {:.1}, reset {:.0} µs (p50 {:.0} µs), total {:.0} µs (averages; max exits {}, max reset {:.0} µs)",
        stats.len(),
        avg(|s| s.exits as f64),
        avg(|s| s.syscalls as f64),
        avg(|s| s.dirty_pages as f64),
        avg(|s| s.reset_us),
        {
            let mut r: Vec<f64> = stats.iter().map(|s| s.reset_us).collect();
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        },
        avg(|s| s.total_us),
        stats.iter().map(|s| s.exits).max().unwrap_or(0),
        stats.iter().map(|s| s.reset_us).fold(0.0, f64::max),
    );
}

fn serve_n(vm: &mut Vm, n: usize, body: &[u8]) -> Vec<RequestStats> {
    (0..n)
        .map(|i| {
            let r = vm
                .handle(&Request::get("/"))
                .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            assert_eq!(r.status, 200, "request {i}");
            assert_eq!(r.body, body, "request {i}");
            vm.last_stats()
        })
        .collect()
}

#[test]
fn deno_serve_answers_every_request_from_the_snapshot() {
    let deno = repo().join(".deno/bin/deno");
    assert!(
        deno.exists(),
        "the deno CLI is missing at {}: run .ci/install-deps",
        deno.display()
    );
    let script = repo().join("tests/fixtures/deno/serve_hello.js");
    let cfg = listen_cfg(
        &deno,
        &["run", "--allow-net", &script.to_string_lossy()],
        &[
            "NO_COLOR=1",
            "DENO_NO_UPDATE_CHECK=1",
            "DENO_NO_PROMPT=1",
            "DENO_DIR=/tmp/deno-dir",
            "HOME=/tmp",
        ],
        &[script.clone(), repo().join(".deno")],
    );
    let elf = std::fs::read(&deno).expect("read deno");
    let t = std::time::Instant::now();
    let mut vm = Vm::boot(Arc::new(cfg), &elf).unwrap_or_else(|e| panic!("boot: {e}"));
    eprintln!(
        "deno boot to the pause point: {:?} ({:?}), snapshot pages {}",
        t.elapsed(),
        vm.boot_stats(),
        vm.snapshot_pages()
    );
    let stats = serve_n(&mut vm, 20, b"hi");
    report("deno Deno.serve hello, ephemeral", &stats);
    // deno's first wait had a ~0.5 s timeout: once that much guest time has passed since
    // the snapshot, its timer is overdue in every request. They must still answer.
    std::thread::sleep(Duration::from_millis(1200));
    let stats = serve_n(&mut vm, 20, b"hi");
    report("deno Deno.serve hello, ephemeral, timers overdue", &stats);
    // A fork of the snapshot serves the same.
    let mut fork = Vm::from_snapshot(vm.snapshot().expect("a snapshot")).expect("fork");
    let stats = serve_n(&mut fork, 5, b"hi");
    report("deno Deno.serve hello, forked VM", &stats);
}

/// A timer still pending at the snapshot (due after the boot's settling window) fires
/// inside the requests that run after it is due, and what it does never reaches the next
/// request.
#[test]
fn deno_timer_pending_at_the_snapshot_does_not_leak() {
    let (deno, script) = deno_script("timer", "timer.js", "let fired = 0; let seen = 0;\nsetTimeout(() => { fired++; }, 3000);\nDeno.serve({ port: 8000, hostname: \"127.0.0.1\" }, () => new Response(`fired=${fired} seen=${++seen}`));\n");
    let cfg = listen_cfg(
        &deno,
        &["run", "--allow-net", &script.to_string_lossy()],
        &[
            "NO_COLOR=1",
            "DENO_NO_UPDATE_CHECK=1",
            "DENO_DIR=/tmp/deno-dir",
            "HOME=/tmp",
        ],
        &[script.clone(), repo().join(".deno")],
    );
    let mut vm = boot(cfg, &deno);
    let body = |vm: &mut Vm| {
        let r = vm.handle(&Request::get("/")).expect("request");
        String::from_utf8_lossy(&r.body).into_owned()
    };
    // Before the timer is due (unless the boot was very slow: "seen" is 1 either way).
    let first = body(&mut vm);
    assert!(first.ends_with("seen=1"), "{first}");
    std::thread::sleep(Duration::from_millis(3100));
    for _ in 0..5 {
        assert_eq!(body(&mut vm), "fired=1 seen=1");
    }
}

#[test]
fn deno_serve_non_ephemeral_keeps_state() {
    // The app also shows the Connection field it was handed: none (HTTP/1.1 keep-alive;
    // the host ends the connection itself after the response).
    let (deno, script) = deno_script("count", "count.js", "let n = 0;\nDeno.serve({ port: 8000, hostname: \"127.0.0.1\" }, (req) => new Response(`n=${++n} ${new URL(req.url).pathname} connection=${req.headers.get(\"connection\")}`));\n");
    let cfg = VmConfig {
        ephemeral: false,
        ..listen_cfg(
            &deno,
            &["run", "--allow-net", &script.to_string_lossy()],
            &[
                "NO_COLOR=1",
                "DENO_NO_UPDATE_CHECK=1",
                "DENO_DIR=/tmp/deno-dir",
                "HOME=/tmp",
            ],
            &[script.clone(), repo().join(".deno")],
        )
    };
    let mut vm = boot(cfg, &deno);
    let mut stats = Vec::new();
    for i in 1..=10 {
        let r = vm
            .handle(&Request::get(&format!("/p{i}")))
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            format!("n={i} /p{i} connection=null")
        );
        stats.push(vm.last_stats());
    }
    report("deno Deno.serve counter, non-ephemeral", &stats);
}

/// A small C server: socket/bind/listen/accept (blocking), read the request, write a
/// Content-Length response, close, loop.
const C_SERVER: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static int counter;
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(8000);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in other = a;
    other.sin_port = htons(8001);
    if (bind(s, (struct sockaddr *)&other, sizeof other) == 0) return 10;
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 11;
    if (listen(s, 16) != 0) return 12;
    int c0 = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c0, (struct sockaddr *)&a, sizeof a) == 0) return 13;
    close(c0);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int c = accept4(s, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
        if (c < 0) return 14;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char req[4096];
        size_t got = 0;
        while (got < sizeof req - 1) {
            ssize_t n = read(c, req + got, sizeof req - 1 - got);
            if (n <= 0) break;
            got += (size_t)n;
            req[got] = 0;
            if (strstr(req, "\r\n\r\n")) break;
        }
        counter++;
        char *path = req + 4, *sp = strchr(path, ' ');
        if (sp) *sp = 0;
        char body[256];
        int bl = snprintf(body, sizeof body, "count=%d peer=%s path=%.20s",
                          counter, inet_ntoa(peer.sin_addr), path);
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", bl);
        write(c, head, (size_t)hl);
        write(c, body, (size_t)bl);
        close(c);
    }
}
"#;

/// Compiles C `source` into a program named `name` (its own directory: tests run in
/// parallel).

#[test]
fn c_server_with_blocking_accept_ephemeral_and_not() {
    let bin = compile_c("server", C_SERVER);
    // (ephemeral, warm-up requests before the snapshot)
    for (ephemeral, warm) in [(true, 0), (false, 0), (true, 3)] {
        let cfg = VmConfig {
            ephemeral,
            warmup: (warm > 0).then(|| Warmup {
                num_requests: warm,
                url: "/warm".into(),
                method: "GET".into(),
                headers: Vec::new(),
            }),
            ..c_cfg(&bin)
        };
        let mut vm = boot(cfg, &bin);
        let mut stats = Vec::new();
        for i in 1..=5 {
            let r = vm
                .handle(&Request::get(&format!("/r{i}")))
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(r.status, 200);
            assert_eq!(r.content_type, b"text/plain");
            // Warm-up requests ran before the snapshot: their effect is in it.
            let count = if ephemeral { 1 + warm } else { i };
            assert_eq!(
                String::from_utf8_lossy(&r.body),
                format!("count={count} peer=127.0.0.1 path=/r{i}"),
                "ephemeral={ephemeral}"
            );
            stats.push(vm.last_stats());
        }
        report(
            &format!("C server, ephemeral={ephemeral}, warm-up {warm}"),
            &stats,
        );
    }
}

#[test]
fn a_server_that_answers_garbage_or_nothing_fails_the_request_and_recovers() {
    // Answers garbage on /bad, closes without answering on /close, loops on /hang,
    // faults on /crash, else a proper (chunked) answer.
    let src = r#"
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(8000); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) return 1;
    for (;;) {
        int c = accept(s, 0, 0);
        char req[1024] = {0};
        read(c, req, sizeof req - 1);
        if (!strncmp(req, "GET /hang", 9)) for (;;) {}
        if (!strncmp(req, "GET /crash", 10)) *(volatile int *)0 = 1;
        const char *say = !strncmp(req, "GET /bad", 8) ? "garbage\r\n\r\n"
            : !strncmp(req, "GET /close", 10) ? ""
            : "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        write(c, say, strlen(say));
        close(c);
    }
}
"#;
    let bin = compile_c("bad", src);
    let cfg = VmConfig {
        max_request_time: Duration::from_millis(500),
        ..c_cfg(&bin)
    };
    let mut vm = boot(cfg, &bin);
    let ok = |vm: &mut Vm| {
        let r = vm.handle(&Request::get("/")).expect("a good request");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    };
    ok(&mut vm);
    let e = vm.handle(&Request::get("/bad")).expect_err("garbage");
    assert!(
        matches!(e, RequestError::Guest(ref m) if m.contains("invalid HTTP")),
        "{e}"
    );
    ok(&mut vm);
    let e = vm.handle(&Request::get("/hang")).expect_err("a loop");
    assert!(matches!(e, RequestError::Timeout(_)), "{e}");
    ok(&mut vm);
    let e = vm.handle(&Request::get("/crash")).expect_err("a fault");
    assert!(
        matches!(e, RequestError::Fault(ref m) if m.contains("null")),
        "{e}"
    );
    ok(&mut vm);
    let e = vm.handle(&Request::get("/close")).expect_err("no answer");
    assert!(
        matches!(e, RequestError::Guest(ref m) if m.contains("closed the connection")),
        "{e}"
    );
    ok(&mut vm);
}

/// The pinned deno CLI (failing, never skipping, without it) and `source` written as
/// `file` in a fresh temporary directory.
fn deno_script(tag: &str, file: &str, source: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let deno = repo().join(".deno/bin/deno");
    assert!(
        deno.exists(),
        "the deno CLI is missing: run .ci/install-deps"
    );
    let dir = std::env::temp_dir().join(format!("kvmjs-listen-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join(file);
    std::fs::write(&script, source).expect("write");
    (deno, script)
}

/// A server that echoes the request head it was handed (after `/echo`), answers
/// close-delimited and exits on `/exit-close`, answers with a Content-Length and exits
/// on its way back to accept on `/exit-after`, else answers its request count.
const EXIT_SERVER: &str = r#"
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
static int count;
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(8000); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) return 1;
    for (;;) {
        int c = accept(s, 0, 0);
        char req[4096] = {0};
        size_t got = 0;
        while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
            ssize_t n = read(c, req + got, sizeof req - 1 - got);
            if (n <= 0) break;
            got += (size_t)n;
        }
        count++;
        char out[4600];
        int n;
        if (!strncmp(req, "GET /echo", 9)) {
            n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", got, req);
        } else if (!strncmp(req, "GET /exit-close", 15)) {
            n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbye count=%d", count);
            write(c, out, (size_t)n);
            _exit(0);
        } else {
            n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ncount=%d", count % 10);
        }
        write(c, out, (size_t)n);
        close(c);
        if (!strncmp(req, "GET /exit-after", 15)) _exit(3);
    }
}
"#;

/// An exit ends a close-delimited response as a close does; a non-ephemeral VM whose
/// program exited starts again from the snapshot. The request the guest reads carries
/// the client's end-to-end fields only.
#[test]
fn an_exit_completes_a_close_delimited_response_and_hop_by_hop_fields_stay_out() {
    let bin = compile_c("exit", EXIT_SERVER);
    for ephemeral in [true, false] {
        let cfg = VmConfig {
            ephemeral,
            ..c_cfg(&bin)
        };
        let mut vm = boot(cfg, &bin);
        let get = |vm: &mut Vm, url: &str| {
            let r = vm
                .handle(&Request::get(url))
                .unwrap_or_else(|e| panic!("{url} (ephemeral={ephemeral}): {e}"));
            assert_eq!(r.status, 200, "{url}");
            String::from_utf8_lossy(&r.body).into_owned()
        };
        assert_eq!(get(&mut vm, "/exit-close"), "bye count=1");
        assert_eq!(get(&mut vm, "/"), "count=1", "ephemeral={ephemeral}");
        if !ephemeral {
            assert_eq!(get(&mut vm, "/"), "count=2", "state kept between requests");
        }
        // Exits after a complete response, on its way back to accept: the next request
        // is answered from the snapshot.
        get(&mut vm, "/exit-after");
        assert_eq!(get(&mut vm, "/"), "count=1", "ephemeral={ephemeral}");
        assert!(!vm.is_broken());
    }
    let cfg = VmConfig { ..c_cfg(&bin) };
    let mut vm = boot(cfg, &bin);
    let req = Request {
        method: "GET".into(),
        url: "/echo".into(),
        headers: vec![
            "Connection: keep-alive, X-Hop".into(),
            "X-Hop: secret".into(),
            "Upgrade: h2c".into(),
            "TE: trailers".into(),
            "Trailer: X-T".into(),
            "Proxy-Connection: keep-alive".into(),
            "Keep-Alive: timeout=5".into(),
            "X-Keep: 1".into(),
        ],
        ..Request::default()
    };
    let r = vm.handle(&req).expect("echo");
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "GET /echo HTTP/1.1\r\nX-Keep: 1\r\nHost: localhost\r\n\r\n"
    );
}

/// A server whose wait is a poll on the listener with a timeout (its "timers"): its
/// response says `done=N` (background jobs finished). `/bg-*` responses carry the
/// background field, after which it keeps a timer 300 ms (`/bg-timer`) or 60 s
/// (`/bg-far`) away that counts one job done, a 200 ms tick that never stops
/// (`/bg-tick`), or loops (`/bg-loop`).
const BACKGROUND_SERVER: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static int done, tick;
static long long due = -1;
static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(8000); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) return 1;
    for (;;) {
        struct pollfd p = { s, POLLIN, 0 };
        int timeout = -1;
        if (tick) timeout = 200;
        else if (due >= 0) timeout = due > now_ms() ? (int)(due - now_ms()) : 0;
        if (poll(&p, 1, timeout) == 0) {
            if (!tick && due >= 0 && now_ms() >= due) { due = -1; done++; }
            continue;
        }
        int c = accept(s, 0, 0);
        char req[1024] = {0};
        read(c, req, sizeof req - 1);
        char body[32], out[256];
        int bl = snprintf(body, sizeof body, "done=%d", done);
        int n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s",
                         strncmp(req, "GET /bg", 7) ? "" : "kvmjs-background: 1\r\n", bl, body);
        write(c, out, (size_t)n);
        close(c);
        if (!strncmp(req, "GET /bg-timer", 13)) due = now_ms() + 300;
        if (!strncmp(req, "GET /bg-far", 11)) due = now_ms() + 60000;
        if (!strncmp(req, "GET /bg-tick", 12)) tick = 1;
        if (!strncmp(req, "GET /bg-loop", 12)) for (;;) {}
    }
}
"#;

/// Background work after the response (`kvmjs-background: 1`): the response comes back
/// first, without the field; `finish_background` then runs the guest through its pending
/// timers until it is back in its wait (a far-off timer is not waited for), cuts work
/// still going on at max_background_time, and the VM serves on.
#[test]
fn background_work_runs_after_the_response_until_the_wait() {
    let bin = compile_c("background", BACKGROUND_SERVER);
    for ephemeral in [false, true] {
        let cfg = VmConfig {
            ephemeral,
            max_request_time: Duration::from_secs(2),
            max_background_time: Duration::from_millis(1000),
            ..c_cfg(&bin)
        };
        let mut vm = boot(cfg, &bin);
        let get = |vm: &mut Vm, url: &str, background: bool| {
            let t = std::time::Instant::now();
            let r = vm
                .handle(&Request::get(url))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(
                t.elapsed() < Duration::from_millis(250),
                "{url}: {:?}",
                t.elapsed()
            );
            assert_eq!((r.status, r.background), (200, background), "{url}");
            assert!(
                !r.headers
                    .iter()
                    .any(|h| h.to_ascii_lowercase().starts_with(b"kvmjs-")),
                "{url}: {:?}",
                r.headers
            );
            String::from_utf8_lossy(&r.body).into_owned()
        };
        let kept = |n: usize| if ephemeral { 0 } else { n };
        assert_eq!(get(&mut vm, "/", false), "done=0");
        assert!(vm.finish_background().is_none());
        // A 300 ms timer: run through, then the guest is back in its wait.
        assert_eq!(get(&mut vm, "/bg-timer", true), "done=0");
        let bg = vm.finish_background().expect("background work");
        assert!(bg.result.is_ok(), "{:?}", bg.result);
        assert!(
            (Duration::from_millis(300)..Duration::from_millis(900)).contains(&bg.duration),
            "{:?}",
            bg.duration
        );
        assert_eq!(get(&mut vm, "/", false), format!("done={}", kept(1)));
        // A timer past the background's deadline is not waited for.
        get(&mut vm, "/bg-far", true);
        let bg = vm.finish_background().expect("background work");
        assert!(bg.result.is_ok(), "{:?}", bg.result);
        assert!(
            bg.duration < Duration::from_millis(200),
            "{:?}",
            bg.duration
        );
        assert_eq!(get(&mut vm, "/", false), format!("done={}", kept(1)));
        // Work still going on at the deadline (a short timer that never stops, a loop) is
        // cut; the VM is reset to its snapshot.
        for url in ["/bg-tick", "/bg-loop"] {
            get(&mut vm, url, true);
            let bg = vm.finish_background().expect("background work");
            assert!(
                matches!(bg.result, Err(RequestError::Timeout(_))),
                "{url}: {:?}",
                bg.result
            );
            assert!(
                (Duration::from_millis(1000)..Duration::from_millis(1500)).contains(&bg.duration),
                "{url}: {:?}",
                bg.duration
            );
            assert_eq!(get(&mut vm, "/", false), "done=0", "{url}");
            assert!(!vm.is_broken());
        }
        // A request without the field after all that costs what it did (exits unchanged).
        vm.handle(&Request::get("/")).expect("request");
        eprintln!(
            "background server, ephemeral={ephemeral}: a plain request {:?}",
            vm.last_stats()
        );
    }
}
