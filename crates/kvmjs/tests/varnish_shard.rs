//! Several `kvmjs serve` nodes behind varnishd with vcl/kvmjs-shard.vcl (shard director
//! keyed by program): routing by program, failover when a node dies (no failed idempotent
//! request), and recovery when it comes back.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The nodes' addresses, as in vcl/kvmjs-shard.vcl (node1 is 127.0.0.1, ...).
const HOSTS: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];

/// Every node loads the same programs: hello, echo, and eight copies of env.js whose
/// greeting names the program, so a body tells which program answered.
fn config() -> String {
    let mut c = String::from(
        r#"{
    "base": { "concurrency": 1, "max_request_time": 5, "max_request_body": 1 },
    "hello": { "group": "base", "filename": "$REPO/js/hello.js" },
    "echo": { "group": "base", "filename": "$REPO/js/echo.js" }"#,
    );
    for p in env_programs() {
        c.push_str(&format!(
            ",\n    \"{p}\": {{ \"group\": \"base\", \"filename\": \"$REPO/js/env.js\", \
             \"environment\": [\"GREETING=program {p}\"] }}"
        ));
    }
    c.push_str("\n}");
    c
}

fn env_programs() -> Vec<String> {
    (1..=8).map(|i| format!("p{i}")).collect()
}

fn programs() -> Vec<String> {
    let mut v = vec!["hello".to_string(), "echo".to_string()];
    v.extend(env_programs());
    v
}

/// Whether `body` is what `program` answers to `GET /<program>/x`.
fn body_ok(program: &str, body: &str) -> bool {
    match program {
        "hello" => body == "Hello, World!\n",
        "echo" => body.contains("\"method\":\"GET\"") && body.contains("/echo/x"),
        p => body.contains(&format!("\"greeting\":\"program {p}\"")),
    }
}

/// A response through Varnish: status, the node that served it, retries, body.
struct Got {
    status: u16,
    node: String,
    retries: u32,
    body: String,
}

/// One request through Varnish on a fresh connection; an I/O or parse failure is an Err
/// (counted as a failed request), never a panic, so the client thread keeps counting.
fn send(port: u16, method: &str, path: &str, body: &[u8]) -> Result<Got, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no response head in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    Ok(Got {
        status,
        node: header("X-KVMJS-Node").unwrap_or_default(),
        retries: header("X-KVMJS-Retries")
            .and_then(|r| r.parse().ok())
            .unwrap_or(u32::MAX),
        body: body.to_string(),
    })
}

/// One series of a node's /metrics, asked of the node directly (0 when absent).
fn node_metric(addr: &str, series: &str) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The node (backend name) serving each program, asserting it is the same over `n`
/// requests with no retry and a correct body.
fn routes(vport: u16, n: usize) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for p in programs() {
        let mut seen = BTreeSet::new();
        for _ in 0..n {
            let g = send(vport, "GET", &format!("/{p}/x"), b"").unwrap();
            assert_eq!(g.status, 200, "{p}: {}", g.body);
            assert!(body_ok(&p, &g.body), "{p}: wrong body {:?}", g.body);
            assert_eq!(g.retries, 0, "{p}: retried with every node up");
            seen.insert(g.node);
        }
        assert_eq!(seen.len(), 1, "{p} was served by several nodes: {seen:?}");
        map.insert(p, seen.pop_first().unwrap());
    }
    map
}

/// What the client stream saw.
#[derive(Default)]
struct Tally {
    sent: usize,
    failed: Vec<String>,
    /// Served by another node than the program's primary.
    rerouted: usize,
    /// Answered after at least one retry.
    retried: usize,
    /// Rerouted requests by program.
    moved: BTreeSet<String>,
    /// When the last retried request was answered: retries stop once the probe has
    /// marked the dead node sick.
    last_retry: Option<Instant>,
}

/// One `kvmjs serve` per address of HOSTS, all on `port`, tagged `tag`1..3.
fn start_nodes(cfg: &str, port: u16, tag: &str) -> Vec<Option<Proc>> {
    (0..HOSTS.len())
        .map(|i| {
            Some(kvmjs_on(
                cfg,
                &format!("{tag}{}", i + 1),
                &format!("{}:{port}", HOSTS[i]),
                &[],
            ))
        })
        .collect()
}

#[test]
fn shard_routes_by_program_fails_over_and_recovers() {
    let port = free_port_on(&HOSTS);
    let cfg = config();
    let addr = |i: usize| format!("{}:{port}", HOSTS[i]);
    let mut nodes = start_nodes(&cfg, port, "shard-node");
    let vcl = std::fs::read_to_string(repo().join("vcl/kvmjs-shard.vcl")).unwrap();
    assert_eq!(vcl.matches("\"8080\"").count(), 3, "one port per node");
    let vcl = vcl.replace("\"8080\"", &format!("\"{port}\""));
    let (v, vport) = varnishd_with(&vcl, "shard-varnish", &[]);

    // a. Routing: one node per program, and the programs spread over the nodes.
    let primary = routes(vport, 5);
    eprintln!("shard: primaries {primary:?}");
    let used: BTreeSet<&String> = primary.values().collect();
    assert!(used.len() > 1, "all programs on one node: {primary:?}");
    // Only the primary ran (and booted a VM for) each program.
    for (i, name) in ["node1", "node2", "node3"].iter().enumerate() {
        for p in programs() {
            let n = node_metric(
                &addr(i),
                &format!("kvmjs_requests_total{{program=\"{p}\",code=\"200\"}}"),
            );
            let cold = node_metric(
                &addr(i),
                &format!("kvmjs_cold_starts_total{{program=\"{p}\"}}"),
            );
            if primary[&p] == *name {
                assert!(
                    n >= 5.0 && cold >= 1.0,
                    "{p} on its primary {name}: {n} requests, {cold} boots"
                );
            } else {
                assert!(
                    n == 0.0 && cold == 0.0,
                    "{p} ran on {name}, not its primary: {n} requests, {cold} boots"
                );
            }
        }
    }

    // b. Failover: the primary of echo dies while a client streams GETs for all programs.
    let victim_name = primary["echo"].clone();
    let victim: usize = victim_name["node".len()..].parse::<usize>().unwrap() - 1;
    let on_victim: Vec<&String> = primary
        .iter()
        .filter(|(_, n)| **n == victim_name)
        .map(|(p, _)| p)
        .collect();
    eprintln!(
        "shard: killing {victim_name} ({}), primary of {on_victim:?}",
        addr(victim)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let client = {
        let (stop, count, tally, primary) =
            (stop.clone(), count.clone(), tally.clone(), primary.clone());
        std::thread::spawn(move || {
            let all = programs();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let p = &all[i % all.len()];
                i += 1;
                let r = send(vport, "GET", &format!("/{p}/x"), b"");
                let mut t = tally.lock().unwrap();
                t.sent += 1;
                match r {
                    Ok(g) if g.status == 200 && body_ok(p, &g.body) => {
                        if g.node != primary[p] {
                            t.rerouted += 1;
                            t.moved.insert(p.clone());
                        }
                        if g.retries > 0 {
                            t.retried += 1;
                            t.last_retry = Some(Instant::now());
                        }
                    }
                    Ok(g) => t.failed.push(format!(
                        "{p}: {} from {} after {} retries: {:?}",
                        g.status, g.node, g.retries, g.body
                    )),
                    Err(e) => t.failed.push(format!("{p}: {e}")),
                }
                drop(t);
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let wait_count = |n: usize| {
        let t = Instant::now();
        while count.load(Ordering::Relaxed) < n {
            assert!(t.elapsed() < Duration::from_secs(60), "the client stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_count(100);
    let mut dead = nodes[victim].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let killed = Instant::now();
    let sent_at_kill = count.load(Ordering::Relaxed);

    // Before the probe can have marked the node sick (two failed probes, 1 s apart): a POST
    // is not retried (it could have run on the node that died), a PUT with a body is, on
    // the next node of the ring.
    let post = send(vport, "POST", "/echo/x", b"once").unwrap();
    let put = send(vport, "PUT", "/echo/x", b"put-body").unwrap();
    let early = killed.elapsed();
    assert!(
        early < Duration::from_millis(800),
        "too slow to test before the probe: {early:?}"
    );
    assert_eq!(post.status, 503, "a POST to the dead node: {}", post.body);
    assert_eq!(post.retries, 0, "a POST was retried");
    assert_eq!(put.status, 200, "a PUT to the dead node: {}", put.body);
    assert!(
        put.retries >= 1 && put.node != victim_name,
        "PUT not moved: {} after {}",
        put.node,
        put.retries
    );
    assert!(
        put.body.contains("\"method\":\"PUT\"") && put.body.contains("\"body\":\"put-body\""),
        "the retried PUT lost its body: {}",
        put.body
    );
    eprintln!(
        "shard: right after the kill: POST {} (retries {}), PUT {} from {} (retries {})",
        post.status, post.retries, put.status, put.node, put.retries
    );

    // Keep streaming past the probe's verdict (~2 s) so both phases are covered.
    wait_count(sent_at_kill + 100);
    while killed.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // With the node marked sick, its programs go straight to their next node.
    for p in &on_victim {
        let g = send(vport, "GET", &format!("/{p}/x"), b"").unwrap();
        assert_eq!(g.status, 200, "{p}: {}", g.body);
        assert!(
            g.node != victim_name && g.retries == 0,
            "{p}: {} after {} retries",
            g.node,
            g.retries
        );
    }

    // c. Recovery: the node comes back on the same address, the stream still running.
    let restarted = Instant::now();
    nodes[victim] = Some(kvmjs_on(
        &cfg,
        &format!("shard-node{}-again", victim + 1),
        &addr(victim),
        &[],
    ));
    let back = loop {
        let g = send(vport, "GET", "/echo/x", b"").unwrap();
        assert_eq!(g.status, 200, "echo during recovery: {}", g.body);
        if g.node == victim_name {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "{victim_name} not used again 20 s after its restart:\n{}",
            v.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    wait_count(count.load(Ordering::Relaxed) + 50);
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    // Every program is back on its primary: the ring did not change.
    let after = routes(vport, 3);
    assert_eq!(after, primary, "routes after recovery");

    let t = tally.lock().unwrap();
    eprintln!(
        "shard: {} programs on {} nodes; {} moved while {victim_name} was down: {:?}; \
         {} answered after a retry, the last {} ms after the kill (then the probe had marked it sick)",
        primary.len(),
        used.len(),
        t.moved.len(),
        t.moved,
        t.retried,
        t.last_retry
            .map_or(0, |r| r.saturating_duration_since(killed).as_millis())
    );
    eprintln!(
        "shard: sent {}, failed {}, rerouted {}, recovered after {} ms",
        t.sent,
        t.failed.len(),
        t.rerouted,
        back.as_millis()
    );
    assert!(t.sent >= 200, "only {} requests sent", t.sent);
    assert!(t.failed.is_empty(), "failed requests: {:#?}", t.failed);
    assert!(
        t.retried > 0,
        "no request met the dead node before the probe: the retry was not exercised"
    );
    assert!(
        t.rerouted > 0,
        "no request was rerouted: the failover was not exercised"
    );
    // Only the dead node's programs moved (consistent hashing).
    let expected: BTreeSet<String> = on_victim.iter().map(|p| p.to_string()).collect();
    assert_eq!(t.moved, expected, "programs moved off their primary");
    drop(v);
    drop(nodes);
}

/// A node that dies in the middle of every request: it reads the whole request (head and
/// body), records "METHOD path body", and closes the connection without answering. It
/// answers the probe's /healthz, so Varnish keeps sending it requests.
fn half_node(addr: &str, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<String>>> {
    let l = std::net::TcpListener::bind(addr).unwrap();
    l.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut s = match l.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let end = loop {
                if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(e);
                }
                match s.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break None,
                }
            };
            let Some(end) = end else { continue };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match s.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if path == "/healthz" {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                );
                continue;
            }
            let body = String::from_utf8_lossy(&buf[(end + 4).min(buf.len())..]);
            rec.lock().unwrap().push(format!("{method} {path} {body}"));
            // Dropped here: the connection closes after the request, with no response.
        }
    });
    seen
}

/// A node that took the request and died before answering: an idempotent request is sent
/// again, body included, to the next node; a POST is not (it may have run already).
#[test]
fn shard_resends_idempotent_requests_not_posts() {
    let port = free_port_on(&HOSTS);
    let cfg = config();
    let addr = |i: usize| format!("{}:{port}", HOSTS[i]);
    let mut nodes = start_nodes(&cfg, port, "shard-mid");
    let vcl = std::fs::read_to_string(repo().join("vcl/kvmjs-shard.vcl"))
        .unwrap()
        .replace("\"8080\"", &format!("\"{port}\""));
    let (_v, vport) = varnishd_with(&vcl, "shard-mid-varnish", &[]);
    let first = send(vport, "GET", "/echo/x", b"").unwrap();
    assert_eq!((first.status, first.retries), (200, 0), "{}", first.body);
    let victim_name = first.node;
    let victim: usize = victim_name["node".len()..].parse::<usize>().unwrap() - 1;
    // echo's primary is replaced by the half node within one probe interval, so the
    // probe (2 failures of 3 to mark it sick) keeps it healthy.
    drop(nodes[victim].take());
    let stop = Arc::new(AtomicBool::new(false));
    let seen = half_node(&addr(victim), stop.clone());

    let put = send(vport, "PUT", "/echo/x", b"mid-request").unwrap();
    assert_eq!(put.status, 200, "PUT: {}", put.body);
    assert!(
        put.retries == 1 && put.node != victim_name,
        "PUT served by {} after {} retries",
        put.node,
        put.retries
    );
    assert!(
        put.body.contains("\"method\":\"PUT\"") && put.body.contains("\"body\":\"mid-request\""),
        "the resent PUT lost its body: {}",
        put.body
    );
    let post = send(vport, "POST", "/echo/x", b"once").unwrap();
    assert_eq!((post.status, post.retries), (503, 0), "POST: {}", post.body);
    let get = send(vport, "GET", "/echo/x", b"").unwrap();
    assert_eq!((get.status, get.retries), (200, 1), "GET: {}", get.body);
    let seen = seen.lock().unwrap().clone();
    eprintln!(
        "shard: {victim_name} died mid-request: PUT {} from {} (retries {}), POST {} (retries {}), GET {} (retries {}); it had received {seen:?}",
        put.status, put.node, put.retries, post.status, post.retries, get.status, get.retries
    );
    // Each request reached the dying node exactly once, the POST with its body.
    assert_eq!(
        seen,
        [
            "PUT /echo/x mid-request",
            "POST /echo/x once",
            "GET /echo/x "
        ]
    );
    stop.store(true, Ordering::Relaxed);
}
