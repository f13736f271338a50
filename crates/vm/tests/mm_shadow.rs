//! The guest's page tables under KVM: mappings the host removes, retargets or downgrades
//! must not survive in KVM's shadow MMU (PVM here shadows the guest tables and does not
//! see host writes to them). Runs a tiny guest on real /dev/kvm: it reads a word at a
//! fixed address and reports it with `syscall`, in a loop. These tests fail (they do not
//! skip) when KVM is unavailable. Every test runs with both invalidation mechanisms
//! (userfaultfd write-protect where the host offers it, and the mprotect fallback).

use kvmjs_vm::cpu;
use kvmjs_vm::memory::{FileSlots, GuestMemory, Invalidation, MemorySnapshot};
use kvmjs_vm::mm::vma::{Backing, Special, PROT_EXEC, PROT_READ};
use kvmjs_vm::mm::{flags, AddressSpace, FileBytes, FileSource, SLOT_MIN};
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

/// One guest at a time: an mprotect in one test's pool also zaps KVM's mappings of the
/// 2 MiB around its split point, which may hold another test's pool or file slot (all
/// share the process's address space) and would hide or fake a stale translation.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Guest {
    mem: GuestMemory,
    mm: AddressSpace,
    machine: Machine,
    sregs: kvm_bindings::kvm_sregs,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Guest {
    /// Boots the reader loop: `mov rax, [X]; syscall; jmp back`, with `how` as the
    /// invalidation mechanism.
    fn new(how: Invalidation) -> Guest {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let hv = Hypervisor::get().expect("/dev/kvm is required");
        let mut mem = GuestMemory::new(64 << 20, false).unwrap();
        if how == Invalidation::Mprotect {
            mem.use_mprotect_invalidation();
        }
        assert_eq!(mem.invalidation(), how, "{how:?} is not available here");
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
            _serial: serial,
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

fn retargeted_mapping_reads_the_new_frame(how: Invalidation) {
    let mut g = Guest::new(how);
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
    eprintln!("{how:?}: {calls} ranges in {:?}", t.elapsed());
    assert_eq!(g.read(), Ok(0x2222), "X must read the frame it maps now");
    g.put(X, 0x3333);
    assert_eq!(g.read(), Ok(0x3333));
}

fn without_invalidation_kvm_keeps_the_old_frame(how: Invalidation) {
    // The control: proves the test above can fail on this host (a shadow MMU that
    // ignores host writes to guest tables). If this fails, the host's KVM walks the
    // tables itself (EPT/NPT) and invalidation is about its TLB only.
    let mut g = Guest::new(how);
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

fn prot_none_faults_after_the_guest_read_the_page(how: Invalidation) {
    let mut g = Guest::new(how);
    g.mm.mmap(&mut g.mem, X, 4096, RW, FIXED, None, MAX)
        .unwrap();
    g.put(X, 0x4242);
    assert_eq!(g.read(), Ok(0x4242));
    g.mm.mprotect(&mut g.mem, X, 4096, 0, MAX).unwrap();
    g.mem.sync_mappings().unwrap();
    assert_eq!(g.read(), Err(14), "PROT_NONE must fault");
}

fn a_mapping_made_during_a_request_is_gone_after_the_reset(how: Invalidation) {
    let mut g = Guest::new(how);
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
            "{how:?} reset invalidation: {calls} ranges in {:?}",
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

/// The mechanism the host offers: write-protect where userfaultfd works (probed).
fn best() -> Invalidation {
    GuestMemory::new(1 << 20, false).unwrap().invalidation()
}

#[test]
fn retargeted_mapping_reads_the_new_frame_write_protect() {
    retargeted_mapping_reads_the_new_frame(best());
}

#[test]
fn retargeted_mapping_reads_the_new_frame_mprotect() {
    retargeted_mapping_reads_the_new_frame(Invalidation::Mprotect);
}

#[test]
fn without_invalidation_kvm_keeps_the_old_frame_write_protect() {
    without_invalidation_kvm_keeps_the_old_frame(best());
}

#[test]
fn without_invalidation_kvm_keeps_the_old_frame_mprotect() {
    without_invalidation_kvm_keeps_the_old_frame(Invalidation::Mprotect);
}

#[test]
fn prot_none_faults_after_the_guest_read_the_page_write_protect() {
    prot_none_faults_after_the_guest_read_the_page(best());
}

#[test]
fn prot_none_faults_after_the_guest_read_the_page_mprotect() {
    prot_none_faults_after_the_guest_read_the_page(Invalidation::Mprotect);
}

#[test]
fn a_mapping_made_during_a_request_is_gone_after_the_reset_write_protect() {
    a_mapping_made_during_a_request_is_gone_after_the_reset(best());
}

#[test]
fn a_mapping_made_during_a_request_is_gone_after_the_reset_mprotect() {
    a_mapping_made_during_a_request_is_gone_after_the_reset(Invalidation::Mprotect);
}

/// Invalidates a frame next to the one X's stale translation names (same 2 MiB block)
/// and reports whether the guest still read through the stale translation.
fn neighbour_invalidation_keeps_stale(how: Invalidation) -> bool {
    let mut g = Guest::new(how);
    g.mm.mmap(&mut g.mem, X, 4096, RW, FIXED, None, MAX)
        .unwrap();
    let y = g.mm.mmap(&mut g.mem, 0, 4096, RW, ANON, None, MAX).unwrap();
    g.put(X, 0x1111);
    g.put(y, 0x2222);
    let old = g.mem.slice(X, 4).unwrap().as_ptr() as u64 - g.mem.host_base();
    assert_eq!(g.read(), Ok(0x1111));
    // Another guest page's frame in the same 2 MiB block as X's old frame (taken before
    // the mremap frees that one), resident, so the host has a page-table entry there.
    let z = g.mm.mmap(&mut g.mem, 0, 4096, RW, ANON, None, MAX).unwrap();
    g.put(z, 0x3333);
    let next = g.mem.slice(z, 4).unwrap().as_ptr() as u64 - g.mem.host_base();
    assert!(
        next != old && next >> 21 == old >> 21,
        "not another frame of X's 2 MiB block: {next:#x} {old:#x}"
    );
    let f = flags::MREMAP_MAYMOVE | flags::MREMAP_FIXED;
    g.mm.mremap(&mut g.mem, y, 4096, 4096, f, X, MAX).unwrap();
    g.mem.invalidate(&[next]).unwrap();
    let seen = g.read();
    g.mem.sync_mappings().unwrap();
    assert_eq!(g.read(), Ok(0x2222), "{how:?}: the real invalidation works");
    match seen {
        Ok(0) => true,
        Ok(0x2222) => false,
        other => panic!("{how:?}: X read {other:?}"),
    }
}

#[test]
fn write_protect_invalidates_exactly_the_frames_asked_for() {
    // The fallback is the control: mprotect splits the host mapping, and the split zaps
    // the whole 2 MiB block, X's stale translation included. If this assertion fails the
    // host kernel no longer does that, and the test below proves nothing.
    assert!(
        !neighbour_invalidation_keeps_stale(Invalidation::Mprotect),
        "mprotect of a neighbour frame no longer drops the block's translations"
    );
    assert_eq!(
        best(),
        Invalidation::WriteProtect,
        "userfaultfd write-protect is unavailable on this host"
    );
    assert!(
        neighbour_invalidation_keeps_stale(Invalidation::WriteProtect),
        "write-protecting a neighbour frame dropped X's translation: the notifier range is not exact"
    );
}

/// The same for a read-only file slot (the deno binary's text): X maps a slot page, is
/// retargeted to a frame, and the slot page next to X's old one is invalidated.
fn slot_neighbour_invalidation_keeps_stale(how: Invalidation) -> bool {
    let mut g = Guest::new(how);
    let hv = Hypervisor::get().unwrap();
    let slots = FileSlots::new(g.mem.size(), 1 << hv.caps().maxphyaddr.min(63), 32);
    if how == Invalidation::Mprotect {
        slots.lock().unwrap().use_mprotect_invalidation();
    }
    g.mem.set_slots(slots);
    // Page p of the file starts with 0x7000 + p.
    let pages = SLOT_MIN / 4096 + 2;
    let mut bytes = vec![0u8; (pages * 4096) as usize];
    for p in 0..pages {
        let at = (p * 4096) as usize;
        bytes[at..at + 8].copy_from_slice(&(0x7000 + p).to_le_bytes());
    }
    let path = std::env::temp_dir().join(format!("kvmjs-mm-shadow-{}-{how:?}", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let src = FileSource {
        file: FileBytes::Host(&file),
        path: std::sync::Arc::from("/big"),
    };
    // X maps file page 1: one of pages 0 and 2 shares its host 2 MiB block.
    let fixed = flags::PRIVATE | flags::FIXED;
    g.mm.mmap(&mut g.mem, X, SLOT_MIN, 1, fixed, Some((src, 4096)), MAX)
        .unwrap();
    std::fs::remove_file(&path).ok();
    g.machine.sync_slots(&g.mem).unwrap();
    assert_eq!(
        g.read(),
        Ok(0x7001),
        "{how:?}: X reads the file through the slot"
    );
    let slot = g.mem.slots().lock().unwrap().all()[0].clone();
    assert_eq!(slot.invalidation(), how);
    let host = |gpa: u64| slot.bytes(gpa, 1).unwrap().as_ptr() as u64;
    let old = slot.gpa + 4096;
    let next = if host(old) >> 21 == host(old - 4096) >> 21 {
        old - 4096
    } else {
        old + 4096
    };
    let _ = slot.bytes(next, 1).unwrap()[0]; // a host page-table entry there
    g.mm.mmap(&mut g.mem, X, 4096, RW, FIXED, None, MAX)
        .unwrap();
    g.put(X, 0x2222);
    g.mem.invalidate(&[next]).unwrap();
    let seen = g.read();
    g.mem.sync_mappings().unwrap();
    assert_eq!(g.read(), Ok(0x2222), "{how:?}: the real invalidation works");
    match seen {
        Ok(0x7001) => true,
        Ok(0x2222) => false,
        other => panic!("{how:?}: X read {other:?}"),
    }
}

#[test]
fn slot_invalidation_is_exact_with_write_protect() {
    // No control here: on 6.18 mprotect of a file mapping raises the notifier on exactly
    // its range too (no huge-pmd split of a file VMA); both must work.
    assert!(
        slot_neighbour_invalidation_keeps_stale(Invalidation::Mprotect),
        "mprotect of a slot page dropped its neighbours too: write-protect matters for slots"
    );
    assert_eq!(
        best(),
        Invalidation::WriteProtect,
        "userfaultfd write-protect is unavailable on this host"
    );
    assert!(
        slot_neighbour_invalidation_keeps_stale(Invalidation::WriteProtect),
        "write-protecting a neighbour slot page dropped X's translation"
    );
}
