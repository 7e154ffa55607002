//! Order statistics of measured samples: the percentiles `malt check` and
//! the benchmarks report, and the medians over benchmark runs.

/// Percentile `p` (0..=100) of `sorted` samples (ascending): the sample at
/// the nearest rank; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Median of `sorted` samples (ascending): the middle one, or the mean of
/// the two middle ones for an even count; 0 when there are none.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The finite values of `values`, ascending.
pub fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&sorted_finite(&[3.0, 1.0, 2.0])), 2.0);
        assert_eq!(median(&sorted_finite(&[4.0, 1.0, 2.0, 3.0])), 2.5);
        assert_eq!(median(&sorted_finite(&[f64::NAN, 1.0])), 1.0);
        assert_eq!(median(&[]), 0.0);
    }
}
