//! The reset after a request runs after its response (`Vm::respond`, then `Vm::finish`),
//! off the client's critical path, and still before anything else runs in the VM: a
//! request sent before `finish` finds the snapshot's state, not the previous request's.
//! Needs /dev/kvm and the system C compiler; without them these tests fail (never skip).

mod common;
use kvmjs_vm::config::VmConfig;
use kvmjs_vm::request::Request;
use kvmjs_vm::vm::Vm;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pages `/dirty` writes: enough that a reset restoring them is measurable.
const DIRTY_PAGES: u64 = 4096;

/// Counts requests; `/dirty` first reads then fills a 16 MiB buffer with the count, so an
/// answer shows what an earlier request left (`seen`); `/crash` faults.
const SERVER: &str = r#"
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static unsigned char buf[16 << 20];
static int counter;
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(8000);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) return 1;
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) return 2;
        char req[4096];
        size_t got = 0;
        while (got < sizeof req - 1) {
            ssize_t n = read(c, req + got, sizeof req - 1 - got);
            if (n <= 0) break;
            got += (size_t)n;
            req[got] = 0;
            if (strstr(req, "\r\n\r\n")) break;
        }
        if (!strncmp(req, "GET /crash", 10)) *(volatile int *)8 = 1;
        counter++;
        int seen = buf[0];
        if (!strncmp(req, "GET /dirty", 10)) memset(buf, counter, sizeof buf);
        char body[64], out[256];
        int bl = snprintf(body, sizeof body, "count=%d seen=%d", counter, seen);
        int n = snprintf(out, sizeof out,
                         "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", bl, body);
        write(c, out, (size_t)n);
        close(c);
    }
}
"#;

fn compile(name: &str) -> PathBuf {
    common::compile_c(name, SERVER)
}

fn boot(bin: &Path, ephemeral: bool) -> Vm {
    common::boot(VmConfig {
        max_request_time: Duration::from_secs(5),
        ephemeral,
        ..common::c_server_cfg(bin)
    })
}

fn body(vm: &mut Vm, url: &str, deferred: bool) -> String {
    let req = Request::get(url);
    let r = if deferred {
        vm.respond(&req)
    } else {
        vm.handle(&req)
    };
    let r = r.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status, 200, "{url}");
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn the_response_comes_before_the_reset_and_no_request_runs_before_it() {
    let bin = compile("eph");
    let mut vm = boot(&bin, true);
    // The response returns with the reset still due: none of its work is in the figures.
    assert_eq!(body(&mut vm, "/dirty", true), "count=1 seen=0");
    let s = vm.last_stats();
    assert_eq!((s.dirty_pages, s.reset_us), (0, 0.0), "{s:?}");
    // A request sent before finish(): the reset runs first, so it finds the snapshot's
    // state (count 0, buffer zero), not the 16 MiB the previous one wrote.
    assert_eq!(body(&mut vm, "/dirty", true), "count=1 seen=0");
    // finish() is that reset: the pages the request wrote, also in its figures.
    let done = vm.finish();
    assert!(done.background.is_none());
    assert!(
        done.dirty_pages >= DIRTY_PAGES && done.reset_us > 0.0,
        "{done:?}"
    );
    let s = vm.last_stats();
    assert_eq!(
        (s.dirty_pages, s.reset_us),
        (done.dirty_pages, done.reset_us)
    );
    assert!(!vm.is_broken());
    // Nothing is left to do.
    let again = vm.finish();
    assert_eq!((again.dirty_pages, again.reset_us), (0, 0.0), "{again:?}");
    assert_eq!(body(&mut vm, "/", true), "count=1 seen=0");
    // handle() still resets before returning: nothing is due afterwards.
    assert_eq!(body(&mut vm, "/dirty", false), "count=1 seen=0");
    let s = vm.last_stats();
    assert!(
        s.dirty_pages >= DIRTY_PAGES && s.reset_us > 0.0 && s.total_us >= s.reset_us,
        "{s:?}"
    );
    let after = vm.finish();
    assert_eq!((after.dirty_pages, after.reset_us), (0, 0.0), "{after:?}");
    assert_eq!(body(&mut vm, "/dirty", true), "count=1 seen=0");
    // The reset runs before the response only with handle(): respond() returns in the
    // time of the request alone, finish() takes the rest.
    eprintln!(
        "deferred reset: {} pages in {:.0} µs after the response; request alone {:.0} µs",
        done.dirty_pages,
        done.reset_us,
        vm.last_stats().total_us
    );
}

#[test]
fn a_failure_leaves_a_reset_due_even_in_non_ephemeral_mode() {
    let bin = compile("non");
    let mut vm = boot(&bin, false);
    // Non-ephemeral: state is kept, no reset is ever due after a good request.
    assert_eq!(body(&mut vm, "/dirty", true), "count=1 seen=0");
    assert_eq!(body(&mut vm, "/dirty", true), "count=2 seen=1");
    let none = vm.finish();
    assert_eq!((none.dirty_pages, none.reset_us), (0, 0.0), "{none:?}");
    // A crash: the (full) reset is due, and runs before the next request.
    let e = vm.respond(&Request::get("/crash")).expect_err("a fault");
    assert!(
        e.to_string().contains("fault") || e.to_string().contains("SIG"),
        "{e}"
    );
    assert_eq!(vm.last_stats().reset_us, 0.0);
    assert_eq!(body(&mut vm, "/dirty", true), "count=1 seen=0");
    assert!(!vm.is_broken());
}
