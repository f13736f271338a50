//! Snapshot files: a program's warm snapshot written to disk and restored by a later
//! process, which then forks VMs from it as from a booted one ([`Vm::from_snapshot`]).
//!
//! A file is only used where it is valid: the same kvmjs build (a hash of this crate's
//! sources), the same host facts (CPU vendor, the guest's CPUID and XCR0, XSAVE size, KVM
//! kind: crate::caps), the same guest binary (sha256), the same app files (sha256 of the
//! files the arguments name, size and mtime of every file under the readable paths) and
//! the same configuration (the settings that shape a snapshot). Anything else is refused
//! with a typed [`PersistError`] before any of the file is used, and the caller boots
//! from scratch. Writing goes to a temporary file in the same directory, synced, then
//! renamed over the path: a reader never sees a half-written file.
//!
//! The checksum finds damage, not tampering: a snapshot file is as trusted as the
//! configuration naming it (whoever may write it chooses the guest's memory and the
//! emulated process state), so keep it where only kvmjs's own user may write.
//!
//! What cannot be written (refused at write time, by name): open sockets, eventfds,
//! epoll instances, socketpairs, open host or /proc files, scratch files, a thread
//! sleeping with a timeout, the fast path's state, a program that listens for
//! connections (deno and Linux servers). QuickJS programs hold none of these at their
//! snapshot.
//!
//! [`Vm::from_snapshot`]: crate::Vm::from_snapshot

pub mod format;
pub mod identity;
pub(crate) mod state;
#[cfg(test)]
mod tests;

use crate::config::VmConfig;
use crate::memory::{FileSlots, MemorySnapshot};
use crate::snapshot::{Parts, Snapshot};
use format::ContainerError;
use identity::{AppId, GuestId, HostFingerprint};
use serde::{Deserialize, Serialize};
use state::{ClockState, ProcessState, SlotSource, SlotState, SnapState};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a snapshot file was not written or not used. Every refusal of a file leaves
/// nothing half-used: boot from scratch and write the file again.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// No file at the path (the first start).
    #[error("no snapshot file at {0}; boot the program and write one")]
    Missing(PathBuf),
    /// Reading, writing or renaming failed.
    #[error("snapshot file {path}: {op} failed: {source}; check that the directory exists and is writable")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was done.
        op: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Not a snapshot file at all.
    #[error("{0} is not a kvmjs snapshot file; point snapshot_file at a path kvmjs may overwrite")]
    NotSnapshot(PathBuf),
    /// Written in another layout version.
    #[error("snapshot file {path} has format version {found}, this kvmjs uses {expected}; boot from scratch and write it again")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// Shorter than its own header says (a copy cut short).
    #[error("snapshot file {path} is truncated ({len} bytes of {expected}); boot from scratch and write it again")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes there.
        len: u64,
        /// Bytes its header describes.
        expected: u64,
    },
    /// Checksum or structure mismatch.
    #[error("snapshot file {path} is corrupt ({what}); boot from scratch and write it again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What does not match.
        what: String,
    },
    /// Written by other host code.
    #[error("snapshot file {path} was written by kvmjs build {found}, this is build {expected}; a snapshot is only valid for the build that wrote it: boot from scratch and write it again")]
    Build {
        /// The file.
        path: PathBuf,
        /// Its build.
        found: String,
        /// Ours.
        expected: String,
    },
    /// Written on a host whose CPU or KVM differs.
    #[error("snapshot file {path} was made on a different host: {what}. The guest chose its code paths from that CPU at boot, so it cannot run here: boot from scratch and write it again")]
    Host {
        /// The file.
        path: PathBuf,
        /// The difference.
        what: String,
    },
    /// The guest binary changed.
    #[error("snapshot file {path} was made with another guest binary: {what}; boot from scratch and write it again")]
    Guest {
        /// The file.
        path: PathBuf,
        /// The difference.
        what: String,
    },
    /// An app file changed.
    #[error("snapshot file {path} was made with another version of the app {app}: {what}; boot from scratch and write it again")]
    App {
        /// The file.
        path: PathBuf,
        /// The app file.
        app: PathBuf,
        /// The difference.
        what: String,
    },
    /// A setting that shapes the snapshot changed.
    #[error("snapshot file {path} was made with {key} = {found}, the configuration now says {expected}; boot from scratch and write it again")]
    Config {
        /// The file.
        path: PathBuf,
        /// The setting.
        key: String,
        /// The file's value.
        found: String,
        /// The configuration's.
        expected: String,
    },
    /// A file the boot read changed while it ran (not written).
    #[error("snapshot file {path}: the {what} changed while the program booted, so the snapshot may hold the old one; not written (the next start boots again and writes it)")]
    ChangedDuringBoot {
        /// The snapshot file.
        path: PathBuf,
        /// What changed.
        what: String,
    },
    /// The snapshot holds state a file cannot carry (refused at write time).
    #[error("the program's snapshot holds {what}; snapshot files support programs whose snapshot holds only memory, threads and the standard streams or /dev devices (QuickJS apps); leave snapshot_file unset for this program")]
    Unsupported {
        /// What it holds.
        what: String,
    },
    /// The host could not be probed, or restoring failed (memory, file slots).
    #[error("snapshot file {path} could not be restored: {what}; boot from scratch")]
    Restore {
        /// The file.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}

impl PersistError {
    /// A short label for logs and metrics ("build", "host", "app"...).
    pub fn reason(&self) -> &'static str {
        match self {
            PersistError::Missing(_) => "missing",
            PersistError::Io { .. } => "io",
            PersistError::NotSnapshot(_) => "not_snapshot",
            PersistError::Version { .. } => "version",
            PersistError::Truncated { .. } => "truncated",
            PersistError::Corrupt { .. } => "corrupt",
            PersistError::Build { .. } => "build",
            PersistError::Host { .. } => "host",
            PersistError::Guest { .. } => "guest",
            PersistError::App { .. } => "app",
            PersistError::Config { .. } => "config",
            PersistError::Unsupported { .. } => "unsupported",
            PersistError::ChangedDuringBoot { .. } => "changed",
            PersistError::Restore { .. } => "restore",
        }
    }
}

/// What a file is valid for (its first postcard section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    build: String,
    host: HostFingerprint,
    guest: GuestId,
    apps: Vec<AppId>,
    trees: Vec<identity::TreeStamp>,
    config: Vec<(String, String)>,
}

/// What was written.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// File size, bytes.
    pub bytes: u64,
    /// Guest memory pages in it.
    pub pages: usize,
}

fn io<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> PersistError + use<'a> {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// (device, inode) of `f`, the key file slots use.
fn file_key(f: &std::fs::File) -> std::io::Result<(u64, u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino(), m.len()))
}

/// What a boot reads from disk (the guest binary, the app files, the app directories),
/// taken before the boot: the file then names what the boot read, and a change during
/// the boot is noticed instead of being written under the new files' identity.
pub struct BootFiles {
    /// The guest's size and stamp (hashing it waits for the write, off the boot path;
    /// an unchanged stamp means unchanged bytes, see [`GuestId`]).
    guest: (u64, (u64, u64, i128, i128)),
    apps: Vec<identity::AppId>,
    trees: Vec<identity::TreeStamp>,
}

/// [`BootFiles`] of a program about to boot with `cfg` from `guest`, whose file is `path`.
pub fn boot_files(cfg: &VmConfig, path: &Path, guest: &Path) -> Result<BootFiles, PersistError> {
    Ok(BootFiles {
        guest: std::fs::metadata(guest)
            .map(|m| (m.len(), identity::stamp(&m)))
            .map_err(io(guest, "reading the guest binary"))?,
        apps: identity::apps_of(cfg).map_err(io(path, "reading the app files for it"))?,
        trees: identity::app_trees(cfg, path).map_err(|what| PersistError::Unsupported { what })?,
    })
}

/// Writes `snap`, booted from the guest binary at `guest` with the files `before` (taken
/// before the boot), to `path` (atomically).
pub fn write(
    snap: &Snapshot,
    path: &Path,
    guest: &Path,
    before: &BootFiles,
) -> Result<Written, PersistError> {
    let host = HostFingerprint::live().map_err(|what| PersistError::Restore {
        path: path.to_path_buf(),
        what,
    })?;
    // What the file cannot hold is refused before the guest is hashed.
    supported(snap)?;
    let ident = identity_of(snap, path, guest, host)?;
    let changed = |what: &str| {
        Err(PersistError::ChangedDuringBoot {
            path: path.to_path_buf(),
            what: what.to_string(),
        })
    };
    if (ident.guest.size, ident.guest.stamp) != before.guest {
        return changed("guest binary");
    }
    if ident.apps != before.apps || ident.trees != before.trees {
        return changed("app");
    }
    // The guest the VM runs is the file opened at pool start (its read-only pages are
    // mapped from it): the one at the path now must be that file.
    if let Some(f) = &snap.parts().cfg.image_file {
        let m = f
            .metadata()
            .map_err(io(guest, "reading the guest binary"))?;
        if (m.dev(), m.ino()) != (ident.guest.stamp.0, ident.guest.stamp.1) {
            return changed("guest binary (replaced since the program opened it)");
        }
    }
    let (bytes, pages) = encode(snap, guest, &ident)?;
    write_atomically(path, &bytes)?;
    Ok(Written {
        bytes: bytes.len() as u64,
        pages,
    })
}

/// What `snap` (booted from `guest` on host `host`) is valid for.
fn identity_of(
    snap: &Snapshot,
    path: &Path,
    guest: &Path,
    host: HostFingerprint,
) -> Result<Identity, PersistError> {
    let cfg = snap.parts().cfg;
    Ok(Identity {
        build: identity::build_id().to_string(),
        host,
        guest: GuestId::of(guest).map_err(io(guest, "reading the guest binary"))?,
        apps: identity::apps_of(cfg).map_err(io(path, "reading the app files for it"))?,
        trees: identity::app_trees(cfg, path).map_err(|what| PersistError::Unsupported { what })?,
        config: identity::config_digest(cfg),
    })
}

/// The process state of `snap` as data, or what in it a file cannot hold.
fn supported(snap: &Snapshot) -> Result<ProcessState, PersistError> {
    let p = snap.parts();
    if p.pause_call.is_some() {
        return Err(PersistError::Unsupported {
            what: "a program waiting on its listening socket (a Linux server or deno)".into(),
        });
    }
    ProcessState::capture(p.proc).map_err(|what| PersistError::Unsupported { what })
}

/// The file's bytes for `snap` and `ident`, and the number of memory pages in them.
fn encode(
    snap: &Snapshot,
    guest: &Path,
    ident: &Identity,
) -> Result<(Vec<u8>, usize), PersistError> {
    let p = snap.parts();
    let proc = supported(snap)?;
    let guest_key = match &p.cfg.image_file {
        Some(f) => file_key(f),
        None => std::fs::File::open(guest).and_then(|f| file_key(&f)),
    }
    .map_err(io(guest, "reading the guest binary"))?;
    let mut blobs = Vec::new();
    let mut slots = Vec::new();
    for s in p.slots.lock().unwrap_or_else(|e| e.into_inner()).all() {
        let source = if s.key == (guest_key.0, guest_key.1) {
            SlotSource::Guest
        } else {
            let bytes = s
                .bytes(s.gpa, s.len)
                .ok_or_else(|| PersistError::Unsupported {
                    what: format!("file slot {} that cannot be read", s.slot),
                })?;
            let at = blobs.len() as u64;
            blobs.extend_from_slice(bytes);
            SlotSource::Blob(at, s.len)
        };
        slots.push(SlotState {
            gpa: s.gpa,
            len: s.len,
            source,
        });
    }
    let khz = crate::vcpu::Hypervisor::get()
        .ok()
        .and_then(|hv| hv.caps().guest_tsc_khz());
    let c = crate::vdso::Clocks::sample(p.tsc_delta, khz);
    let st = SnapState {
        regs: *p.regs,
        sregs: *p.sregs,
        proc,
        req_ptr: p.req_ptr,
        cr3: p.cr3,
        boot_stats: state::stats_out(&p.boot_stats),
        protected: p.protected.to_vec(),
        slots,
        clock: ClockState {
            guest_tsc: c.guest_tsc,
            realtime_ns: c.realtime_ns,
            tsc_khz: khz,
        },
        calibration: state::calibration_out(p.calibration),
        pause_call: p.pause_call,
        memory_size: p.memory.size(),
    };
    state::no_deadline::REFUSED.with(|r| r.set(false));
    let unsupported = |e: postcard::Error| PersistError::Unsupported {
        what: if state::no_deadline::REFUSED.with(|r| r.replace(false)) {
            state::no_deadline::REFUSAL.to_string()
        } else {
            format!("state the encoder refused ({e})")
        },
    };
    let id_bytes = postcard::to_stdvec(ident).map_err(unsupported)?;
    let st_bytes = postcard::to_stdvec(&st).map_err(unsupported)?;
    let pages: Vec<(usize, &[u8])> = p.memory.pages().collect();
    let n = pages.len();
    Ok((
        format::encode(&id_bytes, &st_bytes, pages.into_iter(), &blobs),
        n,
    ))
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over
/// `path`, then syncs the directory: `path` is the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "snapshot".into(), |n| n.to_string_lossy().into_owned());
    // One writer at a time in this process (a pool restarted while its previous write
    // still runs writes the same path); a name no other writer uses, created exclusively.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp, "creating the temporary file"))?;
        f.write_all(bytes).map_err(io(&tmp, "writing"))?;
        f.sync_all().map_err(io(&tmp, "syncing"))?;
        std::fs::rename(&tmp, path).map_err(io(path, "renaming the temporary file over it"))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir, "syncing the directory"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    remove_stale_temporaries(&dir, &name);
    result
}

/// Removes the temporary files of writers of `name` that died mid-write (killed before
/// their rename): `.{name}.{pid}.{n}.tmp` whose process is gone and which nobody wrote for
/// [`STALE_AFTER`] (a writer in another PID namespace, a container sharing the volume,
/// has a pid this process cannot see).
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for e in rd.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let pid = f
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
            .and_then(|r| r.split('.').next())
            .and_then(|p| p.parse::<u32>().ok());
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= STALE_AFTER));
        if let Some(pid) = pid {
            if old && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Age after which a dead writer's temporary file is removed.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads the snapshot file at `path` for VMs of `cfg` booted from the guest binary at
/// `guest`, checking everything it depends on first.
pub fn read(path: &Path, cfg: Arc<VmConfig>, guest: &Path) -> Result<Arc<Snapshot>, PersistError> {
    let t0 = std::time::Instant::now();
    // (A fresh buffer costs ~2 µs per page in faults on the PVM host measured, most of
    // the read's millisecond; pre-faulting it costs the same, and mapping the file would
    // save ~0.3 ms at the risk of SIGBUS if someone truncated it meanwhile.)
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PersistError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(io(path, "reading")(e)),
    };
    let t_read = t0.elapsed();
    let here = HostFingerprint::live().map_err(|what| PersistError::Restore {
        path: path.to_path_buf(),
        what,
    })?;
    tracing::debug!(
        program = %cfg.name,
        "snapshot file {}: read {} bytes in {:?}, probed the host in {:?}",
        path.display(),
        bytes.len(),
        t_read,
        t0.elapsed() - t_read
    );
    decode(path, &bytes, cfg, guest, &here)
}

fn container_error(path: &Path, e: ContainerError) -> PersistError {
    let path = path.to_path_buf();
    match e {
        ContainerError::Magic => PersistError::NotSnapshot(path),
        ContainerError::Version(found) => PersistError::Version {
            path,
            found,
            expected: format::VERSION,
        },
        ContainerError::Truncated(len, expected) => PersistError::Truncated {
            path,
            len,
            expected,
        },
        ContainerError::Corrupt(what) => PersistError::Corrupt { path, what },
    }
}

/// Checks the identity of a file's bytes against this build, host `here`, `cfg` and
/// `guest`; returns the sections when everything matches.
fn check<'a>(
    path: &Path,
    bytes: &'a [u8],
    cfg: &VmConfig,
    guest: &Path,
    here: &HostFingerprint,
) -> Result<format::Sections<'a>, PersistError> {
    let sections = format::decode(bytes).map_err(|e| container_error(path, e))?;
    let corrupt = |what: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let ident: Identity = postcard::from_bytes(sections.identity)
        .map_err(|e| corrupt(format!("identity section: {e}")))?;
    let pb = || path.to_path_buf();
    if ident.build != identity::build_id() {
        return Err(PersistError::Build {
            path: pb(),
            found: ident.build,
            expected: identity::build_id().into(),
        });
    }
    if let Some(what) = ident.host.difference(here) {
        return Err(PersistError::Host { path: pb(), what });
    }
    let now = identity::config_digest(cfg);
    if let Some((key, found, expected)) = identity::config_difference(&ident.config, &now) {
        return Err(PersistError::Config {
            path: pb(),
            key,
            found,
            expected,
        });
    }
    ident
        .guest
        .check(guest)
        .map_err(|what| PersistError::Guest { path: pb(), what })?;
    // The VM will map the guest file opened at pool start: it must be the checked one.
    if let Some(f) = &cfg.image_file {
        let m = f.metadata().map_err(|e| PersistError::Guest {
            path: pb(),
            what: format!("the opened guest binary: {e}"),
        })?;
        if (m.dev(), m.ino()) != (ident.guest.stamp.0, ident.guest.stamp.1) {
            return Err(PersistError::Guest {
                path: pb(),
                what: format!(
                    "{} was replaced after this process opened it",
                    guest.display()
                ),
            });
        }
    }
    identity::check_apps(&ident.apps, cfg).map_err(|(app, what)| PersistError::App {
        path: pb(),
        app,
        what,
    })?;
    let trees = identity::app_trees(cfg, path).map_err(|what| PersistError::App {
        path: pb(),
        app: PathBuf::new(),
        what,
    })?;
    if let Some((app, what)) = identity::tree_difference(&ident.trees, &trees) {
        return Err(PersistError::App {
            path: pb(),
            app,
            what,
        });
    }
    Ok(sections)
}

/// [`read`] on bytes already in memory, against host fingerprint `here` (tests pass
/// recorded ones).
fn decode(
    path: &Path,
    bytes: &[u8],
    cfg: Arc<VmConfig>,
    guest: &Path,
    here: &HostFingerprint,
) -> Result<Arc<Snapshot>, PersistError> {
    let t0 = std::time::Instant::now();
    let sections = check(path, bytes, &cfg, guest, here)?;
    let t_check = t0.elapsed();
    let corrupt = |what: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let restore = |what: String| PersistError::Restore {
        path: path.to_path_buf(),
        what,
    };
    let st: SnapState =
        postcard::from_bytes(sections.state).map_err(|e| corrupt(format!("state section: {e}")))?;
    // Sizes the rest trusts: guest memory as this configuration boots it (the settings
    // were checked equal), and a writable-page bitmap of exactly that many pages (KVM
    // reads it whole).
    let space = crate::layout::align_up(cfg.address_space, crate::layout::HUGE_PAGE);
    if st.memory_size != space {
        return Err(corrupt(format!(
            "guest memory of {} bytes where the settings give {space}",
            st.memory_size
        )));
    }
    let words = (space / crate::layout::PAGE_SIZE).div_ceil(64) as usize;
    if let Some((bits, _)) = &st.calibration {
        if bits.len() != words {
            return Err(corrupt(format!(
                "a writable-page bitmap of {} words, not {words}",
                bits.len()
            )));
        }
    }
    let proc = st.proc.into_process().map_err(corrupt)?;
    let t_state = t0.elapsed();
    let memory = MemorySnapshot::from_pages(st.memory_size, cfg.hugepages, sections.pages)
        .map_err(|e| restore(format!("guest memory: {e}")))?;
    let t_memory = t0.elapsed();
    let slots =
        restore_slots(&st.slots, st.memory_size, sections.blobs, &cfg, guest).map_err(restore)?;
    tracing::debug!(
        program = %cfg.name,
        "snapshot file {}: checks {:?}, state {:?}, memory {:?}, file slots {:?}",
        path.display(),
        t_check,
        t_state - t_check,
        t_memory - t_state,
        t0.elapsed() - t_memory
    );
    let parts = Parts {
        memory,
        regs: st.regs,
        sregs: st.sregs,
        proc,
        req_ptr: st.req_ptr,
        cr3: st.cr3,
        boot_stats: state::stats_in(st.boot_stats),
        protected: st.protected,
        slots,
        tsc_delta: tsc_delta(&st.clock),
        calibration: state::calibration_in(st.calibration),
        pause_call: st.pause_call,
    };
    Ok(Arc::new(Snapshot::from_parts(parts, cfg)))
}

/// The TSC offset that continues the guest's clock: its TSC at the write plus the wall
/// time since (at the rate it calibrated against), so its CLOCK_REALTIME stays right in
/// this process, even after a host reboot reset the host's TSC.
fn tsc_delta(c: &ClockState) -> i64 {
    let now = crate::vdso::Clocks::sample(0, None);
    let elapsed_ns = now.realtime_ns.saturating_sub(c.realtime_ns);
    let ticks = c.tsc_khz.map_or(0, |k| {
        (u128::from(elapsed_ns) * u128::from(k) / 1_000_000) as u64
    });
    c.guest_tsc.wrapping_add(ticks).wrapping_sub(now.guest_tsc) as i64
}

/// A file-slot registry with the recorded slots at their recorded guest-physical
/// addresses (slots are placed in order, so the same sizes give the same addresses).
fn restore_slots(
    recorded: &[SlotState],
    space: u64,
    blobs: &[u8],
    cfg: &VmConfig,
    guest: &Path,
) -> Result<crate::memory::SharedSlots, String> {
    // No slots and no KVM (unit tests): a registry that never maps any.
    let hv = match crate::vcpu::Hypervisor::get() {
        Ok(hv) => hv,
        Err(_) if recorded.is_empty() => return Ok(FileSlots::new(space, 0, 0)),
        Err(e) => return Err(e),
    };
    let Some(max) = hv.readonly_slots() else {
        if recorded.is_empty() {
            return Ok(FileSlots::new(space, 0, 0));
        }
        return Err("this host has no KVM read-only memory for the file slots".into());
    };
    let limit = 1u64 << hv.caps().maxphyaddr.min(63);
    let reg = FileSlots::new(space, limit, max);
    {
        let mut r = reg.lock().unwrap_or_else(|e| e.into_inner());
        for s in recorded {
            let (file, size) = match s.source {
                SlotSource::Guest => {
                    let f = match &cfg.image_file {
                        Some(f) => f.clone(),
                        None => Arc::new(
                            std::fs::File::open(guest)
                                .map_err(|e| format!("{}: {e}", guest.display()))?,
                        ),
                    };
                    let size = f.metadata().map_err(|e| e.to_string())?.len();
                    (f, size)
                }
                SlotSource::Blob(at, len) => {
                    let bytes = usize::try_from(at)
                        .ok()
                        .zip(usize::try_from(len).ok())
                        .and_then(|(a, l)| blobs.get(a..a.checked_add(l)?))
                        .ok_or("a file slot's bytes lie outside the file")?;
                    (Arc::new(memfd(bytes)?), len)
                }
            };
            let (dev, ino, _) = file_key(&file).map_err(|e| e.to_string())?;
            let got = r
                .get_or_map(&file, size, (dev, ino))
                .ok_or("a file slot could not be mapped")?;
            if (got.gpa, got.len) != (s.gpa, s.len) {
                return Err(format!(
                    "a file slot landed at {:#x}+{:#x}, the snapshot has it at {:#x}+{:#x}",
                    got.gpa, got.len, s.gpa, s.len
                ));
            }
        }
    }
    Ok(reg)
}

/// A memfd holding `bytes` (a file slot's contents stored in the snapshot file).
fn memfd(bytes: &[u8]) -> Result<std::fs::File, String> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a static NUL-terminated name returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"kvmjs-snapshot-slot".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(bytes).map_err(|e| format!("memfd: {e}"))?;
    Ok(f)
}
