//! `fetch()` to backends: the host performs HTTP(S) requests for the guest.
//!
//! Two forms exist:
//! - upstream libvmod-tinykvm's `sys_fetch` ([`nr::FETCH`], 0x20000): one buffered request
//!   and response described by [`CurlOp`], [`CurlFields`] and [`CurlOptions`] (layouts from
//!   `shared/research/tinykvm-abi.md`, pinned by the tests below);
//! - kvmjs's streaming calls ([`nr::START`] .. [`nr::ERROR`]): a request returns a handle
//!   whose request body may be written in chunks and whose response body is read in chunks,
//!   so neither has to fit in guest memory at once. Each call is one VM exit: move data in
//!   large chunks.
//!
//! Every call returns a non-negative value on success and `-errno` on failure; after a
//! failure [`nr::ERROR`] copies a message that says what went wrong and what to do.

/// Call numbers (next to upstream's `sys_fetch`; 0x20001 is upstream's unused `sys_request`).
pub mod nr {
    /// Upstream `sys_fetch(url, url_len, curl_op*, curl_fields*, curl_options*)`.
    pub const FETCH: u64 = 0x20000;
    /// `fetch_start(FetchRequest*, FetchHead*) -> handle`. Unless the request has
    /// [`super::FLAG_BODY_STREAM`], this sends the whole request and fills the head.
    pub const START: u64 = 0x20002;
    /// `fetch_write(handle, ptr, len) -> len`: one chunk of a streamed request body; waits
    /// while the host's buffer for it is full (-ETIMEDOUT past the fetch's deadline).
    pub const WRITE: u64 = 0x20003;
    /// `fetch_end(handle, FetchHead*) -> 0`: ends a streamed request body and waits for
    /// the response head.
    pub const END: u64 = 0x20004;
    /// `fetch_read(handle, buf, cap) -> n`: the next bytes of the response body; 0 at its end.
    pub const READ: u64 = 0x20005;
    /// `fetch_close(handle) -> 0`: drops the exchange (the connection is closed). A
    /// streamed request body not ended with [`END`] is aborted: the backend never gets
    /// its terminating chunk.
    pub const CLOSE: u64 = 0x20006;
    /// `fetch_error(buf, cap) -> len`: the message of this request's last fetch failure
    /// (truncated to `cap`); 0 when none.
    pub const ERROR: u64 = 0x20007;
}

/// [`FetchRequest::flags`]: the body is written with [`nr::WRITE`] and ended with
/// [`nr::END`]; `body`/`body_len` are ignored.
pub const FLAG_BODY_STREAM: u32 = 0x1;
/// [`FetchRequest::flags`]: redirect mode "manual": a redirect response is returned as is.
pub const FLAG_REDIRECT_MANUAL: u32 = 0x2;
/// [`FetchRequest::flags`]: redirect mode "error": a redirect response is a network error.
pub const FLAG_REDIRECT_ERROR: u32 = 0x4;

/// errno values the fetch calls return (negated), besides EFAULT/EINVAL for bad arguments.
pub mod errno {
    /// The origin is not in the program's allow-list.
    pub const EACCES: i64 = 13;
    /// No such handle (never opened, closed, or from an earlier request).
    pub const EBADF: i64 = 9;
    /// Too many open fetches in this request.
    pub const EMFILE: i64 = 24;
    /// The request or response body is larger than the program allows.
    pub const EFBIG: i64 = 27;
    /// The fetch (or the request it runs in) ran out of time.
    pub const ETIMEDOUT: i64 = 110;
    /// A network error: DNS, connection, TLS, protocol, redirect.
    pub const EIO: i64 = 5;
    /// Fetch is not configured for this program (no `fetch` key), or not supported.
    pub const ENOSYS: i64 = 38;
}

/// kvmjs `fetch_start` argument (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchRequest {
    /// Method (token).
    pub method: u64,
    /// Absolute http(s) URL.
    pub url: u64,
    /// Request header fields: `"Name: value"` lines, each ended by `\n`.
    pub headers: u64,
    /// Request body, unless [`FLAG_BODY_STREAM`].
    pub body: u64,
    /// Length of `method`.
    pub method_len: u32,
    /// Length of `url`.
    pub url_len: u32,
    /// Length of `headers`.
    pub headers_len: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Length of `body`.
    pub body_len: u64,
    /// Reserved, zero.
    pub reserved: u64,
}

impl FetchRequest {
    /// Whether the body is streamed with [`nr::WRITE`].
    pub fn body_streamed(&self) -> bool {
        self.flags & FLAG_BODY_STREAM != 0
    }
}

/// Response head the host fills (48 bytes). The guest sets the buffers and capacities.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchHead {
    /// Buffer for the response header fields, `"name: value\n"` lines (in).
    pub headers: u64,
    /// Buffer for the final URL, after redirects (in).
    pub url: u64,
    /// Capacity of `headers` (in).
    pub headers_cap: u32,
    /// Capacity of `url` (in).
    pub url_cap: u32,
    /// Bytes written to `headers` (out).
    pub headers_len: u32,
    /// Bytes written to `url` (out).
    pub url_len: u32,
    /// Status code (out).
    pub status: u16,
    /// 1 when at least one redirect was followed (out).
    pub redirected: u8,
    /// Reserved.
    pub reserved0: u8,
    /// Reserved.
    pub reserved1: u32,
    /// The response's Content-Length, or -1 when unknown (out).
    pub content_length: i64,
}

/// Upstream `curl_op` (176 bytes): the buffered request and response of `sys_fetch`.
///
/// kvmjs semantics: `post_buffer`/`post_buflen` is the request body (a POST when non-empty,
/// a GET otherwise); the guest points `content` at a buffer of `content_length` bytes and
/// `headers` at one of `headers_length` bytes, and the host replaces those lengths with
/// what it wrote (a response that does not fit fails with EFBIG), and fills `status`,
/// `ctype` and `ctlen`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CurlOp {
    /// Response status (out).
    pub status: u32,
    /// Request body length.
    pub post_buflen: u32,
    /// Request body.
    pub post_buffer: u64,
    /// Response header buffer.
    pub headers: u64,
    /// Response header buffer capacity (in), bytes written (out).
    pub headers_length: u32,
    /// Unused.
    pub unused: u32,
    /// Response body buffer.
    pub content: u64,
    /// Response body buffer capacity (in), bytes written (out).
    pub content_length: u32,
    /// Length of `ctype` (out).
    pub ctlen: u32,
    /// Response Content-Type (out, not NUL-terminated when 128 bytes long).
    pub ctype: [u8; 128],
}

/// Upstream `curl_fields` (120 bytes): up to 12 request header fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CurlFields {
    /// Pointers to `"Name: value"` fields (0: unused slot).
    pub ptr: [u64; 12],
    /// Their lengths.
    pub len: [u16; 12],
}

/// Upstream `curl_options` (24 bytes). kvmjs honours `follow_location` only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CurlOptions {
    /// Network interface (ignored by kvmjs).
    pub interface: u64,
    /// Unused.
    pub unused: u64,
    /// Follow redirects when non-zero.
    pub follow_location: i8,
    /// Ignored by kvmjs.
    pub dummy_fetch: i8,
    /// Ignored by kvmjs.
    pub tcp_fast_open: i8,
    /// Ignored by kvmjs: certificates are always verified.
    pub dont_verify_host: i8,
    /// Unused.
    pub unused2: u32,
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

impl FetchRequest {
    /// Size in guest memory.
    pub const SIZE: usize = 64;

    /// Decodes the little-endian guest bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        FetchRequest {
            method: u64_at(b, 0),
            url: u64_at(b, 8),
            headers: u64_at(b, 16),
            body: u64_at(b, 24),
            method_len: u32_at(b, 32),
            url_len: u32_at(b, 36),
            headers_len: u32_at(b, 40),
            flags: u32_at(b, 44),
            body_len: u64_at(b, 48),
            reserved: u64_at(b, 56),
        }
    }
}

impl FetchHead {
    /// Size in guest memory.
    pub const SIZE: usize = 48;

    /// Decodes the little-endian guest bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        FetchHead {
            headers: u64_at(b, 0),
            url: u64_at(b, 8),
            headers_cap: u32_at(b, 16),
            url_cap: u32_at(b, 20),
            headers_len: u32_at(b, 24),
            url_len: u32_at(b, 28),
            status: u16_at(b, 32),
            redirected: b[34],
            reserved0: b[35],
            reserved1: u32_at(b, 36),
            content_length: u64_at(b, 40) as i64,
        }
    }

    /// Encodes as the guest's little-endian bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.headers.to_le_bytes());
        b[8..16].copy_from_slice(&self.url.to_le_bytes());
        b[16..20].copy_from_slice(&self.headers_cap.to_le_bytes());
        b[20..24].copy_from_slice(&self.url_cap.to_le_bytes());
        b[24..28].copy_from_slice(&self.headers_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.url_len.to_le_bytes());
        b[32..34].copy_from_slice(&self.status.to_le_bytes());
        b[34] = self.redirected;
        b[35] = self.reserved0;
        b[36..40].copy_from_slice(&self.reserved1.to_le_bytes());
        b[40..48].copy_from_slice(&self.content_length.to_le_bytes());
        b
    }
}

impl CurlOp {
    /// Size in guest memory.
    pub const SIZE: usize = 176;

    /// Decodes the little-endian guest bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut ctype = [0u8; 128];
        ctype.copy_from_slice(&b[48..176]);
        CurlOp {
            status: u32_at(b, 0),
            post_buflen: u32_at(b, 4),
            post_buffer: u64_at(b, 8),
            headers: u64_at(b, 16),
            headers_length: u32_at(b, 24),
            unused: u32_at(b, 28),
            content: u64_at(b, 32),
            content_length: u32_at(b, 40),
            ctlen: u32_at(b, 44),
            ctype,
        }
    }

    /// Encodes as the guest's little-endian bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.status.to_le_bytes());
        b[4..8].copy_from_slice(&self.post_buflen.to_le_bytes());
        b[8..16].copy_from_slice(&self.post_buffer.to_le_bytes());
        b[16..24].copy_from_slice(&self.headers.to_le_bytes());
        b[24..28].copy_from_slice(&self.headers_length.to_le_bytes());
        b[28..32].copy_from_slice(&self.unused.to_le_bytes());
        b[32..40].copy_from_slice(&self.content.to_le_bytes());
        b[40..44].copy_from_slice(&self.content_length.to_le_bytes());
        b[44..48].copy_from_slice(&self.ctlen.to_le_bytes());
        b[48..176].copy_from_slice(&self.ctype);
        b
    }
}

impl CurlFields {
    /// Size in guest memory.
    pub const SIZE: usize = 120;

    /// Decodes the little-endian guest bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        CurlFields {
            ptr: core::array::from_fn(|i| u64_at(b, i * 8)),
            len: core::array::from_fn(|i| u16_at(b, 96 + i * 2)),
        }
    }
}

impl CurlOptions {
    /// Size in guest memory.
    pub const SIZE: usize = 24;

    /// Decodes the little-endian guest bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        CurlOptions {
            interface: u64_at(b, 0),
            unused: u64_at(b, 8),
            follow_location: b[16] as i8,
            dummy_fetch: b[17] as i8,
            tcp_fast_open: b[18] as i8,
            dont_verify_host: b[19] as i8,
            unused2: u32_at(b, 20),
        }
    }
}

/// Guest-side wrappers for the kvmjs calls.
#[cfg(target_arch = "x86_64")]
pub mod call {
    use super::{nr, FetchHead, FetchRequest};
    use crate::guest::call6;

    fn result(r: u64) -> Result<u64, i64> {
        if (r as i64) < 0 {
            Err(r as i64)
        } else {
            Ok(r)
        }
    }

    /// `fetch_start`: the handle, or `-errno`.
    pub fn start(req: &FetchRequest, head: &mut FetchHead) -> Result<u64, i64> {
        let (r, h) = (req as *const _ as u64, head as *mut _ as u64);
        // SAFETY: both structs are valid for the host to read/write; the buffers they point
        // at are the caller's live slices.
        result(unsafe { call6(nr::START, [r, h, 0, 0, 0, 0]) })
    }

    /// `fetch_write`: one chunk of a streamed body.
    pub fn write(handle: u64, chunk: &[u8]) -> Result<u64, i64> {
        let (p, n) = (chunk.as_ptr() as u64, chunk.len() as u64);
        // SAFETY: the host reads `chunk` only.
        result(unsafe { call6(nr::WRITE, [handle, p, n, 0, 0, 0]) })
    }

    /// `fetch_end`: ends a streamed body, fills `head`.
    pub fn end(handle: u64, head: &mut FetchHead) -> Result<u64, i64> {
        let h = head as *mut _ as u64;
        // SAFETY: `head` and its buffers are writable.
        result(unsafe { call6(nr::END, [handle, h, 0, 0, 0, 0]) })
    }

    /// `fetch_read`: bytes read into `buf`, 0 at the end of the body.
    pub fn read(handle: u64, buf: &mut [u8]) -> Result<u64, i64> {
        let (p, n) = (buf.as_mut_ptr() as u64, buf.len() as u64);
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        result(unsafe { call6(nr::READ, [handle, p, n, 0, 0, 0]) })
    }

    /// `fetch_close`.
    pub fn close(handle: u64) -> Result<u64, i64> {
        // SAFETY: no pointers.
        result(unsafe { call6(nr::CLOSE, [handle, 0, 0, 0, 0, 0]) })
    }

    /// `fetch_error`: the last failure's message length (copied up to `buf.len()`).
    pub fn error(buf: &mut [u8]) -> u64 {
        let (p, n) = (buf.as_mut_ptr() as u64, buf.len() as u64);
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        result(unsafe { call6(nr::ERROR, [p, n, 0, 0, 0, 0]) }).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn curl_layouts_match_upstream() {
        assert_eq!(size_of::<CurlOp>(), 176);
        assert_eq!(offset_of!(CurlOp, status), 0);
        assert_eq!(offset_of!(CurlOp, post_buflen), 4);
        assert_eq!(offset_of!(CurlOp, post_buffer), 8);
        assert_eq!(offset_of!(CurlOp, headers), 16);
        assert_eq!(offset_of!(CurlOp, headers_length), 24);
        assert_eq!(offset_of!(CurlOp, content), 32);
        assert_eq!(offset_of!(CurlOp, content_length), 40);
        assert_eq!(offset_of!(CurlOp, ctlen), 44);
        assert_eq!(offset_of!(CurlOp, ctype), 48);
        assert_eq!(size_of::<CurlFields>(), 120);
        assert_eq!(offset_of!(CurlFields, len), 96);
        assert_eq!(size_of::<CurlOptions>(), 24);
        assert_eq!(offset_of!(CurlOptions, follow_location), 16);
        assert_eq!(offset_of!(CurlOptions, dont_verify_host), 19);
        assert_eq!(offset_of!(CurlOptions, unused2), 20);
    }

    #[test]
    fn kvmjs_layouts_are_pinned() {
        assert_eq!(size_of::<FetchRequest>(), 64);
        assert_eq!(offset_of!(FetchRequest, body), 24);
        assert_eq!(offset_of!(FetchRequest, method_len), 32);
        assert_eq!(offset_of!(FetchRequest, flags), 44);
        assert_eq!(offset_of!(FetchRequest, body_len), 48);
        assert_eq!(size_of::<FetchHead>(), 48);
        assert_eq!(offset_of!(FetchHead, headers_cap), 16);
        assert_eq!(offset_of!(FetchHead, headers_len), 24);
        assert_eq!(offset_of!(FetchHead, status), 32);
        assert_eq!(offset_of!(FetchHead, redirected), 34);
        assert_eq!(offset_of!(FetchHead, content_length), 40);
        assert_eq!(nr::FETCH, 0x20000);
        assert!([
            nr::START,
            nr::WRITE,
            nr::END,
            nr::READ,
            nr::CLOSE,
            nr::ERROR
        ]
        .iter()
        .all(|n| (0x20002..=0x2000f).contains(n)));
    }
}
