//! The fast path: one VM exit per request for dynamically linked programs that serve HTTP
//! (the deno CLI; `VmConfig::listen`).
//!
//! Without it every socket call of a server traps: a warm deno makes 9–14 calls per request
//! (accept4, epoll_ctl, getpeername, setsockopt, epoll_wait, recv, send…), each a VM exit of
//! ~30 µs (AMD) to ~80 µs (Intel) under PVM. All of them are calls into libc (research
//! `deno-in-vm.md` §5), so a library that interposes those functions can answer them inside
//! the VM. kvmjs builds one (`fast.c`, ~500 lines of C, embedded in the host) and makes the
//! program's dynamic loader preload it: the VM shows `/etc/ld.so.preload` naming
//! [`LIB_PATH`], both served from sealed in-memory files ([`files`]). Not `LD_PRELOAD`: the
//! program would see it in its environment.
//!
//! Why a preloaded library rather than answering at the syscall entry stub (which sees every
//! `syscall` instruction, static programs' too): the stub runs before anything knows which
//! libc call it is part of, must be position-independent machine code in the system area,
//! and costs a PVM syscall redirect (~1.4 µs) per call even when answered; the library is
//! plain C built by the system compiler, runs as an ordinary function call, and covers every
//! call deno makes per request. Static programs (the QuickJS guest) already cost one exit.
//!
//! The protocol, through the fast page ([`kvmjs_abi::fast::Page`], in a mapping the host
//! makes at boot and announces in the auxiliary vector):
//! - **Hand-over** (host, [`FastState::place`]): when a request arrives while the library
//!   is in its wrapper's `epoll_wait` (the pause point), the host installs the accepted
//!   socket at the lowest free descriptor as accept4 would, puts the request's bytes in the
//!   rx area and the connection in a slot (PENDING), names the listener's epoll registration
//!   and the program's epoll instances, and ends that wait with 0 — without running it, so
//!   the hand-over itself costs no exit.
//! - **In the guest**: the library reports the listener ready, answers accept4 (OPEN),
//!   epoll_ctl/epoll_wait on the connection, getpeername, setsockopt(TCP_NODELAY), recv from
//!   the rx area, send/write/writev into the tx area, close and shutdown.
//! - **At every exit** (host, [`FastState::sync`], before the call runs): the host applies
//!   what the library did to its own socket — request bytes read, response bytes written
//!   (into the connection, where the HTTP framer sees them), shutdowns, the close — and takes
//!   a connection over (state HOST, library out of the way) before a call that names it runs
//!   in the host. When the response is complete the guest stops right there
//!   (crate::listen): the exit that ends a request is the wait that would block after the
//!   last send, the one exit per request.
//!
//! Without the library (static program, `fast_path` off, a program that never reaches the
//! wrapper's wait) every request takes the plain path (crate::listen), which stays correct:
//! a hand-over happens only when the page says the library is waiting in the very call the
//! host paused. A program that corrupts the page breaks only its own request: the host
//! clamps counts, checks states, uses its own record of each slot's descriptor and socket,
//! and the page is reset with the rest of guest memory.

mod host;

pub use host::{FastState, Synced};

use kvmjs_abi::fast::{Page, PAGE_BYTES};
use std::io::Write as _;
use std::os::fd::FromRawFd as _;
use std::sync::{Arc, OnceLock};

/// The library (an ELF64 shared object, soname `libkvmjs-fast.so`).
pub fn image() -> &'static [u8] {
    static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libkvmjs-fast.so"));
    IMAGE
}

/// Where the VM shows the library.
pub const LIB_PATH: &str = "/usr/lib/kvmjs/libkvmjs-fast.so";

/// The file glibc's dynamic loader reads the libraries to preload from.
pub const PRELOAD_PATH: &str = "/etc/ld.so.preload";

/// Bytes of the region the host maps at boot: the page, the rx area, the tx area.
pub const REGION_BYTES: u64 = 512 << 10;
/// Offset and size of the rx area (requests larger than this take the plain path).
pub const RX: (u64, u32) = (4 << 10, 60 << 10);
/// Offset and size of the tx area (a longer response continues through the host).
pub const TX: (u64, u32) = (64 << 10, 448 << 10);

/// Errors preparing the fast path.
#[derive(Debug, thiserror::Error)]
pub enum FastError {
    /// The in-memory files could not be made.
    #[error("cannot create the fast-path library's in-memory file ({0}); set fast_path to false to run without it")]
    Memfd(std::io::Error),
}

/// The two files the VM shows for the fast path, as sealed in-memory host files.
#[derive(Debug)]
pub struct Files {
    /// `/etc/ld.so.preload`: one line, [`LIB_PATH`].
    pub preload: Arc<std::fs::File>,
    /// The library.
    pub lib: Arc<std::fs::File>,
}

/// The files, made on first use. kvmjs calls this before it restricts its threads
/// (crate::seccomp does not allow memfd_create), so later calls only read the cell.
pub fn files() -> Result<&'static Files, &'static FastError> {
    static FILES: OnceLock<Result<Files, FastError>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            Ok(Files {
                preload: Arc::new(sealed(
                    "kvmjs-ld.so.preload",
                    format!("{LIB_PATH}\n").as_bytes(),
                )?),
                lib: Arc::new(sealed("libkvmjs-fast.so", image())?),
            })
        })
        .as_ref()
}

/// The provided file at guest path `vpath`, if it is one of the fast path's.
pub fn file_at(vpath: &str) -> Option<&'static Arc<std::fs::File>> {
    let f = files().ok()?;
    match vpath {
        PRELOAD_PATH => Some(&f.preload),
        LIB_PATH => Some(&f.lib),
        _ => None,
    }
}

/// A read-only, sealed memfd holding `bytes`.
fn sealed(name: &str, bytes: &[u8]) -> Result<std::fs::File, FastError> {
    let cname = std::ffi::CString::new(name).expect("names have no NUL");
    // SAFETY: `cname` is a valid C string; the flags are plain bits.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(FastError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(bytes).map_err(FastError::Memfd)?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor this function owns, with an integer argument.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(FastError::Memfd(std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// The page as it is at guest address `addr`, or `None` when the guest unmapped it.
fn read_page(mem: &crate::memory::GuestMemory, addr: u64) -> Option<Page> {
    let mut b = [0u8; PAGE_BYTES];
    mem.read(addr, &mut b).ok()?;
    Some(Page::from_bytes(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The library's `kvmjs_fast_layout` table, read from its symbol table and data.
    fn layout_from_library() -> Vec<u64> {
        let img = image();
        let elf = goblin::elf::Elf::parse(img).expect("the library is an ELF");
        let sym = elf
            .syms
            .iter()
            .find(|s| elf.strtab.get_at(s.st_name) == Some("kvmjs_fast_layout"))
            .expect("kvmjs_fast_layout is in the symbol table");
        let sec = elf
            .section_headers
            .iter()
            .find(|h| h.sh_addr <= sym.st_value && sym.st_value < h.sh_addr + h.sh_size)
            .expect("a section holds it");
        let off = (sym.st_value - sec.sh_addr + sec.sh_offset) as usize;
        img[off..off + sym.st_size as usize]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn library_layout_matches_the_abi_crate() {
        use kvmjs_abi::fast::{EpollEntry, Slot};
        let want: Vec<u64> = [
            size_of::<Page>(),
            offset_of!(Page, lib_ready),
            offset_of!(Page, waiting_epfd),
            offset_of!(Page, listen_fd),
            offset_of!(Page, listen_epoll),
            offset_of!(Page, listen_data),
            offset_of!(Page, listen_reported),
            offset_of!(Page, current),
            offset_of!(Page, tx_addr),
            offset_of!(Page, answered),
            offset_of!(Page, pid),
            offset_of!(Page, epolls),
            offset_of!(Page, slots),
            size_of::<Slot>(),
            offset_of!(Slot, rx_pos),
            offset_of!(Slot, reg_pending),
            offset_of!(Slot, reg_epoll),
            offset_of!(Slot, peer),
            offset_of!(Slot, local_len),
            offset_of!(Slot, local),
            size_of::<EpollEntry>(),
        ]
        .iter()
        .map(|&v| v as u64)
        .chain([
            kvmjs_abi::fast::MAGIC,
            u64::from(kvmjs_abi::fast::VERSION),
            kvmjs_abi::fast::AT_FAST_PAGE,
        ])
        .collect();
        assert_eq!(layout_from_library(), want);
    }

    #[test]
    fn library_exports_the_calls_a_server_makes_per_request() {
        let elf = goblin::elf::Elf::parse(image()).unwrap();
        let exported: Vec<&str> = elf
            .dynsyms
            .iter()
            .filter(|s| s.st_value != 0)
            .filter_map(|s| elf.dynstrtab.get_at(s.st_name))
            .collect();
        for f in [
            "accept4",
            "accept",
            "epoll_ctl",
            "epoll_wait",
            "epoll_pwait",
            "getpeername",
            "setsockopt",
            "recv",
            "recvfrom",
            "read",
            "send",
            "sendto",
            "write",
            "writev",
            "close",
            "shutdown",
        ] {
            assert!(exported.contains(&f), "{f} is not exported: {exported:?}");
        }
        assert!(!exported.contains(&"kvmjs_fast_layout"));
    }

    #[test]
    fn files_are_sealed_and_hold_the_library() {
        use std::os::unix::fs::FileExt as _;
        let f = files().expect("memfd works here");
        let mut b = vec![0u8; 64];
        let n = f.preload.read_at(&mut b, 0).unwrap();
        assert_eq!(&b[..n], format!("{LIB_PATH}\n").as_bytes());
        assert_eq!(f.lib.metadata().unwrap().len() as usize, image().len());
        // Sealed: nobody can change what every VM maps.
        assert!((&*f.lib).write(b"x").is_err());
    }

    #[test]
    fn areas_fit_the_region() {
        assert!(PAGE_BYTES as u64 <= RX.0);
        assert!(RX.0 + u64::from(RX.1) <= TX.0);
        assert_eq!(TX.0 + u64::from(TX.1), REGION_BYTES);
    }
}
