//! The write-timing covert-channel trial (tests/js/apps/timing_channel.js), shared by the
//! QuickJS test (tests/js_guest.rs, requests straight into a `Vm`) and the deno test
//! (crates/kvmjs/tests/deno_isolation.rs, requests through `kvmjs serve`): both hand in a
//! `get` that runs one GET on the VM under test and returns the response body.

/// Trials per region and VM.
pub const TRIALS: u32 = 16;

/// Bits recovered from the receiver's write times `us` of `pattern`'s pages, by two
/// decoders: (fault decoder) a write much faster than the slow ones did not fault, so the
/// page was left writable: 1; (median decoder) a write faster than the median: 1.
pub fn decode(pattern: u64, us: &[f64]) -> (u32, u32) {
    let mut sorted = us.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    // A fault costs several times a plain write (~4 µs vs ~0.5 µs here); when the 10th
    // and 90th percentiles are that far apart, split between them, else all writes cost
    // the same and there is nothing to split.
    let (lo, hi) = (sorted[6], sorted[57]);
    let split = (hi > 3.0 * lo).then(|| (lo * hi).sqrt());
    let count = |fast: &dyn Fn(f64) -> bool| {
        (0..64)
            .filter(|&i| fast(us[i]) == (pattern >> i & 1 == 1))
            .count() as u32
    };
    (
        count(&|t| split.is_some_and(|s| t < s)),
        count(&|t| t < median),
    )
}

/// Bits recovered from write times whose fixed cost (the clock reads around each write)
/// has been taken off, so only what the write itself cost is left: a page counts as 1
/// (no fault) when the 10th and 90th percentiles are at least `fault_us` apart (a fault
/// makes some writes that much slower) and its time is below their midpoint. Without
/// such a gap there is no fault to tell apart, and nothing is decoded (all read as 0):
/// splitting smaller gaps would only read the CPU-cache effect that [`decode`]'s median
/// decoder sees.
pub fn decode_fault_gap(pattern: u64, us: &[f64], fault_us: f64) -> u32 {
    let mut sorted = us.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (sorted[6], sorted[57]);
    let split = (hi - lo >= fault_us).then_some((lo + hi) / 2.0);
    (0..64)
        .filter(|&i| split.is_some_and(|s| us[i] < s) == (pattern >> i & 1 == 1))
        .count() as u32
}

/// One covert-channel trial: the sender writes the pages of the 1 bits of `pattern`,
/// `between` unrelated requests follow, the receiver times one write to each of the 64
/// pages. Returns the bits recovered by [`decode`]'s decoders and the 64 write times (µs).
pub fn trial(
    get: &mut dyn FnMut(&str) -> Vec<u8>,
    region: &str,
    pattern: u64,
    between: usize,
) -> (u32, u32, Vec<f64>) {
    let bits: String = (0..64)
        .map(|i| if pattern >> i & 1 == 1 { '1' } else { '0' })
        .collect();
    get(&format!("/send?region={region}&op=write&bits={bits}"));
    for j in 0..between {
        get(&format!("/unrelated/{j}"));
    }
    let body = get(&format!("/recv?region={region}&op=write"));
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("/recv: {e}: {}", String::from_utf8_lossy(&body)));
    let us: Vec<f64> = v["us"]
        .as_array()
        .expect("/recv answers {\"us\": [...]}")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(us.len(), 64);
    let (fault, median) = decode(pattern, &us);
    let mean = |bit: u64| {
        let v: Vec<f64> = (0..64)
            .filter(|i| pattern >> i & 1 == bit)
            .map(|i| us[i])
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    eprintln!(
        "  {region}, {between} between: fault decoder {fault}/64, median decoder {median}/64 (write µs: sent 1 {:.2}, sent 0 {:.2})",
        mean(1),
        mean(0)
    );
    (fault, median, us)
}

/// [`TRIALS`] trials on each region ("data", "fresh") of one VM (`name` in messages),
/// after spending the VM's first touch of every page. Returns the mean bits per trial of
/// each decoder per region, and pushes every threshold crossed onto `failures`: a trial
/// over 52 of 64 (five standard deviations over chance) for the fault decoder, a mean
/// over 40 for the fault decoder or over 54 for the median decoder. Every trial's pattern
/// and write times go to `trials`.
pub fn channel_trials(
    name: &str,
    get: &mut dyn FnMut(&str) -> Vec<u8>,
    seed: &mut u64,
    failures: &mut Vec<String>,
    trials: &mut Vec<(u64, Vec<f64>)>,
) -> Vec<(String, f64, f64)> {
    // The first touch of a page in a VM costs more whatever the reset does (KVM maps it
    // then; see the README): spend it here, so the trials measure only what a request
    // leaves behind.
    for region in ["data", "fresh"] {
        get(&format!("/recv?region={region}&op=write"));
    }
    let mut means = Vec::new();
    for region in ["data", "fresh"] {
        eprintln!("{name}, {region}:");
        let (mut fault, mut median) = (0, 0);
        for trial_no in 0..TRIALS {
            // Under the old adaptive reset a page stayed writable until 8 resets passed
            // without a change: enough unrelated requests that the previous trial's
            // receiver leaves nothing hot.
            for j in 0..10 {
                get(&format!("/cool/{j}"));
            }
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let (f, m, us) = trial(get, region, *seed, trial_no as usize % 4);
            trials.push((*seed, us));
            (fault, median) = (fault + f, median + m);
            if f > 52 {
                failures.push(format!("{name} {region} trial {trial_no}: {f}/64 bits"));
            }
        }
        let per = |n: u32| f64::from(n) / f64::from(TRIALS);
        eprintln!(
            "{name}, {region}: fault decoder {:.1}/64 per trial, median decoder {:.1}/64",
            per(fault),
            per(median)
        );
        // At most 40 of 64 on average (chance: 32 ± 1 for the mean of 16 trials).
        if fault > 40 * TRIALS {
            failures.push(format!(
                "{name} {region}: fault decoder {:.1}/64 per trial",
                per(fault)
            ));
        }
        if median > 54 * TRIALS {
            failures.push(format!(
                "{name} {region}: median decoder {:.1}/64 per trial",
                per(median)
            ));
        }
        means.push((region.to_string(), per(fault), per(median)));
    }
    means
}

#[cfg(test)]
mod tests {
    use super::{decode, decode_fault_gap};

    #[test]
    fn decoders_read_a_clear_signal_and_nothing_from_flat_times() {
        let pattern = 0xf0f0_1234_5678_9abc_u64;
        // Sent 1: no fault (0.5 µs); sent 0: a fault (4 µs): both decoders read all 64.
        let us: Vec<f64> = (0..64)
            .map(|i| if pattern >> i & 1 == 1 { 0.5 } else { 4.0 })
            .collect();
        assert_eq!(decode(pattern, &us), (64, 64));
        // Every write the same: the fault decoder has nothing to split (reads all 0s).
        let flat = vec![1.0; 64];
        let zeros = (0..64).filter(|i| pattern >> i & 1 == 0).count() as u32;
        assert_eq!(decode(pattern, &flat).0, zeros);
    }

    #[test]
    fn the_gap_decoder_reads_faults_and_not_small_differences() {
        let pattern = 0x0ff0_1234_5678_9abc_u64;
        let zeros = (0..64).filter(|i| pattern >> i & 1 == 0).count() as u32;
        let times = |fast: f64, slow: f64| -> Vec<f64> {
            (0..64)
                .map(|i| if pattern >> i & 1 == 1 { fast } else { slow })
                .collect()
        };
        // A fault's 4 µs: all 64 read.
        assert_eq!(decode_fault_gap(pattern, &times(0.0, 4.0), 2.0), 64);
        // A 0.3 µs cache effect: not a fault, nothing decoded (the median decoder's domain).
        assert_eq!(decode_fault_gap(pattern, &times(0.0, 0.3), 2.0), zeros);
        assert_eq!(
            decode(pattern, &times(0.01, 0.3)).0,
            64,
            "what the ratio split read"
        );
    }
}
