//! Shared and private mappings of scratch files through the system calls: coherence
//! with the file, and the limits a hostile guest meets (crate::mm::shared).

use super::super::testing::Fixture;
use super::tests::{fixture, ANON_PRIVATE};
use crate::mm::shared;
use syscalls::Sysno;

const SHARED: u64 = 0x01;
const PRIVATE: u64 = 0x02;
const RW: u64 = 3;

/// A fixture with one guest page for paths and buffers, and scratch file `name`
/// opened with `flags` (O_CREAT added) holding `len` bytes of `fill`.
fn with_file(name: &str, flags: u64, len: usize, fill: u8) -> (Fixture, u64, u64) {
    let mut f = fixture();
    let page = f.call(Sysno::mmap, [0, 4096, 3, ANON_PRIVATE, u64::MAX, 0]) as u64;
    let mut p = name.as_bytes().to_vec();
    p.push(0);
    f.mem.write(page, &p).unwrap();
    let fd = f.call(Sysno::open, [page, 0o100 | 2, 0o644, 0, 0, 0]) as u64;
    assert!((fd as i64) >= 3, "open: {}", fd as i64);
    let mut at = 0;
    while at < len {
        let n = (len - at).min(2048);
        f.mem.write(page + 1024, &vec![fill; n]).unwrap();
        assert_eq!(
            f.call(
                Sysno::pwrite64,
                [fd, page + 1024, n as u64, at as u64, 0, 0]
            ),
            n as i64
        );
        at += n;
    }
    if flags != 2 {
        let again = f.call(Sysno::open, [page, flags, 0, 0, 0, 0]) as u64;
        assert_eq!(f.call(Sysno::close, [fd, 0, 0, 0, 0, 0]), 0);
        return (f, again, page);
    }
    (f, fd, page)
}

/// `n` bytes of the file at `off`, through pread.
fn pread(f: &mut Fixture, fd: u64, page: u64, off: u64, n: u64) -> Vec<u8> {
    let got = f.call(Sysno::pread64, [fd, page + 2048, n, off, 0, 0]);
    assert_eq!(got, n as i64, "pread");
    f.mem.slice(page + 2048, n).unwrap().to_vec()
}

fn pwrite(f: &mut Fixture, fd: u64, page: u64, off: u64, bytes: &[u8]) {
    f.mem.write(page + 3072, bytes).unwrap();
    let n = bytes.len() as u64;
    assert_eq!(
        f.call(Sysno::pwrite64, [fd, page + 3072, n, off, 0, 0]),
        n as i64
    );
}

#[test]
fn shared_scratch_mapping_is_coherent_with_the_file() {
    let (mut f, fd, page) = with_file("/tmp/db-shm", 2, 32768, 0);
    let m = f.call(Sysno::mmap, [0, 32768, RW, SHARED, fd, 0]) as u64;
    assert!((m as i64) > 0, "mmap: {}", m as i64);
    assert_eq!(f.proc.fds.shared_maps.len(), 1);
    // A store through the mapping is what pread sees.
    f.mem.write(m + 5000, b"stored").unwrap();
    assert_eq!(pread(&mut f, fd, page, 5000, 6), b"stored");
    // pwrite reaches the mapping, and keeps stores not yet seen by any call.
    f.mem.write(m + 100, b"mine").unwrap();
    pwrite(&mut f, fd, page, 30000, b"theirs");
    assert_eq!(f.mem.slice(m + 30000, 6).unwrap(), b"theirs");
    assert_eq!(f.mem.slice(m + 100, 4).unwrap(), b"mine");
    assert_eq!(pread(&mut f, fd, page, 100, 4), b"mine");
    // read(2) at the offset and a second description of the same file agree.
    let again = f.call(Sysno::open, [page, 2, 0, 0, 0, 0]) as u64;
    f.mem.write(m + 4096, b"via-read").unwrap();
    assert_eq!(f.call(Sysno::lseek, [again, 4096, 0, 0, 0, 0]), 4096);
    assert_eq!(f.call(Sysno::read, [again, page + 2048, 8, 0, 0, 0]), 8);
    assert_eq!(f.mem.slice(page + 2048, 8).unwrap(), b"via-read");
    // ftruncate shrinks the file: the mapping past the end reads zeros, and stores
    // there never reach the file (Linux would raise SIGBUS).
    assert_eq!(f.call(Sysno::ftruncate, [fd, 8192, 0, 0, 0, 0]), 0);
    assert_eq!(f.mem.slice(m + 30000, 6).unwrap(), &[0; 6]);
    f.mem.write(m + 9000, b"lost").unwrap();
    assert_eq!(f.call(Sysno::ftruncate, [fd, 16384, 0, 0, 0, 0]), 0);
    assert_eq!(pread(&mut f, fd, page, 9000, 4), &[0; 4]);
    assert_eq!(f.mem.slice(m + 9000, 4).unwrap(), &[0; 4]);
    // close does not unmap; munmap flushes.
    assert_eq!(f.call(Sysno::close, [fd, 0, 0, 0, 0, 0]), 0);
    f.mem.write(m + 200, b"after-close").unwrap();
    assert_eq!(f.call(Sysno::munmap, [m, 32768, 0, 0, 0, 0]), 0);
    assert!(f.proc.fds.shared_maps.is_empty());
    assert_eq!(pread(&mut f, again, page, 200, 11), b"after-close");
    // The file size never followed the mapping.
    assert_eq!(f.call(Sysno::lseek, [again, 0, 2, 0, 0, 0]), 16384);
}

#[test]
fn msync_partial_munmap_and_mremap_keep_windows_right() {
    let (mut f, fd, page) = with_file("/tmp/w", 2, 16384, b'.');
    let m = f.call(Sysno::mmap, [0, 16384, RW, SHARED, fd, 0]) as u64;
    f.mem.write(m, b"synced").unwrap();
    assert_eq!(f.call(Sysno::msync, [m, 4096, 4, 0, 0, 0]), 0);
    assert_eq!(pread(&mut f, fd, page, 0, 6), b"synced");
    assert_eq!(
        f.call(Sysno::msync, [m + 1, 4096, 4, 0, 0, 0]),
        -i64::from(libc::EINVAL)
    );
    // Unmapping the middle keeps both ends as windows at the right offsets.
    f.mem.write(m + 4096, b"middle").unwrap();
    assert_eq!(f.call(Sysno::munmap, [m + 4096, 4096, 0, 0, 0, 0]), 0);
    assert_eq!(f.proc.fds.shared_maps.len(), 2);
    assert_eq!(pread(&mut f, fd, page, 4096, 6), b"middle");
    pwrite(&mut f, fd, page, 12288, b"tail");
    assert_eq!(f.mem.slice(m + 12288, 4).unwrap(), b"tail");
    // The tail moves; it still maps file offset 8192 onwards.
    let moved = f.call(Sysno::mremap, [m + 8192, 8192, 8192, 3, 0x4000_0000, 0]) as u64;
    assert_eq!(moved, 0x4000_0000);
    assert_eq!(f.mem.slice(moved + 4096, 4).unwrap(), b"tail");
    f.mem.write(moved, b"moved").unwrap();
    assert_eq!(pread(&mut f, fd, page, 8192, 5), b"moved");
    // A PROT_NONE window has no frames until mprotect gives it some: then it shows
    // the file.
    let none = f.call(Sysno::mmap, [0, 4096, 0, SHARED, fd, 8192]) as u64;
    assert_eq!(f.call(Sysno::mprotect, [none, 4096, RW, 0, 0, 0]), 0);
    assert_eq!(f.mem.slice(none, 5).unwrap(), b"moved");
    assert_eq!(f.call(Sysno::munmap, [none, 4096, 0, 0, 0, 0]), 0);
    // MAP_FIXED anonymous over a window ends it (after a last flush).
    f.mem.write(m, b"last").unwrap();
    let fixed = f.call(Sysno::mmap, [m, 4096, RW, ANON_PRIVATE | 0x10, u64::MAX, 0]);
    assert_eq!(fixed as u64, m);
    assert_eq!(pread(&mut f, fd, page, 0, 4), b"last");
    f.mem.write(m, b"anon").unwrap();
    assert_eq!(pread(&mut f, fd, page, 0, 4), b"last");
    assert_eq!(f.proc.fds.shared_maps.len(), 1);
}

#[test]
fn private_scratch_mapping_is_a_copy() {
    let (mut f, fd, page) = with_file("/tmp/p", 2, 5000, b'x');
    let m = f.call(Sysno::mmap, [0, 8192, RW, PRIVATE, fd, 0]) as u64;
    assert!((m as i64) > 0);
    assert!(f.proc.fds.shared_maps.is_empty());
    assert_eq!(
        f.mem.slice(m + 4999, 2).unwrap(),
        b"x\0",
        "zero past the end"
    );
    f.mem.write(m, b"private").unwrap();
    assert_eq!(pread(&mut f, fd, page, 0, 7), b"xxxxxxx");
    pwrite(&mut f, fd, page, 10, b"later");
    assert_eq!(
        f.mem.slice(m + 10, 5).unwrap(),
        b"xxxxx",
        "a copy at mmap time"
    );
    assert_eq!(f.call(Sysno::munmap, [m, 8192, 0, 0, 0, 0]), 0);
    assert_eq!(pread(&mut f, fd, page, 0, 7), b"xxxxxxx");
}

#[test]
fn scratch_mappings_check_access_and_the_memory_budget() {
    let (mut f, ro, _) = with_file("/tmp/ro", 0, 4096, b'r');
    assert_eq!(
        f.call(Sysno::mmap, [0, 4096, RW, SHARED, ro, 0]),
        -i64::from(libc::EACCES),
        "writable shared needs O_RDWR"
    );
    assert!(f.call(Sysno::mmap, [0, 4096, 1, SHARED, ro, 0]) > 0);
    assert!(f.call(Sysno::mmap, [0, 4096, RW, PRIVATE, ro, 0]) > 0);
    let (mut f, wo, _) = with_file("/tmp/wo", 1, 4096, b'w');
    assert_eq!(
        f.call(Sysno::mmap, [0, 4096, 1, PRIVATE, wo, 0]),
        -i64::from(libc::EACCES)
    );
    // Mapped bytes count like anonymous memory (max_memory is 16 MiB here).
    let (mut f, fd, _) = with_file("/tmp/big", 2, 4096, b'b');
    let used = f.proc.memory_used();
    assert_eq!(
        f.call(Sysno::mmap, [0, 32 << 20, RW, SHARED, fd, 0]),
        -i64::from(libc::ENOMEM)
    );
    assert!(f.proc.fds.shared_maps.is_empty());
    let m = f.call(Sysno::mmap, [0, 8 << 20, RW, SHARED, fd, 0]);
    assert!(m > 0);
    assert_eq!(f.proc.memory_used(), used + (8 << 20));
    assert_eq!(
        f.call(Sysno::mmap, [0, 9 << 20, RW, SHARED, fd, 0]),
        -i64::from(libc::ENOMEM)
    );
}

#[test]
fn reset_restores_the_file_and_its_window_together() {
    let (mut f, fd, page) = with_file("/tmp/r", 2, 8192, 0);
    let m = f.call(Sysno::mmap, [0, 8192, RW, SHARED, fd, 0]) as u64;
    f.mem.write(m, b"snapshot").unwrap();
    f.mem.flush();
    let snap_mem = crate::memory::MemorySnapshot::capture(&f.mem).unwrap();
    let snap_proc = f.proc.clone();
    // A request stores, writes and truncates.
    f.mem.write(m + 8, b"-request").unwrap();
    pwrite(&mut f, fd, page, 4096, b"written");
    assert_eq!(pread(&mut f, fd, page, 0, 16), b"snapshot-request");
    assert_eq!(f.call(Sysno::ftruncate, [fd, 4096, 0, 0, 0, 0]), 0);
    // Reset: memory and process back.
    snap_mem.copy_into(&mut f.mem);
    f.proc = snap_proc.clone();
    assert_eq!(f.mem.slice(m, 16).unwrap(), b"snapshot\0\0\0\0\0\0\0\0");
    assert_eq!(f.call(Sysno::lseek, [fd, 0, 2, 0, 0, 0]), 8192);
    assert_eq!(pread(&mut f, fd, page, 0, 16), b"snapshot\0\0\0\0\0\0\0\0");
    assert_eq!(pread(&mut f, fd, page, 4096, 7), &[0; 7]);
    // The window is the restored inode's: the snapshot's copy is untouched.
    f.mem.write(m + 8, b"-again").unwrap();
    assert_eq!(pread(&mut f, fd, page, 8, 6), b"-again");
    let probe = snap_proc.clone();
    let d = probe.fds.file(fd).unwrap();
    let mut buf = [0u8; 6];
    assert_eq!(d.read(&mut buf, Some(8)), Ok(6));
    assert_eq!(&buf, &[0; 6]);
}

const NONE: u64 = 0;
const EXPECT_ENOMEM: i64 = -(libc::ENOMEM as i64);

#[test]
fn huge_or_inaccessible_windows_cost_what_they_hold() {
    let (mut f, fd, page) = with_file("/tmp/huge", 2, 4096, b'h');
    // 2^45 bytes of PROT_NONE window: refused (windows count against max_memory, 16 MiB
    // here), not accepted to be walked page by page at every write.
    assert_eq!(
        f.call(Sysno::mmap, [0, 1 << 45, NONE, SHARED, fd, 0]),
        EXPECT_ENOMEM
    );
    assert!(f.proc.fds.shared_maps.is_empty());
    // 8 MiB of PROT_NONE window over a one-page file: a write looks at no page (none has
    // a frame), where it looked at 2,048.
    let m = f.call(Sysno::mmap, [0, 8 << 20, NONE, SHARED, fd, 0]) as u64;
    assert!((m as i64) > 0);
    let before = shared::visited();
    pwrite(&mut f, fd, page, 0, b"x");
    assert_eq!(shared::visited() - before, 0);
    // More PROT_NONE windows, or growing this one, past the budget: ENOMEM.
    assert_eq!(
        f.call(Sysno::mmap, [0, 9 << 20, NONE, SHARED, fd, 0]),
        EXPECT_ENOMEM
    );
    assert_eq!(
        f.call(Sysno::mremap, [m, 8 << 20, 1 << 45, 1, 0, 0]),
        EXPECT_ENOMEM
    );
    assert_eq!(f.proc.fds.shared_maps.bytes(), 8 << 20);
    // A page made accessible has a frame: only it is looked at, and it shows the file.
    assert_eq!(f.call(Sysno::mprotect, [m, 4096, 1, 0, 0, 0]), 0);
    assert_eq!(f.mem.slice(m, 2).unwrap(), b"xh");
    let before = shared::visited();
    pwrite(&mut f, fd, page, 1, b"y");
    // Flush and refresh, one page each.
    assert_eq!(shared::visited() - before, 2);
    assert_eq!(f.mem.slice(m, 2).unwrap(), b"xy");
    // madvise and mprotect over the whole window stay as cheap.
    let before = shared::visited();
    assert_eq!(f.call(Sysno::madvise, [m, 8 << 20, 4, 0, 0, 0]), 0);
    assert!(shared::visited() - before <= 2);
    assert_eq!(f.mem.slice(m, 2).unwrap(), b"xy", "DONTNEED reads the file");
}

#[test]
fn splitting_windows_respects_the_window_cap() {
    let (mut f, fd, _) = with_file("/tmp/many", 2, 4096, 0);
    let three = f.call(Sysno::mmap, [0, 3 * 4096, NONE, SHARED, fd, 0]) as u64;
    assert!((three as i64) > 0);
    let mut last = 0;
    for _ in 1..shared::MAX_WINDOWS {
        last = f.call(Sysno::mmap, [0, 4096, NONE, SHARED, fd, 0]);
        assert!(last > 0, "mmap: {last}");
    }
    assert_eq!(f.proc.fds.shared_maps.len(), shared::MAX_WINDOWS);
    assert_eq!(
        f.call(Sysno::mmap, [0, 4096, NONE, SHARED, fd, 0]),
        EXPECT_ENOMEM
    );
    let middle = three + 4096;
    // munmap, MAP_FIXED and mremap of the middle page would each make one more window.
    assert_eq!(
        f.call(Sysno::munmap, [middle, 4096, 0, 0, 0, 0]),
        EXPECT_ENOMEM
    );
    assert_eq!(
        f.call(
            Sysno::mmap,
            [middle, 4096, RW, ANON_PRIVATE | 0x10, u64::MAX, 0]
        ),
        EXPECT_ENOMEM
    );
    assert_eq!(
        f.call(Sysno::mremap, [middle, 4096, 4096, 3, 0x4000_0000, 0]),
        EXPECT_ENOMEM
    );
    assert_eq!(
        f.call(Sysno::mremap, [middle, 4096, 8192, 1, 0, 0]),
        EXPECT_ENOMEM
    );
    // Nor may another mapping be moved onto it.
    let anon = f.call(Sysno::mmap, [0, 4096, RW, ANON_PRIVATE, u64::MAX, 0]);
    assert!(anon > 0);
    assert_eq!(
        f.call(Sysno::mremap, [anon as u64, 4096, 4096, 3, middle, 0]),
        EXPECT_ENOMEM
    );
    // Nothing changed: the middle page is still mapped (mprotect needs it mapped).
    assert_eq!(f.proc.fds.shared_maps.len(), shared::MAX_WINDOWS);
    assert_eq!(f.call(Sysno::mprotect, [middle, 4096, 1, 0, 0, 0]), 0);
    // With one window gone the cut is allowed; cutting ends never needs room.
    assert_eq!(f.call(Sysno::munmap, [last as u64, 4096, 0, 0, 0, 0]), 0);
    assert_eq!(f.call(Sysno::munmap, [middle, 4096, 0, 0, 0, 0]), 0);
    assert_eq!(f.proc.fds.shared_maps.len(), shared::MAX_WINDOWS);
    assert_eq!(f.call(Sysno::munmap, [three, 4096, 0, 0, 0, 0]), 0);
    assert_eq!(f.proc.fds.shared_maps.len(), shared::MAX_WINDOWS - 1);
}

#[test]
fn vectored_calls_flush_and_refresh_once() {
    let (mut f, fd, page) = with_file("/tmp/vec", 2, 4096, b'.');
    let m = f.call(Sysno::mmap, [0, 4096, RW, SHARED, fd, 0]) as u64;
    assert!((m as i64) > 0);
    // Three iovecs of one byte each at page + 3072.
    f.mem.write(page + 3072, b"abc").unwrap();
    let mut iov = Vec::new();
    for i in 0..3u64 {
        iov.extend_from_slice(&(page + 3072 + i).to_le_bytes());
        iov.extend_from_slice(&1u64.to_le_bytes());
    }
    f.mem.write(page + 512, &iov).unwrap();
    let before = shared::visited();
    assert_eq!(
        f.call(Sysno::pwritev, [fd, page + 512, 3, 10, 0, 0]),
        3,
        "pwritev"
    );
    // One flush and one refresh of the one page, not three of each.
    assert_eq!(shared::visited() - before, 2);
    assert_eq!(f.mem.slice(m + 10, 3).unwrap(), b"abc");
    let before = shared::visited();
    assert_eq!(f.call(Sysno::preadv, [fd, page + 512, 3, 0, 0, 0]), 3);
    assert_eq!(shared::visited() - before, 1, "a read only flushes");
}

#[test]
fn failed_fixed_remaps_leave_the_destination_window() {
    let (mut f, fd, page) = with_file("/tmp/dest", 2, 4096, b'd');
    let m = f.call(Sysno::mmap, [0, 4096, RW, SHARED, fd, 0]) as u64;
    let anon = f.call(Sysno::mmap, [0, 4096, RW, ANON_PRIVATE, u64::MAX, 0]) as u64;
    // Growing onto the window past max_memory: refused before the window is unmapped.
    let r = f.call(Sysno::mremap, [anon, 4096, 32 << 20, 3, m, 0]);
    assert_eq!(r, EXPECT_ENOMEM);
    assert_eq!(
        f.mem.slice(m, 1).unwrap(),
        b"d",
        "the window is still mapped"
    );
    pwrite(&mut f, fd, page, 0, b"W");
    assert_eq!(f.mem.slice(m, 1).unwrap(), b"W", "and still coherent");
    // A MAP_FIXED refused for the budget leaves it too.
    let r = f.call(
        Sysno::mmap,
        [m, 32 << 20, RW, ANON_PRIVATE | 0x10, u64::MAX, 0],
    );
    assert_eq!(r, EXPECT_ENOMEM);
    f.mem.write(m, b"S").unwrap();
    assert_eq!(pread(&mut f, fd, page, 0, 1), b"S");
    assert_eq!(f.proc.fds.shared_maps.len(), 1);
}

#[test]
fn read_only_windows_stay_read_only() {
    let (mut f, ro, page) = with_file("/tmp/ro", 0, 4096, b'r');
    let m = f.call(Sysno::mmap, [0, 4096, 1, SHARED, ro, 0]) as u64;
    assert!((m as i64) > 0);
    assert_eq!(
        f.call(Sysno::mprotect, [m, 4096, RW, 0, 0, 0]),
        -i64::from(libc::EACCES)
    );
    assert_eq!(f.call(Sysno::mprotect, [m, 4096, 0, 0, 0, 0]), 0);
    assert_eq!(f.call(Sysno::mprotect, [m, 4096, 1, 0, 0, 0]), 0);
    // A private copy of the same description may become writable.
    let p = f.call(Sysno::mmap, [0, 4096, 1, PRIVATE, ro, 0]) as u64;
    assert_eq!(f.call(Sysno::mprotect, [p, 4096, RW, 0, 0, 0]), 0);
    assert_eq!(pread(&mut f, ro, page, 0, 1), b"r");
}

#[test]
fn truncation_by_path_reaches_windows() {
    let (mut f, fd, page) = with_file("/tmp/cut", 2, 16384, b'c');
    let m = f.call(Sysno::mmap, [0, 16384, RW, SHARED, fd, 0]) as u64;
    f.mem.write(m + 100, b"kept").unwrap();
    // truncate(2): stores before the cut reach the file, the mapping past it reads zeros.
    assert_eq!(f.call(Sysno::truncate, [page, 8192, 0, 0, 0, 0]), 0);
    assert_eq!(pread(&mut f, fd, page, 100, 4), b"kept");
    assert_eq!(f.mem.slice(m + 8192, 4).unwrap(), &[0; 4]);
    assert_eq!(f.mem.slice(m + 8188, 4).unwrap(), b"cccc");
    // open(O_TRUNC): the whole mapping reads zeros.
    let again = f.call(Sysno::open, [page, 0o1000 | 2, 0, 0, 0, 0]);
    assert!(again > 0, "open: {again}");
    assert_eq!(f.mem.slice(m + 100, 4).unwrap(), &[0; 4]);
}

#[test]
fn file_offsets_never_overflow() {
    let (mut f, fd, _) = with_file("/tmp/far", 2, 4096, 0);
    let top = 0u64.wrapping_sub(0x2000);
    for kind in [SHARED, PRIVATE] {
        assert_eq!(
            f.call(Sysno::mmap, [0, 4096, 1, kind, fd, top]),
            -i64::from(libc::EOVERFLOW)
        );
    }
    // The largest offset Linux allows maps; growing past it is EINVAL.
    let last = shared::MAX_FILE_END + 1 - 0x3000;
    for kind in [SHARED, PRIVATE] {
        let m = f.call(Sysno::mmap, [0, 4096, 1, kind, fd, last]);
        assert!(m > 0, "mmap: {m}");
        assert_eq!(
            f.call(Sysno::mremap, [m as u64, 4096, 0x3000, 1, 0, 0]),
            -i64::from(libc::EINVAL)
        );
        let grown = f.call(Sysno::mremap, [m as u64, 4096, 0x2000, 1, 0, 0]);
        assert!(grown > 0, "mremap: {grown}");
    }
}
