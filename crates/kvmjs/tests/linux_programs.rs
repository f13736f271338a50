//! Acceptance for unmodified dynamically linked Linux programs (issue 11): each runs natively
//! and through `kvmjs run` in a VM, and the two stdouts must be byte for byte the same.
//! Needs /dev/kvm, the system C compiler and the deno CLI that `.ci/install-deps` installs
//! into .deno/; without them these tests fail (they never skip).
//!
//! `cargo test -p kvmjs --test linux_programs -- --nocapture` also prints each run's figures
//! (boot/wall time, VM exits by kind, system calls by name, resident pages, ENOSYS list).

use std::path::{Path, PathBuf};
mod common;
use common::{deno, repo};
use std::process::{Command, Output};

/// What a dynamically linked program reads besides its own files, where it exists here.
fn system_paths() -> Vec<PathBuf> {
    kvmjs_vm::config::SYSTEM_LIB_PATHS
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// One environment for both runs, so output cannot differ because of it.
const DENO_ENV: &[(&str, &str)] = &[
    ("NO_COLOR", "1"),
    ("DENO_NO_UPDATE_CHECK", "1"),
    ("DENO_NO_PROMPT", "1"),
    ("DENO_DIR", "/tmp/kvmjs-acceptance-deno-dir"),
    ("HOME", "/tmp"),
];

fn native(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} natively: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} failed natively ({}): {}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn in_vm(program: &Path, allow: &[PathBuf], args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvmjs"));
    cmd.arg("run")
        .args([
            "--address-space",
            "4096",
            "--max-memory",
            "4096",
            "--max-boot-time",
            "120",
        ])
        .current_dir(repo())
        .env("RUST_LOG", "warn");
    for p in system_paths().iter().chain(allow) {
        cmd.arg("--allow").arg(p);
    }
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(program).arg("--").args(args);
    let out = cmd.output().expect("cannot start the kvmjs binary");
    // The figures (and any error) are on stderr: keep them visible with --nocapture.
    eprintln!(
        "--- kvmjs run {} {args:?}: {}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts the VM run succeeded and printed exactly what the native run did.
fn assert_same_output(what: &str, native: &Output, vm: &Output) {
    let stderr = String::from_utf8_lossy(&vm.stderr);
    assert!(
        vm.status.success(),
        "{what}: in the VM it ended with {} (native: success).\nstderr:\n{stderr}\nstdout:\n{}",
        vm.status,
        String::from_utf8_lossy(&vm.stdout)
    );
    if native.stdout != vm.stdout {
        let (n, v) = (
            String::from_utf8_lossy(&native.stdout),
            String::from_utf8_lossy(&vm.stdout),
        );
        let first = n
            .lines()
            .zip(v.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(n.lines().count().min(v.lines().count()));
        panic!(
            "{what}: output differs from the native run at line {} ({} vs {} bytes)\nnative: {:?}\nvm:     {:?}\nstderr:\n{stderr}",
            first + 1,
            native.stdout.len(),
            vm.stdout.len(),
            n.lines().nth(first),
            v.lines().nth(first)
        );
    }
}

/// The `kvmjs: system calls: N (name count, ...)` figure line.
fn syscall_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("kvmjs: system calls:"))
        .unwrap_or_else(|| panic!("no system-call figures in stderr:\n{stderr}"))
}

/// Builds tests/guests/c/`name`.c with the system C compiler and `flags`.
fn build_c(name: &str, flags: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let src = repo().join(format!("tests/guests/c/{name}.c"));
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-O2", "-Wall", "-Wextra", "-Werror"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cannot run the C compiler (cc): run .ci/install-deps");
    assert!(status.success(), "compiling {} failed", src.display());
    out
}

/// dyn-probe as an ordinary dynamic (PIE) glibc executable.
fn dyn_probe() -> PathBuf {
    build_c("dyn-probe", &["-pthread"])
}

/// Whether the host gives guests a TSC clock (the vDSO then answers clock reads itself).
fn tsc_clock() -> bool {
    kvmjs_vm::Hypervisor::get()
        .expect("/dev/kvm")
        .caps()
        .guest_tsc_khz()
        .is_some()
}

/// How often the figures say the guest made system call `name` (0 when absent).
fn calls_of(stderr: &str, name: &str) -> u64 {
    let line = syscall_line(stderr);
    let list = line
        .split_once('(')
        .map_or("", |(_, l)| l.trim_end_matches(')'));
    list.split(", ")
        .find_map(|item| item.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn static_program_reads_clocks_through_the_vdso() {
    let prog = build_c("vdso-clock", &["-static"]);
    let vm = in_vm(&prog, &[], &[], &[]);
    let out = String::from_utf8_lossy(&vm.stdout);
    let stderr = String::from_utf8_lossy(&vm.stderr);
    assert!(
        vm.status.success(),
        "vdso-clock failed in the VM:\n{out}\n{stderr}"
    );
    assert!(out.starts_with("vdso: present\n"), "{out}");
    assert_eq!(out.matches(": yes").count(), 5, "{out}");
    // The program makes exactly 3 raw clock_gettime calls; glibc's reads (10,000+ of them)
    // go through the vDSO when the host gives guests a TSC clock, else they trap too.
    let (clock_gettime, others) = (
        calls_of(&stderr, "clock_gettime"),
        calls_of(&stderr, "gettimeofday") + calls_of(&stderr, "time"),
    );
    if tsc_clock() {
        assert_eq!((clock_gettime, others), (3, 0), "{stderr}");
    } else {
        assert!(clock_gettime > 10_000 && others == 2, "{stderr}");
    }
}

#[test]
fn dynamic_c_program_matches_native() {
    let probe = dyn_probe();
    let data = repo().join("Cargo.lock");
    let arg = data.to_str().expect("UTF-8 path");
    let native = native(&probe, &[arg], &[]);
    let text = String::from_utf8_lossy(&native.stdout);
    assert!(
        text.contains("vdso: present") && text.contains("jit: f(40, 1) = 42"),
        "{text}"
    );
    let vm = in_vm(&probe, std::slice::from_ref(&data), &[arg], &[]);
    assert_same_output("dyn-probe", &native, &vm);
    let stderr = String::from_utf8_lossy(&vm.stderr);
    assert!(stderr.contains("kvmjs: exited with status 0"), "{stderr}");
    // With a TSC clock, every clock read goes through the vDSO: none reaches the host.
    let clock_calls = calls_of(&stderr, "clock_gettime") + calls_of(&stderr, "gettimeofday");
    assert_eq!(
        clock_calls == 0,
        tsc_clock(),
        "{clock_calls} clock system calls (TSC clock: {})\n{stderr}",
        tsc_clock()
    );
}

#[test]
fn deno_eval_prints_2() {
    let vm = in_vm(&deno(), &[], &["eval", "console.log(1+1)"], DENO_ENV);
    let stderr = String::from_utf8_lossy(&vm.stderr);
    assert!(vm.status.success(), "deno eval failed in the VM:\n{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&vm.stdout),
        "2\n",
        "stderr:\n{stderr}"
    );
    // deno reads clocks only through the vDSO (research: no clock syscalls natively).
    if tsc_clock() {
        assert_eq!(calls_of(&stderr, "clock_gettime"), 0, "{stderr}");
    }
}

#[test]
fn deno_renders_the_react_page_like_native_deno() {
    let script = repo().join("tests/fixtures/deno/render.js");
    let app = repo().join("js/renderer.js");
    let args = [
        "run",
        "--no-config",
        "--allow-read",
        script.to_str().expect("UTF-8 path"),
        app.to_str().expect("UTF-8 path"),
    ];
    let native = native(&deno(), &args, DENO_ENV);
    assert!(native
        .stdout
        .starts_with(b"200 text/html;charset=UTF-8\n<!DOCTYPE html>"));
    let vm = in_vm(&deno(), &[script.clone(), app.clone()], &args, DENO_ENV);
    assert_same_output("deno render.js js/renderer.js", &native, &vm);
}

#[test]
fn deno_web_apis_match_native_deno() {
    let script = repo().join("tests/fixtures/deno/webapis.js");
    let args = ["run", "--no-config", script.to_str().expect("UTF-8 path")];
    let native = native(&deno(), &args, DENO_ENV);
    assert!(
        String::from_utf8_lossy(&native.stdout).contains("setTimeout order microtask t0 t20 t40")
    );
    let vm = in_vm(&deno(), std::slice::from_ref(&script), &args, DENO_ENV);
    assert_same_output("deno webapis.js", &native, &vm);
}
