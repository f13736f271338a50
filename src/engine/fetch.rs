//! The natives behind `fetch()` (src/web/72_fetch_client.js): the kvmjs fetch calls
//! (`kvmjs_abi::fetch`), one VM exit each. The host performs the HTTP exchange; these
//! move bytes in large chunks and turn failures into TypeErrors with the host's message.

use super::natives::with_view_bytes;
use kvmjs_abi::fetch::{call, FetchHead, FetchRequest, FLAG_BODY_STREAM};
use rquickjs::function::Opt;
use rquickjs::{Array, Ctx, Exception, Function, Object, Result, TypedArray, Value};
use std::cell::{Cell, RefCell};

/// Response header buffer (the host's header limit with room for ": " and newlines).
const HEAD_CAP: usize = 128 << 10;
/// Final URL buffer.
const URL_CAP: usize = 64 << 10;
/// Bytes one `fetchRead` asks for: large, so a big body needs few VM exits; the host
/// returns what has arrived, so a slow body still streams.
const READ_CAP: usize = 256 << 10;

thread_local! {
    /// Buffers reused across calls (allocated at the first fetch, not at boot).
    static BUFS: RefCell<Option<Bufs>> = const { RefCell::new(None) };
    /// Whether the host calls exist (inside a VM); set by [`install`].
    static IN_VM: Cell<bool> = const { Cell::new(false) };
}

struct Bufs {
    head: Vec<u8>,
    url: Vec<u8>,
    read: Vec<u8>,
}

fn with_bufs<R>(f: impl FnOnce(&mut Bufs) -> R) -> R {
    BUFS.with(|b| {
        let mut b = b.borrow_mut();
        let b = b.get_or_insert_with(|| Bufs {
            head: vec![0; HEAD_CAP],
            url: vec![0; URL_CAP],
            read: vec![0; READ_CAP],
        });
        f(b)
    })
}

/// ByteString (every char <= U+00FF) to bytes, one per char.
fn byte_string(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// Bytes to a ByteString (isomorphic decode).
fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// The host's message for the last failure, as a TypeError.
fn failure(ctx: &Ctx<'_>, code: i64) -> rquickjs::Error {
    let mut buf = [0u8; 1024];
    let n = (call::error(&mut buf) as usize).min(buf.len());
    let msg = if n > 0 {
        String::from_utf8_lossy(&buf[..n]).into_owned()
    } else {
        format!("fetch failed (host error {})", -code)
    };
    Exception::throw_type(ctx, &msg)
}

fn in_vm(ctx: &Ctx<'_>) -> Result<()> {
    if IN_VM.get() {
        Ok(())
    } else {
        Err(Exception::throw_type(
            ctx,
            "fetch() to backends needs the kvmjs host (it is not available outside a VM)",
        ))
    }
}

fn new_head(b: &mut Bufs) -> FetchHead {
    FetchHead {
        headers: b.head.as_mut_ptr() as u64,
        url: b.url.as_mut_ptr() as u64,
        headers_cap: HEAD_CAP as u32,
        url_cap: URL_CAP as u32,
        ..Default::default()
    }
}

/// `[status, headerLines, url, redirected]` from a filled head.
fn head_js<'js>(ctx: &Ctx<'js>, b: &Bufs, h: &FetchHead) -> Result<Value<'js>> {
    let headers = latin1(&b.head[..(h.headers_len as usize).min(HEAD_CAP)]);
    let url = String::from_utf8_lossy(&b.url[..(h.url_len as usize).min(URL_CAP)]).into_owned();
    let a = Array::new(ctx.clone())?;
    a.set(0, i32::from(h.status))?;
    a.set(1, headers)?;
    a.set(2, url)?;
    a.set(3, h.redirected != 0)?;
    Ok(a.into_value())
}

/// `fetchStart(method, url, headerLines, body, flags)`: with a body (string or buffer
/// source) or none, `[handle, head]`; with flag 1 (streamed body), `[handle, null]`.
fn start<'js>(
    ctx: Ctx<'js>,
    method: String,
    url: String,
    headers: String,
    body: Opt<Value<'js>>,
    flags: u32,
) -> Result<Value<'js>> {
    in_vm(&ctx)?;
    let headers = byte_string(&headers);
    let body_bytes: Vec<u8> = match body.0 {
        Some(v) if v.is_string() => v.get::<String>()?.into_bytes(),
        Some(v) if v.is_object() => {
            with_view_bytes(v.as_object().expect("checked"), |b| b.to_vec())?
        }
        _ => Vec::new(),
    };
    with_bufs(|b| {
        let req = FetchRequest {
            method: method.as_ptr() as u64,
            method_len: method.len() as u32,
            url: url.as_ptr() as u64,
            url_len: url.len() as u32,
            headers: headers.as_ptr() as u64,
            headers_len: headers.len() as u32,
            body: body_bytes.as_ptr() as u64,
            body_len: body_bytes.len() as u64,
            flags,
            reserved: 0,
        };
        let mut head = new_head(b);
        let h = call::start(&req, &mut head).map_err(|e| failure(&ctx, e))?;
        let head = if flags & FLAG_BODY_STREAM != 0 {
            Value::new_null(ctx.clone())
        } else {
            head_js(&ctx, b, &head)?
        };
        let a = Array::new(ctx.clone())?;
        a.set(0, h as f64)?;
        a.set(1, head)?;
        Ok(a.into_value())
    })
}

fn write(ctx: Ctx<'_>, handle: f64, chunk: Object<'_>) -> Result<()> {
    in_vm(&ctx)?;
    let h = handle as u64;
    let r = with_view_bytes(&chunk, |bytes| {
        let mut at = 0;
        while at < bytes.len() {
            at += call::write(h, &bytes[at..])? as usize;
        }
        Ok(())
    })?;
    r.map_err(|e| failure(&ctx, e))
}

fn end(ctx: Ctx<'_>, handle: f64) -> Result<Value<'_>> {
    in_vm(&ctx)?;
    with_bufs(|b| {
        let mut head = new_head(b);
        call::end(handle as u64, &mut head).map_err(|e| failure(&ctx, e))?;
        head_js(&ctx, b, &head)
    })
}

/// The next body bytes, or null at the end.
fn read(ctx: Ctx<'_>, handle: f64) -> Result<Value<'_>> {
    in_vm(&ctx)?;
    with_bufs(|b| {
        let n = call::read(handle as u64, &mut b.read).map_err(|e| failure(&ctx, e))? as usize;
        if n == 0 {
            return Ok(Value::new_null(ctx.clone()));
        }
        Ok(TypedArray::<u8>::new(ctx.clone(), &b.read[..n.min(READ_CAP)])?.into_value())
    })
}

/// Adds the fetch natives to `n` (`in_vm_host`: the host calls are available).
pub fn install<'js>(ctx: &Ctx<'js>, n: &Object<'js>, in_vm_host: bool) -> Result<()> {
    IN_VM.set(in_vm_host);
    n.set("fetchStart", Function::new(ctx.clone(), start)?)?;
    n.set("fetchWrite", Function::new(ctx.clone(), write)?)?;
    n.set("fetchEnd", Function::new(ctx.clone(), end)?)?;
    n.set("fetchRead", Function::new(ctx.clone(), read)?)?;
    n.set(
        "fetchClose",
        Function::new(ctx.clone(), |h: f64| {
            if IN_VM.get() {
                // A handle the host already dropped (after an error) is fine to close.
                let _ = call::close(h as u64);
            }
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_round_trip() {
        let s = "x-a: \u{e9}\u{ff}\n";
        assert_eq!(byte_string(s), b"x-a: \xe9\xff\n");
        assert_eq!(latin1(&byte_string(s)), s);
    }
}
