//! What Linux would keep in the guest's process: program break, mappings, file
//! descriptors, signal dispositions, FS base. All of it is plain data, cloned into the
//! snapshot and cloned back on reset (only when a syscall changed it).

use crate::layout::{self, align_up};
use crate::mm::AddressSpace;
use std::collections::BTreeMap;

/// The descriptor table and the objects behind it live in [`crate::fs`].
pub use crate::fs::{FdTable, MAX_FDS};

/// Signal state: recorded so the calls succeed; kvmjs never delivers signals.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Signals {
    /// Raw kernel `struct sigaction` (32 bytes) per signal 1..=64.
    pub actions: Vec<[u8; 32]>,
    /// Blocked set.
    pub mask: u64,
    /// Raw `stack_t` of sigaltstack.
    pub altstack: [u8; 24],
}

impl Default for Signals {
    fn default() -> Self {
        let mut altstack = [0u8; 24];
        altstack[8..12].copy_from_slice(&2u32.to_le_bytes()); // SS_DISABLE
        Signals {
            actions: vec![[0; 32]; 65],
            mask: 0,
            altstack,
        }
    }
}

/// The process id the VM reports (getpid): it has one process.
pub const PID: u32 = 1;

/// The emulated process.
#[derive(Clone, Debug)]
pub struct Process {
    /// The address space: mappings, page tables, frames, program break (crate::mm).
    pub mm: AddressSpace,
    /// Committed bytes that do not count against max_memory (image, stack, request
    /// area: what the loader mapped).
    pub mm_base: u64,
    /// Where the host writes requests (a mapping the host made at boot).
    pub request_area: (u64, u64),
    /// Open files and the scratch filesystem (deep-cloned: see [`crate::fs`]).
    pub fds: FdTable,
    /// Thread names set with PR_SET_NAME (thread 1's is /proc/self/comm).
    pub thread_names: BTreeMap<crate::tasks::Tid, String>,
    /// Signal dispositions.
    pub signals: Signals,
    /// FS base (TLS), set through arch_prctl.
    pub fs_base: u64,
    /// Threads: the task table and run queue (crate::tasks).
    pub tasks: crate::tasks::Tasks,
    /// Limit on brk + mmap bytes.
    pub max_memory: u64,
    /// Memory in use when the snapshot was taken, and the per-request allowance above it.
    pub request_memory_base: Option<(u64, u64)>,
    /// The fast path's page and connections (crate::fastpath), for a program that has it.
    pub fast: Option<crate::fastpath::FastState>,
    /// Set by any syscall that changes this struct, so a reset can skip the clone.
    pub changed: bool,
    /// A memory call of this request was refused (max_memory, max_request_memory or the
    /// address space full): a crash that follows is reported as out of memory.
    pub memory_refused: bool,
}

/// Size of the request area: 1 MiB of strings and header table, plus the body limit.
pub fn request_area_size(max_body: u64) -> u64 {
    align_up((1 << 20) + max_body, layout::HUGE_PAGE)
}

impl Process {
    /// A process for tests and fuzzing: an address space without tables yet over a pool
    /// of `address_space` bytes (tables are built at the first mapping), the program break
    /// at `image_end`. Booted VMs use [`Process::with_mm`].
    pub fn new(image_end: u64, address_space: u64, max_memory: u64, max_body: u64) -> Self {
        let mut mm = AddressSpace::unrooted(address_space);
        mm.set_brk_start(image_end);
        let _ = max_body;
        Self::with_mm(mm, (0, 0), max_memory)
    }

    /// A process owning the address space the loader built.
    pub fn with_mm(mm: AddressSpace, request_area: (u64, u64), max_memory: u64) -> Self {
        Process {
            mm_base: mm.committed_bytes(),
            mm,
            request_area,
            fds: FdTable::default(),
            thread_names: BTreeMap::new(),
            signals: Signals::default(),
            fs_base: 0,
            tasks: crate::tasks::Tasks::new(),
            max_memory,
            request_memory_base: None,
            memory_refused: false,
            fast: None,
            changed: false,
        }
    }

    /// Bytes of heap and mappings in use.
    pub fn memory_used(&self) -> u64 {
        self.mm.committed_bytes().saturating_sub(self.mm_base)
    }

    /// Bytes the program may still commit (max_memory and max_request_memory).
    pub fn memory_budget(&self) -> u64 {
        let used = self.memory_used();
        let mut cap = self.max_memory;
        if let Some((base, allowance)) = self.request_memory_base {
            cap = cap.min(base.saturating_add(allowance));
        }
        cap.saturating_sub(used)
    }

    /// Whether `extra` more bytes stay within max_memory and max_request_memory.
    pub fn may_grow(&self, extra: u64) -> bool {
        let after = self.memory_used().saturating_add(extra);
        if after > self.max_memory {
            return false;
        }
        match self.request_memory_base {
            Some((base, allowance)) => after <= base.saturating_add(allowance),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits() {
        let mut p = Process::new(0x50_0000, 256 << 20, 64 << 20, 1 << 20);
        assert!(p.may_grow(64 << 20));
        assert!(!p.may_grow((64 << 20) + 1));
        p.request_memory_base = Some((0, 1 << 20));
        assert!(!p.may_grow(2 << 20));
        assert_eq!(p.memory_budget(), 1 << 20);
    }
}
