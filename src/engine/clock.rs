//! A monotonic clock that costs no VM exit: under the kvmjs host the guest reads the TSC
//! and converts with the frequency the host passes in `KVMJS_TSC_KHZ` (a `clock_gettime`
//! would trap to the host, ~30 µs on PVM). Elsewhere the OS clock is already cheap.

use std::time::Instant;

/// Monotonic time source.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// TSC ticks since `start` at `khz` kHz.
    Tsc {
        /// TSC at start-up.
        start: u64,
        /// Ticks per millisecond.
        khz: u64,
    },
    /// The OS monotonic clock.
    Os(Instant),
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; CR4.TSD is clear in kvmjs and Linux guests.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl Clock {
    /// Picks the TSC when the host gave its frequency.
    pub fn from_env() -> Clock {
        let khz = std::env::var("KVMJS_TSC_KHZ")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        match khz {
            Some(khz) if khz > 0 => Clock::Tsc {
                start: rdtsc(),
                khz,
            },
            _ => Clock::Os(Instant::now()),
        }
    }

    /// Milliseconds since start-up.
    pub fn now_ms(&self) -> f64 {
        match *self {
            Clock::Tsc { start, khz } => rdtsc().saturating_sub(start) as f64 / khz as f64,
            Clock::Os(t) => t.elapsed().as_secs_f64() * 1e3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_advance() {
        for c in [
            Clock::Os(Instant::now()),
            Clock::Tsc {
                start: rdtsc(),
                khz: 1_000_000,
            },
        ] {
            let a = c.now_ms();
            std::thread::sleep(std::time::Duration::from_millis(2));
            assert!(c.now_ms() > a, "{c:?}");
        }
    }
}
