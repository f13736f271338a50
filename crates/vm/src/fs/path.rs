//! Guest paths: lexical normalisation and what a normalised path names — a synthesized
//! file, a device, the scratch filesystem, a host file under an allowed path, or nothing.
//! Host paths are checked lexically, then again after resolving symlinks.

use super::dev::Device;
use super::synth::Node;
use super::Errno;
use crate::config::{AllowedPath, VmConfig};
use std::path::{Component, Path, PathBuf};

/// What a normalised guest path refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A file kvmjs synthesizes from the VM's own state.
    Synth(Node),
    /// A /dev device.
    Device(Device),
    /// A path inside the scratch filesystem (the full guest path).
    Scratch(String),
    /// A host file kvmjs provides itself (the fast path's library and preload list).
    /// (`crate::fastpath::file_at` of this guest path).
    Provided(String),
    /// A host file or directory the guest may read.
    Host {
        /// Canonical host path, inside its allowed entry.
        real: PathBuf,
        /// The guest's path.
        vpath: String,
    },
}

/// Lexically normalises `path` against `base` into an absolute guest path; `..` never
/// climbs above `/`.
pub fn normalize(base: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base}/{path}")
    };
    for c in Path::new(&joined).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether normalised `path` is `root` or below it.
pub fn is_under(root: &str, path: &str) -> bool {
    let r = root.trim_end_matches('/');
    r.is_empty()
        || path == r
        || (path.starts_with(r) && path.as_bytes().get(r.len()) == Some(&b'/'))
}

/// The scratch root that covers `vpath`, if any.
pub fn scratch_root<'a>(cfg: &'a VmConfig, vpath: &str) -> Option<&'a str> {
    cfg.scratch_paths
        .iter()
        .map(String::as_str)
        .find(|r| r.starts_with('/') && is_under(r, vpath))
}

/// Maps a normalised guest path to a host path if an allowed entry covers it; returns the
/// host path and the entry's root.
pub fn allowed_host_path(allowed: &[AllowedPath], vpath: &str) -> Option<(PathBuf, PathBuf)> {
    allowed_match(allowed, vpath).map(|(h, r, _)| (h, r))
}

/// [`allowed_host_path`] plus the length of the matching entry's guest path.
fn allowed_match(allowed: &[AllowedPath], vpath: &str) -> Option<(PathBuf, PathBuf, usize)> {
    for e in allowed {
        let v = e.virtual_path.trim_end_matches('/');
        let rest = if vpath == v || (v.is_empty() && e.prefix) {
            Some(vpath.trim_start_matches(v).trim_start_matches('/'))
        } else if e.prefix && vpath.starts_with(v) && vpath.as_bytes().get(v.len()) == Some(&b'/') {
            Some(&vpath[v.len() + 1..])
        } else {
            None
        };
        if let Some(rest) = rest {
            let host = if rest.is_empty() {
                e.real.clone()
            } else {
                e.real.join(rest)
            };
            return Some((host, e.real.clone(), v.len()));
        }
    }
    None
}

/// What normalised guest path `vpath` names. Synthesized files and devices come first (the
/// host's /proc, /sys and /dev are never visible), then the scratch filesystem or the
/// allowed host paths (the more specific wins). Anything else is ENOENT or EACCES (see
/// `outside`); a symlink leading out of its allowed entry is refused (EACCES).
pub fn lookup(cfg: &VmConfig, vpath: &str) -> Result<Target, Errno> {
    if let Some(node) = Node::by_path(vpath) {
        return Ok(Target::Synth(node));
    }
    if cfg.listen.is_some() && cfg.fast_path && crate::fastpath::file_at(vpath).is_some() {
        return Ok(Target::Provided(vpath.to_string()));
    }
    if vpath == "/proc/self/exe" {
        // Compared after normalising: a configured path that normalises to this one
        // ("/proc//self/exe") would otherwise recurse until the host's stack overflows.
        return match program_path(cfg).map(|p| normalize("/", p)) {
            Some(p) if p != vpath => lookup(cfg, &p),
            _ => Err(libc::ENOENT),
        };
    }
    if let Some(d) = Device::by_path(vpath) {
        return Ok(Target::Device(d));
    }
    if is_under("/proc", vpath) || is_under("/sys", vpath) {
        // Not provided: libc, std and deno probe these (cgroup v1 quota files, tsc_freq_khz)
        // and treat "missing" as "no such limit".
        tracing::debug!(program = %cfg.name, "guest looked for {vpath:?}, which the VM does not provide");
        return Err(libc::ENOENT);
    }
    // The more specific of a scratch root and an allowed entry wins (an allowed /tmp/app
    // stays readable under a scratch /tmp; a scratch DENO_DIR stays writable under an
    // allowed home directory); on a tie the host files stay visible.
    let allowed = allowed_match(&cfg.allowed_paths, vpath);
    if let Some(r) = scratch_root(cfg, vpath) {
        let scratch_len = r.trim_end_matches('/').len();
        if allowed.as_ref().is_none_or(|a| a.2 < scratch_len) {
            return Ok(Target::Scratch(vpath.to_string()));
        }
    }
    let Some((host, root, _)) = allowed else {
        return Err(outside(cfg, vpath));
    };
    // Symlinks must not lead out of the allowed entry.
    let real = host
        .canonicalize()
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    let root = root.canonicalize().map_err(|_| libc::ENOENT)?;
    if !real.starts_with(&root) {
        tracing::warn!(program = %cfg.name, "guest path {vpath:?} resolves outside its allowed path");
        return Err(libc::EACCES);
    }
    Ok(Target::Host {
        real,
        vpath: vpath.to_string(),
    })
}

/// The program's guest path: `VmConfig::program_path`, else argv[0] (the name) when it
/// is an absolute path, as `kvmjs run` makes it.
pub fn program_path(cfg: &VmConfig) -> Option<&str> {
    cfg.program_path
        .as_deref()
        .or(Some(cfg.name.as_str()))
        .filter(|p| p.starts_with('/'))
}

/// Whether `dir` is a directory of the VM's view on the way to something configured (an
/// allowed entry or a scratch root).
pub fn is_visible_ancestor(cfg: &VmConfig, dir: &str) -> bool {
    cfg.allowed_paths
        .iter()
        .map(|a| a.virtual_path.as_str())
        .chain(cfg.scratch_paths.iter().map(String::as_str))
        .map(|r| normalize("/", r))
        .any(|r| r != dir && is_under(dir, &r))
}

/// The answer for a path nothing configures. In a directory the VM shows (an ancestor of
/// an allowed path), it simply does not exist: programs probe such paths (deno looks for
/// deno.json in every ancestor directory) and take ENOENT as "not there". Anywhere else
/// it is refused with EACCES and a warning, since the program most likely needs an
/// `--allow` (or tried to escape).
fn outside(cfg: &VmConfig, vpath: &str) -> Errno {
    if is_visible_ancestor(cfg, &normalize(vpath, "..")) {
        tracing::debug!(program = %cfg.name, "guest looked for {vpath:?}, which is not under allowed_paths");
        libc::ENOENT
    } else {
        tracing::warn!(program = %cfg.name, "guest may not open {vpath:?}: not under allowed_paths");
        libc::EACCES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_handles_dots() {
        assert_eq!(normalize("/app", "x.js"), "/app/x.js");
        assert_eq!(normalize("/app", "../etc/shadow"), "/etc/shadow");
        assert_eq!(normalize("/", "/a/./b/../../../c"), "/c");
        assert_eq!(normalize("/tmp", "../etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn allowed_paths_match_on_component_boundaries() {
        let allowed = vec![AllowedPath {
            virtual_path: "/app".into(),
            real: "/host/app".into(),
            prefix: true,
        }];
        assert_eq!(
            allowed_host_path(&allowed, "/app/x.js").unwrap().0,
            PathBuf::from("/host/app/x.js")
        );
        assert!(allowed_host_path(&allowed, "/application").is_none());
        assert!(allowed_host_path(&allowed, "/etc/shadow").is_none());
    }

    #[test]
    fn lookup_order_and_escapes() {
        let cfg = VmConfig::default();
        assert_eq!(
            lookup(&cfg, "/proc/self/cgroup"),
            Ok(Target::Synth(Node::Cgroup))
        );
        assert_eq!(
            lookup(&cfg, "/dev/urandom"),
            Ok(Target::Device(Device::Random))
        );
        assert_eq!(lookup(&cfg, "/proc/1/environ"), Err(libc::ENOENT));
        assert_eq!(lookup(&cfg, "/etc/passwd"), Err(libc::EACCES));
        assert_eq!(
            lookup(&cfg, "/deno.json"),
            Err(libc::ENOENT),
            "/ leads to /tmp"
        );
        assert_eq!(lookup(&cfg, "/proc/self/exe"), Err(libc::ENOENT));
        let named = VmConfig {
            name: "/opt/x/prog".into(),
            ..VmConfig::default()
        };
        assert_eq!(program_path(&named), Some("/opt/x/prog"));
        let looping = VmConfig {
            name: "/proc//self/exe".into(),
            ..VmConfig::default()
        };
        assert_eq!(lookup(&looping, "/proc/self/exe"), Err(libc::ENOENT));
        assert_eq!(program_path(&cfg), None);
        assert_eq!(
            lookup(&cfg, "/tmp/a/b"),
            Ok(Target::Scratch("/tmp/a/b".into()))
        );
        assert!(scratch_root(&cfg, "/tmpfoo").is_none());
        let cfg = VmConfig {
            allowed_paths: vec![AllowedPath {
                virtual_path: "/tmp/app".into(),
                real: "/nonexistent-kvmjs".into(),
                prefix: true,
            }],
            ..VmConfig::default()
        };
        assert_eq!(
            lookup(&cfg, "/tmp/app/x"),
            Err(libc::ENOENT),
            "the allowed entry wins"
        );
        assert_eq!(lookup(&cfg, "/tmp/x"), Ok(Target::Scratch("/tmp/x".into())));
        // /tmp/../etc/passwd normalises to /etc/passwd, which nothing allows.
        assert_eq!(
            lookup(&cfg, &normalize("/", "/tmp/../etc/passwd")),
            Err(libc::EACCES)
        );
    }
}
