//! Echo test guest: answers with the method, URL, headers and a request counter (which
//! proves reset: it is 1 on every request in ephemeral mode). Some paths misbehave on
//! purpose so the host's fault handling can be tested.
//! `--vectors` runs the vector-state check of [`vectors`] instead.

use kvmjs_abi::guest::{self, CallMode};
use kvmjs_abi::{nr, KvmRequest};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

mod vectors;

static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Data a previous request stored; a reset must make it disappear.
static STORED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn bytes(ptr: u64, len: u64) -> &'static [u8] {
    // SAFETY: the host wrote the current request at these addresses.
    unsafe { guest::request_bytes(ptr, len) }
}

#[inline(never)]
#[allow(unconditional_recursion)] // the point: overflow the stack
fn recurse(n: u64) -> u64 {
    let frame = black_box([n; 32]);
    recurse(n + 1).wrapping_add(frame[3])
}

fn echo(req: &KvmRequest, count: u64) -> Vec<u8> {
    let mut out = format!(
        "method={} url={} counter={count}\n",
        String::from_utf8_lossy(bytes(req.method, u64::from(req.method_len))),
        String::from_utf8_lossy(bytes(req.url, u64::from(req.url_len))),
    )
    .into_bytes();
    for i in 0..u64::from(req.num_headers) {
        // SAFETY: the host wrote `num_headers` 16-byte entries at `headers`.
        let h = unsafe { &*((req.headers + i * 16) as *const kvmjs_abi::KvmRequestHeader) };
        out.extend_from_slice(bytes(h.field, u64::from(h.field_len)));
        out.push(b'\n');
    }
    out.extend_from_slice(format!("body={}\n", req.content_len).as_bytes());
    out.extend_from_slice(bytes(req.content, req.content_len));
    out
}

fn respond(status: u16, body: &[u8], count: u64) {
    let h = format!("X-Counter: {count}");
    guest::backend_response(status, b"text/plain", body, &[h.as_bytes()]);
}

/// Background work done so far (non-ephemeral mode keeps counting).
static BACKGROUND_DONE: AtomicU64 = AtomicU64::new(0);

/// `/background?ms=N`: responds at once with RESPONSE_FLAG_CONTINUE, then works for N ms
/// (forever when N is absent) before returning to the pause, as a Workers app's
/// `ctx.waitUntil` does. The response reports how much background work had finished.
fn background(url: &[u8], count: u64) {
    let ms = std::str::from_utf8(url)
        .ok()
        .and_then(|u| u.split("ms=").nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    let body = format!(
        "responded; background work done before: {}\n",
        BACKGROUND_DONE.load(Ordering::Relaxed)
    );
    let h = format!("X-Counter: {count}");
    guest::backend_response_flags(
        200,
        b"text/plain",
        body.as_bytes(),
        &[h.as_bytes()],
        kvmjs_abi::RESPONSE_FLAG_CONTINUE,
    );
    let Some(ms) = ms else {
        loop {
            std::hint::spin_loop();
        }
    };
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    // Check the clock rarely: each read is a VM exit.
    while std::time::Instant::now() < until {
        for _ in 0..100_000 {
            std::hint::spin_loop();
        }
    }
    BACKGROUND_DONE.fetch_add(1, Ordering::Relaxed);
}

fn main() {
    if std::env::var_os(kvmjs_abi::KVMJS_HOST_ENV).is_some() {
        guest::set_call_mode(CallMode::Syscall);
    }
    match std::env::args().nth(1).as_deref() {
        Some("--never-pause") => loop {
            std::hint::spin_loop();
        },
        Some("--exit-at-boot") => {
            eprintln!("echo guest: exiting at boot as asked");
            std::process::exit(2);
        }
        Some("--respond-at-boot") => respond(200, b"too early", 0),
        // Vector registers loaded before the snapshot must be there on every request.
        Some("--vectors") => vectors::serve(),
        _ => {}
    }
    println!("echo guest booting");
    let mut req = KvmRequest::zeroed();
    loop {
        guest::wait_for_requests_paused(&mut req);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        let url = bytes(req.url, u64::from(req.url_len));
        let path = url.split(|&b| b == b'?').next().unwrap_or(b"");
        if path == b"/background" {
            background(url, count);
            continue;
        }
        let (status, body): (u16, Vec<u8>) = match path {
            b"/loop" => loop {
                std::hint::spin_loop();
            },
            // SAFETY: deliberately invalid: the host must turn it into a request error.
            b"/null" => unsafe {
                black_box(std::ptr::read_volatile(black_box(0usize) as *const u64));
                (500, b"survived".to_vec())
            },
            // SAFETY: deliberately invalid, as above.
            b"/ud2" => unsafe {
                std::arch::asm!("ud2");
                (500, b"survived".to_vec())
            },
            b"/recurse" => {
                black_box(recurse(0));
                (500, b"survived".to_vec())
            }
            b"/oom" => {
                let mut hog = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                }
            }
            b"/write-code" => {
                let code = main as *const () as *mut u8;
                // SAFETY: deliberately invalid: text is mapped read-only.
                unsafe { std::ptr::write_volatile(code, 0xcc) };
                (500, b"survived".to_vec())
            }
            b"/exit" => std::process::exit(3),
            b"/abort" => std::process::abort(),
            b"/bad-body" => {
                // SAFETY: deliberately bad pointers; the host must reject them.
                unsafe {
                    guest::call6(nr::BACKEND_RESPONSE, [200, 0, 0, 0xdead_0000_0000, 100, 0])
                };
                (500, b"survived".to_vec())
            }
            b"/bad-ctype" => {
                // SAFETY: as above.
                unsafe { guest::call6(nr::BACKEND_RESPONSE, [200, u64::MAX - 4, 10, 0, 0, 0]) };
                (500, b"survived".to_vec())
            }
            b"/bad-headers" => {
                // SAFETY: as above: the extra-headers struct is not in guest memory.
                unsafe { guest::call6(nr::BACKEND_RESPONSE, [200, 0, 0, 0, 0, 0xffff_ffff_0000]) };
                (500, b"survived".to_vec())
            }
            b"/bad-status" => {
                // SAFETY: valid pointers, invalid status.
                unsafe { guest::call6(nr::BACKEND_RESPONSE, [7, 0, 0, 0, 0, 0]) };
                (500, b"survived".to_vec())
            }
            b"/overwrite-stub" => {
                // rt_sigaction's old-action output aimed at the ring-0 #UD stub (0x3060):
                // the host must refuse (EFAULT), as the page tables would.
                let act = [0xccu8; 32];
                // SAFETY: Linux syscall 13 with a valid input buffer; the output pointer is
                // deliberately one the host must reject.
                let set = unsafe { guest::call6(13, [10, act.as_ptr() as u64, 0, 8, 0, 0]) } as i64;
                // SAFETY: as above.
                let get = unsafe { guest::call6(13, [10, 0, 0x3060, 8, 0, 0]) } as i64;
                (200, format!("{set} {get}").into_bytes())
            }
            b"/ds" | b"/set-ds" => {
                if path == b"/set-ds" {
                    // SAFETY: 0x23 is the readable ring-3 code32 descriptor: a legal DS that
                    // differs from the snapshot's 0x2b. Long-mode code does not use DS bases.
                    unsafe { std::arch::asm!("mov ds, {0:x}", in(reg) 0x23u16) };
                }
                let ds: u16;
                // SAFETY: reading a segment register has no side effects.
                unsafe { std::arch::asm!("mov {0:x}, ds", out(reg) ds) };
                (200, format!("ds={ds:#x}").into_bytes())
            }
            b"/huge-body" => {
                // A response body over the host's max_response_body.
                let big = vec![b'x'; 8 << 20];
                guest::backend_response(200, b"text/plain", &big, &[]);
                (500, b"survived".to_vec())
            }
            b"/many-headers" => {
                // 10,000 extra headers through the raw call (the safe wrapper caps at 64).
                let field = b"X-A: b";
                let table: Vec<[u64; 2]> = (0..10_000)
                    .map(|_| [field.as_ptr() as u64, field.len() as u64])
                    .collect();
                let mut extra = [0u64; 7];
                extra[0] = table.as_ptr() as u64;
                extra[1] = 10_000;
                // SAFETY: every pointer is valid; the count is what the host must refuse.
                unsafe {
                    guest::call6(
                        nr::BACKEND_RESPONSE,
                        [200, 0, 0, 0, 0, extra.as_ptr() as u64],
                    )
                };
                (500, b"survived".to_vec())
            }
            b"/bad-api-args" => {
                // Every API call with wrapping or unmapped pointers and lengths: each must
                // fail with an error code, and the guest goes on.
                let calls: [(u64, [u64; 6]); 8] = [
                    (nr::SYS_LOG, [u64::MAX - 2, 100, 0, 0, 0, 0]),
                    (nr::HTTP_APPEND, [1, u64::MAX, 10, 0, 0, 0]),
                    (nr::HTTP_SET, [1, 0x10, u64::MAX, 0, 0, 0]),
                    (nr::HTTP_FIND, [0, 0xdead_0000_0000, 4, 0, 0, 0]),
                    (
                        nr::HTTP_FIND,
                        [0, b"host".as_ptr() as u64, 4, u64::MAX - 8, 1000, 0],
                    ),
                    (nr::HTTP_METHOD, [0x3000, 16, 0, 0, 0, 0]),
                    (nr::GET_MEMINFO, [0x1000, 0, 0, 0, 0, 0]),
                    (0x1_2345, [0; 6]),
                ];
                let mut out = Vec::new();
                for (n, a) in calls {
                    // SAFETY: deliberately bad arguments; the host must validate them.
                    out.push(unsafe { guest::call6(n, a) } as i64);
                }
                (200, format!("{out:?}").into_bytes())
            }
            b"/bad-wait" => {
                // SAFETY: a request buffer in the system area: the host must refuse it.
                unsafe { guest::call6(nr::WAIT_FOR_REQUESTS_PAUSED, [0x3000, 0, 0, 0, 0, 0]) };
                (500, b"survived".to_vec())
            }
            b"/syscalls" => {
                // Unknown (999), forbidden (ptrace 101, mount 165, reboot 169, socket 41) and
                // process-creating (fork 57, clone 56 without CLONE_THREAD) system calls.
                let mut out = Vec::new();
                for n in [999u64, 101, 165, 169, 41, 57, 56] {
                    // SAFETY: the host emulates every syscall; none of these touch memory.
                    out.push(unsafe { guest::call6(n, [0; 6]) } as i64);
                }
                (200, format!("{out:?}").into_bytes())
            }
            b"/raise-segv" => {
                // SAFETY: kill(getpid(), SIGSEGV) through the raw call.
                unsafe { guest::call6(62, [1, 11, 0, 0, 0, 0]) };
                (500, b"survived".to_vec())
            }
            b"/timing" => {
                // A timing probe: the guest may read the TSC; what it measures is its own.
                // SAFETY: RDTSC has no side effects.
                let t0 = unsafe { core::arch::x86_64::_rdtsc() };
                // SAFETY: as above.
                let t1 = unsafe { core::arch::x86_64::_rdtsc() };
                (
                    200,
                    format!("{}", t1.wrapping_sub(t0) < 1_000_000).into_bytes(),
                )
            }
            b"/clock" => {
                // Wall-clock time in ns through glibc, i.e. through the vDSO when the
                // host provides one (then no system call at all).
                let ns = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                (200, format!("{ns}").into_bytes())
            }
            b"/time" => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                (200, format!("time={t}").into_bytes())
            }
            b"/store" => {
                // Keeps this request's body and returns what an earlier request kept.
                let body = bytes(req.content, req.content_len).to_vec();
                let prev = std::mem::replace(&mut *STORED.lock().unwrap(), body);
                (200, prev)
            }
            b"/read" => {
                // GET /read?/path/to/file: the file's bytes, or the error.
                let p =
                    String::from_utf8_lossy(url.splitn(2, |&b| b == b'?').nth(1).unwrap_or(b""));
                match std::fs::read(p.as_ref()) {
                    Ok(data) => (200, data),
                    Err(e) => (403, e.to_string().into_bytes()),
                }
            }
            b"/out-method" => {
                // Upstream's `out` call form: on PVM hosts it goes through the #GP path.
                guest::set_call_mode(CallMode::Out);
                let mut m = [0u8; 16];
                let n = guest::http_method(&mut m);
                guest::set_call_mode(CallMode::Syscall);
                (200, m[..n].to_vec())
            }
            b"/log" => {
                guest::sys_log(b"hello from sys_log");
                eprintln!("hello from stderr");
                (200, b"logged".to_vec())
            }
            _ => (200, echo(&req, count)),
        };
        respond(status, &body, count);
    }
}
