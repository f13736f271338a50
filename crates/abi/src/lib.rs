//! The libvmod-tinykvm guest ABI, shared by the kvmjs host and its guests.
//!
//! Call numbers and `#[repr(C)]` layouts follow libvmod-tinykvm's guest header (facts
//! recorded in `shared/research/tinykvm-abi.md`), so a guest built against this crate is a
//! TinyKVM/Varnish backend guest too. Layout tests at the bottom pin every size and offset.
//!
//! Two ways to call the host exist (see [`guest::CallMode`]): upstream's `out %eax, $0`
//! from ring 3 (arguments in the SysV call registers RDI, RSI, RDX, RCX, R8, R9), and the
//! `syscall` form kvmjs prefers (Linux syscall registers RDI, RSI, RDX, R10, R8, R9),
//! because ring-3 `out` faults on PVM hosts while a ring-3 `syscall` can be trapped.
#![no_std]

pub mod fast;
pub mod fetch;
pub mod guest;

/// Guest API call numbers (EAX/RAX). Numbers below 512 are Linux system calls.
pub mod nr {
    /// `register_func(index, fn)`: callback registration (callback mode only).
    pub const REGISTER_FUNC: u64 = 0x10000;
    /// `wait_for_requests()`: callback mode pause.
    pub const WAIT_FOR_REQUESTS: u64 = 0x10001;
    /// `wait_for_requests_paused(kvm_request*)`: the snapshot point; returns per request.
    pub const WAIT_FOR_REQUESTS_PAUSED: u64 = 0x10002;
    /// `sys_set_cacheable(bool, ttl, grace, keep)`.
    pub const SET_CACHEABLE: u64 = 0x10005;
    /// `sys_backend_response(status, ctype, ctype_len, body, body_len, extra*)`.
    pub const BACKEND_RESPONSE: u64 = 0x10010;
    /// kvmjs extension: `stream_append(data, len)` adds a chunk to the response a
    /// `backend_response` with [`crate::RESPONSE_FLAG_STREAM`] started. Returns 0 once the
    /// host has taken the bytes (it may hold the guest while the client is slow).
    pub const STREAM_APPEND: u64 = 0x10013;
    /// kvmjs extension: `stream_end(flags)` ends a streamed response: cleanly, or with
    /// [`crate::STREAM_FLAG_ABORT`] abnormally (the client sees a truncated response).
    /// With [`crate::RESPONSE_FLAG_CONTINUE`] it returns for background work, as
    /// `backend_response` does; otherwise it is the end of the request.
    pub const STREAM_END: u64 = 0x10014;
    /// `sys_http_append(where, field, len)`.
    pub const HTTP_APPEND: u64 = 0x10020;
    /// `sys_http_set(where, field, len)`.
    pub const HTTP_SET: u64 = 0x10021;
    /// `sys_http_find(where, name, len, out, outlen)`.
    pub const HTTP_FIND: u64 = 0x10022;
    /// `sys_http_method(buf, len)`.
    pub const HTTP_METHOD: u64 = 0x10023;
    /// `get_meminfo(meminfo*)`.
    pub const GET_MEMINFO: u64 = 0x10A00;
    /// `sys_log(buf, len)`.
    pub const SYS_LOG: u64 = 0x7F000;
    /// `sys_is_debug()`.
    pub const IS_DEBUG: u64 = 0x7FDEB;
    /// Lowest number that is an API call rather than a Linux system call.
    pub const FIRST_API_CALL: u64 = 512;
}

/// `where` argument of the http_* calls: the request (REQ / BEREQ) headers.
pub const HTTP_REQ: u64 = 0;
/// `where` argument of the http_* calls: the response (RESP / BERESP) headers.
pub const HTTP_RESP: u64 = 1;
/// `kvm_request.info_flags` bit set on warm-up requests.
pub const INFO_FLAG_WARMUP: u16 = 0x1;
/// Most extra response headers the host accepts in one `BackendResponseExtra`.
pub const MAX_RESPONSE_HEADERS: usize = 64;
/// Content-type lengths must be below this.
pub const MAX_CONTENT_TYPE_LEN: usize = 0x1000;
/// `BackendResponseExtra::reserved[0]` bit (a kvmjs extension; upstream hosts ignore it):
/// the guest has background work (a Workers `ctx.waitUntil`). The host sends the response
/// at once, then resumes the guest until it calls `wait_for_requests_paused` again (within
/// its background time limit), and only then resets it.
pub const RESPONSE_FLAG_CONTINUE: u64 = 0x1;
/// `BackendResponseExtra::reserved[0]` bit (a kvmjs extension): the body passed is only the
/// start of the response; more follows with [`nr::STREAM_APPEND`] until [`nr::STREAM_END`].
/// The host sends the status and headers at once with no length (HTTP/1.1 chunked) and the
/// call returns to the guest. An upstream host ignores the bit, so a guest sets it only
/// under the kvmjs host ([`KVMJS_HOST_ENV`]).
pub const RESPONSE_FLAG_STREAM: u64 = 0x2;
/// [`nr::STREAM_END`] flag: the response failed mid-stream; the host ends it abnormally
/// (no terminating chunk), never as a clean end.
pub const STREAM_FLAG_ABORT: u64 = 0x4;
/// Every flag `backend_response` accepts in `BackendResponseExtra::reserved[0]`.
pub const RESPONSE_FLAGS: u64 = RESPONSE_FLAG_CONTINUE | RESPONSE_FLAG_STREAM;
/// Every flag [`nr::STREAM_END`] accepts.
pub const STREAM_END_FLAGS: u64 = RESPONSE_FLAG_CONTINUE | STREAM_FLAG_ABORT;
/// Environment variable the kvmjs host sets so guests pick the `syscall` call form.
pub const KVMJS_HOST_ENV: &str = "KVMJS_HOST";

/// One request header as the host lays it out: a NUL-terminated `"Name: value"` line.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmRequestHeader {
    /// Pointer to the whole `"Name: value"` field.
    pub field: u64,
    /// Index of the ':' in `field`.
    pub field_colon: u32,
    /// Length of `field`, without the NUL.
    pub field_len: u32,
}

/// The request the host writes at the guest's `wait_for_requests_paused` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmRequest {
    /// Method string (NUL-terminated).
    pub method: u64,
    /// URL string: path and query, as Varnish passes it.
    pub url: u64,
    /// VCL `config` argument (TinyKVM's `arg`).
    pub arg: u64,
    /// Content-Type of the body.
    pub content_type: u64,
    /// Length of `method`.
    pub method_len: u16,
    /// Length of `url`.
    pub url_len: u16,
    /// Length of `arg`.
    pub arg_len: u16,
    /// Length of `content_type`.
    pub content_type_len: u16,
    /// Body, or 0 when there is none.
    pub content: u64,
    /// Body length.
    pub content_len: u64,
    /// Pointer to `num_headers` [`KvmRequestHeader`]s.
    pub headers: u64,
    /// Number of headers.
    pub num_headers: u16,
    /// Bit [`INFO_FLAG_WARMUP`] marks warm-up requests.
    pub info_flags: u16,
    /// Reserved.
    pub reserved0: u32,
    /// Fresh random numbers for this request.
    pub prng: [u64; 2],
    /// Reserved.
    pub reserved1: [u64; 2],
}

impl KvmRequest {
    /// An all-zero request, for the guest's receive buffer.
    pub const fn zeroed() -> Self {
        KvmRequest {
            method: 0,
            url: 0,
            arg: 0,
            content_type: 0,
            method_len: 0,
            url_len: 0,
            arg_len: 0,
            content_type_len: 0,
            content: 0,
            content_len: 0,
            headers: 0,
            num_headers: 0,
            info_flags: 0,
            reserved0: 0,
            prng: [0; 2],
            reserved1: [0; 2],
        }
    }
}

/// One extra response header passed to `backend_response`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ResponseHeader {
    /// Pointer to a `"Name: value"` field.
    pub field: u64,
    /// Its length.
    pub field_len: u64,
}

/// Optional sixth argument of `backend_response`: extra headers and caching.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BackendResponseExtra {
    /// Pointer to `num_headers` [`ResponseHeader`]s.
    pub headers: u64,
    /// Number of headers (host limit [`MAX_RESPONSE_HEADERS`]).
    pub num_headers: u16,
    /// Whether Varnish may cache the response.
    pub cached: bool,
    /// Cache TTL in seconds.
    pub ttl: f32,
    /// Grace in seconds.
    pub grace: f32,
    /// Keep in seconds.
    pub keep: f32,
    /// Reserved.
    pub reserved: [u64; 4],
}

/// Result of `get_meminfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// Memory limit of the program in bytes.
    pub max_memory: u64,
    /// Per-request working-memory limit in bytes.
    pub max_reqmem: u64,
    /// Highest per-request working memory seen, in bytes.
    pub reqmem_upper: u64,
    /// Working memory of the current request, in bytes.
    pub reqmem_current: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn kvm_request_layout_matches_upstream() {
        assert_eq!(size_of::<KvmRequest>(), 104);
        assert_eq!(align_of::<KvmRequest>(), 8);
        assert_eq!(offset_of!(KvmRequest, method), 0);
        assert_eq!(offset_of!(KvmRequest, url), 8);
        assert_eq!(offset_of!(KvmRequest, arg), 16);
        assert_eq!(offset_of!(KvmRequest, content_type), 24);
        assert_eq!(offset_of!(KvmRequest, method_len), 32);
        assert_eq!(offset_of!(KvmRequest, url_len), 34);
        assert_eq!(offset_of!(KvmRequest, arg_len), 36);
        assert_eq!(offset_of!(KvmRequest, content_type_len), 38);
        assert_eq!(offset_of!(KvmRequest, content), 40);
        assert_eq!(offset_of!(KvmRequest, content_len), 48);
        assert_eq!(offset_of!(KvmRequest, headers), 56);
        assert_eq!(offset_of!(KvmRequest, num_headers), 64);
        assert_eq!(offset_of!(KvmRequest, info_flags), 66);
        assert_eq!(offset_of!(KvmRequest, reserved0), 68);
        assert_eq!(offset_of!(KvmRequest, prng), 72);
        assert_eq!(offset_of!(KvmRequest, reserved1), 88);
    }

    #[test]
    fn request_header_layout_matches_upstream() {
        assert_eq!(size_of::<KvmRequestHeader>(), 16);
        assert_eq!(offset_of!(KvmRequestHeader, field), 0);
        assert_eq!(offset_of!(KvmRequestHeader, field_colon), 8);
        assert_eq!(offset_of!(KvmRequestHeader, field_len), 12);
    }

    #[test]
    fn backend_response_extra_layout_matches_upstream() {
        assert_eq!(size_of::<BackendResponseExtra>(), 56);
        assert_eq!(offset_of!(BackendResponseExtra, headers), 0);
        assert_eq!(offset_of!(BackendResponseExtra, num_headers), 8);
        assert_eq!(offset_of!(BackendResponseExtra, cached), 10);
        assert_eq!(offset_of!(BackendResponseExtra, ttl), 12);
        assert_eq!(offset_of!(BackendResponseExtra, grace), 16);
        assert_eq!(offset_of!(BackendResponseExtra, keep), 20);
        assert_eq!(offset_of!(BackendResponseExtra, reserved), 24);
    }

    #[test]
    fn response_header_and_meminfo_layouts() {
        assert_eq!(size_of::<ResponseHeader>(), 16);
        assert_eq!(offset_of!(ResponseHeader, field), 0);
        assert_eq!(offset_of!(ResponseHeader, field_len), 8);
        assert_eq!(size_of::<MemInfo>(), 32);
        assert_eq!(offset_of!(MemInfo, reqmem_current), 24);
    }

    #[test]
    fn call_numbers_match_upstream_table() {
        assert_eq!(nr::REGISTER_FUNC, 0x10000);
        assert_eq!(nr::WAIT_FOR_REQUESTS_PAUSED, 0x10002);
        assert_eq!(nr::BACKEND_RESPONSE, 0x10010);
        assert_eq!(
            [
                nr::HTTP_APPEND,
                nr::HTTP_SET,
                nr::HTTP_FIND,
                nr::HTTP_METHOD
            ],
            [0x10020, 0x10021, 0x10022, 0x10023]
        );
        assert_eq!(nr::GET_MEMINFO, 0x10A00);
        assert_eq!(nr::SYS_LOG, 0x7F000);
    }

    #[test]
    fn stream_calls_are_in_the_kvmjs_range_and_flags_are_distinct() {
        // 0x10013..=0x1001f: between upstream's backend_response and http_* calls.
        for n in [nr::STREAM_APPEND, nr::STREAM_END] {
            assert!((0x10013..=0x1001f).contains(&n), "{n:#x}");
        }
        assert_ne!(nr::STREAM_APPEND, nr::STREAM_END);
        let flags = [
            RESPONSE_FLAG_CONTINUE,
            RESPONSE_FLAG_STREAM,
            STREAM_FLAG_ABORT,
        ];
        for (i, a) in flags.iter().enumerate() {
            assert_eq!(a.count_ones(), 1);
            for b in &flags[i + 1..] {
                assert_eq!(a & b, 0);
            }
        }
        assert_eq!(STREAM_END_FLAGS & RESPONSE_FLAG_STREAM, 0);
    }
}
