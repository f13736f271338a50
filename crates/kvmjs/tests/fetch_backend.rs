//! fetch() to backends end to end: `kvmjs serve` runs tests/js/apps/fetch_app.js in the
//! QuickJS guest, which fetches from a small HTTP/1.1 origin this test serves on
//! 127.0.0.1. Proves allow-listing (and its re-check on redirects), the Fetch redirect
//! rules, streaming both ways, limits (size, time), abort, metrics, and that an open fetch
//! does not outlive its request.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Origin {
    port: u16,
    /// The /endless response's connection was closed by the client.
    endless_closed: Arc<AtomicBool>,
    /// What each /rec request's body looked like: "complete:<body>" after the terminating
    /// chunk, "cut:<body>" when the connection ended before it.
    uploads: Arc<Mutex<Vec<String>>>,
}

/// Reads a chunked body, noting whether it ended with the terminating chunk.
fn read_chunked_outcome(r: &mut BufReader<TcpStream>) -> String {
    let mut body = Vec::new();
    let cut = |body: &[u8]| format!("cut:{}", String::from_utf8_lossy(body));
    loop {
        let mut size = String::new();
        if r.read_line(&mut size).unwrap_or(0) == 0 {
            return cut(&body);
        }
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return cut(&body);
        };
        let mut chunk = vec![0; n + 2];
        if r.read_exact(&mut chunk).is_err() {
            return cut(&body);
        }
        if n == 0 {
            return format!("complete:{}", String::from_utf8_lossy(&body));
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

fn read_body(r: &mut BufReader<TcpStream>, head: &str) -> Vec<u8> {
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let len = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
        .unwrap_or(0);
    body.resize(len, 0);
    r.read_exact(&mut body).unwrap();
    body
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("-")
}

fn serve_one(s: TcpStream, forbidden: u16, closed: &AtomicBool, uploads: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        if l == "\r\n" {
            break;
        }
        head.push_str(&l);
    }
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    if path == "/rec" {
        let outcome = read_chunked_outcome(&mut r);
        uploads.lock().unwrap().push(outcome);
        let _ = s
            .try_clone()
            .unwrap()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        return;
    }
    if path == "/noread" {
        // Never reads the request body; answers after the fetch's timeout.
        std::thread::sleep(Duration::from_secs(4));
        return;
    }
    let body = read_body(&mut r, &head);
    let mut s = s;
    let redirect = |s: &mut TcpStream, code: u16, to: &str| {
        let _ = write!(
            s,
            "HTTP/1.1 {code} Moved\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    let chunk = |s: &mut TcpStream, data: &[u8]| -> std::io::Result<()> {
        write!(s, "{:x}\r\n", data.len())?;
        s.write_all(data)?;
        s.write_all(b"\r\n")?;
        s.flush()
    };
    let chunked_head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    match path.as_str() {
        "/redir" => redirect(&mut s, 302, "/hello"),
        "/redir303" => redirect(&mut s, 303, "/hello"),
        "/redir307" => redirect(&mut s, 307, "/hello"),
        "/redir-loop" => redirect(&mut s, 302, "/redir-loop"),
        "/redir-out" => redirect(&mut s, 302, &format!("http://127.0.0.1:{forbidden}/hello")),
        "/slow" => {
            let _ = s.write_all(chunked_head.as_bytes());
            for (i, part) in ["first", "second", "third"].iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                let _ = chunk(&mut s, part.as_bytes());
            }
            let _ = s.write_all(b"0\r\n\r\n");
        }
        "/endless" => {
            let _ = s.write_all(chunked_head.as_bytes());
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(20) {
                if chunk(&mut s, &[b'x'; 1024]).is_err() {
                    closed.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "/big" => {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                2 << 20
            );
            let _ = s.write_all(&vec![b'b'; 2 << 20]);
        }
        "/bigchunked" => {
            let _ = s.write_all(chunked_head.as_bytes());
            for _ in 0..32 {
                if chunk(&mut s, &[b'c'; 64 << 10]).is_err() {
                    return;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        }
        "/slowhead" => {
            std::thread::sleep(Duration::from_secs(3));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        _ => {
            let text = format!(
                "{method} {path} te={} body={}",
                header(&head, "transfer-encoding"),
                String::from_utf8_lossy(&body)
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Echo: auth={}\r\nConnection: close\r\n\r\n{text}",
                text.len(),
                header(&head, "authorization"),
            );
        }
    }
}

fn origin(forbidden: u16) -> Origin {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let endless_closed = Arc::new(AtomicBool::new(false));
    let uploads = Arc::new(Mutex::new(Vec::new()));
    let closed = endless_closed.clone();
    let recorded = uploads.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let closed = closed.clone();
            let recorded = recorded.clone();
            std::thread::spawn(move || serve_one(s, forbidden, &closed, &recorded));
        }
    });
    Origin {
        port,
        endless_closed,
        uploads,
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn call(port: u16, route: &str, u: &str, extra: &str) -> Value {
    let r = get(port, &format!("/fetch/{route}?u={}{extra}", enc(u)));
    assert_eq!(r.status, 200, "{route} {u}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

fn assert_type_error(v: &Value, needle: &str, log: &str) {
    assert_eq!(v["error"], "TypeError", "{v}\n{log}");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains(needle), "{m:?} lacks {needle:?}");
}

#[test]
fn fetch_to_allowed_backends() {
    let forbidden = origin(0);
    let o = origin(forbidden.port);
    let base = format!("http://127.0.0.1:{}", o.port);
    let config = format!(
        r#"{{ "fetch": {{ "filename": "$REPO/tests/js/apps/fetch_app.js", "concurrency": 1,
            "max_request_time": 5,
            "fetch": {{ "allow": ["{base}"], "timeout": 1.5, "max_response_size": 1048576 }} }} }}"#
    );
    let (k, port) = kvmjs(&config, "fetch-backend", &[]);
    let log = || k.log();

    // Allowed: the response, its headers, a request header through.
    let v = call(port, "get", &format!("{base}/hello"), "&auth=tok");
    assert_eq!(v["status"], 200, "{v}\n{}", log());
    assert_eq!(v["body"], "GET /hello te=- body=");
    assert_eq!(v["echo"], "auth=tok");
    assert_eq!(v["redirected"], false);
    assert_eq!(v["url"], format!("{base}/hello"));
    assert_eq!(v["type"], "basic");

    // Not allowed: another port, another host name for the same address.
    let other = format!("http://127.0.0.1:{}/hello", forbidden.port);
    let v = call(port, "get", &other, "");
    assert_type_error(&v, &format!("fetch to {other} is not allowed"), &log());
    assert_type_error(&v, "fetch.allow in tinykvm.json", &log());
    let v = call(
        port,
        "get",
        &format!("http://localhost:{}/hello", o.port),
        "",
    );
    assert_type_error(&v, "is not allowed", &log());

    // Redirects: followed; re-checked against the allow-list; manual; error; method rules.
    let v = call(port, "get", &format!("{base}/redir"), "");
    assert_eq!(
        (&v["status"], &v["redirected"], &v["url"]),
        (
            &Value::from(200),
            &Value::from(true),
            &Value::from(format!("{base}/hello"))
        ),
        "{v}"
    );
    let v = call(port, "get", &format!("{base}/redir-out"), "");
    assert_type_error(&v, "is not allowed", &log());
    let v = call(port, "get", &format!("{base}/redir"), "&redirect=manual");
    assert_eq!(v["status"], 302, "{v}");
    let v = call(port, "get", &format!("{base}/redir"), "&redirect=error");
    assert_type_error(&v, "redirect mode is \"error\"", &log());
    let v = call(
        port,
        "get",
        &format!("{base}/redir303"),
        "&m=POST&body=data",
    );
    assert_eq!(v["body"], "GET /hello te=- body=", "{v}");
    let v = call(
        port,
        "get",
        &format!("{base}/redir307"),
        "&m=POST&body=data",
    );
    assert_eq!(v["body"], "POST /hello te=- body=data", "{v}");
    let v = call(port, "get", &format!("{base}/redir-loop"), "");
    assert_type_error(&v, "more than 20 redirects", &log());

    // Streaming: a slow chunked body is read as it arrives.
    let v = call(port, "chunks", &format!("{base}/slow"), "");
    let chunks = v["chunks"].as_array().unwrap();
    let text: String = chunks.iter().map(|c| c[1].as_str().unwrap()).collect();
    assert_eq!(text, "firstsecondthird", "{v}");
    let first = chunks.first().unwrap()[0].as_f64().unwrap();
    let last = chunks.last().unwrap()[0].as_f64().unwrap();
    assert!(
        chunks.len() >= 3 && last - first >= 450.0,
        "chunks did not arrive incrementally: {v}"
    );
    // A streamed request body arrives whole, chunked.
    let v = call(port, "upload", &format!("{base}/up"), "&n=3&gap=50");
    assert_eq!(
        v["body"],
        "POST /up te=chunked body=part0;part1;part2;",
        "{v}\n{}",
        log()
    );

    // An upload whose stream errors is aborted: the backend never sees the terminating
    // chunk (it must not take a cut-off body for a whole one).
    let v = call(port, "upload", &format!("{base}/rec"), "&n=2&gap=10");
    assert_eq!(v["body"], "ok", "{v}\n{}", log());
    let v = call(port, "upload-fail", &format!("{base}/rec"), "");
    assert_eq!(v["error"], "RangeError", "{v}\n{}", log());
    let t0 = Instant::now();
    while o.uploads.lock().unwrap().len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the backend saw no end\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        *o.uploads.lock().unwrap(),
        ["complete:part0;part1;", "cut:part0;"],
        "{}",
        log()
    );
    // A backend that does not read the body: the upload waits (bounded buffering), then
    // fails at the fetch's timeout instead of buffering 8 MiB in the host.
    let t0 = Instant::now();
    let v = call(port, "upload-big", &format!("{base}/noread"), "&n=8");
    assert_type_error(&v, "timed out", &log());
    assert!(
        t0.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t0.elapsed()
    );

    // A backend Response returned as the app's own: its body streams through.
    let r = get(
        port,
        &format!("/fetch/proxy?u={}", enc(&format!("{base}/slow"))),
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "firstsecondthird"),
        "{}",
        log()
    );

    // Limits: size (declared, and counted while streaming) and time.
    let v = call(port, "get", &format!("{base}/big"), "");
    assert_type_error(&v, "fetch.max_response_size", &log());
    let v = call(port, "get", &format!("{base}/bigchunked"), "");
    assert_type_error(&v, "fetch.max_response_size", &log());
    let t0 = Instant::now();
    let v = call(port, "get", &format!("{base}/slowhead"), "");
    assert_type_error(&v, "timed out", &log());
    assert!(
        t0.elapsed() < Duration::from_millis(2900),
        "{:?}",
        t0.elapsed()
    );

    // Abort: the next read rejects with an AbortError.
    let v = call(port, "abort", &format!("{base}/endless"), "");
    assert_eq!(
        (&v["aborted"], &v["name"]),
        (&Value::from(true), &Value::from("AbortError")),
        "{v}"
    );

    // An open fetch does not outlive its request: the reset closes its connection.
    // (after the aborted /endless connection has been seen closed)
    std::thread::sleep(Duration::from_millis(500));
    o.endless_closed.store(false, Ordering::SeqCst);
    let v = call(port, "open", &format!("{base}/endless"), "");
    assert_eq!(v["status"], 200, "{v}");
    let t0 = Instant::now();
    while !o.endless_closed.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the backend connection outlived its request\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And the VM serves the next request normally.
    let v = call(port, "get", &format!("{base}/hello"), "");
    assert_eq!(v["status"], 200, "{v}");

    // Metrics.
    let m = |s: &str| metric(port, &format!("kvmjs_{s}{{program=\"fetch\"}}"));
    assert!(
        m("fetches_total") >= 15.0,
        "{}",
        get(port, "/metrics").text()
    );
    assert!(
        m("fetch_errors_total") >= 8.0,
        "{}",
        get(port, "/metrics").text()
    );
    assert!(m("fetch_received_bytes_total") > 1000.0);
    assert!(m("fetch_sent_bytes_total") >= 20.0);
    assert!(m("fetch_duration_seconds_count") >= 8.0);
}

#[test]
fn open_fetches_end_with_their_response_without_a_reset() {
    let o = origin(0);
    let base = format!("http://127.0.0.1:{}", o.port);
    let config = format!(
        r#"{{ "fetch": {{ "filename": "$REPO/tests/js/apps/fetch_app.js", "concurrency": 1,
            "ephemeral": false, "max_request_time": 5,
            "fetch": {{ "allow": ["{base}"], "timeout": 10 }} }} }}"#
    );
    let (k, port) = kvmjs(&config, "fetch-backend-keep", &[]);
    // No reset follows this response, and no further request comes: the fetch left open
    // must still be dropped (its connection closed) once the response is out.
    let v = call(port, "open", &format!("{base}/endless"), "");
    assert_eq!(v["status"], 200, "{v}\n{}", k.log());
    let t0 = Instant::now();
    while !o.endless_closed.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the backend connection outlived its request\n{}",
            k.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = call(port, "get", &format!("{base}/hello"), "");
    assert_eq!(v["status"], 200, "{v}");
}
