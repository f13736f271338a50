//! deno's Web storage in the VM, end to end through `kvmjs serve --engine deno`:
//! `localStorage` and the Cache API are SQLite databases (WAL mode) under DENO_DIR, in the
//! VM's scratch filesystem, and SQLite maps its WAL index (`-shm`) MAP_SHARED. They work
//! within a request, and with ephemeral VMs the next request finds nothing of it. Needs
//! /dev/kvm and the deno CLI that `.ci/install-deps` installs into .deno/; without them
//! this test fails (never skips).

mod common;

use common::*;

/// A Workers-style app: `/set?v=V` stores V in both, then every path answers what both
/// hold now.
const APP: &str = r#"
async function state() {
  const ls = localStorage.getItem("k") ?? "none";
  const cache = await caches.open("c");
  const hit = await cache.match("http://kvmjs.test/k");
  return `ls=${ls} cache=${hit ? await hit.text() : "none"} n=${localStorage.length}`;
}

export default {
  async fetch(req) {
    const url = new URL(req.url);
    try {
      if (url.pathname.endsWith("/set")) {
        const v = url.searchParams.get("v") ?? "";
        localStorage.setItem("k", v);
        await (await caches.open("c")).put("http://kvmjs.test/k", new Response(v));
      }
      return new Response(await state());
    } catch (e) {
      return new Response(`error: ${e?.name}: ${e?.message}`, { status: 500 });
    }
  },
};
"#;

fn exits(port: u16) -> f64 {
    metric(port, "kvmjs_vm_exits_total{program=\"s\"}")
}

#[test]
fn local_storage_and_the_cache_api_work_within_a_request_and_leave_nothing() {
    let dir = tmpdir("deno-storage-app");
    let app = dir.join("app.js");
    std::fs::write(&app, APP).unwrap();
    let cfg = format!(
        r#"{{
        "s": {{
            "engine": "deno", "deno": "{}", "concurrency": 1, "max_boot_time": 180,
            "max_request_time": 30, "idle_timeout": 0, "filename": "{}"
        }}
    }}"#,
        deno().display(),
        app.display()
    );
    let (k, port) = kvmjs(&cfg, "deno-storage", &[]);
    let mut set_exits = Vec::new();
    let mut get_exits = Vec::new();
    for v in ["first", "second", "third"] {
        let e0 = exits(port);
        let r = get(port, &format!("/s/set?v={v}"));
        let e1 = exits(port);
        assert_eq!(
            (r.status, r.text()),
            (200, format!("ls={v} cache={v} n=1")),
            "{}",
            k.log()
        );
        // Ephemeral: the next request starts from the snapshot, which holds neither.
        let r = get(port, "/s/get");
        let e2 = exits(port);
        assert_eq!(
            (r.status, r.text()),
            (200, "ls=none cache=none n=0".to_string()),
            "{}",
            k.log()
        );
        set_exits.push(e1 - e0);
        get_exits.push(e2 - e1);
    }
    eprintln!("VM exits per request: set {set_exits:?}, get {get_exits:?}");
}
