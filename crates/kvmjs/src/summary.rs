//! Percentile summaries of per-request counters.

/// p50 and p99 of a sample (nearest rank).
pub fn p50_p99(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
        values[i]
    };
    (rank(0.50), rank(0.99))
}

/// Mean of a sample.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        assert_eq!(p50_p99(&mut v), (50.0, 99.0));
        assert_eq!(p50_p99(&mut [7.0]), (7.0, 7.0));
        assert_eq!(p50_p99(&mut []), (0.0, 0.0));
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
    }
}
