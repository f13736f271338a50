//! Snapshot files (`"snapshot_file"`) at pool start: a pool's first VM is restored from
//! the program's file when the file is valid (no boot), else booted, and the file is
//! (re)written in the background. `kvmjs snapshot` (crate::snapfile_cli) writes the files
//! ahead of time. The file format and its checks are kvmjs_vm::persist.

use crate::config::Program;
use crate::metrics::Metrics;
use kvmjs_vm::persist::{self, PersistError};
use kvmjs_vm::{Vm, VmConfig, VmError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What worker 0 needs to start from a snapshot file.
pub struct Plan {
    name: String,
    guest: PathBuf,
    file: Option<PathBuf>,
}

impl Plan {
    /// The plan for `p` (no file: always boot).
    pub fn of(p: &Program) -> Plan {
        Plan {
            name: p.name.clone(),
            guest: p.guest.clone(),
            file: p.snapshot_file.clone(),
        }
    }

    /// Worker 0's VM: restored from the snapshot file when it is valid; else booted from
    /// `elf`, and the file written in the background (it never delays the first request).
    pub fn first_vm(
        &self,
        cfg: Arc<VmConfig>,
        elf: &[u8],
        metrics: &Arc<Metrics>,
    ) -> Result<Vm, VmError> {
        let Some(path) = &self.file else {
            return Vm::boot(cfg, elf);
        };
        let t0 = Instant::now();
        let refused = match persist::read(path, cfg.clone(), &self.guest) {
            Ok(snap) => match (t0.elapsed(), Vm::from_snapshot(snap)) {
                (read, Ok(vm)) => {
                    metrics.snapshot_file(&self.name, "hit");
                    tracing::info!(
                        program = %self.name,
                        "restored from snapshot file {} in {:.2} ms (no boot; read and checked in {:.2} ms)",
                        path.display(),
                        t0.elapsed().as_secs_f64() * 1e3,
                        read.as_secs_f64() * 1e3
                    );
                    return Ok(vm);
                }
                (_, Err(e)) => Some(format!("the restored snapshot did not start: {e}")),
            },
            Err(PersistError::Missing(_)) => None,
            Err(e) => Some(format!("{e} [reason: {}]", e.reason())),
        };
        if let Some(why) = refused {
            metrics.snapshot_file(&self.name, "refused");
            tracing::warn!(program = %self.name, "snapshot file refused, booting from scratch and rewriting it: {why}");
        }
        // What the boot reads, taken before it (the file must name what it read).
        let before = persist::boot_files(&cfg, path, &self.guest);
        let vm = Vm::boot(cfg, elf)?;
        let snap = vm.snapshot().expect("a booted VM has a snapshot");
        let (name, path, guest, m) = (
            self.name.clone(),
            path.clone(),
            self.guest.clone(),
            metrics.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-snapfile"))
            .spawn(move || {
                let t0 = Instant::now();
                match before.and_then(|b| persist::write(&snap, &path, &guest, &b)) {
                    Ok(w) => {
                        m.snapshot_file(&name, "written");
                        tracing::info!(
                            program = %name,
                            "wrote snapshot file {} ({} pages, {:.1} MB) in {:.1} ms",
                            path.display(),
                            w.pages,
                            w.bytes as f64 / 1e6,
                            t0.elapsed().as_secs_f64() * 1e3
                        );
                    }
                    Err(e) => {
                        m.snapshot_file(&name, "write_failed");
                        tracing::warn!(program = %name, "snapshot file not written: {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            metrics.snapshot_file(&self.name, "write_failed");
            tracing::warn!(program = %self.name, "snapshot file not written: cannot start its thread: {e}");
        }
        Ok(vm)
    }
}
