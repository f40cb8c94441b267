//! A per-call outlier score: the Mahalanobis distance of a row to the reference rows,
//! √((x − μ)ᵀ (Σ + λI)⁻¹ (x − μ)), with μ and Σ the reference's mean and sample
//! covariance (n − 1) and a ridge λ = [`RIDGE`] × the mean feature variance (at least
//! 1e-12), so that a feature constant in the reference (a blank pixel) makes Σ invertible
//! and a row that sets it scores high. tests/python/drift_check.py checks it against
//! scipy's `mahalanobis` with the same inverse.

use nalgebra::{DMatrix, DVector};

/// The ridge, relative to the mean feature variance.
pub const RIDGE: f64 = 1e-3;

/// The reference's mean and the Cholesky factor of its regularized covariance.
#[derive(Debug, Clone)]
pub struct Mahalanobis {
    mean: DVector<f64>,
    chol: nalgebra::Cholesky<f64, nalgebra::Dyn>,
}

impl Mahalanobis {
    /// From reference rows (each of the same length; at least two). None when there are
    /// too few rows or they disagree in length.
    pub fn fit(rows: &[Vec<f64>]) -> Option<Self> {
        let n = rows.len();
        let d = rows.first()?.len();
        if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
            return None;
        }
        let x = DMatrix::from_fn(n, d, |i, j| rows[i][j]);
        let mean = DVector::from_fn(d, |j, _| x.column(j).mean());
        let centered = DMatrix::from_fn(n, d, |i, j| x[(i, j)] - mean[j]);
        let mut cov = centered.transpose() * &centered / (n as f64 - 1.0);
        let ridge = (RIDGE * cov.trace() / d as f64).max(1e-12);
        for j in 0..d {
            cov[(j, j)] += ridge;
        }
        Some(Self {
            mean,
            chol: cov.cholesky()?,
        })
    }

    /// The distance of `row` (None when its length is not the reference's).
    pub fn score(&self, row: &[f64]) -> Option<f64> {
        if row.len() != self.mean.len() {
            return None;
        }
        let diff = DVector::from_column_slice(row) - &self.mean;
        let solved = self.chol.solve(&diff);
        Some(diff.dot(&solved).max(0.0).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_scores_zero_and_far_rows_score_high() {
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![f64::from(i % 7), f64::from(i % 5), 0.0])
            .collect();
        let m = Mahalanobis::fit(&rows).unwrap();
        let mean: Vec<f64> = (0..3)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / 50.0)
            .collect();
        assert!(m.score(&mean).unwrap() < 1e-9);
        let near = m.score(&rows[3]).unwrap();
        // The constant third feature set: far beyond any reference row.
        let far = m.score(&[3.0, 2.0, 1.0]).unwrap();
        assert!(far > 10.0 * near, "near {near}, far {far}");
        assert!(m.score(&[1.0]).is_none());
        assert!(Mahalanobis::fit(&rows[..1]).is_none());
    }
}
