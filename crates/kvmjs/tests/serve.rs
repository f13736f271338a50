//! `kvmjs serve` end to end: real KVM, real varnishd (Debian's 7.1) in front, raw sockets
//! for the malformed and slow cases. varnishd must be installed (.ci/run installs it); the
//! tests fail rather than skip without it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn guest() -> PathBuf {
    let g = Path::new(env!("CARGO_BIN_EXE_kvmjs")).with_file_name("kvmjs-guest");
    assert!(
        g.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`",
        g.display()
    );
    g
}

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_port(port: u16, what: &str, p: &Proc) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvmjs-serve-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn kvmjs(config: &str, tag: &str, extra: &[&str]) -> (Proc, u16) {
    kvmjs_with_nofile(config, tag, extra, None)
}

/// Starts `kvmjs serve`, optionally with RLIMIT_NOFILE set to `(soft, hard)`.
fn kvmjs_with_nofile(
    config: &str,
    tag: &str,
    extra: &[&str],
    nofile: Option<(u64, u64)>,
) -> (Proc, u16) {
    let dir = tmpdir(tag);
    let cfg = dir.join("tinykvm.json");
    std::fs::write(&cfg, config.replace("$REPO", &repo().to_string_lossy())).unwrap();
    let port = free_port();
    let log = dir.join("kvmjs.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvmjs"));
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    cmd.arg("--guest").arg(guest()).args(extra);
    if let Some((soft, hard)) = nofile {
        use std::os::unix::process::CommandExt;
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe
        // and reads the `lim` copied into the closure.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc { child, log };
    wait_port(port, "kvmjs serve", &p);
    (p, port)
}

fn varnish(backend_port: u16, tag: &str) -> (Proc, u16) {
    let varnishd = ["/usr/sbin/varnishd", "/usr/bin/varnishd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("varnishd is not installed: apt-get install varnish (.ci/run does)");
    let dir = tmpdir(tag);
    let vcl = std::fs::read_to_string(repo().join("vcl/kvmjs.vcl"))
        .unwrap()
        .replace("\"8080\"", &format!("\"{backend_port}\""));
    let vcl_path = dir.join("kvmjs.vcl");
    std::fs::write(&vcl_path, vcl).unwrap();
    let port = free_port();
    let log = dir.join("varnish.log");
    let child = Command::new(varnishd)
        .args([
            "-F",
            "-j",
            "none",
            "-a",
            &format!("127.0.0.1:{port}"),
            "-T",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("-n")
        .arg(dir.join("work"))
        .arg("-f")
        .arg(&vcl_path)
        .args(["-s", "malloc,32m"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc { child, log };
    wait_port(port, "varnishd", &p);
    (p, port)
}

/// A parsed HTTP/1.1 response.
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn read_response(s: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            return Resp {
                status,
                body: buf[end + 4..end + 4 + len].to_vec(),
                head,
            };
        }
        if n == 0 {
            panic!(
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
}

fn request(port: u16, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s)
}

/// Sends `bytes` as they are and reads one response.
fn raw(port: u16, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    read_response(&mut s)
}

fn get(port: u16, path: &str) -> Resp {
    request(port, "GET", path, &[], b"")
}

fn metric(port: u16, series: &str) -> f64 {
    let m = get(port, "/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

const CONFIG: &str = r#"{
    // two programs plus test programs; $REPO is replaced by the repository path
    "base": { "concurrency": 2, "max_request_time": 5, "max_request_body": 1 },
    "hello": { "group": "base", "filename": "$REPO/js/hello.js" },
    "echo": { "group": "base", "filename": "$REPO/js/echo.js" },
    "apps": {
        "group": "base",
        "filename": "$REPO/tests/js/apps/failures.js",
        "main_arguments": ["--cpu-limit-ms", "60000"],
        "max_request_time": 1
    },
    "idle": { "group": "base", "filename": "$REPO/js/hello.js", "concurrency": 1, "idle_timeout": 1 }
}"#;

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
