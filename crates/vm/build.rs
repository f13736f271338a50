//! Builds the guest vDSO (src/vdso/vdso.c) into a freestanding ELF64 shared object with
//! the system C compiler; src/vdso/mod.rs embeds it with `include_bytes!`. The flags make
//! it position independent with no relocations, no libc and no unwind tables; the linker
//! script puts everything in one PT_LOAD at p_vaddr 0 and defines the data page at -4096.

use std::path::PathBuf;
use std::process::Command;

const SOURCES: [&str; 4] = [
    "src/vdso/vdso.c",
    "src/vdso/vvar.h",
    "src/vdso/vdso.lds",
    "src/vdso/vdso.map",
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
}
