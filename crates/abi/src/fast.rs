//! The fast page: what the kvmjs host and its fast-path library (libkvmjs-fast.so, preloaded
//! into dynamically linked programs that serve HTTP) share in guest memory, so that the
//! per-request socket calls of a server are answered inside the VM (one VM exit per
//! request). The C side is `crates/vm/src/fastpath/fast.h`; a unit test in the vm crate
//! compares this layout with the one compiled into the library.
//!
//! Everything here is plain integers: a guest can write any bytes, and the host reads the
//! page with [`Page::from_bytes`] and never trusts a count or a state it did not check.

use core::mem::size_of;

/// [`Page::magic`].
pub const MAGIC: u64 = 0x7473_6166_6a6d_766b;
/// [`Page::version`].
pub const VERSION: u32 = 1;
/// The auxiliary-vector type whose value is the page's guest address.
pub const AT_FAST_PAGE: u64 = 0x4b4a;
/// Connections the page tracks at once.
pub const SLOTS: usize = 4;
/// Epoll instances the page names.
pub const EPOLLS: usize = 8;
/// [`Page::current`] when no slot takes sends.
pub const NO_SLOT: u32 = u32::MAX;

/// [`Page::waiting_epfd`] while the library hands a complete response over (a plain
/// `getppid` the host stops at; the host may hand the next request over right there).
pub const FLUSHING: i32 = -1;

/// [`Slot::state`] values.
pub mod state {
    /// Unused.
    pub const FREE: u32 = 0;
    /// A connection waits to be accepted on the listener (host).
    pub const PENDING: u32 = 1;
    /// Accepted; the library answers calls on it.
    pub const OPEN: u32 = 2;
    /// The program closed it; the host releases the descriptor at its next look.
    pub const CLOSED: u32 = 3;
    /// The host took it over; calls on it go to the host.
    pub const HOST: u32 = 4;
}

/// [`Slot::shut`] bits.
pub mod shut {
    /// shutdown(SHUT_RD).
    pub const RD: u32 = 1;
    /// shutdown(SHUT_WR).
    pub const WR: u32 = 2;
}

/// [`Slot::nodelay`] when the program never set TCP_NODELAY.
pub const NODELAY_UNSET: u32 = u32::MAX;

/// One connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Host: the connection's descriptor.
    pub fd: i32,
    /// [`state`].
    pub state: u32,
    /// Host: request bytes in the rx area (current slot only).
    pub rx_len: u32,
    /// Library: bytes the program has read.
    pub rx_pos: u32,
    /// Host: the peer closed.
    pub peer_gone: u32,
    /// Host: bumped when the connection became more ready.
    pub edge: u32,
    /// Library: `edge` when it last looked.
    pub edge_seen: u32,
    /// Library: accept4 flags.
    pub flags: u32,
    /// Library: [`shut`] bits.
    pub shut: u32,
    /// Library: TCP_NODELAY, or [`NODELAY_UNSET`].
    pub nodelay: u32,
    /// Library: the epoll registration's events.
    pub reg_events: u32,
    /// Library: the epoll descriptor of the registration.
    pub reg_epfd: i32,
    /// Library: an edge not reported yet.
    pub reg_pending: u32,
    /// Host: bytes of `peer`.
    pub peer_len: u32,
    /// Library: the registration's instance ([`EpollEntry::id`]); 0 = none.
    pub reg_epoll: u64,
    /// Library: the registration's user data.
    pub reg_data: u64,
    /// Host: the peer's sockaddr.
    pub peer: [u8; 28],
    /// Host: bytes of `local`.
    pub local_len: u32,
    /// Host: the local sockaddr.
    pub local: [u8; 28],
    /// Padding.
    pub pad: u32,
}

/// One epoll instance the program has, by descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpollEntry {
    /// Host: a descriptor of the instance; -1 = unused.
    pub fd: i32,
    /// Padding.
    pub pad: u32,
    /// Host: the instance's identity (never 0).
    pub id: u64,
}

/// The page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Host: [`MAGIC`].
    pub magic: u64,
    /// Host: [`VERSION`].
    pub version: u32,
    /// Library: 1 once it uses the page.
    pub lib_ready: u32,
    /// Library: epfd + 1 of the wait its epoll_wait is in; 0 = none.
    pub waiting_epfd: i32,
    /// Library: its lock.
    pub lock: u32,
    /// Host: the listening socket; -1 = none.
    pub listen_fd: i32,
    /// Host: accepts on `listen_fd` are answered from the slots.
    pub listen_fast: u32,
    /// Host: `listen_fd` is non-blocking.
    pub listen_nonblock: u32,
    /// Host: the listener's epoll events.
    pub listen_events: u32,
    /// Host: the listener's epoll instance id; 0 = none.
    pub listen_epoll: u64,
    /// Host: the listener's epoll user data.
    pub listen_data: u64,
    /// Library: the pending connection was reported.
    pub listen_reported: u32,
    /// Host: the slot whose sends go to the tx area; [`NO_SLOT`]: none.
    pub current: u32,
    /// Library: bytes in the tx area the host has not taken.
    pub tx_len: u32,
    /// Host: the tx area's size.
    pub tx_cap: u32,
    /// Host: the rx area's size.
    pub rx_cap: u32,
    /// Host: what getpid returns in the VM (its one process).
    pub pid: u32,
    /// Host: guest address of the tx area.
    pub tx_addr: u64,
    /// Host: guest address of the rx area.
    pub rx_addr: u64,
    /// Library: calls answered without the host.
    pub answered: u64,
    /// Host: the program's epoll instances.
    pub epolls: [EpollEntry; EPOLLS],
    /// The connections.
    pub slots: [Slot; SLOTS],
}

/// Bytes of [`Page`].
pub const PAGE_BYTES: usize = size_of::<Page>();

impl Page {
    /// The page as guest memory holds it (any bytes are a valid page).
    pub fn from_bytes(b: &[u8; PAGE_BYTES]) -> Page {
        // SAFETY: `Page` is `repr(C)` and made of integers and integer arrays only, so
        // every bit pattern is a valid value; `b` has exactly its size and
        // `read_unaligned` needs no alignment.
        unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<Page>()) }
    }

    /// The page's bytes, to write to guest memory.
    pub fn to_bytes(&self) -> [u8; PAGE_BYTES] {
        let mut out = [0u8; PAGE_BYTES];
        // SAFETY: `out` has exactly `Page`'s size; `write_unaligned` needs no alignment;
        // `Page` has no padding the compiler adds (the explicit `pad` fields fill it: the
        // layout test checks the size), so no uninitialised byte is read.
        unsafe { core::ptr::write_unaligned(out.as_mut_ptr().cast::<Page>(), *self) };
        out
    }

    /// A fresh page: nothing listening, no slot, the areas at `tx`/`rx`.
    pub fn new(tx: (u64, u32), rx: (u64, u32)) -> Page {
        let mut p = Page {
            magic: MAGIC,
            version: VERSION,
            listen_fd: -1,
            current: NO_SLOT,
            tx_addr: tx.0,
            tx_cap: tx.1,
            rx_addr: rx.0,
            rx_cap: rx.1,
            ..Page::default()
        };
        for e in &mut p.epolls {
            e.fd = -1;
        }
        for s in &mut p.slots {
            s.fd = -1;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of};

    #[test]
    fn layout_has_no_hidden_padding() {
        assert_eq!(size_of::<Slot>(), 136);
        assert_eq!(size_of::<EpollEntry>(), 16);
        assert_eq!(offset_of!(Page, epolls), 104);
        assert_eq!(size_of::<Page>(), 104 + 8 * 16 + 4 * 136);
        assert_eq!(align_of::<Page>(), 8);
    }

    #[test]
    fn bytes_round_trip() {
        let mut p = Page::new((0x1000, 64), (0x2000, 32));
        p.slots[2].rx_pos = 7;
        p.epolls[1] = EpollEntry {
            fd: 5,
            pad: 0,
            id: 9,
        };
        let b = p.to_bytes();
        assert_eq!(Page::from_bytes(&b), p);
        assert_eq!(&b[..8], &MAGIC.to_le_bytes());
    }
}
