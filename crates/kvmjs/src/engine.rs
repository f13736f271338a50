//! The engine a `.js` app runs on: the kvmjs QuickJS guest (the request API, one VM exit
//! per request), or the deno CLI (V8), an unmodified Linux server the VM hands each request
//! to as a connection on its listening socket (`VmConfig::listen`). For deno this module
//! finds the binary, materialises the adapter (js/deno-adapter.js, built into kvmjs) and
//! builds the command line, environment and allowed paths.

use kvmjs_vm::config::ListenSpec;
use kvmjs_vm::{AllowedPath, VmConfig};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    #[error("cannot write the deno adapter to {path}: {source}; set TMPDIR to a private writable directory")]
    Adapter {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The adapter directory is not private.
    #[error("{0} is not a private directory (owned by this user, no write access for others); remove it or set TMPDIR elsewhere")]
    AdapterDir(PathBuf),
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

/// What a dynamically linked program reads besides its own files (read-only): the
/// dynamic loader, shared libraries and the loader cache. Each is added when it exists.
pub const SYSTEM_LIB_PATHS: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/ld.so.cache",
];

/// The adapter, built into kvmjs so a deployed binary needs no js/ directory.
pub const ADAPTER_SOURCE: &str = include_str!("../../../js/deno-adapter.js");

/// Places to look for the deno CLI, in order.
#[derive(Debug, Default)]
pub struct DenoSearch {
    /// tinykvm.json `deno` (already resolved against the config's directory).
    pub configured: Option<PathBuf>,
    /// `KVMJS_DENO`.
    pub env: Option<OsString>,
    /// Directories that may hold `.deno/bin/deno` (where .ci/install-deps puts it).
    pub near: Vec<PathBuf>,
    /// `PATH`.
    pub path_var: Option<OsString>,
}

impl DenoSearch {
    /// The search for this process: `configured`, then `KVMJS_DENO`, then `.deno/bin/deno`
    /// in `config_dir` and in the directories above the kvmjs executable (a checkout's
    /// target/*/release/kvmjs finds the checkout's .deno), then `PATH`.
    pub fn from_process(configured: Option<PathBuf>, config_dir: Option<&Path>) -> DenoSearch {
        let mut near: Vec<PathBuf> = config_dir.into_iter().map(Path::to_path_buf).collect();
        if let Ok(exe) = std::env::current_exe() {
            near.extend(exe.ancestors().skip(1).take(5).map(Path::to_path_buf));
        }
        near.dedup();
        DenoSearch {
            configured,
            env: std::env::var_os("KVMJS_DENO"),
            near,
            path_var: std::env::var_os("PATH"),
        }
    }

    /// The deno binary, resolved (the guest runs the real file, not a symlink). A path
    /// named explicitly (the config key, else `KVMJS_DENO`) must exist: falling back to
    /// another deno would hide the mistake. Otherwise the first `.deno/bin/deno`, then
    /// `deno` on `PATH`.
    pub fn find(&self) -> Result<PathBuf, EngineError> {
        let explicit = match (
            &self.configured,
            self.env.as_ref().filter(|p| !p.is_empty()),
        ) {
            (Some(p), _) => Some((p.clone(), "tinykvm.json \"deno\"")),
            (None, Some(p)) => Some((PathBuf::from(p), "KVMJS_DENO")),
            (None, None) => None,
        };
        let mut candidates: Vec<(PathBuf, &str)> = Vec::new();
        let mut tried = Vec::new();
        match explicit {
            Some(c) => candidates.push(c),
            None => {
                tried.push("tinykvm.json \"deno\" (not set)".to_string());
                tried.push("KVMJS_DENO (not set)".to_string());
                for d in &self.near {
                    candidates.push((d.join(".deno/bin/deno"), ".ci/install-deps location"));
                }
                match &self.path_var {
                    Some(path) => {
                        for d in std::env::split_paths(path).filter(|d| d.is_absolute()) {
                            candidates.push((d.join("deno"), "PATH"));
                        }
                    }
                    None => tried.push("PATH (not set)".into()),
                }
            }
        }
        for (p, why) in candidates {
            if p.is_file() {
                return p.canonicalize().map_err(|e| EngineError::DenoNotFound {
                    tried: vec![format!("{} ({why}): {e}", p.display())],
                });
            }
            tried.push(format!("{} ({why})", p.display()));
        }
        Err(EngineError::DenoNotFound { tried })
    }
}

/// Writes the built-in adapter into a private directory (`$TMPDIR/kvmjs-<uid>`, mode 0700)
/// and returns its path. It is rewritten on every start (a rename), so the guest reads
/// exactly the adapter this kvmjs was built with.
pub fn adapter_file() -> Result<PathBuf, EngineError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // Once per process; the lock also keeps two threads off the same temporary file.
    static PATH: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut written = PATH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = written.as_ref() {
        return Ok(p.clone());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("kvmjs-{uid}"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EngineError::Adapter { path, source }
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&dir)(e)),
    }
    // Someone else's directory (or a symlink to one) in a shared /tmp could hand the guest
    // another adapter: use it only if it is ours and nobody else may write to it.
    let meta = std::fs::symlink_metadata(&dir).map_err(io(&dir))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return Err(EngineError::AdapterDir(dir));
    }
    let path = dir.join(format!("deno-adapter-{:016x}.js", fnv1a(ADAPTER_SOURCE)));
    let tmp = dir.join(format!(".deno-adapter-{}.tmp", std::process::id()));
    std::fs::write(&tmp, ADAPTER_SOURCE).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    *written = Some(path.clone());
    Ok(path)
}

/// A stable 64-bit hash (FNV-1a), naming the adapter file by its content.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

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
/// - `--allow-net=LISTEN`, `--allow-read=APP_DIR`, `--allow-env=KEYS`: deno's own
///   permissions match what the VM allows (the VM enforces them regardless).
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
        format!(
            "--allow-read={}",
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

/// Turns `vm` (as parsed, with `main_arguments` the program's own) into deno serving `a`:
/// the command line, environment, allowed paths, listen address and V8-sized defaults.
pub fn configure_deno(vm: &mut VmConfig, a: &DenoApp<'_>, explicit: Explicit) {
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
    for dir in SYSTEM_LIB_PATHS {
        let p = Path::new(dir);
        if let Ok(real) = p.canonicalize() {
            vm.allowed_paths.push(AllowedPath {
                virtual_path: (*dir).to_owned(),
                prefix: real.is_dir(),
                real,
            });
        }
    }
    vm.allowed_paths.push(AllowedPath::same(a.deno));
    vm.allowed_paths.push(AllowedPath::same(a.adapter));
    if let Some(d) = a.app.parent() {
        vm.allowed_paths.push(AllowedPath::same(d));
    }
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
    // deno starts in ~20 ms natively, but every system call of its ~2,000 is a VM exit.
    if !explicit.max_boot_time {
        vm.max_boot_time = vm.max_boot_time.max(Duration::from_secs(60));
    }
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
    fn search_order_and_error_names_every_place() {
        let d = tmp("search");
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::create_dir_all(b.join(".deno/bin")).unwrap();
        std::fs::create_dir_all(a.join("bin")).unwrap();
        let near_deno = b.join(".deno/bin/deno");
        std::fs::write(&near_deno, "x").unwrap();
        let path_deno = a.join("bin/deno");
        std::fs::write(&path_deno, "x").unwrap();
        let path_var = std::env::join_paths([a.join("bin")]).unwrap();
        // The config key wins, then KVMJS_DENO, then .deno/bin/deno, then PATH.
        let s = DenoSearch {
            configured: Some(path_deno.clone()),
            env: Some(near_deno.clone().into()),
            near: vec![b.clone()],
            path_var: Some(path_var.clone()),
        };
        assert_eq!(s.find().unwrap(), path_deno.canonicalize().unwrap());
        let s = DenoSearch {
            env: Some(path_deno.clone().into()),
            near: vec![b.clone()],
            ..Default::default()
        };
        assert_eq!(s.find().unwrap(), path_deno.canonicalize().unwrap());
        let s = DenoSearch {
            near: vec![a.clone(), b.clone()],
            path_var: Some(path_var.clone()),
            ..Default::default()
        };
        assert_eq!(s.find().unwrap(), near_deno.canonicalize().unwrap());
        let s = DenoSearch {
            near: vec![a.clone()],
            path_var: Some(path_var),
            ..Default::default()
        };
        assert_eq!(s.find().unwrap(), path_deno.canonicalize().unwrap());
        // A named path must exist: no fallback to another deno.
        for s in [
            DenoSearch {
                configured: Some(d.join("nope/deno")),
                env: Some(path_deno.clone().into()),
                near: vec![b.clone()],
                ..Default::default()
            },
            DenoSearch {
                env: Some(d.join("env/deno").into()),
                near: vec![b.clone()],
                ..Default::default()
            },
        ] {
            let e = s.find().unwrap_err().to_string();
            assert!(
                e.contains("/deno (") && !e.contains("install-deps location"),
                "{e}"
            );
        }
        // Nothing found: the error lists each place and what to do.
        let s = DenoSearch {
            near: vec![a.clone()],
            path_var: Some(std::env::join_paths([d.join("empty")]).unwrap()),
            ..Default::default()
        };
        let e = s.find().unwrap_err().to_string();
        for want in [
            "tinykvm.json \"deno\" (not set)",
            "KVMJS_DENO (not set)",
            "a/.deno/bin/deno (.ci/install-deps location)",
            "empty/deno (PATH)",
            ".ci/install-deps",
        ] {
            assert!(e.contains(want), "missing {want:?} in {e}");
        }
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
        configure_deno(&mut vm, &a, Explicit::default());
        let dir = d.display().to_string();
        let want: Vec<String> = [
            "run",
            "--no-config",
            "--no-lock",
            "--no-remote",
            "--no-code-cache",
            "--allow-net=127.0.0.1:9000",
            &format!("--allow-read={dir}"),
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
        configure_deno(&mut vm, &a, explicit);
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
    fn adapter_is_written_privately_with_its_source() {
        let p = adapter_file().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), ADAPTER_SOURCE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        assert_eq!(adapter_file().unwrap(), p);
    }
}
