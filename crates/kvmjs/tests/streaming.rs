//! Streamed response bodies end to end: `kvmjs serve` running tests/js/apps/stream_app.js
//! in the QuickJS guest, read with raw sockets that parse the chunked framing themselves
//! and note when each chunk arrived. Timing assertions compare arrivals within one
//! response against a production spread of hundreds of milliseconds, so a slow machine
//! does not make them flaky: a buffered body would arrive all at once.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"{
    "stream": {
        "filename": "$REPO/tests/js/apps/stream_app.js",
        "concurrency": 1,
        "max_request_time": 2
    }
}"#;

const EXITS: &str = "kvmjs_vm_exits_total{program=\"stream\"}";

/// A response read off the socket: the head, every chunk with its arrival time, and how
/// the body ended.
struct Streamed {
    head: String,
    chunks: Vec<(Instant, Vec<u8>)>,
    /// The terminating zero-size chunk arrived (a clean end).
    complete: bool,
}

impl Streamed {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn body(&self) -> String {
        let all: Vec<u8> = self.chunks.iter().flat_map(|(_, c)| c.clone()).collect();
        String::from_utf8_lossy(&all).into_owned()
    }
}

fn open(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

/// Reads from `s` into `buf` until it holds `n` bytes; false at EOF (or a reset).
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut tmp = [0u8; 16384];
    while buf.len() < n {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
    true
}

/// Reads up to and including the next CRLF (`None` at EOF).
fn line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let l = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Some(l);
        }
        let have = buf.len();
        if !fill(s, buf, have + 1) {
            return None;
        }
    }
}

/// Reads the head, then (for a chunked body) chunk after chunk, stopping after
/// `max_chunks` when given (the connection is then left open).
fn read_streamed(s: &mut TcpStream, max_chunks: Option<usize>) -> Streamed {
    let mut buf = Vec::new();
    let mut head = String::new();
    while let Some(l) = line(s, &mut buf) {
        if l.is_empty() {
            break;
        }
        head.push_str(&l);
        head.push('\n');
    }
    let mut out = Streamed {
        head,
        chunks: Vec::new(),
        complete: false,
    };
    if let Some(len) = out.header("content-length") {
        let len: usize = len.parse().unwrap();
        assert!(fill(s, &mut buf, len), "body cut short: {}", out.head);
        out.chunks.push((Instant::now(), buf[..len].to_vec()));
        out.complete = true;
        return out;
    }
    assert_eq!(
        out.header("transfer-encoding").as_deref(),
        Some("chunked"),
        "{}",
        out.head
    );
    while max_chunks.is_none_or(|m| out.chunks.len() < m) {
        let Some(size) = line(s, &mut buf) else {
            return out; // EOF where a chunk size belongs: truncated
        };
        let size = usize::from_str_radix(size.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size:?}"));
        if size == 0 {
            assert_eq!(
                line(s, &mut buf).as_deref(),
                Some(""),
                "no trailer expected"
            );
            out.complete = true;
            return out;
        }
        if !fill(s, &mut buf, size + 2) {
            return out;
        }
        assert_eq!(&buf[size..size + 2], b"\r\n", "chunk not followed by CRLF");
        out.chunks.push((Instant::now(), buf[..size].to_vec()));
        buf.drain(..size + 2);
    }
    out
}

fn get_streamed(port: u16, path: &str) -> Streamed {
    read_streamed(&mut open(port, path), None)
}

/// The exits counter once it has moved past `before` (a stream's are recorded when it
/// ends, just after its last byte left), or after a short wait.
/// The exit counter once it has moved past `before` and settled: a streamed response's
/// head is counted when it is sent and the stream's own exits when it ends, so the first
/// increase alone may be only the head's.
fn exits_after(port: u16, before: f64) -> f64 {
    let t = Instant::now();
    let mut last = metric(port, EXITS);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = metric(port, EXITS);
        if (now > before && now == last) || t.elapsed() > Duration::from_secs(3) {
            return now;
        }
        last = now;
    }
}

#[test]
fn server_sent_events_arrive_as_they_are_made() {
    let (k, port) = kvmjs(CONFIG, "stream-sse", &[]);
    let r = get_streamed(port, "/stream/sse?n=4&gap=250");
    assert!(
        r.head.starts_with("HTTP/1.1 200"),
        "{}\n{}",
        r.head,
        k.log()
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    assert!(r.header("content-length").is_none(), "{}", r.head);
    assert!(r.complete, "clean end expected: {}", r.body());
    // Each event was made 250 ms after the last, so each went in a chunk of its own.
    let events: Vec<String> = r
        .chunks
        .iter()
        .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(events.len(), 4, "{events:?}");
    for (i, e) in events.iter().enumerate() {
        assert!(
            e.starts_with(&format!("id: {i}\ndata: {{\"i\":{i},")) && e.ends_with("}\n\n"),
            "{e:?}"
        );
    }
    // The first event reached the client long before the last was made (750 ms of
    // production; a buffered body would have arrived in one piece).
    let spread = r.chunks[3].0 - r.chunks[0].0;
    assert!(
        spread >= Duration::from_millis(450),
        "first to last event took only {spread:?}"
    );
    // The next request on the same (reset) VM is fine.
    let r = get(port, "/stream/static");
    assert_eq!((r.status, r.text().as_str()), (200, "static body"));
    // HEAD: the head of the streamed response, no body, and the guest is not kept
    // running for a body nobody reads (the only VM answers the next request at once).
    let r = request(port, "HEAD", "/stream/sse?n=4&gap=1500", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    let t0 = Instant::now();
    assert_eq!(get(port, "/stream/static").status, 200);
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn complete_bodies_leave_whole_in_one_exit_and_streams_cost_exits() {
    let (k, port) = kvmjs(CONFIG, "stream-whole", &[]);
    // Boot and warm the program first, so the counts below are one request's.
    assert_eq!(get(port, "/stream/static").status, 200, "{}", k.log());
    let e0 = metric(port, EXITS);
    let r = get(port, "/stream/static");
    assert_eq!(r.header("content-length").as_deref(), Some("11"));
    let e1 = metric(port, EXITS);
    // A ReadableStream whose chunks were all queued when the handler returned: one
    // backend_response with a length, like a static body.
    let r = get(port, "/stream/ready");
    assert_eq!((r.status, r.text().as_str()), (200, "one,two,three"));
    assert_eq!(
        r.header("content-length").as_deref(),
        Some("13"),
        "{}",
        r.head
    );
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    let e2 = metric(port, EXITS);
    let (static_exits, ready_exits) = (e1 - e0, e2 - e1);
    assert!(static_exits >= 1.0, "{static_exits}");
    assert!(
        ready_exits <= static_exits + 1.0,
        "a complete stream cost {ready_exits} exits, a static body {static_exits}"
    );
    // A genuinely pending stream: a head, then one append per event and an end (and the
    // timer waits between them).
    let r = get_streamed(port, "/stream/sse?n=3&gap=50");
    assert!(r.complete && r.chunks.len() == 3, "{}", r.body());
    let e3 = exits_after(port, e2);
    assert!(
        e3 - e2 >= static_exits + 3.0,
        "a 3-event stream cost {} exits, a static body {static_exits}",
        e3 - e2
    );
}

#[test]
fn failures_truncate_and_the_server_stays_clean() {
    let (k, port) = kvmjs(CONFIG, "stream-fail", &[]);
    let baseline = get(port, "/stream/count").text();
    // The stream errors after its first chunk: the client gets that chunk, then the
    // connection ends without the terminating chunk.
    let r = get_streamed(port, "/stream/fail");
    assert!(
        r.head.starts_with("HTTP/1.1 200"),
        "{}\n{}",
        r.head,
        k.log()
    );
    assert_eq!(r.body(), "partial ");
    assert!(!r.complete, "an errored stream must not end cleanly");
    assert_eq!(get(port, "/stream/count").text(), baseline);
    // max_request_time (2 s) ends an endless stream, truncated.
    let t0 = Instant::now();
    let r = get_streamed(port, "/stream/endless");
    let took = t0.elapsed();
    assert!(!r.complete);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(r.body().starts_with("tick 0\ntick 1\n"), "{}", r.body());
    assert!(r.chunks.len() >= 10, "{} chunks", r.chunks.len());
    assert!(
        metric(
            port,
            "kvmjs_errors_total{program=\"stream\",kind=\"timeout\"}"
        ) >= 1.0
    );
    assert_eq!(get(port, "/stream/count").text(), baseline);
    // A client that goes away mid-stream stops the guest: the only VM serves the next
    // request at once, from a clean reset, not after max_request_time.
    let mut s = open(port, "/stream/endless");
    let first = read_streamed(&mut s, Some(1));
    assert_eq!(first.body(), "tick 0\n");
    drop(s);
    let t0 = Instant::now();
    let r = get(port, "/stream/count");
    assert_eq!(r.text(), baseline);
    assert!(
        t0.elapsed() < Duration::from_millis(1200),
        "the next request waited {:?}",
        t0.elapsed()
    );
    assert!(
        metric(
            port,
            "kvmjs_errors_total{program=\"stream\",kind=\"client_gone\"}"
        ) >= 1.0,
        "{}",
        get(port, "/metrics").text()
    );
    // Background work after a stream runs after its end; the response ends cleanly.
    let r = get_streamed(port, "/stream/bg");
    assert!(r.complete);
    assert_eq!(r.body(), "part 0 part 1 ");
    assert_eq!(get(port, "/stream/count").text(), baseline);
}

#[test]
fn streams_without_timer_gaps_are_sent_as_they_are_made() {
    let (k, port) = kvmjs(CONFIG, "stream-sync", &[]);
    let baseline = get(port, "/stream/count").text();
    // An endless stream whose pulls enqueue at once: sent as it is made (not buffered
    // in the guest's heap until memory or the deadline runs out), cut at max_request_time.
    let t0 = Instant::now();
    let r = get_streamed(port, "/stream/sync-endless");
    let took = t0.elapsed();
    assert!(
        r.head.starts_with("HTTP/1.1 200"),
        "{}\n{}",
        r.head,
        k.log()
    );
    assert!(!r.complete, "an endless stream cannot end cleanly");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    // max_request_time is 2 s: the first bytes came well before it.
    let first_at = r.chunks.first().expect("no chunk arrived").0 - t0;
    assert!(first_at < Duration::from_millis(1000), "{first_at:?}");
    let sent: usize = r.chunks.iter().map(|(_, c)| c.len()).sum();
    assert!(sent >= 1 << 20, "only {sent} bytes in {took:?}");
    assert!(r.chunks.iter().all(|(_, c)| c.iter().all(|&b| b == b'x')));
    assert_eq!(get(port, "/stream/count").text(), baseline);
    // 8 MiB made at once: it arrives whole and intact, in parts (no OOM, no CPU limit).
    let r = get_streamed(port, "/stream/sync-big");
    assert!(r.complete, "{}\n{}", r.head, k.log());
    assert!(r.header("content-length").is_none(), "{}", r.head);
    let all: Vec<u8> = r.chunks.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(all.len(), 8 << 20);
    for (i, c) in all.chunks(1 << 16).enumerate() {
        assert!(c.iter().all(|&b| b == (i % 251) as u8), "chunk {i}");
    }
    assert_eq!(get(port, "/stream/count").text(), baseline);
}

#[test]
fn a_stream_failing_before_its_head_is_a_500() {
    let (k, port) = kvmjs(CONFIG, "stream-early", &[]);
    let r = get(port, "/stream/early");
    assert_eq!(r.status, 500, "{}", k.log());
    assert_eq!(
        r.text(),
        "Internal Server Error: Error: the backend refused\n"
    );
    assert_eq!(get(port, "/stream/static").status, 200);
}

#[test]
fn varnish_passes_a_stream_through_as_it_is_made() {
    let (k, kport) = kvmjs(CONFIG, "stream-varnish", &[]);
    let (_v, vport) = varnish(kport, "stream-varnish-v");
    let r = get_streamed(vport, "/stream/sse?n=3&gap=300");
    assert!(
        r.head.starts_with("HTTP/1.1 200"),
        "{}\n{}",
        r.head,
        k.log()
    );
    assert!(r.complete);
    let body = r.body();
    assert_eq!(body.matches("data: ").count(), 3, "{body}");
    // Varnish may frame the chunks its own way; what matters is that the first event got
    // through long before the last was made (600 ms later).
    let spread = r.chunks.last().unwrap().0 - r.chunks[0].0;
    assert!(
        spread >= Duration::from_millis(350),
        "through Varnish the events arrived within {spread:?}"
    );
}
