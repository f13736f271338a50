//! The JS engine behind one module boundary: QuickJS-ng through rquickjs. The rest of the
//! guest sees [`Engine::load_app`] and [`Engine::handle`] with plain Rust request and
//! response types, so another engine (V8) can sit behind the same interface later.

pub mod clock;
pub mod crypto;
pub mod encoding;
pub mod fetch;
pub mod heap;
pub mod intl;
mod lazy;
pub mod loader;
pub mod natives;
pub mod random;
mod stream;

use crate::options::Options;
use clock::Clock;
use heap::Heap;
use rquickjs::context::EvalOptions;
use rquickjs::convert::Coerced;
use rquickjs::{
    Array, CatchResultExt, CaughtError, Context, Function, Object, Persistent, Promise, Runtime,
    Type, TypedArray, Value,
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
    /// The start of a body the app is still producing ([`Engine::handle_streaming`]);
    /// [`Engine::stream_body`] produces the rest.
    Stream(Vec<u8>),
}

impl Body {
    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Text(s) => s.as_bytes(),
            Body::Bytes(b) | Body::Stream(b) => b,
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
    /// `ctx.waitUntil` work is left to run after the response ([`Engine::run_background`]).
    pub background: bool,
}

impl HttpResponse {
    /// A plain-text response made by the engine itself.
    pub fn text(status: u16, msg: &str) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain;charset=UTF-8".into())],
            body: Body::Text(msg.to_string()),
            background: false,
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
    /// The QuickJS heap (knows whether it ran out).
    heap: Heap,
}

/// The message for an uncaught exception: an Error's name, message and stack, or the
/// value thrown (`Uncaught null`).
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
        CaughtError::Value(v) => format!("Uncaught {}", thrown_value(&v)),
        CaughtError::Error(e) => e.to_string(),
    }
}

/// A thrown value that is not an Error, as `String(value)` shows it.
fn thrown_value(v: &Value<'_>) -> String {
    match v.type_of() {
        Type::Uninitialized => "exception without a value".into(),
        Type::Symbol => {
            let d = v
                .as_symbol()
                .and_then(|s| s.description().ok())
                .and_then(|d| d.as_string().and_then(|s| s.to_string().ok()));
            format!("Symbol({})", d.unwrap_or_default())
        }
        _ => match v.get::<Coerced<String>>() {
            Ok(Coerced(s)) => s,
            Err(_) => {
                // toString threw (or there is none, as for Object.create(null)).
                let _ = v.ctx().catch();
                "[object Object]".into()
            }
        },
    }
}

/// Whether an exception means that the heap ran out. QuickJS throws an InternalError "out
/// of memory", or `null` when it cannot even allocate that; an app may throw `null` too,
/// so `null` counts only when the heap refused an allocation during this request.
fn is_oom(e: &CaughtError<'_>, heap: &Heap) -> bool {
    match e {
        CaughtError::Exception(ex) => {
            ex.message().as_deref() == Some("out of memory")
                && ex
                    .get::<_, String>("name")
                    .is_ok_and(|n| n == "InternalError")
        }
        CaughtError::Value(v) => {
            heap.exhausted() && matches!(v.type_of(), Type::Null | Type::Uninitialized)
        }
        CaughtError::Error(e) => matches!(e, rquickjs::Error::Allocation),
    }
}

/// What a caught exception means for the request.
fn failure(e: CaughtError<'_>, heap: &Heap) -> Failure {
    if is_oom(&e, heap) {
        Failure::OutOfMemory
    } else {
        Failure::Other(caught(e))
    }
}

/// [`failure`] for an rquickjs error (a pending exception is taken from `ctx`).
fn js_failure(ctx: &rquickjs::Ctx<'_>, heap: &Heap, e: rquickjs::Error) -> Failure {
    failure(CaughtError::from_error(ctx, e), heap)
}

impl Engine {
    /// Creates the runtime, installs the Web API prelude and the native functions.
    pub fn new(opts: Options, clock: Clock, wall_ms: f64, in_vm: bool) -> Result<Engine, String> {
        // The heap enforces --memory-limit itself (QuickJS's own limit stays off).
        let heap = Heap::new(opts.memory_limit);
        let rt = Runtime::new_with_alloc(heap.clone())
            .map_err(|e| format!("cannot create the QuickJS runtime: {e}"))?;
        rt.set_max_stack_size(opts.stack_size);
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
            natives::install(&ctx, clock, wall_ms, in_vm, heap.clone())
                .map_err(|e| e.to_string())?;
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
            for k in [
                "__kvmjs",
                "__native",
                "__kvmjsBody",
                "__kvmjsTimers",
                "__kvmjsLazy",
                "__kvmjsPerformance",
            ] {
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
            heap,
        })
    }

    fn call_glue<'js, R: rquickjs::FromJs<'js>>(
        ctx: &rquickjs::Ctx<'js>,
        glue: &Persistent<Object<'static>>,
        heap: &Heap,
        name: &str,
        args: impl rquickjs::function::IntoArgs<'js>,
    ) -> Result<R, Failure> {
        let g = glue
            .clone()
            .restore(ctx)
            .map_err(|e| js_failure(ctx, heap, e))?;
        let f: Function = g.get(name).map_err(|e| js_failure(ctx, heap, e))?;
        f.call(args).catch(ctx).map_err(|e| failure(e, heap))
    }

    /// Evaluates the app module; fails when it throws or registers no handler. Modules are
    /// named relative to the app's directory, and errors name them so.
    pub fn load_app(&mut self, path: &str, env: &[(String, String)]) -> Result<(), String> {
        let source = std::fs::read(path).map_err(|e| format!("cannot read the app {path}: {e}"))?;
        lazy::note_source(&source);
        let dir = loader::AppDir::of(path);
        let name = std::path::Path::new(path)
            .file_name()
            .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
        self.rt.set_loader(
            loader::FsResolver(dir.clone()),
            loader::FsLoader(dir.clone()),
        );
        self.heap.reset();
        let explain = |f: Failure| match f {
            Failure::CpuLimit => format!("{name}: top-level code exceeded the CPU limit"),
            Failure::OutOfMemory => format!("{name}: out of memory while loading"),
            Failure::NeverSettles => format!("{name}: top-level await never settles"),
            Failure::Other(m) => m,
        };
        let glue = self.glue.clone();
        let heap = self.heap.clone();
        let (module, promise) = self
            .ctx
            .with(|ctx| -> Result<_, Failure> {
                let env_obj = Object::new(ctx.clone()).map_err(|e| js_failure(&ctx, &heap, e))?;
                for (k, v) in env {
                    env_obj
                        .set(k.as_str(), v.as_str())
                        .map_err(|e| js_failure(&ctx, &heap, e))?;
                }
                Self::call_glue::<()>(&ctx, &glue, &heap, "setEnv", (env_obj,))?;
                let declared = loader::declare(&ctx, &name, source)
                    .catch(&ctx)
                    .map_err(|e| failure(e, &heap))?;
                let (m, p) = declared.eval().catch(&ctx).map_err(|e| failure(e, &heap))?;
                let ns = m.namespace().catch(&ctx).map_err(|e| failure(e, &heap))?;
                Ok((Persistent::save(&ctx, ns), Persistent::save(&ctx, p)))
            })
            .map_err(explain)?;
        self.set_deadline(self.opts.cpu_limit_ms.max(1000.0));
        let r = self.drive(&promise);
        self.set_deadline(0.0);
        r.map_err(explain)?;
        let ok = self
            .ctx
            .with(|ctx| -> Result<bool, Failure> {
                let ns = module
                    .restore(&ctx)
                    .map_err(|e| js_failure(&ctx, &heap, e))?;
                Self::call_glue(&ctx, &glue, &heap, "useModule", (ns,))
            })
            .map_err(explain)?;
        if ok {
            Ok(())
        } else {
            Err(format!("{name} registers no handler: export default {{ fetch(request, env, ctx) }} or call Deno.serve(handler)"))
        }
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

    /// Runs promise jobs until none is left. An uncaught exception in a job is logged
    /// and the loop goes on; running out of CPU time or memory ends it.
    fn run_jobs(&self) -> Result<(), Failure> {
        self.run_jobs_until(|| false)
    }

    /// [`Engine::run_jobs`] that also stops when `stop` says so (asked every few jobs).
    fn run_jobs_until(&self, mut stop: impl FnMut() -> bool) -> Result<(), Failure> {
        let heap = &self.heap;
        let mut ran = 0u32;
        loop {
            match self.rt.execute_pending_job() {
                Ok(true) => {
                    ran = ran.wrapping_add(1);
                    if ran.is_multiple_of(16) && stop() {
                        break;
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    if self.interrupted.load(Ordering::Relaxed) {
                        return Err(Failure::CpuLimit);
                    }
                    let f = e.0.with(|ctx| {
                        failure(
                            CaughtError::from_error(&ctx, rquickjs::Error::Exception),
                            heap,
                        )
                    });
                    match f {
                        Failure::Other(msg) => natives::log(
                            3,
                            &format!("uncaught exception in a job: {msg}"),
                            self.host_timeout,
                        ),
                        f => {
                            if f == Failure::OutOfMemory {
                                natives::log(
                                    3,
                                    "out of memory in a promise job",
                                    self.host_timeout,
                                );
                            }
                            return Err(f);
                        }
                    }
                }
            }
        }
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(Failure::CpuLimit);
        }
        if heap.out_of_memory_reported() {
            return Err(Failure::OutOfMemory);
        }
        Ok(())
    }

    /// With no job left: waits for the next timer and runs the timers due. With no timer
    /// either nothing can happen any more: under a host that ends the request on time,
    /// waits for that; otherwise fails.
    fn next_turn(&self) -> Result<(), Failure> {
        let glue = self.glue.clone();
        let heap = &self.heap;
        let cpu = |f: Failure| {
            if self.interrupted.load(Ordering::Relaxed) {
                Failure::CpuLimit
            } else {
                f
            }
        };
        let next = self
            .ctx
            .with(|ctx| Self::call_glue::<f64>(&ctx, &glue, heap, "timersNext", ()))
            .map_err(cpu)? as i32;
        if next >= 0 {
            if next > 0 {
                std::thread::sleep(Duration::from_millis(next as u64));
            }
            self.ctx
                .with(|ctx| Self::call_glue::<f64>(&ctx, &glue, heap, "timersRun", ()))
                .map_err(cpu)?;
            Ok(())
        } else if self.host_timeout {
            // Nothing can settle the promise: wait for the host's request timer.
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        } else {
            Err(Failure::NeverSettles)
        }
    }

    /// Runs jobs and timers until `p` settles.
    fn drive(&self, p: &Persistent<Promise<'static>>) -> Result<(), Failure> {
        let heap = &self.heap;
        loop {
            self.run_jobs()?;
            let state = self.ctx.with(|ctx| -> Result<bool, Failure> {
                let promise = p
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| js_failure(&ctx, heap, e))?;
                match promise.state() {
                    rquickjs::promise::PromiseState::Resolved => Ok(true),
                    rquickjs::promise::PromiseState::Rejected => {
                        let r: rquickjs::Result<Value> = promise.result().expect("settled");
                        Err(failure(r.catch(&ctx).expect_err("rejected"), heap))
                    }
                    rquickjs::promise::PromiseState::Pending => Ok(false),
                }
            });
            match state {
                Ok(true) => return Ok(()),
                Err(_) if self.interrupted.load(Ordering::Relaxed) => {
                    return Err(Failure::CpuLimit)
                }
                Err(f) => return Err(f),
                Ok(false) => self.next_turn()?,
            }
        }
    }

    /// Runs the app's handler for one request; the response is whole (a stream body is
    /// read to its end).
    pub fn handle(&mut self, req: &HttpRequest<'_>) -> HttpResponse {
        self.handle_with(req, false)
    }

    /// [`Engine::handle`] for a host that can stream: a body the app is still producing
    /// when the handler's work has run dry comes back as [`Body::Stream`], and
    /// [`Engine::stream_body`] produces the rest. A body complete by then (a static one,
    /// or a stream whose chunks were all ready) comes back whole, as from `handle`.
    pub fn handle_streaming(&mut self, req: &HttpRequest<'_>) -> HttpResponse {
        self.handle_with(req, true)
    }

    fn handle_with(&mut self, req: &HttpRequest<'_>, stream: bool) -> HttpResponse {
        let glue = self.glue.clone();
        let heap = self.heap.clone();
        let debug = self.opts.debug;
        heap.reset();
        self.set_deadline(self.opts.cpu_limit_ms);
        let started = self
            .ctx
            .with(|ctx| -> Result<Persistent<Promise<'static>>, Failure> {
                let err = |e| js_failure(&ctx, &heap, e);
                let headers = Array::new(ctx.clone()).map_err(err)?;
                for (i, (k, v)) in req.headers.iter().enumerate() {
                    let pair = Array::new(ctx.clone()).map_err(err)?;
                    pair.set(0, k.as_ref()).map_err(err)?;
                    pair.set(1, v.as_ref()).map_err(err)?;
                    headers.set(i, pair).map_err(err)?;
                }
                let body: Value = match req.body {
                    Some(b) => TypedArray::<u8>::new_copy(ctx.clone(), b)
                        .map_err(err)?
                        .into_value(),
                    None => Value::new_null(ctx.clone()),
                };
                let p: Promise = Self::call_glue(
                    &ctx,
                    &glue,
                    &heap,
                    "handle",
                    (
                        req.method.as_ref(),
                        req.url.as_str(),
                        headers,
                        body,
                        debug,
                        // Under the kvmjs host the VM continues after the response.
                        self.host_timeout,
                        stream,
                    ),
                )?;
                Ok(Persistent::save(&ctx, p))
            });
        let result = match started {
            // The jobs after the settling are the body stream's reads: whatever they
            // produce without waiting on a timer goes with the head.
            Ok(p) => self
                .drive(&p)
                .and_then(|()| {
                    if stream {
                        self.run_stream_jobs()
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| self.take_result(&p)),
            Err(_) if self.interrupted.load(Ordering::Relaxed) => Err(Failure::CpuLimit),
            Err(f) => Err(f),
        };
        self.set_deadline(0.0);
        match result {
            Ok(r) => r,
            Err(f) => self.failure_response(f),
        }
    }

    /// Runs the `ctx.waitUntil` work of the last request after its response was sent,
    /// until it settles (rejections were already logged by `waitUntil`). The host bounds
    /// it with max_background_time; the CPU limit does not apply, as on Workers.
    pub fn run_background(&mut self) {
        let glue = self.glue.clone();
        let heap = self.heap.clone();
        let started = self.ctx.with(|ctx| {
            let p: Promise = Self::call_glue(&ctx, &glue, &heap, "background", ())?;
            Ok::<_, Failure>(Persistent::save(&ctx, p))
        });
        let result = started.and_then(|p| self.drive(&p));
        if let Err(f) = result {
            let msg = match f {
                Failure::OutOfMemory => "out of memory".to_string(),
                Failure::CpuLimit => "CPU time limit exceeded".to_string(),
                Failure::NeverSettles => "its promises never settle".to_string(),
                Failure::Other(m) => m,
            };
            natives::log(
                3,
                &format!("waitUntil work failed after the response: {msg}"),
                self.host_timeout,
            );
        }
        let _ = self
            .ctx
            .with(|ctx| Self::call_glue::<()>(&ctx, &glue, &self.heap, "timersClear", ()));
    }

    fn take_result(&self, p: &Persistent<Promise<'static>>) -> Result<HttpResponse, Failure> {
        self.ctx.with(|ctx| {
            let other = |e: rquickjs::Error| js_failure(&ctx, &self.heap, e);
            let promise = p.clone().restore(&ctx).map_err(other)?;
            let arr: Array = promise.result().expect("settled").map_err(other)?;
            let status: i32 = arr.get(0).map_err(other)?;
            let flat: Vec<String> = arr.get(1).map_err(other)?;
            let body: Value = arr.get(2).map_err(other)?;
            let background: bool = arr.get(3).map_err(other)?;
            let body = if let Some(s) = body.as_string() {
                Body::Text(s.to_string().map_err(other)?)
            } else if body.is_null() {
                // A streamed body (handle_streaming): what it made so far.
                let glue = self.glue.clone();
                let (start, state) = Self::stream_take(&ctx, &glue, &self.heap, |b| b.to_vec())?;
                let start = start.unwrap_or_default();
                match state {
                    stream::TakeState::Ended => Body::Bytes(start),
                    stream::TakeState::Pending => Body::Stream(start),
                    // Failed before the head left: the response a throwing handler gets.
                    stream::TakeState::Failed(mut r) => {
                        r.background = background;
                        return Ok(r);
                    }
                }
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
                background,
            })
        })
    }

    fn failure_response(&self, f: Failure) -> HttpResponse {
        let glue = self.glue.clone();
        // Leftover timers of a failed request must not fire in the next one.
        let _ = self
            .ctx
            .with(|ctx| Self::call_glue::<()>(&ctx, &glue, &self.heap, "timersClear", ()));
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

    /// After warm-up: forgets what the warm-up requests recorded (performance marks) and
    /// loads the lazily evaluated prelude groups the app's sources name (src/engine/lazy.rs),
    /// so that they are in the snapshot. A failure is logged.
    pub fn after_warmup(&mut self) {
        let glue = self.glue.clone();
        let groups = lazy::named();
        if let Err(f) = self
            .ctx
            .with(|ctx| Self::call_glue::<()>(&ctx, &glue, &self.heap, "afterWarmup", (groups,)))
        {
            natives::log(3, &format!("after warm-up: {f:?}"), true);
        }
    }

    /// Re-keys randomness for a new request.
    pub fn reseed(&self, fresh: [u64; 2]) {
        random::reseed(fresh);
        let glue = self.glue.clone();
        let _ = self
            .ctx
            .with(|ctx| Self::call_glue::<()>(&ctx, &glue, &self.heap, "reseed", ()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure `src` throws, with the heap exhausted or not.
    fn thrown(src: &str, exhausted: bool) -> Failure {
        let heap = Heap::new(1 << 20);
        let rt = Runtime::new().unwrap();
        let ctx = Context::full(&rt).unwrap();
        if exhausted {
            use rquickjs::allocator::Allocator;
            assert!(heap.clone().alloc(2 << 20).is_null());
        }
        ctx.with(|ctx| {
            let e = ctx.eval::<(), _>(src).catch(&ctx).unwrap_err();
            failure(e, &heap)
        })
    }

    #[test]
    fn thrown_values_are_classified() {
        let other = |s: &str| Failure::Other(s.to_string());
        assert_eq!(thrown("throw null", false), other("Uncaught null"));
        assert_eq!(thrown("throw null", true), Failure::OutOfMemory);
        assert_eq!(thrown("throw undefined", true), other("Uncaught undefined"));
        assert_eq!(thrown("throw 42", false), other("Uncaught 42"));
        assert_eq!(thrown("throw 1.5", false), other("Uncaught 1.5"));
        assert_eq!(thrown("throw 'str'", false), other("Uncaught str"));
        assert_eq!(thrown("throw {}", false), other("Uncaught [object Object]"));
        assert_eq!(
            thrown("throw Object.create(null)", false),
            other("Uncaught [object Object]")
        );
        assert_eq!(
            thrown("throw { toString() { throw 1 } }", false),
            other("Uncaught [object Object]")
        );
        assert_eq!(
            thrown("throw Symbol('s')", false),
            other("Uncaught Symbol(s)")
        );
        assert_eq!(
            thrown("throw new InternalError('out of memory')", false),
            Failure::OutOfMemory
        );
        assert!(matches!(
            thrown("throw new TypeError('x')", true),
            Failure::Other(m) if m.starts_with("TypeError: x")
        ));
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
