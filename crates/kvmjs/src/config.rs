//! tinykvm.json: libvmod-tinykvm's tenant schema (groups of shared settings and programs),
//! plus a few kvmjs keys for routing and pools. Comments are allowed. An unknown key is a
//! warning naming it; an invalid value is an error naming the key and the value.
//!
//! An entry with `group` or `filename` (or `uri`) is a program; any other entry is a group.
//! A program starts from the built-in group "test", then its group, then its own keys.
//! Sizes are in MB and times in seconds, as upstream. A `filename` ending in `.js` is a
//! JavaScript app run by the kvmjs guest program (QuickJS), or by the deno CLI with
//! `"engine": "deno"` (engine.rs); a Linux program that serves HTTP itself sets `listen`.

use crate::engine::{self, DenoApp, DenoSearch, Engine, Explicit};
use kvmjs_vm::config::{ListenSpec, Warmup};
use kvmjs_vm::{AllowedPath, VmConfig};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// A value is wrong.
    #[error("{path}: {entry}: key \"{key}\": {problem}, got {value}")]
    Value {
        /// The file.
        path: PathBuf,
        /// Program or group name.
        entry: String,
        /// The key.
        key: String,
        /// What was expected.
        problem: String,
        /// The value found.
        value: String,
    },
    /// Something else is wrong with an entry.
    #[error("{path}: {entry}: {problem}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// Program or group name.
        entry: String,
        /// The problem.
        problem: String,
    },
}

/// One program as the server runs it.
#[derive(Clone, Debug)]
pub struct Program {
    /// Name (the tinykvm.json key).
    pub name: String,
    /// Guest ELF to boot.
    pub guest: PathBuf,
    /// VM settings.
    pub vm: VmConfig,
    /// VMs serving it in parallel, at most.
    pub concurrency: usize,
    /// VMs forked when the pool starts (at most `concurrency`); the pool adds VMs when
    /// requests wait, up to `concurrency` (`"start_vms"`, default: all of them).
    pub start_vms: usize,
    /// Host header values that route here.
    pub hosts: Vec<String>,
    /// URL prefix that routes here.
    pub prefix: Option<String>,
    /// Unload after this long without requests (None: never); with the hybrid keep-alive,
    /// the upper bound of its keep-alive window.
    pub idle_timeout: Option<Duration>,
    /// Keep-alive by the hybrid-histogram policy (`"keep_alive": "hybrid"`; the pools'
    /// `crate::keepalive`) instead of the fixed `idle_timeout`.
    pub hybrid_keep_alive: bool,
    /// Requests that may wait for a VM.
    pub queue_size: usize,
    /// How long a request may wait for a VM before a 503.
    pub queue_timeout: Duration,
    /// What runs it, for logs and metrics: "quickjs", "deno", "server" (a Linux program
    /// listening on `listen`) or "elf" (a guest speaking the request API).
    pub engine: &'static str,
    /// Where the program's warm snapshot is kept between runs (`"snapshot_file"`;
    /// crate::snapfile): restored at pool start when valid, else written after the boot.
    pub snapshot_file: Option<PathBuf>,
}

// An explicit path (relative to this file's directory) so the fuzz targets, which load
// this file with #[path], find it too.
#[path = "config/fetch.rs"]
mod fetch;
#[path = "config/keys.rs"]
mod keys;
use keys::IGNORED;
pub use keys::KEYS;

struct Ctx<'a> {
    path: &'a Path,
    dir: &'a Path,
    entry: &'a str,
}

impl Ctx<'_> {
    fn bad(&self, key: &str, problem: &str, v: &Value) -> ConfigError {
        ConfigError::Value {
            path: self.path.to_path_buf(),
            entry: format!("\"{}\"", self.entry),
            key: key.to_string(),
            problem: problem.to_string(),
            value: v.to_string(),
        }
    }

    fn entry_err(&self, problem: String) -> ConfigError {
        ConfigError::Entry {
            path: self.path.to_path_buf(),
            entry: format!("\"{}\"", self.entry),
            problem,
        }
    }

    fn num(&self, key: &str, v: &Value, min: f64, max: f64) -> Result<f64, ConfigError> {
        v.as_f64()
            .filter(|n| *n >= min && *n <= max)
            .ok_or_else(|| self.bad(key, &format!("expected a number from {min} to {max}"), v))
    }

    fn int(&self, key: &str, v: &Value, min: u64, max: u64) -> Result<u64, ConfigError> {
        v.as_u64()
            .filter(|n| *n >= min && *n <= max)
            .ok_or_else(|| {
                self.bad(
                    key,
                    &format!("expected a whole number from {min} to {max}"),
                    v,
                )
            })
    }

    fn boolean(&self, key: &str, v: &Value) -> Result<bool, ConfigError> {
        v.as_bool()
            .ok_or_else(|| self.bad(key, "expected true or false", v))
    }

    fn string(&self, key: &str, v: &Value) -> Result<String, ConfigError> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad(key, "expected a string", v))
    }

    fn strings(&self, key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.bad(key, "expected a list of strings", v))
                })
                .collect(),
            _ => Err(self.bad(key, "expected a list of strings", v)),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// Settings as they accumulate from groups to a program.
type Settings = Map<String, Value>;

/// Reads `path`, returning the programs and the warnings to log.
pub fn load(
    path: &Path,
    guest_js: &Path,
    default_engine: Engine,
) -> Result<(Vec<Program>, Vec<String>), ConfigError> {
    let text = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let stripped = json_comments::StripComments::new(text.as_slice());
    let doc: Value = serde_json::from_reader(stripped).map_err(|source| ConfigError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let dir = dir.canonicalize().unwrap_or(dir);
    parse(&doc, path, &dir, guest_js, default_engine)
}

/// Parses a tinykvm.json document; `.js` programs without `engine` run on `default_engine`.
pub fn parse(
    doc: &Value,
    path: &Path,
    dir: &Path,
    guest_js: &Path,
    default_engine: Engine,
) -> Result<(Vec<Program>, Vec<String>), ConfigError> {
    let top = doc.as_object().ok_or_else(|| ConfigError::Entry {
        path: path.to_path_buf(),
        entry: "top level".into(),
        problem: "expected an object of groups and programs".into(),
    })?;
    let is_program = |o: &Settings| {
        o.contains_key("group") || o.contains_key("filename") || o.contains_key("uri")
    };
    let mut groups: BTreeMap<String, Settings> = BTreeMap::new();
    groups.insert("test".into(), Settings::new());
    let mut warnings = Vec::new();
    for (name, v) in top {
        let ctx = Ctx {
            path,
            dir,
            entry: name,
        };
        let o = v
            .as_object()
            .ok_or_else(|| ctx.entry_err(format!("expected an object, got {v}")))?;
        if !is_program(o) {
            groups.entry(name.clone()).or_default().extend(o.clone());
        }
    }
    let mut programs = Vec::new();
    for (name, v) in top {
        let o = v.as_object().expect("checked above");
        if !is_program(o) {
            continue;
        }
        let ctx = Ctx {
            path,
            dir,
            entry: name,
        };
        let group = match o.get("group") {
            Some(g) => ctx.string("group", g)?,
            None => "test".into(),
        };
        let mut s = groups.get("test").cloned().unwrap_or_default();
        match groups.get(&group) {
            Some(g) => s.extend(g.clone()),
            None => return Err(ctx.entry_err(format!("group \"{group}\" is not defined"))),
        }
        s.extend(o.clone());
        let p = program(&ctx, &s, guest_js, default_engine, &mut warnings)?;
        if let Some(f) = &p.snapshot_file {
            if let Some(other) = programs
                .iter()
                .find(|q: &&Program| q.snapshot_file.as_ref() == Some(f))
            {
                return Err(ctx.entry_err(format!(
                    "snapshot_file {} is also program \"{}\"'s; give each program its own file (a group's snapshot_file applies to every program of the group)",
                    f.display(),
                    other.name
                )));
            }
        }
        programs.push(p);
    }
    if programs.is_empty() {
        return Err(ConfigError::Entry {
            path: path.to_path_buf(),
            entry: "top level".into(),
            problem: "no programs: an entry needs \"filename\" (or \"group\") to be a program"
                .into(),
        });
    }
    snapshot_files_out_of_reach(path, &programs)?;
    Ok((programs, warnings))
}

/// A snapshot file holds a program's memory (its environment, its keys): no other
/// program's guest may be able to read it through its allowed paths (its app directory
/// included).
fn snapshot_files_out_of_reach(path: &Path, programs: &[Program]) -> Result<(), ConfigError> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    for p in programs {
        let Some(f) = &p.snapshot_file else {
            continue;
        };
        let file = match (f.parent(), f.file_name()) {
            (Some(dir), Some(name)) => canon(dir).join(name),
            _ => f.clone(),
        };
        for q in programs.iter().filter(|q| q.name != p.name) {
            let reach = q.vm.allowed_paths.iter().find(|a| {
                let real = canon(&a.real);
                file == real || (a.prefix && file.starts_with(&real))
            });
            if let Some(a) = reach {
                return Err(ConfigError::Entry {
                    path: path.to_path_buf(),
                    entry: format!("\"{}\"", p.name),
                    problem: format!(
                        "snapshot_file {} lies under {}, which program \"{}\" may read: its guest could read this program's memory; keep snapshot files out of every program's app directory and allowed_paths",
                        f.display(),
                        a.real.display(),
                        q.name
                    ),
                });
            }
        }
    }
    Ok(())
}

fn program(
    ctx: &Ctx<'_>,
    s: &Settings,
    guest_js: &Path,
    default_engine: Engine,
    warnings: &mut Vec<String>,
) -> Result<Program, ConfigError> {
    const MB: u64 = 1 << 20;
    let mut vm = VmConfig {
        name: ctx.entry.to_string(),
        ..Default::default()
    };
    let mut p = Program {
        name: ctx.entry.to_string(),
        guest: PathBuf::new(),
        vm: VmConfig::default(),
        concurrency: 2,
        start_vms: 0,
        hosts: Vec::new(),
        prefix: None,
        idle_timeout: Some(Duration::from_secs(300)),
        hybrid_keep_alive: false,
        queue_size: 256,
        queue_timeout: Duration::from_secs(10),
        engine: "elf",
        snapshot_file: None,
    };
    let mut filename = None;
    let mut address_space = None;
    let mut engine = None;
    let mut listen = None;
    let mut deno = None;
    let mut explicit = Explicit::default();
    for (k, v) in s {
        match k.as_str() {
            "group" => {}
            "filename" => filename = Some(ctx.string(k, v)?),
            "uri" => {
                return Err(ctx.bad(k, "remote programs are not supported by kvmjs; download the file and use \"filename\"", v))
            }
            "concurrency" => p.concurrency = ctx.int(k, v, 1, 255)? as usize,
            "start_vms" => p.start_vms = ctx.int(k, v, 1, 255)? as usize,
            "engine" => {
                let e = ctx.string(k, v)?;
                engine = Some(Engine::parse(&e).ok_or_else(|| ctx.bad(k, "expected \"quickjs\" or \"deno\"", v))?);
            }
            "listen" => {
                let a = ctx.string(k, v)?;
                listen = Some(engine::parse_listen(&a).map_err(|problem| ctx.bad(k, &problem, v))?);
            }
            "deno" => {
                let d = ctx.string(k, v)?;
                if d.is_empty() {
                    return Err(ctx.bad(k, "expected the path of the deno CLI", v));
                }
                deno = Some(ctx.resolve(&d));
            }
            "max_boot_time" => {
                explicit.max_boot_time = true;
                vm.max_boot_time = Duration::from_secs_f64(ctx.num(k, v, 0.001, 3600.0)?)
            }
            "max_request_time" => vm.max_request_time = Duration::from_secs_f64(ctx.num(k, v, 0.001, 3600.0)?),
            "max_memory" => {
                explicit.max_memory = true;
                vm.max_memory = ctx.int(k, v, 1, 512 * 1024)? * MB
            }
            "address_space" => {
                explicit.address_space = true;
                address_space = Some(ctx.int(k, v, 16, 128 * 1024)? * MB)
            }
            "max_request_memory" => vm.max_request_memory = ctx.int(k, v, 1, 512 * 1024)? * MB,
            "max_request_body" => vm.max_request_body = ctx.int(k, v, 0, 4096)? * MB,
            "ephemeral" => vm.ephemeral = ctx.boolean(k, v)?,
            "hugepages" => vm.hugepages = ctx.boolean(k, v)?,
            // kvmjs's own: the guest-side fast path for programs that listen (default on).
            "fast_path" => vm.fast_path = ctx.boolean(k, v)?,
            "hugepage_arena_size" => vm.hugepages |= ctx.int(k, v, 0, 512 * 1024)? > 0,
            "environment" => vm.environment = ctx.strings(k, v)?,
            "main_arguments" => vm.main_arguments = ctx.strings(k, v)?,
            "current_working_directory" => vm.current_working_directory = ctx.string(k, v)?,
            "allowed_paths" => vm.allowed_paths = allowed_paths(ctx, k, v)?,
            "warmup" => vm.warmup = Some(warmup(ctx, k, v)?),
            "fetch" => vm.fetch = fetch::parse(ctx, k, v)?,
            "host" => p.hosts = ctx.strings(k, v)?.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            "prefix" => {
                let pre = ctx.string(k, v)?;
                if !pre.starts_with('/') {
                    return Err(ctx.bad(k, "expected a URL path starting with '/'", v));
                }
                p.prefix = Some(pre);
            }
            "idle_timeout" => {
                let t = ctx.num(k, v, 0.0, 1e9)?;
                p.idle_timeout = (t > 0.0).then(|| Duration::from_secs_f64(t));
            }
            "keep_alive" => {
                p.hybrid_keep_alive = match ctx.string(k, v)?.as_str() {
                    "fixed" => false,
                    "hybrid" => true,
                    _ => return Err(ctx.bad(k, "expected \"fixed\" (idle_timeout) or \"hybrid\" (the hybrid-histogram policy, capped by idle_timeout)", v)),
                }
            }
            "max_background_time" => {
                vm.max_background_time = Duration::from_secs_f64(ctx.num(k, v, 0.0, 3600.0)?)
            }
            "snapshot_file" => {
                let f = ctx.string(k, v)?;
                if f.is_empty() || f.ends_with('/') {
                    return Err(ctx.bad(k, "expected the path of a file kvmjs may write (its directory must exist)", v));
                }
                let f = ctx.resolve(&f);
                if !f.parent().is_some_and(Path::is_dir) {
                    return Err(ctx.bad(k, "its directory does not exist; create it or choose another path", v));
                }
                p.snapshot_file = Some(f);
            }
            "queue_size" => p.queue_size = ctx.int(k, v, 1, 1 << 20)? as usize,
            "queue_timeout" => p.queue_timeout = Duration::from_secs_f64(ctx.num(k, v, 0.001, 3600.0)?),
            other if IGNORED.contains(&other) => {
                warnings.push(format!("{}: \"{}\": key \"{other}\" is not supported by kvmjs and is ignored", ctx.path.display(), ctx.entry));
            }
            other => warnings.push(format!("{}: \"{}\": unknown key \"{other}\" (ignored)", ctx.path.display(), ctx.entry)),
        }
    }
    vm.address_space = address_space.unwrap_or(vm.address_space).max(vm.max_memory);
    let Some(filename) = filename else {
        return Err(ctx.entry_err("program needs \"filename\" (a static ELF or a .js app)".into()));
    };
    let file = ctx.resolve(&filename);
    let file = file
        .canonicalize()
        .map_err(|e| ctx.entry_err(format!("filename \"{}\": {e}", file.display())))?;
    let is_js = file.extension().is_some_and(|e| e == "js" || e == "mjs");
    match (is_js, engine.unwrap_or(default_engine)) {
        (true, Engine::Quickjs) => {
            if let Some(a) = listen {
                return Err(ctx.bad("listen", "only for programs that serve HTTP themselves (a Linux server, or engine \"deno\"); the QuickJS guest gets requests through the kvmjs API", &Value::String(a.to_string())));
            }
            // A JS app: the kvmjs guest runs it, and may read the app's directory.
            let mut args = vec![file.to_string_lossy().into_owned()];
            args.append(&mut vm.main_arguments);
            vm.main_arguments = args;
            let dir = engine::app_dir(&file).map_err(|e| ctx.entry_err(e.to_string()))?;
            vm.allowed_paths.push(AllowedPath::same(dir));
            p.guest = guest_js.to_path_buf();
            p.engine = Engine::Quickjs.name();
        }
        (true, Engine::Deno) => {
            let deno = DenoSearch::from_process(deno, Some(ctx.dir))
                .find()
                .map_err(|e| ctx.entry_err(e.to_string()))?;
            let adapter = engine::adapter_file().map_err(|e| ctx.entry_err(e.to_string()))?;
            let listen = match listen {
                Some(a) => a,
                None => engine::parse_listen(engine::DEFAULT_LISTEN).expect("a valid default"),
            };
            let app = DenoApp {
                deno: &deno,
                adapter: &adapter,
                app: &file,
                listen,
            };
            engine::configure_deno(&mut vm, &app, explicit)
                .map_err(|e| ctx.entry_err(e.to_string()))?;
            p.guest = deno;
            p.engine = Engine::Deno.name();
        }
        (false, e) => {
            if engine == Some(Engine::Deno) {
                return Err(ctx.bad("engine", "only for .js apps; a Linux program runs as it is (set \"listen\" if it serves HTTP itself)", &Value::String(e.name().into())));
            }
            if let Some(addr) = listen {
                // A Linux server, as `kvmjs run` runs a program: it may read its own file
                // and /proc/self/exe names it.
                vm.listen = Some(ListenSpec { addr });
                vm.allowed_paths.push(AllowedPath::same(&file));
                vm.program_path = Some(file.to_string_lossy().into_owned());
                p.engine = "server";
            }
            p.guest = file;
        }
    }
    if let (Some(f), Some(_)) = (&p.snapshot_file, &vm.listen) {
        return Err(ctx.bad("snapshot_file", "snapshot files hold programs that take requests through the kvmjs API (QuickJS apps, request-API guests); a program that listens (engine deno, a Linux server) keeps a listening socket and connections a file cannot hold: remove snapshot_file", &Value::String(f.display().to_string())));
    }
    if p.start_vms == 0 {
        p.start_vms = p.concurrency;
    } else if p.start_vms > p.concurrency {
        let n = serde_json::Value::from(p.start_vms);
        return Err(ctx.bad("start_vms", "more VMs at start than the program's concurrency (the most VMs it runs): lower start_vms or raise concurrency", &n));
    }
    if p.prefix.is_none() && p.hosts.is_empty() {
        p.prefix = Some(format!("/{}", ctx.entry));
    }
    p.vm = vm;
    Ok(p)
}

fn allowed_paths(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<Vec<AllowedPath>, ConfigError> {
    let items = v
        .as_array()
        .ok_or_else(|| ctx.bad(key, "expected a list", v))?;
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(AllowedPath::same(ctx.resolve(s))),
            Value::Object(o) => {
                let real = o
                    .get("real")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ctx.bad(key, "each object needs a \"real\" path", item))?;
                if o.get("writable").and_then(Value::as_bool) == Some(true) {
                    return Err(ctx.bad(
                        key,
                        "writable paths are not supported (guests read files only)",
                        item,
                    ));
                }
                let real = ctx.resolve(real);
                let virtual_path = o
                    .get("virtual")
                    .and_then(Value::as_str)
                    .map_or_else(|| real.to_string_lossy().into_owned(), str::to_string);
                let prefix = o
                    .get("prefix")
                    .and_then(Value::as_bool)
                    .unwrap_or_else(|| real.is_dir());
                Ok(AllowedPath {
                    virtual_path,
                    real,
                    prefix,
                })
            }
            _ => Err(ctx.bad(key, "expected a path string or an object", item)),
        })
        .collect()
}

fn warmup(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<Warmup, ConfigError> {
    let mut w = Warmup {
        num_requests: 20,
        url: "/".into(),
        method: "GET".into(),
        headers: Vec::new(),
    };
    let o = v
        .as_object()
        .ok_or_else(|| ctx.bad(key, "expected an object", v))?;
    for (k, x) in o {
        match k.as_str() {
            "num_requests" => {
                w.num_requests = ctx.int("warmup.num_requests", x, 0, 100_000)? as u32
            }
            "url" => w.url = ctx.string("warmup.url", x)?,
            "method" => w.method = ctx.string("warmup.method", x)?,
            "headers" => w.headers = ctx.strings("warmup.headers", x)?,
            "exact" => {}
            other => return Err(ctx.bad(key, &format!("unknown warmup key \"{other}\""), v)),
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests;
