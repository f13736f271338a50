//! Which privilege level a ring-3 SYSCALL reaches LSTAR at: 3 under PVM (it stays in
//! ring 3), 0 under VMX/SVM; and where RIP is at the trap's MMIO exit. Measured once at start-up in a throwaway VM (~2 ms) that runs a
//! single `syscall`, so the answer is a fact of the probe, and a /dev/kvm that cannot run
//! guests at all is refused before any program boots.

use super::Flavour;
use crate::cpu::{self, Region};
use crate::layout::{self, PAGE_SIZE};
use crate::memory::GuestMemory;
use crate::vcpu::{Exit, HostError, Hypervisor, Machine};

/// Where the probe's one instruction lives.
const CODE: u64 = layout::PIE_BASE;

/// Runs the probe VM; returns what its one trap showed.
pub(crate) fn probe_flavour(hv: &Hypervisor) -> Result<Flavour, HostError> {
    let space = layout::MIN_ADDRESS_SPACE;
    let mut mem = GuestMemory::new(space, false)?;
    let code = [Region {
        start: CODE,
        end: CODE + PAGE_SIZE,
        write: false,
        exec: true,
    }];
    // syscall; ud2
    mem.write(CODE, &[0x0f, 0x05, 0x0f, 0x0b])?;
    let cr3 = cpu::write_system_area(&mut mem, space, &code, hv.caps())?;
    let mut machine = Machine::new(hv, &mem)?;
    let base = machine.sregs()?;
    machine.set_sregs(&cpu::user_sregs(&base, cr3, 0))?;
    machine.set_regs(&cpu::entry_regs(CODE, layout::stack_top(space) - 64));
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
