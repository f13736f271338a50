//! Request bodies: read within a deadline that only a minimum rate can extend, and
//! buffered against one budget shared by every request in flight, so neither slow nor
//! large bodies can hold connections or host memory without bound.

use hyper::body::{Body, Incoming};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How fast a body must arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BodyPace {
    /// Time the whole body gets, before the rate allowance (408 beyond).
    pub timeout: Duration,
    /// Each `min_rate` bytes received extend the deadline by one second, so a large body
    /// sent at a reasonable rate completes while a trickle does not (bytes per second).
    pub min_rate: u64,
}

impl Default for BodyPace {
    fn default() -> Self {
        BodyPace {
            timeout: Duration::from_secs(10),
            min_rate: 16 << 10,
        }
    }
}

impl BodyPace {
    /// The deadline for a body that started at `start` and has delivered `received` bytes.
    pub fn deadline(&self, start: Instant, received: u64) -> Instant {
        let allowance = if self.min_rate == 0 {
            // No rate: the timeout is all a body gets.
            Duration::ZERO
        } else {
            Duration::from_secs_f64(received as f64 / self.min_rate as f64)
        };
        start + self.timeout + allowance
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is over the program's max_request_body.
    #[error("the request body exceeds {limit} bytes (max_request_body); send a smaller body")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {allowed:?} ({received} bytes received; --body-timeout, --body-min-rate); send it faster")]
    TooSlow {
        /// Time allowed when it was cut off.
        allowed: Duration,
        /// Bytes received by then.
        received: u64,
    },
    /// Buffering it would exceed the memory allowed for all bodies together.
    #[error("the server is buffering {cap} bytes of request bodies already (--max-body-memory); retry shortly")]
    Memory {
        /// The budget.
        cap: usize,
    },
    /// The connection failed while the body was read.
    #[error("cannot read the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// Memory for all request bodies in flight together.
#[derive(Debug)]
pub struct BodyBudget {
    cap: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            cap,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes buffered now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// An empty claim on the budget, grown as bytes are buffered.
    pub fn claim(self: &Arc<Self>) -> Claim {
        Claim {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// Bytes one body holds of a [`BodyBudget`]; given back when dropped (when the request has
/// been served, or abandoned at any point before).
#[derive(Debug)]
pub struct Claim {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Claim {
    /// Claims `n` more bytes, or fails without claiming any.
    pub fn grow(&mut self, n: usize) -> Result<(), BodyError> {
        let b = &self.budget;
        b.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&u| u <= b.cap)
            })
            .map_err(|_| BodyError::Memory { cap: b.cap })?;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A body that was not read: why, and for an oversized one the unread rest, which the
/// caller may [`drain`] after answering.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: BodyError,
    /// The rest of an oversized body.
    pub rest: Option<Incoming>,
}

impl From<BodyError> for Rejected {
    fn from(error: BodyError) -> Self {
        Rejected { error, rest: None }
    }
}

/// The length a request declares (Content-Length), as hyper decoded it.
pub fn declared_len(body: &Incoming) -> Option<u64> {
    body.size_hint().exact()
}

/// Reads a body of at most `limit` bytes before `pace`'s deadline, claiming its memory
/// from `budget` as it arrives. The claim travels with the body and must be kept until
/// the body's memory is freed.
pub async fn read(
    mut body: Incoming,
    limit: usize,
    pace: BodyPace,
    budget: &Arc<BodyBudget>,
) -> Result<(Vec<u8>, Claim), Rejected> {
    use http_body_util::BodyExt;
    let start = Instant::now();
    let declared = declared_len(&body);
    // Declared bodies get their final size at once (untouched pages cost no memory until
    // the bytes arrive, and the claim counts bytes that did); others grow as they come.
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
    let mut claim = budget.claim();
    let mut received = 0u64;
    let sleep = tokio::time::sleep_until(pace.deadline(start, 0));
    tokio::pin!(sleep);
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = &mut sleep => {
                let allowed = pace.deadline(start, received) - start;
                return Err(BodyError::TooSlow { allowed, received }.into());
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        received += data.len() as u64;
        if received > limit as u64 {
            // Free the buffer now; the caller may still drain the rest for a proxy.
            return Err(Rejected {
                error: BodyError::TooLarge { limit },
                rest: Some(body),
            });
        }
        claim.grow(data.len())?;
        buf.extend_from_slice(&data);
        sleep.as_mut().reset(pace.deadline(start, received));
    }
    Ok((buf, claim))
}

/// Reads and drops the rest of a rejected body, at most `max` bytes and until `pace`'s
/// deadline, so a proxy that is still sending it (Varnish) reads the answer instead of a
/// reset connection. Bounded in time and bytes, and buffers nothing.
pub async fn drain(mut body: Incoming, max: u64, pace: BodyPace) {
    use http_body_util::BodyExt;
    let start = Instant::now();
    let mut seen = 0u64;
    let sleep = tokio::time::sleep_until(pace.deadline(start, 0));
    tokio::pin!(sleep);
    while seen < max {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = &mut sleep => return,
        };
        match frame {
            Some(Ok(f)) => {
                seen += f.data_ref().map_or(0, |d| d.len() as u64);
                sleep.as_mut().reset(pace.deadline(start, seen));
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_bounded_and_given_back() {
        let b = BodyBudget::new(100);
        let mut a = b.claim();
        let mut c = b.claim();
        a.grow(60).unwrap();
        assert!(matches!(c.grow(50), Err(BodyError::Memory { cap: 100 })));
        assert_eq!(b.used(), 60, "a failed grow claims nothing");
        c.grow(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        c.grow(60).unwrap();
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn the_deadline_grows_only_with_the_rate() {
        let pace = BodyPace {
            timeout: Duration::from_secs(2),
            min_rate: 1000,
        };
        let t = Instant::now();
        assert_eq!(pace.deadline(t, 0), t + Duration::from_secs(2));
        assert_eq!(pace.deadline(t, 5000), t + Duration::from_secs(7));
        let no_rate = BodyPace {
            min_rate: 0,
            ..pace
        };
        assert_eq!(no_rate.deadline(t, 1 << 30), t + Duration::from_secs(2));
    }
}
