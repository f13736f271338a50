//! The vDSO kvmjs maps into every guest: `clock_gettime`, `gettimeofday`, `time`, `getcpu`
//! and `clock_getres` answered in ring 3 from RDTSC and a host-filled data page, so the
//! clock reads a program makes (deno: 6–53 per request) cost no VM exit.
//!
//! Contract with the loader (who maps it):
//! - [`image()`] is mapped read+execute at a page-aligned base; its one `PT_LOAD` has
//!   `p_vaddr` 0 and file bytes equal memory bytes, and it has no relocations, so it needs
//!   no loader work at all. `AT_SYSINFO_EHDR` is that base.
//! - The data page ([`DATA_SIZE`] bytes, [`fill`]ed by the host) is mapped read-only at
//!   `base - DATA_SIZE`; the code reaches it RIP-relatively.
//!
//! Time is a line through one sample: the guest TSC and the host's clocks read at the same
//! instant. The guest TSC runs at the host's rate and the VM keeps its offset across
//! snapshot resets and forks (`Machine::align_tsc`), so the page stays right without being
//! rewritten. When the probe found no usable TSC ([`crate::Caps::guest_tsc_khz`] is
//! `None`), the page says so and every call falls back to the `syscall` instruction.
//!
//! The C source is `vdso.c` (with `vvar.h`, `vdso.lds`, `vdso.map`), built by build.rs.

use std::mem::{offset_of, size_of};

/// The vDSO image (an ELF64 shared object, soname `linux-vdso.so.1`).
pub fn image() -> &'static [u8] {
    static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));
    IMAGE
}

/// Size of the data page mapped immediately below the image.
pub const DATA_SIZE: usize = 4096;

/// Clock ids the page has a slot for (Linux's CLOCK_REALTIME 0 … CLOCK_TAI 11).
pub const CLOCKS: usize = 12;

/// The page is filled ([`VdsoData::magic`]).
pub const MAGIC: u64 = 0x6b76_6d6a_7376_7661;

/// [`VdsoData::flags`]: the TSC is a clock; without it every call takes the syscall.
pub const FLAG_TSC_VALID: u64 = 1;

/// Fixed-point shift of the tick-to-ns factor. The guest multiplies in 128 bits, so any
/// shift works without overflow; 32 gives a factor error below 1e-9 for any TSC rate.
const SHIFT: u32 = 32;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Linux clock ids.
pub mod clock {
    /// Wall-clock time.
    pub const REALTIME: u32 = 0;
    /// Time since an arbitrary start, not set by the administrator.
    pub const MONOTONIC: u32 = 1;
    /// CPU time of the process (always a syscall).
    pub const PROCESS_CPUTIME_ID: u32 = 2;
    /// CPU time of the thread (always a syscall).
    pub const THREAD_CPUTIME_ID: u32 = 3;
    /// MONOTONIC without NTP slewing.
    pub const MONOTONIC_RAW: u32 = 4;
    /// REALTIME at tick resolution.
    pub const REALTIME_COARSE: u32 = 5;
    /// MONOTONIC at tick resolution.
    pub const MONOTONIC_COARSE: u32 = 6;
    /// MONOTONIC including suspend.
    pub const BOOTTIME: u32 = 7;
}

/// Errors filling the data page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VdsoError {
    /// The buffer handed to [`fill`] is not one data page.
    #[error("the vDSO data page must be {DATA_SIZE} bytes, got {0}; pass the whole page")]
    PageSize(usize),
    /// A TSC rate of zero cannot be a clock.
    #[error("TSC rate of 0 kHz; pass None (no TSC clock) instead")]
    ZeroRate,
}

/// The data page as the C code sees it (`struct kvmjs_vvar` in vvar.h). A unit test checks
/// this layout against the one compiled into the image.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsoData {
    /// [`MAGIC`] once filled.
    pub magic: u64,
    /// [`FLAG_TSC_VALID`].
    pub flags: u64,
    /// Bit n: clock id n is answered in the guest.
    pub clock_mask: u64,
    /// Guest TSC at the sample.
    pub tsc_base: u64,
    /// ns = (ticks × mult) >> shift.
    pub mult: u64,
    /// See `mult`.
    pub shift: u64,
    /// What `clock_getres` reports for answered clocks.
    pub res_ns: u64,
    /// What `getcpu` reports (one vCPU: 0).
    pub cpu: u64,
    /// NUMA node `getcpu` reports.
    pub node: u64,
    /// Each clock's value at `tsc_base`, ns.
    pub base_ns: [u64; CLOCKS],
}

const _: () = assert!(size_of::<VdsoData>() <= DATA_SIZE);

/// One sample of the clocks, taken at a single instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clocks {
    /// Guest TSC at the instant (host TSC + the VM's TSC offset).
    pub guest_tsc: u64,
    /// TSC rate, only when the TSC is usable as a clock.
    pub tsc_khz: Option<u32>,
    /// CLOCK_REALTIME, ns.
    pub realtime_ns: u64,
    /// CLOCK_MONOTONIC, ns.
    pub monotonic_ns: u64,
    /// CLOCK_MONOTONIC_RAW, ns.
    pub monotonic_raw_ns: u64,
    /// CLOCK_BOOTTIME, ns.
    pub boottime_ns: u64,
}

fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no memory effects and is allowed in user mode on Linux hosts.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn host_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer and `id` one of the clocks Linux always has.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    debug_assert_eq!(rc, 0, "clock {id} is always present on Linux");
    (ts.tv_sec as u64)
        .wrapping_mul(NS_PER_SEC)
        .wrapping_add(ts.tv_nsec as u64)
}

impl Clocks {
    /// Samples the host clocks and the TSC at one instant, for a VM whose guest TSC is host
    /// TSC + `tsc_delta` (`Machine::tsc_delta`). The clocks are read between two TSC reads;
    /// of a few tries the narrowest window wins and its midpoint is the instant.
    pub fn sample(tsc_delta: i64, tsc_khz: Option<u32>) -> Clocks {
        let mut best: Option<(u64, Clocks)> = None;
        for _ in 0..5 {
            let t0 = host_tsc();
            let realtime_ns = host_ns(libc::CLOCK_REALTIME);
            let monotonic_ns = host_ns(libc::CLOCK_MONOTONIC);
            let monotonic_raw_ns = host_ns(libc::CLOCK_MONOTONIC_RAW);
            let boottime_ns = host_ns(libc::CLOCK_BOOTTIME);
            let t1 = host_tsc();
            let width = t1.wrapping_sub(t0);
            let mid = t0.wrapping_add(width / 2);
            let c = Clocks {
                guest_tsc: mid.wrapping_add(tsc_delta as u64),
                tsc_khz,
                realtime_ns,
                monotonic_ns,
                monotonic_raw_ns,
                boottime_ns,
            };
            if best.as_ref().is_none_or(|(w, _)| width < *w) {
                best = Some((width, c));
            }
        }
        best.expect("five samples were taken").1
    }
}

impl VdsoData {
    /// The page for `clocks`.
    pub fn new(clocks: &Clocks) -> Result<VdsoData, VdsoError> {
        let mut d = VdsoData {
            magic: MAGIC,
            // One vCPU, one node: getcpu always answers 0/0.
            cpu: 0,
            node: 0,
            ..Default::default()
        };
        let Some(khz) = clocks.tsc_khz else {
            return Ok(d);
        };
        if khz == 0 {
            return Err(VdsoError::ZeroRate);
        }
        let (mult, shift) = mult_shift(khz);
        d.flags = FLAG_TSC_VALID;
        d.tsc_base = clocks.guest_tsc;
        d.mult = mult;
        d.shift = u64::from(shift);
        // One tick, rounded up to a whole ns: the finest step the guest can see.
        d.res_ns = 1_000_000u64.div_ceil(u64::from(khz)).max(1);
        // The coarse clocks are served at full resolution: finer than Linux's tick, never
        // coarser, and from the same line as their precise twins.
        for (id, base) in [
            (clock::REALTIME, clocks.realtime_ns),
            (clock::MONOTONIC, clocks.monotonic_ns),
            (clock::MONOTONIC_RAW, clocks.monotonic_raw_ns),
            (clock::REALTIME_COARSE, clocks.realtime_ns),
            (clock::MONOTONIC_COARSE, clocks.monotonic_ns),
            (clock::BOOTTIME, clocks.boottime_ns),
        ] {
            d.set_clock(id, base);
        }
        Ok(d)
    }

    /// Answers clock `id` in the guest, starting at `base_ns` at `tsc_base`.
    fn set_clock(&mut self, id: u32, base_ns: u64) {
        self.base_ns[id as usize] = base_ns;
        self.clock_mask |= 1 << id;
    }

    /// Whether the guest answers clocks from the TSC.
    pub fn tsc_valid(&self) -> bool {
        self.magic == MAGIC && self.flags & FLAG_TSC_VALID != 0
    }

    /// Whether the guest answers clock `id` without a syscall.
    pub fn answers(&self, id: u32) -> bool {
        self.tsc_valid() && (id as usize) < CLOCKS && self.clock_mask >> id & 1 != 0
    }

    /// Clock `id` at guest TSC `tsc`, in ns, computed as vdso.c does; `None` when the guest
    /// would take the syscall.
    pub fn ns_at(&self, id: u32, tsc: u64) -> Option<u64> {
        if !self.answers(id) {
            return None;
        }
        let ticks = tsc.wrapping_sub(self.tsc_base) as i64;
        let scaled = (i128::from(ticks) * i128::from(self.mult as i64)) >> (self.shift & 127);
        Some(self.base_ns[id as usize].wrapping_add(scaled as i64 as u64))
    }

    /// The page's bytes (the struct, then zeros).
    pub fn to_page(&self) -> [u8; DATA_SIZE] {
        let mut page = [0u8; DATA_SIZE];
        for (i, w) in self.words().iter().enumerate() {
            page[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        page
    }

    /// Reads a page written by [`VdsoData::to_page`].
    pub fn from_page(page: &[u8]) -> Result<VdsoData, VdsoError> {
        if page.len() != DATA_SIZE {
            return Err(VdsoError::PageSize(page.len()));
        }
        let w = |i: usize| u64::from_le_bytes(page[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let mut base_ns = [0u64; CLOCKS];
        for (i, b) in base_ns.iter_mut().enumerate() {
            *b = w(9 + i);
        }
        Ok(VdsoData {
            magic: w(0),
            flags: w(1),
            clock_mask: w(2),
            tsc_base: w(3),
            mult: w(4),
            shift: w(5),
            res_ns: w(6),
            cpu: w(7),
            node: w(8),
            base_ns,
        })
    }

    /// The fields in declaration order (the struct is all u64s: the order is the layout,
    /// which `layout_matches_the_image` checks).
    fn words(&self) -> Vec<u64> {
        let mut v = vec![
            self.magic,
            self.flags,
            self.clock_mask,
            self.tsc_base,
            self.mult,
            self.shift,
            self.res_ns,
            self.cpu,
            self.node,
        ];
        v.extend_from_slice(&self.base_ns);
        debug_assert_eq!(v.len() * 8, size_of::<VdsoData>());
        v
    }

    /// `[size, offset of each field…, CLOCKS, MAGIC, FLAG_TSC_VALID]`, the same list vdso.c
    /// compiles into `kvmjs_vvar_layout`.
    pub fn layout() -> [u64; 14] {
        [
            size_of::<VdsoData>() as u64,
            offset_of!(VdsoData, magic) as u64,
            offset_of!(VdsoData, flags) as u64,
            offset_of!(VdsoData, clock_mask) as u64,
            offset_of!(VdsoData, tsc_base) as u64,
            offset_of!(VdsoData, mult) as u64,
            offset_of!(VdsoData, shift) as u64,
            offset_of!(VdsoData, res_ns) as u64,
            offset_of!(VdsoData, cpu) as u64,
            offset_of!(VdsoData, node) as u64,
            offset_of!(VdsoData, base_ns) as u64,
            CLOCKS as u64,
            MAGIC,
            FLAG_TSC_VALID,
        ]
    }
}

/// The tick-to-ns factor for `khz`: ns = (ticks × mult) >> shift, rounded to nearest.
fn mult_shift(khz: u32) -> (u64, u32) {
    let k = u64::from(khz);
    // khz ≥ 1 bounds mult by 1e6 × 2^32 < 2^52: no overflow, and it fits the guest's i64.
    (((1_000_000u64 << SHIFT) + k / 2) / k, SHIFT)
}

/// Writes the data page for `clocks` into `data` (exactly [`DATA_SIZE`] bytes).
pub fn fill(data: &mut [u8], clocks: &Clocks) -> Result<(), VdsoError> {
    if data.len() != DATA_SIZE {
        return Err(VdsoError::PageSize(data.len()));
    }
    data.copy_from_slice(&VdsoData::new(clocks)?.to_page());
    Ok(())
}

#[cfg(test)]
mod tests;
