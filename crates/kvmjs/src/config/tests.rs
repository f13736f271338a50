//! Unit tests of the configuration parser (tinykvm.json keys, groups, refusals).

use super::*;

fn parse_str(s: &str) -> Result<(Vec<Program>, Vec<String>), ConfigError> {
    let doc: Value =
        serde_json::from_reader(json_comments::StripComments::new(s.as_bytes())).unwrap();
    let dir = std::env::temp_dir();
    std::fs::write(dir.join("kvmjs-cfg-app.js"), "export default {}").unwrap();
    parse(
        &doc,
        Path::new("tinykvm.json"),
        &dir,
        Path::new("/usr/lib/kvmjs-guest"),
        Engine::Quickjs,
    )
}

#[test]
fn groups_programs_and_js_apps() {
    let (p, w) = parse_str(
        r#"{
        // comments are allowed
        "small": { "max_memory": 32, "concurrency": 3 },
        "app": { "group": "small", "filename": "kvmjs-cfg-app.js", "ephemeral": false, "host": "Example.COM" }
    }"#,
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let a = &p[0];
    assert_eq!(
        (a.concurrency, a.vm.max_memory, a.vm.ephemeral),
        (3, 32 << 20, false)
    );
    assert_eq!(a.guest, Path::new("/usr/lib/kvmjs-guest"));
    assert!(a.vm.main_arguments[0].ends_with("kvmjs-cfg-app.js"));
    assert_eq!(a.hosts, vec!["example.com".to_string()]);
    assert_eq!(
        a.vm.address_space,
        256 << 20,
        "address_space is at least max_memory"
    );
}

#[test]
fn errors_name_the_key_and_value() {
    let e = parse_str(r#"{ "app": { "filename": "kvmjs-cfg-app.js", "concurrency": "two" } }"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("key \"concurrency\"") && e.contains("\"two\""),
        "{e}"
    );
    let e = parse_str(r#"{ "app": { "filename": "no-such-file.js" } }"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no-such-file.js") && e.contains("No such file"),
        "{e}"
    );
    let e = parse_str(r#"{ "app": { "group": "nope", "filename": "kvmjs-cfg-app.js" } }"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("group \"nope\" is not defined"), "{e}");
    let e = parse_str(r#"{ "app": { "filename": "kvmjs-cfg-app.js", "max_request_time": -1 } }"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_request_time"), "{e}");
}

#[test]
fn unknown_and_unsupported_keys_warn() {
    let (_, w) =
        parse_str(r#"{ "app": { "filename": "kvmjs-cfg-app.js", "bogus": 1, "storage": true } }"#)
            .unwrap();
    assert!(
        w.iter().any(|m| m.contains("unknown key \"bogus\"")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("\"storage\" is not supported")),
        "{w:?}"
    );
}

#[test]
fn engine_listen_and_deno_keys() {
    let fake = std::env::temp_dir().join(format!("kvmjs-cfg-deno-{}", std::process::id()));
    std::fs::write(&fake, "not really deno").unwrap();
    let fake_s = fake.display().to_string();
    // A .js app on deno: the deno binary runs the adapter with the app, listening on
    // the default address; a group can name the binary for every program.
    let (p, w) = parse_str(&format!(
        r#"{{ "all": {{ "deno": "{fake_s}" }},
             "app": {{ "group": "all", "filename": "kvmjs-cfg-app.js", "engine": "deno" }},
             "qjs": {{ "group": "all", "filename": "kvmjs-cfg-app.js" }} }}"#
    ))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let a = p.iter().find(|p| p.name == "app").unwrap();
    assert_eq!(a.guest, fake.canonicalize().unwrap());
    assert_eq!(a.engine, "deno");
    assert_eq!(
        a.vm.listen.map(|l| l.addr.to_string()).as_deref(),
        Some("127.0.0.1:8000")
    );
    assert_eq!(a.vm.main_arguments[0], "run");
    assert!(a
        .vm
        .main_arguments
        .iter()
        .any(|x| x.ends_with("kvmjs-cfg-app.js")));
    assert_eq!(
        (a.vm.address_space, a.vm.max_memory),
        (4096 << 20, 2048 << 20)
    );
    let q = p.iter().find(|p| p.name == "qjs").unwrap();
    assert_eq!((q.engine, q.vm.listen), ("quickjs", None));
    assert_eq!(q.guest, Path::new("/usr/lib/kvmjs-guest"));
    // Set sizes and listen are kept.
    let (p, _) = parse_str(&format!(
        r#"{{ "app": {{ "filename": "kvmjs-cfg-app.js", "engine": "deno", "deno": "{fake_s}",
             "listen": "[::1]:9000", "max_memory": 1024, "address_space": 3000 }} }}"#
    ))
    .unwrap();
    assert_eq!(
        p[0].vm.listen.map(|l| l.addr.to_string()).as_deref(),
        Some("[::1]:9000")
    );
    assert_eq!(
        (p[0].vm.address_space, p[0].vm.max_memory),
        (3000 << 20, 1024 << 20)
    );
    // A Linux server program: listen makes it one.
    let (p, _) = parse_str(&format!(
        r#"{{ "srv": {{ "filename": "{fake_s}", "listen": "127.0.0.1:8080" }},
             "abi": {{ "filename": "{fake_s}" }} }}"#
    ))
    .unwrap();
    let srv = p.iter().find(|p| p.name == "srv").unwrap();
    assert_eq!(
        (srv.engine, srv.vm.listen.map(|l| l.addr.port())),
        ("server", Some(8080))
    );
    assert_eq!(
        srv.vm.program_path.as_deref(),
        Some(fake.canonicalize().unwrap().to_str().unwrap())
    );
    let abi = p.iter().find(|p| p.name == "abi").unwrap();
    assert_eq!((abi.engine, abi.vm.listen), ("elf", None));
    // Bad values name the key, the value and what is expected.
    for (cfg, want) in [
        (
            r#""engine": "v8""#.to_string(),
            r#"key "engine": expected "quickjs" or "deno", got "v8""#,
        ),
        (
            r#""engine": 1"#.into(),
            r#"key "engine": expected a string"#,
        ),
        (
            r#""engine": "deno", "listen": "localhost:80""#.into(),
            r#"key "listen": expected an IP address and port"#,
        ),
        (
            r#""engine": "deno", "listen": "127.0.0.1:0""#.into(),
            "not 0",
        ),
        (
            r#""listen": "127.0.0.1:8000""#.into(),
            r#"key "listen": only for programs that serve HTTP themselves"#,
        ),
        (
            r#""engine": "deno", "deno": """#.into(),
            r#"key "deno": expected the path of the deno CLI"#,
        ),
        (
            r#""engine": "deno", "deno": "/no/such/deno""#.into(),
            "/no/such/deno (tinykvm.json \"deno\")",
        ),
    ] {
        let e = parse_str(&format!(
            r#"{{ "app": {{ "filename": "kvmjs-cfg-app.js", {cfg} }} }}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{cfg}: {e}");
    }
    let e = parse_str(&format!(
        r#"{{ "srv": {{ "filename": "{fake_s}", "engine": "deno" }} }}"#
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("key \"engine\": only for .js apps"), "{e}");
}

#[test]
fn snapshot_file_is_resolved_and_checked() {
    let (ps, _) =
        parse_str(r#"{ "a": { "filename": "kvmjs-cfg-app.js", "snapshot_file": "a.snap" } }"#)
            .unwrap();
    assert_eq!(
        ps[0].snapshot_file,
        Some(std::env::temp_dir().join("a.snap"))
    );
    let e = parse_str(
        r#"{ "a": { "filename": "kvmjs-cfg-app.js", "snapshot_file": "no/such/dir/a.snap" } }"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("its directory does not exist"), "{e}");
    let e = parse_str(
        r#"{ "a": { "filename": "/bin/true", "listen": "127.0.0.1:8000", "snapshot_file": "a.snap" } }"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a program that listens"), "{e}");
    let e = parse_str(
        r#"{ "g": { "snapshot_file": "same.snap" }, "a": { "group": "g", "filename": "kvmjs-cfg-app.js" }, "b": { "group": "g", "filename": "kvmjs-cfg-app.js" } }"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is also program \"a\"'s"), "{e}");
    // In a directory another program reads (both apps live in the temp dir here).
    let e = parse_str(
        r#"{ "a": { "filename": "kvmjs-cfg-app.js", "snapshot_file": "a.snap" }, "b": { "filename": "kvmjs-cfg-app.js" } }"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("which program \"b\" may read") && e.contains("\"a\""),
        "{e}"
    );
}

#[test]
fn every_key_is_documented() {
    for k in [
        "concurrency",
        "warmup",
        "allowed_paths",
        "idle_timeout",
        "keep_alive",
        "prefix",
        "host",
        "max_background_time",
        "engine",
        "listen",
        "deno",
        "snapshot_file",
        "start_vms",
    ] {
        assert!(KEYS.iter().any(|(n, _)| *n == k), "{k}");
    }
}
