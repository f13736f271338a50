//! The engine a `.js` app runs on: the kvmjs QuickJS guest (the request API, one VM exit
//! per request), or the deno CLI (V8), an unmodified Linux server the VM hands each request
//! to as a connection on its listening socket (`VmConfig::listen`). For deno this module
//! finds the binary (engine/search.rs), materialises the adapter (js/deno-adapter.js,
//! built into kvmjs; engine/adapter.rs) and builds the command line, environment and
//! allowed paths. On both engines an app may read its own directory, never a system one.

use kvmjs_vm::config::{ListenSpec, Warmup};
use kvmjs_vm::{AllowedPath, VmConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// Explicit paths: the fuzz targets load this file by #[path] as well.
#[path = "engine/adapter.rs"]
mod adapter;
#[path = "engine/search.rs"]
mod search;

pub use adapter::AdapterError;
pub use search::DenoSearch;

/// Writes the adapter (js/deno-adapter.js, built into kvmjs) into `$TMPDIR/kvmjs-<uid>/`
/// once per process, through checked directory fds (engine/adapter.rs), and returns its
/// path.
pub fn adapter_file() -> Result<PathBuf, EngineError> {
    Ok(adapter::adapter_file()?)
}

const MIB: u64 = 1 << 20;

/// Errors setting up an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No deno binary anywhere kvmjs looks.
    #[error("the deno CLI was not found; tried {}. Run .ci/install-deps (installs .deno/bin/deno), set KVMJS_DENO, or set \"deno\" in tinykvm.json", tried.join(", "))]
    DenoNotFound {
        /// Every place looked at, with where the path came from.
        tried: Vec<String>,
    },
    /// The adapter could not be written.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// The app's directory would expose the host's system files.
    #[error("{app}: an app may read its whole directory, and {dir} is a system directory (the whole filesystem or the host's system files); move the app into a directory of its own")]
    AppDir {
        /// The app.
        app: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
}

/// Which engine runs a `.js` app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The kvmjs guest (QuickJS) speaking the request API.
    #[default]
    Quickjs,
    /// The deno CLI (V8) behind js/deno-adapter.js, fed connections on its listener.
    Deno,
}

impl Engine {
    /// The tinykvm.json spelling.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Quickjs => "quickjs",
            Engine::Deno => "deno",
        }
    }

    /// Parses the tinykvm.json value.
    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "quickjs" => Some(Engine::Quickjs),
            "deno" => Some(Engine::Deno),
            _ => None,
        }
    }
}

/// Where a program with `engine: "deno"` listens unless it sets `listen`. Only the VM's
/// virtual network sees it, so every program may use the same one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// What the config set explicitly (the deno engine's defaults fill in the rest).
#[derive(Clone, Copy, Debug, Default)]
pub struct Explicit {
    /// `address_space` was set.
    pub address_space: bool,
    /// `max_memory` was set.
    pub max_memory: bool,
    /// `max_boot_time` was set.
    pub max_boot_time: bool,
}

/// A `.js` app under deno.
pub struct DenoApp<'a> {
    /// The deno binary (resolved).
    pub deno: &'a Path,
    /// The adapter file.
    pub adapter: &'a Path,
    /// The app module (absolute).
    pub app: &'a Path,
    /// Where it listens in the VM.
    pub listen: SocketAddr,
}

/// deno's command line (argv[1..]) for `app`, then the program's own `main_arguments`.
///
/// - `--no-config --no-lock`: no deno.json/lockfile search up the app's directories; the
///   app runs the same wherever it lies (and reads only what is allowed).
/// - `--no-remote`: the VM has no outbound network, so a URL import fails at once with
///   deno's own message instead of at connect().
/// - `--no-code-cache`: DENO_DIR lives in the VM's scratch filesystem and is reset with
///   it, so a code cache could only be written, never reused; writing it costs boot-time
///   system calls (research: ~300 pwrite64) and memory.
/// - `--allow-net=LISTEN`, `--allow-read=APP_DIR,/dev/urandom`, `--allow-env=KEYS`: deno's
///   own permissions match what the VM allows (the VM enforces them regardless); the adapter
///   reads /dev/urandom for randomness that differs between requests.
/// - `--v8-flags=--single-threaded`: no V8 worker threads (research §1.4: main, tokio
///   blocking pool and signal thread remain). The VM runs every thread on one vCPU, so
///   workers buy no parallelism, only futex wake-ups (exits) and more state in the
///   snapshot; from a snapshot the per-request dirty pages are the same (§3: ~77 hello,
///   ~320 renderer).
pub fn deno_arguments(
    a: &DenoApp<'_>,
    env_keys: &[String],
    main_arguments: &[String],
) -> Vec<String> {
    let app_dir = a.app.parent().unwrap_or(Path::new("/"));
    let mut args: Vec<String> = vec![
        "run".into(),
        "--no-config".into(),
        "--no-lock".into(),
        "--no-remote".into(),
        "--no-code-cache".into(),
        format!("--allow-net={}", a.listen),
        // deno splits permission lists at commas; `,,` is a literal comma (deno ≥ 2.0).
        // /dev/urandom: the adapter's per-request randomness (js/deno-adapter.js).
        format!(
            "--allow-read={},/dev/urandom",
            app_dir.display().to_string().replace(',', ",,")
        ),
    ];
    if !env_keys.is_empty() {
        args.push(format!("--allow-env={}", env_keys.join(",")));
    }
    args.push("--v8-flags=--single-threaded".into());
    args.push(a.adapter.to_string_lossy().into_owned());
    args.push(a.app.to_string_lossy().into_owned());
    args.push(a.listen.to_string());
    args.push(env_keys.join(","));
    args.extend(main_arguments.iter().cloned());
    args
}

/// Variables deno gets unless the program's `environment` sets them: a home and a cache
/// in the VM's scratch filesystem (/tmp, reset with the VM), no colours, no update check
/// (it would try the network), no permission prompts (there is no terminal).
pub const DENO_ENVIRONMENT: &[(&str, &str)] = &[
    ("HOME", "/tmp"),
    ("DENO_DIR", "/tmp/deno"),
    ("NO_COLOR", "1"),
    ("DENO_NO_UPDATE_CHECK", "1"),
    ("DENO_NO_PROMPT", "1"),
];

/// Warm-up requests the deno engine sends before its snapshot unless `warmup` is set.
///
/// More than the QuickJS guest's 20: what an ephemeral request costs depends on where in
/// V8's heap cycle the snapshot falls, and that moves with the count, not steadily
/// (measured 2026-12-02, js/renderer.js, deno 2.9.6, VM exits per request with the
/// in-guest fast path): 20 → 5 (V8 maps a fresh 256 KiB new-space page in every request,
/// 31 shadow faults), 40 → 2, 50–75 → 1, 80 → 2, 100 → 1, 110 → 8 (a GC in every
/// request: 262 faults, p50 ~11 ms), 120 and 150 → 2, 200 → 1. 60 is the middle of the
/// widest good window seen; js/hello.js costs 1 exit at any count. Each warm-up adds
/// ~2 ms (renderer) / ~0.6 ms (hello) to the boot. Another app's good counts differ: set
/// `warmup.num_requests` when `kvmjs_vm_exits_total` per request shows the same cliff.
pub const DENO_WARMUP_REQUESTS: u32 = 60;

/// Turns `vm` (as parsed, with `main_arguments` the program's own) into deno serving `a`:
/// the command line, environment, allowed paths, listen address and V8-sized defaults.
/// Fails, leaving `vm` as it was, when the app lies in a system directory (`app_dir`).
pub fn configure_deno(
    vm: &mut VmConfig,
    a: &DenoApp<'_>,
    explicit: Explicit,
) -> Result<(), EngineError> {
    let app_dir = app_dir(a.app)?;
    let env_keys: Vec<String> = vm
        .environment
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    vm.main_arguments = deno_arguments(a, &env_keys, &vm.main_arguments);
    for (k, v) in DENO_ENVIRONMENT {
        if !env_keys.iter().any(|e| e == k) {
            vm.environment.push(format!("{k}={v}"));
        }
    }
    vm.allowed_paths.extend(AllowedPath::system_libs());
    vm.allowed_paths.push(AllowedPath::same(a.deno));
    vm.allowed_paths.push(AllowedPath::same(a.adapter));
    vm.allowed_paths.push(AllowedPath::same(app_dir));
    // /proc/self/exe: deno maps its own binary.
    vm.program_path = Some(a.deno.to_string_lossy().into_owned());
    vm.listen = Some(ListenSpec { addr: a.listen });
    // V8 reserves a 512 MiB code range and more: the sizes `kvmjs run` gives deno.
    if !explicit.address_space {
        vm.address_space = vm.address_space.max(4096 * MIB);
    }
    if !explicit.max_memory {
        vm.max_memory = 2048 * MIB;
    }
    vm.address_space = vm.address_space.max(vm.max_memory);
    // As the QuickJS guest warms an app with `GET /` before its pause: without it every
    // request from the snapshot would run V8's cold paths (parse, compile, inline caches)
    // again; measured on tests/js/apps/isolation.js: 229 dirty pages and 586 requests/s
    // cold, 91 pages and 1,853/s warm. `"warmup": {"num_requests": 0}` turns it off.
    if vm.warmup.is_none() {
        vm.warmup = Some(Warmup {
            num_requests: DENO_WARMUP_REQUESTS,
            url: "/".into(),
            method: "GET".into(),
            headers: Vec::new(),
        });
    }
    // deno starts in ~20 ms natively, but every system call of its ~2,000 is a VM exit.
    if !explicit.max_boot_time {
        vm.max_boot_time = vm.max_boot_time.max(Duration::from_secs(60));
    }
    Ok(())
}

/// Directories no app may live in directly (besides any directly under /usr): an app may
/// read its whole directory (both engines), and each of these holds the host's system
/// files, or, for `/`, everything.
pub const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
    "/root", "/run", "/sbin", "/sys", "/usr", "/var",
];

/// The directory the app (absolute, resolved) may read, on either engine; an error when it
/// is a system directory (`SYSTEM_DIRS`, or directly under /usr).
pub fn app_dir(app: &Path) -> Result<&Path, EngineError> {
    let dir = app.parent().unwrap_or(app);
    if SYSTEM_DIRS.iter().any(|d| dir == Path::new(d)) || dir.parent() == Some(Path::new("/usr")) {
        return Err(EngineError::AppDir {
            app: app.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(dir)
}

/// Parses a listen address ("127.0.0.1:8000", "[::1]:8000").
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| "expected an IP address and port, e.g. \"127.0.0.1:8000\"".to_string())?;
    if addr.port() == 0 {
        return Err(
            "expected a fixed port, not 0 (the VM snapshots the program listening on it)".into(),
        );
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kvmjs-engine-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn engine_names_round_trip() {
        for e in [Engine::Quickjs, Engine::Deno] {
            assert_eq!(Engine::parse(e.name()), Some(e));
        }
        assert_eq!(Engine::parse("v8"), None);
        assert_eq!(Engine::default(), Engine::Quickjs);
    }

    #[test]
    fn deno_command_line_environment_and_paths() {
        let d = tmp("args");
        let app = d.join("app.js");
        std::fs::write(&app, "export default {}").unwrap();
        let (deno, adapter) = (
            Path::new("/opt/deno"),
            Path::new("/run/kvmjs/deno-adapter.js"),
        );
        let listen: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut vm = VmConfig {
            environment: vec!["GREETING=hi".into(), "HOME=/data".into()],
            main_arguments: vec!["--flag".into()],
            ..Default::default()
        };
        let a = DenoApp {
            deno,
            adapter,
            app: &app,
            listen,
        };
        configure_deno(&mut vm, &a, Explicit::default()).unwrap();
        let dir = d.display().to_string();
        let want: Vec<String> = [
            "run",
            "--no-config",
            "--no-lock",
            "--no-remote",
            "--no-code-cache",
            "--allow-net=127.0.0.1:9000",
            &format!("--allow-read={dir},/dev/urandom"),
            "--allow-env=GREETING,HOME",
            "--v8-flags=--single-threaded",
            "/run/kvmjs/deno-adapter.js",
            &app.display().to_string(),
            "127.0.0.1:9000",
            "GREETING,HOME",
            "--flag",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(vm.main_arguments, want);
        // The program's own HOME wins; the rest of deno's environment is added.
        assert!(vm.environment.contains(&"HOME=/data".to_string()));
        assert!(!vm.environment.contains(&"HOME=/tmp".to_string()));
        for e in [
            "DENO_DIR=/tmp/deno",
            "NO_COLOR=1",
            "DENO_NO_UPDATE_CHECK=1",
            "DENO_NO_PROMPT=1",
        ] {
            assert!(vm.environment.contains(&e.to_string()), "{e}");
        }
        let allowed: Vec<&str> = vm
            .allowed_paths
            .iter()
            .map(|p| p.virtual_path.as_str())
            .collect();
        for p in [
            "/opt/deno",
            "/run/kvmjs/deno-adapter.js",
            dir.as_str(),
            "/lib",
        ] {
            assert!(allowed.contains(&p), "{p} not in {allowed:?}");
        }
        assert_eq!(vm.program_path.as_deref(), Some("/opt/deno"));
        assert_eq!(vm.listen, Some(ListenSpec { addr: listen }));
        assert_eq!((vm.address_space, vm.max_memory), (4096 * MIB, 2048 * MIB));
        assert_eq!(vm.max_boot_time, Duration::from_secs(60));
        // No environment: no --allow-env, an empty key list for the adapter.
        let mut vm = VmConfig {
            max_memory: 512 * MIB,
            address_space: 1024 * MIB,
            max_boot_time: Duration::from_secs(5),
            ..Default::default()
        };
        let explicit = Explicit {
            address_space: true,
            max_memory: true,
            max_boot_time: true,
        };
        configure_deno(&mut vm, &a, explicit).unwrap();
        assert!(!vm
            .main_arguments
            .iter()
            .any(|a| a.starts_with("--allow-env")));
        assert_eq!(vm.main_arguments.last().map(String::as_str), Some(""));
        assert_eq!((vm.address_space, vm.max_memory), (1024 * MIB, 512 * MIB));
        assert_eq!(vm.max_boot_time, Duration::from_secs(5));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:8000").unwrap().port(), 8000);
        assert!(parse_listen("[::1]:80").unwrap().is_ipv6());
        for bad in [
            "localhost:8000",
            "127.0.0.1",
            "127.0.0.1:0",
            "8000",
            "1.2.3.4:99999",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_app_in_a_system_directory_is_refused() {
        for app in [
            "/app.js",
            "/etc/app.js",
            "/usr/app.js",
            "/usr/lib/app.js",
            "/usr/share/app.js",
            "/root/app.js",
            "/proc/app.js",
        ] {
            let e = app_dir(Path::new(app)).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{app}: an app may read its whole directory"))
                    && e.contains("move the app into a directory of its own"),
                "{e}"
            );
        }
        for (app, dir) in [
            ("/srv/site/app.js", "/srv/site"),
            ("/usr/local/site/app.js", "/usr/local/site"),
            ("/home/me/app/app.js", "/home/me/app"),
            ("/kvmjs/js/hello.js", "/kvmjs/js"),
        ] {
            assert_eq!(app_dir(Path::new(app)).unwrap(), Path::new(dir));
        }
        // The deno engine refuses it before touching the config.
        let mut vm = VmConfig::default();
        let a = DenoApp {
            deno: Path::new("/opt/deno"),
            adapter: Path::new("/run/kvmjs/deno-adapter.js"),
            app: Path::new("/app.js"),
            listen: "127.0.0.1:9000".parse().unwrap(),
        };
        assert!(matches!(
            configure_deno(&mut vm, &a, Explicit::default()),
            Err(EngineError::AppDir { .. })
        ));
        assert!(vm.main_arguments.is_empty() && vm.allowed_paths.is_empty());
    }
}
