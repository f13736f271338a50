//! The errors of booting a VM and of serving one request.

use crate::limits::LimitsError;
use crate::loader::LoaderError;
use crate::memory::MemoryError;
use crate::mm::MmError;
use crate::request::PlaceError;
use crate::vcpu::KvmError;
use std::time::Duration;

/// Errors creating or booting a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// KVM is unavailable.
    #[error("{0}")]
    Hypervisor(String),
    /// A KVM call failed.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The program could not be loaded.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// The address space could not be built.
    #[error("building the guest address space failed: {0}; raise address_space")]
    Mm(#[from] MmError),
    /// The guest did not reach its pause.
    #[error("program {name:?} failed to boot: {reason}{}", fmt_output(output))]
    Boot {
        /// Program name.
        name: String,
        /// What went wrong.
        reason: String,
        /// The guest's last output.
        output: String,
    },
}

fn fmt_output(o: &str) -> String {
    if o.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- guest output ---\n{}", o.trim_end())
    }
}

/// Errors serving one request. After any of them the VM has been reset and serves on,
/// except [`RequestError::Broken`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// max_request_time passed.
    #[error("request timed out after {0:?} (max_request_time)")]
    Timeout(Duration),
    /// A CPU exception in the guest.
    #[error("{0}")]
    Fault(String),
    /// The guest exited (status, and what it last printed).
    #[error("guest exited with status {0} while handling the request{1}")]
    Exited(i32, String),
    /// The guest misused the API or raised a fatal signal.
    #[error("{0}")]
    Guest(String),
    /// The guest failed (a fault, an exit, a fatal signal) after a memory call of the
    /// request was refused: it ran out of the memory its limits allow.
    #[error("out of memory: the program was refused memory (max_memory {max_memory_mb} MB, max_request_memory {max_request_memory_mb} MB above its snapshot) and then failed: {detail}")]
    OutOfMemory {
        /// max_memory in MB.
        max_memory_mb: u64,
        /// max_request_memory in MB.
        max_request_memory_mb: u64,
        /// How it failed.
        detail: String,
    },
    /// The guest ended its streamed response abnormally (`stream_end` with
    /// `STREAM_FLAG_ABORT`, e.g. the app's stream errored): the client gets it truncated.
    #[error("the program aborted its streamed response (the client got it truncated)")]
    StreamAborted,
    /// The client went away in the middle of a streamed response; the guest was stopped.
    #[error("the client went away during the streamed response; the program was stopped")]
    ClientGone,
    /// The request does not fit.
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// A KVM call failed.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The watchdog could not be armed.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The VM could not be reset and must be discarded.
    #[error("VM is unusable ({0}); discard it and boot a new one")]
    Broken(String),
}
