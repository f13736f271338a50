//! kvmjs inside another process — varnishd, through the VMOD in `crates/vmod`: the
//! programs, pools, limits, routing and metrics of `kvmjs serve`, with each request
//! handed over in memory instead of over a socket.
//!
//! The host process's threads (Varnish workers) only build a [`Pending`] request and
//! wait: the request runs on this module's own runtime (threads with their own stacks;
//! Varnish workers have 80 KiB), and a streamed body is read on as the guest makes it.
//! One [`Embedded`] serves every VCL that loads the same configuration
//! ([`Embedded::shared`]), so a VCL reload keeps the programs warm.

use crate::engine::Engine;
use crate::http::body::{BodyBudget, BodyError, Claim};
use crate::http::conn::Conns;
use crate::http::reply::{self, Reason, ReplyBody, RequestId};
use crate::http::{self, Limits, State};
use crate::metrics::Metrics;
use crate::pool::ProgramPool;
use crate::serve::{self, ServeError};
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response as HttpResponse, StatusCode};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// Threads of the embedded runtime: it only moves requests and body chunks (VMs have
/// threads of their own), so two keep up with any number of Varnish workers.
const RUNTIME_THREADS: usize = 2;

/// Errors loading an embedded kvmjs.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The configuration or host cannot serve (the message says why).
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The runtime could not start.
    #[error("cannot start the kvmjs runtime: {0}")]
    Runtime(std::io::Error),
    /// A .js program needs the QuickJS guest and none was named.
    #[error("name the QuickJS guest (kvmjs-guest) for the .js programs: kvmjs.library(config, guest) or the KVMJS_GUEST environment variable (varnishd loads a VMOD from a copy in its workdir, so nothing can be found next to it)")]
    NoGuest,
    /// Requests could not be stopped at their time limit.
    #[error(transparent)]
    Timer(kvmjs_vm::limits::LimitsError),
}

/// What a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The program at this index of [`Embedded::names`], whatever the request says.
    Program(usize),
    /// Routed as `kvmjs serve` routes (X-KVMJS-Program, Host, prefix), with `/metrics`
    /// and `/healthz`.
    Front,
}

/// kvmjs running inside this process.
pub struct Embedded {
    st: Arc<State>,
    names: Vec<String>,
    /// Program index by name: VCL looks a program up on every request.
    by_name: HashMap<String, usize>,
    reaper: tokio::task::JoinHandle<()>,
    // Last: dropped after the tasks above are aborted.
    rt: Option<tokio::runtime::Runtime>,
}

/// What makes two loads the same instance: the configuration's path and bytes, and the
/// guest's path, size and modification time. A reload with an unchanged file shares the
/// running (warm) programs; one with an edited tinykvm.json or a rebuilt guest gets a
/// new instance (the old one ends with the last VCL that holds it).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    config: PathBuf,
    config_bytes: Vec<u8>,
    guest: PathBuf,
    guest_stamp: Option<(u64, std::time::SystemTime)>,
}

impl Key {
    fn of(config: &Path, guest: &Path) -> Self {
        let stamp = |p: &Path| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?))
        };
        Key {
            config: config
                .canonicalize()
                .unwrap_or_else(|_| config.to_path_buf()),
            // Unreadable: empty, and loading says why.
            config_bytes: std::fs::read(config).unwrap_or_default(),
            guest: guest.to_path_buf(),
            guest_stamp: stamp(guest),
        }
    }
}

/// Configurations loaded in this process: a configuration loaded again unchanged (a
/// VCL reload) gets the running instance while any VCL still holds it.
type Registry = Mutex<HashMap<Key, Weak<Embedded>>>;

fn registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(Registry::default)
}

impl Embedded {
    /// The instance serving `config` with the QuickJS guest `guest` (empty: $KVMJS_GUEST),
    /// shared with every other load of the same, unchanged files ([`Key`]).
    pub fn shared(config: &Path, guest: &Path) -> Result<Arc<Embedded>, EmbedError> {
        let key = Key::of(config, guest);
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = reg.get(&key).and_then(Weak::upgrade) {
            return Ok(e);
        }
        let e = Arc::new(Embedded::load(config, guest)?);
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(key, Arc::downgrade(&e));
        Ok(e)
    }

    /// Loads `config` and starts its (lazily booting) pools; `guest` as for
    /// [`Embedded::shared`].
    pub fn load(config: &Path, guest: &Path) -> Result<Self, EmbedError> {
        kvmjs_vm::limits::check_timer_signal().map_err(EmbedError::Timer)?;
        let guest = Some(guest)
            .filter(|g| !g.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("KVMJS_GUEST").map(PathBuf::from));
        let programs = match serve::load_programs(config, guest.clone(), None, Engine::Quickjs) {
            Err(ServeError::Guest(_)) if guest.is_none() => return Err(EmbedError::NoGuest),
            r => r?,
        };
        let names: Vec<String> = programs.iter().map(|p| p.name.clone()).collect();
        let by_name = names.iter().cloned().zip(0..).collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("kvmjs-embed")
            .enable_all()
            .build()
            .map_err(EmbedError::Runtime)?;
        let metrics = Arc::new(Metrics::with_host_info(serve::host_info()));
        let pools = serve::pools(programs, &metrics);
        let reaper = rt.spawn(serve::reap(pools.clone()));
        let limits = Limits::default();
        let st = Arc::new(State {
            pools,
            metrics,
            pace: limits.body,
            budget: BodyBudget::new(limits.max_body_memory),
            // No connections of its own: the host process has them.
            conns: Conns::new(1),
        });
        Ok(Embedded {
            st,
            names,
            by_name,
            reaper,
            rt: Some(rt),
        })
    }

    /// Program names, in configuration order ([`Target::Program`] indexes).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of the program called `name` ([`Target::Program`]).
    pub fn program_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// A request for `target` with the request line's method and URL (origin form, or
    /// absolute).
    pub fn request(&self, target: Target, method: &[u8], url: &[u8]) -> Pending {
        let mut builder = hyper::Request::builder();
        let mut refused = None;
        match hyper::Method::from_bytes(method) {
            Ok(m) => builder = builder.method(m),
            Err(_) => refused = Some("the request method is not a valid token".to_string()),
        }
        match hyper::Uri::try_from(url) {
            Ok(u) => builder = builder.uri(u),
            Err(_) => refused = Some("the request URL is not valid".to_string()),
        }
        let (parts, ()) = builder
            .body(())
            .unwrap_or_else(|_| hyper::Request::new(()))
            .into_parts();
        Pending {
            target,
            parts,
            body: Vec::new(),
            claim: self.st.budget.claim(),
            refused: refused.map(|m| (StatusCode::BAD_REQUEST, m)),
            body_error: None,
            t0: Instant::now(),
            pool: None,
        }
    }

    /// The program `p` is for, or the response that answers it without one.
    fn pool(&self, p: &Pending) -> Result<Arc<ProgramPool>, Box<HttpResponse<ReplyBody>>> {
        match p.target {
            Target::Program(i) => self
                .st
                .pools
                .get(i)
                .cloned()
                .ok_or_else(|| Box::new(reply::whole(reply::not_found("no such program")))),
            Target::Front => {
                if let Some(r) = http::own_route(&self.st, &p.parts.headers, &p.parts.uri) {
                    return Err(Box::new(reply::whole(r)));
                }
                self.st
                    .route(&p.parts.headers, &p.parts.uri)
                    .cloned()
                    .map_err(|m| Box::new(reply::whole(reply::not_found(&m))))
            }
        }
    }

    /// The most body bytes the program `p` is for takes (its max_request_body); the
    /// caller stops feeding the body beyond (the answer is then a 413).
    /// The program it finds is kept for [`Embedded::send`]: the request is routed once.
    pub fn body_limit(&self, p: &mut Pending) -> usize {
        if p.target == Target::Front && http::is_own_route(&p.parts.headers, &p.parts.uri) {
            return 0;
        }
        p.pool = self.pool(p).ok();
        p.pool
            .as_ref()
            .map_or(0, |pool| pool.cfg.vm.max_request_body as usize)
    }

    /// Runs `p` and waits for the response head (and a whole body, or the start of a
    /// streamed one). Blocks the calling thread, which must not be one of this
    /// instance's runtime threads.
    pub fn send(&self, mut p: Pending) -> Reply {
        let handle = self.rt().handle().clone();
        if let Some(r) = http::refused_method(&p.parts.method) {
            return Reply::new(reply::whole(r), handle);
        }
        let routed = match p.pool.take() {
            Some(pool) => Ok(pool),
            None => self.pool(&p),
        };
        let resp = match routed {
            Err(r) => *r,
            Ok(pool) => {
                let id = RequestId::next();
                if let Some((status, msg)) = p.refused {
                    reply::whole(reply::failure(status, &msg, &id))
                } else if let Some(e) = p.body_error {
                    let kind = match e {
                        BodyError::TooLarge { .. } => "body_too_large",
                        _ => "body_memory",
                    };
                    self.st.metrics.error(&pool.cfg.name, kind);
                    reply::whole(reply::body_error(&e, &id))
                } else {
                    let st = self.st.clone();
                    let (tx, rx) = std::sync::mpsc::sync_channel(1);
                    let Pending {
                        parts,
                        body,
                        claim,
                        t0,
                        ..
                    } = p;
                    handle.spawn(async move {
                        let r = http::dispatch(
                            &st,
                            &pool,
                            parts,
                            body,
                            Box::new(claim),
                            Box::new(()),
                            t0,
                            id,
                        )
                        .await;
                        let _ = tx.send(r);
                    });
                    rx.recv().unwrap_or_else(|_| {
                        reply::whole(reply::failure(
                            StatusCode::BAD_GATEWAY,
                            "the kvmjs runtime stopped while serving the request",
                            &id,
                        ))
                    })
                }
            }
        };
        Reply::new(resp, handle)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("present until dropped")
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.reaper.abort();
        let pools = self.st.pools.clone();
        if let Some(rt) = self.rt.take() {
            // On a thread of its own: stopping the VMs waits for each one's current
            // request (up to its max_request_time), and the dropping thread is the
            // host's (varnishd's CLI thread, which must answer within cli_timeout).
            // The shared object stays mapped (linked with -z nodelete) while it runs.
            let stop = move || {
                rt.block_on(async {
                    for p in &pools {
                        p.shutdown().await;
                    }
                });
                rt.shutdown_background();
            };
            if let Err(e) = std::thread::Builder::new()
                .name("kvmjs-stop".into())
                .spawn(stop)
            {
                tracing::warn!("cannot stop the programs' VMs on a thread of their own: {e}");
            }
        }
    }
}

/// A request being handed over: head first, then the body.
pub struct Pending {
    target: Target,
    parts: hyper::http::request::Parts,
    body: Vec<u8>,
    claim: Claim,
    refused: Option<(StatusCode, String)>,
    body_error: Option<BodyError>,
    t0: Instant,
    /// The program, once [`Embedded::body_limit`] has routed the request.
    pool: Option<Arc<ProgramPool>>,
}

impl Pending {
    /// Adds one header field, `name: value` (a line without its CRLF).
    pub fn header(&mut self, field: &[u8]) {
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            self.refused = Some((
                StatusCode::BAD_REQUEST,
                "a request header has no colon".into(),
            ));
            return;
        };
        match (
            HeaderName::from_bytes(&field[..colon]),
            HeaderValue::from_bytes(field[colon + 1..].trim_ascii()),
        ) {
            (Ok(k), Ok(v)) => {
                self.parts.headers.append(k, v);
            }
            _ => {
                self.refused = Some((
                    StatusCode::BAD_REQUEST,
                    "a request header is not valid HTTP".into(),
                ))
            }
        }
    }

    /// Appends body bytes, up to `limit` in all and within the body-memory budget; false
    /// (and nothing kept) once over, after which the caller stops feeding.
    pub fn body(&mut self, chunk: &[u8], limit: usize) -> bool {
        if self.body_error.is_some() {
            return false;
        }
        if self.body.len() + chunk.len() > limit {
            self.body_error = Some(BodyError::TooLarge { limit });
        } else if let Err(e) = self.claim.grow(chunk.len()) {
            self.body_error = Some(e);
        } else {
            self.body.extend_from_slice(chunk);
            return true;
        }
        self.body = Vec::new();
        false
    }
}

/// A response: its head, and its body read on demand.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Reason phrase: what went wrong for a response kvmjs made, else the standard one.
    pub reason: String,
    /// Header fields, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body length when known in advance (whole bodies), `None` for a stream.
    pub length: Option<u64>,
    body: ReplyBody,
    chunk: Bytes,
    handle: tokio::runtime::Handle,
}

impl Reply {
    fn new(r: HttpResponse<ReplyBody>, handle: tokio::runtime::Handle) -> Self {
        let (parts, body) = r.into_parts();
        let reason = match parts.extensions.get::<Reason>() {
            // A status line holds no CR or LF, and Varnish keeps it in a workspace.
            Some(Reason(m)) => m.replace(['\r', '\n'], " ").chars().take(200).collect(),
            None => parts
                .status
                .canonical_reason()
                .unwrap_or("Unknown")
                .to_string(),
        };
        let length = hyper::body::Body::size_hint(&body).exact();
        Reply {
            status: parts.status.as_u16(),
            reason,
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            length,
            body,
            chunk: Bytes::new(),
            handle,
        }
    }

    /// Reads body bytes into `buf`: the count, 0 at the end, or an error when a stream
    /// broke off (the guest failed mid-body). Blocks while a stream has nothing yet.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        while self.chunk.is_empty() {
            let frame = self.handle.block_on(self.body.frame());
            match frame {
                None => return Ok(0),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.chunk = data;
                    }
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tag: &str, body: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kvmjs-embed-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("tinykvm.json");
        std::fs::write(&f, body).unwrap();
        f
    }

    #[test]
    fn a_bad_config_is_refused_with_the_reason() {
        let f = config("bad", "{ \"a\": { \"filename\": 5 } }");
        let e = Embedded::load(&f, Path::new("/nonexistent/guest"))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("filename"), "{e}");
    }
}
