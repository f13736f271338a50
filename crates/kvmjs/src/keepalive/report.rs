//! What `kvmjs keepalive-sim` reports ([`Report`]): per policy, cold starts, their
//! distribution over apps and the wasted memory-time; printed as a table or as the JSON
//! document whose schema the [`super::sim`] module docs give (bench/keepalive/ reads it).

use super::WindowsReason;

/// Per-app cold-start percentages (after the first invocation) over apps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppColdPct {
    /// Median app.
    pub p50: f64,
    /// 75th percentile app (the paper's headline figure).
    pub p75: f64,
    /// 90th percentile app.
    pub p90: f64,
    /// 99th percentile app.
    pub p99: f64,
    /// Fraction of apps with no cold start after their first invocation.
    pub zero_fraction: f64,
}

/// One policy's results.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyReport {
    /// Its name.
    pub name: String,
    /// Invocations replayed.
    pub invocations: u64,
    /// Cold starts, each app's first included.
    pub cold_starts: u64,
    /// Distribution over apps with at least two invocations (None if there are none).
    pub app_cold_pct: Option<AppColdPct>,
    /// Loaded-but-idle memory-time, GB*s.
    pub wasted_gb_s: f64,
    /// `wasted_gb_s` over the first policy's (None when that is 0).
    pub wasted_vs_fixed: Option<f64>,
    /// How many windows were chosen for each [`WindowsReason`] (indexed by
    /// [`WindowsReason::index`]): one per invocation.
    pub reasons: [u64; 5],
}

impl PolicyReport {
    /// `100 * cold_starts / invocations`.
    pub fn cold_start_pct(&self) -> f64 {
        if self.invocations == 0 {
            return 0.0;
        }
        100.0 * self.cold_starts as f64 / self.invocations as f64
    }
}

/// The simulator's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Distinct apps.
    pub apps: usize,
    /// Apps invoked once.
    pub single_invocation_apps: usize,
    /// Trace span: last start plus the execution time, minus the first start (s).
    pub span_s: f64,
    /// Memory per loaded app, MB.
    pub memory_mb: f64,
    /// One per policy, in the order given.
    pub policies: Vec<PolicyReport>,
}

/// Nearest-rank percentiles of per-app percentages (sorted in place).
pub(super) fn distribution(v: &mut [f64]) -> Option<AppColdPct> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((p * v.len() as f64 / 100.0).ceil() as usize).clamp(1, v.len()) - 1];
    Some(AppColdPct {
        p50: at(50.0),
        p75: at(75.0),
        p90: at(90.0),
        p99: at(99.0),
        zero_fraction: v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64,
    })
}

impl Report {
    /// The `--json` document (schema in the module docs).
    pub fn to_json(&self) -> serde_json::Value {
        let policies: Vec<serde_json::Value> = self
            .policies
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "invocations": p.invocations,
                    "cold_starts": p.cold_starts,
                    "cold_start_pct": p.cold_start_pct(),
                    "app_cold_pct": p.app_cold_pct.map(|d| serde_json::json!({
                        "p50": d.p50, "p75": d.p75, "p90": d.p90, "p99": d.p99,
                        "zero_fraction": d.zero_fraction,
                    })),
                    "wasted_gb_s": p.wasted_gb_s,
                    "wasted_vs_fixed": p.wasted_vs_fixed,
                })
            })
            .collect();
        serde_json::json!({ "policies": policies })
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let invocations = self.policies.first().map_or(0, |p| p.invocations);
        writeln!(
            f,
            "{invocations} invocations of {} apps ({} invoked once) over {:.0} s; {} MB per loaded app",
            self.apps, self.single_invocation_apps, self.span_s, self.memory_mb
        )?;
        writeln!(
            f,
            "{:<14} {:>11} {:>11} {:>7} | {:>29} {:>6} | {:>12} {:>8}",
            "policy",
            "invocations",
            "cold starts",
            "cold %",
            "app cold % p50/p75/p90/p99",
            "apps 0%",
            "wasted GB*s",
            "vs fixed"
        )?;
        for p in &self.policies {
            let dist = p
                .app_cold_pct
                .map_or(("-".to_owned(), "-".to_owned()), |d| {
                    (
                        format!("{:.1}/{:.1}/{:.1}/{:.1}", d.p50, d.p75, d.p90, d.p99),
                        format!("{:.1}%", 100.0 * d.zero_fraction),
                    )
                });
            let ratio = p
                .wasted_vs_fixed
                .map_or("-".to_owned(), |r| format!("{r:.3}"));
            writeln!(
                f,
                "{:<14} {:>11} {:>11} {:>7.2} | {:>29} {:>7} | {:>12.1} {:>8}",
                p.name,
                p.invocations,
                p.cold_starts,
                p.cold_start_pct(),
                dist.0,
                dist.1,
                p.wasted_gb_s,
                ratio
            )?;
        }
        for p in self.policies.iter().filter(|p| p.reasons[0] == 0) {
            let reasons: Vec<String> = WindowsReason::ALL
                .iter()
                .filter(|r| p.reasons[r.index()] > 0)
                .map(|r| format!("{r} {}", p.reasons[r.index()]))
                .collect();
            writeln!(f, "{} windows chosen: {}", p.name, reasons.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let policy = |name: &str, cold, dist, wasted, ratio| PolicyReport {
            name: name.into(),
            invocations: 8,
            cold_starts: cold,
            app_cold_pct: dist,
            wasted_gb_s: wasted,
            wasted_vs_fixed: ratio,
            reasons: if name == "hybrid" {
                [0, 5, 3, 0, 0]
            } else {
                [8, 0, 0, 0, 0]
            },
        };
        Report {
            apps: 3,
            single_invocation_apps: 1,
            span_s: 3600.0,
            memory_mb: 3.0,
            policies: vec![
                policy(
                    "fixed-10min",
                    4,
                    Some(AppColdPct {
                        p50: 50.0,
                        p75: 100.0,
                        p90: 100.0,
                        p99: 100.0,
                        zero_fraction: 0.0,
                    }),
                    2.0,
                    Some(1.0),
                ),
                policy("hybrid", 2, None, 0.5, Some(0.25)),
            ],
        }
    }

    #[test]
    fn json_has_exactly_the_documented_schema() {
        let j = report().to_json();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&j), ["policies"]);
        let f = &j["policies"][0];
        assert_eq!(
            keys(f),
            [
                "app_cold_pct",
                "cold_start_pct",
                "cold_starts",
                "invocations",
                "name",
                "wasted_gb_s",
                "wasted_vs_fixed"
            ]
        );
        assert_eq!(
            keys(&f["app_cold_pct"]),
            ["p50", "p75", "p90", "p99", "zero_fraction"]
        );
        assert_eq!(f["name"], "fixed-10min");
        assert_eq!(f["invocations"], 8);
        assert_eq!(f["cold_starts"], 4);
        assert_eq!(f["cold_start_pct"], 50.0);
        assert_eq!(f["app_cold_pct"]["p50"], 50.0);
        assert_eq!(f["wasted_gb_s"], 2.0);
        assert_eq!(f["wasted_vs_fixed"], 1.0);
        let h = &j["policies"][1];
        assert_eq!(
            (h["name"].as_str(), h["cold_start_pct"].as_f64()),
            (Some("hybrid"), Some(25.0))
        );
        assert!(h["app_cold_pct"].is_null());
        assert_eq!(h["wasted_vs_fixed"], 0.25);
    }

    #[test]
    fn table_has_a_row_per_policy_and_the_hybrid_reasons() {
        let t = report().to_string();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("8 invocations of 3 apps (1 invoked once) over 3600 s"));
        assert!(lines[2].starts_with("fixed-10min") && lines[2].contains("50.0/100.0/100.0/100.0"));
        assert!(
            lines[2].contains("50.00") && lines[2].contains("1.000"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("hybrid") && lines[3].contains("0.250"),
            "{t}"
        );
        assert_eq!(
            lines[4],
            "hybrid windows chosen: hybrid 5, too_few_samples 3"
        );
    }

    #[test]
    fn distribution_is_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        v.push(0.0);
        v.push(0.0);
        let d = distribution(&mut v).unwrap();
        // 102 values 0, 0, 1..=100: rank ceil(0.5 * 102) = 51 is 49.
        assert_eq!((d.p50, d.p75, d.p90, d.p99), (49.0, 75.0, 90.0, 99.0));
        assert_eq!(d.zero_fraction, 2.0 / 102.0);
        let d = distribution(&mut [7.0]).unwrap();
        assert_eq!((d.p50, d.p99, d.zero_fraction), (7.0, 7.0, 0.0));
        assert_eq!(distribution(&mut []), None);
    }
}
