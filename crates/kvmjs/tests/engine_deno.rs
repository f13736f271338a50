//! `engine: "deno"` end to end (issue 12): the js/ examples served by `kvmjs serve` with
//! the deno CLI in the VM (js/deno-adapter.js), directly and through varnishd, and the
//! bodies compared byte for byte with native deno serving the same app. Needs /dev/kvm,
//! varnishd, the deno CLI that `.ci/install-deps` installs into .deno/ and the renderer
//! bundle (`js/renderer/build.sh`); without them these tests fail (they never skip).

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn renderer() -> PathBuf {
    let p = repo().join("js/renderer.js");
    assert!(
        p.is_file(),
        "{} is missing: run js/renderer/build.sh (./test does)",
        p.display()
    );
    p
}

/// Native deno serving `app` on a free port: Workers-style apps through the benchmark's
/// peer (bench/peers/deno.js), a Deno.serve app through the adapter kvmjs uses in the VM
/// (natively it only moves the app's server to the port).
fn native(app: &str, deno_serve: bool) -> (Proc, u16) {
    let port = free_port();
    let dir = tmpdir(&format!("native-{}", app.replace('/', "-")));
    let log = dir.join("deno.log");
    let app_path = repo().join(app);
    let mut cmd = Command::new(deno());
    cmd.env_clear()
        .envs([
            ("NO_COLOR", "1"),
            ("DENO_NO_UPDATE_CHECK", "1"),
            ("DENO_NO_PROMPT", "1"),
            ("HOME", "/tmp"),
        ])
        .env("DENO_DIR", dir.join("deno-dir"))
        .current_dir(repo());
    if deno_serve {
        cmd.args([
            "run",
            "--no-config",
            "--allow-read",
            &format!("--allow-net=127.0.0.1:{port}"),
        ])
        .arg(repo().join("js/deno-adapter.js"))
        .arg(&app_path)
        .arg(format!("127.0.0.1:{port}"))
        .arg("");
    } else {
        cmd.args(["run", "--no-config", "--allow-read", "--allow-net"])
            .arg(repo().join("bench/peers/deno.js"))
            .arg(&app_path)
            .arg(port.to_string());
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("cannot start native deno");
    let p = Proc { child, log };
    wait_port(port, "native deno", &p);
    (p, port)
}

/// The examples, each on deno; `$DENO` is the binary.
const DENO_CONFIG: &str = r#"{
    "d": {
        "engine": "deno",
        "deno": "$DENO",
        "concurrency": 1,
        "max_boot_time": 180,
        "max_request_time": 30,
        "idle_timeout": 0
    },
    "hello": { "group": "d", "filename": "$REPO/js/hello.js" },
    "output": { "group": "d", "filename": "$REPO/js/output.js" },
    "renderer": { "group": "d", "filename": "$REPO/js/renderer.js" },
    "echo": { "group": "d", "filename": "$REPO/js/echo.js" },
    "deno": { "group": "d", "filename": "$REPO/js/deno.js" },
    "env": {
        "group": "d",
        "filename": "$REPO/js/env.js",
        "environment": ["GREETING=hello from tinykvm.json"]
    },
    "quick": { "filename": "$REPO/js/hello.js" }
}"#;

fn deno_config() -> String {
    DENO_CONFIG.replace("$DENO", &deno().to_string_lossy())
}

#[test]
fn programs_are_labelled_with_their_engine() {
    // Programs boot on their first request: the labels are there before any VM runs.
    renderer();
    let (k, port) = kvmjs(&deno_config(), "deno-labels", &[]);
    let m = get(port, "/metrics").text();
    for (program, engine) in [("hello", "deno"), ("deno", "deno"), ("quick", "quickjs")] {
        let want = format!("kvmjs_program_info{{program=\"{program}\",engine=\"{engine}\"}} 1");
        assert!(m.contains(&want), "missing {want}:\n{m}\n{}", k.log());
    }
    assert!(
        k.log().contains("engine deno"),
        "the start-up log names each program's engine:\n{}",
        k.log()
    );
}

#[test]
fn a_missing_deno_is_an_error_naming_where_it_was_looked_for() {
    let dir = tmpdir("deno-missing");
    let out = Command::new(env!("CARGO_BIN_EXE_kvmjs"))
        .args(["serve", "--engine", "deno", "--listen", "127.0.0.1:1"])
        .arg(repo().join("js/hello.js"))
        .env("KVMJS_DENO", dir.join("no-deno-here"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no-deno-here (KVMJS_DENO)") && err.contains(".ci/install-deps"),
        "{err}"
    );
    // A bad engine value in tinykvm.json stops start-up with the key and the value.
    let cfg = dir.join("tinykvm.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ "a": {{ "filename": "{}", "engine": "v8" }} }}"#,
            repo().join("js/hello.js").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kvmjs"))
        .args(["serve", "--listen", "127.0.0.1:1", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"key "engine": expected "quickjs" or "deno", got "v8""#),
        "{err}"
    );
}

/// One request to kvmjs (directly and through Varnish) and to native deno; the statuses,
/// content types and bodies must be the same.
fn same_as_native(kport: u16, vport: u16, k: &Proc, program: &str, app: &str, deno_serve: bool) {
    let (_n, nport) = native(app, deno_serve);
    let path = format!("/{program}/x?q=1");
    let hdrs = ["X-Echo: round trip", "Content-Type: text/plain"];
    let mut native = request(nport, "POST", &path, &hdrs, b"the body");
    assert_eq!(native.status, 200, "native {app}: {}", native.text());
    if program == "echo" {
        // Native deno is the client's direct peer and so sees the client's hop-by-hop
        // `Connection: close`; a guest sees the client's end-to-end fields only (as on
        // QuickJS), with no Connection field of the host's own.
        let text = native.text().replacen(r#""connection":"close","#, "", 1);
        assert_ne!(text.len(), native.body.len(), "{text}");
        native.body = text.into_bytes();
    }
    for (via, port) in [("kvmjs", kport), ("varnish", vport)] {
        let r = request(port, "POST", &path, &hdrs, b"the body");
        assert_eq!(
            (r.status, r.header("content-type")),
            (native.status, native.header("content-type")),
            "{app} via {via}: {}\n{}",
            r.text(),
            k.log()
        );
        // Varnish adds its own request headers, which echo reports: drop those three.
        let body = if via == "varnish" && program == "echo" {
            without_varnish_headers(&r.body)
        } else {
            r.body.clone()
        };
        assert!(
            body == native.body,
            "{app} via {via}: {} bytes differ from native deno's {} bytes\nkvmjs: {}\nnative: {}",
            r.body.len(),
            native.body.len(),
            r.text(),
            native.text()
        );
    }
}

/// The echo JSON without the request headers vcl/kvmjs.vcl and varnishd add, each cut out
/// as its exact `,"name":"value"` text (Headers iterate sorted, so the rest keeps its order).
fn without_varnish_headers(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body).into_owned();
    let mut out = text.clone();
    for name in ["x-forwarded-for", "x-kvmjs-program", "x-varnish"] {
        let start = out
            .find(&format!(",\"{name}\":\""))
            .unwrap_or_else(|| panic!("{name} missing in {text}"));
        let value_end = out[start + name.len() + 5..]
            .find('"')
            .expect("a closing quote")
            + start
            + name.len()
            + 5;
        out.replace_range(start..=value_end, "");
    }
    out.into_bytes()
}

#[test]
fn examples_on_deno_match_native_deno_byte_for_byte() {
    renderer();
    let (k, kport) = kvmjs(&deno_config(), "deno-examples", &[]);
    let (_v, vport) = varnish(kport, "deno-varnish");
    for (program, app, deno_serve) in [
        ("hello", "js/hello.js", false),
        ("output", "js/output.js", false),
        ("renderer", "js/renderer.js", false),
        ("echo", "js/echo.js", false),
        ("deno", "js/deno.js", true),
    ] {
        same_as_native(kport, vport, &k, program, app, deno_serve);
    }
    // output and renderer also match the V8 fixtures the QuickJS engine is held to.
    for (program, fixture) in [("output", "output.html"), ("renderer", "renderer.html")] {
        let want = std::fs::read(repo().join("tests/fixtures").join(fixture)).unwrap();
        assert!(
            get(kport, &format!("/{program}/")).body == want,
            "{program}"
        );
    }
    // env: the configured environment is the Workers `env`, nothing of deno's own.
    let r = get(kport, "/env/");
    assert_eq!(
        r.text(),
        r#"{"greeting":"hello from tinykvm.json","keys":["GREETING"]}"#,
        "{}",
        k.log()
    );
    // Per-request isolation and counters: the same answer again, exits counted.
    assert_eq!(get(kport, "/hello/").text(), "Hello, World!\n");
    assert!(metric(kport, "kvmjs_vm_exits_total{program=\"hello\"}") > 0.0);
}

#[test]
fn cli_engine_flag_serves_one_app_on_deno() {
    let port = free_port();
    let dir = tmpdir("deno-cli");
    let log = dir.join("kvmjs.log");
    let child = Command::new(env!("CARGO_BIN_EXE_kvmjs"))
        .args([
            "serve",
            "--engine",
            "deno",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg(repo().join("js/deno.js"))
        .env("KVMJS_DENO", deno())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let k = Proc { child, log };
    wait_port(port, "kvmjs serve --engine deno", &k);
    let r = get(port, "/any/path");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from Deno.serve: /any/path\n"),
        "{}",
        k.log()
    );
}

#[test]
fn failures_on_deno_answer_as_on_quickjs() {
    let cfg = r#"{
        "apps": {
            "engine": "deno", "deno": "$DENO", "concurrency": 1, "max_boot_time": 180,
            "max_request_time": 2, "filename": "$REPO/tests/js/apps/failures.js"
        },
        "qapps": {
            "concurrency": 1, "max_request_time": 2,
            "filename": "$REPO/tests/js/apps/failures.js",
            "main_arguments": ["--cpu-limit-ms", "60000"]
        }
    }"#
    .replace("$DENO", &deno().to_string_lossy());
    let (k, port) = kvmjs(&cfg, "deno-failures", &[]);
    // Exceptions and wrong return values: the same one-line 500 on both engines.
    for case in ["throw", "not-a-response", "timer", "framing", "ok"] {
        let d = get(port, &format!("/apps/{case}"));
        let q = get(port, &format!("/qapps/{case}"));
        assert_eq!(
            (d.status, d.text(), d.header("content-length")),
            (q.status, q.text(), q.header("content-length")),
            "{case}\n{}",
            k.log()
        );
    }
    // A CPU loop ends with 504 within max_request_time, and the VM serves on.
    let t = std::time::Instant::now();
    let r = get(port, "/apps/loop");
    assert_eq!(r.status, 504, "{}\n{}", r.text(), k.log());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(get(port, "/apps/ok").text(), "ok", "{}", k.log());
    // Randomness is not replayed from the snapshot.
    let (a, b) = (
        get(port, "/apps/random").text(),
        get(port, "/apps/random").text(),
    );
    assert!(a.starts_with("{\"r\":") && a != b, "{a} / {b}");
}

#[test]
fn a_linux_server_program_with_listen_is_served() {
    // The deno CLI as a plain Linux program (no engine shorthand, no adapter): it runs
    // js/deno.js, whose Deno.serve() listens on deno's default 0.0.0.0:8000.
    let cfg = r#"{
        "srv": {
            "filename": "$DENO",
            "listen": "0.0.0.0:8000",
            "main_arguments": ["run", "--no-config", "--allow-net", "$REPO/js/deno.js"],
            "environment": ["HOME=/tmp", "NO_COLOR=1", "DENO_NO_UPDATE_CHECK=1"],
            "allowed_paths": ["/lib", "/lib64", "/usr/lib", "/etc/ld.so.cache", "$REPO/js"],
            "address_space": 4096, "max_memory": 2048, "max_boot_time": 180,
            "concurrency": 1
        }
    }"#
    .replace("$DENO", &deno().to_string_lossy());
    let (k, port) = kvmjs(&cfg, "deno-server", &[]);
    let r = get(port, "/srv/a");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from Deno.serve: /srv/a\n"),
        "{}",
        k.log()
    );
    let m = get(port, "/metrics").text();
    assert!(
        m.contains("kvmjs_program_info{program=\"srv\",engine=\"server\"} 1"),
        "{m}"
    );
}

/// Waits up to `limit` for `text` in the log of `k`; how long it took.
fn log_shows(k: &Proc, text: &str, limit: std::time::Duration) -> Option<std::time::Duration> {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if k.log().contains(text) {
            return Some(t.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// Workers `ctx.waitUntil` on deno: the client has the response before the work runs,
/// the work runs after it on the VM, work that never ends is cut at max_background_time
/// (then the VM is reset), and the host's background field never reaches the client.
#[test]
fn wait_until_work_runs_after_the_response_on_deno() {
    use std::time::{Duration, Instant};
    let cfg = r#"{
        "apps": {
            "engine": "deno", "deno": "$DENO", "concurrency": 1, "max_boot_time": 180,
            "max_request_time": 5, "max_background_time": 2.5,
            "filename": "$REPO/tests/js/apps/failures.js"
        }
    }"#
    .replace("$DENO", &deno().to_string_lossy());
    let (k, port) = kvmjs(&cfg, "deno-wait-until", &[]);
    assert_eq!(get(port, "/apps/ok").text(), "ok", "{}", k.log());
    // The response is made before the work's 10 ms timer fires, which then logs.
    let r = get(port, "/apps/wait-until");
    assert_eq!(r.text(), "done before respond: false", "{}", k.log());
    assert_eq!(r.header("kvmjs-background"), None, "{}", r.head);
    assert!(
        log_shows(&k, "waitUntil finished", Duration::from_secs(3)).is_some(),
        "{}",
        k.log()
    );
    // 1.5 s of work: the client has the answer at once, the log line comes 1.5 s later.
    let t = Instant::now();
    let r = get(port, "/apps/wait-until-slow?ms=1500");
    let responded = t.elapsed();
    assert_eq!(r.text(), "responded first", "{}", k.log());
    assert_eq!(r.header("kvmjs-background"), None, "{}", r.head);
    assert!(
        responded < Duration::from_millis(500),
        "the response waited for the background work: {responded:?}"
    );
    assert!(!k.log().contains("background work done"), "{}", k.log());
    let logged = log_shows(&k, "background work done", Duration::from_secs(5))
        .map(|d| d + responded)
        .unwrap_or_else(|| panic!("the background work never finished:\n{}", k.log()));
    assert!(logged >= Duration::from_millis(1500), "{logged:?}");
    eprintln!("wait-until-slow?ms=1500: response after {responded:?}, work done after {logged:?}");
    assert_eq!(get(port, "/apps/ok").text(), "ok", "{}", k.log());
    assert_eq!(
        metric(port, "kvmjs_background_seconds_count{program=\"apps\"}"),
        2.0
    );
    // Work that never ends: the answer is immediate, the VM is taken for
    // max_background_time (2.5 s; the next request waits for it on concurrency 1), the
    // cut is counted, and the VM serves on from its snapshot.
    let t = Instant::now();
    let r = get(port, "/apps/wait-until-slow");
    assert_eq!(r.text(), "responded first", "{}", k.log());
    let responded = t.elapsed();
    assert!(responded < Duration::from_millis(500), "{responded:?}");
    assert_eq!(get(port, "/apps/ok").text(), "ok", "{}", k.log());
    let next = t.elapsed();
    assert!(
        (Duration::from_millis(2400)..Duration::from_millis(4500)).contains(&next),
        "{next:?}"
    );
    eprintln!(
        "wait-until-slow (never ends): response after {responded:?}, next request after {next:?}"
    );
    assert_eq!(
        metric(
            port,
            "kvmjs_errors_total{program=\"apps\",kind=\"background_timeout\"}"
        ),
        1.0,
        "{}",
        k.log()
    );
    assert!(!get(port, "/apps/ok").head.contains("kvmjs-"));
    // A waitUntil promise whose own `then` throws settles as a rejection (logged): its
    // background ends at once instead of running to max_background_time.
    let t = Instant::now();
    assert_eq!(get(port, "/apps/wait-until-bad-then").text(), "bad then");
    assert_eq!(get(port, "/apps/ok").text(), "ok", "{}", k.log());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(
        log_shows(&k, "hostile then", Duration::from_secs(3)).is_some(),
        "{}",
        k.log()
    );
}
