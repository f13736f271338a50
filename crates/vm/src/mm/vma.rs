//! Virtual memory areas: the guest's mappings as Linux tracks them (start, end,
//! protection, what backs them, a name for /proc/self/maps). Plain data.

use std::collections::BTreeMap;
use std::sync::Arc;

/// PROT_READ.
pub const PROT_READ: u32 = 1;
/// PROT_WRITE.
pub const PROT_WRITE: u32 = 2;
/// PROT_EXEC.
pub const PROT_EXEC: u32 = 4;

/// What backs a mapping.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Backing {
    /// Anonymous memory (zero-filled).
    Anon,
    /// A copy of a file's bytes in frames: private, or a shared window the syscall layer
    /// keeps coherent with a scratch file ([`super::shared`]).
    File {
        /// Path as the guest named it (for /proc/self/maps).
        path: Arc<str>,
        /// File offset of the mapping's start.
        offset: u64,
        /// Device and inode numbers of the host file.
        dev: u64,
        /// Inode number.
        inode: u64,
    },
}

/// Special names Linux shows in /proc/self/maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Special {
    /// Not special.
    None,
    /// The brk heap.
    Heap,
    /// The main stack.
    Stack,
    /// The vDSO image.
    Vdso,
    /// The vDSO data page.
    Vvar,
    /// The host's request buffer.
    Request,
    /// The fast path's page and buffers (crate::fastpath).
    Fast,
}

/// One mapping.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vma {
    /// Start (page-aligned).
    pub start: u64,
    /// End (exclusive, page-aligned).
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// MAP_SHARED was asked for (shown as `s` instead of `p`).
    pub shared: bool,
    /// What backs it.
    pub backing: Backing,
    /// Its special name, if any.
    pub special: Special,
}

impl Vma {
    /// An anonymous private mapping.
    pub fn anon(start: u64, end: u64, prot: u32) -> Self {
        Vma {
            start,
            end,
            prot,
            shared: false,
            backing: Backing::Anon,
            special: Special::None,
        }
    }

    /// The part of `self` in `[start, end)` (which must overlap it).
    fn clip(&self, start: u64, end: u64) -> Vma {
        let (s, e) = (self.start.max(start), self.end.min(end));
        let backing = match &self.backing {
            Backing::File {
                path,
                offset,
                dev,
                inode,
            } => Backing::File {
                path: path.clone(),
                offset: offset + (s - self.start),
                dev: *dev,
                inode: *inode,
            },
            Backing::Anon => Backing::Anon,
        };
        Vma {
            start: s,
            end: e,
            backing,
            ..self.clone()
        }
    }

    /// Whether `next` continues `self` seamlessly (Linux merges such neighbours).
    fn continues_into(&self, next: &Vma) -> bool {
        if self.end != next.start
            || self.prot != next.prot
            || self.shared != next.shared
            || self.special != next.special
        {
            return false;
        }
        match (&self.backing, &next.backing) {
            (Backing::Anon, Backing::Anon) => true,
            (
                Backing::File {
                    path: a, offset: o, ..
                },
                Backing::File {
                    path: b, offset: p, ..
                },
            ) => a == b && o + (self.end - self.start) == *p,
            _ => false,
        }
    }
}

/// The mappings, keyed by start; never overlapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmaTree {
    map: BTreeMap<u64, Vma>,
}

impl VmaTree {
    /// The mapping containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.map
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.end > addr)
    }

    /// Mappings overlapping `[start, end)`, in order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Vma> {
        let first = self
            .map
            .range(..=start)
            .next_back()
            .filter(|(_, v)| v.end > start)
            .map_or(start, |(&s, _)| s);
        self.map.range(first..end).map(|(_, v)| v)
    }

    /// Whether nothing is mapped in `[start, end)`.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).next().is_none()
    }

    /// Whether `[start, end)` is mapped without holes.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at {
                return false;
            }
            at = v.end;
        }
        at >= end
    }

    /// Inserts `vma` (its range must be free) and merges it with equal neighbours.
    pub fn insert(&mut self, vma: Vma) {
        debug_assert!(self.is_free(vma.start, vma.end));
        let mut vma = vma;
        if let Some((&ps, prev)) = self.map.range(..vma.start).next_back() {
            if prev.continues_into(&vma) {
                vma.start = ps;
                vma.backing = prev.backing.clone();
                self.map.remove(&ps);
            }
        }
        if let Some(next) = self.map.get(&vma.end) {
            if vma.continues_into(next) {
                vma.end = next.end;
                let k = next.start;
                self.map.remove(&k);
            }
        }
        self.map.insert(vma.start, vma);
    }

    /// Removes `[start, end)`, splitting mappings at its edges; returns the removed parts.
    pub fn remove(&mut self, start: u64, end: u64) -> Vec<Vma> {
        let hits: Vec<Vma> = self.overlapping(start, end).cloned().collect();
        for v in &hits {
            self.map.remove(&v.start);
            if v.start < start {
                self.map.insert(v.start, v.clip(v.start, start));
            }
            if v.end > end {
                self.map.insert(end, v.clip(end, v.end));
            }
        }
        hits.iter().map(|v| v.clip(start, end)).collect()
    }

    /// Finds the highest free gap of `len` bytes inside `[lo, hi)` whose start is a
    /// multiple of `align` (top-down, as Linux places mappings).
    pub fn find_gap_top_down(&self, len: u64, align: u64, lo: u64, hi: u64) -> Option<u64> {
        let mut top = hi;
        let fits = |top: u64| -> Option<u64> {
            let s = top.checked_sub(len)? & !(align - 1);
            (s >= lo).then_some(s)
        };
        for (_, v) in self.map.range(..hi).rev() {
            if v.end <= top {
                if let Some(s) = fits(top) {
                    if s >= v.end {
                        return Some(s);
                    }
                }
            }
            top = top.min(v.start);
            if top <= lo {
                return None;
            }
        }
        fits(top)
    }

    /// All mappings in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.map.values()
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u32 = PROT_READ | PROT_WRITE;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut t = VmaTree::default();
        t.insert(Vma::anon(0x1000, 0x3000, RW));
        t.insert(Vma::anon(0x3000, 0x5000, RW));
        assert_eq!(t.len(), 1, "equal neighbours merge");
        t.insert(Vma::anon(0x5000, 0x6000, PROT_READ));
        assert_eq!(t.len(), 2);
        let gone = t.remove(0x2000, 0x5800);
        assert_eq!(gone.len(), 2);
        assert_eq!((gone[0].start, gone[0].end), (0x2000, 0x5000));
        assert_eq!((gone[1].start, gone[1].end), (0x5000, 0x5800));
        let left: Vec<_> = t.iter().map(|v| (v.start, v.end)).collect();
        assert_eq!(left, vec![(0x1000, 0x2000), (0x5800, 0x6000)]);
        assert!(t.is_free(0x2000, 0x5800));
        assert!(!t.is_free(0x1fff, 0x2001));
        assert!(t.covers(0x1000, 0x2000) && !t.covers(0x1000, 0x6000));
        assert_eq!(t.find(0x5900).unwrap().prot, PROT_READ);
        assert!(t.find(0x3000).is_none());
    }

    #[test]
    fn file_offsets_follow_splits() {
        let mut t = VmaTree::default();
        let path: Arc<str> = Arc::from("/lib/x.so");
        t.insert(Vma {
            backing: Backing::File {
                path: path.clone(),
                offset: 0x10000,
                dev: 1,
                inode: 2,
            },
            ..Vma::anon(0x10_0000, 0x10_4000, PROT_READ)
        });
        t.remove(0x10_1000, 0x10_2000);
        match &t.find(0x10_3000).unwrap().backing {
            Backing::File { offset, .. } => assert_eq!(*offset, 0x12000),
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn gaps_are_found_top_down_and_aligned() {
        let mut t = VmaTree::default();
        t.insert(Vma::anon(0x9000, 0x10000, RW));
        assert_eq!(
            t.find_gap_top_down(0x1000, 0x1000, 0x1000, 0x10000),
            Some(0x8000)
        );
        assert_eq!(
            t.find_gap_top_down(0x2000, 0x4000, 0x1000, 0x10000),
            Some(0x4000)
        );
        assert_eq!(
            t.find_gap_top_down(0x8000, 0x1000, 0x1000, 0x10000),
            Some(0x1000)
        );
        assert_eq!(t.find_gap_top_down(0x9000, 0x1000, 0x1000, 0x10000), None);
        assert_eq!(
            t.find_gap_top_down(0x1000, 0x1000, 0x1000, 0x20000),
            Some(0x1f000)
        );
        assert_eq!(t.find_gap_top_down(u64::MAX, 0x1000, 0, 0x20000), None);
    }
}
