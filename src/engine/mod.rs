//! The JS engine behind one module boundary: QuickJS-ng through rquickjs. The rest of the
//! guest sees [`Engine::load_app`] and [`Engine::handle`] with plain Rust request and
//! response types, so another engine (V8) can sit behind the same interface later.

pub mod clock;
pub mod loader;
pub mod natives;
pub mod random;

use crate::options::Options;
use clock::Clock;
use rquickjs::context::EvalOptions;
use rquickjs::{
    Array, CatchResultExt, CaughtError, Context, Function, Module, Object, Persistent, Promise,
    Runtime, TypedArray, Value,
};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod prelude {
    include!(concat!(env!("OUT_DIR"), "/prelude.rs"));
}

/// A request as the engine needs it.
#[derive(Debug, Default)]
pub struct HttpRequest<'a> {
    /// Method.
    pub method: Cow<'a, str>,
    /// Absolute URL.
    pub url: String,
    /// Header fields as name/value pairs.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Body (None: no body).
    pub body: Option<&'a [u8]>,
}

/// A response body.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// Text, sent as UTF-8.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Body {
    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Text(s) => s.as_bytes(),
            Body::Bytes(b) => b,
        }
    }
}

/// A response from the app (or an error response made by the engine).
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Body,
}

impl HttpResponse {
    /// A plain-text response made by the engine itself.
    pub fn text(status: u16, msg: &str) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain;charset=UTF-8".into())],
            body: Body::Text(msg.to_string()),
        }
    }
}

/// Why a handler did not produce a response.
#[derive(Debug, PartialEq)]
enum Failure {
    CpuLimit,
    OutOfMemory,
    NeverSettles,
    Other(String),
}

/// The QuickJS engine with one app loaded.
pub struct Engine {
    // `ctx` and the persistent handles must go before `rt`.
    glue: Persistent<Object<'static>>,
    ctx: Context,
    rt: Runtime,
    opts: Options,
    clock: Clock,
    /// CPU deadline in µs of `clock` (0: none).
    deadline_us: Arc<AtomicU64>,
    interrupted: Arc<AtomicBool>,
    /// Whether waiting forever is fine because a host timer ends the request.
    host_timeout: bool,
}

fn caught(e: CaughtError<'_>) -> String {
    match e {
        CaughtError::Exception(ex) => {
            let msg = ex.message().unwrap_or_default();
            let stack = ex.stack().unwrap_or_default();
            let name: String = ex.get("name").unwrap_or_else(|_| "Error".into());
            if stack.trim().is_empty() {
                format!("{name}: {msg}")
            } else {
                format!("{name}: {msg}\n{}", stack.trim_end())
            }
        }
        CaughtError::Value(v) => format!("uncaught value: {v:?}"),
        CaughtError::Error(e) => e.to_string(),
    }
}

fn is_oom(msg: &str) -> bool {
    msg.contains("out of memory") || msg.starts_with("uncaught value: Value(Null")
}

impl Engine {
    /// Creates the runtime, installs the Web API prelude and the native functions.
    pub fn new(opts: Options, clock: Clock, wall_ms: f64, in_vm: bool) -> Result<Engine, String> {
        let rt = Runtime::new().map_err(|e| format!("cannot create the QuickJS runtime: {e}"))?;
        rt.set_memory_limit(opts.memory_limit);
        rt.set_max_stack_size(opts.stack_size);
        rt.set_loader(loader::FsResolver, loader::FsLoader);
        let deadline_us = Arc::new(AtomicU64::new(0));
        let interrupted = Arc::new(AtomicBool::new(false));
        let (d, i) = (deadline_us.clone(), interrupted.clone());
        rt.set_interrupt_handler(Some(Box::new(move || {
            let dl = d.load(Ordering::Relaxed);
            if dl != 0 && (clock.now_ms() * 1000.0) as u64 > dl {
                i.store(true, Ordering::Relaxed);
                return true;
            }
            false
        })));
        let ctx =
            Context::full(&rt).map_err(|e| format!("cannot create the QuickJS context: {e}"))?;
        let glue = ctx.with(|ctx| -> Result<Persistent<Object<'static>>, String> {
            natives::install(&ctx, clock, wall_ms, in_vm).map_err(|e| e.to_string())?;
            for (name, src) in prelude::PRELUDE {
                let mut eo = EvalOptions::default();
                eo.global = true;
                eo.strict = true;
                eo.filename = Some(format!("kvmjs:{name}"));
                ctx.eval_with_options::<(), _>(*src, eo)
                    .catch(&ctx)
                    .map_err(|e| format!("prelude {name} failed: {}", caught(e)))?;
            }
            let g = ctx.globals();
            let glue: Object = g
                .get("__kvmjs")
                .map_err(|e| format!("prelude defines no __kvmjs: {e}"))?;
            // Internal hooks leave the global object: apps cannot reach them.
            for k in ["__kvmjs", "__native", "__kvmjsBody", "__kvmjsTimers"] {
                g.remove(k).map_err(|e| e.to_string())?;
            }
            Ok(Persistent::save(&ctx, glue))
        })?;
        Ok(Engine {
            glue,
            ctx,
            rt,
            opts,
            clock,
            deadline_us,
            interrupted,
            host_timeout: in_vm,
        })
    }

    fn call_glue<'js, R: rquickjs::FromJs<'js>>(
        ctx: &rquickjs::Ctx<'js>,
        glue: &Persistent<Object<'static>>,
        name: &str,
        args: impl rquickjs::function::IntoArgs<'js>,
    ) -> Result<R, String> {
        let g = glue.clone().restore(ctx).map_err(|e| e.to_string())?;
        let f: Function = g.get(name).map_err(|e| e.to_string())?;
        f.call(args).catch(ctx).map_err(caught)
    }

    /// Evaluates the app module; fails when it throws or registers no handler.
    pub fn load_app(&mut self, path: &str, env: &[(String, String)]) -> Result<(), String> {
        let source = std::fs::read(path).map_err(|e| format!("cannot read the app {path}: {e}"))?;
        let glue = self.glue.clone();
        let (module, promise) = self.ctx.with(|ctx| -> Result<_, String> {
            let env_obj = Object::new(ctx.clone()).map_err(|e| e.to_string())?;
            for (k, v) in env {
                env_obj
                    .set(k.as_str(), v.as_str())
                    .map_err(|e| e.to_string())?;
            }
            Self::call_glue::<()>(&ctx, &glue, "setEnv", (env_obj,))?;
            let declared = Module::declare(ctx.clone(), path, source)
                .catch(&ctx)
                .map_err(caught)?;
            let (m, p) = declared.eval().catch(&ctx).map_err(caught)?;
            let ns = m.namespace().catch(&ctx).map_err(caught)?;
            Ok((Persistent::save(&ctx, ns), Persistent::save(&ctx, p)))
        })?;
        self.set_deadline(self.opts.cpu_limit_ms.max(1000.0));
        let r = self.drive(&promise);
        self.set_deadline(0.0);
        match r {
            Ok(()) => {}
            Err(Failure::CpuLimit) => {
                return Err(format!("{path}: top-level code exceeded the CPU limit"))
            }
            Err(Failure::OutOfMemory) => {
                return Err(format!("{path}: out of memory while loading"))
            }
            Err(Failure::NeverSettles) => {
                return Err(format!("{path}: top-level await never settles"))
            }
            Err(Failure::Other(m)) => return Err(m),
        }
        self.ctx.with(|ctx| -> Result<(), String> {
            let ns = module.restore(&ctx).map_err(|e| e.to_string())?;
            let ok: bool = Self::call_glue(&ctx, &glue, "useModule", (ns,))?;
            if ok {
                Ok(())
            } else {
                Err(format!("{path} registers no handler: export default {{ fetch(request, env, ctx) }} or call Deno.serve(handler)"))
            }
        })
    }

    fn set_deadline(&self, budget_ms: f64) {
        self.interrupted.store(false, Ordering::Relaxed);
        let d = if budget_ms > 0.0 {
            ((self.clock.now_ms() + budget_ms) * 1000.0) as u64
        } else {
            0
        };
        self.deadline_us.store(d, Ordering::Relaxed);
    }

    /// Runs jobs and timers until `p` settles.
    fn drive(&self, p: &Persistent<Promise<'static>>) -> Result<(), Failure> {
        loop {
            loop {
                match self.rt.execute_pending_job() {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        if self.interrupted.load(Ordering::Relaxed) {
                            return Err(Failure::CpuLimit);
                        }
                        let msg = e.0.with(|ctx| {
                            caught(CaughtError::from_error(&ctx, rquickjs::Error::Exception))
                        });
                        if is_oom(&msg) {
                            return Err(Failure::OutOfMemory);
                        }
                        natives::log(
                            3,
                            &format!("uncaught exception in a job: {msg}"),
                            self.host_timeout,
                        );
                    }
                }
            }
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(Failure::CpuLimit);
            }
            let glue = self.glue.clone();
            let state = self.ctx.with(|ctx| -> Result<Option<i32>, Failure> {
                let promise = p
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| Failure::Other(e.to_string()))?;
                match promise.state() {
                    rquickjs::promise::PromiseState::Resolved => Ok(None),
                    rquickjs::promise::PromiseState::Rejected => {
                        let r: rquickjs::Result<Value> = promise.result().expect("settled");
                        Err(Failure::Other(caught(r.catch(&ctx).expect_err("rejected"))))
                    }
                    rquickjs::promise::PromiseState::Pending => {
                        let next: f64 = Self::call_glue(&ctx, &glue, "timersNext", ())
                            .map_err(Failure::Other)?;
                        Ok(Some(next as i32))
                    }
                }
            });
            match state {
                Ok(None) => return Ok(()),
                Err(Failure::Other(m)) if is_oom(&m) => return Err(Failure::OutOfMemory),
                Err(f) => return Err(f),
                Ok(Some(next)) if next >= 0 => {
                    if next > 0 {
                        std::thread::sleep(Duration::from_millis(next as u64));
                    }
                    self.ctx
                        .with(|ctx| Self::call_glue::<f64>(&ctx, &glue, "timersRun", ()))
                        .map_err(Failure::Other)?;
                }
                Ok(Some(_)) if self.host_timeout => {
                    // Nothing can settle the promise: wait for the host's request timer.
                    std::thread::sleep(Duration::from_secs(3600));
                }
                Ok(Some(_)) => return Err(Failure::NeverSettles),
            }
        }
    }

    /// Runs the app's handler for one request.
    pub fn handle(&mut self, req: &HttpRequest<'_>) -> HttpResponse {
        let glue = self.glue.clone();
        let debug = self.opts.debug;
        self.set_deadline(self.opts.cpu_limit_ms);
        let started = self
            .ctx
            .with(|ctx| -> Result<Persistent<Promise<'static>>, String> {
                let headers = Array::new(ctx.clone()).map_err(|e| e.to_string())?;
                for (i, (k, v)) in req.headers.iter().enumerate() {
                    let pair = Array::new(ctx.clone()).map_err(|e| e.to_string())?;
                    pair.set(0, k.as_ref()).map_err(|e| e.to_string())?;
                    pair.set(1, v.as_ref()).map_err(|e| e.to_string())?;
                    headers.set(i, pair).map_err(|e| e.to_string())?;
                }
                let body: Value = match req.body {
                    Some(b) => TypedArray::<u8>::new_copy(ctx.clone(), b)
                        .map_err(|e| e.to_string())?
                        .into_value(),
                    None => Value::new_null(ctx.clone()),
                };
                let p: Promise = Self::call_glue(
                    &ctx,
                    &glue,
                    "handle",
                    (req.method.as_ref(), req.url.as_str(), headers, body, debug),
                )?;
                Ok(Persistent::save(&ctx, p))
            });
        let result = match started {
            Ok(p) => self.drive(&p).and_then(|()| self.take_result(&p)),
            Err(_) if self.interrupted.load(Ordering::Relaxed) => Err(Failure::CpuLimit),
            Err(m) if is_oom(&m) => Err(Failure::OutOfMemory),
            Err(m) => Err(Failure::Other(m)),
        };
        self.set_deadline(0.0);
        match result {
            Ok(r) => r,
            Err(f) => self.failure_response(f),
        }
    }

    fn take_result(&self, p: &Persistent<Promise<'static>>) -> Result<HttpResponse, Failure> {
        self.ctx.with(|ctx| {
            let other = |e: rquickjs::Error| Failure::Other(e.to_string());
            let promise = p.clone().restore(&ctx).map_err(other)?;
            let arr: Array = promise.result().expect("settled").map_err(other)?;
            let status: i32 = arr.get(0).map_err(other)?;
            let flat: Vec<String> = arr.get(1).map_err(other)?;
            let body: Value = arr.get(2).map_err(other)?;
            let body = if let Some(s) = body.as_string() {
                Body::Text(s.to_string().map_err(other)?)
            } else {
                let t = TypedArray::<u8>::from_value(body).map_err(other)?;
                // SAFETY: the array is alive for this scope and no JS runs while we copy.
                let bytes = unsafe { t.as_bytes() }.unwrap_or_default();
                Body::Bytes(bytes.to_vec())
            };
            let headers = flat
                .chunks_exact(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect();
            Ok(HttpResponse {
                status: u16::try_from(status).unwrap_or(500),
                headers,
                body,
            })
        })
    }

    fn failure_response(&self, f: Failure) -> HttpResponse {
        let glue = self.glue.clone();
        // Leftover timers of a failed request must not fire in the next one.
        let _ = self
            .ctx
            .with(|ctx| Self::call_glue::<()>(&ctx, &glue, "timersClear", ()));
        match f {
            Failure::CpuLimit => {
                natives::log(
                    3,
                    &format!(
                        "handler exceeded the CPU limit ({} ms)",
                        self.opts.cpu_limit_ms
                    ),
                    self.host_timeout,
                );
                HttpResponse::text(503, "CPU time limit exceeded\n")
            }
            Failure::OutOfMemory => {
                natives::log(3, "handler ran out of memory", self.host_timeout);
                self.rt.run_gc();
                HttpResponse::text(500, "out of memory\n")
            }
            Failure::NeverSettles => {
                HttpResponse::text(500, "the handler's promise never settles\n")
            }
            Failure::Other(m) => {
                natives::log(3, &format!("handler failed: {m}"), self.host_timeout);
                let first = m.lines().next().unwrap_or("error");
                let text = if self.opts.debug {
                    m.clone()
                } else {
                    first.to_string()
                };
                HttpResponse::text(500, &format!("Internal Server Error: {text}\n"))
            }
        }
    }

    /// Collects garbage (before the snapshot, so it holds a compact heap).
    pub fn gc(&self) {
        self.rt.run_gc();
        if let Some(t) = std::env::var("KVMJS_GC_THRESHOLD")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            self.rt.set_gc_threshold(t);
        }
    }

    /// Re-keys randomness for a new request.
    pub fn reseed(&self, fresh: [u64; 2]) {
        random::reseed(fresh);
        let glue = self.glue.clone();
        let _ = self
            .ctx
            .with(|ctx| Self::call_glue::<()>(&ctx, &glue, "reseed", ()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_messages_are_recognised() {
        assert!(is_oom("InternalError: out of memory"));
        assert!(!is_oom("TypeError: x is not a function"));
    }
}

#[cfg(test)]
mod app_tests {
    use super::*;

    fn engine_with(files: &[(&str, &str)]) -> (Engine, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "kvmjs-engine-{}-{}",
            std::process::id(),
            files[0].0.replace('.', "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, src) in files {
            std::fs::write(dir.join(name), src).unwrap();
        }
        let app = dir.join(files[0].0).to_string_lossy().into_owned();
        let opts = Options::parse([app.clone(), "--debug".into()]).unwrap();
        let mut e = Engine::new(opts, Clock::from_env(), 0.0, false).unwrap();
        e.load_app(&app, &[]).unwrap_or_else(|m| panic!("{m}"));
        (e, dir)
    }

    fn get(e: &mut Engine) -> HttpResponse {
        e.handle(&HttpRequest {
            method: "GET".into(),
            url: "http://localhost/".into(),
            headers: vec![],
            body: None,
        })
    }

    #[test]
    fn static_and_dynamic_imports_including_json() {
        let (mut e, dir) = engine_with(&[
            ("main.js", "import d from './d.json';\nimport { v } from './m.js';\nexport default { async fetch() { const m = await import('./m.js'); return new Response(`${d.a} ${v} ${m.v}`); } };\n"),
            ("m.js", "export const v = 42;\n"),
            ("d.json", "{\"a\": 1}\n"),
        ]);
        let r = get(&mut e);
        assert_eq!(
            (r.status, r.body.as_bytes()),
            (200, &b"1 42 42"[..]),
            "{:?}",
            r.body
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
