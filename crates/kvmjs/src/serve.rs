//! `kvmjs serve`: load tinykvm.json (or one JS app), listen, route, and shut down
//! gracefully on SIGINT/SIGTERM.

use crate::config::{self, ConfigError, Program};
use crate::engine::{self, DenoApp, DenoSearch, Engine, EngineError};
use crate::http::{self, Limits, State};
use crate::metrics::Metrics;
use crate::pool::ProgramPool;
use kvmjs_vm::{AllowedPath, VmConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors of `kvmjs serve`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The app file is missing.
    #[error("cannot serve {path}: {source}")]
    App {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The guest binary is missing.
    #[error("the kvmjs guest program was not found at {0}; build it (`cargo build --release`) or pass --guest")]
    Guest(PathBuf),
    /// Huge pages are requested but none are reserved.
    #[error("program {program:?} sets hugepages, but {reason}; reserve them, e.g. `echo {pages} > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`, or set hugepages to false")]
    HugePages {
        /// Program.
        program: String,
        /// What was found.
        reason: String,
        /// Pages to reserve.
        pages: u64,
    },
    /// The host cannot run the programs (the probe says why).
    #[error("{0}")]
    Host(String),
    /// Socket problems.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A limit flag is out of range.
    #[error("{flag} {value}: {problem}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and what to pass instead.
        problem: String,
    },
    /// The engine cannot be set up (deno missing, adapter not writable).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Runtime problems.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// tinykvm.json with the programs to serve.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Guest program for .js apps (default: kvmjs-guest next to this executable).
    #[arg(long)]
    guest: Option<PathBuf>,
    /// Seconds to receive a request head before 408.
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a request body gets before 408, plus one second per --body-min-rate bytes
    /// received.
    #[arg(long, default_value_t = 10.0)]
    body_timeout: f64,
    /// Bytes per second a request body must keep up to be given more time (0: only
    /// --body-timeout counts).
    #[arg(long, default_value_t = 16384)]
    body_min_rate: u64,
    /// MB of request bodies buffered at once, all requests together; a body that would
    /// go beyond gets 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    max_body_memory: u64,
    /// Open connections at most; at the cap a new connection replaces the oldest idle or
    /// slow one, or gets 503. Default: what the open-file limit leaves for connections,
    /// at most 16384.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Threads for the HTTP front (VMs run on threads of their own); default: the CPUs
    /// this process may use.
    #[arg(long)]
    io_threads: Option<usize>,
    /// Engine for .js apps: the APP.js served without --config, and with --config every
    /// .js program that does not set "engine".
    #[arg(long, value_enum, default_value_t = Engine::Quickjs)]
    engine: Engine,
    /// JS app to serve when there is no --config.
    app: Option<PathBuf>,
}

/// The QuickJS guest: `arg`, else $KVMJS_GUEST, else kvmjs-guest in the directory of
/// `beside` (the kvmjs executable, or the VMOD's shared object).
fn guest_path(arg: Option<PathBuf>, beside: Option<&Path>) -> Result<PathBuf, ServeError> {
    let p = arg
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| std::env::var_os("KVMJS_GUEST").map(PathBuf::from))
        .or_else(|| beside.and_then(|e| e.parent().map(|d| d.join("kvmjs-guest"))))
        .unwrap_or_else(|| PathBuf::from("kvmjs-guest"));
    if p.is_file() {
        Ok(p)
    } else {
        Err(ServeError::Guest(p))
    }
}

/// The single program served without a config: everything routes to it. `guest` is the
/// QuickJS guest (only read for that engine).
fn app_program(
    app: &Path,
    engine: Engine,
    guest: impl FnOnce() -> Result<PathBuf, ServeError>,
) -> Result<Program, ServeError> {
    let app = app.canonicalize().map_err(|source| ServeError::App {
        path: app.to_path_buf(),
        source,
    })?;
    let name = app
        .file_stem()
        .map_or_else(|| "app".into(), |s| s.to_string_lossy().into_owned());
    let mut vm = VmConfig {
        name: name.clone(),
        main_arguments: vec![app.to_string_lossy().into_owned()],
        ..Default::default()
    };
    let guest = match engine {
        Engine::Quickjs => {
            vm.allowed_paths
                .push(AllowedPath::same(engine::app_dir(&app)?));
            guest()?
        }
        Engine::Deno => {
            let deno = DenoSearch::from_process(None, None).find()?;
            let adapter = engine::adapter_file()?;
            let listen = engine::parse_listen(engine::DEFAULT_LISTEN).expect("a valid default");
            vm.main_arguments.clear();
            let a = DenoApp {
                deno: &deno,
                adapter: &adapter,
                app: &app,
                listen,
            };
            engine::configure_deno(&mut vm, &a, engine::Explicit::default())?;
            deno
        }
    };
    Ok(Program {
        name,
        guest,
        vm,
        concurrency: 2,
        start_vms: 2,
        hosts: Vec::new(),
        prefix: Some("/".into()),
        idle_timeout: None,
        hybrid_keep_alive: false,
        queue_size: 256,
        queue_timeout: Duration::from_secs(10),
        engine: engine.name(),
        snapshot_file: None,
    })
}

/// Checks that huge pages exist for every program that asks for them.
fn check_hugepages(programs: &[Program]) -> Result<(), ServeError> {
    for p in programs.iter().filter(|p| p.vm.hugepages) {
        let need = p.vm.address_space.div_ceil(2 << 20) * p.concurrency as u64;
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| {
            meminfo
                .lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        // Guest memory asks for 2 MiB pages by name (MAP_HUGE_2MB), so count that pool,
        // not the default size's (1 GiB on some hosts).
        let pool = |f: &str| {
            std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/hugepages-2048kB/{f}"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let (free, total) = match (pool("free_hugepages"), pool("nr_hugepages")) {
            (Some(f), Some(t)) => (f, t),
            _ => (field("HugePages_Free:"), field("HugePages_Total:")),
        };
        if free == 0 {
            return Err(ServeError::HugePages {
                program: p.name.clone(),
                reason: format!("no 2 MB huge pages are free ({total} reserved)"),
                pages: need,
            });
        }
        if free < need {
            tracing::warn!(program = %p.name, "{free} huge pages are free; {need} may be needed (address_space x concurrency)");
        }
    }
    Ok(())
}

/// The front's limits from the flags; raises the open-file limit, which the connection cap
/// is derived from.
fn limits(a: &ServeArgs, vms: usize) -> Result<Limits, ServeError> {
    let secs = |flag: &'static str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 86400.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(ServeError::Flag {
                flag,
                value: v.to_string(),
                problem: "expected seconds, more than 0 and at most 86400".into(),
            })
        }
    };
    if a.max_body_memory == 0 || a.max_body_memory > 1 << 20 {
        return Err(ServeError::Flag {
            flag: "--max-body-memory",
            value: a.max_body_memory.to_string(),
            problem: "expected MB from 1 to 1048576".into(),
        });
    }
    let fd = match http::conn::raise_fd_limit() {
        Ok(l) => {
            if l.after > l.before {
                tracing::info!(
                    "open-file limit raised from {} to {} (the hard limit)",
                    l.before,
                    l.after
                );
            } else {
                tracing::info!("open-file limit {} (already the hard limit)", l.after);
            }
            l.after
        }
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            1024
        }
    };
    let safe = http::conn::default_max_connections(fd, vms);
    let max_connections = match a.max_connections {
        Some(0) => {
            return Err(ServeError::Flag {
                flag: "--max-connections",
                value: "0".into(),
                problem: "expected at least 1".into(),
            })
        }
        Some(n) => {
            if n as u64 + http::conn::reserved_fds(vms) > fd {
                tracing::warn!("--max-connections {n} leaves fewer than {} of the {fd} file descriptors for VMs and the server; connections may fail with EMFILE (at most {safe} is safe)", http::conn::reserved_fds(vms));
            }
            n
        }
        None => safe,
    };
    let l = Limits {
        header_timeout: secs("--header-timeout", a.header_timeout)?,
        body: http::body::BodyPace {
            timeout: secs("--body-timeout", a.body_timeout)?,
            min_rate: a.body_min_rate,
        },
        max_body_memory: (a.max_body_memory << 20) as usize,
        max_connections,
        ..Limits::default()
    };
    tracing::info!(
        "limits: {} connections, {} MB of request bodies, body time {:?} + 1 s per {} bytes",
        l.max_connections,
        a.max_body_memory,
        l.body.timeout,
        l.body.min_rate
    );
    Ok(l)
}

async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

/// The programs of `config` (tinykvm.json), checked against the host. `guest` is the
/// QuickJS guest (`None`: $KVMJS_GUEST, else kvmjs-guest next to `beside`), needed only
/// when a .js program runs on QuickJS; `engine` is the engine of .js programs that name
/// none.
pub fn load_programs(
    config: &Path,
    guest: Option<PathBuf>,
    beside: Option<&Path>,
    engine: Engine,
) -> Result<Vec<Program>, ServeError> {
    // The fast path's in-memory files are made now, before any VM thread is confined by
    // seccomp (which does not allow memfd_create); a failure is logged where it matters.
    let _ = kvmjs_vm::fastpath::files();
    let guest = guest_path(guest, beside);
    // Programs with ELF guests need no guest binary; .js programs do (checked below).
    let js_guest = guest.as_ref().map_or_else(
        |e| match e {
            ServeError::Guest(p) => p.clone(),
            _ => PathBuf::new(),
        },
        Clone::clone,
    );
    let (programs, warnings) = config::load(config, &js_guest, engine)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if programs.iter().any(|p| p.guest == js_guest) {
        guest?;
    }
    check_host(&programs)?;
    Ok(programs)
}

/// Refuses programs the host cannot run (huge pages missing, address space too large);
/// returns the host's capabilities.
fn check_host(programs: &[Program]) -> Result<&'static kvmjs_vm::Caps, ServeError> {
    check_hugepages(programs)?;
    let caps = crate::host_caps().map_err(ServeError::Host)?;
    for p in programs {
        caps.check_address_space(p.vm.address_space)
            .map_err(|e| ServeError::Host(format!("program {:?}: {e}", p.name)))?;
    }
    Ok(caps)
}

/// The pools of `programs`, reporting to `metrics`, each logged with its route.
pub fn pools(programs: Vec<Program>, metrics: &Arc<Metrics>) -> Vec<Arc<ProgramPool>> {
    let pools: Vec<Arc<ProgramPool>> = programs
        .into_iter()
        .map(|p| Arc::new(ProgramPool::new(p, metrics.clone())))
        .collect();
    for p in &pools {
        let route = match (&p.cfg.hosts[..], &p.cfg.prefix) {
            ([], Some(pre)) => format!("prefix {pre}"),
            (hosts, pre) => format!("host {hosts:?} prefix {pre:?}"),
        };
        tracing::info!(program = %p.cfg.name, "{route}, engine {}, concurrency {}, ephemeral {}", p.cfg.engine, p.cfg.concurrency, p.cfg.vm.ephemeral);
    }
    pools
}

/// Unloads idle programs (idle_timeout), checking twice a second; runs until aborted.
pub async fn reap(pools: Vec<Arc<ProgramPool>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for p in &pools {
            p.unload_if_idle().await;
        }
    }
}

/// The host's labels for the metrics' host info.
pub fn host_info() -> Vec<(String, String)> {
    kvmjs_vm::Hypervisor::get()
        .map(|hv| {
            hv.caps()
                .labels()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .unwrap_or_default()
}

pub fn serve(a: ServeArgs) -> Result<(), ServeError> {
    let programs = match &a.config {
        Some(path) => {
            let exe = std::env::current_exe().ok();
            load_programs(path, a.guest.clone(), exe.as_deref(), a.engine)?
        }
        None => {
            let app = a
                .app
                .clone()
                .unwrap_or_else(|| PathBuf::from("js/hello.js"));
            let exe = std::env::current_exe().ok();
            let programs = vec![app_program(&app, a.engine, || {
                guest_path(a.guest.clone(), exe.as_deref())
            })?];
            check_host(&programs)?;
            programs
        }
    };
    let io_threads = a.io_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if io_threads == 0 {
        return Err(ServeError::Host("--io-threads must be at least 1".into()));
    }
    tracing::info!("HTTP front on {io_threads} threads");
    let limits = limits(&a, programs.iter().map(|p| p.concurrency).sum())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .enable_all()
        .build()?;
    let host_info = host_info();
    rt.block_on(async move {
        let metrics = Arc::new(Metrics::with_host_info(host_info));
        let pools = pools(programs, &metrics);
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: a.listen,
                source,
            })?;
        tracing::info!("listening on http://{}", a.listen);
        let reaper = tokio::spawn(reap(pools.clone()));
        let state = Arc::new(State::new(pools.clone(), metrics, &limits));
        http::serve(listener, state, limits, signal()).await?;
        reaper.abort();
        for p in &pools {
            p.shutdown().await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}
