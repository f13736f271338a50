//! The JS guest (root package) served through the kvmjs host on real /dev/kvm.

#[path = "timing/decode.rs"]
mod timing_decode;

use kvmjs_vm::{AllowedPath, Request, RequestError, Response, Vm, VmConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn wpt_dir() -> PathBuf {
    repo().join("../shared/conformance/wpt-url/url")
}

fn config(app: &Path, args: &[&str]) -> VmConfig {
    let mut main_arguments = vec![app.to_string_lossy().into_owned()];
    main_arguments.extend(args.iter().map(|s| s.to_string()));
    let mut allowed = vec![
        AllowedPath::same(repo().join("js")),
        AllowedPath::same(repo().join("tests/js")),
    ];
    if let Ok(w) = wpt_dir().canonicalize() {
        allowed.push(AllowedPath::same(w));
    }
    VmConfig {
        name: app.file_name().unwrap().to_string_lossy().into_owned(),
        address_space: 512 << 20,
        max_memory: 384 << 20,
        max_request_time: Duration::from_secs(10),
        main_arguments,
        allowed_paths: allowed,
        ..Default::default()
    }
}

fn boot_cfg(cfg: VmConfig) -> Vm {
    let elf = std::fs::read(env!("CARGO_BIN_EXE_kvmjs-guest")).unwrap();
    Vm::boot(Arc::new(cfg), &elf).unwrap_or_else(|e| panic!("boot failed: {e}"))
}

fn boot(app: &str, args: &[&str]) -> Vm {
    boot_cfg(config(&repo().join(app), args))
}

fn get(vm: &mut Vm, url: &str) -> Response {
    let req = Request {
        headers: vec!["Host: example.com".into()],
        ..Request::get(url)
    };
    vm.handle(&req).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
}

#[test]
fn hello_example() {
    let mut vm = boot("js/hello.js", &[]);
    let r = get(&mut vm, "/");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"Hello, World!\n"[..])
    );
    assert_eq!(r.content_type, b"text/plain;charset=UTF-8");
    assert_eq!(vm.last_stats().exits, 1, "hello costs one exit");
}

#[test]
fn output_and_renderer_match_v8_byte_for_byte() {
    for (app, fixture) in [
        ("js/output.js", "output.html"),
        ("js/renderer.js", "renderer.html"),
    ] {
        let want = std::fs::read(repo().join("tests/fixtures").join(fixture)).unwrap();
        let mut vm = boot(app, &["--warmup", "3"]);
        for _ in 0..3 {
            let r = get(&mut vm, "/");
            assert_eq!(r.status, 200, "{app}");
            assert_eq!(r.content_type, b"text/html;charset=UTF-8", "{app}");
            assert!(
                r.body == want,
                "{app}: {} bytes differ from the V8 rendering ({} bytes)",
                r.body.len(),
                want.len()
            );
        }
    }
}

#[test]
fn echo_deno_and_env_examples() {
    let mut vm = boot("js/echo.js", &[]);
    let req = Request {
        method: "POST".into(),
        url: "/path?q=1".into(),
        headers: vec![
            "Host: example.com".into(),
            "X-Echo: hi there".into(),
            "Content-Type: text/plain".into(),
        ],
        content_type: "text/plain".into(),
        body: b"posted body".to_vec(),
        ..Default::default()
    };
    let r = vm.handle(&req).unwrap();
    let t = text(&r);
    assert_eq!(r.status, 200);
    assert!(
        t.contains(r#""method":"POST""#) && t.contains(r#""url":"http://example.com/path?q=1""#),
        "{t}"
    );
    assert!(
        t.contains(r#""body":"posted body""#) && t.contains(r#""x-echo":"hi there""#),
        "{t}"
    );
    assert_eq!(header(&r, "x-echo").as_deref(), Some("hi there"));

    let mut vm = boot("js/deno.js", &[]);
    assert_eq!(text(&get(&mut vm, "/a/b")), "Hello from Deno.serve: /a/b\n");

    let mut cfg = config(&repo().join("js/env.js"), &[]);
    cfg.environment = vec!["GREETING=hej".into(), "OTHER=1".into()];
    let mut vm = boot_cfg(cfg);
    assert_eq!(
        text(&get(&mut vm, "/")),
        r#"{"greeting":"hej","keys":["GREETING","OTHER"]}"#
    );
}

/// The leak test: 100,000 requests, each carrying a random secret that the handler keeps
/// in module state, a Map and a global; no response may contain any other request's secret.
#[test]
fn hundred_thousand_secrets_never_leak() {
    let mut vm = boot("tests/js/apps/isolation.js", &["--warmup", "0"]);
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut leaked = 0;
    for i in 0..100_000u32 {
        // xorshift64: a fresh secret per request, different in every run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let secret = format!("{x:016x}");
        let req = Request {
            method: "POST".into(),
            body: secret.clone().into_bytes(),
            ..Request::get(&format!("/?id={i}"))
        };
        let t = text(&vm.handle(&req).unwrap());
        let want = format!(
            r#"{{"count":1,"previous":null,"stored":1,"seen":[{{"id":"{i}","secret":"{secret}"}}]}}"#
        );
        if t != want {
            leaked += 1;
            eprintln!("request {i}: {t}");
        }
    }
    assert_eq!(leaked, 0, "responses that saw another request's state");
}

#[test]
fn failures_are_documented_errors_and_the_next_request_works() {
    let app = repo().join("tests/js/apps/failures.js");
    let mut cfg = config(
        &app,
        &[
            "--cpu-limit-ms",
            "300",
            "--memory-limit",
            "48",
            "--warmup",
            "1",
        ],
    );
    cfg.max_request_time = Duration::from_millis(1500);
    let mut vm = boot_cfg(cfg);
    let expect = |vm: &mut Vm, url: &str, status: u16, body: &str| {
        let r = get(vm, url);
        assert_eq!(r.status, status, "{url}: {}", text(&r));
        assert!(text(&r).starts_with(body), "{url}: {}", text(&r));
        let ok = get(vm, "/ok");
        assert_eq!(text(&ok), "ok", "after {url}");
    };
    expect(&mut vm, "/throw", 500, "Internal Server Error: Error: boom");
    expect(
        &mut vm,
        "/not-a-response",
        500,
        "Internal Server Error: TypeError: the handler returned",
    );
    let t = Instant::now();
    expect(&mut vm, "/loop", 503, "CPU time limit exceeded");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the CPU limit, not the host timer, ended it"
    );
    expect(&mut vm, "/bomb", 500, "out of memory");
    expect(&mut vm, "/timer", 200, "timer fired");
    expect(&mut vm, "/wait-until", 200, "done before respond: false");

    let t = Instant::now();
    let err = vm.handle(&Request::get("/never")).unwrap_err();
    assert!(matches!(err, RequestError::Timeout(_)), "{err}");
    assert!(
        t.elapsed() >= Duration::from_millis(1500) && t.elapsed() < Duration::from_millis(2500)
    );
    assert_eq!(text(&get(&mut vm, "/ok")), "ok");
}

#[test]
fn randomness_differs_between_requests_from_one_snapshot() {
    let mut vm = boot("tests/js/apps/failures.js", &[]);
    let a = text(&get(&mut vm, "/random"));
    let b = text(&get(&mut vm, "/random"));
    assert_ne!(
        a, b,
        "Math.random and randomUUID must be re-keyed per request"
    );
}

#[test]
fn lazily_evaluated_prelude_groups_load_however_first_reached() {
    let mut vm = boot("tests/js/apps/failures.js", &[]);
    let intl = "object|1,234.5|Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)|-1";
    // Each request starts from the snapshot, where neither group is loaded yet.
    assert_eq!(text(&get(&mut vm, "/lazy-intl-global")), intl);
    assert_eq!(text(&get(&mut vm, "/lazy-date-method")), intl);
    assert_eq!(text(&get(&mut vm, "/lazy-intl-global")), intl);
    assert_eq!(
        text(&get(&mut vm, "/lazy-crypto-global")),
        "function|true|[object SubtleCrypto]"
    );
    assert_eq!(
        text(&get(&mut vm, "/lazy-crypto-subtle")),
        "function|function|function"
    );
    assert_eq!(text(&get(&mut vm, "/lazy-app-method")), "42|object|42");
    assert_eq!(
        text(&get(&mut vm, "/lazy-no-leak")),
        "object|object|undefined"
    );
}

#[test]
fn warm_up_performance_marks_stay_out_of_the_snapshot() {
    let mut vm = boot("tests/js/apps/failures.js", &[]);
    assert_eq!(text(&get(&mut vm, "/perf-count")), "1");
    assert_eq!(text(&get(&mut vm, "/perf-count")), "1");
}

#[test]
fn generated_crypto_keys_differ_between_requests_from_one_snapshot() {
    let mut vm = boot("tests/js/apps/failures.js", &[]);
    let a = text(&get(&mut vm, "/random-key"));
    let b = text(&get(&mut vm, "/random-key"));
    assert_eq!(a.len(), 96, "{a}");
    assert_ne!(
        a, b,
        "crypto.subtle keys must come from the per-request generator"
    );
}

#[test]
fn boot_errors_show_the_guest_message() {
    let elf = std::fs::read(env!("CARGO_BIN_EXE_kvmjs-guest")).unwrap();
    let dir = std::env::temp_dir().join(format!("kvmjs-boot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("syntax.js"), "export default { fetch( {\n").unwrap();
    std::fs::write(dir.join("nohandler.js"), "export const x = 1;\n").unwrap();
    std::fs::write(
        dir.join("bare.js"),
        "import React from 'react';\nexport default { fetch() {} };\n",
    )
    .unwrap();
    let cases = [
        ("syntax.js", "SyntaxError"),
        ("nohandler.js", "registers no handler"),
        ("bare.js", "bare module specifiers are not supported"),
        ("missing.js", "cannot read the app"),
    ];
    for (file, want) in cases {
        let mut cfg = config(&dir.join(file), &[]);
        cfg.allowed_paths.push(AllowedPath::same(&dir));
        let e = Vm::boot(Arc::new(cfg), &elf)
            .err()
            .expect("boot must fail")
            .to_string();
        assert!(e.contains(want), "{file}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn web_api_tests_pass_inside_the_guest() {
    let mut vm = boot("tests/js/run_webapi.js", &["--warmup", "0"]);
    let r = get(&mut vm, "/");
    assert_eq!(r.status, 200, "{}", text(&r));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let (passed, failed) = (v["passed"].as_u64().unwrap(), v["failed"].as_u64().unwrap());
    eprintln!("web API tests inside the guest: {passed} passed, {failed} failed");
    assert_eq!(failed, 0, "failures inside QuickJS: {:#}", v["failures"]);
    assert!(passed >= 100);
}

/// Every failing WPT URL case must be listed, with its reason, in
/// tests/wpt-url-expected-failures.txt; a listed case that passes is an error too.
#[test]
fn wpt_url_pass_rate() {
    let dir = wpt_dir()
        .canonicalize()
        .expect("shared/conformance/wpt-url is next to the repository");
    let mut cfg = config(&repo().join("tests/js/apps/wpt_url.js"), &["--warmup", "0"]);
    cfg.environment = vec![format!("WPT_URL_DIR={}", dir.display())];
    let mut vm = boot_cfg(cfg);
    let r = get(&mut vm, "/");
    assert_eq!(r.status, 200, "{}", text(&r));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let listed =
        std::fs::read_to_string(repo().join("tests/wpt-url-expected-failures.txt")).unwrap();
    let known: std::collections::BTreeSet<&str> = listed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    let (mut passed, mut failed) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    let mut unexpected = Vec::new();
    for (suite, res) in v.as_object().unwrap() {
        let (p, f) = (
            res["passed"].as_u64().unwrap(),
            res["failed"].as_u64().unwrap(),
        );
        eprintln!("WPT URL {suite}: {p} passed, {f} failed");
        passed += p;
        failed += f;
        for fail in res["failures"].as_array().unwrap() {
            let fail = fail.as_str().unwrap();
            let key = format!("{suite} | {}", fail.split(" => ").next().unwrap());
            if !known.contains(key.as_str()) {
                unexpected.push(format!("{key}\t{fail}"));
            }
            seen.insert(key);
        }
    }
    eprintln!(
        "WPT URL total: {passed} passed, {failed} failed ({:.1}% pass)",
        100.0 * passed as f64 / (passed + failed) as f64
    );
    assert!(
        unexpected.is_empty(),
        "{} failures not listed in tests/wpt-url-expected-failures.txt:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    let stale: Vec<_> = known.iter().filter(|k| !seen.contains(**k)).collect();
    assert!(
        stale.is_empty(),
        "listed as failing but passing now: {stale:?}"
    );
}

/// The write-timing covert channel: a request marks pages by writing them, a later
/// request on the same VM times its own writes to the same pages. With the adaptive reset
/// as it was (a page a request wrote stayed writable for 8 resets) both decoders
/// recovered 57-64 of 64 bits. Now whether a write faults does not depend on earlier
/// requests: the fault decoder gets chance. The median decoder also sees a residual
/// ~0.1-0.2 µs cache-recency effect in the host kernel's fault path (README, "What a
/// request can learn about earlier ones"); it is bounded loosely. Run on the boot VM and
/// on a fork, for pages that hold data in the snapshot and for pages that do not.
#[test]
fn write_timing_carries_no_bits_between_requests() {
    let mut boot_vm = boot("tests/js/apps/timing_channel.js", &[]);
    let mut fork = Vm::from_snapshot(boot_vm.snapshot().unwrap()).unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut failures = Vec::new();
    for (name, vm) in [("boot VM", &mut boot_vm), ("fork", &mut fork)] {
        timing_decode::channel_trials(
            name,
            &mut |url| get(vm, url).body,
            &mut seed,
            &mut failures,
            &mut Vec::new(),
        );
    }
    assert!(
        failures.is_empty(),
        "a request passed bits to a later one through write timing: {failures:?}"
    );
}

// ---- Thrown values, out-of-memory classification and module file types ----

/// A secret-looking value in the fixtures under tests/js/apps/imports.
const FAKE_SECRET: &str = "KVMJS_FAKE_SECRET_7f3a9c2e";

fn thrown_vm() -> Vm {
    let app = repo().join("tests/js/apps/thrown.js");
    let mut cfg = config(&app, &["--memory-limit", "16", "--warmup", "1"]);
    cfg.max_request_time = Duration::from_secs(5);
    boot_cfg(cfg)
}

#[test]
fn thrown_non_errors_answer_500_saying_what_was_thrown() {
    let mut vm = thrown_vm();
    for (path, want) in [
        ("/null", "Internal Server Error: Uncaught null\n"),
        ("/undefined", "Internal Server Error: Uncaught undefined\n"),
        ("/number", "Internal Server Error: Uncaught 42\n"),
        ("/string", "Internal Server Error: Uncaught str\n"),
        (
            "/object",
            "Internal Server Error: Uncaught [object Object]\n",
        ),
        (
            "/bare-object",
            "Internal Server Error: Uncaught [object Object]\n",
        ),
        ("/multiline", "Internal Server Error: Uncaught first line\n"),
        ("/error", "Internal Server Error: Error: boom\n"),
    ] {
        let r = get(&mut vm, path);
        assert_eq!((r.status, text(&r).as_str()), (500, want), "{path}");
        assert_eq!(text(&get(&mut vm, "/ok")), "ok", "after {path}");
    }
    // `throw null` in a job of its own is the app's error, not the engine's.
    let r = get(&mut vm, "/job-throws-null");
    assert_eq!((r.status, text(&r).as_str()), (200, "after the job"));
}

/// QuickJS throws `null` when the heap is too full to build the "out of memory" error:
/// wherever that happens (handler, promise reaction, timer, microtask, a job of its own)
/// the answer is the documented 500 "out of memory", and the next request works.
#[test]
fn out_of_memory_is_reported_wherever_it_happens() {
    let mut vm = thrown_vm();
    for path in [
        "/small-oom",
        "/global-oom",
        "/reaction-oom",
        "/timer-oom",
        "/microtask-oom",
        "/job-oom",
    ] {
        let r = get(&mut vm, path);
        assert_eq!(
            (r.status, text(&r).as_str()),
            (500, "out of memory\n"),
            "{path}"
        );
        assert_eq!(text(&get(&mut vm, "/ok")), "ok", "after {path}");
    }
}

/// Outside a VM the guest logs to stderr, so the log line itself can be checked.
#[test]
fn out_of_memory_in_a_promise_job_logs_out_of_memory() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    /// Ends the guest process even when an assertion fails first.
    struct Guest(std::process::Child);
    impl Drop for Guest {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Guest(
        Command::new(env!("CARGO_BIN_EXE_kvmjs-guest"))
            .arg(repo().join("tests/js/apps/thrown.js"))
            .args(["--serve", &addr, "--memory-limit", "16"])
            .args(["--warmup", "0", "--cpu-limit-ms", "5000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("serving on"), "{line}");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /job-oom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    drop(child);
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(
        log.contains("out of memory in a promise job"),
        "log says: {log}"
    );
    assert!(
        !log.contains("Null") && !log.contains("uncaught value"),
        "log says: {log}"
    );
    assert!(response.ends_with("\r\n\r\nout of memory\n"), "{response}");
}

fn boot_error(app: &str) -> String {
    let elf = std::fs::read(env!("CARGO_BIN_EXE_kvmjs-guest")).unwrap();
    let cfg = config(&repo().join(app), &[]);
    match Vm::boot(Arc::new(cfg), &elf) {
        Ok(_) => panic!("{app} booted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn only_js_mjs_and_json_files_can_be_imported() {
    let dir = repo().join("tests/js/apps/imports");
    for (app, specifier) in [
        ("env.js", "./.env"),
        ("txt.js", "./data.txt"),
        ("noext.js", "./noext"),
    ] {
        let e = boot_error(&format!("tests/js/apps/imports/{app}"));
        assert!(
            e.contains(specifier) && e.contains(".js, .mjs and .json"),
            "{app}: {e}"
        );
        assert!(!e.contains(FAKE_SECRET), "{app} shows the file: {e}");
        assert!(
            !e.contains(&*dir.to_string_lossy()),
            "{app} shows the host path: {e}"
        );
    }
    let mut vm = boot("tests/js/apps/imports/ok.js", &[]);
    // JSON is parsed as JSON: "__proto__" is an own key, not the object's prototype.
    assert_eq!(
        text(&get(&mut vm, "/")),
        r#"hello from lib.mjs 42 answer,__proto__,list undefined [1,"two",null]"#
    );
    assert_eq!(text(&get(&mut vm, "/dynamic-json")), "true");
    let r = get(&mut vm, "/dynamic-env");
    let t = text(&r);
    assert_eq!(r.status, 500, "{t}");
    assert!(
        t.contains("./.env") && t.contains(".js, .mjs and .json"),
        "{t}"
    );
    assert!(!t.contains(FAKE_SECRET), "{t}");
}

#[test]
fn module_syntax_errors_name_the_place_not_the_source() {
    let dir = repo().join("tests/js/apps/imports");
    for (app, place) in [("syntax.js", "broken.js:3"), ("badjson.js", "bad.json:2")] {
        let e = boot_error(&format!("tests/js/apps/imports/{app}"));
        assert!(e.contains("SyntaxError") && e.contains(place), "{app}: {e}");
        assert!(!e.contains(FAKE_SECRET), "{app} shows the source: {e}");
        assert!(
            !e.contains(&*dir.to_string_lossy()),
            "{app} shows the host path: {e}"
        );
    }
}

/// Workers semantics for `ctx.waitUntil`: the response leaves the VM at once; the work runs
/// after it (bounded by max_background_time), then the VM resets.
#[test]
fn wait_until_work_runs_after_the_response() {
    let mut cfg = config(&repo().join("tests/js/apps/failures.js"), &[]);
    cfg.max_background_time = Duration::from_millis(2500);
    let mut vm = boot_cfg(cfg);
    for ms in [0u64, 300, 1500] {
        let t = Instant::now();
        let r = get(&mut vm, &format!("/wait-until-slow?ms={ms}"));
        let responded = t.elapsed();
        assert_eq!(text(&r), "responded first");
        // The response time does not depend on the background work.
        assert!(
            responded < Duration::from_millis(250),
            "{ms} ms of waitUntil work held the response for {responded:?}"
        );
        let bg = vm.finish_background().expect("background work was pending");
        assert!(bg.result.is_ok(), "{:?}", bg.result);
        assert!(
            bg.duration >= Duration::from_millis(ms),
            "{ms} ms of work ended after {:?}",
            bg.duration
        );
    }
    // No waitUntil: nothing is left for the background.
    assert_eq!(text(&get(&mut vm, "/ok")), "ok");
    assert!(vm.finish_background().is_none());
    // Work that never ends is cut at max_background_time; the VM serves on.
    let r = get(&mut vm, "/wait-until-slow");
    assert_eq!(text(&r), "responded first");
    let t = Instant::now();
    let bg = vm.finish_background().expect("pending");
    assert!(
        matches!(bg.result, Err(RequestError::Timeout(_))),
        "{:?}",
        bg.result
    );
    assert!(t.elapsed() < Duration::from_millis(3500));
    assert_eq!(text(&get(&mut vm, "/ok")), "ok");
}
