//! What a snapshot file is only valid for, recorded at write time and compared at read
//! time: the host code (a build hash), the host (CPU and KVM facts that shaped the
//! snapshot), the guest binary, the app files and the configuration.

use crate::caps::{Caps, KvmKind, Vendor};
use crate::config::VmConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The build this process runs: the crate version and a hash of crates/vm/src (build.rs).
pub fn build_id() -> &'static str {
    env!("KVMJS_VM_SOURCE_HASH")
}

/// The host facts a snapshot depends on. The guest's libc chose its code paths (AVX-512
/// or AVX2 string functions...) from the CPUID it saw at boot, the resume trampoline's
/// XRSTOR mask and image layout come from XCR0 and the XSAVE size, and the trap stubs
/// differ between PVM and VMX/SVM: a snapshot is only valid where all of these match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFingerprint {
    /// The CPU's brand string (shown in messages, not compared).
    pub model: String,
    /// "Intel", "Amd" or "Other".
    pub vendor: String,
    /// "pvm" or "hardware".
    pub kvm: String,
    /// The guest's XCR0.
    pub xcr0: u64,
    /// The guest's XSAVE image size.
    pub xsave_size: u32,
    /// The guest's CPUID table: (function, index, flags, eax, ebx, ecx, edx).
    pub cpuid: Vec<(u32, u32, u32, u32, u32, u32, u32)>,
    /// Guest physical address width.
    pub maxphyaddr: u8,
    /// The TSC rate the guest reads time with (KVMJS_TSC_KHZ and the vDSO's factors at
    /// boot), `None`: no TSC clock.
    pub tsc_khz: Option<u32>,
    /// /proc/sys/kernel/random/boot_id of the host (empty for recorded fixtures): the
    /// guest's monotonic clock continues the writer's, which only holds within one boot
    /// of the host (the host answers clock and timeout calls with its own).
    pub boot_id: String,
    /// Manual dirty-log protection (decides whether the snapshot carries a calibration).
    pub manual_dirty_log: bool,
    /// How the syscall entry returns and whether RIP is past an MMIO trap (the probe).
    pub flavour: Option<(u8, bool)>,
    /// KVM memslots for read-only file slots (`None`: no read-only memory).
    pub readonly_slots: Option<usize>,
}

/// A CPUID entry without the fields that name the CPU the probe happened to run on (the
/// initial APIC ID in leaf 1 EBX[31:24], the x2APIC ID in leaves 0xB and 0x1F EDX, the
/// extended APIC, core and node IDs of leaf 0x8000001E): they differ between two runs on
/// one host and say nothing about which code paths the guest chose.
fn without_cpu_ids(e: &kvm_bindings::kvm_cpuid_entry2) -> (u32, u32, u32, u32, u32, u32, u32) {
    let (mut eax, mut ebx, mut ecx, mut edx) = (e.eax, e.ebx, e.ecx, e.edx);
    match e.function {
        1 => ebx &= 0x00ff_ffff,
        0xb | 0x1f => edx = 0,
        0x8000_001e => (eax, ebx, ecx) = (0, 0, 0),
        _ => {}
    }
    (e.function, e.index, e.flags, eax, ebx, ecx, edx)
}

impl HostFingerprint {
    /// The fingerprint of `caps` (a live probe or a recorded fixture).
    pub fn from_caps(caps: &Caps, readonly_slots: Option<usize>) -> HostFingerprint {
        HostFingerprint {
            model: caps.model.clone(),
            vendor: match caps.vendor {
                Vendor::Intel => "Intel",
                Vendor::Amd => "Amd",
                Vendor::Other => "Other",
            }
            .into(),
            kvm: match caps.kind {
                KvmKind::Pvm => "pvm",
                KvmKind::Hardware => "hardware",
            }
            .into(),
            xcr0: caps.xsave.xcr0,
            xsave_size: caps.xsave.size,
            cpuid: caps.cpuid.iter().map(without_cpu_ids).collect(),
            maxphyaddr: caps.maxphyaddr,
            tsc_khz: caps.guest_tsc_khz(),
            boot_id: String::new(),
            manual_dirty_log: caps.manual_dirty_log,
            flavour: caps.flavour.map(|f| (f.syscall_cpl, f.rip_past_trap)),
            readonly_slots,
        }
    }

    /// This host's fingerprint.
    pub fn live() -> Result<HostFingerprint, String> {
        let hv = crate::vcpu::Hypervisor::get()?;
        let mut f = Self::from_caps(hv.caps(), hv.readonly_slots());
        f.boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Ok(f)
    }

    /// The first difference between the file's host (`self`) and `here`, in words.
    pub fn difference(&self, here: &HostFingerprint) -> Option<String> {
        let who = format!("written on {:?}, this host is {:?}", self.model, here.model);
        let d = |what: String| Some(format!("{what}; {who}"));
        if self.vendor != here.vendor || self.kvm != here.kvm {
            return d(format!(
                "CPU vendor / KVM kind {} {} vs {} {}",
                self.vendor, self.kvm, here.vendor, here.kvm
            ));
        }
        if self.xcr0 != here.xcr0 || self.xsave_size != here.xsave_size {
            return d(format!(
                "guest XCR0 {:#x} ({} bytes of XSAVE state) vs {:#x} ({} bytes)",
                self.xcr0, self.xsave_size, here.xcr0, here.xsave_size
            ));
        }
        if self.cpuid != here.cpuid {
            let leaf = self
                .cpuid
                .iter()
                .zip(&here.cpuid)
                .find(|(a, b)| a != b)
                .map(|(a, b)| {
                    format!(
                        "leaf {:#x}.{}: eax..edx {:#x} {:#x} {:#x} {:#x} vs {:#x} {:#x} {:#x} {:#x}",
                        a.0, a.1, a.3, a.4, a.5, a.6, b.3, b.4, b.5, b.6
                    )
                })
                .unwrap_or_else(|| {
                    format!(
                        "{} vs {} leaves",
                        self.cpuid.len(),
                        here.cpuid.len()
                    )
                });
            return d(format!("the guest's CPUID differs ({leaf})"));
        }
        if self.boot_id != here.boot_id {
            return d(format!(
                "the host booted again since the snapshot (boot_id {} vs {}): the guest's monotonic clock would not be the host's",
                self.boot_id, here.boot_id
            ));
        }
        let rest = [
            (self.maxphyaddr != here.maxphyaddr, "physical address width"),
            (self.tsc_khz != here.tsc_khz, "TSC clock rate"),
            (
                self.manual_dirty_log != here.manual_dirty_log,
                "KVM manual dirty-log protection",
            ),
            (self.flavour != here.flavour, "KVM trap behaviour"),
            (
                self.readonly_slots.is_some() != here.readonly_slots.is_some(),
                "KVM read-only memory",
            ),
        ];
        rest.iter()
            .find(|(differs, _)| *differs)
            .and_then(|(_, what)| d(format!("{what} differs")))
    }
}

/// The guest binary: its identity on disk and the sha256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestId {
    /// Path (for messages).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// (device, inode, mtime ns, ctime ns): when all equal the file's, its bytes are the
    /// hashed ones (any write changes ctime, which no one can set back), and the 30 MB
    /// hash is skipped.
    pub stamp: (u64, u64, i128, i128),
    /// sha256 of the bytes.
    pub sha256: [u8; 32],
}

pub(super) fn stamp(m: &std::fs::Metadata) -> (u64, u64, i128, i128) {
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    (
        m.dev(),
        m.ino(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    )
}

/// sha256 of a file's bytes, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Guest hashes this process made: (path, size, stamp) -> sha256. A file's stamp changes
/// with any write to it, so an entry stays true while its stamp matches.
type HashCache = Vec<((PathBuf, u64, (u64, u64, i128, i128)), [u8; 32])>;

fn cached_sha256(
    path: &Path,
    size: u64,
    stamp: (u64, u64, i128, i128),
) -> std::io::Result<[u8; 32]> {
    static CACHE: std::sync::Mutex<HashCache> = std::sync::Mutex::new(Vec::new());
    let key = (path.to_path_buf(), size, stamp);
    let cache = || CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, sha)) = cache().iter().find(|(k, _)| *k == key) {
        return Ok(*sha);
    }
    let sha = sha256_file(path)?;
    let mut c = cache();
    if c.len() >= 64 {
        c.remove(0);
    }
    c.push((key, sha));
    Ok(sha)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl GuestId {
    /// Identifies the guest binary at `path` (hashing it once per process and stamp:
    /// 500 programs sharing one 30 MB guest write their files after one hash, not 500).
    pub fn of(path: &Path) -> std::io::Result<GuestId> {
        let m = std::fs::metadata(path)?;
        let stamp = stamp(&m);
        Ok(GuestId {
            path: path.to_path_buf(),
            size: m.len(),
            stamp,
            sha256: cached_sha256(path, m.len(), stamp)?,
        })
    }

    /// Why the guest at `path` is not this one, if it is not; hashes it only when its
    /// stamp changed.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if m.len() != self.size {
            return Err(format!(
                "{} is {} bytes, the snapshot's guest {} was {} bytes",
                path.display(),
                m.len(),
                self.path.display(),
                self.size
            ));
        }
        if stamp(&m) == self.stamp {
            return Ok(());
        }
        let sha = cached_sha256(path, m.len(), stamp(&m))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if sha != self.sha256 {
            return Err(format!(
                "{} has sha256 {}, the snapshot's guest {} had {}",
                path.display(),
                hex(&sha),
                self.path.display(),
                hex(&self.sha256)
            ));
        }
        Ok(())
    }
}

/// An app file the configuration names, and the sha256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppId {
    /// Host path.
    pub path: PathBuf,
    /// sha256 of its bytes.
    pub sha256: [u8; 32],
}

/// The app files of `cfg`: every program argument that names a regular host file (the
/// QuickJS guest's first argument is the app's .js file).
pub fn app_files(cfg: &VmConfig) -> Vec<PathBuf> {
    cfg.main_arguments
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_file())
        .collect()
}

/// Identifies the app files of `cfg`.
pub fn apps_of(cfg: &VmConfig) -> std::io::Result<Vec<AppId>> {
    app_files(cfg)
        .into_iter()
        .map(|path| {
            let sha256 = sha256_file(&path)?;
            Ok(AppId { path, sha256 })
        })
        .collect()
}

/// Why the app files of `cfg` are not `recorded`, if they are not.
pub fn check_apps(recorded: &[AppId], cfg: &VmConfig) -> Result<(), (PathBuf, String)> {
    let now = app_files(cfg);
    for a in recorded {
        if !now.contains(&a.path) {
            return Err((
                a.path.clone(),
                "the configuration no longer names it (or it is gone)".into(),
            ));
        }
        match sha256_file(&a.path) {
            Ok(sha) if sha == a.sha256 => {}
            Ok(sha) => {
                return Err((
                    a.path.clone(),
                    format!(
                        "its sha256 is {}, the snapshot's was {}",
                        hex(&sha),
                        hex(&a.sha256)
                    ),
                ))
            }
            Err(e) => return Err((a.path.clone(), e.to_string())),
        }
    }
    if let Some(extra) = now.iter().find(|p| !recorded.iter().any(|a| &a.path == *p)) {
        return Err((
            extra.clone(),
            "the configuration names it but the snapshot was made without it".into(),
        ));
    }
    Ok(())
}

/// The configuration settings that shape a snapshot, as (key, value) text. Time limits,
/// queue settings and the like are left out: they only matter after the snapshot, and the
/// restoring process's own values apply.
pub fn config_digest(cfg: &VmConfig) -> Vec<(String, String)> {
    let mut v = vec![
        ("name", format!("{:?}", cfg.name)),
        ("address_space", cfg.address_space.to_string()),
        ("max_memory", cfg.max_memory.to_string()),
        ("max_request_memory", cfg.max_request_memory.to_string()),
        ("max_request_body", cfg.max_request_body.to_string()),
        ("max_response_body", cfg.max_response_body.to_string()),
        ("ephemeral", cfg.ephemeral.to_string()),
        ("hugepages", cfg.hugepages.to_string()),
        ("main_arguments", format!("{:?}", cfg.main_arguments)),
        ("environment", format!("{:?}", cfg.environment)),
        ("allowed_paths", format!("{:?}", cfg.allowed_paths)),
        (
            "current_working_directory",
            format!("{:?}", cfg.current_working_directory),
        ),
        ("warmup", format!("{:?}", cfg.warmup)),
        ("scratch_paths", format!("{:?}", cfg.scratch_paths)),
        ("max_scratch_bytes", cfg.max_scratch_bytes.to_string()),
        ("program_path", format!("{:?}", cfg.program_path)),
        ("listen", format!("{:?}", cfg.listen)),
        ("fast_path", cfg.fast_path.to_string()),
        // The policy's settings, not its counters (`metrics`: live and process-wide).
        (
            "fetch",
            format!(
                "{:?} {:?} {:?} {} {} {} {}",
                cfg.fetch.allow,
                cfg.fetch.connect_timeout,
                cfg.fetch.timeout,
                cfg.fetch.max_response_size,
                cfg.fetch.max_request_body,
                cfg.fetch.max_open,
                cfg.fetch.max_per_request
            ),
        ),
    ];
    v.drain(..)
        .map(|(k, val)| (k.to_string(), val))
        .collect::<Vec<_>>()
}

/// The first setting that differs between `recorded` and `now`: (key, recorded, now).
pub fn config_difference(
    recorded: &[(String, String)],
    now: &[(String, String)],
) -> Option<(String, String, String)> {
    for (k, v) in now {
        match recorded.iter().find(|(rk, _)| rk == k) {
            Some((_, rv)) if rv == v => {}
            Some((_, rv)) => return Some((k.clone(), rv.clone(), v.clone())),
            None => return Some((k.clone(), "(not recorded)".into(), v.clone())),
        }
    }
    recorded
        .iter()
        .find(|(k, _)| !now.iter().any(|(nk, _)| nk == k))
        .map(|(k, v)| (k.clone(), v.clone(), "(not set)".into()))
}

/// Most files [`app_trees`] stamps per snapshot: a larger app directory is refused at
/// write time (stating it at every restore would cost more than the restore).
pub const MAX_TREE_FILES: usize = 10_000;

/// The files under one readable path of the configuration (an app's directory): each
/// file's path below it, size and mtime. A module the app imported at boot may have
/// changed without the app file itself changing; a changed stamp refuses the snapshot
/// (a false refusal only costs a boot; the named app files are hashed as well).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeStamp {
    /// The host path (a directory or a file).
    pub root: PathBuf,
    /// (path below the root, size, mtime ns), sorted.
    pub files: Vec<(String, u64, i128)>,
}

/// Whether `p` is the snapshot file `skip` or one of its temporary files (a snapshot file
/// kept in the app's directory must not refuse itself).
fn is_own(p: &Path, skip: &Path) -> bool {
    if p == skip {
        return true;
    }
    let (Some(name), Some(own)) = (p.file_name(), skip.file_name()) else {
        return false;
    };
    let (name, own) = (name.to_string_lossy(), own.to_string_lossy());
    p.parent() == skip.parent() && name.starts_with(&format!(".{own}.")) && name.ends_with(".tmp")
}

fn walk(
    root: &Path,
    rel: &Path,
    skip: &Path,
    out: &mut Vec<(String, u64, i128)>,
) -> Result<(), String> {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        let rel = rel.join(e.file_name());
        if is_own(&root.join(&rel), skip) {
            continue;
        }
        let ft = e.file_type().map_err(|e| e.to_string())?;
        if ft.is_dir() {
            // Symbolic links to directories are not followed (no cycles).
            walk(root, &rel, skip, out)?;
        } else if let Ok(m) = std::fs::metadata(root.join(&rel)) {
            out.push((
                rel.to_string_lossy().into_owned(),
                m.len(),
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ));
        }
        if out.len() > MAX_TREE_FILES {
            return Err(format!(
                "more than {MAX_TREE_FILES} files under {} (an app directory a snapshot file can follow)",
                root.display()
            ));
        }
    }
    Ok(())
}

/// Stamps of the configuration's readable paths, except the system library paths
/// (which only dynamically linked programs read, and which a snapshot file cannot hold)
/// and the snapshot file `skip` itself.
pub fn app_trees(cfg: &VmConfig, skip: &Path) -> Result<Vec<TreeStamp>, String> {
    let mut out = Vec::new();
    for a in &cfg.allowed_paths {
        if crate::config::SYSTEM_LIB_PATHS.contains(&a.virtual_path.as_str()) {
            continue;
        }
        let mut files = Vec::new();
        match std::fs::metadata(&a.real) {
            Ok(m) if m.is_dir() => walk(&a.real, Path::new(""), skip, &mut files)?,
            Ok(m) => files.push((
                String::new(),
                m.len(),
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            )),
            Err(_) => {}
        }
        files.sort();
        out.push(TreeStamp {
            root: a.real.clone(),
            files,
        });
    }
    Ok(out)
}

/// The first file that differs between `recorded` and `now`, and how.
pub fn tree_difference(recorded: &[TreeStamp], now: &[TreeStamp]) -> Option<(PathBuf, String)> {
    for (r, n) in recorded.iter().zip(now) {
        if r.root != n.root {
            return Some((
                n.root.clone(),
                "a readable path the snapshot did not have".into(),
            ));
        }
        let old: std::collections::BTreeMap<_, _> =
            r.files.iter().map(|(p, s, t)| (p, (s, t))).collect();
        let new: std::collections::BTreeMap<_, _> =
            n.files.iter().map(|(p, s, t)| (p, (s, t))).collect();
        for (p, st) in &new {
            match old.get(p) {
                None => return Some((r.root.join(p), "is new since the snapshot".into())),
                Some(o) if o != st => {
                    return Some((
                        r.root.join(p),
                        "changed since the snapshot (size or mtime)".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(p) = old.keys().find(|p| !new.contains_key(*p)) {
            return Some((r.root.join(p), "is gone since the snapshot".into()));
        }
    }
    if recorded.len() != now.len() {
        return Some((PathBuf::new(), "the readable paths changed".into()));
    }
    None
}
