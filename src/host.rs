//! The guest side of the libvmod-tinykvm ABI: turn each `kvm_request` into an
//! [`HttpRequest`], run it, and send the result with `backend_response`.

use crate::engine::{Body, Engine, HttpRequest, HttpResponse};
use kvmjs_abi::guest::{self, request_bytes};
use kvmjs_abi::{KvmRequest, KvmRequestHeader, MAX_RESPONSE_HEADERS};
use std::borrow::Cow;

/// Builds the absolute URL a Request needs from Varnish's path and the Host header.
pub fn absolute_url(url: &str, host: Option<&str>) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    let host = host
        .map(str::trim)
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
        .unwrap_or("localhost");
    if url.starts_with('/') {
        format!("http://{host}{url}")
    } else {
        format!("http://{host}/{url}")
    }
}

/// Header bytes as a JS ByteString: one character per byte (Fetch's "isomorphic decode").
fn latin1(bytes: &[u8]) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // ASCII is valid UTF-8 as it stands.
        Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default())
    } else {
        Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())
    }
}

/// Reads the request the host wrote.
///
/// # Safety
/// `req` must have just been filled by the host (`wait_for_requests_paused`).
pub unsafe fn read_request(req: &KvmRequest) -> HttpRequest<'static> {
    let text = |p: u64, n: u64| {
        // SAFETY: the caller guarantees the host wrote this request's ranges.
        String::from_utf8_lossy(unsafe { request_bytes(p, n) })
    };
    let mut headers = Vec::with_capacity(usize::from(req.num_headers));
    for i in 0..u64::from(req.num_headers) {
        // SAFETY: the host wrote `num_headers` entries at `headers`.
        let h = unsafe { &*((req.headers + i * 16) as *const KvmRequestHeader) };
        // SAFETY: each header entry points at a field the host wrote.
        let field = unsafe { request_bytes(h.field, u64::from(h.field_len)) };
        let colon = (h.field_colon as usize).min(field.len());
        let name = latin1(&field[..colon]);
        let value = latin1(field.get(colon + 1..).unwrap_or_default());
        let value = match value {
            Cow::Borrowed(v) => Cow::Borrowed(v.trim()),
            Cow::Owned(v) => Cow::Owned(v.trim().to_string()),
        };
        headers.push((name, value));
    }
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.to_string());
    let url = text(req.url, u64::from(req.url_len));
    HttpRequest {
        method: text(req.method, u64::from(req.method_len)),
        url: absolute_url(&url, host.as_deref()),
        headers,
        // SAFETY: the host wrote `content_len` body bytes at `content`.
        body: (req.content_len > 0).then(|| unsafe { request_bytes(req.content, req.content_len) }),
    }
}

/// Sends `res` to the host. Returns whether it started a streamed response, whose rest
/// [`stream_rest`] must send.
pub fn send(res: &HttpResponse) -> bool {
    // Header values are ByteStrings (every char <= U+00FF): one byte per char on the wire.
    let bytes = |s: &str| -> Vec<u8> {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect()
    };
    let mut ctype: Vec<u8> = Vec::new();
    let mut fields: Vec<Vec<u8>> = Vec::with_capacity(res.headers.len());
    for (k, v) in &res.headers {
        if k.eq_ignore_ascii_case("content-type") && ctype.is_empty() {
            ctype = bytes(v);
        } else if !k.eq_ignore_ascii_case("content-length") {
            let mut f = bytes(k);
            f.extend_from_slice(b": ");
            f.extend(bytes(v));
            fields.push(f);
        }
    }
    if fields.len() > MAX_RESPONSE_HEADERS {
        let msg = format!(
            "response has {} headers; at most {MAX_RESPONSE_HEADERS} are allowed\n",
            fields.len()
        );
        crate::engine::natives::log(3, msg.trim_end(), true);
        guest::backend_response(500, b"text/plain;charset=UTF-8", msg.as_bytes(), &[]);
        return false;
    }
    let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    // With background work the host sends the response, then lets this call return.
    let flags = if res.background {
        kvmjs_abi::RESPONSE_FLAG_CONTINUE
    } else {
        0
    };
    let streamed = matches!(res.body, Body::Stream(_));
    let flags = if streamed {
        // The head and the body so far; the call returns for the rest (stream_rest).
        kvmjs_abi::RESPONSE_FLAG_STREAM
    } else {
        flags
    };
    guest::backend_response_flags(res.status, &ctype, res.body.as_bytes(), &refs, flags);
    streamed
}

/// Streams the rest of a [`Body::Stream`] response [`send`] started: one `stream_append`
/// per batch of chunks the app made together, then `stream_end` (abnormal when the app's
/// stream failed, so the client sees a truncated response). Like `send`, the end returns
/// only with background work to run, or in non-ephemeral mode.
fn stream_rest(engine: &mut Engine, background: bool) {
    let ok = engine.stream_body(|chunk| {
        let r = guest::stream_append(chunk);
        if r < 0 {
            // The host refused the chunk (e.g. over max_response_body) and ends the request.
            crate::engine::natives::log(3, &format!("stream_append failed ({r})"), true);
        }
    });
    let mut flags = if background {
        kvmjs_abi::RESPONSE_FLAG_CONTINUE
    } else {
        0
    };
    if !ok {
        flags |= kvmjs_abi::STREAM_FLAG_ABORT;
    }
    guest::stream_end(flags);
}

/// Serves requests forever (each returns here only in non-ephemeral mode).
pub fn serve(engine: &mut Engine) -> ! {
    let mut req = KvmRequest::zeroed();
    loop {
        guest::wait_for_requests_paused(&mut req);
        engine.reseed(req.prng);
        // SAFETY: the host has just written `req`.
        let http = unsafe { read_request(&req) };
        // Only the kvmjs host streams (upstream hosts would take the head for the whole).
        let res = if guest::call_mode() == guest::CallMode::Syscall {
            engine.handle_streaming(&http)
        } else {
            engine.handle(&http)
        };
        if send(&res) {
            stream_rest(engine, res.background);
        }
        if res.background {
            // The response is out: finish ctx.waitUntil work, then pause again (the host
            // resets the VM there in ephemeral mode).
            engine.run_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_map_one_to_one() {
        assert_eq!(latin1(b"plain"), "plain");
        assert_eq!(latin1("é".as_bytes()), "\u{c3}\u{a9}");
    }

    #[test]
    fn urls_become_absolute() {
        assert_eq!(
            absolute_url("/a?b", Some("example.com")),
            "http://example.com/a?b"
        );
        assert_eq!(absolute_url("/a", None), "http://localhost/a");
        assert_eq!(
            absolute_url("https://x.org/y", Some("z")),
            "https://x.org/y"
        );
        assert_eq!(absolute_url("a", Some("evil/path")), "http://localhost/a");
    }
}
