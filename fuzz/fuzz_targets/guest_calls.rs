//! The host's system-call and guest-API decoding: arbitrary guest memory and a sequence of
//! arbitrary calls (number and six registers) must never panic or touch memory outside the
//! guest (bounds are checked by GuestMemory; ASan would catch the rest). Guest memory is
//! virtual as in a booted VM: addresses go through the page tables the address space
//! keeps, so mmap/munmap/mprotect/mremap/madvise/brk with garbage arguments change the
//! very tables later calls translate through.
#![no_main]

use kvmjs_vm::memory::GuestMemory;
use kvmjs_vm::process::Process;
use kvmjs_vm::syscalls::{self, Ctx, Exchange, GuestLog};
use kvmjs_vm::VmConfig;

const SPACE: u64 = 16 << 20;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 56 {
        return;
    }
    let cfg = VmConfig {
        address_space: SPACE,
        max_memory: 8 << 20,
        ..Default::default()
    };
    let Ok(mut mem) = GuestMemory::new(SPACE, false) else {
        return;
    };
    // The tail of the input becomes guest memory at 2 MiB (a mapping, like the data of a
    // loaded program); the head is the call list.
    let split = data.len().min(4096) / 56 * 56;
    let mut proc = Process::new(0x40_0000, SPACE, cfg.max_memory, 1 << 20);
    let Ok(root) = proc.mm.root(&mut mem) else {
        return;
    };
    mem.set_root(Some(root));
    let fixed = kvmjs_vm::mm::flags::FIXED | kvmjs_vm::mm::flags::PRIVATE | kvmjs_vm::mm::flags::ANONYMOUS;
    let tail = (data.len() - split).max(1) as u64;
    if proc.mm.mmap(&mut mem, 0x20_0000, tail, 3, fixed, None, u64::MAX).is_err() {
        return;
    }
    let _ = mem.write(0x20_0000, &data[split..]);
    let mut exchange = Exchange {
        method: "GET".into(),
        req_headers: vec!["Host: fuzz".into()],
        resp_headers: Vec::new(),
        // No origin is allowed (VmConfig's default policy): fetch calls fail before any I/O.
        fetch: Default::default(),
    };
    let mut log = GuestLog::default();
    for call in data[..split].chunks_exact(56) {
        let word = |i: usize| u64::from_le_bytes(call[i * 8..i * 8 + 8].try_into().unwrap());
        // Bias numbers into the interesting ranges: Linux syscalls and the API.
        let raw = word(0);
        let nr = if raw & 1 == 0 {
            (raw >> 1) % 512
        } else {
            0x10000 + ((raw >> 1) % 0x70000)
        };
        let args = [word(1), word(2), word(3), word(4), word(5), word(6)];
        // Sleeps are real; keep them out of the fuzzer's way.
        if matches!(nr, 35 | 230) {
            continue;
        }
        let mut ctx = Ctx {
            mem: &mut mem,
            proc: &mut proc,
            cfg: &cfg,
            exchange: &mut exchange,
            deadline: Some(std::time::Instant::now()),
            log: &mut log,
        };
        let flow = if nr >= kvmjs_abi::nr::FIRST_API_CALL {
            kvmjs_vm::api::dispatch(&mut ctx, nr, &args)
        } else {
            syscalls::dispatch(&mut ctx, nr, &args)
        };
        drop(ctx);
        // Thread operations go through the scheduler as the run loop's would (no vCPU).
        let call = kvmjs_vm::tasks::Call { nr, args };
        if !kvmjs_vm::tasks::apply_without_vcpu(&mut proc, flow, call, std::time::Instant::now()) {
            break;
        }
    }
});
