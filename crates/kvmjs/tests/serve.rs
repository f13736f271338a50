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
