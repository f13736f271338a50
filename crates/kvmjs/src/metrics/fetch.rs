//! Per-program `fetch()` metrics: read at each scrape from the counters the VMs of a
//! program share (`kvmjs_vm::fetch::FetchMetrics`), so the request path adds no locking.

use kvmjs_vm::fetch::{FetchMetrics, LATENCY_BUCKETS_MS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabel {
    program: String,
}

/// The programs whose fetch counters are exported.
#[derive(Debug, Default)]
pub struct FetchCollector {
    programs: Mutex<Vec<(String, Arc<FetchMetrics>)>>,
}

impl FetchCollector {
    /// Exports `m` as program `name`'s (replacing an earlier registration of the name).
    pub fn add(&self, name: &str, m: Arc<FetchMetrics>) {
        let mut l = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|(n, _)| n != name);
        l.push((name.to_string(), m));
    }
}

type Pick = fn(&kvmjs_vm::fetch::FetchStats) -> u64;

impl Collector for FetchCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let list: Vec<_> = self
            .programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, m)| (n.clone(), m.snapshot()))
            .collect();
        let counters: [(&str, &str, Pick); 4] = [
            ("fetches", "fetch() calls to backends started", |s| s.count),
            (
                "fetch_errors",
                "Started fetch() calls that failed (not allowed, network, timeout, limits)",
                |s| s.errors,
            ),
            (
                "fetch_received_bytes",
                "Response body bytes fetch() received",
                |s| s.bytes_in,
            ),
            ("fetch_sent_bytes", "Request body bytes fetch() sent", |s| {
                s.bytes_out
            }),
        ];
        for (name, help, pick) in counters {
            let mut d = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (program, s) in &list {
                let label = ProgramLabel {
                    program: program.clone(),
                };
                d.encode_family(&label)?
                    .encode_counter::<NoLabelSet, _, u64>(&pick(s), None)?;
            }
        }
        let mut d = enc.encode_descriptor(
            "fetch_duration_seconds",
            "Time from fetch() to the backend's response head",
            None,
            MetricType::Histogram,
        )?;
        for (program, s) in &list {
            let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
                .iter()
                .map(|ms| *ms as f64 / 1000.0)
                .chain([f64::MAX])
                .zip(s.latency_hist)
                .collect();
            buckets.last_mut().expect("one bucket at least").0 = f64::INFINITY;
            let count = buckets.iter().map(|b| b.1).sum();
            let label = ProgramLabel {
                program: program.clone(),
            };
            d.encode_family(&label)?.encode_histogram::<NoLabelSet>(
                s.latency_us as f64 / 1e6,
                count,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    #[test]
    fn renders_counters_and_histogram_per_program() {
        let c = Arc::new(FetchCollector::default());
        let m = Arc::new(FetchMetrics::default());
        m.count.fetch_add(3, Relaxed);
        m.errors.fetch_add(1, Relaxed);
        m.bytes_in.fetch_add(100, Relaxed);
        m.observe(Duration::from_millis(7));
        c.add("api", m);
        let mut r = Registry::with_prefix("kvmjs");
        r.register_collector(Box::new(c));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("kvmjs_fetches_total{program=\"api\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("kvmjs_fetch_errors_total{program=\"api\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("kvmjs_fetch_received_bytes_total{program=\"api\"} 100"),
            "{out}"
        );
        assert!(
            out.contains("kvmjs_fetch_duration_seconds_count{program=\"api\"} 1"),
            "{out}"
        );
    }
}
