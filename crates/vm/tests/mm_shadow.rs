//! The guest's page tables under KVM: mappings the host removes, retargets or downgrades
//! must not survive in KVM's shadow MMU (PVM here shadows the guest tables and does not
//! see host writes to them). Runs a tiny guest on real /dev/kvm: it reads a word at a
//! fixed address and reports it with `syscall`, in a loop. These tests fail (they do not
//! skip) when KVM is unavailable.

use kvmjs_vm::cpu;
use kvmjs_vm::memory::{GuestMemory, MemorySnapshot};
use kvmjs_vm::mm::vma::{Backing, Special, PROT_EXEC, PROT_READ};
use kvmjs_vm::mm::{flags, AddressSpace};
use kvmjs_vm::vcpu::{Exit, Machine};
use kvmjs_vm::Hypervisor;
use std::time::Instant;

const CODE: u64 = 0x40_0000;
/// The address the guest reads: high, like a V8 heap page.
const X: u64 = 0x3f12_3456_0000;
const ANON: u64 = flags::PRIVATE | flags::ANONYMOUS;
const FIXED: u64 = ANON | flags::FIXED;
const RW: u64 = 3;
const MAX: u64 = u64::MAX;

struct Guest {
    mem: GuestMemory,
    mm: AddressSpace,
    machine: Machine,
    sregs: kvm_bindings::kvm_sregs,
}

impl Guest {
    /// Boots the reader loop: `mov rax, [X]; syscall; jmp back`.
    fn new() -> Guest {
        let hv = Hypervisor::get().expect("/dev/kvm is required");
        let mut mem = GuestMemory::new(64 << 20, false).unwrap();
        let mut mm = AddressSpace::new(&mut mem).unwrap();
        let cr3 = cpu::write_system_area(&mut mem, &mut mm, hv.caps()).unwrap();
        mem.set_root(Some(cr3));
        let rx = PROT_READ | PROT_EXEC;
        mm.map_special(
            &mut mem,
            CODE,
            CODE + 4096,
            rx,
            Special::None,
            Backing::Anon,
        )
        .unwrap();
        let mut code = vec![0x48, 0xa1];
        code.extend(X.to_le_bytes());
        code.extend([0x0f, 0x05, 0xeb, 0xf2]);
        mm.write_init(&mut mem, CODE, &code).unwrap();
        let mut machine = Machine::new(hv, &mem).unwrap();
        let base = machine.sregs().unwrap();
        let sregs = cpu::user_sregs(&base, cr3, 0);
        machine.set_sregs(&sregs).unwrap();
        machine.set_regs(&cpu::entry_regs(CODE, 0));
        // Ephemeral VMs zero in place (no MADV_DONTNEED, which would zap KVM's mappings
        // by itself and hide a missing invalidation).
        mem.set_keep_mapped(true);
        Guest {
            mem,
            mm,
            machine,
            sregs,
        }
    }

    /// Starts the loop again in ring 3 (after a fault left the vCPU in its stub).
    fn restart(&mut self) {
        self.machine.set_sregs(&self.sregs).unwrap();
        self.machine.set_regs(&cpu::entry_regs(CODE, 0));
    }

    /// Lets the guest read X once; returns what it read (low 32 bits) or the exception.
    fn read(&mut self) -> Result<u64, u8> {
        match self.machine.run().unwrap() {
            Exit::Syscall(v) => Ok(v),
            Exit::Exception(v) => Err(v),
            other => panic!("unexpected exit {other:?}"),
        }
    }

    fn put(&mut self, va: u64, v: u32) {
        self.mem.write(va, &v.to_le_bytes()).unwrap();
    }
}

#[test]
fn retargeted_mapping_reads_the_new_frame() {
    let mut g = Guest::new();
    assert_eq!(g.mm.mmap(&mut g.mem, X, 4096, RW, FIXED, None, MAX), Ok(X));
    let y = g.mm.mmap(&mut g.mem, 0, 4096, RW, ANON, None, MAX).unwrap();
    g.put(X, 0x1111);
    g.put(y, 0x2222);
    assert_eq!(g.read(), Ok(0x1111));
    // Move Y's frame over X: X's leaf now names another frame.
    let f = flags::MREMAP_MAYMOVE | flags::MREMAP_FIXED;
    assert_eq!(g.mm.mremap(&mut g.mem, y, 4096, 4096, f, X, MAX), Ok(X));
    let t = Instant::now();
    let calls = g.mem.sync_mappings().unwrap();
    eprintln!("invalidation: {calls} mprotect pairs in {:?}", t.elapsed());
    assert_eq!(g.read(), Ok(0x2222), "X must read the frame it maps now");
    g.put(X, 0x3333);
    assert_eq!(g.read(), Ok(0x3333));
}

#[test]
fn without_invalidation_kvm_keeps_the_old_frame() {
    // The control: proves the test above can fail on this host (a shadow MMU that
    // ignores host writes to guest tables). If this fails, the host's KVM walks the
    // tables itself (EPT/NPT) and invalidation is about its TLB only.
    let mut g = Guest::new();
    g.mm.mmap(&mut g.mem, X, 4096, RW, FIXED, None, MAX)
        .unwrap();
    let y = g.mm.mmap(&mut g.mem, 0, 4096, RW, ANON, None, MAX).unwrap();
    g.put(X, 0x1111);
    g.put(y, 0x2222);
    assert_eq!(g.read(), Ok(0x1111));
    let f = flags::MREMAP_MAYMOVE | flags::MREMAP_FIXED;
    g.mm.mremap(&mut g.mem, y, 4096, 4096, f, X, MAX).unwrap();
    let stale = g.read();
    // Clean up properly, then the new frame shows.
    g.mem.sync_mappings().unwrap();
    let fresh = g.read();
    eprintln!("without invalidation: {stale:?}; with: {fresh:?}");
    assert_eq!(fresh, Ok(0x2222));
    // The old frame was freed (zeroed in place): a stale translation reads its zeros.
    assert_eq!(stale, Ok(0), "KVM here did not keep the stale translation");
}

#[test]
fn prot_none_faults_after_the_guest_read_the_page() {
    let mut g = Guest::new();
    g.mm.mmap(&mut g.mem, X, 4096, RW, FIXED, None, MAX)
        .unwrap();
    g.put(X, 0x4242);
    assert_eq!(g.read(), Ok(0x4242));
    g.mm.mprotect(&mut g.mem, X, 4096, 0, MAX).unwrap();
    g.mem.sync_mappings().unwrap();
    assert_eq!(g.read(), Err(14), "PROT_NONE must fault");
}

#[test]
fn a_mapping_made_during_a_request_is_gone_after_the_reset() {
    let mut g = Guest::new();
    // The "snapshot": X is not mapped.
    g.mem.forget_mapping_changes().unwrap();
    let snap = MemorySnapshot::capture(&g.mem).unwrap();
    let _ = g.machine.dirty_log().unwrap();
    g.mem.clear_host_dirty();
    let mm0 = g.mm.clone();
    for round in 0..3u32 {
        // Request: something else takes the first frames (a different one each round),
        // then X is mapped and read.
        for _ in 0..round {
            g.mm.mmap(&mut g.mem, 0, 4096, RW, ANON, None, MAX).unwrap();
        }
        let other = g.mm.mmap(&mut g.mem, 0, 4096, RW, ANON, None, MAX).unwrap();
        g.put(other, 0xdead);
        g.mm.mmap(&mut g.mem, X, 4096, RW, FIXED, None, MAX)
            .unwrap();
        g.put(X, 0x5000 + round);
        g.mem.sync_mappings().unwrap();
        assert_eq!(g.read(), Ok(u64::from(0x5000 + round)), "round {round}");
        // Reset: memory, address space, KVM's translations.
        let dirty = g.machine.dirty_log().unwrap();
        snap.restore(&mut g.mem, &dirty, None, None);
        g.mem.clear_host_dirty();
        g.mm = mm0.clone();
        let t = Instant::now();
        let calls = g.mem.reset_mappings().unwrap();
        eprintln!(
            "reset invalidation: {calls} mprotect pairs in {:?}",
            t.elapsed()
        );
        assert_eq!(
            g.read(),
            Err(14),
            "round {round}: X is unmapped after the reset"
        );
        // A faulted guest is in its exception stub: start the loop again.
        g.restart();
    }
}
