//! Live quality metrics from (prediction, truth) pairs: pure functions, defined as
//! scikit-learn defines them (tests/monitoring.rs checks each against scikit-learn on the
//! same pairs).
//!
//! * classifiers: accuracy; per-class precision, recall and F1 (`zero_division = 0`);
//!   ROC AUC, binary (the positive class is the second) or one-vs-rest macro average over
//!   the classes present both ways; expected calibration error over the top-class score;
//! * regression: MAE and RMSE.

use std::collections::BTreeMap;

/// Bins of the expected calibration error (equal width over [0, 1]).
pub const ECE_BINS: usize = 10;

/// One labelled call of a classifier: the predicted class, the score of each class (in
/// class order; may be empty when the model gives no scores) and the true class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassPair {
    pub predicted: usize,
    pub scores: Vec<f64>,
    pub truth: usize,
}

/// Precision, recall and F1 of one class, and its support (true rows of it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// The quality of a classifier over a window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassifierQuality {
    pub accuracy: f64,
    /// By class index.
    pub per_class: BTreeMap<usize, ClassScores>,
    /// None when it is undefined (one class only among the truths, or no scores).
    pub roc_auc: Option<f64>,
    /// None without scores.
    pub ece: Option<f64>,
}

/// The quality of a regression model over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RegressionQuality {
    pub mae: f64,
    pub rmse: f64,
}

/// Accuracy, per-class scores, ROC AUC and calibration of `pairs` (None when empty).
/// `classes` is the number of classes the model knows (scores have that length).
pub fn classifier(pairs: &[ClassPair], classes: usize) -> Option<ClassifierQuality> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let right = pairs.iter().filter(|p| p.predicted == p.truth).count() as f64;
    // Classes seen as truth or prediction, as scikit-learn's `labels` default.
    let mut seen: Vec<usize> = pairs.iter().flat_map(|p| [p.predicted, p.truth]).collect();
    seen.sort_unstable();
    seen.dedup();
    let per_class = seen
        .iter()
        .map(|&c| {
            let tp = pairs
                .iter()
                .filter(|p| p.predicted == c && p.truth == c)
                .count() as f64;
            let predicted = pairs.iter().filter(|p| p.predicted == c).count() as f64;
            let support = pairs.iter().filter(|p| p.truth == c).count();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support as f64);
            let f1 = ratio(2.0 * precision * recall, precision + recall);
            (
                c,
                ClassScores {
                    precision,
                    recall,
                    f1,
                    support: support as u64,
                },
            )
        })
        .collect();
    let scored = classes > 0 && pairs.iter().all(|p| p.scores.len() == classes);
    Some(ClassifierQuality {
        accuracy: right / n,
        per_class,
        roc_auc: if scored {
            roc_auc(pairs, classes)
        } else {
            None
        },
        ece: scored.then(|| ece(pairs)),
    })
}

/// `a / b`, 0 where `b` is 0 (scikit-learn's `zero_division = 0`).
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// ROC AUC: binary (class 1's score against truth == 1) for two classes, else the
/// macro average of one-vs-rest AUCs (scikit-learn's `multi_class = "ovr"`, which needs
/// every class among the truths; None otherwise).
fn roc_auc(pairs: &[ClassPair], classes: usize) -> Option<f64> {
    let one_vs_rest = |c: usize| {
        let v: Vec<(f64, bool)> = pairs.iter().map(|p| (p.scores[c], p.truth == c)).collect();
        binary_auc(&v)
    };
    if classes == 2 {
        return one_vs_rest(1);
    }
    let aucs: Option<Vec<f64>> = (0..classes).map(one_vs_rest).collect();
    let aucs = aucs?;
    Some(aucs.iter().sum::<f64>() / aucs.len() as f64)
}

/// The area under the ROC curve of (score, positive) pairs: the probability that a
/// positive scores above a negative, ties counted half (the Mann-Whitney U statistic).
/// None unless both kinds are present.
pub fn binary_auc(v: &[(f64, bool)]) -> Option<f64> {
    let pos = v.iter().filter(|(_, p)| *p).count() as f64;
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = v.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks (1-based) over runs of equal scores.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * sorted[i..=j].iter().filter(|(_, p)| *p).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Expected calibration error of the top-class score: over [`ECE_BINS`] equal bins of
/// confidence (a bin holds scores in (lo, hi], the first also 0), the row-weighted mean
/// of |accuracy − mean confidence|.
fn ece(pairs: &[ClassPair]) -> f64 {
    let mut bins = [(0usize, 0.0f64, 0.0f64); ECE_BINS];
    for p in pairs {
        let conf = p.scores.iter().copied().fold(f64::MIN, f64::max);
        let bin = ((conf * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        let b = &mut bins[bin];
        b.0 += 1;
        b.1 += conf;
        b.2 += f64::from(u8::from(p.predicted == p.truth));
    }
    let n = pairs.len() as f64;
    bins.iter()
        .filter(|b| b.0 > 0)
        .map(|&(k, conf, right)| {
            let k = k as f64;
            (k / n) * (right / k - conf / k).abs()
        })
        .sum()
}

/// MAE and RMSE of (prediction, truth) pairs (None when empty).
pub fn regression(pairs: &[(f64, f64)]) -> Option<RegressionQuality> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mae = pairs.iter().map(|(p, t)| (p - t).abs()).sum::<f64>() / n;
    let mse = pairs.iter().map(|(p, t)| (p - t).powi(2)).sum::<f64>() / n;
    Some(RegressionQuality {
        mae,
        rmse: mse.sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(predicted: usize, scores: &[f64], truth: usize) -> ClassPair {
        ClassPair {
            predicted,
            scores: scores.to_vec(),
            truth,
        }
    }

    #[test]
    fn binary_auc_counts_ties_half() {
        // scikit-learn: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let v = [(0.1, false), (0.4, false), (0.35, true), (0.8, true)];
        assert!((binary_auc(&v).unwrap() - 0.75).abs() < 1e-12);
        // All tied: 0.5.
        let v = [(0.5, false), (0.5, true)];
        assert_eq!(binary_auc(&v), Some(0.5));
        assert_eq!(binary_auc(&[(0.5, true)]), None);
    }

    #[test]
    fn classifier_metrics_match_hand_counts() {
        let pairs = [
            pair(0, &[0.9, 0.1], 0),
            pair(1, &[0.2, 0.8], 1),
            pair(1, &[0.4, 0.6], 0),
            pair(0, &[0.7, 0.3], 1),
            pair(1, &[0.1, 0.9], 1),
        ];
        let q = classifier(&pairs, 2).unwrap();
        assert!((q.accuracy - 0.6).abs() < 1e-12);
        let c1 = q.per_class[&1];
        assert!((c1.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((c1.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c1.support, 3);
        // Class 1's scores: positives 0.8, 0.3, 0.9; negatives 0.1, 0.6 → 5 of 6 pairs.
        assert!((q.roc_auc.unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // Bins: 0.9 (right), 0.8 (right), 0.6 (wrong), 0.7 (wrong), 0.9 (right).
        let want = (2.0 / 5.0) * (1.0f64 - 0.9).abs()
            + (1.0 / 5.0) * (1.0f64 - 0.8).abs()
            + (1.0 / 5.0) * (0.0f64 - 0.7).abs()
            + (1.0 / 5.0) * (0.0f64 - 0.6).abs();
        assert!((q.ece.unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn one_vs_rest_needs_every_class_among_the_truths() {
        let pairs = [pair(0, &[0.8, 0.1, 0.1], 0), pair(1, &[0.2, 0.7, 0.1], 1)];
        assert_eq!(classifier(&pairs, 3).unwrap().roc_auc, None);
        assert!(classifier(&[], 3).is_none());
    }

    #[test]
    fn regression_errors() {
        let q = regression(&[(1.0, 2.0), (3.0, 3.0), (0.0, -2.0)]).unwrap();
        assert!((q.mae - 1.0).abs() < 1e-12);
        assert!((q.rmse - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
