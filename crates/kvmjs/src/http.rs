//! The HTTP/1.1 front (hyper): routing to programs, size and time limits, metrics, and
//! graceful shutdown. Status codes: 400 malformed (hyper), 404 no program, 408 headers too
//! slow, 413 body too large, 431 headers too large (hyper), 502 guest failure, 503 busy,
//! 504 max_request_time.

use crate::metrics::Metrics;
use crate::pool::{ProgramPool, SubmitError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Request as HttpRequest, Response as HttpResponse, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use kvmjs_vm::{Request, RequestError};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Response headers a guest may not set: framing and connection management.
const HOP_BY_HOP: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Header the VCL sets to pick a program by name.
pub const PROGRAM_HEADER: &str = "x-kvmjs-program";

/// Connection-level limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request head (431 beyond).
    pub max_header_bytes: usize,
    /// Time to receive the request head (408 beyond).
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 << 10,
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What every connection shares.
pub struct State {
    /// Programs, in configuration order.
    pub pools: Vec<Arc<ProgramPool>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse<Full<Bytes>> {
    let mut r = HttpResponse::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    r
}

impl State {
    /// The program for a request: the VCL's header, then the Host, then the longest prefix.
    fn route(&self, req: &HttpRequest<Incoming>) -> Result<&Arc<ProgramPool>, String> {
        if let Some(name) = req.headers().get(PROGRAM_HEADER) {
            let name = String::from_utf8_lossy(name.as_bytes());
            return self
                .pools
                .iter()
                .find(|p| p.cfg.name == name)
                .ok_or_else(|| {
                    format!("no program named {name:?} (from the {PROGRAM_HEADER} header)")
                });
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
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
        let path = req.uri().path();
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

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

/// Reads a body of at most `limit` bytes. An oversized body is read on (and dropped, up
/// to 8x the limit) before the 413, so a proxy that is still sending it (Varnish) reads
/// the answer instead of a reset connection.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > limit {
            if seen > limit.saturating_mul(8).max(1 << 20) {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if seen > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}

/// Serves one request.
pub async fn handle(
    req: HttpRequest<Incoming>,
    st: Arc<State>,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    let t0 = Instant::now();
    match req.uri().path() {
        "/metrics" if !req.headers().contains_key(PROGRAM_HEADER) => {
            let mut r = text(StatusCode::OK, st.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return Ok(r);
        }
        "/healthz" if !req.headers().contains_key(PROGRAM_HEADER) => {
            return Ok(text(StatusCode::OK, "ok\n"))
        }
        _ => {}
    }
    let pool = match st.route(&req) {
        Ok(p) => p.clone(),
        Err(msg) => return Ok(text(StatusCode::NOT_FOUND, format!("{msg}\n"))),
    };
    let name = pool.cfg.name.clone();
    let (parts, body) = req.into_parts();
    let limit = pool.cfg.vm.max_request_body as usize;
    let body = match read_body(body, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            st.metrics.error(&name, "body_too_large");
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {limit} bytes (max_request_body)\n"),
            ));
        }
        Err(BodyError::Read(e)) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            ))
        }
    };
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
        body: body.to_vec(),
        ..Default::default()
    };
    let outcome = match pool.submit(vreq).await {
        Ok(o) => o,
        Err(e) => {
            let (status, kind) = match e {
                SubmitError::Boot { .. } => (StatusCode::BAD_GATEWAY, "boot"),
                SubmitError::Busy { .. } | SubmitError::Gone => {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy")
                }
            };
            st.metrics.error(&name, kind);
            st.metrics
                .request(&name, status.as_u16(), t0.elapsed(), 0, 0, 0.0);
            let mut r = text(status, format!("{e}\n"));
            if status == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            return Ok(r);
        }
    };
    let s = outcome.stats;
    let resp = match outcome.result {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut out = HttpResponse::new(Full::new(Bytes::from(r.body)));
            *out.status_mut() = status;
            let h = out.headers_mut();
            if !r.content_type.is_empty() {
                if let Ok(v) = HeaderValue::from_bytes(&r.content_type) {
                    h.insert(CONTENT_TYPE, v);
                }
            }
            for field in &r.headers {
                let Some(colon) = field.iter().position(|&b| b == b':') else {
                    continue;
                };
                let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(&field[..colon]),
                    HeaderValue::from_bytes(field[colon + 1..].trim_ascii()),
                ) else {
                    continue;
                };
                // Framing is the server's: a guest-set Content-Length or Transfer-Encoding
                // could desynchronise a reused (e.g. Varnish) connection.
                if HOP_BY_HOP.contains(&k.as_str()) {
                    continue;
                }
                h.append(k, v);
            }
            out
        }
        Err(e) => {
            let (status, kind) = match &e {
                RequestError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
                RequestError::Place(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                RequestError::Fault(_) => (StatusCode::BAD_GATEWAY, "fault"),
                RequestError::Exited(..) => (StatusCode::BAD_GATEWAY, "exit"),
                RequestError::Guest(_) => (StatusCode::BAD_GATEWAY, "guest"),
                _ => (StatusCode::BAD_GATEWAY, "internal"),
            };
            tracing::warn!(program = %name, "request failed: {e}");
            st.metrics.error(&name, kind);
            text(status, format!("{e}\n"))
        }
    };
    st.metrics.request(
        &name,
        resp.status().as_u16(),
        t0.elapsed(),
        s.exits,
        s.dirty_pages,
        s.reset_us,
    );
    Ok(resp)
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
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A second handle on the socket, to answer 408 after hyper gives up on slow headers.
        // Problems with one connection drop that connection, never the server.
        let split = || -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
            stream.set_nodelay(true)?;
            let std = stream.into_std()?;
            let spare = std.try_clone()?;
            Ok((tokio::net::TcpStream::from_std(std)?, spare))
        };
        let (stream, spare) = match split() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("dropping a connection: {e}");
                continue;
            }
        };
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let st = st.clone();
        let count = served.clone();
        let svc = hyper::service::service_fn(move |req| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            handle(req, st.clone())
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // hyper's head timer also runs on idle keep-alive connections: answer 408
                // only to a connection that never got a request through (a slow client),
                // and just close idle ones.
                if e.is_timeout() && served.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                    use std::io::Write;
                    let _ = (&spare).write_all(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
                }
            }
        });
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
