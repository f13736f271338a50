//! Per-request isolation on `engine: "deno"` (issue 12, deliverable 5), end to end through
//! `kvmjs serve`: the 100,000-secret leak test, the hostile probe (tests/js/apps/hostile.js:
//! module state, globalThis, prototypes, timers, promises, V8's compilation cache, Web
//! storage, files, environment, randomness and clocks), limits, the write-timing covert
//! channel, and non-ephemeral pools. Needs /dev/kvm and the deno CLI that
//! `.ci/install-deps` installs into .deno/; without them these tests fail (never skip).

mod common;
#[path = "../../../tests/timing/decode.rs"]
mod timing_decode;

use common::*;
use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One test at a time: each measures throughput, exits or timing on a 2-core machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `kvmjs serve` with `config`, where `$DENO` is the deno binary.
fn serve_deno(config: &str, tag: &str) -> (Proc, u16) {
    kvmjs(
        &config.replace("$DENO", &deno().to_string_lossy()),
        tag,
        &[],
    )
}

/// A keep-alive HTTP/1.1 client: one connection for many requests, one at a time.
struct Conn {
    s: TcpStream,
}

impl Conn {
    fn new(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s }
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Resp {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.s.write_all(&msg).unwrap();
        let r = read_response(&mut self.s);
        assert!(
            !r.header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "{path}: the server closed the keep-alive connection: {}",
            r.text()
        );
        r
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, b"")
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

/// A random 64-bit start for xorshift64, different in every run and thread.
fn seed(salt: u64) -> u64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        | 1
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---- The leak test ----

/// tests/js/apps/isolation.js on deno, two VMs (the boot VM and a fork). The warm-up is
/// explicit, so the snapshot's state is known: 20 `GET /?id=w` with empty bodies.
const ISO_CONFIG: &str = r#"{
    "iso": {
        "engine": "deno", "deno": "$DENO", "concurrency": 2, "max_boot_time": 180,
        "max_request_time": 30, "idle_timeout": 0, "queue_timeout": 60,
        "filename": "$REPO/tests/js/apps/isolation.js",
        "warmup": { "num_requests": 20, "url": "/?id=w" }
    }
}"#;

/// What isolation.js answers to request `id` with `secret` when it runs from the snapshot:
/// the warm-up's 20 requests, then this one, and nothing of any other request.
fn isolated_answer(id: &str, secret: &str) -> String {
    let warm = r#"{"id":"w","secret":""},"#.repeat(20);
    format!(
        r#"{{"count":21,"previous":"","stored":2,"seen":[{warm}{{"id":"{id}","secret":"{secret}"}}]}}"#
    )
}

/// 100,000 POSTs, each with a fresh random secret, from two client threads on their own
/// keep-alive connections, so both VMs serve: no answer may differ from the isolated one.
#[test]
fn hundred_thousand_secrets_never_leak_on_deno() {
    const REQUESTS: u32 = 100_000;
    const THREADS: u32 = 2;
    let _serial = serial();
    let (k, port) = serve_deno(ISO_CONFIG, "deno-iso");
    // The first request boots the program: out of the measured time.
    let r = Conn::new(port).send("POST", "/iso?id=boot", b"first");
    assert_eq!(r.text(), isolated_answer("boot", "first"), "{}", k.log());
    let t = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|n| {
            std::thread::spawn(move || {
                let mut conn = Conn::new(port);
                let mut x = seed(u64::from(n) + 1);
                let mut leaked = Vec::new();
                let mut differing = 0u32;
                for i in (n..REQUESTS).step_by(THREADS as usize) {
                    let secret = format!("{:016x}", xorshift(&mut x));
                    let r = conn.send("POST", &format!("/iso?id={i}"), secret.as_bytes());
                    let (got, want) = (r.text(), isolated_answer(&i.to_string(), &secret));
                    if r.status != 200 || got != want {
                        differing += 1;
                        if leaked.len() < 5 {
                            leaked.push(format!("request {i} ({}): {got}", r.status));
                        }
                    }
                }
                (differing, leaked)
            })
        })
        .collect();
    let (mut differing, mut examples) = (0, Vec::new());
    for th in threads {
        let (d, e) = th.join().unwrap();
        differing += d;
        examples.extend(e);
    }
    let took = t.elapsed();
    let requests = metric(port, "kvmjs_requests_total{program=\"iso\",code=\"200\"}");
    let exits = metric(port, "kvmjs_vm_exits_total{program=\"iso\"}");
    let pages = metric(port, "kvmjs_dirty_pages_total{program=\"iso\"}");
    eprintln!(
        "{REQUESTS} requests with secrets on deno (2 VMs, 2 keep-alive clients): {:.1} s, {:.0} requests/s, {:.1} exits and {:.1} dirty pages per request, {differing} differing",
        took.as_secs_f64(),
        f64::from(REQUESTS) / took.as_secs_f64(),
        exits / requests,
        pages / requests
    );
    assert_eq!(
        differing, 0,
        "answers that saw another request's state (first ones: {examples:#?})"
    );
    assert_eq!(requests, f64::from(REQUESTS + 1), "{}", k.log());
}

// ---- The hostile probe ----

/// hostile.js on two ephemeral VMs.
const HOSTILE_CONFIG: &str = r#"{
    "h": {
        "engine": "deno", "deno": "$DENO", "concurrency": 2, "max_boot_time": 180,
        "max_request_time": 10, "idle_timeout": 0,
        "filename": "$REPO/tests/js/apps/hostile.js"
    }
}"#;

/// The places a plant stores its secret in, as /probe and /plant report them.
const PLACES: &[&str] = &[
    "module",
    "kept",
    "compiled",
    "global",
    "symbol",
    "objectProto",
    "arrayProto",
    "timer",
    "interval",
    "promise",
];

/// What localStorage and the Cache API answer in the VM (see the plant's checks).
const UNAVAILABLE: &str = "Error: disk I/O error";

fn json(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", r.status, r.text()))
}

/// Runs `a` on one connection and `b` on another at the same time: with two VMs and
/// requests that hold their VM for a while, each VM serves one.
fn pair<T: Send>(
    conns: &mut [Conn; 2],
    a: impl FnOnce(&mut Conn) -> T + Send,
    b: impl FnOnce(&mut Conn) -> T + Send,
) -> (T, T) {
    let [c0, c1] = conns;
    std::thread::scope(|s| {
        let h = s.spawn(move || a(c0));
        let y = b(c1);
        (h.join().unwrap(), y)
    })
}

/// One probe: its report, and the host's clock just before and after it.
struct Probe {
    v: serde_json::Value,
    body: String,
    sent_ms: f64,
    received_ms: f64,
}

fn probe(c: &mut Conn, guess: &str) -> Probe {
    let sent_ms = now_ms();
    // Held 40 ms, so the two probes of a pair run at once: one on each VM.
    let r = c.get(&format!("/h/probe?guess={guess}&hold=40"));
    let received_ms = now_ms();
    assert_eq!(r.status, 200, "{}", r.text());
    Probe {
        v: json(&r),
        body: r.text(),
        sent_ms,
        received_ms,
    }
}

/// Exits and requests of program `h` so far.
fn exits_and_requests(port: u16) -> (f64, f64) {
    (
        metric(port, "kvmjs_vm_exits_total{program=\"h\"}"),
        metric(port, "kvmjs_requests_total{program=\"h\",code=\"200\"}"),
    )
}

/// Exits per request of `n` probes in pairs on both VMs; the probes go to `out`.
fn probe_batch(
    port: u16,
    conns: &mut [Conn; 2],
    n: usize,
    guess: &[&str; 2],
    out: &mut Vec<Probe>,
) -> f64 {
    let (e0, r0) = exits_and_requests(port);
    for _ in 0..n / 2 {
        let (a, b) = pair(conns, |c| probe(c, guess[0]), |c| probe(c, guess[1]));
        out.push(a);
        out.push(b);
    }
    let (e1, r1) = exits_and_requests(port);
    assert_eq!(r1 - r0, (n / 2 * 2) as f64, "probes counted");
    (e1 - e0) / (r1 - r0)
}

/// A plant on each of the two VMs leaves its secret everywhere hostile.js knows (the
/// plant's own report finds it in every place: the readers work); afterwards, with the
/// plants' timers overdue, no probe on either VM finds any of it, crypto's randomness
/// differs between every two requests (Math.random: the randomness test below), the clocks are the host's and move forward, V8's
/// compilation cache does not remember the plants' sources, and probes cost no more exits
/// than before the plants.
#[test]
fn hostile_requests_leave_nothing_on_deno() {
    let _serial = serial();
    let (k, port) = serve_deno(HOSTILE_CONFIG, "deno-hostile");
    let mut conns = [Conn::new(port), Conn::new(port)];
    // Boot, then probes on a fresh program: the baseline.
    let r = conns[0].get("/h/ok");
    assert_eq!(r.text(), "ok", "{}", k.log());
    let mut before = Vec::new();
    let exits_before = probe_batch(port, &mut conns, 10, &["g0", "g1"], &mut before);
    for p in &before {
        for place in PLACES {
            assert!(p.v[place].is_null(), "{place} before any plant: {}", p.body);
        }
    }

    // Two plants at once, holding their VMs 1 s: one on each VM. One after the other they
    // would take 2 s; the margin covers a plant's own work (its first storage write creates
    // SQLite databases: ~120 ms) on a loaded machine.
    let (s1, s2) = (
        format!("S1{:016x}", seed(11)),
        format!("S2{:016x}", seed(12)),
    );
    let t = Instant::now();
    let plant = |secret: String| {
        move |c: &mut Conn| {
            let r = c.get(&format!("/h/plant?s={secret}&wait=1000"));
            assert_eq!(r.status, 200, "{}", r.text());
            (json(&r), r.text())
        }
    };
    let ((p1, t1), (p2, t2)) = pair(&mut conns, plant(s1.clone()), plant(s2.clone()));
    let together = t.elapsed();
    assert!(
        together < Duration::from_millis(2000),
        "the plants ran one after the other ({together:?}): not one per VM"
    );
    for (p, text, secret) in [(&p1, &t1, &s1), (&p2, &t2, &s2)] {
        let found = &p["found"];
        for place in PLACES {
            assert_eq!(
                found[place].as_str(),
                Some(secret.as_str()),
                "the plant's own report must find {place}: {text}"
            );
        }
        let planting = &p["planting"];
        eprintln!("planting on deno: {planting}");
        // localStorage and the Cache API are SQLite databases under DENO_DIR (the VM's
        // scratch /tmp). SQLite's WAL index is a MAP_SHARED mapping of a file, which the
        // VM refuses (ENODEV), so both fail with SQLite's "disk I/O error"; should they
        // ever work, the plant must read its secret back from them.
        for (store, stored) in [("localStorage", "set"), ("caches", "put")] {
            match planting[store].as_str() {
                Some(s) if s == stored => {
                    assert_eq!(found[store].as_str(), Some(secret.as_str()), "{text}")
                }
                Some(UNAVAILABLE) => assert_eq!(found[store], UNAVAILABLE, "{text}"),
                other => panic!("{store}: {other:?}"),
            }
        }
        assert!(
            found["stringify"]
                .as_str()
                .is_some_and(|s| s.ends_with(secret.as_str())),
            "{text}"
        );
        // deno's permissions (no --allow-write, --allow-env only for configured keys)
        // refuse the file and the environment, with deno's own error.
        for (what, flag) in [("file", "--allow-write"), ("env", "--allow-env")] {
            let why = planting[what].as_str().unwrap_or_default();
            assert!(
                why.starts_with("NotCapable: Requires") && why.contains(flag),
                "{what}: {why}"
            );
        }
    }
    // Every timer the plants left is overdue now.
    std::thread::sleep(Duration::from_millis(400));

    let mut after = Vec::new();
    let exits_after = probe_batch(port, &mut conns, 40, &[&s1, &s2], &mut after);
    for p in &after {
        for secret in [&s1, &s2] {
            assert!(
                !p.body.contains(secret.as_str()),
                "a probe found {secret}: {}",
                p.body
            );
        }
        for place in PLACES.iter().chain(&["lateTimer", "intervalId"]) {
            assert!(p.v[place].is_null(), "{place} after the plants: {}", p.body);
        }
        assert_eq!(p.v["timerWrites"], 0, "{}", p.body);
        assert_eq!(p.v["globals"], "", "{}", p.body);
        assert_eq!(p.v["stringify"], "{}", "{}", p.body);
        for store in ["localStorage", "caches"] {
            let v = &p.v[store];
            assert!(v.is_null() || *v == UNAVAILABLE, "{store}: {}", p.body);
        }
        for (what, flag) in [("file", "read access"), ("env", "env access")] {
            let why = p.v[what].as_str().unwrap_or_default();
            assert!(
                why.starts_with(&format!("NotCapable: Requires {flag}")),
                "{why}"
            );
        }
    }

    // Randomness: every request draws its own, also on two VMs forked from one snapshot.
    let all: Vec<&Probe> = before.iter().chain(&after).collect();
    for field in ["bytes", "uuid", "subtleKey"] {
        let set: HashSet<String> = all.iter().map(|p| p.v[field].to_string()).collect();
        assert_eq!(set.len(), all.len(), "{field} repeats across requests");
    }
    // Math.random(): math_random_differs_between_requests_on_deno.

    // Clocks: Date.now() is the host's (within 1 s) and never goes back on a connection;
    // performance.now() moves forward too.
    let mut skew = 0f64;
    for conn in 0..2 {
        let seq: Vec<&&Probe> = all.iter().skip(conn).step_by(2).collect();
        for w in seq.windows(2) {
            for clock in ["dateNow", "perfNow"] {
                let (a, b) = (w[0].v[clock].as_f64(), w[1].v[clock].as_f64());
                assert!(b >= a, "{clock} went back: {a:?} then {b:?}");
            }
        }
        for p in seq {
            let d = p.v["dateNow"].as_f64().unwrap();
            assert!(
                d >= p.sent_ms - 1000.0 && d <= p.received_ms + 1000.0,
                "Date.now() {d} is not the host's time ({} .. {})",
                p.sent_ms,
                p.received_ms
            );
            let (origin, now) = (
                p.v["timeOrigin"].as_f64().unwrap(),
                p.v["perfNow"].as_f64().unwrap(),
            );
            assert!(
                (origin + now - d).abs() < 1000.0,
                "performance.timeOrigin + performance.now() ({}) is not Date.now() ({d})",
                origin + now
            );
            skew = skew.max((d - p.sent_ms).abs().min((d - p.received_ms).abs()));
        }
    }
    let origins: HashSet<String> = all.iter().map(|p| p.v["timeOrigin"].to_string()).collect();
    eprintln!(
        "clocks: Date.now() within {skew:.1} ms of the host's; performance.timeOrigin {:?} (the snapshot's process start); performance.now() from {:.1} to {:.1} ms",
        origins,
        all[0].v["perfNow"].as_f64().unwrap(),
        all[all.len() - 1].v["perfNow"].as_f64().unwrap()
    );

    // V8's compilation cache: a source compiled twice in one request is a hit (the
    // control); the plants' sources compile as slowly as a fresh one (no hit).
    let field = |ps: &[Probe], f: &str| -> Vec<f64> {
        ps.iter().map(|p| p.v[f].as_f64().unwrap()).collect()
    };
    let ratio = |ps: &[Probe], a: &str| -> f64 {
        let mut r: Vec<f64> = field(ps, a)
            .iter()
            .zip(field(ps, "compileFreshUs"))
            .map(|(x, f)| x / f)
            .collect();
        median(&mut r)
    };
    let (guess, repeat) = (
        ratio(&after, "compileGuessUs"),
        ratio(&after, "compileRepeatUs"),
    );
    eprintln!(
        "compile µs (median): fresh {:.0}, a plant's source {:.0}, fresh again {:.0}; a function the plants made hot, 2,000 calls: {:.0} µs before the plants, {:.0} after",
        median(&mut field(&after, "compileFreshUs")),
        median(&mut field(&after, "compileGuessUs")),
        median(&mut field(&after, "compileRepeatUs")),
        median(&mut field(&before, "hotUs")),
        median(&mut field(&after, "hotUs")),
    );
    assert!(repeat < 0.2, "no cache hit within a request: {repeat:.2}");
    assert!(
        guess > 0.5,
        "a plant's source compiled like a cache hit ({guess:.2} of a fresh compile)"
    );

    // Timers the plants left (or any in the snapshot) cost the probes no exits.
    eprintln!("exits per probe: {exits_before:.2} before the plants, {exits_after:.2} after");
    assert!(
        exits_after <= exits_before * 1.05 + 0.5,
        "probes pay more exits after the plants: {exits_before:.2} -> {exits_after:.2}"
    );
}

/// Randomness is drawn afresh in every request, on both VMs of one snapshot, even when the
/// warm-up before the snapshot drew some (an app that makes a token or an id per request
/// does): Math.random(), crypto.getRandomValues(), crypto.randomUUID() and a key from
/// crypto.subtle.generateKey(). The QuickJS guest re-keys its generators per request.
#[test]
fn randomness_differs_between_requests_on_deno_after_a_warm_up_that_drew_some() {
    let _serial = serial();
    let cfg = HOSTILE_CONFIG.replace(
        r#""idle_timeout": 0,"#,
        r#""idle_timeout": 0, "warmup": { "num_requests": 20, "url": "/probe" },"#,
    );
    assert_ne!(cfg, HOSTILE_CONFIG);
    let (k, port) = serve_deno(&cfg, "deno-random");
    let mut conns = [Conn::new(port), Conn::new(port)];
    assert_eq!(conns[0].get("/h/ok").text(), "ok", "{}", k.log());
    let mut probes = Vec::new();
    probe_batch(port, &mut conns, 10, &["r0", "r1"], &mut probes);
    let mut replayed = Vec::new();
    for field in ["random", "bytes", "uuid", "subtleKey"] {
        let values: Vec<String> = probes.iter().map(|p| p.v[field].to_string()).collect();
        let distinct: HashSet<&String> = values.iter().collect();
        if distinct.len() != values.len() {
            replayed.push(format!(
                "{field}: {} distinct in {} requests, e.g. {}",
                distinct.len(),
                values.len(),
                values[0]
            ));
        }
    }
    assert!(
        replayed.is_empty(),
        "requests replay the snapshot's random generators (V8's Math.random state, deno's \
         thread_rng behind crypto): {replayed:#?}"
    );
}

/// Randomness drawn before any handler runs in a request (a timer pending in the snapshot,
/// overdue in every request) is fresh too: the adapter's pool lasts one task, so none is
/// left in the snapshot to replay.
#[test]
fn randomness_drawn_by_a_timer_pending_in_the_snapshot_differs_between_requests() {
    let _serial = serial();
    let cfg = r#"{ "t": { "engine": "deno", "deno": "$DENO", "concurrency": 1,
        "max_boot_time": 180, "idle_timeout": 0,
        "filename": "$REPO/tests/js/apps/random_timer.js" } }"#;
    let (k, port) = serve_deno(cfg, "deno-random-timer");
    let mut c = Conn::new(port);
    let t = Instant::now();
    let mut early = Vec::new();
    while early.len() < 6 {
        let v = json(&c.get("/t/"));
        if !v["early"].is_null() {
            early.push(v["early"].to_string());
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the timer never fired\n{}",
            k.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let distinct: HashSet<&String> = early.iter().collect();
    assert_eq!(distinct.len(), early.len(), "replayed: {early:#?}");
}

// ---- Limits ----

/// An allocation bomb (past max_request_memory, the memory one request may add) and a
/// request that never answers: a 500 saying out of memory and a 504 saying the time
/// limit, and the next request is fine.
#[test]
fn memory_bomb_and_hang_on_deno_answer_5xx_then_recover() {
    let _serial = serial();
    let cfg = r#"{
        "f": {
            "engine": "deno", "deno": "$DENO", "concurrency": 1, "max_boot_time": 180,
            "max_request_time": 2, "max_request_memory": 64, "idle_timeout": 0,
            "filename": "$REPO/tests/js/apps/failures.js"
        }
    }"#;
    let (k, port) = serve_deno(cfg, "deno-limits");
    let mut c = Conn::new(port);
    assert_eq!(c.get("/f/ok").text(), "ok", "{}", k.log());
    // V8 aborts (int3) when an allocation is refused: kvmjs names it out of memory, as the
    // QuickJS guest does (a 500), not a bare crash.
    for (path, want, says) in [
        ("/f/bomb", 500..501, "out of memory"),
        ("/f/never", 504..505, "max_request_time"),
    ] {
        let t = Instant::now();
        let r = request(port, "GET", path, &[], b"");
        eprintln!(
            "{path} on deno: {} {:?} in {:?}",
            r.status,
            r.text(),
            t.elapsed()
        );
        assert!(
            want.contains(&r.status),
            "{path}: {}\n{}",
            r.status,
            k.log()
        );
        assert!(r.text().contains(says), "{path}: {}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{path}: {:?}",
            t.elapsed()
        );
        assert_eq!(get(port, "/f/ok").text(), "ok", "after {path}\n{}", k.log());
    }
}

// ---- Write timing ----

/// The write-timing covert channel (tests/timing/decode.rs, as on QuickJS) on deno: one
/// VM, so every request of a trial runs on it; the times are taken in the guest with
/// performance.now(), so the HTTP path adds no noise.
#[test]
fn write_timing_carries_no_bits_between_requests_on_deno() {
    let _serial = serial();
    let cfg = r#"{
        "tc": {
            "engine": "deno", "deno": "$DENO", "concurrency": 1, "max_boot_time": 180,
            "max_request_time": 10, "idle_timeout": 0, "prefix": "/",
            "filename": "$REPO/tests/js/apps/timing_channel.js"
        }
    }"#;
    let (k, port) = serve_deno(cfg, "deno-timing");
    let mut c = Conn::new(port);
    let mut get = |url: &str| {
        let r = c.get(url);
        assert_eq!(r.status, 200, "{url}: {}\n{}", r.text(), k.log());
        r.body
    };
    let mut seed = seed(7);
    let (mut failures, mut trials) = (Vec::new(), Vec::new());
    let means =
        timing_decode::channel_trials("deno VM", &mut get, &mut seed, &mut failures, &mut trials);
    let times: Vec<f64> = trials
        .iter()
        .flat_map(|(_, us)| us.iter().copied())
        .collect();
    // The trials mean something only if deno does not coarsen performance.now(): the
    // write times must be spread at sub-µs steps (a clamped clock gives multiples of its
    // step). Rounded to 1 ns, below which the µs differences are float noise.
    let mut sorted: Vec<f64> = times.iter().map(|t| (t * 1e3).round() / 1e3).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let step = sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "deno VM: write times {:.2} µs (min) / {:.2} (median) / {:.2} (max), {} distinct of {}, finest step between them {step:.4} µs; decoders (mean bits of 64): {means:?}",
        sorted[0],
        median(&mut times.clone()),
        sorted[sorted.len() - 1],
        sorted.len(),
        times.len()
    );
    assert!(
        step < 0.5 && sorted.len() > times.len() / 10,
        "performance.now() is too coarse to time a write"
    );
    // In the VM a timed write is mostly the two clock reads (~3 µs), so a fault (~4 µs)
    // would less than triple it and the fault decoder's split would not open: decode
    // again with each trial's fastest time taken off, which leaves the write itself, and
    // split only on a gap a fault would make (2 µs; README: a fault costs ~4 µs on PVM).
    let mut net = 0;
    for (pattern, us) in &trials {
        let min = us.iter().copied().fold(f64::INFINITY, f64::min);
        let off: Vec<f64> = us.iter().map(|t| t - min).collect();
        net += timing_decode::decode_fault_gap(*pattern, &off, 2.0);
    }
    let per = f64::from(net) / trials.len() as f64;
    eprintln!("deno VM: fault decoder on times less the clock's cost: {per:.1}/64 per trial");
    if per > 40.0 {
        failures.push(format!(
            "fault decoder on times less the clock's cost: {per:.1}/64 per trial"
        ));
    }
    assert!(
        failures.is_empty(),
        "a request passed bits to a later one through write timing: {failures:?}"
    );
}

// ---- Non-ephemeral pools ----

/// `"ephemeral": false` on deno, two VMs forked from one snapshot: a VM keeps its state
/// between requests (a count grows), each VM has its own (both counts are the same at
/// every step), and failures leave the pool serving.
#[test]
fn non_ephemeral_deno_pool_keeps_state_per_vm_and_survives_failures() {
    let _serial = serial();
    let cfg = r#"{
        "ne": {
            "engine": "deno", "deno": "$DENO", "concurrency": 2, "max_boot_time": 180,
            "max_request_time": 2, "idle_timeout": 0, "ephemeral": false,
            "filename": "$REPO/tests/js/apps/hostile.js"
        },
        "nf": {
            "engine": "deno", "deno": "$DENO", "concurrency": 2, "max_boot_time": 180,
            "max_request_time": 2, "idle_timeout": 0, "ephemeral": false,
            "filename": "$REPO/tests/js/apps/failures.js"
        }
    }"#;
    let (k, port) = serve_deno(cfg, "deno-nonephemeral");
    let mut conns = [Conn::new(port), Conn::new(port)];
    assert_eq!(conns[0].get("/ne/ok").text(), "ok", "{}", k.log());
    // One plant per VM (held 1 s, so the two run at once: one after the other is ≥ 2 s).
    let (s1, s2) = (
        format!("N1{:016x}", seed(21)),
        format!("N2{:016x}", seed(22)),
    );
    let plant = |secret: String| {
        move |c: &mut Conn| {
            let r = c.get(&format!("/ne/plant?s={secret}&wait=1000"));
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    let t = Instant::now();
    pair(&mut conns, plant(s1.clone()), plant(s2.clone()));
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t.elapsed()
    );
    // Each VM kept its own plant and only that: the count of its plants stays 1 and its
    // timers keep writing (timerWrites grows on each VM).
    let mut seen = HashSet::new();
    let mut writes: [Vec<u64>; 2] = Default::default();
    for _ in 0..6 {
        let (a, b) = pair(
            &mut conns,
            |c| json(&c.get("/ne/probe?guess=x&hold=100")),
            |c| json(&c.get("/ne/probe?guess=x&hold=100")),
        );
        for v in [a, b] {
            let kept = v["kept"].as_str().unwrap_or_default().to_string();
            assert!(
                kept == s1 || kept == s2,
                "a VM kept {kept:?}, not one plant"
            );
            assert_eq!(v["module"].as_str(), Some(kept.as_str()));
            assert_eq!(v["global"].as_str(), Some(kept.as_str()));
            writes[usize::from(kept == s2)].push(v["timerWrites"].as_u64().unwrap());
            seen.insert(kept);
        }
    }
    assert_eq!(seen.len(), 2, "both VMs served and each kept its own plant");
    for w in &writes {
        assert!(
            w.windows(2).all(|p| p[1] >= p[0]) && w.last() > w.first(),
            "timer writes on a kept VM: {w:?}"
        );
    }
    // A count that grows per VM: two at a time, one on each VM, so both read the same.
    for want in 1..=5u64 {
        let count = |c: &mut Conn| c.get("/ne/count?wait=150").text();
        let (a, b) = pair(&mut conns, count, count);
        assert_eq!(
            (a.as_str(), b.as_str()),
            (want.to_string().as_str(), want.to_string().as_str()),
            "the counts of two VMs forked from one snapshot"
        );
    }
    // Failures: an exception, then a CPU loop that times out; the pool serves on.
    assert_eq!(get(port, "/nf/ok").text(), "ok", "{}", k.log());
    let r = get(port, "/nf/throw");
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "Internal Server Error: Error: boom\n")
    );
    let t = Instant::now();
    let r = get(port, "/nf/loop");
    assert_eq!(r.status, 504, "{}\n{}", r.text(), k.log());
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    for _ in 0..4 {
        let (a, b) = pair(
            &mut conns,
            |c| c.get("/nf/sleep").text(),
            |c| c.get("/nf/sleep").text(),
        );
        assert_eq!((a.as_str(), b.as_str()), ("slept", "slept"), "{}", k.log());
    }
}
