//! The fetch guest API calls (`kvmjs_abi::fetch`). Guest memory is read and written only
//! through the checked [`crate::memory`] helpers; lengths are bounded before any copy.

use super::client::{self, Head, Outgoing};
use super::service;
use super::{FetchError, FetchPolicy, RedirectMode, TooMany};
use crate::syscalls::{errno, Args, Ctx, Flow};
use kvmjs_abi::fetch::{
    nr, CurlFields, CurlOp, CurlOptions, FetchHead, FetchRequest, FLAG_REDIRECT_ERROR,
    FLAG_REDIRECT_MANUAL,
};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use url::Url;

/// Longest URL accepted.
const MAX_URL: u64 = 64 << 10;
/// Longest method.
const MAX_METHOD: u64 = 256;
/// Longest request header block.
const MAX_HEADER_BLOCK: u64 = 256 << 10;
/// Most request header fields.
const MAX_HEADER_FIELDS: usize = 256;
/// Most bytes one `fetch_read`/`fetch_write` moves (larger requests are cut to it).
const MAX_CHUNK: u64 = 4 << 20;

/// Runs fetch call `number` (0x20000..=0x2000f).
pub fn dispatch(ctx: &mut Ctx<'_>, number: u64, a: &Args) -> Flow {
    let started = ctx.exchange.fetch.started;
    let r = match number {
        nr::START => start(ctx, a),
        nr::WRITE => write(ctx, a),
        nr::END => end(ctx, a),
        nr::READ => read(ctx, a),
        nr::CLOSE => ctx.exchange.fetch.remove(a[0]).map(|_| 0),
        nr::ERROR => return last_error(ctx, a),
        nr::FETCH => sys_fetch(ctx, a),
        _ => return Flow::err(errno::ENOSYS),
    };
    match r {
        Ok(v) => Flow::ok(v),
        Err(e) => {
            // Only failures of admitted fetches: a start admitted in this call, or a
            // running fetch failing (not the guest misusing the calls).
            let admitted_now = ctx.exchange.fetch.started > started;
            let misuse = matches!(
                e,
                FetchError::BadHandle(_)
                    | FetchError::BadState(..)
                    | FetchError::BadArg(_)
                    | FetchError::Fault(_)
                    | FetchError::TooMany(_)
            );
            if admitted_now || (!misuse && !matches!(number, nr::START | nr::FETCH)) {
                ctx.cfg.fetch.metrics.errors.fetch_add(1, Relaxed);
            }
            tracing::debug!(program = %ctx.cfg.name, "{e}");
            let code = e.errno();
            ctx.exchange.fetch.last_error = Some(e.to_string());
            Flow::Return((-code) as u64)
        }
    }
}

fn fault(what: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::Fault(format!("{what}: {e}"))
}

fn bytes(ctx: &Ctx<'_>, what: &str, ptr: u64, len: u64, max: u64) -> Result<Vec<u8>, FetchError> {
    if len > max {
        return Err(FetchError::BadArg(format!(
            "the {what} is {len} bytes; the limit is {max}"
        )));
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    ctx.mem
        .slice(ptr, len)
        .map(<[u8]>::to_vec)
        .map_err(|e| fault(what, e))
}

/// The fetch's deadline: its own timeout, never past the request's.
fn deadline(ctx: &Ctx<'_>) -> Instant {
    let own = Instant::now() + ctx.cfg.fetch.timeout;
    ctx.deadline.map_or(own, |d| d.min(own))
}

fn parse_url(raw: &[u8]) -> Result<Url, FetchError> {
    let s =
        std::str::from_utf8(raw).map_err(|_| FetchError::BadArg("the URL is not UTF-8".into()))?;
    let u = Url::parse(s).map_err(|e| FetchError::BadArg(format!("invalid URL '{s}': {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(FetchError::BadArg(format!(
            "only http: and https: URLs can be fetched, not '{s}'"
        )));
    }
    Ok(u)
}

fn parse_method(raw: &[u8]) -> Result<String, FetchError> {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if raw.is_empty() || !raw.iter().all(tchar) {
        return Err(FetchError::BadArg("the method is not a token".into()));
    }
    Ok(String::from_utf8_lossy(raw).into_owned())
}

/// `"Name: value"` fields, each valid, host-controlled ones dropped.
fn parse_fields<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<(String, Vec<u8>)>, FetchError> {
    let mut out = Vec::new();
    for f in fields.filter(|f| !f.is_empty()) {
        if out.len() >= MAX_HEADER_FIELDS {
            return Err(FetchError::BadArg(format!(
                "more than {MAX_HEADER_FIELDS} request headers"
            )));
        }
        let colon = crate::api::valid_field(f).map_err(FetchError::BadArg)?;
        let name = String::from_utf8_lossy(&f[..colon]).to_ascii_lowercase();
        let value = f[colon + 1..].trim_ascii().to_vec();
        if client::keep_header(&name) {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// Checks the per-request and process-wide limits and counts the fetch as started; the
/// slot is the worker's.
fn admit(ctx: &mut Ctx<'_>) -> Result<service::WorkerSlot, FetchError> {
    let p: &FetchPolicy = &ctx.cfg.fetch;
    let f = &mut ctx.exchange.fetch;
    if f.open() >= p.max_open {
        return Err(FetchError::TooMany(TooMany::Open(p.max_open)));
    }
    if f.started >= p.max_per_request {
        return Err(FetchError::TooMany(TooMany::Started(p.max_per_request)));
    }
    let slot = service::acquire()?;
    f.started += 1;
    p.metrics.count.fetch_add(1, Relaxed);
    Ok(slot)
}

fn start(ctx: &mut Ctx<'_>, a: &Args) -> Result<u64, FetchError> {
    let mut raw = [0u8; FetchRequest::SIZE];
    ctx.mem
        .read(a[0], &mut raw)
        .map_err(|e| fault("request", e))?;
    let r = FetchRequest::from_bytes(&raw);
    let head_ptr = a[1];
    let url = parse_url(&bytes(ctx, "URL", r.url, r.url_len.into(), MAX_URL)?)?;
    let method = parse_method(&bytes(
        ctx,
        "method",
        r.method,
        r.method_len.into(),
        MAX_METHOD,
    )?)?;
    let block = bytes(
        ctx,
        "header block",
        r.headers,
        r.headers_len.into(),
        MAX_HEADER_BLOCK,
    )?;
    let headers = parse_fields(block.split(|&b| b == b'\n'))?;
    let redirect = if r.flags & FLAG_REDIRECT_ERROR != 0 {
        RedirectMode::Error
    } else if r.flags & FLAG_REDIRECT_MANUAL != 0 {
        RedirectMode::Manual
    } else {
        RedirectMode::Follow
    };
    let limit = ctx.cfg.fetch.max_request_body;
    if !r.body_streamed() && r.body_len > limit {
        return Err(FetchError::RequestTooLarge(limit));
    }
    let body = if r.body_streamed() {
        None
    } else {
        Some(bytes(ctx, "body", r.body, r.body_len, limit)?)
    };
    let slot = admit(ctx)?;
    let out = Outgoing {
        method,
        url,
        headers,
        redirect,
    };
    let dl = deadline(ctx);
    let policy = &ctx.cfg.fetch;
    let streamed = body.is_none();
    let sent = body.as_ref().map_or(0, |b| b.len() as u64);
    let mut remote = service::open(policy, out, body, dl, slot)?;
    if streamed {
        return Ok(ctx.exchange.fetch.insert(remote));
    }
    let head = remote.head()?;
    policy.metrics.observe(remote.started().elapsed());
    policy.metrics.bytes_out.fetch_add(sent, Relaxed);
    let h = ctx.exchange.fetch.insert(remote);
    if let Err(e) = write_head(ctx, head_ptr, &head) {
        ctx.exchange.fetch.remove(h)?;
        return Err(e);
    }
    Ok(h)
}

fn write_head(ctx: &mut Ctx<'_>, at: u64, head: &Head) -> Result<(), FetchError> {
    let mut raw = [0u8; FetchHead::SIZE];
    ctx.mem.read(at, &mut raw).map_err(|e| fault("head", e))?;
    let mut h = FetchHead::from_bytes(&raw);
    let mut block = Vec::new();
    for (k, v) in &head.headers {
        block.extend_from_slice(k.as_bytes());
        block.extend_from_slice(b": ");
        block.extend_from_slice(v);
        block.push(b'\n');
    }
    let url = head.url.as_str().as_bytes();
    if block.len() as u64 > u64::from(h.headers_cap) || url.len() as u64 > u64::from(h.url_cap) {
        return Err(FetchError::BadArg(format!(
            "the response head needs {} bytes of headers and {} of URL; the buffers hold {} and {}",
            block.len(),
            url.len(),
            h.headers_cap,
            h.url_cap
        )));
    }
    ctx.mem
        .write(h.headers, &block)
        .map_err(|e| fault("head headers", e))?;
    ctx.mem
        .write(h.url, url)
        .map_err(|e| fault("head url", e))?;
    h.headers_len = block.len() as u32;
    h.url_len = url.len() as u32;
    h.status = head.status;
    h.redirected = u8::from(head.redirected);
    h.content_length = head.content_length.map_or(-1, |n| n as i64);
    ctx.mem
        .write(at, &h.to_bytes())
        .map_err(|e| fault("head", e))
}

fn write(ctx: &mut Ctx<'_>, a: &Args) -> Result<u64, FetchError> {
    let (h, ptr, len) = (a[0], a[1], a[2].min(MAX_CHUNK));
    let limit = ctx.cfg.fetch.max_request_body;
    let chunk = if len == 0 {
        &[][..]
    } else {
        ctx.mem
            .slice(ptr, len)
            .map_err(|e| fault("body chunk", e))?
    };
    let t = ctx.exchange.fetch.get(h)?;
    if !t.streaming() {
        return Err(FetchError::BadState(
            h,
            "the request body is not a stream, or has ended",
        ));
    }
    if t.sent + len > limit {
        ctx.exchange.fetch.remove(h)?;
        return Err(FetchError::RequestTooLarge(limit));
    }
    t.sent += len;
    // bytes_out is counted by the worker, from what the backend was sent.
    if let Err(e) = t.write(chunk) {
        ctx.exchange.fetch.remove(h)?;
        return Err(e);
    }
    Ok(len)
}

fn end(ctx: &mut Ctx<'_>, a: &Args) -> Result<u64, FetchError> {
    let h = a[0];
    let t = ctx.exchange.fetch.get(h)?;
    if !t.streaming() {
        return Err(FetchError::BadState(
            h,
            "the request body is not a stream, or has ended",
        ));
    }
    let head = match t.head() {
        Ok(head) => head,
        Err(e) => {
            ctx.exchange.fetch.remove(h)?;
            return Err(e);
        }
    };
    ctx.cfg.fetch.metrics.observe(t.started().elapsed());
    if let Err(e) = write_head(ctx, a[1], &head) {
        ctx.exchange.fetch.remove(h)?;
        return Err(e);
    }
    Ok(0)
}

fn read(ctx: &mut Ctx<'_>, a: &Args) -> Result<u64, FetchError> {
    let (h, ptr, cap) = (a[0], a[1], a[2].min(MAX_CHUNK));
    let t = ctx.exchange.fetch.get(h)?;
    if !t.receiving {
        return Err(FetchError::BadState(
            h,
            "end the request body (fetch_end) first",
        ));
    }
    if cap == 0 {
        return Ok(0);
    }
    // Checked before the worker reads, so bytes are never lost to a bad buffer.
    ctx.mem
        .check_writable(ptr, cap)
        .map_err(|e| fault("read buffer", e))?;
    let data = match t.read(cap as usize) {
        Ok(d) => d,
        Err(e) => {
            ctx.exchange.fetch.remove(h)?;
            return Err(e);
        }
    };
    ctx.mem
        .write(ptr, &data)
        .map_err(|e| fault("read buffer", e))?;
    ctx.cfg
        .fetch
        .metrics
        .bytes_in
        .fetch_add(data.len() as u64, Relaxed);
    Ok(data.len() as u64)
}

fn last_error(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let msg = ctx.exchange.fetch.last_error.clone().unwrap_or_default();
    let n = (msg.len() as u64).min(a[1]);
    if n > 0 && ctx.mem.write(a[0], &msg.as_bytes()[..n as usize]).is_err() {
        return Flow::err(errno::EFAULT);
    }
    Flow::ok(msg.len() as u64)
}

/// Upstream's buffered `sys_fetch` (see [`CurlOp`] for the kvmjs semantics).
fn sys_fetch(ctx: &mut Ctx<'_>, a: &Args) -> Result<u64, FetchError> {
    let url = parse_url(&bytes(ctx, "URL", a[0], a[1], MAX_URL)?)?;
    let mut raw = [0u8; CurlOp::SIZE];
    ctx.mem
        .read(a[2], &mut raw)
        .map_err(|e| fault("curl_op", e))?;
    let mut op = CurlOp::from_bytes(&raw);
    let mut headers = Vec::new();
    if a[3] != 0 {
        let mut raw = [0u8; CurlFields::SIZE];
        ctx.mem
            .read(a[3], &mut raw)
            .map_err(|e| fault("curl_fields", e))?;
        let f = CurlFields::from_bytes(&raw);
        let mut fields = Vec::new();
        for (&p, &n) in f.ptr.iter().zip(&f.len) {
            if p != 0 {
                fields.push(bytes(ctx, "header field", p, n.into(), u16::MAX.into())?);
            }
        }
        headers = parse_fields(fields.iter().map(Vec::as_slice))?;
    }
    let follow = if a[4] != 0 {
        let mut raw = [0u8; CurlOptions::SIZE];
        ctx.mem
            .read(a[4], &mut raw)
            .map_err(|e| fault("curl_options", e))?;
        CurlOptions::from_bytes(&raw).follow_location != 0
    } else {
        false
    };
    let limit = ctx.cfg.fetch.max_request_body;
    let body = bytes(
        ctx,
        "post buffer",
        op.post_buffer,
        op.post_buflen.into(),
        limit,
    )?;
    let slot = admit(ctx)?;
    let out = Outgoing {
        method: if body.is_empty() { "GET" } else { "POST" }.into(),
        url,
        headers,
        redirect: if follow {
            RedirectMode::Follow
        } else {
            RedirectMode::Manual
        },
    };
    let t0 = Instant::now();
    let sent = body.len() as u64;
    let policy = &ctx.cfg.fetch;
    let mut remote = service::open(policy, out, Some(body), deadline(ctx), slot)?;
    let head = remote.head()?;
    policy.metrics.observe(t0.elapsed());
    policy.metrics.bytes_out.fetch_add(sent, Relaxed);
    let cap = u64::from(op.content_length);
    let mut got = Vec::new();
    loop {
        let chunk = remote.read(256 << 10)?;
        if chunk.is_empty() {
            break;
        }
        got.extend_from_slice(&chunk);
        if got.len() as u64 > cap {
            return Err(FetchError::BadArg(format!(
                "the response body does not fit the {cap}-byte content buffer"
            )));
        }
    }
    policy.metrics.bytes_in.fetch_add(got.len() as u64, Relaxed);
    let mut block = Vec::new();
    for (k, v) in &head.headers {
        block.extend_from_slice(k.as_bytes());
        block.extend_from_slice(b": ");
        block.extend_from_slice(v);
        block.extend_from_slice(b"\r\n");
    }
    block.truncate(op.headers_length as usize);
    if !got.is_empty() {
        ctx.mem
            .write(op.content, &got)
            .map_err(|e| fault("content", e))?;
    }
    if !block.is_empty() {
        ctx.mem
            .write(op.headers, &block)
            .map_err(|e| fault("headers", e))?;
    }
    let ctype = head
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map_or(&[][..], |(_, v)| v.as_slice());
    let n = ctype.len().min(op.ctype.len());
    op.ctype = [0; 128];
    op.ctype[..n].copy_from_slice(&ctype[..n]);
    op.ctlen = n as u32;
    op.status = head.status.into();
    op.content_length = got.len() as u32;
    op.headers_length = block.len() as u32;
    ctx.mem
        .write(a[2], &op.to_bytes())
        .map_err(|e| fault("curl_op", e))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::testing::Fixture;
    use std::time::Duration;

    fn call(f: &mut Fixture, n: u64, a: Args) -> i64 {
        match dispatch(&mut f.ctx(), n, &a) {
            Flow::Return(v) => v as i64,
            other => panic!("{other:?}"),
        }
    }

    fn request(f: &mut Fixture, url: &str, flags: u32) -> u64 {
        f.mem.write(0x70_0000, url.as_bytes()).unwrap();
        f.mem.write(0x70_1000, b"GET").unwrap();
        let r = FetchRequest {
            method: 0x70_1000,
            method_len: 3,
            url: 0x70_0000,
            url_len: url.len() as u32,
            flags,
            ..Default::default()
        };
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&r.method.to_le_bytes());
        b[8..16].copy_from_slice(&r.url.to_le_bytes());
        b[32..36].copy_from_slice(&r.method_len.to_le_bytes());
        b[36..40].copy_from_slice(&r.url_len.to_le_bytes());
        b[44..48].copy_from_slice(&r.flags.to_le_bytes());
        f.mem.write(0x70_2000, &b).unwrap();
        0x70_2000
    }

    fn error_text(f: &mut Fixture) -> String {
        let n = call(f, nr::ERROR, [0x71_0000, 4096, 0, 0, 0, 0]);
        String::from_utf8(f.mem.slice(0x71_0000, n as u64).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn forbidden_origin_is_eacces_with_a_message_and_counted() {
        let mut f = Fixture::new();
        let r = request(&mut f, "http://127.0.0.1:9/x", 0);
        assert_eq!(call(&mut f, nr::START, [r, 0x70_3000, 0, 0, 0, 0]), -13);
        assert!(error_text(&mut f).contains("is not allowed: add the origin http://127.0.0.1:9"));
        assert_eq!(f.cfg.fetch.metrics.snapshot().errors, 1);
    }

    #[test]
    fn hostile_arguments_get_errors() {
        let mut f = Fixture::new();
        assert_eq!(call(&mut f, nr::START, [u64::MAX - 4, 0, 0, 0, 0, 0]), -14);
        assert_eq!(call(&mut f, nr::READ, [1, 0x70_0000, 16, 0, 0, 0]), -9);
        assert_eq!(call(&mut f, nr::WRITE, [0, 0x70_0000, 16, 0, 0, 0]), -9);
        assert_eq!(call(&mut f, nr::CLOSE, [u64::MAX, 0, 0, 0, 0, 0]), -9);
        assert_eq!(call(&mut f, nr::END, [7, 0, 0, 0, 0, 0]), -9);
        let r = request(&mut f, "file:///etc/passwd", 0);
        assert_eq!(call(&mut f, nr::START, [r, 0x70_3000, 0, 0, 0, 0]), -22);
        // A huge URL length is refused before any copy.
        f.mem
            .write(0x70_2000 + 36, &u32::MAX.to_le_bytes())
            .unwrap();
        assert_eq!(call(&mut f, nr::START, [r, 0x70_3000, 0, 0, 0, 0]), -22);
        assert_eq!(call(&mut f, nr::ERROR, [u64::MAX, 10, 0, 0, 0, 0]), -14);
        assert_eq!(call(&mut f, 0x2000f, [0; 6]), -38);
    }

    #[test]
    fn open_fetch_limit_holds_for_streamed_requests() {
        service::start();
        let mut f = Fixture::new();
        f.cfg.fetch.allow = vec![super::super::Origin::parse("http://127.0.0.1:9").unwrap()];
        f.cfg.fetch.max_open = 2;
        f.cfg.fetch.timeout = Duration::from_millis(200);
        let r = request(
            &mut f,
            "http://127.0.0.1:9/",
            kvmjs_abi::fetch::FLAG_BODY_STREAM,
        );
        assert_eq!(call(&mut f, nr::START, [r, 0, 0, 0, 0, 0]), 1);
        assert_eq!(call(&mut f, nr::START, [r, 0, 0, 0, 0, 0]), 2);
        assert_eq!(call(&mut f, nr::START, [r, 0, 0, 0, 0, 0]), -24);
        assert_eq!(call(&mut f, nr::CLOSE, [1, 0, 0, 0, 0, 0]), 0);
        // A closed fetch counts until its worker ends (here: soon, its upload aborted).
        let t0 = Instant::now();
        while f.exchange.fetch.open() >= 2 {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "the worker did not end"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(call(&mut f, nr::START, [r, 0, 0, 0, 0, 0]), 1);
        assert_eq!(f.exchange.fetch.open(), 2);
        f.exchange.fetch.clear();
        assert_eq!(call(&mut f, nr::READ, [1, 0x70_0000, 16, 0, 0, 0]), -9);
        // A streamed body over max_request_body fails and drops the fetch.
        f.cfg.fetch.max_request_body = 4;
        assert_eq!(call(&mut f, nr::START, [r, 0, 0, 0, 0, 0]), 1);
        assert_eq!(call(&mut f, nr::WRITE, [1, 0x70_0000, 3, 0, 0, 0]), 3);
        assert_eq!(call(&mut f, nr::WRITE, [1, 0x70_0000, 3, 0, 0, 0]), -27);
        assert!(error_text(&mut f).contains("fetch.max_request_body"));
        // Misuse is not a fetch failure; the failures of admitted fetches are.
        let s = f.cfg.fetch.metrics.snapshot();
        assert_eq!((s.count, s.errors), (4, 1), "{s:?}");
        assert_eq!(call(&mut f, nr::WRITE, [1, 0x70_0000, 1, 0, 0, 0]), -9);
    }

    #[test]
    fn upstream_sys_fetch_fills_curl_op() {
        use std::io::{Read, Write};
        service::start();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"payload") {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8_lossy(&got).to_ascii_lowercase();
            assert!(req.starts_with("post /p "), "{req}");
            assert!(req.contains("x-k: v"), "{req}");
            s.write_all(
                b"HTTP/1.1 201 Created\r\nContent-Type: text/x\r\nContent-Length: 3\r\n\r\nabc",
            )
            .unwrap();
        });
        let mut f = Fixture::new();
        let url = format!("http://127.0.0.1:{port}/p");
        f.cfg.fetch.allow = vec![super::super::Origin::parse(&url[..url.len() - 2]).unwrap()];
        f.mem.write(0x70_0000, url.as_bytes()).unwrap();
        f.mem.write(0x70_1000, b"payload").unwrap();
        f.mem.write(0x70_1100, b"X-K: v").unwrap();
        let mut op = CurlOp::from_bytes(&[0; CurlOp::SIZE]);
        op.post_buffer = 0x70_1000;
        op.post_buflen = 7;
        op.content = 0x70_2000;
        op.content_length = 16;
        op.headers = 0x70_3000;
        op.headers_length = 1024;
        f.mem.write(0x70_4000, &op.to_bytes()).unwrap();
        let mut fields = [0u8; CurlFields::SIZE];
        fields[..8].copy_from_slice(&0x70_1100u64.to_le_bytes());
        fields[96..98].copy_from_slice(&6u16.to_le_bytes());
        f.mem.write(0x70_5000, &fields).unwrap();
        let a = [0x70_0000, url.len() as u64, 0x70_4000, 0x70_5000, 0, 0];
        assert_eq!(call(&mut f, nr::FETCH, a), 0, "{}", error_text(&mut f));
        let mut raw = [0u8; CurlOp::SIZE];
        f.mem.read(0x70_4000, &mut raw).unwrap();
        let op = CurlOp::from_bytes(&raw);
        assert_eq!((op.status, op.content_length, op.ctlen), (201, 3, 6));
        assert_eq!(&op.ctype[..6], b"text/x");
        assert_eq!(f.mem.slice(0x70_2000, 3).unwrap(), b"abc");
        let s = f.cfg.fetch.metrics.snapshot();
        assert_eq!((s.count, s.bytes_in, s.bytes_out, s.errors), (1, 3, 7, 0));
    }
}
