//! /proc/self/maps text and memory figures of an address space.

use super::pagetable::{ADDR_MASK, P, SW_FRAME};
use super::vma::{Backing, Special, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::AddressSpace;
use crate::layout;
use crate::memory::GuestMemory;
use std::collections::HashMap;
use std::fmt::Write;

/// Memory figures of an address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapsStats {
    /// Bytes of address space covered by mappings (reserved, accessible or not).
    pub reserved_bytes: u64,
    /// Bytes of user memory with frames (what may become resident).
    pub committed_bytes: u64,
    /// Frames handed out, page tables included.
    pub frames_in_use: u64,
    /// Number of mappings.
    pub mappings: usize,
}

impl AddressSpace {
    /// The mappings in Linux's /proc/self/maps format.
    pub fn maps_text(&self) -> String {
        let mut out = String::new();
        for v in self.vmas.iter() {
            let perm = |bit, c| if v.prot & bit != 0 { c } else { '-' };
            let (offset, dev, inode, mut name) = match &v.backing {
                Backing::File {
                    path,
                    offset,
                    dev,
                    inode,
                } => (*offset, *dev, *inode, path.to_string()),
                Backing::Anon => (0, 0, 0, String::new()),
            };
            match v.special {
                Special::Heap => name = "[heap]".into(),
                Special::Stack => name = "[stack]".into(),
                Special::Vdso => name = "[vdso]".into(),
                Special::Vvar => name = "[vvar]".into(),
                Special::Request | Special::Fast | Special::None => {}
            }
            // Linux's dev is major:minor of the device in hex (new_encode_dev layout).
            let (major, minor) = (libc::major(dev), libc::minor(dev));
            let mut line = format!(
                "{:08x}-{:08x} {}{}{}{} {:08x} {:02x}:{:02x} {}",
                v.start,
                v.end,
                perm(PROT_READ, 'r'),
                perm(PROT_WRITE, 'w'),
                perm(PROT_EXEC, 'x'),
                if v.shared { 's' } else { 'p' },
                offset,
                major,
                minor,
                inode
            );
            if !name.is_empty() {
                // Linux pads the name to column 73.
                while line.len() < 72 {
                    line.push(' ');
                }
                line.push(' ');
                line.push_str(&name);
            }
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// For each guest-physical frame: the address it is mapped at (the frame itself when
    /// unmapped) and the region it belongs to (for dirty-page traces).
    pub fn describe_frames(&self, mem: &GuestMemory, frames: &[u64]) -> Vec<(u64, &'static str)> {
        let mut owner: HashMap<u64, u64> = HashMap::new();
        if let Some(pt) = self.pt {
            pt.for_each_leaf(mem, 0, super::USER_END, &mut |va, e| {
                if e & (P | SW_FRAME) != 0 {
                    owner.insert(e & ADDR_MASK, va);
                }
            });
        }
        frames
            .iter()
            .map(|&f| match owner.get(&f) {
                Some(&va) if va < layout::IMAGE_MIN => (va, "system"),
                Some(&va) => {
                    let region = match self.vmas.find(va) {
                        Some(v) => match (v.special, &v.backing) {
                            (Special::Heap, _) => "brk heap",
                            (Special::Stack, _) => "stack",
                            (Special::Request, _) => "request area",
                            (Special::Fast, _) => "fast-path page",
                            (Special::Vdso | Special::Vvar, _) => "vdso",
                            (Special::None, Backing::File { .. }) => "image",
                            (Special::None, Backing::Anon) => "mmap",
                        },
                        None => "unmapped",
                    };
                    (va, region)
                }
                None if f < layout::PAGE_TABLES => (f, "system"),
                None => (f, "page table or free"),
            })
            .collect()
    }

    /// Reserved and committed bytes, frames in use.
    pub fn stats(&self) -> MapsStats {
        MapsStats {
            reserved_bytes: self.vmas.iter().map(|v| v.end - v.start).sum(),
            committed_bytes: self.committed_bytes(),
            frames_in_use: self.frames_in_use(),
            mappings: self.vmas.len(),
        }
    }
}
