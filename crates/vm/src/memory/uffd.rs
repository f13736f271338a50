//! Dropping KVM's mappings of exactly the frames asked for, through userfaultfd
//! write-protection.
//!
//! KVM forgets a host page when the kernel's MMU notifier names its range. The portable
//! way to raise the notifier is a protection change there and back (mprotect), but
//! mprotect of part of a mapping splits the VMA, and the kernel's VMA split also
//! invalidates the whole 2 MiB-aligned range around the split point (huge-pmd split
//! check): KVM then zaps up to 511 unrelated frames, live V8 heap pages included, and the
//! guest re-faults each of them (~5.6 µs per fault under PVM). Every VM of the process
//! shares the address space, so the zap also reaches another VM's pool or a file slot
//! that happens to lie in that 2 MiB. Write-protecting a range with UFFDIO_WRITEPROTECT
//! and resolving it again changes the page-table entries in place (change_protection):
//! the notifier names exactly the range, no VMA changes, and only the mmap lock's read
//! side is taken. Measured on 6.18 (tests/mm_shadow.rs, and perf of
//! kvm:kvm_unmap_hva_range under the deno renderer: no 512-page range left).
//!
//! Only the asynchronous mode (UFFD_FEATURE_WP_ASYNC, Linux 6.7) is used: nothing here
//! reads fault events, so a write to a page while it is protected must resolve in the
//! kernel, never wait. Whether it works is decided by a probe, once per process
//! ([`write_protect_works`]): userfaultfd may be missing (old kernel,
//! CONFIG_USERFAULTFD=n) or refused (a container's seccomp profile). Without it guest
//! memory falls back to mprotect.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// Errors from userfaultfd.
#[derive(Debug, thiserror::Error)]
pub enum UffdError {
    /// The userfaultfd(2) call failed.
    #[error("userfaultfd(2) failed: {0}; the kernel lacks it or a seccomp profile refuses it (guest memory falls back to mprotect)")]
    Open(std::io::Error),
    /// The API handshake failed.
    #[error("UFFDIO_API failed: {0}; the kernel's userfaultfd is too old (guest memory falls back to mprotect)")]
    Api(std::io::Error),
    /// The kernel offers no write-protect mode for this memory.
    #[error("userfaultfd offers no write-protection here (features {features:#x}); guest memory falls back to mprotect")]
    NoWriteProtect {
        /// Features the kernel offered.
        features: u64,
    },
    /// Registering a range failed.
    #[error("UFFDIO_REGISTER of {addr:#x}+{len:#x} for write-protection failed: {source}")]
    Register {
        /// Host address of the range.
        addr: u64,
        /// Its length.
        len: u64,
        /// The OS error.
        source: std::io::Error,
    },
    /// Write-protecting or resolving a range failed.
    #[error("UFFDIO_WRITEPROTECT of {addr:#x}+{len:#x} (protect: {protect}) failed: {source}")]
    Protect {
        /// Host address of the range.
        addr: u64,
        /// Its length.
        len: u64,
        /// Whether it was protecting (or resolving).
        protect: bool,
        /// The OS error.
        source: std::io::Error,
    },
    /// The probe's page changed or lost its write permission.
    #[error("userfaultfd write-protection changed the probe page ({0}); guest memory falls back to mprotect")]
    Probe(&'static str),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, UffdError>;

// The kernel ABI (include/uapi/linux/userfaultfd.h); the build host's headers may be
// older than the kernel that runs the binary, so the numbers are spelled out here.
const UFFD_API: u64 = 0xaa;
/// Only faults from user mode are delivered: allowed without CAP_SYS_PTRACE even when
/// vm.unprivileged_userfaultfd is 0 (KVM's own accesses never wait for a handler).
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
/// The kernel resolves write faults on write-protected pages itself: a page that is
/// touched while protected (nothing should touch it: the two calls follow each other in
/// the vCPU's thread) costs a fault, never a wait for a handler that does not exist.
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// Bit of `uffdio_register.ioctls`: UFFDIO_WRITEPROTECT is allowed on the range.
const UFFDIO_WRITEPROTECT_BIT: u64 = 1 << 0x06;
// _IOWR(0xAA, nr, size) = 3 << 30 | size << 16 | 0xAA << 8 | nr.
const UFFDIO_API_IOCTL: libc::c_ulong = 0xc018_aa3f;
const UFFDIO_REGISTER_IOCTL: libc::c_ulong = 0xc020_aa00;
const UFFDIO_WRITEPROTECT_IOCTL: libc::c_ulong = 0xc018_aa06;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// A userfaultfd set up for write-protection.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    /// Features the kernel granted.
    features: u64,
}

impl Uffd {
    /// Opens a userfaultfd with asynchronous write-protection, or fails.
    pub fn open() -> Result<Self> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY;
        // SAFETY: userfaultfd(2) takes flags only and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        if fd < 0 {
            return Err(UffdError::Open(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes a `struct uffdio_api`, which `api` is.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API_IOCTL, &mut api) };
        if rc != 0 {
            // EINVAL: a kernel before 6.7 (no asynchronous mode).
            return Err(UffdError::Api(std::io::Error::last_os_error()));
        }
        let need = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_ASYNC;
        if api.features & need != need {
            return Err(UffdError::NoWriteProtect {
                features: api.features,
            });
        }
        Ok(Uffd {
            fd,
            features: api.features,
        })
    }

    /// Registers `[addr, addr+len)` (whole mappings, page-aligned) for write-protection.
    /// The registration ends when the mapping is unmapped or this descriptor is closed.
    pub fn register(&self, addr: u64, len: u64) -> Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange { start: addr, len },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes a `struct uffdio_register`; it only
        // marks the caller's own mapping, whose contents stay as they are.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_REGISTER_IOCTL, &mut reg) };
        if rc != 0 {
            return Err(UffdError::Register {
                addr,
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        if reg.ioctls & UFFDIO_WRITEPROTECT_BIT == 0 {
            return Err(UffdError::NoWriteProtect {
                features: self.features,
            });
        }
        Ok(())
    }

    fn write_protect(&self, addr: u64, len: u64, protect: bool) -> Result<()> {
        let mut wp = UffdioWriteprotect {
            range: UffdioRange { start: addr, len },
            mode: if protect {
                UFFDIO_WRITEPROTECT_MODE_WP
            } else {
                0
            },
        };
        // SAFETY: UFFDIO_WRITEPROTECT reads a `struct uffdio_writeprotect` and changes
        // only the write permission of the caller's registered range.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_WRITEPROTECT_IOCTL, &mut wp) };
        if rc != 0 {
            return Err(UffdError::Protect {
                addr,
                len,
                protect,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Drops every secondary-MMU (KVM) mapping of `[addr, addr+len)` of a registered
    /// range: write-protects it and resolves it again. Contents, ownership and the write
    /// permission of private anonymous pages stay; the MMU notifier names exactly this
    /// range.
    pub fn invalidate(&self, addr: u64, len: u64) -> Result<()> {
        self.write_protect(addr, len, true)?;
        // Retry the resolve once: a page left protected costs a host fault at its next
        // write.
        self.write_protect(addr, len, false)
            .or_else(|_| self.write_protect(addr, len, false))
    }
}

/// Whether write-protection invalidation works in this process: probed once (a scratch
/// page goes through a round trip), logged at debug. `Err` says why not.
/// `KVMJS_INVALIDATION=mprotect` in the environment chooses the fallback (comparisons).
pub fn write_protect_works() -> std::result::Result<(), &'static str> {
    static PROBE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let forced = std::env::var("KVMJS_INVALIDATION").is_ok_and(|v| v == "mprotect");
            let r = if forced {
                Err("KVMJS_INVALIDATION=mprotect".to_string())
            } else {
                probe().map_err(|e| e.to_string())
            };
            match &r {
                Ok(()) => tracing::debug!("guest memory invalidation: userfaultfd write-protect"),
                Err(e) => tracing::debug!("guest memory invalidation: mprotect ({e})"),
            }
            r
        })
        .as_ref()
        .map(|_| ())
        .map_err(|s| s.as_str())
}

/// Registers a scratch page, writes it, invalidates it, and checks it kept its contents
/// and its write permission.
fn probe() -> Result<()> {
    let u = Uffd::open()?;
    let len = 4096usize;
    // SAFETY: a new anonymous mapping with no address hint touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(UffdError::Probe("no scratch page"));
    }
    let page = p.cast::<u8>();
    let r = (|| {
        u.register(p as u64, len as u64)?;
        // SAFETY: `page` is the first byte of the scratch mapping (readable, writable).
        unsafe { page.write_volatile(0x5a) };
        u.invalidate(p as u64, len as u64)?;
        // SAFETY: as above. Asynchronous mode: a write never waits for a handler.
        unsafe {
            if page.read_volatile() != 0x5a {
                return Err(UffdError::Probe("contents lost"));
            }
            page.write_volatile(0xa5);
            if page.read_volatile() != 0xa5 {
                return Err(UffdError::Probe("write lost"));
            }
        }
        Ok(())
    })();
    // SAFETY: the scratch mapping was created above and nothing else refers to it.
    unsafe { libc::munmap(p, len) };
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{GuestMemory, Invalidation};

    #[test]
    fn ioctl_numbers_match_the_kernel_abi() {
        let iowr = |nr: libc::c_ulong, size: usize| {
            3 << 30 | (size as libc::c_ulong) << 16 | 0xaa << 8 | nr
        };
        assert_eq!(
            UFFDIO_API_IOCTL,
            iowr(0x3f, std::mem::size_of::<UffdioApi>())
        );
        assert_eq!(
            UFFDIO_REGISTER_IOCTL,
            iowr(0x00, std::mem::size_of::<UffdioRegister>())
        );
        assert_eq!(
            UFFDIO_WRITEPROTECT_IOCTL,
            iowr(0x06, std::mem::size_of::<UffdioWriteprotect>())
        );
    }

    #[test]
    fn invalidation_keeps_contents_and_write_permission() {
        // Where the kernel refuses userfaultfd (a container) the probe must say so too;
        // elsewhere the round trip must be lossless.
        let u = match Uffd::open() {
            Ok(u) => u,
            Err(e) => {
                assert!(write_protect_works().is_err(), "probe disagrees: {e}");
                return;
            }
        };
        let len = 16 * 4096usize;
        // SAFETY: new anonymous mapping, no hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let addr = p as u64;
        u.register(addr, len as u64).unwrap();
        // SAFETY: inside the mapping created above, owned by this test.
        let s = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
        s[..4096].fill(1); // present
        assert_eq!(s[4096 * 2], 0); // the shared zero page
        u.invalidate(addr, 3 * 4096).unwrap();
        u.invalidate(addr + 8 * 4096, 4096).unwrap(); // never touched
        assert!(s[..4096].iter().all(|&b| b == 1));
        s[..4096].fill(2);
        s[2 * 4096] = 3;
        s[8 * 4096] = 4;
        assert_eq!((s[0], s[2 * 4096], s[8 * 4096]), (2, 3, 4));
        assert!(u.invalidate(addr + 1, 4096).is_err(), "unaligned");
        assert_eq!(write_protect_works(), Ok(()));
        // SAFETY: the mapping created above.
        unsafe { libc::munmap(p, len) };
    }

    #[test]
    fn memory_falls_back_to_mprotect_where_userfaultfd_is_refused() {
        // As in a container whose seccomp profile refuses userfaultfd(2) with EPERM.
        let t = std::thread::spawn(|| {
            let _ = write_protect_works(); // the process-wide probe, unconfined
            let rules = [(libc::SYS_userfaultfd, Vec::new())].into_iter().collect();
            let filter = seccompiler::SeccompFilter::new(
                rules,
                seccompiler::SeccompAction::Allow,
                seccompiler::SeccompAction::Errno(libc::EPERM as u32),
                seccompiler::TargetArch::x86_64,
            )
            .unwrap();
            let prog: seccompiler::BpfProgram = filter.try_into().unwrap();
            seccompiler::apply_filter(&prog).unwrap();
            let mut m = GuestMemory::new(1 << 20, false).unwrap();
            m.write(0x3000, b"kept").unwrap();
            assert_eq!(m.invalidate(&[0x3000, 0x4000, 0x8000]).unwrap(), 2);
            assert_eq!(m.slice(0x3000, 4).unwrap(), b"kept");
            m.write(0x3000, b"more").unwrap();
            m.invalidation()
        });
        assert_eq!(t.join().unwrap(), Invalidation::Mprotect);
    }

    #[test]
    fn both_mechanisms_keep_contents_and_write_permission() {
        for forced in [false, true] {
            let mut m = GuestMemory::new(1 << 20, false).unwrap();
            if forced {
                m.use_mprotect_invalidation();
                assert_eq!(m.invalidation(), Invalidation::Mprotect);
            } else if write_protect_works().is_ok() {
                assert_eq!(m.invalidation(), Invalidation::WriteProtect);
            }
            m.write(0x10000, &[9; 0x3000]).unwrap();
            let _ = m.slice(0x20000, 1).unwrap(); // the zero page
                                                  // Three runs: two pages, one read-only zero page, one never touched.
            let n = m.invalidate(&[0x10000, 0x11000, 0x20000, 0x40000]).unwrap();
            assert_eq!(n, 3, "contiguous frames share a call");
            assert!(m.slice(0x10000, 0x3000).unwrap().iter().all(|&b| b == 9));
            m.write(0x10000, &[1; 0x3000]).unwrap();
            m.write(0x20000, b"w").unwrap();
            m.write(0x40000, b"w").unwrap();
            assert_eq!(m.slice(0x10fff, 1).unwrap(), &[1]);
        }
    }
}
