//! The image's shape, its layout against `VdsoData`, the fixed-point math, and the compiled C
//! run on the host (the image needs no loader: it is copied next to a data page and called).

use super::*;
use goblin::elf::{header, program_header, Elf};

const EXPORTS: [&str; 10] = [
    "__vdso_clock_gettime",
    "__vdso_gettimeofday",
    "__vdso_time",
    "__vdso_getcpu",
    "__vdso_clock_getres",
    "clock_gettime",
    "gettimeofday",
    "time",
    "getcpu",
    "clock_getres",
];

fn elf() -> Elf<'static> {
    Elf::parse(image()).expect("the vDSO parses as ELF")
}

fn symbol(elf: &Elf<'_>, name: &str) -> Option<u64> {
    elf.dynsyms
        .iter()
        .find(|s| elf.dynstrtab.get_at(s.st_name) == Some(name) && s.st_shndx != 0)
        .map(|s| s.st_value)
}

#[test]
fn image_is_a_loader_free_shared_object() {
    let e = elf();
    assert!(e.is_64 && e.little_endian);
    assert_eq!(e.header.e_type, header::ET_DYN);
    assert_eq!(e.header.e_machine, header::EM_X86_64);
    assert_eq!(e.soname, Some("linux-vdso.so.1"));
    assert!(e.libraries.is_empty(), "needs {:?}", e.libraries);
    assert!(e.interpreter.is_none());
    let loads: Vec<_> = e
        .program_headers
        .iter()
        .filter(|p| p.p_type == program_header::PT_LOAD)
        .collect();
    assert_eq!(loads.len(), 1, "one PT_LOAD");
    let l = loads[0];
    assert_eq!((l.p_vaddr, l.p_offset), (0, 0));
    assert_eq!(l.p_filesz, l.p_memsz, "no bss: file bytes are memory bytes");
    assert_eq!(l.p_flags, program_header::PF_R | program_header::PF_X);
    assert!(l.p_filesz as usize <= image().len());
    assert!(e
        .program_headers
        .iter()
        .any(|p| p.p_type == program_header::PT_DYNAMIC));
    assert!(e.dynrelas.is_empty() && e.dynrels.is_empty() && e.pltrelocs.is_empty());
    assert!(
        !e.section_headers.iter().any(|s| matches!(
            e.shdr_strtab.get_at(s.sh_name),
            Some(".got" | ".got.plt" | ".plt" | ".data" | ".bss")
        )),
        "no writable or loader-filled sections"
    );
    for name in EXPORTS {
        let at = symbol(&e, name).unwrap_or_else(|| panic!("{name} is not exported"));
        assert!(at > 0 && at < l.p_memsz, "{name} at {at:#x}");
    }
    assert_eq!(
        symbol(&e, "clock_gettime"),
        symbol(&e, "__vdso_clock_gettime")
    );
    let verdef = e.verdef.as_ref().expect("symbols are versioned");
    let names: Vec<_> = verdef
        .iter()
        .flat_map(|d| {
            d.iter()
                .map(|a| e.dynstrtab.get_at(a.vda_name))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(names.contains(&Some("LINUX_2.6")), "{names:?}");
}

#[test]
fn layout_matches_the_image() {
    let e = elf();
    let sym = e
        .syms
        .iter()
        .find(|s| e.strtab.get_at(s.st_name) == Some("kvmjs_vvar_layout"))
        .expect("kvmjs_vvar_layout in .symtab");
    let at = sym.st_value as usize; // vaddr == file offset (one PT_LOAD at 0)
    let expect = VdsoData::layout();
    assert_eq!(sym.st_size as usize, expect.len() * 8);
    let got: Vec<u64> = image()[at..at + expect.len() * 8]
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    assert_eq!(got, expect, "vvar.h and VdsoData disagree");
}

fn clocks(khz: Option<u32>) -> Clocks {
    Clocks {
        guest_tsc: 1 << 40,
        tsc_khz: khz,
        realtime_ns: 1_700_000_000 * NS_PER_SEC,
        monotonic_ns: 5 * NS_PER_SEC,
        monotonic_raw_ns: 4 * NS_PER_SEC,
        boottime_ns: 6 * NS_PER_SEC,
    }
}

#[test]
fn factor_error_is_below_one_ppm_over_an_hour() {
    for khz in [
        1, 32_768, 1_000_000, 2_096_000, 2_596_150, 3_000_000, 4_999_999,
    ] {
        let d = VdsoData::new(&clocks(Some(khz))).unwrap();
        let hour_ticks = u64::from(khz) * 1000 * 3600;
        let got = d.ns_at(clock::MONOTONIC, d.tsc_base + hour_ticks).unwrap();
        let want = 5 * NS_PER_SEC + 3600 * NS_PER_SEC;
        let err = got.abs_diff(want) as f64 / (3600.0 * 1e9);
        assert!(err < 1e-6, "{khz} kHz: {err:e} over an hour");
    }
}

#[test]
fn clocks_map_to_their_bases_and_cpu_clocks_trap() {
    let d = VdsoData::new(&clocks(Some(2_000_000))).unwrap();
    let t = d.tsc_base + 2_000_000; // 1 ms later
    let ms = 1_000_000;
    assert_eq!(
        d.ns_at(clock::REALTIME, t),
        Some(1_700_000_000 * NS_PER_SEC + ms)
    );
    assert_eq!(
        d.ns_at(clock::REALTIME_COARSE, t),
        d.ns_at(clock::REALTIME, t)
    );
    assert_eq!(d.ns_at(clock::MONOTONIC, t), Some(5 * NS_PER_SEC + ms));
    assert_eq!(
        d.ns_at(clock::MONOTONIC_COARSE, t),
        Some(5 * NS_PER_SEC + ms)
    );
    assert_eq!(d.ns_at(clock::MONOTONIC_RAW, t), Some(4 * NS_PER_SEC + ms));
    assert_eq!(d.ns_at(clock::BOOTTIME, t), Some(6 * NS_PER_SEC + ms));
    for id in [
        clock::PROCESS_CPUTIME_ID,
        clock::THREAD_CPUTIME_ID,
        8,
        9,
        10,
        11,
        12,
        99,
    ] {
        assert_eq!(d.ns_at(id, t), None, "clock {id}");
    }
    // A read just before the base steps back a little, never by centuries.
    assert_eq!(
        d.ns_at(clock::MONOTONIC, d.tsc_base - 2000),
        Some(5 * NS_PER_SEC - 1000)
    );
    assert_eq!(d.res_ns, 1);
}

#[test]
fn without_a_tsc_the_page_answers_nothing() {
    let d = VdsoData::new(&clocks(None)).unwrap();
    assert_eq!(d.magic, MAGIC);
    assert!(!d.tsc_valid());
    assert!((0..CLOCKS as u32).all(|id| !d.answers(id)));
    assert_eq!(VdsoData::new(&clocks(Some(0))), Err(VdsoError::ZeroRate));
}

#[test]
fn fill_writes_one_page_and_reads_back() {
    let c = clocks(Some(2_596_150));
    let mut page = vec![0xffu8; DATA_SIZE];
    fill(&mut page, &c).unwrap();
    assert_eq!(
        VdsoData::from_page(&page).unwrap(),
        VdsoData::new(&c).unwrap()
    );
    assert!(page[size_of::<VdsoData>()..].iter().all(|&b| b == 0));
    assert_eq!(fill(&mut page[..100], &c), Err(VdsoError::PageSize(100)));
    assert_eq!(
        fill(&mut vec![0; DATA_SIZE + 1], &c),
        Err(VdsoError::PageSize(DATA_SIZE + 1))
    );
}

#[test]
fn sample_brackets_the_host_clocks() {
    let before = host_ns(libc::CLOCK_MONOTONIC);
    let c = Clocks::sample(1000, Some(1));
    let after = host_ns(libc::CLOCK_MONOTONIC);
    assert!(before <= c.monotonic_ns && c.monotonic_ns <= after);
    let tsc = host_tsc();
    assert!(c.guest_tsc.wrapping_sub(1000) <= tsc);
}

/// The image copied after a data page in host memory, with its functions callable.
struct Mapped {
    base: *mut u8,
    len: usize,
}

type ClockGettime = unsafe extern "C" fn(i32, *mut libc::timespec) -> i32;
type Gettimeofday = unsafe extern "C" fn(*mut libc::timeval, *mut u8) -> i32;
type Time = unsafe extern "C" fn(*mut i64) -> i64;
type Getcpu = unsafe extern "C" fn(*mut u32, *mut u32, *mut u8) -> i64;

impl Mapped {
    fn new(data: &VdsoData) -> Mapped {
        let img = image();
        let len = DATA_SIZE + img.len().div_ceil(4096) * 4096;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base.cast::<u8>();
        let page = data.to_page();
        // SAFETY: both copies stay inside the `len`-byte mapping made above.
        unsafe {
            std::ptr::copy_nonoverlapping(page.as_ptr(), base, DATA_SIZE);
            std::ptr::copy_nonoverlapping(img.as_ptr(), base.add(DATA_SIZE), img.len());
        }
        // SAFETY: changes the protection of our own mapping only (data R, image RX, as in
        // the guest).
        let rc = unsafe {
            libc::mprotect(base.cast(), DATA_SIZE, libc::PROT_READ)
                | libc::mprotect(
                    base.add(DATA_SIZE).cast(),
                    len - DATA_SIZE,
                    libc::PROT_READ | libc::PROT_EXEC,
                )
        };
        assert_eq!(rc, 0);
        Mapped { base, len }
    }

    fn func(&self, name: &str) -> *const u8 {
        let at = symbol(&elf(), name).unwrap_or_else(|| panic!("{name}"));
        // SAFETY: the symbol lies inside the image (image_is_a_loader_free_shared_object).
        unsafe { self.base.add(DATA_SIZE + at as usize) }
    }

    fn clock_gettime(&self, id: i32) -> Result<u64, i32> {
        // SAFETY: the symbol is the C function of that signature; the image is mapped RX.
        let f: ClockGettime = unsafe { std::mem::transmute(self.func("clock_gettime")) };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer.
        let rc = unsafe { f(id, &mut ts) };
        if rc != 0 {
            return Err(rc);
        }
        Ok(ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The host TSC rate, measured against CLOCK_MONOTONIC_RAW over 50 ms (kHz).
fn host_tsc_khz() -> u32 {
    let (n0, t0) = (host_ns(libc::CLOCK_MONOTONIC_RAW), host_tsc());
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (n1, t1) = (host_ns(libc::CLOCK_MONOTONIC_RAW), host_tsc());
    ((t1 - t0) as u128 * 1_000_000 / (n1 - n0) as u128) as u32
}

fn close(a: u64, b: u64, within_ns: u64) -> bool {
    a.abs_diff(b) <= within_ns
}

#[test]
fn compiled_code_reads_time_from_the_page() {
    let khz = host_tsc_khz();
    let data = VdsoData::new(&Clocks::sample(0, Some(khz))).unwrap();
    let m = Mapped::new(&data);
    for (id, host) in [
        (clock::REALTIME, libc::CLOCK_REALTIME),
        (clock::MONOTONIC, libc::CLOCK_MONOTONIC),
        (clock::MONOTONIC_RAW, libc::CLOCK_MONOTONIC_RAW),
        (clock::BOOTTIME, libc::CLOCK_BOOTTIME),
    ] {
        let v = m.clock_gettime(id as i32).unwrap();
        let h = host_ns(host);
        assert!(close(v, h, 200_000), "clock {id}: vdso {v} host {h}");
    }
    // Monotonic across calls.
    let a = m.clock_gettime(1).unwrap();
    let b = m.clock_gettime(1).unwrap();
    assert!(b >= a);
    // The page, not the host: a page claiming the epoch started 1 s ago answers so.
    let fake = VdsoData {
        base_ns: [NS_PER_SEC; CLOCKS],
        ..data
    };
    let fm = Mapped::new(&fake);
    let v = fm.clock_gettime(0).unwrap();
    assert!((NS_PER_SEC..60 * NS_PER_SEC).contains(&v), "{v}");

    // SAFETY: each symbol is the C function of that signature, mapped RX, and every
    // pointer passed (here and below) is a valid out-pointer or null.
    let gtod: Gettimeofday = unsafe { std::mem::transmute(m.func("__vdso_gettimeofday")) };
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: see above.
    assert_eq!(unsafe { gtod(&mut tv, std::ptr::null_mut()) }, 0);
    let us = tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    assert!(close(us * 1000, host_ns(libc::CLOCK_REALTIME), 200_000));
    // SAFETY: see above.
    let time: Time = unsafe { std::mem::transmute(m.func("__vdso_time")) };
    let mut t = 0i64;
    // SAFETY: see above.
    let s = unsafe { time(&mut t) };
    assert_eq!(s, t);
    assert!(close(
        s as u64,
        host_ns(libc::CLOCK_REALTIME) / NS_PER_SEC,
        1
    ));
    // SAFETY: see above.
    let getcpu: Getcpu = unsafe { std::mem::transmute(m.func("__vdso_getcpu")) };
    let (mut cpu, mut node) = (7u32, 7u32);
    // SAFETY: see above.
    let rc = unsafe { getcpu(&mut cpu, &mut node, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
    assert_eq!((cpu, node), (0, 0));
    // SAFETY: see above.
    let getres: ClockGettime = unsafe { std::mem::transmute(m.func("__vdso_clock_getres")) };
    let mut ts = libc::timespec {
        tv_sec: 9,
        tv_nsec: 9,
    };
    // SAFETY: see above.
    assert_eq!(unsafe { getres(1, &mut ts) }, 0);
    assert_eq!((ts.tv_sec, ts.tv_nsec), (0, data.res_ns as i64));
}

#[test]
fn compiled_code_falls_back_to_the_syscall() {
    // No TSC clock: everything goes to the kernel (here the host's; in a VM, kvmjs's).
    let m = Mapped::new(&VdsoData::new(&Clocks::sample(0, None)).unwrap());
    let v = m.clock_gettime(1).unwrap();
    assert!(close(v, host_ns(libc::CLOCK_MONOTONIC), 200_000));
    assert_eq!(m.clock_gettime(99), Err(-libc::EINVAL));
    assert_eq!(m.clock_gettime(-5), Err(-libc::EINVAL));
    // CPU-time clocks always trap, even with a valid page.
    let m = Mapped::new(&VdsoData::new(&Clocks::sample(0, Some(host_tsc_khz()))).unwrap());
    let cpu = m.clock_gettime(clock::PROCESS_CPUTIME_ID as i32).unwrap();
    assert!(cpu > 0 && cpu <= host_ns(libc::CLOCK_PROCESS_CPUTIME_ID));
    assert_eq!(m.clock_gettime(12), Err(-libc::EINVAL));
    // An unfilled page (all zeros) traps too.
    let m = Mapped::new(&VdsoData::default());
    assert!(close(
        m.clock_gettime(0).unwrap(),
        host_ns(libc::CLOCK_REALTIME),
        200_000
    ));
}
