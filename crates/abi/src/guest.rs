//! Guest-side calls into the host.
//!
//! A guest calls [`set_call_mode`] once at start-up: [`CallMode::Syscall`] under the kvmjs
//! host (it sets [`crate::KVMJS_HOST_ENV`]), [`CallMode::Out`] under upstream TinyKVM.

use crate::{nr, BackendResponseExtra, KvmRequest, MemInfo, ResponseHeader};
use core::sync::atomic::{AtomicU8, Ordering};

/// How the guest traps into the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CallMode {
    /// Upstream TinyKVM: `out %eax, $0` from ring 3 (needs IOPL 3 and VMX/SVM).
    Out = 0,
    /// kvmjs: `syscall` with the call number in RAX; works on PVM and VMX/SVM alike.
    Syscall = 1,
}

static MODE: AtomicU8 = AtomicU8::new(CallMode::Out as u8);

/// Chooses how later calls trap into the host.
pub fn set_call_mode(mode: CallMode) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

/// The call mode in use.
pub fn call_mode() -> CallMode {
    if MODE.load(Ordering::Relaxed) == CallMode::Syscall as u8 {
        CallMode::Syscall
    } else {
        CallMode::Out
    }
}

/// Raw host call with six arguments.
///
/// # Safety
/// The arguments must be what the host expects for `number`: pointers must point at
/// memory the host may read or write for the lengths given.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn call6(number: u64, a: [u64; 6]) -> u64 {
    let ret: u64;
    match call_mode() {
        CallMode::Syscall => {
            // SAFETY: the caller guarantees the arguments; `syscall` clobbers RCX and R11
            // as declared, and the host preserves every other register.
            unsafe {
                core::arch::asm!(
                    "syscall",
                    inlateout("rax") number => ret,
                    in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                    in("r10") a[3], in("r8") a[4], in("r9") a[5],
                    lateout("rcx") _, lateout("r11") _,
                    options(nostack),
                )
            }
        }
        CallMode::Out => {
            // SAFETY: as above; upstream's `out` form passes the fourth argument in RCX
            // and returns in RAX.
            unsafe {
                core::arch::asm!(
                    "out 0, eax",
                    inlateout("rax") number => ret,
                    in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                    in("rcx") a[3], in("r8") a[4], in("r9") a[5],
                    options(nostack),
                )
            }
        }
    }
    ret
}

/// Pauses until the next request and fills `req` with it. The VM snapshot is taken at the
/// first call; in ephemeral mode every request starts again from that point.
#[cfg(target_arch = "x86_64")]
pub fn wait_for_requests_paused(req: &mut KvmRequest) {
    let p = req as *mut KvmRequest as u64;
    // SAFETY: `req` is a valid, writable 104-byte buffer for the host's request.
    unsafe { call6(nr::WAIT_FOR_REQUESTS_PAUSED, [p, 0, 0, 0, 0, 0]) };
}

/// Sends the response. In ephemeral mode this never returns (the VM is reset); otherwise
/// it returns when the host resumes the guest for the next request.
#[cfg(target_arch = "x86_64")]
pub fn backend_response(status: u16, content_type: &[u8], body: &[u8], headers: &[&[u8]]) {
    backend_response_flags(status, content_type, body, headers, 0)
}

/// [`backend_response`] with kvmjs flags in `BackendResponseExtra::reserved[0]`, e.g.
/// [`crate::RESPONSE_FLAG_CONTINUE`]: with it the call returns (after the response has been
/// sent) even in ephemeral mode, so the guest can finish background work and then call
/// [`wait_for_requests_paused`].
#[cfg(target_arch = "x86_64")]
pub fn backend_response_flags(
    status: u16,
    content_type: &[u8],
    body: &[u8],
    headers: &[&[u8]],
    flags: u64,
) {
    let mut hdrs = [ResponseHeader {
        field: 0,
        field_len: 0,
    }; crate::MAX_RESPONSE_HEADERS];
    let n = headers.len().min(hdrs.len());
    for (slot, h) in hdrs.iter_mut().zip(headers) {
        *slot = ResponseHeader {
            field: h.as_ptr() as u64,
            field_len: h.len() as u64,
        };
    }
    let extra = BackendResponseExtra {
        headers: hdrs.as_ptr() as u64,
        num_headers: n as u16,
        cached: false,
        ttl: 0.0,
        grace: 0.0,
        keep: 0.0,
        reserved: [flags, 0, 0, 0],
    };
    let extra_ptr = if n == 0 && flags == 0 {
        0
    } else {
        &extra as *const BackendResponseExtra as u64
    };
    // SAFETY: every pointer refers to a live slice or local for the given length.
    unsafe {
        call6(
            nr::BACKEND_RESPONSE,
            [
                u64::from(status),
                content_type.as_ptr() as u64,
                content_type.len() as u64,
                body.as_ptr() as u64,
                body.len() as u64,
                extra_ptr,
            ],
        )
    };
}

/// Adds `data` to the streamed response that [`backend_response_flags`] with
/// [`crate::RESPONSE_FLAG_STREAM`] started. Returns 0, or a negative errno when the host
/// refused the call (not streaming, too large). When the client has gone, or the request's
/// time is up, the host ends the request here and the call does not return.
#[cfg(target_arch = "x86_64")]
pub fn stream_append(data: &[u8]) -> i64 {
    // SAFETY: `data` is readable for its length.
    unsafe {
        call6(
            nr::STREAM_APPEND,
            [data.as_ptr() as u64, data.len() as u64, 0, 0, 0, 0],
        ) as i64
    }
}

/// Ends the streamed response: cleanly, or with [`crate::STREAM_FLAG_ABORT`] abnormally.
/// Like [`backend_response`], it returns only with [`crate::RESPONSE_FLAG_CONTINUE`] (for
/// background work) or, in non-ephemeral mode, when the next request is due.
#[cfg(target_arch = "x86_64")]
pub fn stream_end(flags: u64) {
    // SAFETY: no pointers are passed.
    unsafe { call6(nr::STREAM_END, [flags, 0, 0, 0, 0, 0]) };
}

/// Writes one line to the host's log.
#[cfg(target_arch = "x86_64")]
pub fn sys_log(msg: &[u8]) {
    let len = msg.len().min(u16::MAX as usize) as u64;
    // SAFETY: `msg` is readable for `len` bytes.
    unsafe { call6(nr::SYS_LOG, [msg.as_ptr() as u64, len, 0, 0, 0, 0]) };
}

/// Appends a `"Name: value"` field to the request (`HTTP_REQ`) or response (`HTTP_RESP`)
/// headers. Returns the header index, or a negative errno.
#[cfg(target_arch = "x86_64")]
pub fn http_append(which: u64, field: &[u8]) -> i64 {
    // SAFETY: `field` is readable for its length.
    unsafe {
        call6(
            nr::HTTP_APPEND,
            [which, field.as_ptr() as u64, field.len() as u64, 0, 0, 0],
        ) as i64
    }
}

/// Sets (or, given only a name, removes) a header. Returns the index or 0.
#[cfg(target_arch = "x86_64")]
pub fn http_set(which: u64, field: &[u8]) -> i64 {
    // SAFETY: `field` is readable for its length.
    unsafe {
        call6(
            nr::HTTP_SET,
            [which, field.as_ptr() as u64, field.len() as u64, 0, 0, 0],
        ) as i64
    }
}

/// Copies the whole `"Name: value"` line of header `name` into `out`; returns its length,
/// or 0 when it is absent or does not fit.
#[cfg(target_arch = "x86_64")]
pub fn http_find(which: u64, name: &[u8], out: &mut [u8]) -> usize {
    // SAFETY: `name` is readable and `out` writable for their lengths.
    unsafe {
        call6(
            nr::HTTP_FIND,
            [
                which,
                name.as_ptr() as u64,
                name.len() as u64,
                out.as_mut_ptr() as u64,
                out.len() as u64,
                0,
            ],
        ) as usize
    }
}

/// Copies the request method into `out`; returns its length (0 if it does not fit).
#[cfg(target_arch = "x86_64")]
pub fn http_method(out: &mut [u8]) -> usize {
    // SAFETY: `out` is writable for its length.
    unsafe {
        call6(
            nr::HTTP_METHOD,
            [out.as_mut_ptr() as u64, out.len() as u64, 0, 0, 0, 0],
        ) as usize
    }
}

/// Memory limits and use as the host sees them.
#[cfg(target_arch = "x86_64")]
pub fn get_meminfo() -> MemInfo {
    let mut info = MemInfo::default();
    // SAFETY: `info` is a writable 32-byte struct.
    unsafe {
        call6(
            nr::GET_MEMINFO,
            [&mut info as *mut MemInfo as u64, 0, 0, 0, 0, 0],
        )
    };
    info
}

/// Borrows `len` bytes the host placed at `ptr` in a [`KvmRequest`].
///
/// # Safety
/// `ptr`/`len` must come from a request the host wrote and that is still current.
pub unsafe fn request_bytes<'a>(ptr: u64, len: u64) -> &'a [u8] {
    if ptr == 0 || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller: the host wrote `len` bytes at `ptr`.
    unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_mode_round_trips() {
        set_call_mode(CallMode::Syscall);
        assert_eq!(call_mode(), CallMode::Syscall);
        set_call_mode(CallMode::Out);
        assert_eq!(call_mode(), CallMode::Out);
    }

    #[test]
    fn request_bytes_of_null_is_empty() {
        // SAFETY: a null pointer is handled without dereferencing.
        assert!(unsafe { request_bytes(0, 10) }.is_empty());
        let data = *b"GET";
        // SAFETY: `data` is live for 3 bytes.
        assert_eq!(unsafe { request_bytes(data.as_ptr() as u64, 3) }, b"GET");
    }
}
