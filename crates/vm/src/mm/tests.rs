//! AddressSpace semantics against Linux's rules.

use super::*;

const RW: u64 = 3;
const ANON: u64 = flags::PRIVATE | flags::ANONYMOUS;
const BIG: u64 = u64::MAX;

fn space() -> (GuestMemory, AddressSpace) {
    let mut mem = GuestMemory::new(64 << 20, false).unwrap();
    let a = AddressSpace::new(&mut mem).unwrap();
    mem.set_root(Some(a.pt.unwrap().root()));
    (mem, a)
}

#[test]
fn anonymous_mmap_places_top_down_and_honours_hints() {
    let (mut mem, mut a) = space();
    let x = a.mmap(&mut mem, 0, 8192, RW, ANON, None, BIG).unwrap();
    assert_eq!(x, MMAP_TOP - 8192);
    let y = a.mmap(&mut mem, 0, 4096, RW, ANON, None, BIG).unwrap();
    assert_eq!(y, x - 4096);
    let hint = 0x3f00_0000_0000;
    assert_eq!(a.mmap(&mut mem, hint, 4096, RW, ANON, None, BIG), Ok(hint));
    // A taken hint is only a hint.
    let z = a.mmap(&mut mem, hint, 4096, RW, ANON, None, BIG).unwrap();
    assert_ne!(z, hint);
    mem.write(x, b"hello").unwrap();
    assert_eq!(mem.slice(x, 5).unwrap(), b"hello");
    assert_eq!(a.committed_bytes(), 4 * 4096 + 4096);
}

#[test]
fn reservations_cost_no_frames_and_fault() {
    let (mut mem, mut a) = space();
    let before = a.frames_in_use();
    let r = a.mmap(&mut mem, 0, 48 << 30, 0, ANON, None, 0).unwrap();
    assert_eq!(a.frames_in_use(), before);
    assert!(mem.slice(r, 1).is_err(), "PROT_NONE faults");
    // Trim like V8: unmap the head, commit a piece.
    let aligned = align_up(r, 16 << 30);
    a.munmap(&mut mem, r, aligned - r).unwrap();
    a.mprotect(&mut mem, aligned, 1 << 20, RW, BIG).unwrap();
    mem.write(aligned + 4096, b"v8").unwrap();
    assert_eq!(a.committed_bytes(), 1 << 20);
    // PROT_NONE keeps the data; making it accessible again shows it.
    a.mprotect(&mut mem, aligned, 1 << 20, 0, BIG).unwrap();
    assert!(mem.slice(aligned + 4096, 2).is_err());
    assert!(!mem.take_retired_for_test().is_empty(), "downgrade noted");
    a.mprotect(&mut mem, aligned, 1 << 20, 1, BIG).unwrap();
    assert_eq!(mem.slice(aligned + 4096, 2).unwrap(), b"v8");
    assert!(mem.write(aligned, b"x").is_err(), "read-only");
    // Holes make mprotect fail with ENOMEM.
    assert_eq!(
        a.mprotect(&mut mem, r, 4096, RW, BIG),
        Err(MmError::NoMemory)
    );
}

#[test]
fn fixed_replaces_noreplace_refuses() {
    let (mut mem, mut a) = space();
    let x = a.mmap(&mut mem, 0, 3 * 4096, RW, ANON, None, BIG).unwrap();
    mem.write(x + 4096, b"old").unwrap();
    let f = flags::FIXED_NOREPLACE | ANON;
    assert_eq!(
        a.mmap(&mut mem, x + 4096, 4096, RW, f, None, BIG),
        Err(MmError::Exists)
    );
    let f = flags::FIXED | ANON;
    assert_eq!(
        a.mmap(&mut mem, x + 4096, 4096, RW, f, None, BIG),
        Ok(x + 4096)
    );
    assert_eq!(
        mem.slice(x + 4096, 3).unwrap(),
        &[0; 3],
        "replaced page is fresh"
    );
    assert_eq!(a.vmas().len(), 1, "same flags merge back");
    assert_eq!(a.committed_bytes(), 3 * 4096);
    assert_eq!(
        a.mmap(&mut mem, 0x1000, 4096, RW, f, None, BIG),
        Err(MmError::Perm)
    );
    assert_eq!(
        a.mmap(&mut mem, x + 1, 4096, RW, f, None, BIG),
        Err(MmError::Invalid)
    );
}

#[test]
fn munmap_frees_and_reuse_reads_zero() {
    let (mut mem, mut a) = space();
    let x = a.mmap(&mut mem, 0, 8192, RW, ANON, None, BIG).unwrap();
    mem.write(x, b"secret").unwrap();
    a.munmap(&mut mem, x, 8192).unwrap();
    assert!(mem.slice(x, 1).is_err());
    assert_eq!(a.committed_bytes(), 0);
    let y = a.mmap(&mut mem, 0, 8192, RW, ANON, None, BIG).unwrap();
    assert_eq!(
        mem.slice(y, 8192)
            .unwrap()
            .iter()
            .filter(|&&b| b != 0)
            .count(),
        0
    );
    // Linux allows unmapping nothing.
    assert_eq!(a.munmap(&mut mem, 0x1000_0000, 4096), Ok(()));
    assert_eq!(a.munmap(&mut mem, 0x1000_0001, 4096), Err(MmError::Invalid));
}

#[test]
fn limits_and_garbage() {
    let (mut mem, mut a) = space();
    assert_eq!(
        a.mmap(&mut mem, 0, 8192, RW, ANON, None, 4096),
        Err(MmError::NoMemory)
    );
    assert_eq!(
        a.mmap(&mut mem, 0, 1 << 40, RW, ANON, None, BIG),
        Err(MmError::NoMemory)
    );
    for (addr, len, prot, fl) in [
        (0, 0, RW, ANON),
        (0, u64::MAX, RW, ANON),
        (u64::MAX, 4096, RW, ANON | flags::FIXED),
        (0, 4096, 0xff, ANON),
        (0, 4096, RW, flags::ANONYMOUS),
    ] {
        assert!(a.mmap(&mut mem, addr, len, prot, fl, None, BIG).is_err());
    }
    assert!(a.munmap(&mut mem, !0xfff, 8192).is_err());
    assert!(a.mprotect(&mut mem, 0x20_0000, u64::MAX, 1, BIG).is_err());
    assert!(a.madvise(&mut mem, 0x20_0000, 4096, 999).is_err());
    assert!(a
        .mremap(&mut mem, 0x20_0000, 4096, 8192, 1, 0, BIG)
        .is_err());
    assert!(a
        .mremap(&mut mem, !0xfff, u64::MAX, u64::MAX, 3, 0, BIG)
        .is_err());
    assert_eq!(a.committed_bytes(), 0);
}

#[test]
fn mremap_grows_in_place_or_moves_with_data() {
    let (mut mem, mut a) = space();
    // Top-down: `x` ends where `_block` starts, so it cannot grow in place.
    let _block = a.mmap(&mut mem, 0, 4096, RW, ANON, None, BIG).unwrap();
    let x = a.mmap(&mut mem, 0, 4096, RW, ANON, None, BIG).unwrap();
    mem.write(x, b"keep").unwrap();
    let hint = 0x4000_0000;
    let y = a.mmap(&mut mem, hint, 4096, RW, ANON, None, BIG).unwrap();
    assert_eq!(
        a.mremap(&mut mem, y, 4096, 16384, 0, 0, BIG),
        Ok(y),
        "room after it"
    );
    mem.write(y + 12288, b"grown").unwrap();
    let z = a
        .mremap(&mut mem, x, 4096, 16384, flags::MREMAP_MAYMOVE, 0, BIG)
        .unwrap();
    assert_ne!(z, x);
    assert_eq!(mem.slice(z, 4).unwrap(), b"keep");
    assert!(mem.slice(x, 1).is_err(), "old range gone");
    assert_eq!(a.mremap(&mut mem, z, 16384, 4096, 0, 0, BIG), Ok(z));
    assert!(mem.slice(z + 4096, 1).is_err(), "shrunk");
    assert_eq!(a.committed_bytes(), 4096 + 4096 + 16384);
}

#[test]
fn madvise_dontneed_zeroes_and_brk() {
    let (mut mem, mut a) = space();
    let x = a.mmap(&mut mem, 0, 8192, RW, ANON, None, BIG).unwrap();
    mem.write(x, b"gone").unwrap();
    a.madvise(&mut mem, x, 8192, 4).unwrap();
    assert_eq!(mem.slice(x, 4).unwrap(), &[0; 4]);
    assert_eq!(a.madvise(&mut mem, x, 8192, 0), Ok(()));
    a.set_brk_start(0x60_0000);
    assert_eq!(a.set_brk(&mut mem, 0x60_1234, BIG), 0x60_1234);
    mem.write(0x60_1000, b"heap").unwrap();
    assert_eq!(
        a.set_brk(&mut mem, 0x70_0000, 4096),
        0x60_1234,
        "over budget"
    );
    assert_eq!(a.set_brk(&mut mem, 0x60_0000, BIG), 0x60_0000);
    assert!(mem.slice(0x60_1000, 1).is_err());
    assert_eq!(a.set_brk(&mut mem, 0x10, BIG), 0x60_0000);
}

#[test]
fn maps_text_is_linux_format() {
    let (mut mem, mut a) = space();
    a.set_brk_start(0x60_0000);
    a.set_brk(&mut mem, 0x60_2000, BIG);
    let x = a
        .mmap(&mut mem, 0x7000_0000, 4096, 5, ANON, None, BIG)
        .unwrap();
    let text = a.maps_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("00600000-00602000 rw-p 00000000 00:00 0"));
    assert!(lines[0].ends_with(" [heap]") && lines[0].len() == 73 + 6);
    assert_eq!(
        lines[1],
        format!("{:08x}-{:08x} r-xp 00000000 00:00 0", x, x + 4096)
    );
    let st = a.stats();
    assert_eq!(st.reserved_bytes, 0x3000);
    assert_eq!(st.committed_bytes, 0x3000);
}

#[test]
fn file_mappings_copy_the_file_and_never_write_it() {
    let (mut mem, mut a) = space();
    let path = std::env::temp_dir().join(format!("kvmjs-mm-{}", std::process::id()));
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let src = |off| {
        Some((
            FileSource {
                file: FileBytes::Host(&file),
                path: Arc::from("/data/f"),
            },
            off,
        ))
    };
    let x = a
        .mmap(&mut mem, 0, 8192, 1, flags::PRIVATE, src(4096), BIG)
        .unwrap();
    assert!(mem.slice(x, 5904).unwrap() == &bytes[4096..10_000]);
    assert_eq!(
        mem.slice(x + 5904, 100).unwrap(),
        &[0; 100][..],
        "past the end"
    );
    assert!(mem.write(x, b"no").is_err(), "read-only");
    let w = a
        .mmap(&mut mem, 0, 4096, RW, flags::PRIVATE, src(0), BIG)
        .unwrap();
    mem.write(w, b"private").unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
    assert_eq!(
        a.mmap(&mut mem, 0, 4096, RW, flags::SHARED, src(0), BIG),
        Err(MmError::NoDevice)
    );
    assert!(a
        .mmap(&mut mem, 0, 4096, 1, flags::SHARED, src(0), BIG)
        .is_ok());
    assert_eq!(
        a.mmap(&mut mem, 0, 4096, 1, flags::PRIVATE, src(100), BIG),
        Err(MmError::Invalid)
    );
    let maps = a.maps_text();
    assert!(
        maps.contains(&format!("{x:08x}-{:08x} r--p 00001000", x + 8192)),
        "{maps}"
    );
    assert!(maps.contains("/data/f"));
    std::fs::remove_file(&path).ok();
}

#[test]
fn large_read_only_file_mappings_use_a_slot_and_copy_on_mprotect() {
    let (mut mem, mut a) = space();
    mem.set_slots(crate::memory::FileSlots::new(mem.size(), 1 << 48, 100));
    let path = std::env::temp_dir().join(format!("kvmjs-mm-slot-{}", std::process::id()));
    let bytes: Vec<u8> = (0..(SLOT_MIN + 5000) as u32)
        .map(|i| (i % 253) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let src = || {
        Some((
            FileSource {
                file: FileBytes::Host(&file),
                path: Arc::from("/big"),
            },
            0,
        ))
    };
    let len = SLOT_MIN + 8192;
    let x = a
        .mmap(&mut mem, 0, len, 5, flags::PRIVATE, src(), 4096)
        .unwrap();
    assert_eq!(a.committed_bytes(), 0, "the file's pages use no frames");
    assert!(mem.slice(x, bytes.len() as u64).unwrap() == &bytes[..]);
    assert!(mem.write(x, b"no").is_err());
    assert_eq!(mem.slice(x + SLOT_MIN + 5000, 8).unwrap(), &[0; 8]);
    // Writable: the page is copied into a frame; the file and the slot stay as they were.
    a.mprotect(&mut mem, x, 4096, RW, BIG).unwrap();
    assert!(
        !mem.take_retired_for_test().is_empty(),
        "the slot page was retargeted"
    );
    mem.write(x, b"mine").unwrap();
    assert_eq!(mem.slice(x, 4).unwrap(), b"mine");
    assert_eq!(mem.slice(x + 4, 4).unwrap(), &bytes[4..8]);
    let y = a
        .mmap(&mut mem, 0, len, 1, flags::PRIVATE, src(), 0)
        .unwrap();
    assert_eq!(
        mem.slice(y, 4).unwrap(),
        &bytes[..4],
        "same slot, unchanged"
    );
    a.munmap(&mut mem, x, len).unwrap();
    a.munmap(&mut mem, y, len).unwrap();
    assert_eq!(a.committed_bytes(), 0, "the copied page is freed");
    std::fs::remove_file(&path).ok();
}
