//! `kvmjs`: run JavaScript request handlers in per-request KVM micro-VMs.

use clap::{Parser, Subcommand};
use kvmjs::{config, keepalive, run, serve, snapfile_cli};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kvmjs",
    version,
    about = "Per-request isolated request handlers in KVM micro-VMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Linux program to completion (its output passed through, the run's figures on
    /// stderr, its exit status); a guest that pauses for requests is instead sent synthetic
    /// requests, with the responses and per-request counters printed.
    Run(run::RunArgs),
    /// Serve HTTP: route requests to the programs of tinykvm.json (or to one JS app),
    /// each in a pool of per-request-isolated micro-VMs.
    Serve(serve::ServeArgs),
    /// Boot the programs that set "snapshot_file" (or those named with --program) and
    /// write their snapshot files, which `kvmjs serve` then restores instead of booting;
    /// `--check` only says whether the existing files are valid here.
    Snapshot(snapfile_cli::SnapshotArgs),
    /// Print every tinykvm.json key kvmjs reads, with its meaning.
    Keys,
    /// Replay an invocation trace (CSV `app,time_s`) under the fixed 10-minute and the
    /// hybrid-histogram keep-alive policies; print cold starts and wasted memory-time.
    KeepaliveSim(keepalive::cli::SimArgs),
    /// Run the host capability probe and print what it found and decided; `--record`
    /// prints the raw inputs instead (the format of the unit tests' CPU fixtures).
    Probe {
        /// Print the raw probe inputs.
        #[arg(long)]
        record: bool,
    },
}

fn probe(record: bool) -> Result<(), String> {
    if record {
        let kvm = kvm_ioctls::Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
        let inputs = kvmjs_vm::caps::inputs::live::read(&kvm).map_err(|e| e.to_string())?;
        print!("{}", inputs.to_record());
        return Ok(());
    }
    let caps = kvmjs_vm::Hypervisor::get()?.caps();
    println!("{caps}");
    for w in &caps.warnings {
        println!("warning: {w}");
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => match run::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e.to_string()),
        },
        Command::Serve(args) => serve::serve(args).map_err(|e| e.to_string()),
        Command::Snapshot(args) => snapfile_cli::run(args)
            .map(|out| print!("{out}"))
            .map_err(|e| e.to_string()),
        Command::Probe { record } => probe(record),
        Command::KeepaliveSim(args) => keepalive::cli::run(args)
            .map(|out| print!("{out}"))
            .map_err(|e| e.to_string()),
        Command::Keys => {
            for (k, doc) in config::KEYS {
                println!("{k:<26} {doc}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvmjs: {e}");
            ExitCode::FAILURE
        }
    }
}
