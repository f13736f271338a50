//! Threads test guest: std threads (pthreads over clone3 and futexes) on the VM's single
//! vCPU. Output is deterministic whatever the interleaving, so the host tests compare it
//! exactly (and with a native run of the same binary, `--native`).
//!
//! At boot it joins 4 threads (so threads work before the snapshot) and leaves a worker
//! thread blocked on a channel: every request that uses the worker proves that a thread
//! blocked at the snapshot is blocked at the same point again after each reset.

use kvmjs_abi::guest::{self, CallMode};
use kvmjs_abi::KvmRequest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Requests served since the snapshot (1 on every request in ephemeral mode).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Four threads take turns through a Mutex + Condvar: thread i appends its line when
/// `turn == i`, so the log's order is fixed by the program, not by the scheduler.
fn turns(rounds: usize) -> String {
    const N: usize = 4;
    let shared = Arc::new((Mutex::new((0usize, Vec::<String>::new())), Condvar::new()));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let shared = shared.clone();
            thread::spawn(move || {
                let tid = gettid();
                let (lock, cv) = &*shared;
                for r in 0..rounds {
                    let mut g = lock.lock().unwrap();
                    while g.0 % N != i {
                        g = cv.wait(g).unwrap();
                    }
                    g.1.push(format!("round {r} thread {i}"));
                    g.0 += 1;
                    cv.notify_all();
                }
                (i * 10, tid)
            })
        })
        .collect();
    let results: Vec<(usize, u64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut tids: Vec<u64> = results.iter().map(|r| r.1).collect();
    tids.push(gettid());
    tids.sort_unstable();
    tids.dedup();
    let (lock, _) = &*shared;
    let g = lock.lock().unwrap();
    format!(
        "{}\nreturned {:?}\ndistinct tids {}\n",
        g.1.join("\n"),
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        tids.len()
    )
}

fn gettid() -> u64 {
    // SAFETY: gettid has no arguments and no side effects.
    unsafe { libc_syscall0(186) }
}

/// A raw system call with no arguments (the guest has no libc crate dependency).
unsafe fn libc_syscall0(nr: u64) -> u64 {
    let ret: u64;
    // SAFETY: the caller names a system call that takes no arguments; SYSCALL clobbers
    // RCX and R11 only.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr => ret, out("rcx") _, out("r11") _, options(nostack));
    }
    ret
}

/// Loads `v` into XMM0 and (when the CPU has AVX2) the upper half of YMM1, yields the
/// vCPU with a raw sched_yield, and checks both still hold it.
fn vectors_survive_yield(v: u64) -> bool {
    let (x, hi): (u64, u64);
    let avx = std::arch::is_x86_feature_detected!("avx2");
    // SAFETY: only registers are touched; the asm declares everything it clobbers (the
    // syscall's RCX/R11/RAX and the vector registers it loads). YMM instructions run only
    // when the CPU reports AVX2.
    unsafe {
        if avx {
            std::arch::asm!(
                "vmovq xmm2, {v}",
                "vpbroadcastq ymm1, xmm2",
                "movq xmm0, {v}",
                "mov eax, 24",
                "syscall",
                "movq {x}, xmm0",
                "vextracti128 xmm2, ymm1, 1",
                "vmovq {hi}, xmm2",
                v = in(reg) v, x = out(reg) x, hi = out(reg) hi,
                out("rax") _, out("rcx") _, out("r11") _,
                out("xmm0") _, out("ymm1") _, out("xmm2") _,
                options(nostack),
            );
        } else {
            std::arch::asm!(
                "movq xmm0, {v}",
                "mov eax, 24",
                "syscall",
                "movq {x}, xmm0",
                v = in(reg) v, x = out(reg) x,
                out("rax") _, out("rcx") _, out("r11") _, out("xmm0") _,
                options(nostack),
            );
            hi = v;
        }
    }
    x == v && hi == v
}

/// The worker left blocked at the snapshot: answers `n` with the sum 1..=n and how many
/// jobs it has done since the snapshot.
struct Worker {
    jobs: mpsc::Sender<u64>,
    answers: mpsc::Receiver<(u64, u64)>,
}

fn start_worker() -> Worker {
    let (jobs, rx) = mpsc::channel::<u64>();
    let (tx, answers) = mpsc::channel();
    thread::spawn(move || {
        let mut done = 0;
        for n in rx {
            done += 1;
            tx.send(((1..=n).sum(), done)).unwrap();
        }
    });
    Worker { jobs, answers }
}

fn handle(path: &str, query: &str, worker: &Worker) -> (u16, String) {
    match path {
        "/turns" => (200, turns(query.parse().unwrap_or(3))),
        "/worker" => {
            let n = query.parse().unwrap_or(10);
            worker.jobs.send(n).unwrap();
            let (sum, done) = worker.answers.recv().unwrap();
            (200, format!("sum={sum} jobs={done}\n"))
        }
        "/timeout" => {
            // Nobody notifies: the wait must time out (FUTEX_WAIT_BITSET with a deadline).
            let pair = (Mutex::new(false), Condvar::new());
            let g = pair.0.lock().unwrap();
            let (_g, r) = pair.1.wait_timeout(g, Duration::from_millis(30)).unwrap();
            (200, format!("timed_out={}\n", r.timed_out()))
        }
        "/sleep" => {
            // A thread that sleeps while main waits for it: all threads blocked, one with
            // a deadline.
            let h = thread::spawn(|| {
                thread::sleep(Duration::from_millis(20));
                7
            });
            (200, format!("slept={}\n", h.join().unwrap()))
        }
        "/yield" => {
            let n = Arc::new(AtomicU64::new(0));
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let n = n.clone();
                    thread::spawn(move || {
                        for _ in 0..5 {
                            n.fetch_add(1, Ordering::Relaxed);
                            thread::yield_now();
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            (200, format!("count={}\n", n.load(Ordering::Relaxed)))
        }
        "/interleave" => {
            // No locks ordering the threads: the order is the scheduler's. On the VM's
            // single vCPU it is FIFO round robin at each yield, the same on every request.
            let log = Arc::new(Mutex::new(String::new()));
            let hs: Vec<_> = (0..3)
                .map(|i| {
                    let log = log.clone();
                    thread::spawn(move || {
                        for _ in 0..4 {
                            log.lock().unwrap().push_str(&i.to_string());
                            thread::yield_now();
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            let order = log.lock().unwrap().clone();
            (200, format!("order={order}\n"))
        }
        "/xmm" => {
            // Each thread keeps its own value in XMM0 and YMM1's upper half across
            // sched_yield, which switches threads: the host must switch vector state too.
            let hs: Vec<_> = (1..=4u64)
                .map(|i| {
                    thread::spawn(move || {
                        (0..20)
                            .filter(|&r| !vectors_survive_yield(i * 1000 + r))
                            .count()
                    })
                })
                .collect();
            let bad: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
            (200, format!("vector mismatches={bad}\n"))
        }
        "/deadlock" => {
            let pair = (Mutex::new(false), Condvar::new());
            let mut g = pair.0.lock().unwrap();
            while !*g {
                g = pair.1.wait(g).unwrap();
            }
            (500, "woke up".into())
        }
        "/many" => {
            // More threads than kvmjs allows at once: spawning fails cleanly.
            let mut hs = Vec::new();
            let mut failed = 0;
            let stop = Arc::new((Mutex::new(false), Condvar::new()));
            for _ in 0..80 {
                let stop = stop.clone();
                match thread::Builder::new().stack_size(64 << 10).spawn(move || {
                    let mut g = stop.0.lock().unwrap();
                    while !*g {
                        g = stop.1.wait(g).unwrap();
                    }
                }) {
                    Ok(h) => hs.push(h),
                    Err(_) => failed += 1,
                }
            }
            *stop.0.lock().unwrap() = true;
            stop.1.notify_all();
            let started = hs.len();
            hs.into_iter().for_each(|h| h.join().unwrap());
            (200, format!("started={started} failed={failed}\n"))
        }
        _ => (404, "unknown path\n".into()),
    }
}

fn bytes(ptr: u64, len: u64) -> &'static [u8] {
    // SAFETY: the host wrote the current request at these addresses.
    unsafe { guest::request_bytes(ptr, len) }
}

fn main() {
    // `--native PATH`: print what a request would answer, outside any VM.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--native") {
        let worker = start_worker();
        print!("{}", turns(3));
        let url = args.get(2).cloned().unwrap_or_else(|| "/turns".into());
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        print!("{}", handle(path, query, &worker).1);
        return;
    }
    if std::env::var_os(kvmjs_abi::KVMJS_HOST_ENV).is_some() {
        guest::set_call_mode(CallMode::Syscall);
    }
    let boot = turns(3);
    print!("{boot}");
    let worker = start_worker();
    let mut req = KvmRequest::zeroed();
    loop {
        guest::wait_for_requests_paused(&mut req);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        let url = String::from_utf8_lossy(bytes(req.url, u64::from(req.url_len))).into_owned();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let (status, body) = handle(path, query, &worker);
        let h = format!("X-Counter: {count}");
        guest::backend_response(status, b"text/plain", body.as_bytes(), &[h.as_bytes()]);
    }
}
