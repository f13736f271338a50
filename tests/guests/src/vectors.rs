//! `--vectors` mode: proves the host's snapshot/restore covers every XSAVE component the
//! guest can use. Before the pause (the snapshot point) the guest loads known, distinct
//! patterns into the widest vector registers it has (ZMM0-31 and the opmasks k1-k7 under
//! AVX-512, YMM0-15 under AVX, XMM0-15 otherwise), plus a non-default MXCSR and x87
//! control word; after the pause it stores them and then overwrites every one of them.
//! A request therefore sees the patterns only if the host restored the snapshot's state:
//! a restore that skips a component (say, the AVX-512 opmask, ZMM_Hi256 or Hi16_ZMM
//! parts) leaves the previous request's all-ones (or the init state, zeros) there.

use core::arch::asm;
use kvmjs_abi::guest::{self, CallMode};
use kvmjs_abi::{nr, KvmRequest};

/// Bytes per register slot in the pattern and save images (a ZMM register).
const SLOT: usize = 64;
/// Register slots: ZMM0-31 (AVX and SSE use the first 16, and the low 32 or 16 bytes).
const NREGS: usize = 32;
/// Opmask k1-k7 at `K_OFF + 8 * i` (slot 0, k0, is unused: Rust reserves k0).
const K_OFF: usize = SLOT * NREGS;
/// MXCSR (u32).
const MXCSR_OFF: usize = K_OFF + 64;
/// x87 control word (u16).
const FCW_OFF: usize = MXCSR_OFF + 4;
/// Pattern image only: the MXCSR to clobber with (the default one).
const MXCSR_CLOBBER_OFF: usize = FCW_OFF + 4;
/// Pattern image only: the x87 control word to clobber with (the default one).
const FCW_CLOBBER_OFF: usize = MXCSR_CLOBBER_OFF + 4;
/// Image size, a multiple of 64.
const IMAGE_LEN: usize = MXCSR_OFF + 64;

/// Snapshot MXCSR: default 0x1f80 (all exceptions masked) with flush-to-zero (bit 15).
const MXCSR_PATTERN: u32 = 0x9f80;
/// The default MXCSR, loaded after the store.
const MXCSR_DEFAULT: u32 = 0x1f80;
/// Snapshot x87 control word: exceptions masked, 53-bit precision (default 0x037f).
const FCW_PATTERN: u16 = 0x027f;
/// The default x87 control word, loaded after the store.
const FCW_DEFAULT: u16 = 0x037f;

// The asm below hard-codes these offsets.
const _: () = assert!(K_OFF == 2048 && MXCSR_OFF == 2112 && FCW_OFF == 2116);
const _: () = assert!(MXCSR_CLOBBER_OFF == 2120 && FCW_CLOBBER_OFF == 2124);

#[repr(C, align(64))]
struct Image([u8; IMAGE_LEN]);

/// Byte `j` of register slot `r` is `(r*64 + j)*7 + 1 + 3r` (wrapping): the `3r` keeps
/// slots 4 apart (256 bytes) from repeating each other, so a swapped register shows.
const fn pattern() -> Image {
    let mut b = [0u8; IMAGE_LEN];
    let mut i = 0;
    while i < MXCSR_OFF {
        b[i] = (i * 7 + 1 + (i / SLOT) * 3) as u8;
        i += 1;
    }
    let m = MXCSR_PATTERN.to_le_bytes();
    let f = FCW_PATTERN.to_le_bytes();
    let mc = MXCSR_DEFAULT.to_le_bytes();
    let fc = FCW_DEFAULT.to_le_bytes();
    let mut j = 0;
    while j < 4 {
        b[MXCSR_OFF + j] = m[j];
        b[MXCSR_CLOBBER_OFF + j] = mc[j];
        j += 1;
    }
    b[FCW_OFF] = f[0];
    b[FCW_OFF + 1] = f[1];
    b[FCW_CLOBBER_OFF] = fc[0];
    b[FCW_CLOBBER_OFF + 1] = fc[1];
    Image(b)
}

static PATTERN: Image = pattern();

/// The widest vector register set the guest may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Width {
    Sse,
    Avx,
    Avx512,
}

impl Width {
    fn name(self) -> &'static str {
        match self {
            Width::Sse => "sse",
            Width::Avx => "avx",
            Width::Avx512 => "avx512",
        }
    }

    /// Register prefix, bytes per register and number of registers.
    fn regs(self) -> (&'static str, usize, usize) {
        match self {
            Width::Sse => ("xmm", 16, 16),
            Width::Avx => ("ymm", 32, 16),
            Width::Avx512 => ("zmm", 64, 32),
        }
    }
}

/// CPUID says the CPU has it and XCR0 says the OS (here: the host) enabled its state.
fn detect() -> Width {
    use core::arch::x86_64::__cpuid_count;
    let max = __cpuid_count(0, 0).eax;
    let l1 = __cpuid_count(1, 0);
    let osxsave = l1.ecx & (1 << 27) != 0;
    let avx = l1.ecx & (1 << 28) != 0;
    if !osxsave {
        return Width::Sse;
    }
    let lo: u32;
    // SAFETY: XGETBV(0) is valid when CPUID.1:ECX.OSXSAVE is set (checked above); it only
    // reads XCR0 into EDX:EAX.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _,
             options(nomem, nostack, preserves_flags))
    };
    let xcr0 = u64::from(lo);
    if !avx || xcr0 & 0b110 != 0b110 {
        return Width::Sse;
    }
    let l7 = if max >= 7 { __cpuid_count(7, 0).ebx } else { 0 };
    let avx512f = l7 & (1 << 16) != 0;
    // kmovq/kxnorq (64-bit opmasks) need AVX512BW; every AVX-512 CPU but Xeon Phi has it.
    let avx512bw = l7 & (1 << 30) != 0;
    if avx512f && avx512bw && xcr0 & 0xe0 == 0xe0 {
        Width::Avx512
    } else {
        Width::Avx
    }
}

/// Loads the patterns into ZMM0-31, k1-k7, MXCSR and the x87 control word, pauses for a
/// request (the snapshot point), stores them all to `out`, then overwrites every one.
///
/// # Safety
/// The CPU must have AVX512F and AVX512BW with their state enabled in XCR0; `req` must be
/// a writable request buffer; `out` must be writable for `IMAGE_LEN` bytes.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pause_avx512(req: *mut KvmRequest, out: *mut u8, out_form: u64) {
    // SAFETY: the caller guarantees the CPU features and the buffers; every register the
    // block writes is declared (RCX/R11 by `syscall`, RAX for the call), MXCSR and the
    // x87 control word are left at their defaults, and the stack is not touched.
    unsafe {
        asm!(
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
            r"vmovdqu64 zmm\i, zmmword ptr [{src} + \i*64]",
            ".endr",
            ".irp i,1,2,3,4,5,6,7",
            r"kmovq k\i, qword ptr [{src} + 2048 + \i*8]",
            ".endr",
            "ldmxcsr dword ptr [{src} + 2112]",
            "fldcw word ptr [{src} + 2116]",
            // wait_for_requests_paused, in the call form the guest uses.
            "test {form}, {form}",
            "jnz 2f",
            "syscall",
            "jmp 3f",
            "2:",
            "out 0, eax",
            "3:",
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
            r"vmovdqu64 zmmword ptr [{dst} + \i*64], zmm\i",
            ".endr",
            ".irp i,1,2,3,4,5,6,7",
            r"kmovq qword ptr [{dst} + 2048 + \i*8], k\i",
            ".endr",
            "stmxcsr dword ptr [{dst} + 2112]",
            "fnstcw word ptr [{dst} + 2116]",
            // Overwrite everything: all-ones vectors and opmasks, default MXCSR/FCW.
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
            r"vpternlogd zmm\i, zmm\i, zmm\i, 0xff",
            ".endr",
            ".irp i,1,2,3,4,5,6,7",
            r"kxnorq k\i, k\i, k\i",
            ".endr",
            "ldmxcsr dword ptr [{src} + 2120]",
            "fldcw word ptr [{src} + 2124]",
            src = in(reg) PATTERN.0.as_ptr(),
            dst = in(reg) out,
            form = in(reg) out_form,
            inout("rax") nr::WAIT_FOR_REQUESTS_PAUSED => _,
            in("rdi") req,
            out("rcx") _, out("r11") _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
            out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
            out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
            out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
            out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
            out("zmm28") _, out("zmm29") _, out("zmm30") _, out("zmm31") _,
            out("k1") _, out("k2") _, out("k3") _, out("k4") _,
            out("k5") _, out("k6") _, out("k7") _,
            options(nostack),
        )
    }
}

/// [`pause_avx512`] for YMM0-15.
///
/// # Safety
/// The CPU must have AVX with its state enabled in XCR0; the buffers as for
/// [`pause_avx512`].
#[target_feature(enable = "avx")]
unsafe fn pause_avx(req: *mut KvmRequest, out: *mut u8, out_form: u64) {
    // SAFETY: as in `pause_avx512`.
    unsafe {
        asm!(
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            r"vmovdqu ymm\i, ymmword ptr [{src} + \i*64]",
            ".endr",
            "ldmxcsr dword ptr [{src} + 2112]",
            "fldcw word ptr [{src} + 2116]",
            "test {form}, {form}",
            "jnz 2f",
            "syscall",
            "jmp 3f",
            "2:",
            "out 0, eax",
            "3:",
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            r"vmovdqu ymmword ptr [{dst} + \i*64], ymm\i",
            ".endr",
            "stmxcsr dword ptr [{dst} + 2112]",
            "fnstcw word ptr [{dst} + 2116]",
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            r"vpcmpeqb ymm\i, ymm\i, ymm\i",
            ".endr",
            "ldmxcsr dword ptr [{src} + 2120]",
            "fldcw word ptr [{src} + 2124]",
            src = in(reg) PATTERN.0.as_ptr(),
            dst = in(reg) out,
            form = in(reg) out_form,
            inout("rax") nr::WAIT_FOR_REQUESTS_PAUSED => _,
            in("rdi") req,
            out("rcx") _, out("r11") _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        )
    }
}

/// [`pause_avx512`] for XMM0-15.
///
/// # Safety
/// The buffers as for [`pause_avx512`].
unsafe fn pause_sse(req: *mut KvmRequest, out: *mut u8, out_form: u64) {
    // SAFETY: as in `pause_avx512` (SSE2 is baseline on x86_64).
    unsafe {
        asm!(
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            r"movdqu xmm\i, xmmword ptr [{src} + \i*64]",
            ".endr",
            "ldmxcsr dword ptr [{src} + 2112]",
            "fldcw word ptr [{src} + 2116]",
            "test {form}, {form}",
            "jnz 2f",
            "syscall",
            "jmp 3f",
            "2:",
            "out 0, eax",
            "3:",
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            r"movdqu xmmword ptr [{dst} + \i*64], xmm\i",
            ".endr",
            "stmxcsr dword ptr [{dst} + 2112]",
            "fnstcw word ptr [{dst} + 2116]",
            ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            r"pcmpeqb xmm\i, xmm\i",
            ".endr",
            "ldmxcsr dword ptr [{src} + 2120]",
            "fldcw word ptr [{src} + 2124]",
            src = in(reg) PATTERN.0.as_ptr(),
            dst = in(reg) out,
            form = in(reg) out_form,
            inout("rax") nr::WAIT_FOR_REQUESTS_PAUSED => _,
            in("rdi") req,
            out("rcx") _, out("r11") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        )
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares what the request saw with the patterns: `Ok` or the mismatch report.
fn check(w: Width, got: &Image) -> Result<(), String> {
    let (prefix, len, n) = w.regs();
    let (want, got) = (&PATTERN.0, &got.0);
    let mut bad = Vec::new();
    let mut first = None;
    let mut note = |name: String, want: &[u8], got: &[u8]| {
        if want != got {
            if first.is_none() {
                first = Some(format!("{name} want {} got {}", hex(want), hex(got)));
            }
            bad.push(name);
        }
    };
    for r in 0..n {
        let s = r * SLOT..r * SLOT + len;
        note(format!("{prefix}{r}"), &want[s.clone()], &got[s]);
    }
    if w == Width::Avx512 {
        for k in 1..8 {
            let s = K_OFF + k * 8..K_OFF + k * 8 + 8;
            note(format!("k{k}"), &want[s.clone()], &got[s]);
        }
    }
    let s = MXCSR_OFF..MXCSR_OFF + 4;
    note("mxcsr".into(), &want[s.clone()], &got[s]);
    let s = FCW_OFF..FCW_OFF + 2;
    note("fcw".into(), &want[s.clone()], &got[s]);
    match first {
        None => Ok(()),
        Some(first) => Err(format!("{} ({first})", bad.join(" "))),
    }
}

/// The `--vectors` request loop. Every request answers 200 `vectors=<width> ok` when it
/// found the snapshot's vector state, 500 `vectors=<width> mismatch: <registers>` if not.
pub fn serve() -> ! {
    let width = detect();
    let out_form = u64::from(guest::call_mode() == CallMode::Out);
    println!("echo guest booting (vectors={})", width.name());
    let mut req = KvmRequest::zeroed();
    let mut got = Image([0; IMAGE_LEN]);
    loop {
        let (r, o) = (&mut req as *mut KvmRequest, got.0.as_mut_ptr());
        // SAFETY: `detect` found the CPU features and XCR0 bits each variant needs; `req`
        // and `got` are live, writable and large enough.
        unsafe {
            match width {
                Width::Avx512 => pause_avx512(r, o, out_form),
                Width::Avx => pause_avx(r, o, out_form),
                Width::Sse => pause_sse(r, o, out_form),
            }
        }
        // SAFETY: the host wrote the current request at these addresses.
        let url = unsafe { guest::request_bytes(req.url, u64::from(req.url_len)) };
        let url = String::from_utf8_lossy(url);
        let (status, body) = match check(width, &got) {
            Ok(()) => (200, format!("vectors={} ok\nurl={url}\n", width.name())),
            Err(e) => (
                500,
                format!("vectors={} mismatch: {e}\nurl={url}\n", width.name()),
            ),
        };
        guest::backend_response(status, b"text/plain", body.as_bytes(), &[]);
    }
}
