//! Which privilege level a ring-3 SYSCALL reaches LSTAR at: 3 under PVM (it stays in
//! ring 3), 0 under VMX/SVM. Measured once at start-up in a throwaway VM (~2 ms) that runs a
//! single `syscall`, so the answer is a fact of the probe, and a /dev/kvm that cannot run
//! guests at all is refused before any program boots.

use crate::cpu::{self, Region};
use crate::layout::{self, PAGE_SIZE};
use crate::memory::GuestMemory;
use crate::vcpu::{Exit, HostError, Hypervisor, Machine};

/// Where the probe's one instruction lives.
const CODE: u64 = layout::PIE_BASE;

/// Runs the probe VM; returns the CPL the SYSCALL entry ran at.
pub(crate) fn probe_syscall_cpl(hv: &Hypervisor) -> Result<u8, HostError> {
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
            let cpl = (machine.sregs()?.cs.selector & 3) as u8;
            let rip = machine.regs().rip;
            tracing::debug!(
                "probe VM: SYSCALL entry at CPL {cpl}, RIP {} the trap write",
                if rip == layout::USER_STUBS + cpu::stubs::SYSCALL_TAIL {
                    "past"
                } else {
                    "at"
                }
            );
            Ok(cpl)
        }
        other => Err(HostError::ProbeExit(format!("{other:?}"))),
    }
}
