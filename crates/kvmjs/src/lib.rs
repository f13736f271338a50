//! kvmjs as a library: the `kvmjs` command (src/main.rs) and the Varnish VMOD
//! (crates/vmod, through [`embed`]) share the configuration, pools, HTTP handling and
//! metrics.

pub mod config;
pub mod embed;
pub mod engine;
pub mod http;
pub mod keepalive;
mod mapped;
pub mod metrics;
pub mod pool;
pub mod run;
pub mod serve;
pub mod snapfile;
pub mod snapfile_cli;
mod summary;

/// Runs the host probe once, logs its one-line summary, and refuses a host that cannot
/// work with the probe's explanation.
pub fn host_caps() -> Result<&'static kvmjs_vm::Caps, String> {
    let hv = kvmjs_vm::Hypervisor::get()?;
    tracing::info!("{}", hv.caps());
    Ok(hv.caps())
}
