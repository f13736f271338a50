//! The pool sends a response before the VM's reset to the snapshot runs, and the reset
//! still runs before the VM's next request: `kvmjs serve` end to end, on an ephemeral
//! QuickJS app whose request writes 192 MiB, so its reset takes long enough to see. Needs
//! /dev/kvm; fails (never skips) without it.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Fills a 192 MiB buffer at boot (so its pages are in the snapshot), rewrites it in every
/// request, and says how many requests this VM's state has seen and what the buffer held
/// (no warm-up: `--warmup 0`).
const APP: &str = r#"
let seen = 0;
const big = new Uint8Array(192 << 20).fill(1);
export default {
  async fetch(request) {
    seen++;
    const before = big[big.length - 1];
    big.fill(seen + 1);
    return new Response(`seen=${seen} before=${before}`);
  },
};
"#;

/// Pages the request writes (192 MiB): its reset restores at least these.
const PAGES: f64 = (192 << 20) as f64 / 4096.0;

#[test]
fn the_reply_does_not_wait_for_the_reset_and_the_next_request_does() {
    let dir = tmpdir("reset-after-reply-app");
    let app = dir.join("big.js");
    std::fs::write(&app, APP).unwrap();
    let cfg = format!(
        r#"{{ "big": {{ "filename": "{}", "concurrency": 1, "max_memory": 512,
              "main_arguments": ["--memory-limit", "400", "--warmup", "0"], "max_request_time": 20,
              "idle_timeout": 0 }} }}"#,
        app.display()
    );
    let (k, port) = kvmjs(&cfg, "reset-after-reply", &[]);
    let series = |s: &str| metric(port, &format!("kvmjs_{s}{{program=\"big\"}}"));
    for i in 1..=3 {
        let r = get(port, "/big/");
        let replied = Instant::now();
        // Ephemeral: every request finds the snapshot's state (the reset ran before it).
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "seen=1 before=1"),
            "request {i}: {}",
            k.log()
        );
        // The response came before its reset: the reset is not counted yet.
        let resets = series("reset_seconds_count");
        assert_eq!(
            resets,
            f64::from(i - 1),
            "request {i}: the reset ran before the response ({})",
            k.log()
        );
        // It runs right after, and counts for this request.
        while series("reset_seconds_count") < f64::from(i) {
            assert!(
                replied.elapsed() < Duration::from_secs(10),
                "request {i}: no reset after the response: {}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let waited = replied.elapsed();
        let pages = series("dirty_pages_total");
        let reset_s = series("reset_seconds_sum");
        assert!(
            pages >= PAGES * f64::from(i),
            "request {i}: {pages} dirty pages"
        );
        eprintln!(
            "request {i}: reset done {:.1} ms after the response (resets so far {:.1} ms, {pages} pages)",
            waited.as_secs_f64() * 1e3,
            reset_s * 1e3
        );
    }
    assert_eq!(
        metric(port, "kvmjs_requests_total{program=\"big\",code=\"200\"}"),
        3.0
    );
}
