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

/// The config of a small C server listening on 127.0.0.1:8000 (`bin`, dynamically linked):
/// 512 MiB of frames, 256 MiB of memory, its file and the system libraries readable.
pub fn c_server_cfg(bin: &Path) -> kvmjs_vm::config::VmConfig {
    use kvmjs_vm::config::{AllowedPath, ListenSpec, VmConfig};
    const MIB: u64 = 1 << 20;
    let program = bin.canonicalize().expect("the program exists");
    let mut allowed = AllowedPath::system_libs();
    allowed.push(AllowedPath::same(&program));
    VmConfig {
        name: program.to_string_lossy().into_owned(),
        program_path: Some(program.to_string_lossy().into_owned()),
        address_space: 512 * MIB,
        max_memory: 256 * MIB,
        max_boot_time: std::time::Duration::from_secs(60),
        max_request_time: std::time::Duration::from_secs(10),
        allowed_paths: allowed,
        listen: Some(ListenSpec {
            addr: "127.0.0.1:8000".parse().expect("an address"),
        }),
        ..VmConfig::default()
    }
}

/// Boots the program of `cfg` (its `program_path`).
pub fn boot(cfg: kvmjs_vm::config::VmConfig) -> kvmjs_vm::vm::Vm {
    let path = cfg.program_path.clone().expect("a program path");
    let elf = std::fs::read(&path).expect("read the program");
    kvmjs_vm::vm::Vm::boot(std::sync::Arc::new(cfg), &elf).unwrap_or_else(|e| panic!("boot: {e}"))
}
