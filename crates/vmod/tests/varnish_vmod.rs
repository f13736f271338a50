//! The VMOD in a real varnishd (Debian's 7.1): the .vtc files of vcl/tests under
//! varnishtest, and the production VCL (vcl/kvmjs-vmod.vcl) answering byte for byte as
//! `kvmjs serve` does. Needs varnishd, libvarnishapi-dev and curl (.ci/install-deps),
//! and the workspace's debug binaries (`cargo test --workspace` builds them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// target/<triple>/<profile>: where cargo put this test's dependencies.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvmjs-vmod-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// This build's static library of the VMOD. `cargo test` leaves it in deps/ under a
/// hashed name (only `cargo build` copies it up): the newest one is the one cargo just
/// built or checked for this test (older ones are from earlier sources or settings).
fn static_lib() -> PathBuf {
    let deps = profile_dir().join("deps");
    std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?;
            (name.starts_with("libkvmjs_vmod-") && name.ends_with(".a"))
                .then(|| Some((p.metadata().ok()?.modified().ok()?, p.clone())))?
        })
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no libkvmjs_vmod-*.a in {}", deps.display()))
}

/// libvmod_kvmjs.so, linked once per test process from this build's static library.
fn vmod() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let so = tmpdir("so").join("libvmod_kvmjs.so");
        let out = Command::new(repo().join("crates/vmod/link.sh"))
            .arg(static_lib())
            .arg(&so)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "link.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        so
    })
}

const CONFIG: &str = r#"{
    "base": { "concurrency": 2, "max_request_time": 5, "max_request_body": 1 },
    "hello": { "group": "base", "filename": "$REPO/js/hello.js" },
    "echo": { "group": "base", "filename": "$REPO/js/echo.js" },
    "renderer": { "group": "base", "filename": "$REPO/js/renderer.js", "max_request_time": 20 },
    "stream": { "group": "base", "filename": "$REPO/tests/js/apps/stream_app.js" },
    "apps": {
        "group": "base",
        "filename": "$REPO/tests/js/apps/failures.js",
        "main_arguments": ["--cpu-limit-ms", "60000"],
        "max_request_time": 1
    }
}"#;

fn config(tag: &str) -> PathBuf {
    let f = tmpdir(tag).join("tinykvm.json");
    std::fs::write(&f, CONFIG.replace("$REPO", &repo().to_string_lossy())).unwrap();
    f
}

fn varnishd() -> &'static str {
    ["/usr/sbin/varnishd", "/usr/bin/varnishd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("varnishd is not installed: apt-get install varnish (.ci/install-deps does)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

fn wait_port(port: u16, p: &mut Proc) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("exited ({status}) before listening:\n{}", p.log());
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// varnishd's vmod_path parameter: the VMOD's directory, then Varnish's own (std).
fn vmod_path() -> String {
    format!(
        "vmod_path={}:/usr/lib/x86_64-linux-gnu/varnish/vmods",
        vmod().parent().unwrap().display()
    )
}

/// varnishd with `vcl` (the VMOD imported from vmod_path), serving `config`.
fn varnish_vmod(vcl: &str, config: &Path, tag: &str) -> (Proc, u16) {
    let dir = tmpdir(tag);
    let vcl_path = dir.join("kvmjs-vmod.vcl");
    std::fs::write(&vcl_path, vcl).unwrap();
    let port = free_port();
    let log = dir.join("varnish.log");
    let mut cmd = Command::new(varnishd());
    cmd.args(["-F", "-j", "none", "-a", &format!("127.0.0.1:{port}")])
        .args(["-T", &format!("127.0.0.1:{}", free_port())])
        .args(["-p", &vmod_path()])
        .arg("-n")
        .arg(dir.join("work"))
        .arg("-f")
        .arg(&vcl_path)
        .args(["-s", "malloc,32m"])
        .env("KVMJS_CONFIG", config)
        .env("KVMJS_GUEST", built("kvmjs-guest"));
    (listening(cmd, log, port), port)
}

/// Starts `cmd` with its stderr in `log` and waits until it listens on `port`.
fn listening(mut cmd: Command, log: PathBuf, port: u16) -> Proc {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut p = Proc { child, log };
    wait_port(port, &mut p);
    p
}

fn kvmjs_serve(config: &Path, tag: &str) -> (Proc, u16) {
    let port = free_port();
    let log = tmpdir(tag).join("kvmjs.log");
    let mut cmd = Command::new(built("kvmjs"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--guest")
        .arg(built("kvmjs-guest"));
    (listening(cmd, log, port), port)
}

/// One request with curl: (status, body, seconds to the first byte, seconds in all).
fn curl(port: u16, path: &str, args: &[&str]) -> (u16, Vec<u8>, f64, f64) {
    let out: Output = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "60",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{time_starttransfer} %{time_total}",
        ])
        .args(["-H", "Host: localhost"])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl is needed (.ci/install-deps installs it)");
    let all = out.stdout;
    let nl = all.iter().rposition(|&b| b == b'\n').unwrap();
    let tail = String::from_utf8_lossy(&all[nl + 1..]).into_owned();
    let mut w = tail.split_whitespace();
    let status = w.next().unwrap().parse().unwrap();
    let first = w.next().unwrap().parse().unwrap();
    let total = w.next().unwrap().parse().unwrap();
    (status, all[..nl].to_vec(), first, total)
}

#[test]
fn varnishtest_files_pass() {
    let config = config("vtc");
    let mut vtcs: Vec<PathBuf> = std::fs::read_dir(repo().join("vcl/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "vtc"))
        .collect();
    vtcs.sort();
    assert!(vtcs.len() >= 2, "vcl/tests has {} .vtc files", vtcs.len());
    let out = Command::new("varnishtest")
        .args(["-t", "120"])
        .arg(format!("-Dvmod={}", vmod().display()))
        .arg(format!("-Dconfig={}", config.display()))
        .arg(format!("-Dguest={}", built("kvmjs-guest").display()))
        .args(&vtcs)
        .output()
        .expect("varnishtest is part of the varnish package (.ci/install-deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "varnishtest failed:\n{text}");
    for v in &vtcs {
        assert!(
            text.contains(&format!("{} passed", v.display())),
            "{} did not pass:\n{text}",
            v.display()
        );
    }
}

/// The production VCL, with X-Varnish (a per-request id) kept from the programs so that
/// echo's body is comparable.
fn production_vcl() -> String {
    let vcl = std::fs::read_to_string(repo().join("vcl/kvmjs-vmod.vcl")).unwrap();
    let anchor = "    unset bereq.http.X-KVMJS-Name;\n";
    assert!(
        vcl.contains(anchor),
        "vcl/kvmjs-vmod.vcl changed: update this test"
    );
    vcl.replace(
        anchor,
        &format!("{anchor}    unset bereq.http.X-Varnish;\n"),
    )
}

#[test]
fn the_vmod_answers_byte_for_byte_as_kvmjs_serve() {
    let config = config("same");
    let (_k, kport) = kvmjs_serve(&config, "same-kvmjs");
    let (v, vport) = varnish_vmod(&production_vcl(), &config, "same-varnish");
    // Varnish adds X-Forwarded-For to what it passes on; the direct request carries
    // the same, so both see exactly the same request.
    let post = [
        "-X",
        "POST",
        "-H",
        "X-Test: one two",
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        "a posted body\nwith two lines",
    ];
    let cases: [(&str, &[&str]); 5] = [
        ("/hello/", &[]),
        ("/echo/some/path?q=1&r=%20", &post),
        ("/renderer/", &[]),
        ("/stream/ready", &[]),
        ("/stream/sync-big", &[]),
    ];
    for (path, args) in cases {
        let mut direct_args = args.to_vec();
        direct_args.extend(["-H", "X-Forwarded-For: 127.0.0.1"]);
        let (ds, direct, _, _) = curl(kport, path, &direct_args);
        let (vs, vmod, _, _) = curl(vport, path, args);
        assert_eq!(ds, 200, "{path} direct");
        assert_eq!(vs, 200, "{path} through the VMOD:\n{}", v.log());
        assert!(!direct.is_empty(), "{path}");
        assert!(
            direct == vmod,
            "{path}: bodies differ ({} vs {} bytes):\n{}\n---\n{}",
            direct.len(),
            vmod.len(),
            String::from_utf8_lossy(&direct[..direct.len().min(400)]),
            String::from_utf8_lossy(&vmod[..vmod.len().min(400)])
        );
        eprintln!("{path}: {} bytes, identical", direct.len());
    }
    assert_eq!(
        curl(vport, "/stream/sync-big", &[]).1.len(),
        8 << 20,
        "the streamed 8 MiB body"
    );
    // kvmjs's metrics, for local clients (the VCL's ACL), counted the requests above.
    let (status, metrics, _, _) = curl(vport, "/metrics", &[]);
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("kvmjs_requests_total{program=\"renderer\",code=\"200\"} 1"),
        "{metrics}"
    );
    // Inside varnishd's child, every VM thread runs under kvmjs's seccomp filter
    // (Seccomp: 2, filter mode), as in kvmjs serve.
    let manager = v.child.id();
    let children = std::fs::read_to_string(format!("/proc/{manager}/task/{manager}/children"))
        .unwrap_or_default();
    let child: u32 = children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .expect("varnishd's manager has a child process");
    let mut vm_threads = 0;
    for task in std::fs::read_dir(format!("/proc/{child}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !comm.trim().contains("-vm") {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let mode = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(str::trim);
        assert_eq!(mode, Some("2"), "VM thread {} in varnishd", comm.trim());
        vm_threads += 1;
    }
    eprintln!("{vm_threads} VM threads in varnishd's child, each with the seccomp filter");
    assert!(vm_threads >= 4, "only {vm_threads} VM threads found");
}

#[test]
fn a_streamed_response_passes_through_as_the_program_makes_it() {
    let config = config("sse");
    let (_v, port) = varnish_vmod(&production_vcl(), &config, "sse-varnish");
    // Warm the program so that the timing below is the stream's alone.
    assert_eq!(curl(port, "/stream/static", &[]).0, 200);
    let (status, body, first, total) = curl(port, "/stream/sse?n=3&gap=400", &[]);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert_eq!(text.matches("data: ").count(), 3, "{text}");
    // The head (and the first event) left before the program had made the last event,
    // 800 ms after the first.
    eprintln!("sse through the VMOD: first byte {first:.3} s, whole {total:.3} s");
    assert!(
        total - first >= 0.6,
        "first byte {first} s, whole {total} s"
    );
}

#[test]
fn a_bad_configuration_fails_the_vcl_load_with_the_reason() {
    let dir = tmpdir("bad");
    let bad = dir.join("tinykvm.json");
    std::fs::write(
        &bad,
        r#"{ "hello": { "filename": "/nonexistent/app.js" } }"#,
    )
    .unwrap();
    let out = Command::new(varnishd())
        .args([
            "-F",
            "-j",
            "none",
            "-a",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["-T", &format!("127.0.0.1:{}", free_port())])
        .args(["-p", &vmod_path()])
        .arg("-n")
        .arg(dir.join("work"))
        .arg("-f")
        .arg(repo().join("vcl/kvmjs-vmod.vcl"))
        .env("KVMJS_CONFIG", &bad)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "varnishd started:\n{text}");
    assert!(text.contains("Failed initialization"), "{text}");
    assert!(
        text.contains("/nonexistent/app.js"),
        "the reason names the missing file:\n{text}"
    );
}
