//! kvmjs host engine: boots an x86-64 Linux ELF (static, or dynamically linked through
//! its PT_INTERP loader) in a KVM micro-VM with no guest kernel, emulates the system calls
//! it makes, implements the libvmod-tinykvm guest API, snapshots at the guest's first
//! `wait_for_requests_paused` and resets to that snapshot after every request. Nothing
//! here knows about HTTP or JavaScript.

pub mod api;
pub mod caps;
pub mod config;
pub mod cpu;
pub mod fastpath;
pub mod fault;
pub mod fetch;
pub mod fs;
pub mod layout;
pub mod limits;
mod listen;
pub mod loader;
pub mod memory;
pub mod mm;
pub mod net;
pub mod persist;
pub mod process;
pub mod program;
pub mod request;
pub mod seccomp;
pub mod snapshot;
pub mod syscalls;
pub mod tasks;
pub mod vcpu;
pub mod vdso;
pub mod vm;

pub use caps::{Caps, Flavour};
pub use config::{AllowedPath, GuestOutput, VmConfig};
pub use request::{Request, RequestStats, Response};
pub use snapshot::Snapshot;
pub use vcpu::Hypervisor;
pub use vm::{flavour, Background, Finished, RequestError, Vm, VmError};
