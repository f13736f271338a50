//! Shared helpers of the `kvmjs serve` end-to-end tests: building and starting kvmjs and
//! varnishd, raw HTTP/1.1 requests, metrics.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The pinned deno CLI (.deno/bin/deno); the deno tests fail, never skip, without it.
pub fn deno() -> PathBuf {
    let p = repo().join(".deno/bin/deno");
    assert!(
        p.exists(),
        "the deno CLI is missing at {}: run .ci/install-deps (it installs the pinned version there)",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free on every one of `hosts` (loopback addresses such as 127.0.0.2) at once, so
/// that several servers on different addresses can share one port number, as the nodes of
/// a Varnish backend list sharing a port do.
pub fn free_port_on(hosts: &[&str]) -> u16 {
    let (first, rest) = hosts.split_first().expect("free_port_on: no hosts");
    for _ in 0..100 {
        let l = TcpListener::bind((*first, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        if rest.iter().all(|h| TcpListener::bind((*h, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {hosts:?} in 100 tries");
}

pub fn guest() -> PathBuf {
    let g = Path::new(env!("CARGO_BIN_EXE_kvmjs")).with_file_name("kvmjs-guest");
    assert!(
        g.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`",
        g.display()
    );
    g
}

pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_port(port: u16, what: &str, p: &Proc) {
    wait_addr(&format!("127.0.0.1:{port}"), what, p);
}

/// Waits until something accepts connections on `addr` ("host:port").
pub fn wait_addr(addr: &str, what: &str, p: &Proc) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {addr}:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvmjs-serve-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn kvmjs(config: &str, tag: &str, extra: &[&str]) -> (Proc, u16) {
    kvmjs_with_nofile(config, tag, extra, None)
}

/// Starts `kvmjs serve` on a free port of 127.0.0.1, optionally with RLIMIT_NOFILE set to
/// `(soft, hard)`.
pub fn kvmjs_with_nofile(
    config: &str,
    tag: &str,
    extra: &[&str],
    nofile: Option<(u64, u64)>,
) -> (Proc, u16) {
    let port = free_port();
    let p = kvmjs_start(config, tag, &format!("127.0.0.1:{port}"), extra, nofile);
    (p, port)
}

/// Starts `kvmjs serve --listen addr` ("host:port", e.g. one of several nodes on
/// 127.0.0.x sharing a port) and waits until it listens. Its config and log live in the
/// tag's tmpdir: nodes running at once need different tags; a restart may reuse one.
pub fn kvmjs_on(config: &str, tag: &str, addr: &str, extra: &[&str]) -> Proc {
    kvmjs_start(config, tag, addr, extra, None)
}

fn kvmjs_start(
    config: &str,
    tag: &str,
    addr: &str,
    extra: &[&str],
    nofile: Option<(u64, u64)>,
) -> Proc {
    let dir = tmpdir(tag);
    let cfg = dir.join("tinykvm.json");
    std::fs::write(&cfg, config.replace("$REPO", &repo().to_string_lossy())).unwrap();
    let log = dir.join("kvmjs.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvmjs"));
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", addr]);
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
    wait_addr(addr, "kvmjs serve", &p);
    p
}

/// varnishd with vcl/kvmjs.vcl in front of one `kvmjs serve` on 127.0.0.1:`backend_port`.
pub fn varnish(backend_port: u16, tag: &str) -> (Proc, u16) {
    let vcl = std::fs::read_to_string(repo().join("vcl/kvmjs.vcl"))
        .unwrap()
        .replace("\"8080\"", &format!("\"{backend_port}\""));
    varnishd_with(&vcl, tag, &[])
}

/// Starts varnishd in the foreground (-F, no jail) with `vcl_text` (written to the tag's
/// tmpdir), listening on a free port of 127.0.0.1 (returned), its working directory and log
/// in the tag's tmpdir. `extra_args` go after the others (e.g. `["-p", "max_retries=2"]`).
pub fn varnishd_with(vcl_text: &str, tag: &str, extra_args: &[&str]) -> (Proc, u16) {
    let varnishd = ["/usr/sbin/varnishd", "/usr/bin/varnishd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("varnishd is not installed: apt-get install varnish (.ci/run does)");
    let dir = tmpdir(tag);
    let vcl_path = dir.join("varnish.vcl");
    std::fs::write(&vcl_path, vcl_text).unwrap();
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
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc { child, log };
    wait_port(port, "varnishd", &p);
    (p, port)
}

/// A parsed HTTP/1.1 response.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

pub fn read_response(s: &mut TcpStream) -> Resp {
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

pub fn request(port: u16, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Resp {
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
pub fn raw(port: u16, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    read_response(&mut s)
}

pub fn get(port: u16, path: &str) -> Resp {
    request(port, "GET", path, &[], b"")
}

pub fn metric(port: u16, series: &str) -> f64 {
    let m = get(port, "/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub const CONFIG: &str = r#"{
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
