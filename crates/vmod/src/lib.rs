//! The kvmjs Varnish VMOD: a thin adapter. `src/vmod_kvmjs.c` is the Varnish side
//! (VCL functions, directors, the fetch); this file implements the C ABI it calls
//! (`src/kvmjs_vmod.h`) over [`kvmjs::embed`], where everything else lives — the
//! programs, pools, limits, routing and metrics of `kvmjs serve`.
//!
//! Objects cross the ABI as boxed Rust values: [`Loaded`] (`struct kvmjs`),
//! [`Pending`] (`struct kvmjs_req`) and [`CReply`] (`struct kvmjs_reply`). The workspace
//! builds with `panic = "abort"`, so a bug that panicked here would end varnishd's child
//! (which the manager restarts), as a crash in any VMOD does; nothing unwinds into C.

use kvmjs::embed::{Embedded, Pending, Reply, Target};
use std::ffi::{c_char, c_int, c_long, c_longlong, c_uint, c_void, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// `struct kvmjs`: the shared instance and its program names as C strings.
pub struct Loaded {
    embedded: Arc<Embedded>,
    names: Vec<CString>,
}

/// `struct kvmjs_reply`: the response and its reason as a C string (replaced by the
/// error when the body breaks off).
pub struct CReply {
    reply: Reply,
    reason: CString,
}

/// Logs of kvmjs inside varnishd go to the child's stderr (varnishd -F prints them;
/// otherwise the manager logs them): warnings and errors unless RUST_LOG says more.
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    });
}

/// Copies `msg` into the C buffer `err` of `len` bytes, NUL-terminated, truncated.
///
/// # Safety
/// `err` is null or points to `len` writable bytes.
unsafe fn write_error(err: *mut c_char, len: usize, msg: &str) {
    if err.is_null() || len == 0 {
        return;
    }
    let n = msg.len().min(len - 1);
    // SAFETY: the caller gives `len` writable bytes at `err`; n + 1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), err.cast::<u8>(), n);
        *err.add(n) = 0;
    }
}

/// A (pointer, length) pair from C as a slice; empty for a null pointer.
///
/// # Safety
/// `p` is null or points to `len` readable bytes that outlive the slice's use.
unsafe fn bytes<'a>(p: *const c_char, len: usize) -> &'a [u8] {
    if p.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `len` readable bytes at `p`.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }
}

fn reason_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `config` and `guest` are NUL-terminated; `err` has `errlen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_load(
    config: *const c_char,
    guest: *const c_char,
    err: *mut c_char,
    errlen: usize,
) -> *mut Loaded {
    init_logging();
    if config.is_null() || guest.is_null() {
        // SAFETY: forwarded from the caller's guarantee.
        unsafe { write_error(err, errlen, "no configuration named") };
        return std::ptr::null_mut();
    }
    // SAFETY: both are NUL-terminated strings (the caller's guarantee).
    let (config, guest) = unsafe { (CStr::from_ptr(config), CStr::from_ptr(guest)) };
    let config = Path::new(OsStr::from_bytes(config.to_bytes()));
    let guest = Path::new(OsStr::from_bytes(guest.to_bytes()));
    match Embedded::shared(config, guest) {
        Ok(embedded) => {
            let names = embedded
                .names()
                .iter()
                .map(|n| CString::new(n.as_str()).unwrap_or_default())
                .collect();
            Box::into_raw(Box::new(Loaded { embedded, names }))
        }
        Err(e) => {
            // SAFETY: forwarded from the caller's guarantee.
            unsafe { write_error(err, errlen, &e.to_string()) };
            std::ptr::null_mut()
        }
    }
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `k` came from [`kvmjs_load`] and is not used again.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_release(k: *mut Loaded) {
    if !k.is_null() {
        // SAFETY: `k` is a Box from kvmjs_load, released once (the caller's guarantee).
        drop(unsafe { Box::from_raw(k) });
    }
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `k` came from [`kvmjs_load`].
#[no_mangle]
pub unsafe extern "C" fn kvmjs_programs(k: *const Loaded) -> usize {
    // SAFETY: a live Loaded (the caller's guarantee).
    unsafe { &*k }.names.len()
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `k` came from [`kvmjs_load`].
#[no_mangle]
pub unsafe extern "C" fn kvmjs_program_name(k: *const Loaded, i: usize) -> *const c_char {
    // SAFETY: a live Loaded (the caller's guarantee).
    let k = unsafe { &*k };
    k.names.get(i).map_or(c"".as_ptr(), |n| n.as_ptr())
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `k` came from [`kvmjs_load`]; `name` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_program_index(k: *const Loaded, name: *const c_char) -> c_long {
    if name.is_null() {
        return -1;
    }
    // SAFETY: a live Loaded and a NUL-terminated string (the caller's guarantee).
    let (k, name) = unsafe { (&*k, CStr::from_ptr(name)) };
    name.to_str()
        .ok()
        .and_then(|n| k.embedded.program_index(n))
        .and_then(|i| c_long::try_from(i).ok())
        .unwrap_or(-1)
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `k` came from [`kvmjs_load`]; the strings have the given lengths.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_req_new(
    k: *const Loaded,
    target: c_long,
    method: *const c_char,
    mlen: usize,
    url: *const c_char,
    ulen: usize,
) -> *mut Pending {
    // SAFETY: a live Loaded (the caller's guarantee).
    let k = unsafe { &*k };
    let target = usize::try_from(target).map_or(Target::Front, Target::Program);
    // SAFETY: (pointer, length) pairs from the caller.
    let (m, u) = unsafe { (bytes(method, mlen), bytes(url, ulen)) };
    Box::into_raw(Box::new(k.embedded.request(target, m, u)))
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `req` came from [`kvmjs_req_new`]; `field` has `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_req_header(req: *mut Pending, field: *const c_char, len: usize) {
    // SAFETY: a live Pending, and a (pointer, length) pair, from the caller.
    unsafe { (*req).header(bytes(field, len)) };
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `k` and `req` are live.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_req_body_limit(k: *const Loaded, req: *mut Pending) -> usize {
    // SAFETY: live objects (the caller's guarantee).
    unsafe { (*k).embedded.body_limit(&mut *req) }
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `req` is live; `p` has `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_req_body(
    req: *mut Pending,
    p: *const c_void,
    len: usize,
    limit: usize,
) -> c_int {
    // SAFETY: a live Pending, and a (pointer, length) pair, from the caller.
    c_int::from(unsafe { (*req).body(bytes(p.cast(), len), limit) })
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `req` came from [`kvmjs_req_new`] and is not used again.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_req_free(req: *mut Pending) {
    if !req.is_null() {
        // SAFETY: a Box from kvmjs_req_new, freed once.
        drop(unsafe { Box::from_raw(req) });
    }
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `k` is live; `req` came from [`kvmjs_req_new`] and is consumed.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_send(k: *const Loaded, req: *mut Pending) -> *mut CReply {
    // SAFETY: a live Loaded, and a Box from kvmjs_req_new handed over (the caller's
    // guarantee).
    let (k, req) = unsafe { (&*k, Box::from_raw(req)) };
    let reply = k.embedded.send(*req);
    let reason = reason_string(&reply.reason);
    Box::into_raw(Box::new(CReply { reply, reason }))
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `r` came from [`kvmjs_send`].
#[no_mangle]
pub unsafe extern "C" fn kvmjs_reply_status(r: *const CReply) -> c_uint {
    // SAFETY: a live reply.
    c_uint::from(unsafe { &*r }.reply.status)
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `r` came from [`kvmjs_send`].
#[no_mangle]
pub unsafe extern "C" fn kvmjs_reply_reason(r: *const CReply) -> *const c_char {
    // SAFETY: a live reply.
    unsafe { &*r }.reason.as_ptr()
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `r` came from [`kvmjs_send`].
#[no_mangle]
pub unsafe extern "C" fn kvmjs_reply_headers(r: *const CReply) -> usize {
    // SAFETY: a live reply.
    unsafe { &*r }.reply.headers.len()
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `r` came from [`kvmjs_send`]; the out pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_reply_header(
    r: *const CReply,
    i: usize,
    name: *mut *const c_char,
    nlen: *mut usize,
    value: *mut *const c_char,
    vlen: *mut usize,
) {
    // SAFETY: a live reply.
    let r = unsafe { &*r };
    let (n, v): (&[u8], &[u8]) = r
        .reply
        .headers
        .get(i)
        .map_or((b"", b""), |(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    // SAFETY: writable out pointers (the caller's guarantee); the bytes live as long as
    // the reply.
    unsafe {
        *name = n.as_ptr().cast();
        *nlen = n.len();
        *value = v.as_ptr().cast();
        *vlen = v.len();
    }
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `r` came from [`kvmjs_send`].
#[no_mangle]
pub unsafe extern "C" fn kvmjs_reply_length(r: *const CReply) -> c_longlong {
    // SAFETY: a live reply.
    unsafe { &*r }
        .reply
        .length
        .and_then(|n| c_longlong::try_from(n).ok())
        .unwrap_or(-1)
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `r` came from [`kvmjs_send`]; `buf` has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_reply_read(r: *mut CReply, buf: *mut c_void, cap: usize) -> isize {
    // SAFETY: a live reply, used by one thread at a time (the fetch's).
    let r = unsafe { &mut *r };
    if buf.is_null() || cap == 0 {
        return 0;
    }
    // SAFETY: `cap` writable bytes at `buf` (the caller's guarantee).
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
    match r.reply.read(out) {
        Ok(n) => n as isize,
        Err(e) => {
            r.reason = reason_string(&format!("the response body broke off: {e}"));
            -1
        }
    }
}

/// See kvmjs_vmod.h.
///
/// # Safety
/// `r` came from [`kvmjs_send`] and is not used again.
#[no_mangle]
pub unsafe extern "C" fn kvmjs_reply_free(r: *mut CReply) {
    if !r.is_null() {
        // SAFETY: a Box from kvmjs_send, freed once.
        drop(unsafe { Box::from_raw(r) });
    }
}
