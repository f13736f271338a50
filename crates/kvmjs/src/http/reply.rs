//! Responses the front builds: the guest's response as HTTP, and the front's own errors.
//! A 5xx caused by a guest or VM says briefly what happened and carries a request id (in
//! the body and `X-Request-Id`); the details (guest output, paths, fault reports) go only
//! to the log, under the same id.

use super::body::BodyError;
use super::stream::ChunkBody;
use crate::pool::SubmitError;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response as HttpResponse, StatusCode};
use kvmjs_vm::request::{PlaceError, HOP_BY_HOP};
use kvmjs_vm::{RequestError, Response};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A response body: whole (with a Content-Length), or streamed as the guest makes it
/// (chunked).
pub type ReplyBody = Either<Full<Bytes>, ChunkBody>;

/// A whole response as a [`ReplyBody`] one.
pub fn whole(r: HttpResponse<Full<Bytes>>) -> HttpResponse<ReplyBody> {
    r.map(Either::Left)
}

/// Header carrying the request id of a front-made error.
pub const REQUEST_ID: &str = "x-request-id";

/// Names one request in the response and in the log: 32 random bits per process (ids
/// from different runs differ) and a 32-bit counter.
#[derive(Clone, Copy, Debug)]
pub struct RequestId(u64);

impl RequestId {
    /// The next id.
    pub fn next() -> Self {
        static PROCESS: OnceLock<u32> = OnceLock::new();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        // RandomState is seeded from the OS: random enough to tell runs apart.
        let process =
            *PROCESS.get_or_init(|| std::hash::RandomState::new().build_hasher().finish() as u32);
        RequestId(u64::from(process) << 32 | u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse<Full<Bytes>> {
    let mut r = HttpResponse::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    r
}

/// `r`, closing the connection after it (the rest of the request is not read).
pub fn close(mut r: HttpResponse<Full<Bytes>>) -> HttpResponse<Full<Bytes>> {
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Why the front (not a program) made a response: its message, as a response extension.
/// In-process (the Varnish VMOD) it becomes the status line's reason (`beresp.reason`).
#[derive(Clone, Debug)]
pub struct Reason(pub String);

/// The answer when no program is routed for a request.
pub fn not_found(message: &str) -> HttpResponse<Full<Bytes>> {
    let mut r = text(StatusCode::NOT_FOUND, format!("{message}\n"));
    r.extensions_mut().insert(Reason(message.to_string()));
    r
}

/// A front-made error: `message` and the request id, in the body and `X-Request-Id`.
pub fn failure(status: StatusCode, message: &str, id: &RequestId) -> HttpResponse<Full<Bytes>> {
    let mut r = text(status, format!("{message} (request id {id})\n"));
    r.extensions_mut()
        .insert(Reason(format!("{message} (request id {id})")));
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        r.headers_mut().insert(REQUEST_ID, v);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// The answer to a body that was not read. The connection closes after every one of
/// them: the rest of the body is not read (or only drained).
pub fn body_error(e: &BodyError, id: &RequestId) -> HttpResponse<Full<Bytes>> {
    let status = match e {
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
        BodyError::Memory { .. } => StatusCode::SERVICE_UNAVAILABLE,
        BodyError::Read(_) => StatusCode::BAD_REQUEST,
    };
    close(failure(status, &e.to_string(), id))
}

/// The answer when a request never reached a VM.
pub fn submit_error(e: &SubmitError, program: &str, id: &RequestId) -> HttpResponse<Full<Bytes>> {
    match e {
        SubmitError::Boot { .. } => {
            tracing::error!(request_id = %id, program, "{e}");
            failure(
                StatusCode::BAD_GATEWAY,
                &format!("program {program:?} is unavailable: it failed to start"),
                id,
            )
        }
        // Busy and Gone say nothing the client should not know.
        SubmitError::Busy { .. } | SubmitError::Gone => {
            tracing::debug!(request_id = %id, program, "{e}");
            failure(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), id)
        }
    }
}

/// The answer to a request the VM failed, and the error kind for the metrics.
pub fn request_error(
    e: &RequestError,
    program: &str,
    id: &RequestId,
) -> (HttpResponse<Full<Bytes>>, &'static str) {
    let (status, kind, message) = match e {
        RequestError::Timeout(t) => (
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("program {program:?} did not answer within {t:?} (max_request_time)"),
        ),
        // The request itself does not fit the guest ABI: the client's to fix, and the
        // message only names sizes.
        RequestError::Place(PlaceError::TooLarge(m)) => {
            tracing::info!(request_id = %id, program, "{e}");
            return (
                failure(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request too large: {m}"),
                    id,
                ),
                "too_large",
            );
        }
        // As the QuickJS guest answers its own out-of-memory: a 500 that says so, with the
        // limits (the client learns no address or path).
        RequestError::OutOfMemory {
            max_memory_mb,
            max_request_memory_mb,
            ..
        } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "out_of_memory",
            format!(
                "out of memory: program {program:?} needed more than its limits allow \
                 (max_memory {max_memory_mb} MB, max_request_memory {max_request_memory_mb} MB)"
            ),
        ),
        RequestError::Fault(_) => (StatusCode::BAD_GATEWAY, "fault", failed(program)),
        RequestError::Exited(..) => (StatusCode::BAD_GATEWAY, "exit", failed(program)),
        RequestError::Guest(_) => (StatusCode::BAD_GATEWAY, "guest", failed(program)),
        _ => (StatusCode::BAD_GATEWAY, "internal", failed(program)),
    };
    tracing::warn!(request_id = %id, program, "request failed: {e}");
    (failure(status, &message, id), kind)
}

fn failed(program: &str) -> String {
    format!("program {program:?} failed while handling the request")
}

/// The guest's response as HTTP, without the framing headers that are the server's.
pub fn guest_response(mut r: Response) -> HttpResponse<Full<Bytes>> {
    let body = Full::new(Bytes::from(std::mem::take(&mut r.body)));
    with_head(HttpResponse::new(body), &r)
}

/// The head of the guest's streamed response ([`Response::stream`]): its body is the
/// start the head came with, then `rest`, with no length (HTTP/1.1 chunked).
pub fn streamed_response(mut r: Response, rest: ChunkBody) -> HttpResponse<ReplyBody> {
    let start = std::mem::take(&mut r.body);
    let body = if start.is_empty() {
        rest
    } else {
        rest.prepend(Bytes::from(start))
    };
    with_head(HttpResponse::new(Either::Right(body)), &r)
}

fn with_head<B>(mut out: HttpResponse<B>, r: &Response) -> HttpResponse<B> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
        // Framing is the server's: a guest-set Content-Length or Transfer-Encoding could
        // desynchronise a reused (e.g. Varnish) connection.
        if HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        h.append(k, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn body(r: HttpResponse<Full<Bytes>>) -> (StatusCode, String, Option<String>) {
        let id = r
            .headers()
            .get(REQUEST_ID)
            .map(|v| v.to_str().unwrap().to_string());
        let status = r.status();
        let b = futures_body(r.into_body());
        (status, b, id)
    }

    fn futures_body(b: Full<Bytes>) -> String {
        use hyper::body::Body;
        let mut b = std::pin::pin!(b);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match b.as_mut().poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(f))) => {
                String::from_utf8(f.into_data().unwrap().to_vec()).unwrap()
            }
            _ => String::new(),
        }
    }

    #[test]
    fn guest_errors_are_short_with_an_id_and_no_details() {
        let id = RequestId::next();
        let boot = SubmitError::Boot {
            program: "app".into(),
            message: "it exited with status 1\n--- guest output ---\nError at /srv/secret/app.js:1"
                .into(),
        };
        let (status, text, hdr) = body(submit_error(&boot, "app", &id));
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(hdr.as_deref(), Some(id.to_string().as_str()));
        assert!(text.contains(&id.to_string()), "{text}");
        assert!(
            !text.contains("/srv") && !text.contains("guest output"),
            "{text}"
        );
        let cases = [
            (
                RequestError::Fault("page fault at 0xdead in /srv/x".into()),
                502,
                "fault",
            ),
            (
                RequestError::Exited(3, "\n--- guest output ---\n/srv/x".into()),
                502,
                "exit",
            ),
            (
                RequestError::Guest("bad pointer 0x1234 /srv/x".into()),
                502,
                "guest",
            ),
            (
                RequestError::Broken("reset failed /srv/x".into()),
                502,
                "internal",
            ),
            (
                RequestError::Timeout(Duration::from_secs(1)),
                504,
                "timeout",
            ),
            (
                RequestError::OutOfMemory {
                    max_memory_mb: 2048,
                    max_request_memory_mb: 64,
                    detail: "guest breakpoint (int3) at 0x55 in /srv/x".into(),
                },
                500,
                "out_of_memory",
            ),
        ];
        for (e, code, want_kind) in cases {
            let (r, kind) = request_error(&e, "app", &id);
            let (status, text, hdr) = body(r);
            assert_eq!((status.as_u16(), kind), (code, want_kind), "{e}");
            assert!(hdr.is_some(), "{e}");
            assert!(!text.contains("/srv") && !text.contains("0x"), "{text}");
            assert!(text.contains("request id"), "{text}");
        }
    }

    #[test]
    fn request_ids_differ() {
        let (a, b) = (RequestId::next(), RequestId::next());
        assert_ne!(a.to_string(), b.to_string());
        assert_eq!(a.to_string().len(), 16);
    }
}
