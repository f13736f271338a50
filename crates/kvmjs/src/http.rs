//! The HTTP/1.1 front (hyper): request checks, routing to programs, size, time and
//! memory limits, metrics, connection shedding, and graceful shutdown. Status codes (also
//! in the README): 400 malformed or bad Host, 404 no program, 405 TRACE/CONNECT/TRACK,
//! 408 head or body too slow, 413 body too large, 431 head too large (hyper), 502 guest
//! failure, 503 busy, body memory or connections exhausted, 504 max_request_time.

#[path = "http/body.rs"]
pub mod body;
#[path = "http/conn.rs"]
pub mod conn;
#[path = "http/reply.rs"]
pub mod reply;
#[path = "http/stream.rs"]
pub mod stream;

use crate::metrics::Metrics;
use crate::pool::{ProgramPool, SubmitError};
use body::{BodyBudget, BodyError, BodyPace};
use conn::{Admission, ConnInfo, Conns, LentStream, PhaseGuard};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request as HttpRequest, Response as HttpResponse, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use kvmjs_vm::Request;
use reply::{text, whole, ReplyBody, RequestId};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Header the VCL sets to pick a program by name.
pub const PROGRAM_HEADER: &str = "x-kvmjs-program";

/// The shortest header line hyper accepts, `a:` and CRLF: a head of `max_header_bytes`
/// holds at most `max_header_bytes / 4` headers, so allowing that many leaves the size
/// limit as the only one.
const MIN_HEADER_LINE: usize = 4;

/// Methods the front refuses for every resource (RFC 9110 §15.5.6: 405 with Allow).
/// TRACE would echo credentials back (cross-site tracing), CONNECT asks for a tunnel (an
/// origin server has none to give), TRACK is IIS's TRACE; the Fetch standard forbids all
/// three, so a JS app could not receive them anyway.
const REFUSED_METHODS: &[&str] = &["TRACE", "CONNECT", "TRACK"];

/// The Allow header of a 405: the methods an app can be sent (others pass through too,
/// but these are the ones HTTP defines for resources).
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// Front-wide limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request head (431 beyond).
    pub max_header_bytes: usize,
    /// Time to receive the request head (408 beyond).
    pub header_timeout: Duration,
    /// Time and rate for request bodies (408 beyond).
    pub body: BodyPace,
    /// Bytes of request bodies buffered at once, all requests together (503 beyond).
    pub max_body_memory: usize,
    /// Open connections; at the cap the oldest idle or slow one is shed for a new one.
    pub max_connections: usize,
    /// Time in-flight requests get to finish at shutdown.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 << 10,
            header_timeout: Duration::from_secs(10),
            body: BodyPace::default(),
            max_body_memory: 256 << 20,
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Request headers hyper accepts: as many as fit in `max_header_bytes`.
    pub fn max_headers(&self) -> usize {
        self.max_header_bytes / MIN_HEADER_LINE
    }
}

// The guest ABI counts request headers in a u16 (`kvm_request.num_headers`) and lays them
// out in the request area's first MiB (a NUL-terminated line and a 16-byte table entry
// each): the most headers a 64 KiB head can carry fit both, so the ABI adds no lower cap.
const _: () = assert!((64 << 10) / MIN_HEADER_LINE <= u16::MAX as usize);
const _: () = assert!((64 << 10) + (64 << 10) / MIN_HEADER_LINE * (16 + 2) <= 1 << 20);

/// What every connection shares.
pub struct State {
    /// Programs, in configuration order.
    pub pools: Vec<Arc<ProgramPool>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// How fast bodies must arrive.
    pub pace: BodyPace,
    /// Memory for all request bodies in flight.
    pub budget: Arc<BodyBudget>,
    /// Open connections.
    pub conns: Arc<Conns>,
}

impl State {
    /// The shared state for `pools` under `limits`.
    pub fn new(pools: Vec<Arc<ProgramPool>>, metrics: Arc<Metrics>, limits: &Limits) -> Self {
        State {
            pools,
            metrics,
            pace: limits.body,
            budget: BodyBudget::new(limits.max_body_memory),
            conns: Conns::new(limits.max_connections),
        }
    }

    /// The program for a request: the VCL's header, then the Host, then the longest prefix.
    pub fn route(
        &self,
        headers: &hyper::HeaderMap,
        uri: &hyper::Uri,
    ) -> Result<&Arc<ProgramPool>, String> {
        if let Some(name) = headers.get(PROGRAM_HEADER) {
            let name = String::from_utf8_lossy(name.as_bytes());
            return self
                .pools
                .iter()
                .find(|p| p.cfg.name == name)
                .ok_or_else(|| {
                    format!("no program named {name:?} (from the {PROGRAM_HEADER} header)")
                });
        }
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.host())
            .map(|h| {
                h.rsplit_once(':').map_or(h, |(name, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        name
                    } else {
                        h
                    }
                })
            })
            .unwrap_or("")
            .to_ascii_lowercase();
        if let Some(p) = self.pools.iter().find(|p| p.cfg.hosts.contains(&host)) {
            return Ok(p);
        }
        let path = uri.path();
        self.pools
            .iter()
            .filter_map(|p| {
                let pre = p.cfg.prefix.as_deref()?;
                let hit = pre == "/"
                    || path == pre
                    || path.starts_with(pre)
                        && (pre.ends_with('/') || path.as_bytes().get(pre.len()) == Some(&b'/'));
                hit.then_some((pre.len(), p))
            })
            .max_by_key(|(n, _)| *n)
            .map(|(_, p)| p)
            .ok_or_else(|| format!("no program is routed for host {host:?} and path {path:?}"))
    }
}

/// RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request, at most one otherwise, and a
/// valid `host[:port]` (or empty) value. The reason for the 400 otherwise.
fn check_host<B>(req: &HttpRequest<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("the request has more than one Host header"),
        (None, _) if req.version() == Version::HTTP_11 => {
            Err("an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)")
        }
        (Some(h), None) if !h.is_empty() => {
            let valid = hyper::http::uri::Authority::try_from(h.as_bytes()).is_ok_and(|a| {
                // Authority also takes user@host and a non-numeric port; Host may not.
                let port = &a.as_str()[a.host().len()..];
                !a.as_str().contains('@')
                    && (port.is_empty()
                        || port
                            .strip_prefix(':')
                            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
            });
            if valid {
                Ok(())
            } else {
                Err("the Host header is not a valid host[:port]")
            }
        }
        _ => Ok(()),
    }
}

/// Serves one request.
pub async fn handle(
    req: HttpRequest<Incoming>,
    st: Arc<State>,
) -> Result<HttpResponse<ReplyBody>, Infallible> {
    let t0 = Instant::now();
    if let Err(why) = check_host(&req) {
        return Ok(whole(reply::close(text(
            StatusCode::BAD_REQUEST,
            format!("{why}\n"),
        ))));
    }
    if let Some(r) = refused_method(req.method()) {
        // A CONNECT's "body" is tunnel data: no further request can follow on it.
        return Ok(whole(if req.method() == Method::CONNECT {
            reply::close(r)
        } else {
            r
        }));
    }
    if let Some(r) = own_route(&st, req.headers(), req.uri()) {
        return Ok(whole(r));
    }
    let pool = match st.route(req.headers(), req.uri()) {
        Ok(p) => p.clone(),
        Err(msg) => return Ok(whole(reply::not_found(&msg))),
    };
    let conn = req.extensions().get::<Arc<ConnInfo>>().cloned();
    let phase = PhaseGuard::start(conn);
    let name = pool.cfg.name.clone();
    let (parts, body) = req.into_parts();
    let limit = pool.cfg.vm.max_request_body as usize;
    let expects_continue = parts
        .headers
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let id = RequestId::next();
    let declared = body::declared_len(&body);
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        // Refused before a byte of it is read.
        st.metrics.error(&name, "body_too_large");
        let r = reply::body_error(&BodyError::TooLarge { limit }, &id);
        tracing::debug!(request_id = %id, program = %name, "declared body of {n} bytes refused");
        if !expects_continue {
            tokio::spawn(body::drain(body, drain_max(limit), st.pace));
        }
        return Ok(whole(r));
    }
    let free = st.budget.cap().saturating_sub(st.budget.used());
    if let Some(n) = declared.filter(|&n| n > free as u64) {
        // It cannot fit now: say so before the client sends it.
        st.metrics.error(&name, "body_memory");
        tracing::debug!(request_id = %id, program = %name, "declared body of {n} bytes: body memory full");
        return Ok(whole(reply::body_error(
            &BodyError::Memory {
                cap: st.budget.cap(),
            },
            &id,
        )));
    }
    let (body, claim) = match body::read(body, limit, st.pace, &st.budget).await {
        Ok(b) => b,
        Err(rejected) => {
            let kind = match &rejected.error {
                BodyError::TooLarge { .. } => "body_too_large",
                BodyError::TooSlow { .. } => {
                    st.metrics.connection_closed("body_timeout");
                    "body_timeout"
                }
                BodyError::Memory { .. } => "body_memory",
                BodyError::Read(_) => "body_read",
            };
            st.metrics.error(&name, kind);
            tracing::debug!(request_id = %id, program = %name, "{}", rejected.error);
            if let Some(rest) = rejected.rest {
                tokio::spawn(body::drain(rest, drain_max(limit), st.pace));
            }
            return Ok(whole(reply::body_error(&rejected.error, &id)));
        }
    };
    phase.busy();
    Ok(dispatch(
        &st,
        &pool,
        parts,
        body,
        Box::new(claim),
        Box::new(phase),
        t0,
        id,
    )
    .await)
}

/// The 405 for a method no program is sent ([`REFUSED_METHODS`]).
pub fn refused_method(method: &Method) -> Option<HttpResponse<http_body_util::Full<bytes::Bytes>>> {
    if !REFUSED_METHODS.contains(&method.as_str()) {
        return None;
    }
    let message = format!("method {method} is not served here");
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, format!("{message}\n"));
    r.headers_mut().insert(
        hyper::header::ALLOW,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    r.extensions_mut().insert(reply::Reason(message));
    Some(r)
}

/// Whether the front answers this request itself ([`own_route`]), without rendering
/// anything.
pub fn is_own_route(headers: &hyper::HeaderMap, uri: &hyper::Uri) -> bool {
    !headers.contains_key(PROGRAM_HEADER) && matches!(uri.path(), "/metrics" | "/healthz")
}

/// The front's own resources, answered without a program: `/metrics` and `/healthz`
/// (unless the VCL named a program, whose app may have such paths).
pub fn own_route(
    st: &State,
    headers: &hyper::HeaderMap,
    uri: &hyper::Uri,
) -> Option<HttpResponse<http_body_util::Full<bytes::Bytes>>> {
    if !is_own_route(headers, uri) {
        return None;
    }
    match uri.path() {
        "/metrics" => {
            st.metrics.set_front(st.conns.open(), st.budget.used());
            let mut r = text(StatusCode::OK, st.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            Some(r)
        }
        "/healthz" => Some(text(StatusCode::OK, "ok\n")),
        _ => None,
    }
}

/// Runs a request whose body has been read on `pool` and makes the HTTP response: the
/// part of serving shared by the HTTP front and the in-process one ([`crate::embed`]).
/// `claim` (the body's memory) is given back when the request is done, `hold` when the
/// response body has been sent.
#[allow(clippy::too_many_arguments)] // one request's parts, each used once
pub async fn dispatch(
    st: &State,
    pool: &ProgramPool,
    parts: hyper::http::request::Parts,
    body: Vec<u8>,
    claim: Box<dyn Send>,
    hold: Box<dyn Send>,
    t0: Instant,
    id: RequestId,
) -> HttpResponse<ReplyBody> {
    let name = &pool.cfg.name;
    let headers: Vec<String> = parts
        .headers
        .iter()
        .map(|(k, v)| format!("{}: {}", k.as_str(), String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let vreq = Request {
        method: parts.method.as_str().to_string(),
        url: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default(),
        headers,
        body,
        ..Default::default()
    };
    let outcome = match pool.submit(vreq, claim).await {
        Ok(o) => o,
        Err(e) => {
            let r = reply::submit_error(&e, name, &id);
            let kind = match e {
                SubmitError::Boot { .. } => "boot",
                SubmitError::Busy { .. } | SubmitError::Gone => "busy",
            };
            st.metrics.error(name, kind);
            st.metrics
                .request(name, r.status().as_u16(), t0.elapsed(), 0, 0, 0.0);
            return whole(r);
        }
    };
    let s = outcome.stats;
    let resp = match (outcome.result, outcome.stream) {
        // The head now; the body as the guest makes it (the connection stays busy).
        (Ok(r), Some(rest)) => reply::streamed_response(r, rest.hold(hold)),
        (Ok(r), None) => whole(reply::guest_response(r)),
        (Err(e), _) => {
            let (r, kind) = reply::request_error(&e, name, &id);
            st.metrics.error(name, kind);
            whole(r)
        }
    };
    st.metrics.request(
        name,
        resp.status().as_u16(),
        t0.elapsed(),
        s.exits,
        s.dirty_pages,
        s.reset_us,
    );
    resp
}

/// How much of an oversized body is read on (and dropped) after the 413.
fn drain_max(limit: usize) -> u64 {
    (limit as u64).saturating_mul(8).max(1 << 20)
}

/// Accepts connections until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    st: Arc<State>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers())
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut errors = conn::AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                errors.succeeded();
                s
            }
            Err(e) => {
                // E.g. EMFILE: pause accepting instead of spinning, make room if it is
                // descriptors that ran out, and say so once in a while, not per attempt.
                let (pause, log) = errors.failed(Instant::now());
                if let Some(unlogged) = log {
                    tracing::warn!(
                        "accept failed: {e}; pausing accepts for {pause:?} ({unlogged} more since the last report)"
                    );
                }
                if conn::out_of_fds(&e) && st.conns.shed_one() {
                    st.metrics.connection_closed("shed");
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // Problems with one connection drop that connection, never the server.
        let _ = stream.set_nodelay(true);
        match st.conns.admit().await {
            Admission::Now(slot) => {
                let watcher = graceful.watcher();
                tokio::spawn(serve_conn(
                    stream,
                    slot,
                    st.clone(),
                    builder.clone(),
                    watcher,
                ));
            }
            Admission::Wait(pending) => {
                st.metrics.connection_closed("shed");
                let (st, builder, watcher) = (st.clone(), builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    match pending.slot().await {
                        Some(slot) => {
                            serve_conn(stream, slot, st, builder, watcher).await;
                        }
                        None => {
                            st.metrics.connection_closed("refused");
                            conn::refuse(&stream);
                        }
                    }
                });
            }
            Admission::Refuse => {
                st.metrics.connection_closed("refused");
                conn::refuse(&stream);
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections were still open after {:?}",
            limits.drain_timeout
        );
    }
    Ok(())
}

/// Serves one connection until it ends, is shed, or shutdown drains it.
async fn serve_conn(
    stream: TcpStream,
    slot: conn::Slot,
    st: Arc<State>,
    builder: Arc<hyper::server::conn::http1::Builder>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let info = slot.info().clone();
    let svc = {
        let info = info.clone();
        hyper::service::service_fn(move |mut req: HttpRequest<Incoming>| {
            info.request_started();
            req.extensions_mut().insert(info.clone());
            handle(req, st.clone())
        })
    };
    let (lent, back) = LentStream::lend(stream);
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(lent), svc));
    // `conn` is moved into select!, so it (and the lent stream) is dropped when it ends.
    let head_timed_out = tokio::select! {
        r = conn => r.is_err_and(|e| e.is_timeout()),
        // Dropping the connection closes it, and drops a request still reading its body
        // (and that body's memory) with it.
        () = info.shed() => false,
    };
    // hyper's head timer also runs on idle keep-alive connections: answer 408 only to a
    // connection that never got a request through (a slow client), and just close idle
    // ones.
    if head_timed_out && info.requests() == 0 {
        let stream = back
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(s) = stream {
            let _ = s.try_write(
                b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            );
        }
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, hosts: &[&str]) -> HttpRequest<()> {
        let mut b = HttpRequest::builder().uri("/x").version(version);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_rules_follow_rfc_9112() {
        assert!(check_host(&req(Version::HTTP_11, &["example.com"])).is_ok());
        assert!(check_host(&req(Version::HTTP_11, &["example.com:8080"])).is_ok());
        assert!(check_host(&req(Version::HTTP_11, &["[::1]:80"])).is_ok());
        assert!(
            check_host(&req(Version::HTTP_11, &[""])).is_ok(),
            "empty is allowed"
        );
        assert!(check_host(&req(Version::HTTP_10, &[])).is_ok());
        assert!(check_host(&req(Version::HTTP_11, &[]))
            .unwrap_err()
            .contains("needs a Host"));
        assert!(check_host(&req(Version::HTTP_11, &["a", "b"]))
            .unwrap_err()
            .contains("more than one"));
        assert!(check_host(&req(Version::HTTP_10, &["a", "a"])).is_err());
        assert!(
            check_host(&req(Version::HTTP_11, &["example.com:"])).is_ok(),
            "port = *DIGIT"
        );
        for bad in [
            "user@example.com",
            "a b",
            "example.com:port",
            "/path",
            "a:1:2",
        ] {
            assert!(check_host(&req(Version::HTTP_11, &[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_count_is_bounded_by_size_only() {
        let l = Limits::default();
        assert_eq!(l.max_headers(), 16384);
        // Every header line of a 64 KiB head fits hyper's count.
        assert!(l.max_headers() * MIN_HEADER_LINE >= l.max_header_bytes);
    }
}
