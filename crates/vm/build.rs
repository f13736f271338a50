//! Builds the two shared objects kvmjs puts into guests, with the system C compiler:
//! - the vDSO (src/vdso/vdso.c), a freestanding ELF64 shared object that src/vdso/mod.rs
//!   embeds with `include_bytes!`. The flags make it position independent with no
//!   relocations, no libc and no unwind tables; the linker script puts everything in one
//!   PT_LOAD at p_vaddr 0 and defines the data page at -4096.
//! - the fast-path library (src/fastpath/fast.c), an ordinary shared object against libc
//!   (it needs only `getauxval` and `errno`), preloaded into dynamically linked servers;
//!   src/fastpath/mod.rs embeds it.

use std::path::PathBuf;
use std::process::Command;

const SOURCES: [&str; 6] = [
    "src/vdso/vdso.c",
    "src/vdso/vvar.h",
    "src/vdso/vdso.lds",
    "src/vdso/vdso.map",
    "src/fastpath/fast.c",
    "src/fastpath/fast.h",
];

fn main() {
    for s in SOURCES {
        println!("cargo:rerun-if-changed={s}");
    }
    println!("cargo:rerun-if-env-changed=CC");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("vdso.so");
    let src = dir.join("src/vdso");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-nostdlib",
            "-shared",
            "-fPIC",
            "-O2",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-fvisibility=hidden",
            "-fcf-protection=none",
            "-mno-red-zone",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,--hash-style=both",
            "-Wl,-soname=linux-vdso.so.1",
            "-Wl,--no-undefined",
            "-Wl,-z,max-page-size=4096",
            "-Wl,--build-id=none",
        ])
        .arg(format!("-Wl,-T,{}", src.join("vdso.lds").display()))
        .arg(format!("-Wl,--version-script={}", src.join("vdso.map").display()))
        .arg("-o")
        .arg(&out)
        .arg(src.join("vdso.c"))
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run the C compiler {cc:?} to build the vDSO ({e}); run .ci/install-deps or set CC")
        });
    assert!(
        status.success(),
        "building the vDSO with {cc:?} failed ({status}); see the compiler output above"
    );
    build_fast_library(&cc, &dir);
}

fn build_fast_library(cc: &str, dir: &std::path::Path) {
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("libkvmjs-fast.so");
    let status = Command::new(cc)
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-fvisibility=hidden",
            "-fno-asynchronous-unwind-tables",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,-soname=libkvmjs-fast.so",
            "-Wl,-z,max-page-size=4096",
            "-Wl,--build-id=none",
        ])
        .arg("-o")
        .arg(&out)
        .arg(dir.join("src/fastpath/fast.c"))
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run the C compiler {cc:?} to build the fast-path library ({e}); run .ci/install-deps or set CC")
        });
    assert!(
        status.success(),
        "building the fast-path library with {cc:?} failed ({status}); see the compiler output above"
    );
}
