//! Two-sample drift tests of one feature, a window of calls against a reference, as
//! scipy computes them (tests/python/drift_check.py checks them against scipy):
//!
//! * [`ks_2samp`]: Kolmogorov–Smirnov for continuous features, two-sided, with the exact
//!   p-value scipy's `ks_2samp` gives for samples of up to 10,000 (`method="auto"`);
//! * [`chi2_2samp`]: chi-square for categorical ones, scipy's `chi2_contingency` of the
//!   2 × k table of counts (`correction=False`);
//! * [`psi`]: the population stability index, a score (no test), over the reference's
//!   deciles.

use std::collections::BTreeMap;

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// The most rows a sample may have (scipy's exact p-value stops there).
pub const MAX_SAMPLE: usize = 10_000;
/// Bins of the PSI (the reference's quantiles).
pub const PSI_BINS: usize = 10;
/// The floor of a bin's share in the PSI (an empty bin would make it infinite).
pub const PSI_FLOOR: f64 = 1e-4;

/// A test's statistic and p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The two-sided two-sample KS test (None when a sample is empty or over
/// [`MAX_SAMPLE`]). NaNs are left out.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<TestResult> {
    let mut x: Vec<f64> = a.iter().copied().filter(|v| !v.is_nan()).collect();
    let mut y: Vec<f64> = b.iter().copied().filter(|v| !v.is_nan()).collect();
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 || n1 > MAX_SAMPLE || n2 > MAX_SAMPLE {
        return None;
    }
    x.sort_by(f64::total_cmp);
    y.sort_by(f64::total_cmp);
    // The largest gap between the two empirical CDFs, at every point of either sample
    // (counts of values <= the point: scipy's searchsorted(side="right")).
    let upper = |s: &[f64], v: f64| s.partition_point(|&w| w <= v);
    let mut d: f64 = 0.0;
    for &v in x.iter().chain(&y) {
        let f1 = upper(&x, v) as f64 / n1 as f64;
        let f2 = upper(&y, v) as f64 / n2 as f64;
        d = d.max((f1 - f2).abs());
    }
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round() as usize;
    let d = h as f64 / lcm as f64;
    let p = if h == 0 {
        1.0
    } else if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside(n1, n2, g, h)
    };
    Some(TestResult {
        statistic: d,
        p_value: p.clamp(0.0, 1.0),
    })
}

/// P(D ≥ h/n) for two samples of n (scipy's `_compute_prob_outside_square`).
fn prob_outside_square(n: usize, h: usize) -> f64 {
    let mut p = 0.0;
    let mut k = (n / h) as i64;
    while k >= 0 {
        let k_ = k as usize;
        let mut p1 = 1.0;
        for j in 0..h {
            let num = n as f64 - (k_ * h + j) as f64;
            p1 = num * p1 / (n + k_ * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// The share of lattice paths from (0, 0) to (m, n) that leave the band
/// |x/m − y/n| < h/lcm(m, n): the p-value, by Viehmann's recursion for 1 − p (scipy's
/// `_compute_outer_prob_inside_method`).
fn outer_prob_inside(m: usize, n: usize, g: usize, h: usize) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as i64, (n / g) as i64);
    let (h, n_i, m_i) = (h as i64, n as i64, m as i64);
    let ceil_div = |a: i64, b: i64| (a as f64 / b as f64).ceil() as i64;
    let floor_div = |a: i64, b: i64| (a as f64 / b as f64).floor() as i64;
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n_i + 1);
    let mut curlen = maxj - minj;
    let len_a = ((2 * maxj + 2).min(n_i + 1)) as usize;
    let mut a = vec![1.0f64; len_a.max(1)];
    for v in a.iter_mut().take(maxj as usize).skip(minj as usize) {
        *v = 0.0;
    }
    for i in 1..=m_i {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (floor_div(ng * i - h, mg) + 1).max(0).min(n_i);
        maxj = ceil_div(ng * i + h, mg).min(n_i + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let prev = a
                .get((jj + minj - lastminj) as usize)
                .copied()
                .unwrap_or(1.0);
            val = (prev * i as f64 + val * j as f64) / (i + j) as f64;
            if let Some(slot) = a.get_mut(jj as usize) {
                *slot = val;
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            for k in (maxj - minj)..(maxj - minj + (lastlen - curlen)) {
                if let Some(slot) = a.get_mut(k as usize) {
                    *slot = 1.0;
                }
            }
        }
    }
    a.get((maxj - minj - 1) as usize).copied().unwrap_or(1.0)
}

/// The chi-square test of two samples of categories (None when fewer than two
/// categories appear, or a sample is empty).
pub fn chi2_2samp<K: Ord + Clone>(a: &[K], b: &[K]) -> Option<TestResult> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut counts: BTreeMap<K, (f64, f64)> = BTreeMap::new();
    for k in a {
        counts.entry(k.clone()).or_default().0 += 1.0;
    }
    for k in b {
        counts.entry(k.clone()).or_default().1 += 1.0;
    }
    if counts.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let total = na + nb;
    let mut stat = 0.0;
    for (ca, cb) in counts.values() {
        let col = ca + cb;
        let (ea, eb) = (na * col / total, nb * col / total);
        stat += (ca - ea).powi(2) / ea + (cb - eb).powi(2) / eb;
    }
    let dof = (counts.len() - 1) as f64;
    let p = ChiSquared::new(dof).ok()?.sf(stat);
    Some(TestResult {
        statistic: stat,
        p_value: p,
    })
}

/// The population stability index of `window` against `reference`: over [`PSI_BINS`]
/// bins cut at the reference's quantiles (a value equal to an edge falls below it),
/// Σ (w − r) · ln(w / r) of the bins' shares, each at least [`PSI_FLOOR`]. None when a
/// sample is empty.
pub fn psi(reference: &[f64], window: &[f64]) -> Option<f64> {
    if reference.is_empty() || window.is_empty() {
        return None;
    }
    let mut r: Vec<f64> = reference.to_vec();
    r.sort_by(f64::total_cmp);
    let edges: Vec<f64> = (1..PSI_BINS)
        .map(|i| r[(i * r.len() / PSI_BINS).min(r.len() - 1)])
        .collect();
    let bin = |v: f64| edges.partition_point(|&e| e < v);
    let shares = |s: &[f64]| {
        let mut c = vec![0.0; PSI_BINS];
        for &v in s {
            c[bin(v)] += 1.0;
        }
        c.into_iter()
            .map(|k| (k / s.len() as f64).max(PSI_FLOOR))
            .collect::<Vec<_>>()
    };
    let (rs, ws) = (shares(reference), shares(window));
    Some(
        rs.iter()
            .zip(&ws)
            .map(|(r, w)| (w - r) * (w / r).ln())
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_do_not_differ() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let r = ks_2samp(&a, &a).unwrap();
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
        assert!(psi(&a, &a).unwrap().abs() < 1e-12);
    }

    #[test]
    fn known_values() {
        // scipy.stats.ks_2samp([1, 2, 3, 4], [5, 6, 7, 8]): statistic 1.0, p 0.02857142857
        let r = ks_2samp(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!(
            (r.p_value - 0.028_571_428_571_428_57).abs() < 1e-12,
            "{r:?}"
        );
        // Unequal sizes: ks_2samp([1, 2, 3], [2.5, 4, 5, 6, 7]): 0.8, p 0.1428571428...
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[2.5, 4.0, 5.0, 6.0, 7.0]).unwrap();
        assert!((r.statistic - 0.8).abs() < 1e-12, "{r:?}");
        assert!((r.p_value - 0.142_857_142_857_142_85).abs() < 1e-9, "{r:?}");
        // chi2_contingency([[10, 20], [20, 10]], correction=False): 6.6667, p 0.009823
        let a: Vec<u8> = [vec![0; 10], vec![1; 20]].concat();
        let b: Vec<u8> = [vec![0; 20], vec![1; 10]].concat();
        let r = chi2_2samp(&a, &b).unwrap();
        assert!((r.statistic - 20.0 / 3.0).abs() < 1e-12, "{r:?}");
        assert!(
            (r.p_value - 0.009_823_274_507_519_235).abs() < 1e-9,
            "{r:?}"
        );
    }

    #[test]
    fn empty_or_single_category_samples_have_no_test() {
        assert!(ks_2samp(&[], &[1.0]).is_none());
        assert!(chi2_2samp(&[1u8, 1], &[1u8]).is_none());
        assert!(psi(&[], &[1.0]).is_none());
    }
}
