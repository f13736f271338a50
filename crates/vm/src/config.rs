//! The engine's typed settings for one program. `kvmjs` maps tinykvm.json onto this; the
//! names and defaults follow libvmod-tinykvm's tenant keys.

use std::path::PathBuf;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A file or directory the guest may open read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedPath {
    /// Path the guest uses (absolute).
    pub virtual_path: String,
    /// Host path it maps to.
    pub real: PathBuf,
    /// Whether everything below it is allowed too.
    pub prefix: bool,
}

impl AllowedPath {
    /// The same path inside and outside; a directory allows everything below it.
    pub fn same(path: impl Into<PathBuf>) -> Self {
        let real: PathBuf = path.into();
        AllowedPath {
            virtual_path: real.to_string_lossy().into_owned(),
            prefix: real.is_dir(),
            real,
        }
    }
}

/// What a dynamically linked program reads besides its own files (read-only): the
/// dynamic loader, shared libraries and the loader cache.
pub const SYSTEM_LIB_PATHS: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/ld.so.cache",
];

impl AllowedPath {
    /// [`SYSTEM_LIB_PATHS`] that exist on this host, each under its own name (resolved,
    /// so `/lib` is allowed on a merged-/usr system where it links to `usr/lib`).
    pub fn system_libs() -> Vec<AllowedPath> {
        SYSTEM_LIB_PATHS
            .iter()
            .filter_map(|p| {
                let real = std::path::Path::new(p).canonicalize().ok()?;
                Some(AllowedPath {
                    virtual_path: (*p).to_owned(),
                    prefix: real.is_dir(),
                    real,
                })
            })
            .collect()
    }
}

/// Requests the host sends before taking the snapshot (tinykvm.json `warmup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warmup {
    /// How many.
    pub num_requests: u32,
    /// Their URL.
    pub url: String,
    /// Their method.
    pub method: String,
    /// Their header fields ("Name: value").
    pub headers: Vec<String>,
}

/// Settings for one program's VMs.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Program name (for logs).
    pub name: String,
    /// Size of guest memory, the identity-mapped address space (bytes).
    pub address_space: u64,
    /// Limit on heap and mappings (bytes).
    pub max_memory: u64,
    /// Limit on memory a single request may add (bytes).
    pub max_request_memory: u64,
    /// Largest request body the host passes in (bytes).
    pub max_request_body: u64,
    /// Largest response body the host accepts (bytes).
    pub max_response_body: u64,
    /// Time allowed from start to the first pause.
    pub max_boot_time: Duration,
    /// Time allowed per request.
    pub max_request_time: Duration,
    /// Time the guest may spend on background work (`ctx.waitUntil`) after a response.
    pub max_background_time: Duration,
    /// Reset to the snapshot after every request.
    pub ephemeral: bool,
    /// Back guest memory with huge pages (MAP_HUGETLB).
    pub hugepages: bool,
    /// argv[1..].
    pub main_arguments: Vec<String>,
    /// Extra environment ("KEY=value").
    pub environment: Vec<String>,
    /// Files the guest may open.
    pub allowed_paths: Vec<AllowedPath>,
    /// Guest working directory.
    pub current_working_directory: String,
    /// Warm-up requests before the snapshot.
    pub warmup: Option<Warmup>,
    /// Where guest stdout/stderr go.
    pub output: GuestOutput,
    /// Guest directories served by the per-VM in-memory scratch filesystem (writable,
    /// empty at boot, reset with the VM; they shadow host paths). Absolute guest paths.
    pub scratch_paths: Vec<String>,
    /// Bytes the scratch filesystem may hold (ENOSPC beyond).
    pub max_scratch_bytes: u64,
    /// The program's guest path (readlink /proc/self/exe, the program's line in
    /// /proc/self/maps); `None`: /proc/self/exe does not exist.
    pub program_path: Option<String>,
    /// The open host file the guest's ELF bytes were mapped from (e.g. kvmjs-guest): its
    /// pages back the program's read-only slot, shared with the host's page cache, where
    /// the guest may not open the file itself. The same open file as the bytes, so a file
    /// renamed over it meanwhile changes nothing (replace guests by rename, never in
    /// place). `None`: a private copy (a memfd) backs the slot.
    pub image_file: Option<std::sync::Arc<std::fs::File>>,
    /// A program that serves HTTP itself: the address it listens on. `Some`: boot runs it
    /// to its first blocking wait on the listener and snapshots there, and each request is
    /// handed to it as a connection. `None`: the guest speaks the kvmjs request API.
    pub listen: Option<ListenSpec>,
    /// A listening program that is dynamically linked gets the fast-path library
    /// (crate::fastpath): one VM exit per request. `false`: every socket call traps.
    pub fast_path: bool,
    /// What the guest may fetch (tinykvm.json `fetch`; by default nothing).
    pub fetch: crate::fetch::FetchPolicy,
}

/// Where a program that serves HTTP itself listens (`VmConfig::listen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    /// The only address the guest may bind.
    pub addr: std::net::SocketAddr,
}

/// Where guest stdout/stderr go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuestOutput {
    /// Into the host log, line by line (servers: the guest cannot flood the terminal).
    #[default]
    Log,
    /// Straight to the host's stdout/stderr as written (`kvmjs run PROGRAM`).
    Passthrough,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            name: "program".into(),
            address_space: 256 * MIB,
            max_memory: 256 * MIB,
            max_request_memory: 64 * MIB,
            max_request_body: 16 * MIB,
            max_response_body: 64 * MIB,
            max_boot_time: Duration::from_secs(16),
            max_request_time: Duration::from_secs(8),
            // Cloudflare Workers' limit for waitUntil work after the response.
            max_background_time: Duration::from_secs(30),
            ephemeral: true,
            hugepages: false,
            main_arguments: Vec::new(),
            environment: Vec::new(),
            allowed_paths: Vec::new(),
            current_working_directory: "/".into(),
            warmup: None,
            output: GuestOutput::Log,
            scratch_paths: vec!["/tmp".into()],
            max_scratch_bytes: 64 * MIB,
            program_path: None,
            image_file: None,
            listen: None,
            fast_path: true,
            fetch: Default::default(),
        }
    }
}
