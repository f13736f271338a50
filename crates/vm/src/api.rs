//! The libvmod-tinykvm guest API, host side. Every pointer and length is bounds-checked
//! and every header the guest sends is validated, so a guest cannot split responses.

use crate::request::{Response, StreamStep};
use crate::syscalls::{errno, Args, Ctx, Flow, Stop};
use kvmjs_abi::{
    nr, BackendResponseExtra, MemInfo, HTTP_REQ, HTTP_RESP, MAX_CONTENT_TYPE_LEN,
    MAX_RESPONSE_HEADERS, RESPONSE_FLAGS, RESPONSE_FLAG_CONTINUE, RESPONSE_FLAG_STREAM,
    STREAM_END_FLAGS, STREAM_FLAG_ABORT,
};

/// Longest single header field the guest may pass.
const MAX_FIELD: u64 = 64 << 10;
/// Most headers (request or response) one request may hold.
const MAX_HEADERS: usize = 1024;

/// Runs guest API call `number`.
pub fn dispatch(ctx: &mut Ctx<'_>, number: u64, a: &Args) -> Flow {
    match number {
        nr::WAIT_FOR_REQUESTS_PAUSED => match ctx.mem.check_writable(a[0], 104) {
            Ok(_) => Flow::Stop(Stop::Paused { req_ptr: a[0] }),
            Err(e) => Flow::Stop(Stop::Fatal(format!("wait_for_requests_paused: {e}"))),
        },
        nr::WAIT_FOR_REQUESTS => Flow::Stop(Stop::Fatal(
            "callback mode (wait_for_requests) is not supported by kvmjs; call wait_for_requests_paused".into(),
        )),
        nr::BACKEND_RESPONSE => match backend_response(ctx, a) {
            Ok(r) => Flow::Stop(Stop::Responded(r)),
            Err(msg) => Flow::Stop(Stop::Fatal(format!("backend_response: {msg}"))),
        },
        nr::STREAM_APPEND => match stream_append(ctx, a) {
            Ok(chunk) => Flow::Stop(Stop::Stream(StreamStep::Chunk(chunk))),
            Err(msg) => Flow::Stop(Stop::Fatal(format!("stream_append: {msg}"))),
        },
        nr::STREAM_END if a[0] & !STREAM_END_FLAGS != 0 => Flow::Stop(Stop::Fatal(format!(
            "stream_end: unknown flags {:#x}",
            a[0] & !STREAM_END_FLAGS
        ))),
        nr::STREAM_END => Flow::Stop(Stop::Stream(StreamStep::End {
            abort: a[0] & STREAM_FLAG_ABORT != 0,
            background: a[0] & RESPONSE_FLAG_CONTINUE != 0,
        })),
        nr::SYS_LOG => sys_log(ctx, a),
        nr::HTTP_APPEND => http_append(ctx, a, false),
        nr::HTTP_SET => http_append(ctx, a, true),
        nr::HTTP_FIND => http_find(ctx, a),
        nr::HTTP_METHOD => http_method(ctx, a),
        nr::GET_MEMINFO => get_meminfo(ctx, a),
        nr::IS_DEBUG | nr::SET_CACHEABLE => Flow::ok(0),
        nr::REGISTER_FUNC => Flow::err(errno::ENOSYS),
        n @ 0x20000..=0x2000f => crate::fetch::calls::dispatch(ctx, n, a),
        other => {
            tracing::warn!(program = %ctx.cfg.name, "guest made unknown API call {other:#x}; returning ENOSYS");
            Flow::err(errno::ENOSYS)
        }
    }
}

/// Checks a `"Name: value"` field: token name, colon, no control characters.
pub fn valid_field(f: &[u8]) -> Result<usize, String> {
    let colon = f
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("header {:?} has no ':'", String::from_utf8_lossy(f)))?;
    let name = &f[..colon];
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(tchar) {
        return Err(format!(
            "header name {:?} is not a token",
            String::from_utf8_lossy(name)
        ));
    }
    if f[colon + 1..]
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(format!(
            "header {:?} has control characters in its value",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(colon)
}

fn backend_response(ctx: &mut Ctx<'_>, a: &Args) -> Result<Response, String> {
    let status = a[0];
    if !(100..=599).contains(&status) {
        return Err(format!("status {status} is outside 100..=599"));
    }
    if a[2] >= MAX_CONTENT_TYPE_LEN as u64 {
        return Err(format!(
            "content-type length {} is not below {MAX_CONTENT_TYPE_LEN}",
            a[2]
        ));
    }
    let content_type = ctx
        .mem
        .slice(a[1], a[2])
        .map_err(|e| format!("content-type: {e}"))?
        .to_vec();
    if content_type.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err("content-type has control characters".into());
    }
    if a[4] > ctx.cfg.max_response_body {
        return Err(format!(
            "body of {} bytes exceeds the {}-byte limit (max_response_body)",
            a[4], ctx.cfg.max_response_body
        ));
    }
    let body = if a[4] == 0 {
        Vec::new()
    } else {
        ctx.mem
            .slice(a[3], a[4])
            .map_err(|e| format!("body: {e}"))?
            .to_vec()
    };
    let mut headers: Vec<Vec<u8>> = ctx
        .exchange
        .resp_headers
        .iter()
        .map(|h| h.as_bytes().to_vec())
        .collect();
    let mut background = false;
    let mut stream = false;
    if a[5] != 0 {
        let flags_at = a[5] + std::mem::offset_of!(BackendResponseExtra, reserved) as u64;
        let flags = ctx
            .mem
            .read_u64(flags_at)
            .map_err(|e| format!("extra: {e}"))?;
        if flags & !RESPONSE_FLAGS != 0 {
            return Err(format!(
                "unknown flags {:#x} in BackendResponseExtra::reserved[0]; leave other bits zero",
                flags & !RESPONSE_FLAGS
            ));
        }
        background = flags & RESPONSE_FLAG_CONTINUE != 0;
        stream = flags & RESPONSE_FLAG_STREAM != 0;
        // A program that serves HTTP itself answers on its own socket; nothing would
        // carry a stream's later chunks.
        if stream && ctx.cfg.listen.is_some() {
            return Err(
                "RESPONSE_FLAG_STREAM is not supported for a program that listens \
                 itself (listen mode): send the whole body"
                    .into(),
            );
        }
        let ptr = ctx.mem.read_u64(a[5]).map_err(|e| format!("extra: {e}"))?;
        let n = ctx
            .mem
            .read_u16(a[5] + 8)
            .map_err(|e| format!("extra: {e}"))? as usize;
        if n > MAX_RESPONSE_HEADERS {
            return Err(format!(
                "{n} extra headers; at most {MAX_RESPONSE_HEADERS} are allowed"
            ));
        }
        for i in 0..n as u64 {
            let at = ptr
                .checked_add(i * 16)
                .ok_or("header table address overflows")?;
            let field = ctx
                .mem
                .read_u64(at)
                .map_err(|e| format!("header {i}: {e}"))?;
            let len = ctx
                .mem
                .read_u64(at + 8)
                .map_err(|e| format!("header {i}: {e}"))?;
            if len > MAX_FIELD {
                return Err(format!(
                    "header {i} is {len} bytes; the limit is {MAX_FIELD}"
                ));
            }
            let f = ctx
                .mem
                .slice(field, len)
                .map_err(|e| format!("header {i}: {e}"))?;
            valid_field(f)?;
            headers.push(f.to_vec());
        }
    }
    Ok(Response {
        status: status as u16,
        content_type,
        body,
        headers,
        // A streamed response's background flag comes with its end (stream_end).
        background: background && !stream,
        stream,
    })
}

/// The chunk of a `stream_append`. Whether a stream is open is the VM's to check (it
/// knows where the request is); each chunk is bounded like a whole body, and the host
/// holds only a bounded number of bytes per stream.
fn stream_append(ctx: &mut Ctx<'_>, a: &Args) -> Result<Vec<u8>, String> {
    if a[1] > ctx.cfg.max_response_body {
        return Err(format!(
            "chunk of {} bytes exceeds the {}-byte limit (max_response_body); append smaller chunks",
            a[1], ctx.cfg.max_response_body
        ));
    }
    if a[1] == 0 {
        return Ok(Vec::new());
    }
    ctx.mem
        .slice(a[0], a[1])
        .map(<[u8]>::to_vec)
        .map_err(|e| format!("chunk: {e}"))
}

fn sys_log(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let len = a[1].min(u64::from(u16::MAX));
    match ctx.mem.slice(a[0], len) {
        Ok(b) => {
            let line = String::from_utf8_lossy(b).into_owned();
            tracing::info!(program = %ctx.cfg.name, "{}", line.trim_end());
            Flow::ok(len)
        }
        Err(_) => Flow::err(errno::EFAULT),
    }
}

fn headers_of<'c>(ctx: &'c mut Ctx<'_>, which: u64) -> Option<&'c mut Vec<String>> {
    match which {
        HTTP_REQ => Some(&mut ctx.exchange.req_headers),
        HTTP_RESP => Some(&mut ctx.exchange.resp_headers),
        _ => None,
    }
}

fn name_eq(field: &str, name: &[u8]) -> bool {
    let n = field.find(':').unwrap_or(field.len());
    field.as_bytes()[..n].eq_ignore_ascii_case(name)
}

fn http_append(ctx: &mut Ctx<'_>, a: &Args, set: bool) -> Flow {
    if a[2] > MAX_FIELD {
        return Flow::err(errno::EINVAL);
    }
    let Ok(bytes) = ctx.mem.slice(a[1], a[2]).map(<[u8]>::to_vec) else {
        return Flow::err(errno::EFAULT);
    };
    let Ok(field) = String::from_utf8(bytes) else {
        return Flow::err(errno::EINVAL);
    };
    let Some(list) = headers_of(ctx, a[0]) else {
        return Flow::err(errno::EINVAL);
    };
    if set && !field.contains(':') {
        // Unset by name.
        list.retain(|h| !name_eq(h, field.as_bytes()));
        return Flow::ok(0);
    }
    let colon = match valid_field(field.as_bytes()) {
        Ok(c) => c,
        Err(_) => return Flow::err(errno::EINVAL),
    };
    if set {
        if let Some(i) = list
            .iter()
            .position(|h| name_eq(h, &field.as_bytes()[..colon]))
        {
            list[i] = field;
            return Flow::ok(i as u64);
        }
    }
    if list.len() >= MAX_HEADERS {
        return Flow::err(errno::ENOMEM);
    }
    list.push(field);
    Flow::ok(list.len() as u64 - 1)
}

fn http_find(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    if a[2] > MAX_FIELD {
        return Flow::err(errno::EINVAL);
    }
    let Ok(name) = ctx.mem.slice(a[1], a[2]).map(<[u8]>::to_vec) else {
        return Flow::err(errno::EFAULT);
    };
    let Some(list) = headers_of(ctx, a[0]) else {
        return Flow::err(errno::EINVAL);
    };
    let Some(found) = list.iter().find(|h| name_eq(h, &name)).cloned() else {
        return Flow::ok(0);
    };
    let len = found.len() as u64;
    if a[3] == 0 {
        return Flow::ok(len);
    }
    if len > a[4] {
        return Flow::ok(0);
    }
    match ctx.mem.write(a[3], found.as_bytes()) {
        Ok(()) => Flow::ok(len),
        Err(_) => Flow::err(errno::EFAULT),
    }
}

fn http_method(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let m = ctx.exchange.method.clone();
    if m.len() as u64 > a[1] {
        return Flow::ok(0);
    }
    match ctx.mem.write(a[0], m.as_bytes()) {
        Ok(()) => Flow::ok(m.len() as u64),
        Err(_) => Flow::err(errno::EFAULT),
    }
}

fn get_meminfo(ctx: &mut Ctx<'_>, a: &Args) -> Flow {
    let used = ctx.proc.memory_used();
    let base = ctx.proc.request_memory_base.map_or(used, |(b, _)| b);
    let info = MemInfo {
        max_memory: ctx.proc.max_memory,
        max_reqmem: ctx.cfg.max_request_memory,
        reqmem_upper: used.saturating_sub(base),
        reqmem_current: used.saturating_sub(base),
    };
    let mut b = [0u8; 32];
    for (i, v) in [
        info.max_memory,
        info.max_reqmem,
        info.reqmem_upper,
        info.reqmem_current,
    ]
    .iter()
    .enumerate()
    {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    match ctx.mem.write(a[0], &b) {
        Ok(()) => Flow::ok(0),
        Err(_) => Flow::err(errno::EFAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::testing::Fixture;

    fn call(f: &mut Fixture, n: u64, a: Args) -> Flow {
        dispatch(&mut f.ctx(), n, &a)
    }

    #[test]
    fn field_validation() {
        assert_eq!(valid_field(b"X-A: b").unwrap(), 3);
        assert!(valid_field(b"no colon").is_err());
        assert!(valid_field(b": empty name").is_err());
        assert!(valid_field(b"Bad Name: x").is_err());
        assert!(valid_field(b"X: a\r\nInjected: 1").is_err());
    }

    #[test]
    fn backend_response_reads_everything_and_rejects_bad_pointers() {
        let mut f = Fixture::new();
        f.mem.write(0x70_0000, b"text/plain").unwrap();
        f.mem.write(0x70_1000, b"body!").unwrap();
        f.mem.write(0x70_2000, b"X-One: 1").unwrap();
        f.mem.write_u64(0x70_3000, 0x70_2000).unwrap();
        f.mem.write_u64(0x70_3008, 8).unwrap();
        f.mem.write_u64(0x70_4000, 0x70_3000).unwrap(); // extra.headers
        f.mem.write(0x70_4008, &1u16.to_le_bytes()).unwrap(); // extra.num_headers
        match call(
            &mut f,
            nr::BACKEND_RESPONSE,
            [200, 0x70_0000, 10, 0x70_1000, 5, 0x70_4000],
        ) {
            Flow::Stop(Stop::Responded(r)) => {
                assert_eq!(
                    (r.status, &r.body[..], &r.content_type[..]),
                    (200, &b"body!"[..], &b"text/plain"[..])
                );
                assert_eq!(r.headers, vec![b"X-One: 1".to_vec()]);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            [200, 0x70_0000, 10, u64::MAX - 2, 5, 0],
            [200, u64::MAX, 10, 0x70_1000, 5, 0],
            [200, 0x70_0000, 10, 0x70_1000, u64::MAX, 0],
            [200, 0x70_0000, 10, 0x70_1000, 5, 0xdead_beef_0000],
            [99, 0x70_0000, 10, 0x70_1000, 5, 0],
            [200, 0x70_0000, 0x1000, 0x70_1000, 5, 0],
        ] {
            assert!(
                matches!(
                    call(&mut f, nr::BACKEND_RESPONSE, bad),
                    Flow::Stop(Stop::Fatal(_))
                ),
                "{bad:x?}"
            );
        }
    }

    #[test]
    fn stream_calls_report_their_step() {
        let mut f = Fixture::new();
        f.mem.write(0x70_0000, b"text/event-stream").unwrap();
        f.mem.write(0x70_1000, b"data: 1\n\n").unwrap();
        // extra with no headers and RESPONSE_FLAG_STREAM | RESPONSE_FLAG_CONTINUE.
        let flags_at = 0x70_4000 + std::mem::offset_of!(BackendResponseExtra, reserved) as u64;
        f.mem
            .write_u64(flags_at, RESPONSE_FLAG_STREAM | RESPONSE_FLAG_CONTINUE)
            .unwrap();
        match call(
            &mut f,
            nr::BACKEND_RESPONSE,
            [200, 0x70_0000, 17, 0x70_1000, 9, 0x70_4000],
        ) {
            Flow::Stop(Stop::Responded(r)) => {
                assert!(r.stream);
                assert!(!r.background, "a stream's background flag comes at its end");
                assert_eq!(r.body, b"data: 1\n\n");
            }
            other => panic!("{other:?}"),
        }
        match call(&mut f, nr::STREAM_APPEND, [0x70_1000, 4, 0, 0, 0, 0]) {
            Flow::Stop(Stop::Stream(StreamStep::Chunk(c))) => assert_eq!(c, b"data"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            call(&mut f, nr::STREAM_APPEND, [0, 0, 0, 0, 0, 0]),
            Flow::Stop(Stop::Stream(StreamStep::Chunk(c))) if c.is_empty()
        ));
        for bad in [[u64::MAX - 2, 5], [0x70_1000, u64::MAX]] {
            assert!(matches!(
                call(&mut f, nr::STREAM_APPEND, [bad[0], bad[1], 0, 0, 0, 0]),
                Flow::Stop(Stop::Fatal(_))
            ));
        }
        assert!(matches!(
            call(&mut f, nr::STREAM_END, [0, 0, 0, 0, 0, 0]),
            Flow::Stop(Stop::Stream(StreamStep::End {
                abort: false,
                background: false
            }))
        ));
        assert!(matches!(
            call(
                &mut f,
                nr::STREAM_END,
                [STREAM_FLAG_ABORT | RESPONSE_FLAG_CONTINUE, 0, 0, 0, 0, 0]
            ),
            Flow::Stop(Stop::Stream(StreamStep::End {
                abort: true,
                background: true
            }))
        ));
        assert!(matches!(
            call(
                &mut f,
                nr::STREAM_END,
                [RESPONSE_FLAG_STREAM, 0, 0, 0, 0, 0]
            ),
            Flow::Stop(Stop::Fatal(_))
        ));
        // backend_response rejects unknown flag bits as stream_end does.
        f.mem
            .write_u64(flags_at, 0x8 | RESPONSE_FLAG_STREAM)
            .unwrap();
        assert!(matches!(
            call(
                &mut f,
                nr::BACKEND_RESPONSE,
                [200, 0x70_0000, 17, 0x70_1000, 9, 0x70_4000],
            ),
            Flow::Stop(Stop::Fatal(m)) if m.contains("unknown flags 0x8")
        ));
        // A program that listens itself has no path for a stream's later chunks.
        f.mem.write_u64(flags_at, RESPONSE_FLAG_STREAM).unwrap();
        f.cfg.listen = Some(crate::config::ListenSpec {
            addr: "127.0.0.1:8000".parse().unwrap(),
        });
        assert!(matches!(
            call(
                &mut f,
                nr::BACKEND_RESPONSE,
                [200, 0x70_0000, 17, 0x70_1000, 9, 0x70_4000],
            ),
            Flow::Stop(Stop::Fatal(m)) if m.contains("listen mode")
        ));
        f.mem.write_u64(flags_at, 0).unwrap();
        assert!(matches!(
            call(
                &mut f,
                nr::BACKEND_RESPONSE,
                [200, 0x70_0000, 17, 0x70_1000, 9, 0x70_4000],
            ),
            Flow::Stop(Stop::Responded(r)) if !r.stream
        ));
    }

    #[test]
    fn http_header_calls() {
        let mut f = Fixture::new();
        f.exchange.req_headers = vec!["Host: example.com".into()];
        f.mem.write(0x70_0000, b"host").unwrap();
        assert!(matches!(
            call(
                &mut f,
                nr::HTTP_FIND,
                [HTTP_REQ, 0x70_0000, 4, 0x70_1000, 64, 0]
            ),
            Flow::Return(17)
        ));
        assert_eq!(f.mem.slice(0x70_1000, 17).unwrap(), b"Host: example.com");
        assert!(matches!(
            call(
                &mut f,
                nr::HTTP_FIND,
                [HTTP_REQ, 0x70_0000, 4, 0x70_1000, 3, 0]
            ),
            Flow::Return(0)
        ));
        f.mem.write(0x70_2000, b"X-Set: 1").unwrap();
        assert!(matches!(
            call(&mut f, nr::HTTP_SET, [HTTP_RESP, 0x70_2000, 8, 0, 0, 0]),
            Flow::Return(0)
        ));
        f.mem.write(0x70_2000, b"X-Set: 2").unwrap();
        call(&mut f, nr::HTTP_SET, [HTTP_RESP, 0x70_2000, 8, 0, 0, 0]);
        assert_eq!(f.exchange.resp_headers, vec!["X-Set: 2".to_string()]);
        f.mem.write(0x70_2000, b"Bad\r\n: 1").unwrap();
        assert!(
            matches!(call(&mut f, nr::HTTP_APPEND, [HTTP_RESP, 0x70_2000, 8, 0, 0, 0]), Flow::Return(v) if (v as i64) < 0)
        );
        assert!(
            matches!(call(&mut f, nr::HTTP_APPEND, [7, 0x70_2000, 8, 0, 0, 0]), Flow::Return(v) if (v as i64) < 0)
        );
    }
}
