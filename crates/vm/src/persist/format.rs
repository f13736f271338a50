//! The container: a fixed header, two postcard sections (identity, state), the page index,
//! the pages, the blobs, and a trailer with the length and a checksum of everything
//! before it.
//!
//! ```text
//! 0   magic "KVMJSNAP"        8   format version (u32 LE)   12  reserved (u32)
//! 16  identity length (u64)   24  state length (u64)        32  page count (u64)
//! 40  blob bytes (u64)        48  identity, state, page index (u32 LE each),
//!                                 zero padding to a 4096 multiple, pages, blobs
//! end-24  length of all before the trailer (u64), checksum (u64), "KVMJSEND"
//! ```
//!
//! The checksum finds truncation, torn writes and flipped bits; it is not a MAC (a
//! snapshot file is as trusted as the configuration that names it).

/// First bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"KVMJSNAP";
/// Last bytes of a complete file.
pub const END: &[u8; 8] = b"KVMJSEND";
/// The layout version this code reads and writes.
pub const VERSION: u32 = 1;
const HEADER: usize = 48;
const TRAILER: usize = 24;
const PAGE: usize = 4096;

/// Why a container could not be read (the caller adds the path).
#[derive(Debug, PartialEq, Eq)]
pub enum ContainerError {
    /// Not a snapshot file.
    Magic,
    /// Another layout version.
    Version(u32),
    /// Shorter than its header and trailer say (bytes there, bytes expected).
    Truncated(u64, u64),
    /// The checksum or the structure does not match.
    Corrupt(String),
}

/// A container's parts, borrowed from its bytes.
pub struct Sections<'a> {
    pub identity: &'a [u8],
    pub state: &'a [u8],
    /// (page index, 4096 bytes) for each stored page.
    pub pages: Vec<(usize, &'a [u8])>,
    pub blobs: &'a [u8],
}

/// A fast 64-bit checksum over `data`: four independent multiply-rotate lanes over 8-byte
/// words (several GB/s, so a restore stays within its millisecond budget where sha256
/// would not). Each step is a bijection of the lane for a fixed word and of the word for a
/// fixed lane, so a change confined to one word always changes the result.
pub fn checksum(data: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lanes = [K, K ^ 0x1111, K ^ 0x2222, K ^ 0x3333];
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            *lane = (*lane ^ w).wrapping_mul(K).rotate_left(29);
        }
    }
    let mut tail = [0u8; 32];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    for (i, lane) in lanes.iter_mut().enumerate() {
        let w = u64::from_le_bytes(tail[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        *lane = (*lane ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut h = data.len() as u64;
    for lane in lanes {
        h = (h ^ lane).wrapping_mul(K).rotate_left(31);
    }
    h
}

/// Lays out a container.
pub fn encode<'a>(
    identity: &[u8],
    state: &[u8],
    pages: impl ExactSizeIterator<Item = (usize, &'a [u8])>,
    blobs: &[u8],
) -> Vec<u8> {
    let n = pages.len();
    let index_end = HEADER + identity.len() + state.len() + 4 * n;
    let pages_at = index_end.next_multiple_of(PAGE);
    let total = pages_at + n * PAGE + blobs.len() + TRAILER;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [identity.len(), state.len(), n, blobs.len()] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    out.extend_from_slice(identity);
    out.extend_from_slice(state);
    let mut data = Vec::with_capacity(n * PAGE);
    for (page, bytes) in pages {
        out.extend_from_slice(&(page as u32).to_le_bytes());
        data.extend_from_slice(bytes);
    }
    out.resize(pages_at, 0);
    out.extend_from_slice(&data);
    out.extend_from_slice(blobs);
    let body = out.len() as u64;
    let sum = checksum(&out);
    out.extend_from_slice(&body.to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(END);
    out
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads only the magic and version (checked first, so an old file gets the version
/// message rather than a checksum one).
pub fn check_version(bytes: &[u8]) -> Result<(), ContainerError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(ContainerError::Magic);
    }
    let v = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if v != VERSION {
        return Err(ContainerError::Version(v));
    }
    Ok(())
}

/// Splits a container into its sections, checking version, length and checksum.
pub fn decode(bytes: &[u8]) -> Result<Sections<'_>, ContainerError> {
    check_version(bytes)?;
    if bytes.len() < HEADER + TRAILER {
        return Err(ContainerError::Truncated(
            bytes.len() as u64,
            (HEADER + TRAILER) as u64,
        ));
    }
    let (id_len, st_len, n, blob_len) = (
        u64_at(bytes, 16),
        u64_at(bytes, 24),
        u64_at(bytes, 32),
        u64_at(bytes, 40),
    );
    let corrupt = || ContainerError::Corrupt("section lengths overflow".into());
    let index_end = (HEADER as u64)
        .checked_add(id_len)
        .and_then(|v| v.checked_add(st_len))
        .and_then(|v| v.checked_add(n.checked_mul(4)?))
        .ok_or_else(corrupt)?;
    let pages_at = index_end.next_multiple_of(PAGE as u64);
    let expected = n
        .checked_mul(PAGE as u64)
        .and_then(|v| v.checked_add(pages_at))
        .and_then(|v| v.checked_add(blob_len))
        .and_then(|v| v.checked_add(TRAILER as u64))
        .ok_or_else(corrupt)?;
    if (bytes.len() as u64) < expected || &bytes[bytes.len() - 8..] != END {
        return Err(ContainerError::Truncated(bytes.len() as u64, expected));
    }
    if bytes.len() as u64 != expected {
        return Err(ContainerError::Corrupt(format!(
            "{} bytes where the header describes {expected}",
            bytes.len()
        )));
    }
    let body = bytes.len() - TRAILER;
    if u64_at(bytes, body) != body as u64 {
        return Err(ContainerError::Corrupt("trailer length mismatch".into()));
    }
    if u64_at(bytes, body + 8) != checksum(&bytes[..body]) {
        return Err(ContainerError::Corrupt("checksum mismatch".into()));
    }
    let (id_len, st_len, n) = (id_len as usize, st_len as usize, n as usize);
    let identity = &bytes[HEADER..HEADER + id_len];
    let state = &bytes[HEADER + id_len..HEADER + id_len + st_len];
    let index = &bytes[HEADER + id_len + st_len..index_end as usize];
    let data = &bytes[pages_at as usize..pages_at as usize + n * PAGE];
    let pages = index
        .chunks_exact(4)
        .zip(data.chunks_exact(PAGE))
        .map(|(i, p)| {
            (
                u32::from_le_bytes(i.try_into().expect("4 bytes")) as usize,
                p,
            )
        })
        .collect();
    let blobs_at = pages_at as usize + n * PAGE;
    Ok(Sections {
        identity,
        state,
        pages,
        blobs: &bytes[blobs_at..blobs_at + blob_len as usize],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let p1 = vec![1u8; PAGE];
        let p2 = vec![2u8; PAGE];
        let pages = [(3usize, &p1[..]), (9, &p2[..])];
        encode(b"ident", b"state!", pages.into_iter(), b"blob")
    }

    #[test]
    fn round_trip() {
        let b = sample();
        // Header, sections and index fit the first 4 KiB; the pages start page-aligned.
        assert_eq!(b.len(), PAGE + 2 * PAGE + 4 + TRAILER);
        assert_eq!(&b[PAGE..PAGE + 4], &[1, 1, 1, 1]);
        let s = decode(&b).unwrap();
        assert_eq!(
            (s.identity, s.state, s.blobs),
            (&b"ident"[..], &b"state!"[..], &b"blob"[..])
        );
        assert_eq!(s.pages.len(), 2);
        assert_eq!((s.pages[1].0, s.pages[1].1[0]), (9, 2));
    }

    #[test]
    fn every_truncation_is_refused() {
        let b = sample();
        for len in (0..b.len()).step_by(97).chain([b.len() - 1, b.len() - 8]) {
            let e = decode(&b[..len])
                .err()
                .unwrap_or_else(|| panic!("{len} bytes accepted"));
            assert!(
                matches!(e, ContainerError::Truncated(..) | ContainerError::Magic),
                "{len}: {e:?}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let b = sample();
        // Every byte outside the magic/version (those give their own errors), one bit.
        for at in (12..b.len()).step_by(13) {
            let mut c = b.clone();
            c[at] ^= 0x10;
            assert!(decode(&c).is_err(), "flip at {at} accepted");
        }
    }

    #[test]
    fn version_and_magic_come_first() {
        let mut b = sample();
        b[8] = 99;
        assert_eq!(decode(&b).err(), Some(ContainerError::Version(99)));
        b[0] = b'X';
        assert_eq!(decode(&b).err(), Some(ContainerError::Magic));
    }

    #[test]
    fn checksum_sees_single_word_changes() {
        let a = vec![0u8; 1000];
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(checksum(&a)));
        for i in (0..1000).step_by(7) {
            let mut c = a.clone();
            c[i] = 1;
            assert!(seen.insert(checksum(&c)), "collision at {i}");
        }
        assert_ne!(checksum(&a[..999]), checksum(&a));
    }
}
