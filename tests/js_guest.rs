//! The JS guest (root package) served through the kvmjs host on real /dev/kvm.

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
