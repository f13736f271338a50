//! The snapshot's non-memory state as serde data: registers, the process (crate::process),
//! the calibration, the file slots; and the serde helpers the process types use for the
//! fields that need care (`#[serde(with = ...)]` in crate::tasks).

use crate::fs::table::PersistedFds;
use crate::fs::FdTable;
use crate::memory::HotPages;
use crate::mm::AddressSpace;
use crate::process::{Process, Signals};
use crate::request::{Request, RequestStats};
use crate::tasks::{Tasks, Tid};
use kvm_bindings::{kvm_regs, kvm_sregs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `Block::deadline`: a host `Instant` means nothing in another process, so a thread
/// sleeping with a timeout cannot be written; one without a deadline reads back as such.
pub mod no_deadline {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Instant;

    /// The refusal, in words (postcard's error type drops custom messages).
    pub const REFUSAL: &str =
        "a guest thread blocked with a timeout (sleep, timed futex or poll wait)";

    thread_local! {
        /// Set when [`serialize`] refused a deadline on this thread.
        pub static REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Writes `None`; refuses a deadline.
    pub fn serialize<S: Serializer>(d: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            None => s.serialize_none(),
            Some(_) => {
                REFUSED.with(|r| r.set(true));
                Err(serde::ser::Error::custom(REFUSAL))
            }
        }
    }

    /// Reads `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Option::<()>::deserialize(d).map(|_| None)
    }
}

/// `Task::xsave`: the 4 KiB XSAVE area of a thread that is not running, as words.
pub mod xsave {
    use crate::tasks::Xsave;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    /// Writes the words.
    pub fn serialize<S: Serializer>(x: &Option<Xsave>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            None => s.serialize_none(),
            Some(w) => s.serialize_some(&w[..]),
        }
    }

    /// Reads 1024 words back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Xsave>, D::Error> {
        let v = Option::<Vec<u32>>::deserialize(d)?;
        v.map(|v| {
            let words: [u32; 1024] = v.try_into().map_err(|v: Vec<u32>| {
                serde::de::Error::custom(format!("an XSAVE area of {} words, not 1024", v.len()))
            })?;
            Ok(Arc::new(words))
        })
        .transpose()
    }
}

/// The process state, owned (crate::process::Process without the fast path, which a
/// snapshot file cannot hold).
#[derive(Serialize, Deserialize)]
pub(crate) struct ProcessState {
    mm: AddressSpace,
    mm_base: u64,
    request_area: (u64, u64),
    fds: PersistedFds,
    thread_names: BTreeMap<Tid, String>,
    signals: Signals,
    fs_base: u64,
    tasks: Tasks,
    max_memory: u64,
    request_memory_base: Option<(u64, u64)>,
    changed: bool,
    memory_refused: bool,
}

impl ProcessState {
    /// The process as data, or what in it cannot be written.
    pub(crate) fn capture(p: &Process) -> Result<ProcessState, String> {
        if p.fast.is_some() {
            return Err("the fast path's shared page and connections (a listening Linux server with the fast-path library)".into());
        }
        let fds = p.fds.to_persisted().map_err(|u| match u.fd {
            Some(fd) => format!("{} (fd {fd})", u.what),
            None => u.what,
        })?;
        Ok(ProcessState {
            mm: p.mm.clone(),
            mm_base: p.mm_base,
            request_area: p.request_area,
            fds,
            thread_names: p.thread_names.clone(),
            signals: p.signals.clone(),
            fs_base: p.fs_base,
            tasks: p.tasks.clone(),
            max_memory: p.max_memory,
            request_memory_base: p.request_memory_base,
            changed: p.changed,
            memory_refused: p.memory_refused,
        })
    }

    /// The process back.
    pub(crate) fn into_process(self) -> Result<Process, String> {
        Ok(Process {
            mm: self.mm,
            mm_base: self.mm_base,
            request_area: self.request_area,
            fds: FdTable::from_persisted(self.fds)?,
            thread_names: self.thread_names,
            signals: self.signals,
            fs_base: self.fs_base,
            tasks: self.tasks,
            max_memory: self.max_memory,
            request_memory_base: self.request_memory_base,
            fast: None,
            changed: self.changed,
            memory_refused: self.memory_refused,
        })
    }
}

/// A calibration request (crate::request::Request, whose fields are all public).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestState {
    method: String,
    url: String,
    arg: String,
    content_type: String,
    headers: Vec<String>,
    body: Vec<u8>,
    warmup: bool,
}

impl From<&Request> for RequestState {
    fn from(r: &Request) -> Self {
        RequestState {
            method: r.method.clone(),
            url: r.url.clone(),
            arg: r.arg.clone(),
            content_type: r.content_type.clone(),
            headers: r.headers.clone(),
            body: r.body.clone(),
            warmup: r.warmup,
        }
    }
}

impl From<RequestState> for Request {
    fn from(r: RequestState) -> Self {
        Request {
            method: r.method,
            url: r.url,
            arg: r.arg,
            content_type: r.content_type,
            headers: r.headers,
            body: r.body,
            warmup: r.warmup,
        }
    }
}

/// What backs a file slot (crate::memory::slots) in the restored registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SlotSource {
    /// The guest binary (the configuration's image file, else the guest path).
    Guest,
    /// Bytes stored in the file's blob area at (offset, length).
    Blob(u64, u64),
}

/// One file slot: where it sits in guest-physical memory and what backs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotState {
    pub gpa: u64,
    pub len: u64,
    pub source: SlotSource,
}

/// The guest's clock at the write: its TSC and the host's CLOCK_REALTIME at one instant,
/// so a restore can continue the guest's TSC where its wall clock stays right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClockState {
    pub guest_tsc: u64,
    pub realtime_ns: u64,
    pub tsc_khz: Option<u32>,
}

/// Everything of a snapshot but its memory pages and blobs.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapState {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub proc: ProcessState,
    pub req_ptr: u64,
    pub cr3: u64,
    /// RequestStats: exits, syscalls, dirty pages, and the two times as f64 bits.
    pub boot_stats: (u64, u64, u64, u64, u64),
    pub protected: Vec<(u64, u64)>,
    pub slots: Vec<SlotState>,
    pub clock: ClockState,
    /// The writable set's bitmap and the calibration requests.
    pub calibration: Option<(Vec<u64>, Vec<RequestState>)>,
    pub pause_call: Option<(u64, u64)>,
    /// Guest memory size and whether it was on huge pages.
    pub memory_size: u64,
}

/// RequestStats as plain integers.
pub(crate) fn stats_out(s: &RequestStats) -> (u64, u64, u64, u64, u64) {
    (
        s.exits,
        s.syscalls,
        s.dirty_pages,
        s.reset_us.to_bits(),
        s.total_us.to_bits(),
    )
}

/// RequestStats back.
pub(crate) fn stats_in(t: (u64, u64, u64, u64, u64)) -> RequestStats {
    RequestStats {
        exits: t.0,
        syscalls: t.1,
        dirty_pages: t.2,
        reset_us: f64::from_bits(t.3),
        total_us: f64::from_bits(t.4),
    }
}

/// The calibration as data.
pub(crate) fn calibration_out(
    c: Option<(&HotPages, &[Request])>,
) -> Option<(Vec<u64>, Vec<RequestState>)> {
    c.map(|(h, r)| {
        (
            h.bitmap().to_vec(),
            r.iter().map(RequestState::from).collect(),
        )
    })
}

/// The calibration back.
pub(crate) fn calibration_in(
    c: Option<(Vec<u64>, Vec<RequestState>)>,
) -> Option<(HotPages, Vec<Request>)> {
    c.map(|(bits, reqs)| {
        (
            HotPages::from_bitmap(bits),
            reqs.into_iter().map(Request::from).collect(),
        )
    })
}
