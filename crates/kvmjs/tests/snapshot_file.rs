//! Snapshot files end to end: `kvmjs serve` with "snapshot_file" writes the file after
//! the first boot; a restart restores it (no boot) and answers byte for byte as the first
//! run did, including state the app computed at start-up; a changed app or guest binary
//! makes the file refused (logged, counted) and the program boots from scratch, as do a
//! changed setting and a truncated file; `kvmjs snapshot` writes and checks files.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An app whose answers depend on state made at start-up (a random number drawn before
/// the snapshot, kept in a global): a restart that booted instead of restoring would
/// answer differently.
fn app(version: &str) -> String {
    format!(
        r#"const bootId = Math.random().toString(36).slice(2);
const table = Array.from({{ length: 64 }}, (_, i) => (i * 2654435761) % 1000);
export default {{
  async fetch(request) {{
    const url = new URL(request.url);
    if (url.pathname === "/app/time") return new Response(String(Date.now()));
    const body = await request.text();
    return Response.json({{
      version: "{version}",
      bootId,
      path: url.pathname,
      query: url.searchParams.get("q"),
      method: request.method,
      body,
      sum: table.reduce((a, b) => a + b, 0),
    }}, {{ headers: {{ "x-app": "{version}" }} }});
  }},
}};
"#
    )
}

fn config(dir: &Path) -> String {
    format!(
        r#"{{ "app": {{ "filename": "{}", "snapshot_file": "{}", "concurrency": 2, "idle_timeout": 0 }} }}"#,
        dir.join("app/app.js").display(),
        dir.join("app.snap").display()
    )
}

/// `kvmjs serve` on the test's config with guest `guest`, log `log_name`.
fn serve(dir: &Path, guest: &Path, log_name: &str) -> (Proc, u16) {
    let port = free_port();
    let log = dir.join(log_name);
    let child = Command::new(env!("CARGO_BIN_EXE_kvmjs"))
        .args(["serve", "--config"])
        .arg(dir.join("tinykvm.json"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--guest")
        .arg(guest)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc { child, log };
    wait_port(port, "kvmjs serve", &p);
    (p, port)
}

/// The same requests every run: a GET, a query, a POST with a body.
fn answers(port: u16) -> Vec<(u16, String, Vec<u8>)> {
    let reqs: [(&str, &str, &[u8]); 4] = [
        ("GET", "/app/", b""),
        ("GET", "/app/x?q=snap", b""),
        ("POST", "/app/post", b"hello body"),
        ("GET", "/app/", b""),
    ];
    reqs.iter()
        .map(|(m, path, body)| {
            let r = request(port, m, path, &[], body);
            // Everything but the date and the request id is the app's answer.
            let head: String = r
                .head
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    !l.starts_with("date:") && !l.starts_with("x-request-id:")
                })
                .collect::<Vec<_>>()
                .join("\n");
            (r.status, head, r.body)
        })
        .collect()
}

fn series(result: &str) -> String {
    format!("kvmjs_snapshot_file_total{{program=\"app\",result=\"{result}\"}}")
}

/// Waits until the counter for `result` reaches `n` (the file is written off the
/// request path).
fn wait_metric(port: u16, result: &str, n: f64, p: &Proc) {
    let t = Instant::now();
    while metric(port, &series(result)) < n {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} never reached {n}:\n{}",
            series(result),
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut p: Proc) -> String {
    let _ = p.child.kill();
    let _ = p.child.wait();
    p.log()
}

#[test]
fn snapshot_file_round_trip_and_refusals() {
    let dir = tmpdir("snapshot-file");
    let _ = std::fs::remove_file(dir.join("app.snap"));
    // The app's directory is readable by the guest and followed by the file (a module
    // changing there refuses it): the logs and the snapshot file live outside it.
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/app.js"), app("v1")).unwrap();
    std::fs::write(dir.join("tinykvm.json"), config(&dir)).unwrap();
    let guest = guest();

    // 1. No file: boot, serve, write the file.
    let (p, port) = serve(&dir, &guest, "run1.log");
    let first = answers(port);
    assert!(first.iter().all(|(s, _, _)| *s == 200), "{first:?}");
    wait_metric(port, "written", 1.0, &p);
    assert_eq!(metric(port, &series("hit")), 0.0);
    let log = stop(p);
    assert!(dir.join("app.snap").is_file(), "no file written:\n{log}");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // 2. Restart: restored from the file, no boot, byte-identical answers (the bootId
    //    drawn before the first run's snapshot included).
    let (p, port) = serve(&dir, &guest, "run2.log");
    let second = answers(port);
    assert_eq!(metric(port, &series("hit")), 1.0, "{}", p.log());
    assert_eq!(metric(port, &series("written")), 0.0, "{}", p.log());
    assert_eq!(metric(port, &series("refused")), 0.0, "{}", p.log());
    // The restored guest's clock is the host's (its TSC continues where the file says).
    let guest_ms: f64 = get(port, "/app/time").text().trim().parse().unwrap();
    let host_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        (guest_ms - host_ms).abs() < 2000.0,
        "guest clock {guest_ms} vs host {host_ms}"
    );
    let log = stop(p);
    assert!(log.contains("restored from snapshot file"), "{log}");
    assert_eq!(first, second, "answers differ after the restore:\n{log}");

    // 3. A changed app: the file is refused (logged, counted), the new app answers, and
    //    the file is rewritten.
    std::fs::write(dir.join("app/app.js"), app("v2")).unwrap();
    let (p, port) = serve(&dir, &guest, "run3.log");
    let third = answers(port);
    assert!(
        String::from_utf8_lossy(&third[0].2).contains("\"version\":\"v2\""),
        "{third:?}"
    );
    assert_eq!(metric(port, &series("refused")), 1.0, "{}", p.log());
    assert_eq!(metric(port, &series("hit")), 0.0, "{}", p.log());
    wait_metric(port, "written", 1.0, &p);
    let log = stop(p);
    assert!(
        log.contains("snapshot file refused")
            && log.contains("was made with another version of the app")
            && log.contains("[reason: app]"),
        "{log}"
    );

    // 4. A guest binary that differs (a copy with one byte appended, outside anything
    //    loaded): refused, booted from scratch, same answers as the booted v2.
    let copy = dir.join("kvmjs-guest-modified");
    let mut bytes = std::fs::read(&guest).unwrap();
    bytes.push(0);
    std::fs::write(&copy, &bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (p, port) = serve(&dir, &copy, "run4.log");
    let fourth = answers(port);
    assert_eq!(metric(port, &series("refused")), 1.0, "{}", p.log());
    wait_metric(port, "written", 1.0, &p);
    let log = stop(p);
    assert!(
        log.contains("was made with another guest binary") && log.contains("[reason: guest]"),
        "{log}"
    );
    assert_eq!(fourth[0].0, 200);
    assert!(String::from_utf8_lossy(&fourth[0].2).contains("\"version\":\"v2\""));
    // Two boots draw different bootIds, so the equal answers of step 2 came from the
    // restored snapshot, not from a boot that happened to match.
    let boot_id = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["bootId"].as_str().unwrap().to_string()
    };
    assert_ne!(boot_id(&third[0].2), boot_id(&fourth[0].2));

    // 5. `kvmjs snapshot`: --check refuses the file (written with the modified guest) for
    //    the real guest; writing it ahead of time makes it valid; serve then restores it.
    let cli = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kvmjs"))
            .args(["snapshot", "--config"])
            .arg(dir.join("tinykvm.json"))
            .arg("--guest")
            .arg(&guest)
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = cli(&["--check"]);
    assert!(!ok && text.contains("another guest binary"), "{text}");
    let (ok, text) = cli(&["--program", "app"]);
    assert!(ok && text.contains("app: wrote"), "{text}");
    let (ok, text) = cli(&["--check"]);
    assert!(ok && text.contains("is valid"), "{text}");
    let (p, port) = serve(&dir, &guest, "run5.log");
    let fifth = answers(port);
    assert_eq!(metric(port, &series("hit")), 1.0, "{}", p.log());
    stop(p);
    assert!(String::from_utf8_lossy(&fifth[0].2).contains("\"version\":\"v2\""));

    // 6. A changed setting that shapes the snapshot, then a file cut short: each refused
    //    with its reason, the program boots, and the file is rewritten.
    let cfg = config(&dir).replace(
        "\"concurrency\": 2",
        "\"concurrency\": 2, \"environment\": [\"A=b\"]",
    );
    std::fs::write(dir.join("tinykvm.json"), cfg).unwrap();
    let (p, port) = serve(&dir, &guest, "run6.log");
    assert_eq!(answers(port)[0].0, 200);
    assert_eq!(metric(port, &series("refused")), 1.0, "{}", p.log());
    wait_metric(port, "written", 1.0, &p);
    let log = stop(p);
    assert!(
        log.contains("was made with environment = []") && log.contains("[reason: config]"),
        "{log}"
    );
    let file = std::fs::read(dir.join("app.snap")).unwrap();
    std::fs::write(dir.join("app.snap"), &file[..file.len() / 3]).unwrap();
    let (p, port) = serve(&dir, &guest, "run7.log");
    assert_eq!(answers(port)[0].0, 200);
    assert_eq!(metric(port, &series("refused")), 1.0, "{}", p.log());
    wait_metric(port, "written", 1.0, &p);
    let log = stop(p);
    assert!(log.contains("[reason: truncated]"), "{log}");
    std::fs::remove_dir_all(&dir).ok();
}
