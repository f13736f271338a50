//! Helpers shared by the integration tests of programs that listen (C servers built with
//! the system compiler). Each test binary uses part of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Builds C `source` into program `name` (dynamically linked, in a temporary directory of
/// its own: tests run in parallel and may build the same program) with the system
/// compiler; fails the test without one.
pub fn compile_c(name: &str, source: &str) -> PathBuf {
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("kvmjs-c-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write source");
    let bin = dir.join(name);
    let out = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("the system C compiler (cc) is needed for this test");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// [`compile_c`] of a file of the repository.
pub fn compile_c_file(name: &str, path: &str) -> PathBuf {
    let source = std::fs::read_to_string(repo().join(path)).expect("read the C source");
    compile_c(name, &source)
}
