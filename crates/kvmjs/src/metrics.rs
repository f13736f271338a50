//! Prometheus metrics per program, served at /metrics.

use kvmjs_vm::RequestError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

// The explicit path lets fuzz targets that include this file with #[path] find it too.
#[path = "metrics/fetch.rs"]
mod fetch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabel {
    program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    program: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabel {
    program: String,
    engine: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    program: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabel {
    program: String,
    window: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabel {
    program: String,
    part: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotFileLabel {
    program: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    program: String,
    kind: String,
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~13 s
    Histogram::new(exponential_buckets(25e-6, 2.0, 20))
}

fn reset_histogram() -> Histogram {
    // 1 µs .. ~33 ms
    Histogram::new(exponential_buckets(1e-6, 2.0, 16))
}

/// All server metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabel, Counter>,
    latency: Family<ProgramLabel, Histogram, fn() -> Histogram>,
    exits: Family<ProgramLabel, Counter>,
    dirty_pages: Family<ProgramLabel, Counter>,
    reset: Family<ProgramLabel, Histogram, fn() -> Histogram>,
    cold_starts: Family<ProgramLabel, Counter>,
    cold_start_seconds: Family<ProgramLabel, Histogram, fn() -> Histogram>,
    cold_start_causes: Family<CauseLabel, Counter>,
    snapshot_file: Family<SnapshotFileLabel, Counter>,
    keep_alive: Family<WindowLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    memory: Family<PartLabel, Gauge>,
    errors: Family<ErrorLabel, Counter>,
    loaded: Family<ProgramLabel, Gauge>,
    programs: Family<EngineLabel, Gauge>,
    background: Family<ProgramLabel, Histogram, fn() -> Histogram>,
    connections: Gauge,
    connections_closed: Family<ReasonLabel, Counter>,
    body_bytes: Gauge,
    fetch: Arc<fetch::FetchCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kvmjs");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            exits: Family::default(),
            dirty_pages: Family::default(),
            reset: Family::new_with_constructor(reset_histogram),
            cold_starts: Family::default(),
            cold_start_seconds: Family::new_with_constructor(latency_histogram),
            cold_start_causes: Family::default(),
            snapshot_file: Family::default(),
            keep_alive: Family::default(),
            memory: Family::default(),
            errors: Family::default(),
            loaded: Family::default(),
            programs: Family::default(),
            background: Family::new_with_constructor(latency_histogram),
            connections: Gauge::default(),
            connections_closed: Family::default(),
            body_bytes: Gauge::default(),
            fetch: Arc::default(),
            registry: Registry::default(),
        };
        registry.register_collector(Box::new(m.fetch.clone()));
        registry.register(
            "requests",
            "Requests answered, by status code",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response (the VM reset runs after the response is sent)",
            m.latency.clone(),
        );
        registry.register(
            "vm_exits",
            "VM exits while serving requests",
            m.exits.clone(),
        );
        registry.register(
            "dirty_pages",
            "Guest pages restored by the resets after requests (the reset of a request is counted once it ran, after its response)",
            m.dirty_pages.clone(),
        );
        registry.register(
            "reset_seconds",
            "Time to reset a VM to its snapshot after a request (off the response path)",
            m.reset.clone(),
        );
        registry.register(
            "cold_starts",
            "Program boots a request waited for (first request, after an unload or a failure; not pre-warms)",
            m.cold_starts.clone(),
        );
        registry.register(
            "cold_start_causes",
            "Program boots by cause: first (its first request), after_unload (a request after \
             a keep-alive unload), after_failure (after its VMs went away), prewarm (loaded \
             ahead of the predicted next request by the hybrid keep-alive policy), \
             pool_growth (one more VM forked because requests waited)",
            m.cold_start_causes.clone(),
        );
        registry.register(
            "snapshot_file",
            "Snapshot files (the program's snapshot_file) at pool start: hit (restored, no \
             boot), written (booted and written), refused (stale or foreign: booted instead; \
             the reason is logged), write_failed (booted, the file could not be written)",
            m.snapshot_file.clone(),
        );
        registry.register(
            "keep_alive_seconds",
            "The keep-alive policy's current windows: prewarm (unloaded this long after a \
             request, then loaded again) and keep_alive (then kept loaded this long)",
            m.keep_alive.clone(),
        );
        registry.register(
            "program_memory_bytes",
            "Host memory a loaded program holds, by part: snapshot (its warm snapshot's \
             pages, one copy shared by its VMs) and vms (what its VMs hold on their own: \
             pages they wrote or allocated; measured when a VM starts and then after a \
             request at most once a second per 256 MiB of address space)",
            m.memory.clone(),
        );
        registry.register(
            "cold_start_seconds",
            "Time to boot a program and start its VMs",
            m.cold_start_seconds.clone(),
        );
        registry.register("errors", "Failed requests by kind", m.errors.clone());
        registry.register(
            "program_loaded",
            "Whether the program's VMs are running",
            m.loaded.clone(),
        );
        registry.register(
            "program_info",
            "Each configured program, with the engine that runs it (quickjs, deno, server, elf); join on `program`",
            m.programs.clone(),
        );
        registry.register(
            "background_seconds",
            "Time VMs spent on ctx.waitUntil work after responses (then the reset)",
            m.background.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the server closed or refused to protect itself, by reason",
            m.connections_closed.clone(),
        );
        registry.register(
            "request_body_bytes",
            "Request-body bytes buffered now (bounded by --max-body-memory)",
            m.body_bytes.clone(),
        );
        Metrics { registry, ..m }
    }
}

fn p(program: &str) -> ProgramLabel {
    ProgramLabel {
        program: program.to_string(),
    }
}

impl Metrics {
    /// Metrics with the host probe exported as the info metric `kvmjs_host_info`.
    pub fn with_host_info(labels: Vec<(String, String)>) -> Self {
        let mut m = Metrics::default();
        m.registry.register(
            "host",
            "What the start-up host probe found and decided (CPU, KVM, guest XCR0/CPUID, clock)",
            prometheus_client::metrics::info::Info::new(labels),
        );
        m
    }

    /// Records an answered request; `dirty` and `reset_us`: a reset that ran before the
    /// response (0 when none did).
    pub fn request(
        &self,
        program: &str,
        code: u16,
        took: Duration,
        exits: u64,
        dirty: u64,
        reset_us: f64,
    ) {
        self.requests
            .get_or_create(&StatusLabel {
                program: program.to_string(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&p(program))
            .observe(took.as_secs_f64());
        self.exits.get_or_create(&p(program)).inc_by(exits);
        self.reset(program, dirty, reset_us);
    }

    /// Records a request's reset to the snapshot (`reset_us` 0: none ran): the pool runs
    /// it after sending the response, so it is recorded apart from [`Metrics::request`].
    pub fn reset(&self, program: &str, dirty: u64, reset_us: f64) {
        if reset_us <= 0.0 && dirty == 0 {
            return;
        }
        self.dirty_pages.get_or_create(&p(program)).inc_by(dirty);
        if reset_us > 0.0 {
            self.reset
                .get_or_create(&p(program))
                .observe(reset_us / 1e6);
        }
    }

    /// Adds the VM exits a streamed response made after its head (the head's are in
    /// [`Metrics::request`]), so exits stay per request, whole streams included.
    pub fn stream_exits(&self, program: &str, exits: u64) {
        self.exits.get_or_create(&p(program)).inc_by(exits);
    }

    /// Records a failure of `kind` (timeout, fault, boot, busy, ...).
    pub fn error(&self, program: &str, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabel {
                program: program.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Registers a configured program and its engine (`kvmjs_program_info`).
    pub fn program(&self, program: &str, engine: &'static str) {
        self.programs
            .get_or_create(&EngineLabel {
                program: program.to_string(),
                engine,
            })
            .set(1);
    }

    /// Records a boot and its cause (see the `cold_start_causes` help).
    pub fn cold_start(&self, program: &str, took: Duration, cause: &'static str) {
        // A pre-warm boots ahead of a request: no request waited, so it is not a cold
        // start; a pool growth forks one more VM of a running program (a few ms, not a
        // boot). Both are counted only by cause.
        if cause != "prewarm" && cause != "pool_growth" {
            self.cold_starts.get_or_create(&p(program)).inc();
            self.cold_start_seconds
                .get_or_create(&p(program))
                .observe(took.as_secs_f64());
        }
        self.cold_start_causes
            .get_or_create(&CauseLabel {
                program: program.to_string(),
                cause,
            })
            .inc();
        self.loaded.get_or_create(&p(program)).set(1);
    }

    /// Counts a snapshot-file outcome at pool start (see `crate::snapfile`).
    pub fn snapshot_file(&self, program: &str, result: &'static str) {
        self.snapshot_file
            .get_or_create(&SnapshotFileLabel {
                program: program.to_string(),
                result,
            })
            .inc();
    }

    /// Counts a connection closed or refused by the server: `shed` (closed to make room
    /// at the connection cap), `refused` (at the cap with nothing to shed),
    /// `body_timeout` (408: the body was too slow).
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Sets the front's gauges: open connections and buffered body bytes.
    pub fn set_front(&self, connections: usize, body_bytes: usize) {
        self.connections.set(connections as i64);
        self.body_bytes.set(body_bytes as i64);
    }

    /// Records the background (waitUntil) work after a response; a failure also counts
    /// in `kvmjs_errors_total{kind="background_timeout"|"background"}`.
    pub fn background(&self, program: &str, took: Duration, err: Option<&RequestError>) {
        self.background
            .get_or_create(&p(program))
            .observe(took.as_secs_f64());
        match err {
            Some(RequestError::Timeout(_)) => self.error(program, "background_timeout"),
            Some(_) => self.error(program, "background"),
            None => {}
        }
    }

    /// Exports program `program`'s `fetch()` counters (shared by its VMs).
    pub fn fetch_program(&self, program: &str, m: Arc<kvmjs_vm::fetch::FetchMetrics>) {
        self.fetch.add(program, m);
    }

    /// Sets the keep-alive windows the policy chose for `program`.
    pub fn keep_alive(&self, program: &str, prewarm: Duration, keep_alive: Duration) {
        for (window, d) in [("prewarm", prewarm), ("keep_alive", keep_alive)] {
            self.keep_alive
                .get_or_create(&WindowLabel {
                    program: program.to_string(),
                    window,
                })
                .set(d.as_secs_f64());
        }
    }

    /// Sets the size of `program`'s snapshot (0: unloaded).
    pub fn snapshot_memory(&self, program: &str, bytes: u64) {
        self.memory
            .get_or_create(&PartLabel {
                program: program.to_string(),
                part: "snapshot",
            })
            .set(bytes as i64);
    }

    /// Changes what `program`'s VMs hold on their own by `delta` bytes (each VM reports
    /// its own changes, and takes its figure back when it stops).
    pub fn vm_memory(&self, program: &str, delta: i64) {
        self.memory
            .get_or_create(&PartLabel {
                program: program.to_string(),
                part: "vms",
            })
            .inc_by(delta);
    }

    /// Records an idle unload.
    pub fn unload(&self, program: &str) {
        self.loaded.get_or_create(&p(program)).set(0);
        self.snapshot_memory(program, 0);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_program_series() {
        let m = Metrics::default();
        m.request("hello", 200, Duration::from_micros(80), 1, 50, 13.0);
        m.error("hello", "timeout");
        m.cold_start("hello", Duration::from_millis(15), "first");
        m.keep_alive("hello", Duration::from_secs(1620), Duration::from_secs(426));
        m.connection_closed("shed");
        m.set_front(3, 4096);
        m.program("hello", "deno");
        let t = m.render();
        for want in [
            "kvmjs_requests_total{program=\"hello\",code=\"200\"} 1",
            "kvmjs_vm_exits_total{program=\"hello\"} 1",
            "kvmjs_dirty_pages_total{program=\"hello\"} 50",
            "kvmjs_errors_total{program=\"hello\",kind=\"timeout\"} 1",
            "kvmjs_cold_starts_total{program=\"hello\"} 1",
            "kvmjs_cold_start_causes_total{program=\"hello\",cause=\"first\"} 1",
            "kvmjs_keep_alive_seconds{program=\"hello\",window=\"prewarm\"} 1620",
            "kvmjs_keep_alive_seconds{program=\"hello\",window=\"keep_alive\"} 426",
            "kvmjs_request_duration_seconds_bucket",
            "kvmjs_connections_closed_total{reason=\"shed\"} 1",
            "kvmjs_connections 3",
            "kvmjs_request_body_bytes 4096",
            "kvmjs_program_info{program=\"hello\",engine=\"deno\"} 1",
        ] {
            assert!(t.contains(want), "missing {want} in:\n{t}");
        }
    }

    #[test]
    fn a_reset_after_the_response_counts_for_its_request() {
        let m = Metrics::default();
        // The pool's order: the request (no reset yet), then its reset.
        m.request("hello", 200, Duration::from_micros(80), 9, 0, 0.0);
        let t = m.render();
        assert!(
            !t.contains("kvmjs_reset_seconds_count{program=\"hello\"}"),
            "{t}"
        );
        m.reset("hello", 61, 120.0);
        m.reset("hello", 0, 0.0); // nothing ran: not an observation
        let t = m.render();
        for want in [
            "kvmjs_requests_total{program=\"hello\",code=\"200\"} 1",
            "kvmjs_dirty_pages_total{program=\"hello\"} 61",
            "kvmjs_reset_seconds_count{program=\"hello\"} 1",
            "kvmjs_reset_seconds_sum{program=\"hello\"} 0.00012",
        ] {
            assert!(t.contains(want), "missing {want} in:\n{t}");
        }
    }

    #[test]
    fn host_info_is_exported() {
        let m = Metrics::with_host_info(vec![
            ("vendor".into(), "amd".into()),
            ("guest_xcr0".into(), "0xe7".into()),
        ]);
        let t = m.render();
        assert!(
            t.contains("kvmjs_host_info{vendor=\"amd\",guest_xcr0=\"0xe7\"} 1"),
            "{t}"
        );
    }
}
