//! `fetch()` to backends: the host performs HTTP(S) requests for the guest.
//!
//! - [`policy`]: allowed origins, limits, the Fetch Standard's redirect rules;
//! - [`client`]: the HTTP exchange itself (ureq with rustls and webpki roots);
//! - [`service`]: the worker threads fetches run on (VM threads may not use sockets);
//! - [`calls`]: the guest API calls (`kvmjs_abi::fetch`), reading and writing guest memory
//!   only through the checked [`crate::memory`] helpers.
//!
//! Every open fetch belongs to the current request ([`Fetches`] lives in the request's
//! [`crate::syscalls::Exchange`]): a new request starts with none, and the reset drops them
//! all, closing their connections. Connections are never pooled, so one request cannot
//! see (or time) another's.

pub mod calls;
pub mod client;
pub mod pipe;
pub mod policy;
pub mod service;

pub use policy::{FetchPolicy, Origin, OriginError, RedirectMode};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a fetch failed. The message is what the guest's TypeError says.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL's origin is not in `fetch.allow`.
    #[error("fetch to {url} is not allowed: add the origin {origin} to the program's fetch.allow in tinykvm.json")]
    NotAllowed {
        /// The URL (after redirects).
        url: String,
        /// Its origin, as it would be written in the allow-list.
        origin: String,
    },
    /// DNS, connect, TLS or protocol failure.
    #[error("fetch to {url} failed: {msg}")]
    Network {
        /// The URL.
        url: String,
        /// What went wrong.
        msg: String,
    },
    /// Out of time.
    #[error("fetch to {url} timed out after {secs:.1} s (fetch.timeout in tinykvm.json, or the request's own max_request_time)")]
    Timeout {
        /// The URL.
        url: String,
        /// The time it had.
        secs: f64,
    },
    /// The response body is over the limit.
    #[error("the response from {url} is larger than the program's fetch.max_response_size ({limit} bytes)")]
    ResponseTooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The request body is over the limit.
    #[error("the request body is larger than the program's fetch.max_request_body ({0} bytes)")]
    RequestTooLarge(u64),
    /// Too many open at once, started in one request, or running in the process.
    #[error("{0}")]
    TooMany(TooMany),
    /// A redirect that cannot be followed.
    #[error("fetch to {url} failed: {err}")]
    Redirect {
        /// The URL that redirected.
        url: String,
        /// Why.
        err: policy::RedirectError,
    },
    /// A redirect in redirect mode "error".
    #[error("fetch to {0} was redirected, and the request's redirect mode is \"error\"")]
    RedirectModeError(String),
    /// No such handle in this request.
    #[error("fetch handle {0} is not open (closed, or from an earlier request)")]
    BadHandle(u64),
    /// A call out of order (e.g. write on a buffered body).
    #[error("fetch handle {0}: {1}")]
    BadState(u64, &'static str),
    /// An invalid argument (URL, method, header).
    #[error("fetch: {0}")]
    BadArg(String),
    /// A pointer into memory the guest may not use.
    #[error("fetch: bad guest pointer: {0}")]
    Fault(String),
}

impl FetchError {
    /// The errno the guest call returns (negated).
    pub fn errno(&self) -> i64 {
        use kvmjs_abi::fetch::errno as e;
        match self {
            FetchError::NotAllowed { .. } => e::EACCES,
            FetchError::Network { .. }
            | FetchError::Redirect { .. }
            | FetchError::RedirectModeError(_) => e::EIO,
            FetchError::Timeout { .. } => e::ETIMEDOUT,
            FetchError::ResponseTooLarge { .. } | FetchError::RequestTooLarge(_) => e::EFBIG,
            FetchError::TooMany(_) => e::EMFILE,
            FetchError::BadHandle(_) | FetchError::BadState(..) => e::EBADF,
            FetchError::BadArg(_) => 22,
            FetchError::Fault(_) => 14,
        }
    }
}

/// Which fetch limit was reached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TooMany {
    /// `fetch.max_open` fetches are open (closed ones still waiting for their backend count).
    #[error("too many fetches open at once in this request ({0}): read responses to the end or cancel them first, or raise fetch.max_open in tinykvm.json")]
    Open(usize),
    /// `fetch.max_per_request` fetches were started in this request.
    #[error("too many fetches started in this request ({0}): make fewer, or raise fetch.max_per_request in tinykvm.json")]
    Started(usize),
    /// The process-wide cap on running fetch workers (super::service::MAX_WORKERS).
    #[error("the host is running its maximum of {0} fetches at once: try again later")]
    Workers(usize),
}

/// Upper bounds (ms) of the latency histogram's buckets; the last bucket is unbounded.
pub const LATENCY_BUCKETS_MS: [u64; 8] = [5, 10, 25, 50, 100, 250, 1000, 5000];

/// One program's fetch counters, shared by its VMs.
#[derive(Debug, Default)]
pub struct FetchMetrics {
    /// Fetches started.
    pub count: AtomicU64,
    /// Fetches that failed (any [`FetchError`] after the start).
    pub errors: AtomicU64,
    /// Response body bytes received.
    pub bytes_in: AtomicU64,
    /// Request body bytes sent.
    pub bytes_out: AtomicU64,
    /// Sum of the times to the response head, µs.
    pub latency_us: AtomicU64,
    /// Responses per latency bucket ([`LATENCY_BUCKETS_MS`], then one for slower).
    pub latency_hist: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
}

impl FetchMetrics {
    /// Records a response head after `d`.
    pub fn observe(&self, d: Duration) {
        self.latency_us.fetch_add(d.as_micros() as u64, Relaxed);
        let ms = d.as_millis() as u64;
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_hist[i].fetch_add(1, Relaxed);
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> FetchStats {
        FetchStats {
            count: self.count.load(Relaxed),
            errors: self.errors.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            latency_us: self.latency_us.load(Relaxed),
            latency_hist: std::array::from_fn(|i| self.latency_hist[i].load(Relaxed)),
        }
    }
}

/// [`FetchMetrics`] read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Fetches started.
    pub count: u64,
    /// Failures.
    pub errors: u64,
    /// Response body bytes.
    pub bytes_in: u64,
    /// Request body bytes.
    pub bytes_out: u64,
    /// Sum of the times to the response head, µs.
    pub latency_us: u64,
    /// Per bucket of [`LATENCY_BUCKETS_MS`] (and one for slower).
    pub latency_hist: [u64; LATENCY_BUCKETS_MS.len() + 1],
}

/// The current request's open fetches.
#[derive(Default)]
pub struct Fetches {
    /// Handle `h` is `slots[h - 1]`.
    slots: Vec<Option<service::Remote>>,
    /// Fetches started in this request.
    started: usize,
    /// The last failure's message, for `fetch_error`.
    last_error: Option<String>,
    /// Closed fetches' [`service::Remote::alive`] tokens: their workers count as open
    /// until they end.
    closing: Vec<std::sync::Arc<()>>,
}

impl std::fmt::Debug for Fetches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetches")
            .field("open", &self.open())
            .field("started", &self.started)
            .finish()
    }
}

impl Fetches {
    /// Fetches open now, with closed ones whose worker still runs.
    pub fn open(&self) -> usize {
        let lingering = self
            .closing
            .iter()
            .filter(|a| std::sync::Arc::strong_count(a) > 1)
            .count();
        self.slots.iter().filter(|s| s.is_some()).count() + lingering
    }

    /// Drops every open fetch (closing its connection).
    pub fn clear(&mut self) {
        *self = Fetches::default();
    }

    fn insert(&mut self, t: service::Remote) -> u64 {
        self.closing.retain(|a| std::sync::Arc::strong_count(a) > 1);
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(t);
                i as u64 + 1
            }
            None => {
                self.slots.push(Some(t));
                self.slots.len() as u64
            }
        }
    }

    fn get(&mut self, h: u64) -> Result<&mut service::Remote, FetchError> {
        h.checked_sub(1)
            .and_then(|i| self.slots.get_mut(usize::try_from(i).ok()?))
            .and_then(Option::as_mut)
            .ok_or(FetchError::BadHandle(h))
    }

    /// Closes fetch `h` (its upload, if unfinished, is aborted).
    fn remove(&mut self, h: u64) -> Result<(), FetchError> {
        let r = h
            .checked_sub(1)
            .and_then(|i| self.slots.get_mut(usize::try_from(i).ok()?))
            .and_then(Option::take)
            .ok_or(FetchError::BadHandle(h))?;
        self.closing.push(r.alive());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_buckets() {
        let m = FetchMetrics::default();
        m.observe(Duration::from_millis(1));
        m.observe(Duration::from_millis(7));
        m.observe(Duration::from_secs(9));
        let s = m.snapshot();
        assert_eq!(s.latency_hist[0], 1);
        assert_eq!(s.latency_hist[1], 1);
        assert_eq!(s.latency_hist[LATENCY_BUCKETS_MS.len()], 1);
        assert!(s.latency_us >= 9_008_000);
    }

    #[test]
    fn errors_map_to_errno() {
        let na = FetchError::NotAllowed {
            url: "http://x:1/".into(),
            origin: "http://x:1".into(),
        };
        assert_eq!(na.errno(), 13);
        assert!(na.to_string().contains("fetch.allow in tinykvm.json"));
        assert_eq!(FetchError::BadHandle(3).errno(), 9);
        assert_eq!(FetchError::RequestTooLarge(1).errno(), 27);
    }
}
