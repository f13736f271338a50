//! The guest-facing view of guest memory: addresses are guest-virtual, translated page
//! by page through the guest's page tables with the guest's own permissions (a user page
//! for reads, a user writable page for writes), like Linux's copy_{from,to}_user. System
//! pages and unmapped pages give [`MemoryError::Fault`].
//!
//! Handlers borrow guest bytes with `slice`/`slice_mut`. When a range's frames are not
//! contiguous, `slice` returns a copy kept until the next `&mut self` call, and
//! `slice_mut` returns a copy that is written back at the next call of any method (or
//! [`GuestMemory::flush`], which `syscalls::dispatch` calls after every handler).

use super::{GuestMemory, MemoryError, Result};
use crate::layout::PAGE_SIZE;
use crate::mm::pagetable;

/// A `slice_mut` copy waiting to be written back.
#[derive(Debug)]
pub(super) struct Pending {
    pieces: Vec<(u64, usize)>,
    bytes: Box<[u8]>,
}

impl GuestMemory {
    /// Makes guest-facing addresses virtual, translated through the tables at `root`
    /// (`None`: physical, as in tests).
    pub fn set_root(&mut self, root: Option<u64>) {
        self.flush();
        self.root = root;
    }

    /// The page-table root guest-facing addresses go through.
    pub fn root(&self) -> Option<u64> {
        self.root
    }

    /// Writes back a pending `slice_mut` copy and frees `slice` copies.
    pub fn flush(&mut self) {
        self.write_back();
        self.bounce
            .get_mut()
            .map(Vec::clear)
            .unwrap_or_else(|e| e.into_inner().clear());
    }

    fn write_back(&self) {
        let pending = match self.pending.lock() {
            Ok(mut p) => p.take(),
            Err(e) => e.into_inner().take(),
        };
        let Some(p) = pending else { return };
        let mut at = 0;
        for (gpa, len) in p.pieces {
            // SAFETY: every piece was bounds-checked and marked dirty when the copy was
            // handed out; the `&mut` borrow of the copy has ended (this runs inside a later
            // call on the memory), and no `&[u8]` into these frames handed out since then
            // can exist: this runs before the call that would create one returns.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    p.bytes.as_ptr().add(at),
                    self.map.ptr.as_ptr().add(gpa as usize),
                    len,
                )
            };
            at += len;
        }
    }

    /// Physical pieces of virtual `[va, va+len)`, each within one page run.
    fn pieces(&self, va: u64, len: u64, write: bool) -> Result<Vec<(u64, usize)>> {
        let Some(root) = self.root else {
            let off = if write {
                self.check_writable_phys(va, len)?
            } else {
                self.check(va, len)?
            };
            return Ok(vec![(off as u64, len as usize)]);
        };
        // Writes say "not writable" (what a guest passing a read-only buffer needs to hear).
        let fault = || {
            if write {
                MemoryError::Protected { addr: va, len }
            } else {
                MemoryError::Fault { addr: va, len }
            }
        };
        let end = va.checked_add(len).ok_or_else(fault)?;
        let mut out: Vec<(u64, usize)> = Vec::new();
        let mut at = va;
        while at < end {
            let t = pagetable::walk(self, root, at).ok_or_else(fault)?;
            if !t.user || (write && !t.write) {
                return Err(fault());
            }
            let n = (PAGE_SIZE - at % PAGE_SIZE).min(end - at);
            let ok = if t.gpa >= self.size() {
                // A read-only file slot: never written through the host either.
                !write && self.phys_slice(t.gpa, n).is_ok()
            } else {
                self.check(t.gpa, n).is_ok()
            };
            if !ok {
                return Err(fault());
            }
            match out.last_mut() {
                Some((g, l)) if *g + *l as u64 == t.gpa => *l += n as usize,
                _ => out.push((t.gpa, n as usize)),
            }
            at += n;
        }
        if out.is_empty() {
            out.push((0, 0));
        }
        Ok(out)
    }

    /// Checks that the guest may write `[addr, addr+len)`; returns where it starts in
    /// guest-physical memory.
    pub fn check_writable(&self, addr: u64, len: u64) -> Result<usize> {
        self.write_back();
        Ok(self.pieces(addr, len, true)?[0].0 as usize)
    }

    /// Borrows guest bytes (a copy when their frames are not contiguous).
    pub fn slice(&self, addr: u64, len: u64) -> Result<&[u8]> {
        self.write_back();
        let pieces = self.pieces(addr, len, false)?;
        if let [(gpa, _)] = pieces[..] {
            return self.phys_slice(gpa, len);
        }
        let mut copy = Vec::with_capacity(len as usize);
        for (gpa, n) in pieces {
            copy.extend_from_slice(self.phys_slice(gpa, n as u64)?);
        }
        let copy = copy.into_boxed_slice();
        let ptr = copy.as_ptr();
        match self.bounce.lock() {
            Ok(mut b) => b.push(copy),
            Err(e) => e.into_inner().push(copy),
        }
        // SAFETY: the box's heap buffer stays put and alive until `flush` clears the
        // list, which takes `&mut self`, so not while this `&self` borrow lives.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len as usize) })
    }

    /// Mutably borrows guest-writable bytes, marking them dirty (a copy written back
    /// later when their frames are not contiguous).
    pub fn slice_mut(&mut self, addr: u64, len: u64) -> Result<&mut [u8]> {
        self.flush();
        let pieces = self.pieces(addr, len, true)?;
        for &(gpa, n) in &pieces {
            if n > 0 {
                self.host_dirty
                    .mark_range(gpa / PAGE_SIZE, (gpa + n as u64 - 1) / PAGE_SIZE);
            }
        }
        if let [(gpa, _)] = pieces[..] {
            return self.phys_slice_mut(gpa, len);
        }
        let mut copy = Vec::with_capacity(len as usize);
        for &(gpa, n) in &pieces {
            copy.extend_from_slice(self.phys_slice(gpa, n as u64)?);
        }
        let pending = self.pending.get_mut().unwrap_or_else(|e| e.into_inner());
        let p = pending.insert(Pending {
            pieces,
            bytes: copy.into_boxed_slice(),
        });
        Ok(&mut p.bytes)
    }

    /// Copies guest bytes out.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.write_back();
        let mut at = 0;
        for (gpa, n) in self.pieces(addr, buf.len() as u64, false)? {
            buf[at..at + n].copy_from_slice(self.phys_slice(gpa, n as u64)?);
            at += n;
        }
        Ok(())
    }

    /// Copies bytes into the guest.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        self.flush();
        let mut at = 0;
        for (gpa, n) in self.pieces(addr, data.len() as u64, true)? {
            self.phys_slice_mut(gpa, n as u64)?
                .copy_from_slice(&data[at..at + n]);
            at += n;
        }
        Ok(())
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&self, addr: u64) -> Result<u32> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian u16.
    pub fn read_u16(&self, addr: u64) -> Result<u16> {
        let mut b = [0; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&mut self, addr: u64, v: u64) -> Result<()> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstr(&self, addr: u64, max: u64) -> Result<&[u8]> {
        let not_found = MemoryError::OutOfBounds {
            addr,
            len: max,
            size: self.size(),
        };
        // Scan page by page: the string may end just before an unmapped page.
        let mut len = 0u64;
        loop {
            if len >= max {
                return Err(not_found);
            }
            let at = addr
                .checked_add(len)
                .ok_or(MemoryError::Fault { addr, len: max })?;
            let chunk = (PAGE_SIZE - at % PAGE_SIZE).min(max - len);
            if self.root.is_none() && at >= self.size() {
                return Err(not_found);
            }
            let bytes = self.slice(at, chunk)?;
            if let Some(n) = bytes.iter().position(|&b| b == 0) {
                let s = self.slice(addr, len + n as u64)?;
                return Ok(s);
            }
            len += chunk;
        }
    }

    /// Makes guest-writable `[addr, addr+len)` read as zero, marking it dirty.
    pub fn zero(&mut self, addr: u64, len: u64) -> Result<()> {
        self.flush();
        for (gpa, n) in self.pieces(addr, len, true)? {
            self.phys_zero(gpa, n as u64)?;
        }
        Ok(())
    }

    /// Copies `len` guest bytes from `src` to guest-writable `dst` (may overlap).
    pub fn copy_within(&mut self, src: u64, dst: u64, len: u64) -> Result<()> {
        self.flush();
        if self.root.is_none() {
            self.check(src, len)?;
            self.check_writable_phys(dst, len)?;
            return self.phys_copy_within(src, dst, len);
        }
        let mut buf = vec![0; len as usize];
        self.read(src, &mut buf)?;
        self.write(dst, &buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::frames::Frames;
    use crate::mm::pagetable::{PageTable, A, D, NX, P, RW, US};

    /// Memory with VA 0x10_0000.. mapped to scattered frames: 0x10_0000 -> 0x40_0000,
    /// 0x10_1000 -> 0x30_0000 (not contiguous), 0x10_2000 read-only, 0x10_3000 system.
    fn scattered() -> GuestMemory {
        let mut mem = GuestMemory::new(16 << 20, false).unwrap();
        let mut frames = Frames::new((0x1_0000, 0x2_0000), (0x20_0000, 16 << 20));
        let pt = PageTable::new(&mut mem, &mut frames).unwrap();
        let rw = P | RW | US | A | D | NX;
        pt.set(&mut mem, &mut frames, 0x10_0000, 0x40_0000 | rw)
            .unwrap();
        pt.set(&mut mem, &mut frames, 0x10_1000, 0x30_0000 | rw)
            .unwrap();
        pt.set(&mut mem, &mut frames, 0x10_2000, 0x50_0000 | P | US | A)
            .unwrap();
        pt.set(&mut mem, &mut frames, 0x10_3000, 0x51_0000 | P | RW | A)
            .unwrap();
        mem.set_root(Some(pt.root()));
        mem
    }

    #[test]
    fn virtual_access_spans_scattered_frames() {
        let mut mem = scattered();
        mem.write(0x10_0ffc, b"abcdefgh").unwrap();
        assert_eq!(mem.phys_slice(0x40_0ffc, 4).unwrap(), b"abcd");
        assert_eq!(mem.phys_slice(0x30_0000, 4).unwrap(), b"efgh");
        assert_eq!(mem.slice(0x10_0ffc, 8).unwrap(), b"abcdefgh");
        assert_eq!(
            mem.read_u64(0x10_0ffc).unwrap(),
            u64::from_le_bytes(*b"abcdefgh")
        );
        {
            let s = mem.slice_mut(0x10_0ffe, 4).unwrap();
            s.copy_from_slice(b"WXYZ");
        }
        mem.flush();
        assert_eq!(mem.phys_slice(0x30_0000, 4).unwrap(), b"YZgh");
        {
            let s = mem.slice_mut(0x10_0ff0, 0x20).unwrap();
            s[0x10] = b'!';
        }
        // Written back by the next call of any kind.
        assert_eq!(mem.slice(0x10_1000, 1).unwrap(), b"!");
        assert_eq!(mem.read_cstr(0x10_0ffe, 64).unwrap(), b"WX!Zgh");
        assert!(mem.read_cstr(0x10_0ffe, 6).is_err(), "no NUL within max");
    }

    #[test]
    fn permissions_are_the_guests() {
        let mut mem = scattered();
        assert!(mem.slice(0x10_2000, 8).is_ok(), "read-only page reads");
        assert!(matches!(
            mem.write(0x10_2000, b"x"),
            Err(MemoryError::Protected { .. })
        ));
        assert!(
            mem.slice_mut(0x10_1ff0, 0x20).is_err(),
            "write spilling into read-only"
        );
        assert!(mem.slice(0x10_3000, 1).is_err(), "system page");
        assert!(mem.slice(0x10_4000, 1).is_err(), "unmapped");
        assert!(mem.slice(u64::MAX - 3, 8).is_err(), "wraps");
        mem.phys_write(0x50_0ff0, &[b'a'; 16]).unwrap();
        assert_eq!(mem.read_cstr(0x10_2fe0, 0x100).unwrap(), b"", "NUL first");
        assert!(
            mem.read_cstr(0x10_2ff0, 0x100).is_err(),
            "no NUL before a system page"
        );
        assert!(mem.check_writable(0x10_0000, 0x2000).is_ok());
        assert!(mem.check_writable(0x10_0000, 0x2001).is_err());
        assert!(mem.zero(0x10_2000, 0x1000).is_err());
        mem.write(0x10_0000, b"move").unwrap();
        mem.copy_within(0x10_0000, 0x10_0ffe, 4).unwrap();
        assert_eq!(mem.slice(0x10_0ffe, 4).unwrap(), b"move");
        assert!(mem.copy_within(0x10_0000, 0x10_2000, 4).is_err());
    }
}
