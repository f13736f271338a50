//! Which privilege level a ring-3 SYSCALL reaches LSTAR at: 3 under PVM (it stays in
//! ring 3), 0 under VMX/SVM; and where RIP is at the trap's MMIO exit. Measured once at start-up in a throwaway VM (~2 ms) that runs a
//! single `syscall`, so the answer is a fact of the probe, and a /dev/kvm that cannot run
//! guests at all is refused before any program boots.

use super::Flavour;
use crate::cpu;
use crate::layout::{self, PAGE_SIZE};
use crate::memory::GuestMemory;
use crate::mm::vma::{Backing, Special, PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::mm::AddressSpace;
use crate::vcpu::{Exit, HostError, Hypervisor, Machine};

/// Where the probe's one instruction lives.
const CODE: u64 = layout::PIE_BASE;
/// Its stack page.
const STACK: u64 = layout::PIE_BASE + 0x10_0000;

/// Runs the probe VM; returns what its one trap showed.
pub(crate) fn probe_flavour(hv: &Hypervisor) -> Result<Flavour, HostError> {
    let space = layout::MIN_ADDRESS_SPACE;
    let mut mem = GuestMemory::new(space, false)?;
    let mut mm = AddressSpace::new(&mut mem)?;
    let cr3 = cpu::write_system_area(&mut mem, &mut mm, hv.caps())?;
    let (code, stack) = (PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE);
    mm.map_special(
        &mut mem,
        CODE,
        CODE + PAGE_SIZE,
        code,
        Special::None,
        Backing::Anon,
    )?;
    mm.map_special(
        &mut mem,
        STACK,
        STACK + PAGE_SIZE,
        stack,
        Special::Stack,
        Backing::Anon,
    )?;
    // syscall; ud2
    mm.write_init(&mut mem, CODE, &[0x0f, 0x05, 0x0f, 0x0b])?;
    let mut machine = Machine::new(hv, &mem)?;
    let base = machine.sregs()?;
    machine.set_sregs(&cpu::user_sregs(&base, cr3, 0))?;
    machine.set_regs(&cpu::entry_regs(CODE, STACK + PAGE_SIZE - 64));
    match machine.run()? {
        Exit::Syscall(_) => {
            let f = Flavour {
                syscall_cpl: (machine.sregs()?.cs.selector & 3) as u8,
                rip_past_trap: machine.regs().rip == layout::USER_STUBS + cpu::stubs::SYSCALL_TAIL,
            };
            tracing::info!(
                "KVM flavour: SYSCALL entry runs at CPL {} ({:?}); RIP at the MMIO exit is {} the trap write",
                f.syscall_cpl,
                f.syscall_return(),
                if f.rip_past_trap { "past" } else { "at" }
            );
            Ok(f)
        }
        other => Err(HostError::ProbeExit(format!("{other:?}"))),
    }
}
