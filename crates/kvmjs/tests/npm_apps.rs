//! Real npm packages as Workers users deploy them: hono and jose (versions pinned in
//! tests/npm/package-lock.json), bundled by esbuild (tests/npm/build.sh, run by `./test`),
//! served by `kvmjs serve` on the QuickJS engine and by native deno 2.9.6, with the same
//! requests: the answers must be the same. Covers FormData bodies, the etag() middleware
//! (crypto.subtle.digest), stream()/streamSSE() (TransformStream, streamed to the client),
//! Intl/localeCompare, fetch() to a backend, and JWT signing/verification (ES256, RS256).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bundle(app: &str) -> String {
    let p = repo().join("tests/npm/dist").join(format!("{app}.js"));
    assert!(
        p.is_file(),
        "{} is missing: run tests/npm/build.sh (./test runs it)",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

/// Native deno serving `app` Workers-style (bench/peers/deno.js), in UTC like the VMs.
fn native(app: &str) -> (Proc, u16) {
    let port = free_port();
    let dir = tmpdir(&format!("npm-native-{app}"));
    let log = dir.join("deno.log");
    let child = Command::new(deno())
        .env_clear()
        .envs([
            ("NO_COLOR", "1"),
            ("DENO_NO_UPDATE_CHECK", "1"),
            ("DENO_NO_PROMPT", "1"),
            ("HOME", "/tmp"),
            ("TZ", "UTC"),
        ])
        .env("DENO_DIR", dir.join("deno-dir"))
        .args(["run", "--no-config", "--allow-read", "--allow-net"])
        .arg(repo().join("bench/peers/deno.js"))
        .arg(bundle(app))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc { child, log };
    wait_port(port, "native deno", &p);
    (p, port)
}

/// kvmjs serving both bundles on the QuickJS engine; fetch() may reach `backend` only.
fn kvmjs_apps(tag: &str, backend: u16) -> (Proc, u16) {
    let cfg = format!(
        r#"{{
        "hono": {{ "concurrency": 2, "max_request_time": 10, "filename": "{hono}",
                   "fetch": {{ "allow": ["http://127.0.0.1:{backend}"] }} }},
        "jose": {{ "concurrency": 2, "max_request_time": 20, "filename": "{jose}" }}
    }}"#,
        hono = bundle("hono_app"),
        jose = bundle("jose_app"),
    );
    kvmjs(&cfg, tag, &[])
}

/// One exchange with `curl` (it decodes chunked bodies): (status, headers, body, when each
/// body byte arrived relative to the request).
struct Exchange {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    arrivals: Vec<(Duration, usize)>,
}

impl Exchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn curl(port: u16, path: &str, args: &[&str]) -> Exchange {
    let dir = tmpdir("npm-curl");
    let head = dir.join(format!("head-{port}-{}", path.len()));
    let t0 = Instant::now();
    let mut child = Command::new("curl")
        .args(["-s", "-N", "--max-time", "30", "-D"])
        .arg(&head)
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs (.ci/install-deps installs it)");
    let mut out = child.stdout.take().unwrap();
    let (mut body, mut arrivals) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 65536];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        arrivals.push((t0.elapsed(), body.len()));
        body.extend_from_slice(&buf[..n]);
    }
    assert!(child.wait().unwrap().success(), "curl {path} failed");
    let head = std::fs::read_to_string(&head).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Exchange {
        status,
        headers,
        body,
        arrivals,
    }
}

/// A local origin for fetch(): /echo answers the request's method, body and x-test header;
/// /redirect sends a 302 to /echo (the POST becomes a GET, per the Fetch standard).
fn origin() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve_origin(s));
        }
    });
    port
}

fn serve_origin(mut s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut len, mut xtest) = (0usize, String::new());
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("x-test:") {
            xtest = v.trim().to_string();
        }
    }
    let mut body = vec![0u8; len];
    let _ = r.read_exact(&mut body);
    let reply = if path == "/redirect" {
        "HTTP/1.1 302 Found\r\nLocation: /echo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_string()
    } else {
        let text = format!("{method} {path} {}", String::from_utf8_lossy(&body));
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/x-echo\r\nX-Echo: {xtest}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
    };
    let _ = s.write_all(reply.as_bytes());
}

#[test]
fn hono_answers_as_on_deno() {
    let backend = origin();
    let (k, kport) = kvmjs_apps("npm-hono", backend);
    let (d, dport) = native("hono_app");
    let both = |path: &str, args: &[&str]| (curl(kport, path, args), curl(dport, path, args));

    // parseBody(): multipart with a repeated field and a file, and urlencoded.
    for args in [
        &[
            "-F",
            "a=1",
            "-F",
            "a=2",
            "-F",
            "f=@Cargo.toml;type=text/x-toml",
        ][..],
        &["--data-raw", "x=1&y=%C3%A9&z=a+b"][..],
    ] {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("@Cargo.toml", &format!("@{}/Cargo.toml", repo().display())))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (q, n) = both("/hono/form", &args);
        assert_eq!(
            (q.status, q.text()),
            (n.status, n.text()),
            "form {args:?}\n{}",
            k.log()
        );
        assert_eq!(q.status, 200);
    }

    // etag(): the same strong ETag (SHA-1 of the body), and 304 when it matches.
    for path in ["/hono/etag/text", "/hono/etag/json"] {
        let (q, n) = both(path, &[]);
        assert_eq!(
            (q.status, q.text()),
            (n.status, n.text()),
            "{path}\n{}",
            k.log()
        );
        let tag = n.header("etag").expect("deno sent an ETag").to_string();
        assert_eq!(
            q.header("etag"),
            Some(tag.as_str()),
            "{path}: ETag\n{}",
            k.log()
        );
        let inm = format!("If-None-Match: {tag}");
        let (q, n) = both(path, &["-H", &inm]);
        assert_eq!((q.status, n.status), (304, 304), "{path}: If-None-Match");
        assert!(q.body.is_empty());
    }

    // stream() and streamSSE(): same bodies, and the first part reaches the client before
    // the app has produced the last (it sleeps 150 ms / 100 ms between writes).
    for path in ["/hono/stream", "/hono/sse"] {
        let (q, n) = both(path, &[]);
        assert_eq!(
            (q.status, q.text()),
            (n.status, n.text()),
            "{path}\n{}",
            k.log()
        );
        assert_eq!(q.header("content-type"), n.header("content-type"), "{path}");
        let (first, last) = (q.arrivals[0].0, q.arrivals.last().unwrap().0);
        assert!(
            q.arrivals.len() > 1 && last - first >= Duration::from_millis(150),
            "{path}: the body arrived in one piece ({:?}), not as it was produced",
            q.arrivals
        );
    }

    // Intl and localeCompare for "en": collation, numbers, plurals, dates, Date#toString.
    let (q, n) = both("/hono/intl", &[]);
    assert_eq!(q.text(), n.text(), "intl\n{}", k.log());

    // fetch() to the allowed backend: POST body and headers arrive, a redirect is followed
    // (the POST becomes a GET) and the response reports it.
    for target in ["echo", "redirect"] {
        let path = format!("/hono/proxy?to=http://127.0.0.1:{backend}/{target}");
        let (q, n) = both(&path, &[]);
        assert_eq!(
            (q.status, q.text()),
            (n.status, n.text()),
            "{path}\n{}",
            k.log()
        );
        assert_eq!(q.status, 200, "{path}: {}", q.text());
    }
    // A refused connection on deno and a forbidden origin on kvmjs: both a TypeError.
    let (q, n) = both("/hono/proxy?to=http://127.0.0.1:1/", &[]);
    assert_eq!(
        (q.status, q.text()),
        (n.status, n.text()),
        "forbidden\n{}",
        k.log()
    );
    assert_eq!(q.text(), r#"{"error":"TypeError"}"#);
    drop(d);
}

#[test]
fn jose_signs_and_verifies_as_on_deno() {
    let (k, kport) = kvmjs_apps("npm-jose", 1);
    let (d, dport) = native("jose_app");
    for alg in ["ES256", "RS256"] {
        // Sign, verify and reject a forged token within one request on each engine.
        let path = format!("/jose/roundtrip/{alg}");
        let (q, n) = (curl(kport, &path, &[]), curl(dport, &path, &[]));
        assert_eq!(
            (q.status, q.text()),
            (n.status, n.text()),
            "{path}\n{}",
            k.log()
        );
        assert!(
            q.text().contains(r#""good":{"ok":true"#),
            "{path}: {}",
            q.text()
        );
        // Each engine's token verifies on the other.
        let path = format!("/jose/sign/{alg}");
        let (qt, nt) = (
            curl(kport, &path, &[]).text(),
            curl(dport, &path, &[]).text(),
        );
        if alg == "RS256" {
            // PKCS#1 v1.5 signatures are deterministic: the same token byte for byte.
            assert_eq!(qt, nt, "{path}\n{}", k.log());
        }
        let verify = format!("/jose/verify/{alg}");
        for (port, token) in [(kport, &nt), (dport, &qt)] {
            let v = curl(port, &verify, &["--data-binary", token]);
            assert_eq!(v.status, 200);
            assert!(
                v.text().starts_with(r#"{"ok":true"#),
                "{verify} on {port}: {}\n{}",
                v.text(),
                k.log()
            );
        }
        // Fresh key pairs: the same shape of public JWK and a verified token.
        let path = format!("/jose/generate/{alg}");
        let (q, n) = (curl(kport, &path, &[]), curl(dport, &path, &[]));
        assert_eq!(
            (q.status, q.text()),
            (n.status, n.text()),
            "{path}\n{}",
            k.log()
        );
    }
    drop(d);
}
