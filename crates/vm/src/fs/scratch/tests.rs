//! Tests of the scratch filesystem (fs/scratch.rs).

use super::*;

const LIMIT: u64 = 4 * CHUNK as u64;

fn create() -> OpenHow {
    OpenHow {
        create: true,
        mode: 0o644,
        ..OpenHow::default()
    }
}

#[test]
fn create_write_read_rename_unlink() {
    let mut fs = ScratchFs::default();
    let f = fs.open("/tmp", "/tmp/a", create(), LIMIT).unwrap();
    assert_eq!(f.write(b"hello", 0, false), Ok((5, 5)));
    assert_eq!(f.write(b"!", 0, true), Ok((1, 6)));
    let mut b = [0u8; 16];
    assert_eq!(f.read(&mut b, 0, false), Ok(6));
    assert_eq!(&b[..6], b"hello!");
    assert_eq!(fs.used(), CHUNK as u64);
    let ex = OpenHow {
        exclusive: true,
        ..create()
    };
    assert_eq!(
        fs.open("/tmp", "/tmp/a", ex, LIMIT).err(),
        Some(ScratchError::Exists)
    );
    assert_eq!(
        fs.open("/tmp", "/tmp/no/x", create(), LIMIT).err(),
        Some(ScratchError::NotFound)
    );
    fs.mkdir("/tmp", "/tmp/d", 0o755).unwrap();
    fs.rename("/tmp", "/tmp/a", "/tmp", "/tmp/d/b").unwrap();
    assert_eq!(
        fs.stat("/tmp", "/tmp/a").err(),
        Some(ScratchError::NotFound)
    );
    assert_eq!(fs.stat("/tmp", "/tmp/d/b").unwrap().size, 6);
    let names: Vec<_> = fs
        .entries("/tmp", "/tmp/d")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [".", "..", "b"]);
    assert_eq!(
        fs.remove("/tmp", "/tmp/d", true).err(),
        Some(ScratchError::NotEmpty)
    );
    fs.rename("/tmp", "/tmp/d", "/tmp", "/tmp/e").unwrap();
    assert!(fs.stat("/tmp", "/tmp/e/b").is_ok());
    fs.remove("/tmp", "/tmp/e/b", false).unwrap();
    // The unlinked file is still open: its bytes count until it is closed.
    assert_eq!(fs.used(), CHUNK as u64);
    drop(f);
    assert_eq!(fs.used(), 0);
    fs.remove("/tmp", "/tmp/e", true).unwrap();
    assert_eq!(
        fs.remove("/tmp", "/tmp", true).err(),
        Some(ScratchError::Busy)
    );
}

#[test]
fn limit_sparse_and_truncate() {
    let mut fs = ScratchFs::default();
    let f = fs.open("/tmp", "/tmp/big", create(), LIMIT).unwrap();
    // A write far out only takes the chunk it touches; the hole reads as zeros.
    assert_eq!(
        f.write(b"x", 3 * CHUNK as u64, false),
        Ok((1, 3 * CHUNK as u64 + 1))
    );
    assert_eq!(fs.used(), CHUNK as u64);
    let mut b = [9u8; 4];
    assert_eq!(f.read(&mut b, 10, false), Ok(4));
    assert_eq!(b, [0; 4]);
    assert_eq!(f.write(b"y", LIMIT, false), Err(libc::EFBIG));
    let g = fs.open("/tmp", "/tmp/g", create(), LIMIT).unwrap();
    let big = vec![1u8; 3 * CHUNK];
    assert_eq!(g.write(&big, 0, false), Ok((3 * CHUNK, 3 * CHUNK as u64)));
    assert_eq!(g.write(b"z", 3 * CHUNK as u64, false), Err(libc::ENOSPC));
    g.truncate(10).unwrap();
    assert_eq!(fs.used(), 2 * CHUNK as u64);
    g.truncate(20).unwrap();
    assert_eq!(g.read(&mut b, 10, false), Ok(4));
    assert_eq!(b, [0; 4], "bytes past a shrink read as zeros after growing");
    assert_eq!(g.stat().unwrap().size, 20);
    // A huge sparse file costs nothing until written.
    let h = fs.open("/tmp", "/tmp/sparse", create(), u64::MAX).unwrap();
    h.truncate(1 << 50).unwrap();
    assert_eq!(h.write(b"z", (1 << 50) - 1, false), Ok((1, 1 << 50)));
    assert_eq!(h.stat().unwrap().size, 1 << 50);
    assert_eq!(h.stat().unwrap().blocks, CHUNK as u64 / 512);
}

#[test]
fn empty_writes_change_nothing() {
    let mut fs = ScratchFs::default();
    let f = fs.open("/tmp", "/tmp/a", create(), LIMIT).unwrap();
    for i in 0..8u64 {
        assert_eq!(
            f.write(b"", 5 * CHUNK as u64 + i * CHUNK as u64 + 1, false),
            Ok((0, 5 * CHUNK as u64 + i * CHUNK as u64 + 1))
        );
    }
    assert_eq!(f.write(b"", 7, true), Ok((0, 7)));
    assert_eq!(
        f.stat().unwrap().size,
        0,
        "an empty write does not grow the file"
    );
    assert_eq!(fs.used(), 0, "an empty write takes no space");
    assert_eq!(f.write(b"x", 0, false), Ok((1, 1)), "no space was leaked");
}

#[test]
fn names_are_limited_in_count_and_bytes() {
    let mut fs = ScratchFs::default();
    // Long names: the byte limit is reached long before the count limit.
    let long = "n".repeat(4000);
    let mut made = 0u64;
    loop {
        match fs.mkdir("/tmp", &format!("/tmp/{made}{long}"), 0o755) {
            Ok(()) => made += 1,
            Err(e) => {
                assert_eq!(e, ScratchError::NoSpace);
                break;
            }
        }
        assert!(made <= MAX_NAME_BYTES / 4000, "{made} long names fit");
    }
    assert!(fs.name_bytes <= MAX_NAME_BYTES);
    assert_eq!(
        fs.open("/tmp", &format!("/tmp/f{long}"), create(), LIMIT)
            .err(),
        Some(ScratchError::NoSpace)
    );
    // Removing frees the room again; a rename that lengthens the names past the limit is
    // refused (less than two long names' room is left).
    fs.remove("/tmp", &format!("/tmp/0{long}"), true).unwrap();
    fs.mkdir("/tmp", "/tmp/d", 0o755).unwrap();
    let bytes = fs.name_bytes;
    assert_eq!(
        fs.rename(
            "/tmp",
            "/tmp/d",
            "/tmp",
            &format!("/tmp/{long}{long}{long}")
        ),
        Err(ScratchError::NoSpace)
    );
    assert_eq!(fs.name_bytes, bytes);
    fs.rename("/tmp", "/tmp/d", "/tmp", "/tmp/e").unwrap();
    assert_eq!(fs.name_bytes, bytes, "same-length rename");
    // Short names: the count limit.
    let mut fs = ScratchFs::default();
    for i in 0..MAX_NODES {
        fs.open("/tmp", &format!("/tmp/{i}"), create(), LIMIT)
            .unwrap();
    }
    assert_eq!(
        fs.mkdir("/tmp", "/tmp/x", 0o755),
        Err(ScratchError::NoSpace)
    );
}

#[test]
fn deep_clone_is_copy_on_write() {
    let mut fs = ScratchFs::default();
    let f = fs.open("/tmp", "/tmp/a", create(), LIMIT).unwrap();
    f.write(b"snapshot", 0, false).unwrap();
    let mut map = CloneMap::default();
    let snap = fs.deep_clone(&mut map);
    f.write(b"REQUEST!", 0, false).unwrap();
    fs.open("/tmp", "/tmp/new", create(), LIMIT).unwrap();
    let mut snap2 = snap;
    let g = snap2
        .open("/tmp", "/tmp/a", OpenHow::default(), LIMIT)
        .unwrap();
    let mut b = [0u8; 8];
    g.read(&mut b, 0, false).unwrap();
    assert_eq!(&b, b"snapshot");
    assert_eq!(
        snap2.stat("/tmp", "/tmp/new").err(),
        Some(ScratchError::NotFound)
    );
    assert_eq!(snap2.used(), CHUNK as u64);
}
