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
    source_hash(&dir);
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

/// `KVMJS_VM_SOURCE_HASH`: a hash of every file under src/ and ../abi/src, build.rs and
/// the workspace's Cargo.lock (paths and bytes) and the crate version. Snapshot files (src/persist) record it and refuse a file written by other host
/// code, since a snapshot's process state and memory layout are only meaningful to the
/// code that made them. FNV-1a: build scripts have no sha2, and this only has to change
/// whenever a source file does.
fn source_hash(dir: &std::path::Path) {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=../abi/src");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    // This crate, its build script (the vDSO and fast-library flags), the guest ABI crate
    // and the locked dependency versions (kvm-bindings' struct layouts, serde/postcard).
    let mut files = vec![dir.join("build.rs"), dir.join("../../Cargo.lock")];
    let mut stack = vec![dir.join("src"), dir.join("../abi/src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .expect("source directories are readable")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    eat(env!("CARGO_PKG_VERSION").as_bytes());
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap_or(f);
        eat(rel.to_string_lossy().as_bytes());
        eat(&[0]);
        // (Cargo.lock is absent when the crate is built outside this workspace.)
        eat(&std::fs::read(f).unwrap_or_default());
        eat(&[0]);
    }
    println!(
        "cargo:rustc-env=KVMJS_VM_SOURCE_HASH={}-{h:016x}",
        env!("CARGO_PKG_VERSION")
    );
}
