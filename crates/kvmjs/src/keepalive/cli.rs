//! `kvmjs keepalive-sim`: the command line over the simulator ([`super::sim`]): flags
//! checked, the trace read from a file or stdin, both policies replayed, a table or JSON.

use super::sim::{simulate, NamedPolicy, SimConfig, SimError, MAX_SECONDS};
use super::{HybridConfig, Policy};
use std::path::PathBuf;
use std::time::Duration;

/// `kvmjs keepalive-sim` arguments.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// The trace: CSV with header `app,time_s`, sorted by time; `-` reads stdin.
    #[arg(long)]
    pub trace: PathBuf,
    /// Memory per loaded app, in MB (for the wasted GB*s).
    #[arg(long, default_value_t = 3.0)]
    pub memory_mb: f64,
    /// How long each invocation runs, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub exec_time_s: f64,
    /// The fixed policy's keep-alive, also the hybrid's fallback, in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub keep_alive_min: f64,
    /// Caps the hybrid policy's keep-alive windows, in seconds (tinykvm.json's
    /// idle_timeout); default: no cap.
    #[arg(long)]
    pub idle_timeout: Option<f64>,
    /// Print JSON (schema in the module docs) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The name of the fixed policy: "fixed-10min".
fn fixed_name(minutes: f64) -> String {
    format!("fixed-{minutes}min")
}

/// `kvmjs keepalive-sim`: runs both policies over the trace and returns what to print.
pub fn run(args: SimArgs) -> Result<String, SimError> {
    let flag = |flag, value: f64, ok: bool, problem| {
        if ok && value.is_finite() && value <= MAX_SECONDS {
            Ok(value)
        } else {
            Err(SimError::Flag {
                flag,
                value,
                problem,
            })
        }
    };
    let memory_mb = flag(
        "--memory-mb",
        args.memory_mb,
        args.memory_mb > 0.0,
        "pass the memory of a loaded app in MB, > 0",
    )?;
    let exec = flag(
        "--exec-time-s",
        args.exec_time_s,
        args.exec_time_s >= 0.0,
        "pass an execution time in seconds, >= 0",
    )?;
    let keep = flag(
        "--keep-alive-min",
        args.keep_alive_min,
        args.keep_alive_min >= 0.0,
        "pass a keep-alive in minutes, >= 0",
    )?;
    let cap = match args.idle_timeout {
        Some(s) => Some(Duration::from_secs_f64(flag(
            "--idle-timeout",
            s,
            s > 0.0,
            "pass an idle timeout in seconds, > 0",
        )?)),
        None => None,
    };
    let keep_alive = Duration::from_secs_f64(keep * 60.0);
    let hybrid = HybridConfig {
        fallback_keep_alive: keep_alive,
        max_keep_alive: cap,
        ..HybridConfig::default()
    };
    hybrid.validate()?;
    let policies = vec![
        NamedPolicy {
            name: fixed_name(keep),
            policy: Policy::Fixed(keep_alive),
        },
        NamedPolicy {
            name: "hybrid".into(),
            policy: Policy::Hybrid(hybrid),
        },
    ];
    let cfg = SimConfig {
        exec_time: Duration::from_secs_f64(exec),
        memory_mb,
    };
    let report = if args.trace.as_os_str() == "-" {
        simulate(std::io::stdin().lock(), policies, cfg)?
    } else {
        let file = std::fs::File::open(&args.trace).map_err(|source| SimError::Open {
            path: args.trace.clone(),
            source,
        })?;
        simulate(
            std::io::BufReader::with_capacity(1 << 20, file),
            policies,
            cfg,
        )?
    };
    Ok(if args.json {
        format!("{:#}\n", report.to_json())
    } else {
        report.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(trace: PathBuf) -> SimArgs {
        SimArgs {
            trace,
            memory_mb: 3.0,
            exec_time_s: 0.0,
            keep_alive_min: 10.0,
            idle_timeout: None,
            json: false,
        }
    }

    #[test]
    fn run_reads_a_file_and_prints_table_or_json() {
        let path =
            std::env::temp_dir().join(format!("kvmjs-keepalive-sim-{}.csv", std::process::id()));
        std::fs::write(&path, "app,time_s\na,0\nb,100\na,300\na,1000\n").unwrap();
        let table = run(args(path.clone())).unwrap();
        assert!(
            table.contains("fixed-10min")
                && table.contains("hybrid windows chosen: too_few_samples 4"),
            "{table}"
        );
        let json = run(SimArgs {
            json: true,
            ..args(path.clone())
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["policies"][0]["name"], "fixed-10min");
        assert_eq!(v["policies"][0]["cold_starts"], 3);
        let capped = run(SimArgs {
            json: true,
            idle_timeout: Some(60.0),
            ..args(path.clone())
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&capped).unwrap();
        assert_eq!(
            v["policies"][1]["cold_starts"], 4,
            "a 60 s cap makes a's 300 s return cold"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(run(args(path)), Err(SimError::Open { .. })));
        let bad = SimArgs {
            memory_mb: 0.0,
            ..args("-".into())
        };
        assert!(matches!(
            run(bad),
            Err(SimError::Flag {
                flag: "--memory-mb",
                ..
            })
        ));
    }
}
