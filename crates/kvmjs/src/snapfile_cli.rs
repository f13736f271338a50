//! `kvmjs snapshot`: boot the programs that set "snapshot_file" and write their files
//! ahead of time (or, with --check, say whether the existing ones are valid here).

use crate::config::Program;
use crate::engine::Engine;
use kvmjs_vm::persist::{self, PersistError};
use kvmjs_vm::{Vm, VmConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `kvmjs snapshot` failures.
#[derive(Debug, thiserror::Error)]
pub enum SnapfileError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// `--program` names no program of the configuration.
    #[error("{config}: no program {name:?}; the programs are: {known}")]
    UnknownProgram {
        /// The configuration.
        config: PathBuf,
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The program has no snapshot_file.
    #[error("program {0:?} has no \"snapshot_file\"; add one to its entry in the configuration")]
    NoSnapshotFile(String),
    /// No program of the configuration has a snapshot_file.
    #[error("{0}: no program sets \"snapshot_file\"; add one to the programs to snapshot")]
    NoneConfigured(PathBuf),
    /// The guest binary could not be read.
    #[error("cannot read guest {path}: {source}")]
    Guest {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The program did not boot.
    #[error("program {program:?} failed to boot: {message}")]
    Boot {
        /// Program.
        program: String,
        /// The boot error.
        message: String,
    },
    /// Writing (or, with --check, reading) a file failed.
    #[error("program {program:?}: {source}")]
    Persist {
        /// Program.
        program: String,
        /// Why.
        source: PersistError,
    },
}

/// `kvmjs snapshot`: boot programs and write their snapshot files now.
#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// tinykvm.json with the programs.
    #[arg(long, default_value = "tinykvm.json")]
    config: PathBuf,
    /// Only these programs (repeatable); default: every program with a snapshot_file.
    #[arg(long = "program")]
    programs: Vec<String>,
    /// Guest program for .js apps (default: kvmjs-guest next to this executable).
    #[arg(long)]
    guest: Option<PathBuf>,
    /// Engine for .js programs that do not set "engine" (as for `kvmjs serve`).
    #[arg(long, value_enum, default_value_t = Engine::Quickjs)]
    engine: Engine,
    /// Only check the existing files (valid for this build, host, guest, app and
    /// configuration?) without booting or writing anything; fails if one is not.
    #[arg(long)]
    check: bool,
}

/// Runs `kvmjs snapshot`; returns what to print.
pub fn run(args: SnapshotArgs) -> Result<String, SnapfileError> {
    let exe = std::env::current_exe().ok();
    let programs =
        crate::serve::load_programs(&args.config, args.guest, exe.as_deref(), args.engine)?;
    let chosen: Vec<&Program> = if args.programs.is_empty() {
        let with: Vec<&Program> = programs
            .iter()
            .filter(|p| p.snapshot_file.is_some())
            .collect();
        if with.is_empty() {
            return Err(SnapfileError::NoneConfigured(args.config));
        }
        with
    } else {
        args.programs
            .iter()
            .map(|name| {
                let p = programs.iter().find(|p| &p.name == name).ok_or_else(|| {
                    SnapfileError::UnknownProgram {
                        config: args.config.clone(),
                        name: name.clone(),
                        known: programs
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
                match p.snapshot_file {
                    Some(_) => Ok(p),
                    None => Err(SnapfileError::NoSnapshotFile(name.clone())),
                }
            })
            .collect::<Result<_, _>>()?
    };
    let mut out = String::new();
    for p in chosen {
        let line = if args.check { check(p)? } else { write(p)? };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// The program's VM settings as the pool uses them (with the guest's file behind its
/// read-only pages), and the mapped guest.
fn vm_config(p: &Program) -> Result<(Arc<VmConfig>, crate::mapped::MappedFile), SnapfileError> {
    let elf = crate::mapped::MappedFile::open(&p.guest).map_err(|source| SnapfileError::Guest {
        path: p.guest.clone(),
        source,
    })?;
    let mut cfg = p.vm.clone();
    cfg.image_file = Some(elf.file().clone());
    Ok((Arc::new(cfg), elf))
}

fn file_of(p: &Program) -> &Path {
    p.snapshot_file
        .as_deref()
        .expect("chosen programs have a snapshot_file")
}

fn check(p: &Program) -> Result<String, SnapfileError> {
    let (cfg, _elf) = vm_config(p)?;
    let t0 = Instant::now();
    persist::read(file_of(p), cfg, &p.guest).map_err(|source| SnapfileError::Persist {
        program: p.name.clone(),
        source,
    })?;
    Ok(format!(
        "{}: {} is valid (read and checked in {:.2} ms)",
        p.name,
        file_of(p).display(),
        t0.elapsed().as_secs_f64() * 1e3
    ))
}

fn write(p: &Program) -> Result<String, SnapfileError> {
    let (cfg, elf) = vm_config(p)?;
    let t0 = Instant::now();
    let before = persist::boot_files(&cfg, file_of(p), &p.guest).map_err(|source| {
        SnapfileError::Persist {
            program: p.name.clone(),
            source,
        }
    })?;
    let vm = Vm::boot(cfg, elf.bytes()).map_err(|e| SnapfileError::Boot {
        program: p.name.clone(),
        message: e.to_string(),
    })?;
    let boot = t0.elapsed();
    let snap = vm.snapshot().expect("a booted VM has a snapshot");
    let w = persist::write(&snap, file_of(p), &p.guest, &before).map_err(|source| {
        SnapfileError::Persist {
            program: p.name.clone(),
            source,
        }
    })?;
    Ok(format!(
        "{}: wrote {} ({} pages, {:.1} MB; boot {:.1} ms, write {:.1} ms)",
        p.name,
        file_of(p).display(),
        w.pages,
        w.bytes as f64 / 1e6,
        boot.as_secs_f64() * 1e3,
        (t0.elapsed() - boot).as_secs_f64() * 1e3
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: &Path, programs: &[&str]) -> SnapshotArgs {
        SnapshotArgs {
            config: config.to_path_buf(),
            programs: programs.iter().map(|s| s.to_string()).collect(),
            guest: Some(PathBuf::from("/bin/true")),
            engine: Engine::Quickjs,
            check: true,
        }
    }

    #[test]
    fn programs_without_a_snapshot_file_are_named() {
        let dir = std::env::temp_dir().join(format!("kvmjs-snapfile-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.js"), "export default {}").unwrap();
        let cfg = dir.join("tinykvm.json");
        std::fs::write(&cfg, r#"{ "a": { "filename": "app.js" } }"#).unwrap();
        let e = run(args(&cfg, &[])).err().unwrap().to_string();
        assert!(e.contains("no program sets \"snapshot_file\""), "{e}");
        let e = run(args(&cfg, &["a"])).err().unwrap().to_string();
        assert!(e.contains("program \"a\" has no \"snapshot_file\""), "{e}");
        let e = run(args(&cfg, &["b"])).err().unwrap().to_string();
        assert!(e.contains("no program \"b\"; the programs are: a"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
