//! Finding the deno CLI: the config key, `KVMJS_DENO`, `.deno/bin/deno` (where
//! .ci/install-deps puts it) in a few named directories, then `PATH`.
//!
//! The `.deno/bin/deno` search looks only where an install of kvmjs or the project it
//! serves lives, never up the directory tree: a `.deno` planted in a shared directory such
//! as /tmp, or left in `/`, would otherwise run as every app's engine.

use super::EngineError;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Places to look for the deno CLI, in order.
#[derive(Debug, Default)]
pub struct DenoSearch {
    /// tinykvm.json `deno` (already resolved against the config's directory).
    pub configured: Option<PathBuf>,
    /// `KVMJS_DENO`.
    pub env: Option<OsString>,
    /// Directories that may hold `.deno/bin/deno`. `/` and directories anyone may write to
    /// are passed over (see `find`).
    pub near: Vec<PathBuf>,
    /// `PATH`.
    pub path_var: Option<OsString>,
}

impl DenoSearch {
    /// The search for this process: `configured`, then `KVMJS_DENO`, then `.deno/bin/deno`
    /// in, in order, the config file's directory, the working directory, the kvmjs
    /// executable's directory and the cargo checkout that built it (see
    /// [`install_dirs`]), then `PATH`.
    pub fn from_process(configured: Option<PathBuf>, config_dir: Option<&Path>) -> DenoSearch {
        let mut near: Vec<PathBuf> = config_dir.into_iter().map(Path::to_path_buf).collect();
        near.extend(std::env::current_dir().ok());
        if let Some(exe) = std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok())
        {
            near.extend(install_dirs(&exe));
        }
        let mut seen = Vec::new();
        near.retain(|d| {
            let new = !seen.contains(d);
            seen.push(d.clone());
            new
        });
        DenoSearch {
            configured,
            env: std::env::var_os("KVMJS_DENO"),
            near,
            path_var: std::env::var_os("PATH"),
        }
    }

    /// The deno binary, resolved (the guest runs the real file, not a symlink). A path
    /// named explicitly (the config key, else `KVMJS_DENO`) must exist: falling back to
    /// another deno would hide the mistake. Otherwise the first `.deno/bin/deno` in a
    /// `near` directory that is neither `/` nor writable by anyone, then `deno` on `PATH`.
    pub fn find(&self) -> Result<PathBuf, EngineError> {
        let explicit = match (
            &self.configured,
            self.env.as_ref().filter(|p| !p.is_empty()),
        ) {
            (Some(p), _) => Some((p.clone(), "tinykvm.json \"deno\"")),
            (None, Some(p)) => Some((PathBuf::from(p), "KVMJS_DENO")),
            (None, None) => None,
        };
        let mut candidates: Vec<(PathBuf, &str)> = Vec::new();
        let mut tried = Vec::new();
        match explicit {
            Some(c) => candidates.push(c),
            None => {
                tried.push("tinykvm.json \"deno\" (not set)".to_string());
                tried.push("KVMJS_DENO (not set)".to_string());
                for d in &self.near {
                    let p = d.join(".deno/bin/deno");
                    match shared_dir(d) {
                        Some(why) => tried.push(format!("{} (passed over: {why})", p.display())),
                        None => candidates.push((p, ".ci/install-deps location")),
                    }
                }
                match &self.path_var {
                    Some(path) => {
                        for d in std::env::split_paths(path).filter(|d| d.is_absolute()) {
                            candidates.push((d.join("deno"), "PATH"));
                        }
                    }
                    None => tried.push("PATH (not set)".into()),
                }
            }
        }
        for (p, why) in candidates {
            if p.is_file() {
                return p.canonicalize().map_err(|e| EngineError::DenoNotFound {
                    tried: vec![format!("{} ({why}): {e}", p.display())],
                });
            }
            tried.push(format!("{} ({why})", p.display()));
        }
        Err(EngineError::DenoNotFound { tried })
    }
}

/// Where an installed kvmjs (`exe`, resolved) keeps its own `.deno`: the executable's
/// directory (the image's /kvmjs, an unpacked release), and, for a binary cargo built in a
/// checkout (`<checkout>/target/[<triple>/]<profile>/[deps/]kvmjs`), that checkout when it
/// holds a Cargo.toml. Never a directory further up.
pub fn install_dirs(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut dirs = vec![dir.to_path_buf()];
    let checkout = dir
        .ancestors()
        .take(4)
        .find(|a| a.file_name().is_some_and(|n| n == "target"))
        .and_then(Path::parent);
    if let Some(c) = checkout.filter(|c| c.join("Cargo.toml").is_file()) {
        dirs.push(c.to_path_buf());
    }
    dirs
}

/// Why `.deno` in `dir` is not trusted, if it is not: `/` (not a project or an install) or
/// a directory anyone may write to, sticky or not (anyone could plant a deno there: /tmp).
fn shared_dir(dir: &Path) -> Option<&'static str> {
    if dir.parent().is_none() {
        return Some("the root directory");
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.permissions().mode() & 0o002 != 0 => Some("anyone may write to it"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kvmjs-search-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A fake deno in `dir/.deno/bin`.
    fn plant(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir.join(".deno/bin")).unwrap();
        let p = dir.join(".deno/bin/deno");
        std::fs::write(&p, "x").unwrap();
        p
    }

    #[test]
    fn search_order_and_error_names_every_place() {
        let d = tmp("order");
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::create_dir_all(a.join("bin")).unwrap();
        let near_deno = plant(&b);
        let path_deno = a.join("bin/deno");
        std::fs::write(&path_deno, "x").unwrap();
        let path_var = std::env::join_paths([a.join("bin")]).unwrap();
        // The config key wins, then KVMJS_DENO, then .deno/bin/deno, then PATH.
        let s = DenoSearch {
            configured: Some(path_deno.clone()),
            env: Some(near_deno.clone().into()),
            near: vec![b.clone()],
            path_var: Some(path_var.clone()),
        };
        assert_eq!(s.find().unwrap(), path_deno.canonicalize().unwrap());
        let s = DenoSearch {
            env: Some(path_deno.clone().into()),
            near: vec![b.clone()],
            ..Default::default()
        };
        assert_eq!(s.find().unwrap(), path_deno.canonicalize().unwrap());
        let s = DenoSearch {
            near: vec![a.clone(), b.clone()],
            path_var: Some(path_var.clone()),
            ..Default::default()
        };
        assert_eq!(s.find().unwrap(), near_deno.canonicalize().unwrap());
        let s = DenoSearch {
            near: vec![a.clone()],
            path_var: Some(path_var),
            ..Default::default()
        };
        assert_eq!(s.find().unwrap(), path_deno.canonicalize().unwrap());
        // A named path must exist: no fallback to another deno.
        for s in [
            DenoSearch {
                configured: Some(d.join("nope/deno")),
                env: Some(path_deno.clone().into()),
                near: vec![b.clone()],
                ..Default::default()
            },
            DenoSearch {
                env: Some(d.join("env/deno").into()),
                near: vec![b.clone()],
                ..Default::default()
            },
        ] {
            let e = s.find().unwrap_err().to_string();
            assert!(
                e.contains("/deno (") && !e.contains("install-deps location"),
                "{e}"
            );
        }
        // Nothing found: the error lists each place and what to do.
        let s = DenoSearch {
            near: vec![a.clone()],
            path_var: Some(std::env::join_paths([d.join("empty")]).unwrap()),
            ..Default::default()
        };
        let e = s.find().unwrap_err().to_string();
        for want in [
            "tinykvm.json \"deno\" (not set)",
            "KVMJS_DENO (not set)",
            "a/.deno/bin/deno (.ci/install-deps location)",
            "empty/deno (PATH)",
            ".ci/install-deps",
        ] {
            assert!(e.contains(want), "missing {want:?} in {e}");
        }
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn shared_directories_and_the_root_are_passed_over() {
        let d = tmp("shared");
        let (shared, sticky, own) = (d.join("shared"), d.join("sticky"), d.join("own"));
        for (dir, mode) in [(&shared, 0o777), (&sticky, 0o1777), (&own, 0o775)] {
            plant(dir);
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        // A deno planted in a directory anyone may write to (sticky or not) or in `/` is
        // never run; the next place is (a group-writable project is fine), and the error
        // says why each was passed over.
        let s = DenoSearch {
            near: vec![
                PathBuf::from("/"),
                shared.clone(),
                sticky.clone(),
                own.clone(),
            ],
            ..Default::default()
        };
        assert_eq!(
            s.find().unwrap(),
            own.join(".deno/bin/deno").canonicalize().unwrap()
        );
        let s = DenoSearch {
            near: vec![PathBuf::from("/"), shared.clone(), sticky.clone()],
            path_var: Some(OsString::new()),
            ..Default::default()
        };
        let e = s.find().unwrap_err().to_string();
        for want in [
            "/.deno/bin/deno (passed over: the root directory)",
            "shared/.deno/bin/deno (passed over: anyone may write to it)",
            "sticky/.deno/bin/deno (passed over: anyone may write to it)",
        ] {
            assert!(e.contains(want), "missing {want:?} in {e}");
        }
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn install_dirs_are_the_executable_and_its_checkout_only() {
        let d = tmp("install");
        let checkout = d.join("repo");
        let release = checkout.join("target/x86_64-unknown-linux-gnu/release");
        std::fs::create_dir_all(release.join("deps")).unwrap();
        std::fs::create_dir_all(checkout.join("target/debug")).unwrap();
        std::fs::write(checkout.join("Cargo.toml"), "").unwrap();
        // A checkout's binaries (with or without a target triple, test binaries in deps/)
        // find the checkout; nothing above it is looked at.
        for exe in [
            release.join("kvmjs"),
            release.join("deps/engine_deno-0123"),
            checkout.join("target/debug/kvmjs"),
        ] {
            let dirs = install_dirs(&exe);
            assert_eq!(dirs, vec![exe.parent().unwrap().into(), checkout.clone()]);
        }
        // An install outside a checkout: its own directory only, even if a parent is named
        // target or holds a .deno.
        assert_eq!(
            install_dirs(Path::new("/kvmjs/kvmjs")),
            vec![PathBuf::from("/kvmjs")]
        );
        let no_manifest = d.join("target/opt/bin/kvmjs");
        assert_eq!(install_dirs(&no_manifest), vec![d.join("target/opt/bin")]);
        assert!(install_dirs(Path::new("/")).is_empty());
        std::fs::remove_dir_all(&d).ok();
    }
}
