//! WPT's Web API tests (`../shared/conformance/wpt-webapi`, see its PROVENANCE.md) in the
//! QuickJS guest on real /dev/kvm: one ephemeral VM runs tests/js/apps/wpt_webapi.js and
//! gets one request per `*.any.js` file, so every file runs in a fresh global restored from
//! the snapshot. Prints `passed / total` per area and overall, and fails on any failing
//! subtest not listed in tests/wpt-webapi-expected-failures.txt and on any listed one that
//! passes. `WPT_WEBAPI_FILTER=streams/` runs only the files whose path contains it;
//! `WPT_WEBAPI_OUT=results.json` writes every file's results (tests/wpt-webapi-deno.sh
//! writes the same format for deno).

use kvmjs_vm::{AllowedPath, Request, Vm, VmConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-file deadline in the guest (ms; `META: timeout=long` files get twice that), after
/// which testharness.js's timeout() ends every test still running.
const DEADLINE_MS: u64 = 4000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn wpt_dir() -> PathBuf {
    repo()
        .join("../shared/conformance/wpt-webapi")
        .canonicalize()
        .expect("shared/conformance/wpt-webapi is next to the repository")
}

/// Every `*.any.js` file under `dir`, as WPT paths (`streams/readable-streams/tee.any.js`).
fn test_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            test_files(root, &p, out);
        } else if p.to_string_lossy().ends_with(".any.js") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy();
            out.push(rel.replace('\\', "/"));
        }
    }
}

/// As tests/js/wpt_webapi_runner.js `resolve`: a META script path as a WPT path.
fn resolve(file: &str, path: &str) -> String {
    let mut parts: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = file.split('/').collect();
        p.pop();
        p
    };
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// As the runner's `sourcesOf`: testharness.js, the META scripts, the file itself.
fn sources_of(file: &str, source: &str) -> Vec<String> {
    let mut v = vec!["resources/testharness.js".to_string()];
    for line in source.lines() {
        if let Some(s) = line.trim().strip_prefix("// META: script=") {
            v.push(resolve(file, s.trim()));
        }
    }
    v.push(file.to_string());
    v
}

/// As the runner's `area`: top-level directory; streams/X and fetch/api/X.
fn area(file: &str) -> String {
    let p: Vec<&str> = file.split('/').collect();
    match p[0] {
        "streams" if p.len() > 2 => format!("streams/{}", p[1]),
        "fetch" if p.len() > 3 => format!("fetch/{}/{}", p[1], p[2]),
        a => a.to_string(),
    }
}

/// A subtest name as it appears in a key: backslash and control characters escaped, so a
/// key is one line without tabs.
fn escape(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '*' => s.push_str("\\*"),
            c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => s.push(c),
        }
    }
    s
}

/// Whether key `k` matches list entry `pat`: a bare `*` in `pat` matches any run of
/// characters; anything else, `\x` escapes included, matches itself.
fn matches(pat: &str, k: &str) -> bool {
    let (p, k) = (pat.as_bytes(), k.as_bytes());
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < k.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if i < p.len()
            && p[i] == b'\\'
            && i + 1 < p.len()
            && k[j] == b'\\'
            && j + 1 < k.len()
            && p[i + 1] == k[j + 1]
        {
            i += 2;
            j += 2;
        } else if i < p.len() && p[i] != b'\\' && p[i] == k[j] {
            i += 1;
            j += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == b'*' {
        i += 1;
    }
    i == p.len()
}

/// A list entry with a bare `*` is a pattern.
fn is_pattern(entry: &str) -> bool {
    let b = entry.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'*' => return true,
            _ => i += 1,
        }
    }
    false
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs one file in the VM; a failed request (504, crash) is a harness error.
fn run_file(vm: &mut Vm, dir: &Path, file: &str) -> Value {
    let own = std::fs::read_to_string(dir.join(file)).unwrap();
    let mut sources = serde_json::Map::new();
    for p in sources_of(file, &own) {
        let text = std::fs::read_to_string(dir.join(&p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        sources.insert(p, Value::String(text));
    }
    let req = Request {
        method: "POST".into(),
        url: format!("/?file={}&deadline={DEADLINE_MS}", encode(file)),
        headers: vec![
            "Host: wpt.invalid".into(),
            "Content-Type: application/json".into(),
        ],
        content_type: "application/json".into(),
        body: serde_json::to_vec(&json!({ "sources": sources })).unwrap(),
        ..Default::default()
    };
    let failed = |message: String| json!({"file": file, "harness": {"status": "ERROR", "message": message}, "tests": []});
    match vm.handle(&req) {
        Ok(r) if r.status == 200 => serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| failed(format!("unreadable answer: {e}"))),
        Ok(r) => {
            let body = String::from_utf8_lossy(&r.body);
            failed(format!(
                "HTTP {}: {}",
                r.status,
                body.lines().next().unwrap_or("")
            ))
        }
        Err(e) => failed(format!(
            "request failed: {}",
            e.to_string().lines().next().unwrap_or("")
        )),
    }
}

#[derive(Default)]
struct Count {
    passed: u64,
    total: u64,
    server: u64,
    harness_errors: u64,
}

#[test]
fn wpt_webapi_pass_rate() {
    let t0 = Instant::now();
    let dir = wpt_dir();
    let mut files = Vec::new();
    test_files(&dir, &dir, &mut files);
    files.retain(|f| !f.starts_with("resources/") && !f.starts_with("common/"));
    files.sort();
    assert!(files.len() >= 200, "found only {} test files", files.len());
    let filter = std::env::var("WPT_WEBAPI_FILTER").ok();
    if let Some(f) = &filter {
        files.retain(|p| p.contains(f.as_str()));
    }

    let app = repo().join("tests/js/apps/wpt_webapi.js");
    let cfg = VmConfig {
        name: "wpt_webapi.js".into(),
        address_space: 512 << 20,
        max_memory: 384 << 20,
        max_request_memory: 256 << 20,
        // Twice the deadline for `timeout=long` files, plus time to report.
        max_request_time: Duration::from_millis(2 * DEADLINE_MS + 4000),
        main_arguments: vec![
            app.to_string_lossy().into_owned(),
            "--warmup".into(),
            "0".into(),
        ],
        environment: vec![format!("WPT_WEBAPI_DIR={}", dir.display())],
        allowed_paths: vec![
            AllowedPath::same(repo().join("tests/js")),
            AllowedPath::same(&dir),
        ],
        ..Default::default()
    };
    let elf = std::fs::read(env!("CARGO_BIN_EXE_kvmjs-guest")).unwrap();
    let mut vm = Vm::boot(Arc::new(cfg), &elf).unwrap_or_else(|e| panic!("boot failed: {e}"));

    let listed =
        std::fs::read_to_string(repo().join("tests/wpt-webapi-expected-failures.txt")).unwrap();
    // key -> reason; a reason starting with "FLAKY" may pass or fail.
    let known: BTreeMap<&str, &str> = listed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('\t').unwrap_or((l, "")))
        .collect();

    let mut areas: BTreeMap<String, Count> = BTreeMap::new();
    // (key, what happened) of every failing subtest and harness error; keys of passes.
    let mut failing: Vec<(String, String)> = Vec::new();
    let mut passing: Vec<String> = Vec::new();
    let mut all = Vec::new();
    let mut slowest = Vec::new();
    for file in &files {
        let t = Instant::now();
        let res = run_file(&mut vm, &dir, file);
        slowest.push((t.elapsed(), file.clone()));
        let c = areas.entry(area(file)).or_default();
        let harness = &res["harness"];
        if harness["status"] != "OK" {
            c.harness_errors += 1;
            let msg = format!(
                "{}: {}",
                harness["status"].as_str().unwrap_or("?"),
                harness["message"]
            );
            failing.push((format!("{file} | [harness]"), msg));
        }
        for t in res["tests"].as_array().unwrap() {
            let status = t["status"].as_str().unwrap();
            let key = format!("{file} | {}", escape(t["name"].as_str().unwrap()));
            match status {
                "NEEDS_SERVER" => c.server += 1,
                "PASS" => {
                    c.passed += 1;
                    c.total += 1;
                    passing.push(key);
                }
                _ => {
                    c.total += 1;
                    let msg = format!("{status}: {}", t["message"].as_str().unwrap_or(""));
                    failing.push((key, msg));
                }
            }
        }
        all.push(res);
    }

    let mut total = Count::default();
    eprintln!("WPT Web API on QuickJS (passed / total subtests; harness errors; not counted: need the WPT server):");
    for (a, c) in &areas {
        eprintln!(
            "  {a:32} {:5} / {:5}  {:5.1}%  harness errors {}  server {}",
            c.passed,
            c.total,
            100.0 * c.passed as f64 / c.total.max(1) as f64,
            c.harness_errors,
            c.server
        );
        total.passed += c.passed;
        total.total += c.total;
        total.server += c.server;
        total.harness_errors += c.harness_errors;
    }
    eprintln!(
        "  {:32} {:5} / {:5}  {:5.1}%  harness errors {}  server {}  ({} files, {:.1} s)",
        "total",
        total.passed,
        total.total,
        100.0 * total.passed as f64 / total.total.max(1) as f64,
        total.harness_errors,
        total.server,
        files.len(),
        t0.elapsed().as_secs_f64()
    );
    slowest.sort();
    for (d, f) in slowest.iter().rev().take(5) {
        eprintln!("  slowest: {f} {:.2} s", d.as_secs_f64());
    }
    if let Ok(out) = std::env::var("WPT_WEBAPI_OUT") {
        std::fs::write(
            &out,
            serde_json::to_string_pretty(&Value::Array(all)).unwrap(),
        )
        .unwrap();
    }

    let patterns: Vec<&str> = known.keys().copied().filter(|k| is_pattern(k)).collect();
    let listed_as = |key: &str| -> Vec<&str> {
        let mut v: Vec<&str> = patterns
            .iter()
            .copied()
            .filter(|p| matches(p, key))
            .collect();
        if known.contains_key(key) {
            v.push(known.get_key_value(key).unwrap().0);
        }
        v
    };
    let mut used = BTreeSet::new();
    let mut unexpected = Vec::new();
    for (key, msg) in &failing {
        let l = listed_as(key);
        if l.is_empty() {
            unexpected.push(format!("{key}\t{}", msg.replace('\n', " ")));
        }
        used.extend(l);
    }
    assert!(
        unexpected.is_empty(),
        "{} failures not listed in tests/wpt-webapi-expected-failures.txt:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    // Every entry of the files that ran must still fail: an exact key, and every subtest a
    // pattern matches (unless its reason starts with FLAKY).
    let flaky = |entry: &str| known[entry].starts_with("FLAKY");
    let mut stale: Vec<String> = passing
        .iter()
        .flat_map(|k| listed_as(k).into_iter().map(move |e| (e, k)))
        .filter(|(e, _)| !flaky(e))
        .map(|(e, k)| format!("{k} (listed as {e})"))
        .collect();
    stale.extend(
        known
            .keys()
            .filter(|k| {
                let file = k.split(" | ").next().unwrap();
                files.iter().any(|f| f == file) && !used.contains(*k) && !flaky(k)
            })
            .map(|k| k.to_string()),
    );
    assert!(
        stale.is_empty(),
        "{} listed as failing in tests/wpt-webapi-expected-failures.txt but passing now:\n{}",
        stale.len(),
        stale.join("\n")
    );
}
