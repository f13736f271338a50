//! `kvmjs keepalive-sim`: replays an invocation trace under keep-alive policies (fixed
//! 10 minutes and the hybrid histogram) and reports cold starts and wasted memory-time, as
//! in section 5 of Shahrad et al. (ATC '20).
//!
//! The trace is CSV with the header `app,time_s`: an app id (no quoting; the last comma
//! ends it) and an invocation's start in seconds (a float), sorted by time. It is streamed
//! row by row, so memory grows with the number of apps, not rows, and time is O(rows)
//! (each hybrid decision scans the 240 bins once).
//!
//! Model, per app and policy: one instance. Each invocation runs `exec_time`; the app is
//! loaded while it runs. Idle times recorded in the histogram are start-to-start. An
//! invocation is warm if it starts while the app runs or while the [`Windows`] chosen after
//! the previous invocation keep it loaded ([`Windows::loaded_at`]); the time an app is
//! loaded but not running ([`Windows::loaded_during`]) is wasted, counted until the end of
//! the trace (the last start plus `exec_time`), times `memory_mb` per loaded app.
//!
//! `--json` prints:
//!
//! ```text
//! {"policies": [{
//!   "name": "fixed-10min",          // then "hybrid"
//!   "invocations": N,               // rows
//!   "cold_starts": N,               // including each app's first, compulsory one
//!   "cold_start_pct": x,            // 100 * cold_starts / invocations
//!   "app_cold_pct": {               // over apps with >= 2 invocations, each app's
//!     "p50": x, "p75": x, "p90": x, "p99": x,   // cold-start % after its first invocation
//!     "zero_fraction": x            // fraction of those apps with no cold start after it
//!   },                              // (null when no app has 2 invocations)
//!   "wasted_gb_s": x,               // loaded-but-idle time * memory_mb / 1024, in GB*s
//!   "wasted_vs_fixed": x            // wasted_gb_s / the first policy's (null if that is 0)
//! }, ...]}
//! ```
//!
//! Per-app percentages leave out the first invocation because every policy pays it; with
//! it, no app could have 0% and rarely invoked apps would sit at 100% under any policy.

use super::report::{distribution, PolicyReport, Report};
use super::{ConfigError, IdleHistogram, Policy, Windows};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The trace file cannot be opened.
    #[error("cannot open trace {path}: {source}; pass a CSV file with the header `app,time_s` (or - for stdin)")]
    Open {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Reading failed (I/O or invalid UTF-8).
    #[error("cannot read trace line {line}: {source}; the trace must be UTF-8 text")]
    Read {
        /// 1-based line.
        line: u64,
        /// The error.
        source: std::io::Error,
    },
    /// The first line is not the header.
    #[error("trace header is {found:?}; the first line must be `app,time_s`")]
    Header {
        /// What the first line was.
        found: String,
    },
    /// A row is malformed.
    #[error("trace line {line}: {problem}; rows are `APP,SECONDS`, e.g. `api,12.5`")]
    Row {
        /// 1-based line.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// Rows are not sorted by time.
    #[error("trace line {line}: time {time} is before the previous row's {previous}; sort the rows by time (e.g. `sort -t, -k2,2 -g`, header first)")]
    Unsorted {
        /// 1-based line.
        line: u64,
        /// Its time.
        time: f64,
        /// The previous row's time.
        previous: f64,
    },
    /// No rows after the header.
    #[error("the trace has no invocations; add rows `APP,SECONDS` after the header")]
    Empty,
    /// A command-line value is out of range.
    #[error("{flag} {value}: {problem}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: f64,
        /// What to pass instead.
        problem: &'static str,
    },
    /// The hybrid policy's settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A policy with the name it is reported under.
#[derive(Clone, Debug)]
pub struct NamedPolicy {
    /// Report name, e.g. "fixed-10min".
    pub name: String,
    /// The policy.
    pub policy: Policy,
}

/// Simulation settings.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Run time of each invocation.
    pub exec_time: Duration,
    /// Memory of a loaded app, MB.
    pub memory_mb: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            exec_time: Duration::ZERO,
            memory_mb: 3.0,
        }
    }
}

struct App {
    /// Created at the second invocation: most apps of real traces are invoked once.
    hist: Option<Box<IdleHistogram>>,
    last_start: f64,
    invocations: u64,
}

#[derive(Clone, Copy)]
struct AppPolicy {
    windows: Windows,
    /// When the last invocation ends (s).
    last_end: f64,
    cold: u64,
}

static EMPTY: IdleHistogram = IdleHistogram::new();

/// Replays invocations one at a time ([`Simulator::invoke`], in time order), then
/// [`Simulator::finish`].
pub struct Simulator {
    policies: Vec<NamedPolicy>,
    cfg: SimConfig,
    exec_s: f64,
    index: std::collections::HashMap<String, usize>,
    apps: Vec<App>,
    /// `apps.len() * policies.len()`, app-major.
    states: Vec<AppPolicy>,
    wasted_s: Vec<f64>,
    reasons: Vec<[u64; 5]>,
    first: Option<f64>,
    last: f64,
}

impl Simulator {
    /// A simulator for these policies (the first is the baseline of `wasted_vs_fixed`).
    pub fn new(policies: Vec<NamedPolicy>, cfg: SimConfig) -> Self {
        let n = policies.len();
        Self {
            policies,
            cfg,
            exec_s: cfg.exec_time.as_secs_f64(),
            index: std::collections::HashMap::new(),
            apps: Vec::new(),
            states: Vec::new(),
            wasted_s: vec![0.0; n],
            reasons: vec![[0; 5]; n],
            first: None,
            last: f64::NEG_INFINITY,
        }
    }

    /// One invocation of `app` starting at `t` seconds; `t` must not decrease between
    /// calls (the trace reader checks this).
    pub fn invoke(&mut self, app: &str, t: f64) {
        self.first.get_or_insert(t);
        self.last = t;
        let n = self.policies.len();
        let end = t + self.exec_s;
        let Some(&i) = self.index.get(app) else {
            // First invocation: cold under every policy, windows from an empty histogram.
            self.index.insert(app.to_owned(), self.apps.len());
            self.apps.push(App {
                hist: None,
                last_start: t,
                invocations: 1,
            });
            for (k, p) in self.policies.iter().enumerate() {
                let windows = p.policy.windows(&EMPTY);
                self.reasons[k][windows.reason.index()] += 1;
                self.states.push(AppPolicy {
                    windows,
                    last_end: end,
                    cold: 1,
                });
            }
            return;
        };
        let a = &mut self.apps[i];
        let hist = a.hist.get_or_insert_with(Box::default);
        hist.record(Duration::from_secs_f64((t - a.last_start).max(0.0)));
        a.last_start = t;
        a.invocations += 1;
        for (k, p) in self.policies.iter().enumerate() {
            let s = &mut self.states[i * n + k];
            // Starting the instant the previous run ends still finds the app loaded.
            if t > s.last_end {
                let gap = Duration::from_secs_f64(t - s.last_end);
                if !s.windows.loaded_at(gap) {
                    s.cold += 1;
                }
                self.wasted_s[k] += s.windows.loaded_during(gap).as_secs_f64();
            }
            s.last_end = s.last_end.max(end);
            // The windows for after this invocation, from the histogram including its IT.
            s.windows = p.policy.windows(hist);
            self.reasons[k][s.windows.reason.index()] += 1;
        }
    }

    /// Closes every app's last idle period at the end of the trace and summarises.
    pub fn finish(mut self) -> Report {
        let n = self.policies.len();
        let horizon = self.last + self.exec_s;
        let mut pcts: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut single = 0;
        for (i, a) in self.apps.iter().enumerate() {
            if a.invocations < 2 {
                single += 1;
            }
            for (k, pct) in pcts.iter_mut().enumerate() {
                let s = &self.states[i * n + k];
                let tail = Duration::from_secs_f64((horizon - s.last_end).max(0.0));
                self.wasted_s[k] += s.windows.loaded_during(tail).as_secs_f64();
                if a.invocations >= 2 {
                    pct.push(100.0 * (s.cold - 1) as f64 / (a.invocations - 1) as f64);
                }
            }
        }
        let invocations: u64 = self.apps.iter().map(|a| a.invocations).sum();
        let gb_s = |secs: f64| secs * self.cfg.memory_mb / 1024.0;
        let baseline = self.wasted_s.first().copied().unwrap_or(0.0);
        let policies = self
            .policies
            .iter()
            .enumerate()
            .map(|(k, p)| PolicyReport {
                name: p.name.clone(),
                invocations,
                cold_starts: (0..self.apps.len())
                    .map(|i| self.states[i * n + k].cold)
                    .sum(),
                app_cold_pct: distribution(&mut pcts[k]),
                wasted_gb_s: gb_s(self.wasted_s[k]),
                wasted_vs_fixed: (baseline > 0.0).then(|| self.wasted_s[k] / baseline),
                reasons: self.reasons[k],
            })
            .collect();
        Report {
            apps: self.apps.len(),
            single_invocation_apps: single,
            span_s: self.first.map_or(0.0, |f| horizon - f),
            memory_mb: self.cfg.memory_mb,
            policies,
        }
    }
}

/// Streams a CSV trace through a [`Simulator`].
pub fn simulate<R: BufRead>(
    mut trace: R,
    policies: Vec<NamedPolicy>,
    cfg: SimConfig,
) -> Result<Report, SimError> {
    let mut sim = Simulator::new(policies, cfg);
    let mut buf = String::new();
    let mut line = 0u64;
    let mut rows = 0u64;
    let mut previous = f64::NEG_INFINITY;
    loop {
        buf.clear();
        line += 1;
        let read = trace
            .read_line(&mut buf)
            .map_err(|source| SimError::Read { line, source })?;
        if read == 0 {
            break;
        }
        let text = buf.trim_end_matches(['\n', '\r']);
        if line == 1 {
            let header = text.trim_start_matches('\u{feff}');
            let fields: Vec<&str> = header.split(',').map(str::trim).collect();
            if fields != ["app", "time_s"] {
                return Err(SimError::Header {
                    found: header.to_owned(),
                });
            }
            continue;
        }
        if text.trim().is_empty() {
            continue;
        }
        let row = |problem: String| SimError::Row { line, problem };
        let (app, time) = text
            .rsplit_once(',')
            .ok_or_else(|| row(format!("no comma in {text:?}")))?;
        let app = app.trim();
        if app.is_empty() {
            return Err(row("the app id is empty".into()));
        }
        let t: f64 = time
            .trim()
            .parse()
            .map_err(|_| row(format!("time {:?} is not a number", time.trim())))?;
        // Durations are built from differences of these times: beyond ~3e11 s (10,000
        // years) they could not be represented.
        if !t.is_finite() || !(0.0..=MAX_SECONDS).contains(&t) {
            return Err(row(format!(
                "time {t} is out of range; use seconds from 0 to {MAX_SECONDS:e}"
            )));
        }
        if t < previous {
            return Err(SimError::Unsorted {
                line,
                time: t,
                previous,
            });
        }
        previous = t;
        sim.invoke(app, t);
        rows += 1;
    }
    if line == 1 {
        // Not even a header line.
        return Err(SimError::Header {
            found: String::new(),
        });
    }
    if rows == 0 {
        return Err(SimError::Empty);
    }
    Ok(sim.finish())
}

/// The largest time or duration (seconds) the simulator takes, ~10,000 years: far
/// beyond any trace, and far inside what a `Duration` holds.
pub(super) const MAX_SECONDS: f64 = 3e11;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalive::{HybridConfig, WindowsReason};

    const TEN_MIN: Duration = Duration::from_secs(600);

    fn fixed(d: Duration) -> NamedPolicy {
        NamedPolicy {
            name: "fixed".into(),
            policy: Policy::Fixed(d),
        }
    }

    fn hybrid(cfg: HybridConfig) -> NamedPolicy {
        NamedPolicy {
            name: "hybrid".into(),
            policy: Policy::Hybrid(cfg),
        }
    }

    fn sim(csv: &str, policies: Vec<NamedPolicy>, cfg: SimConfig) -> Report {
        simulate(csv.as_bytes(), policies, cfg).unwrap()
    }

    fn trace(rows: &[(&str, f64)]) -> String {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut s = String::from("app,time_s\n");
        for (app, t) in rows {
            s += &format!("{app},{t}\n");
        }
        s
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn fixed_keep_alive_by_hand() {
        // a: cold at 0; warm at 300 (300 s idle, loaded); cold at 1000 (700 s idle, 600
        // of them loaded). b: cold at 100, then loaded 600 s of the 900 s to the end.
        let csv = "app,time_s\na,0\nb,100\na,300\na,1000\n";
        let r = sim(
            csv,
            vec![fixed(TEN_MIN), hybrid(HybridConfig::default())],
            SimConfig::default(),
        );
        let f = &r.policies[0];
        assert_eq!((f.invocations, f.cold_starts), (4, 3));
        assert!(close(f.cold_start_pct(), 75.0));
        assert!(
            close(f.wasted_gb_s, 1500.0 * 3.0 / 1024.0),
            "{}",
            f.wasted_gb_s
        );
        // a: 1 cold of 2 after its first; b (one invocation) is left out.
        let d = f.app_cold_pct.unwrap();
        assert_eq!((d.p50, d.p99, d.zero_fraction), (50.0, 50.0, 0.0));
        assert_eq!(f.wasted_vs_fixed, Some(1.0));
        // Too few samples everywhere: the hybrid is its 10-minute fallback.
        let h = &r.policies[1];
        assert_eq!(
            (h.cold_starts, h.wasted_gb_s, h.wasted_vs_fixed),
            (3, f.wasted_gb_s, Some(1.0))
        );
        assert_eq!(h.reasons[WindowsReason::TooFewSamples.index()], 4);
        assert_eq!((r.apps, r.single_invocation_apps, r.span_s), (2, 1, 1000.0));
    }

    #[test]
    fn hybrid_prewarms_a_periodic_app_by_hand() {
        // Every 30 min; the hybrid trusts the histogram from 2 samples on.
        let csv = "app,time_s\np,0\np,1800\np,3600\np,5400\np,7200\n";
        let cfg = HybridConfig {
            min_samples: 2,
            ..HybridConfig::default()
        };
        let r = sim(csv, vec![fixed(TEN_MIN), hybrid(cfg)], SimConfig::default());
        // Fixed: every 30-minute gap is cold, each wastes 600 s: 2400 s.
        let f = &r.policies[0];
        assert_eq!(f.cold_starts, 5);
        assert!(close(f.wasted_gb_s, 2400.0 * 3.0 / 1024.0));
        assert_eq!(f.app_cold_pct.unwrap().p50, 100.0);
        // Hybrid: fallback after 0 and 1800 (cold at 1800 and 3600, 600 s wasted each);
        // from 3600 on, pre-warm 1620 s and keep-alive 426 s: 5400 and 7200 are warm,
        // each after 180 s loaded. 1560 s in all.
        let h = &r.policies[1];
        assert_eq!(h.cold_starts, 3);
        assert!(
            close(h.wasted_gb_s, 1560.0 * 3.0 / 1024.0),
            "{}",
            h.wasted_gb_s
        );
        assert!(close(h.wasted_vs_fixed.unwrap(), 1560.0 / 2400.0));
        assert_eq!(h.app_cold_pct.unwrap().p50, 50.0);
        assert_eq!(h.reasons, [0, 3, 2, 0, 0]);
    }

    #[test]
    fn execution_time_keeps_the_app_loaded_and_is_not_wasted() {
        // Runs of 10 s: a ends at 10, idles 90 s (warm at 100), runs to 110; the call at
        // 105 overlaps it (warm, nothing wasted); the trace ends at 115.
        let csv = "app,time_s\na,0\na,100\na,105\n";
        let cfg = SimConfig {
            exec_time: Duration::from_secs(10),
            memory_mb: 1024.0,
        };
        let r = sim(csv, vec![fixed(TEN_MIN)], cfg);
        assert_eq!(r.policies[0].cold_starts, 1);
        assert!(close(r.policies[0].wasted_gb_s, 90.0));
        assert_eq!(r.span_s, 115.0);
        // Simultaneous starts with zero run time: the second finds the app loaded, even
        // though the windows after the first (pre-warm 1620 s) have it unloaded. Cold: 0
        // and 1800 (before the histogram has a sample); 3600 is pre-warmed.
        let pre = Policy::Hybrid(HybridConfig {
            min_samples: 1,
            ..HybridConfig::default()
        });
        let r = sim(
            "app,time_s\na,0\na,1800\na,3600\na,3600\n",
            vec![NamedPolicy {
                name: "h".into(),
                policy: pre,
            }],
            SimConfig::default(),
        );
        assert_eq!(r.policies[0].cold_starts, 2);
        assert_eq!(r.policies[0].reasons, [0, 3, 1, 0, 0]);
    }

    #[test]
    fn per_app_distribution() {
        let csv = trace(&[
            ("w", 0.0),
            ("w", 60.0),
            ("w", 120.0), // 0%
            ("x", 0.0),
            ("x", 1000.0),
            ("x", 2000.0), // 100%
            ("y", 0.0),
            ("y", 60.0),
            ("y", 1000.0),
            ("y", 1060.0),
            ("y", 2000.0), // 50%
            ("z", 0.0),    // left out
            ("v", 0.0),
            ("v", 60.0), // 0%
        ]);
        let r = sim(&csv, vec![fixed(TEN_MIN)], SimConfig::default());
        let d = r.policies[0].app_cold_pct.unwrap();
        assert_eq!((d.p50, d.p75, d.p90, d.p99), (0.0, 50.0, 100.0, 100.0));
        assert_eq!(d.zero_fraction, 0.5);
        // Firsts of 5 apps, 2 of x, 2 of y.
        assert_eq!(r.policies[0].cold_starts, 5 + 2 + 2);
        let one = sim(
            "app,time_s\na,5\n",
            vec![fixed(TEN_MIN)],
            SimConfig::default(),
        );
        assert_eq!(one.policies[0].app_cold_pct, None);
        assert_eq!(one.policies[0].wasted_vs_fixed, None);
    }

    /// A deterministic trace: `apps` apps with periods from 5 to 90 minutes, +-20 s
    /// jitter, over two days, plus sparse noise apps.
    fn synthetic(apps: u64) -> String {
        let mut rows = Vec::new();
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 1000
        };
        for a in 0..apps {
            let period = 300.0 + (a * 317 % 5100) as f64;
            let mut t = next() as f64;
            while t < 172_800.0 {
                rows.push((format!("app{a}"), t));
                t += period + (next() as f64 / 1000.0 - 0.5) * 40.0;
            }
            for _ in 0..3 {
                rows.push((format!("noise{a}"), next() as f64 * 170.0));
            }
        }
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut s = String::from("app,time_s\n");
        for (app, t) in rows {
            s += &format!("{app},{t:.3}\n");
        }
        s
    }

    #[test]
    fn no_hybrid_settings_replay_exactly_as_fixed() {
        let csv = synthetic(20);
        let same = Policy::from_settings(None, Some(TEN_MIN)).unwrap().unwrap();
        let never_learns = HybridConfig {
            min_samples: u64::MAX,
            ..HybridConfig::default()
        };
        let r = sim(
            &csv,
            vec![
                fixed(TEN_MIN),
                NamedPolicy {
                    name: "settings".into(),
                    policy: same,
                },
                hybrid(never_learns),
            ],
            SimConfig::default(),
        );
        let key = |p: &PolicyReport| (p.cold_starts, p.wasted_gb_s, p.app_cold_pct);
        assert!(r.policies[0].cold_starts > 0);
        assert_eq!(key(&r.policies[0]), key(&r.policies[1]));
        assert_eq!(key(&r.policies[0]), key(&r.policies[2]));
    }

    #[test]
    fn hybrid_beats_fixed_on_periodic_apps() {
        let r = sim(
            &synthetic(40),
            vec![fixed(TEN_MIN), hybrid(HybridConfig::default())],
            SimConfig::default(),
        );
        let (f, h) = (&r.policies[0], &r.policies[1]);
        assert!(
            h.cold_starts * 3 < f.cold_starts,
            "{} vs {}",
            h.cold_starts,
            f.cold_starts
        );
        assert!(h.wasted_vs_fixed.unwrap() < 1.0, "{:?}", h.wasted_vs_fixed);
        assert!(h.reasons[WindowsReason::Hybrid.index()] > 0);
    }

    #[test]
    fn malformed_traces_are_refused_with_the_line() {
        let err = |csv: &str| {
            simulate(csv.as_bytes(), vec![fixed(TEN_MIN)], SimConfig::default()).unwrap_err()
        };
        assert!(matches!(err("app,time\na,1\n"), SimError::Header { .. }));
        assert!(matches!(err(""), SimError::Header { .. }));
        assert!(matches!(err("app,time_s\n"), SimError::Empty));
        assert!(matches!(err("app,time_s\n\n"), SimError::Empty));
        assert!(matches!(
            err("app,time_s\na\n"),
            SimError::Row { line: 2, .. }
        ));
        assert!(matches!(
            err("app,time_s\na,1\na,x\n"),
            SimError::Row { line: 3, .. }
        ));
        assert!(matches!(
            err("app,time_s\n,1\n"),
            SimError::Row { line: 2, .. }
        ));
        assert!(matches!(
            err("app,time_s\na,inf\n"),
            SimError::Row { line: 2, .. }
        ));
        let e = err("app,time_s\na,5\nb,4\n");
        assert!(matches!(e, SimError::Unsorted { line: 3, .. }));
        assert!(e.to_string().contains("sort"), "{e}");
        let bad_utf8: &[u8] = b"app,time_s\n\xff,1\n";
        assert!(matches!(
            simulate(bad_utf8, vec![fixed(TEN_MIN)], SimConfig::default()),
            Err(SimError::Read { line: 2, .. })
        ));
    }

    #[test]
    fn crlf_bom_blank_lines_and_commas_in_app_ids() {
        let csv = "\u{feff}app,time_s\r\nx,y,0\r\n\r\nx,y,60\r\n";
        let r = sim(csv, vec![fixed(TEN_MIN)], SimConfig::default());
        assert_eq!(
            (r.apps, r.policies[0].cold_starts, r.policies[0].invocations),
            (1, 1, 2)
        );
    }
}
