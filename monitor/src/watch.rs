//! The drift watch of one model version: rows of the watched input go first to the
//! reference (until it holds `reference_calls` rows, unless it came from a file or the
//! store), then into windows of `window` rows; each full window is tested feature by
//! feature against the reference (`drift.rs`), and each call is scored against it
//! (`outlier.rs`). The caller stores what it is handed back ([`Event`]) and logs.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::DriftTests;
use crate::drift::{chi2_2samp, ks_2samp, psi};
use crate::outlier::Mahalanobis;
use crate::record::now_ms;

/// One feature's result in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureResult {
    pub feature: usize,
    /// "ks" or "chi2".
    pub test: String,
    pub statistic: f64,
    pub p_value: f64,
    pub psi: f64,
    pub drifted: bool,
}

/// A tested window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    pub time_ms: i64,
    pub alerting: bool,
    pub window_rows: usize,
    pub reference_rows: usize,
    pub features: Vec<FeatureResult>,
}

/// What a push made happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The reference is complete (made of calls): store it.
    ReferenceComplete(Vec<Vec<f64>>),
    /// A window was tested; `changed` when the alert started or ended with it.
    Window { result: WindowResult, changed: bool },
}

struct Reference {
    rows: Vec<Vec<f64>>,
    /// By feature, the reference's values (for the tests).
    columns: Vec<Vec<f64>>,
    scorer: Option<Mahalanobis>,
}

impl Reference {
    fn new(rows: Vec<Vec<f64>>) -> Self {
        let d = rows.first().map_or(0, Vec::len);
        let columns = (0..d)
            .map(|j| {
                rows.iter()
                    .map(|r| r.get(j).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        let scorer = Mahalanobis::fit(&rows);
        Self {
            rows,
            columns,
            scorer,
        }
    }
}

#[derive(Default)]
struct State {
    reference: Option<Reference>,
    collecting: Vec<Vec<f64>>,
    window: Vec<Vec<f64>>,
    alerting: bool,
    windows: u64,
    outliers: u64,
    last: Option<WindowResult>,
}

/// The watch (shared by the calls of one model version).
pub struct DriftWatch {
    cfg: DriftTests,
    state: Mutex<State>,
}

impl DriftWatch {
    pub fn new(cfg: DriftTests) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    /// Sets the reference (from a file or the store); rows collected so far are dropped.
    pub fn set_reference(&self, rows: Vec<Vec<f64>>) {
        let mut s = self.state.lock();
        s.collecting.clear();
        s.reference = Some(Reference::new(rows));
    }

    /// Scores above this count as outliers.
    pub fn outlier_threshold(&self) -> Option<f64> {
        self.cfg.outlier_threshold
    }

    /// Whether the latest tested window drifted (the alert holds).
    pub fn alerting(&self) -> bool {
        self.state.lock().alerting
    }

    /// The outlier score of each row (None without a reference), counting outliers.
    pub fn score(&self, rows: &[Vec<f64>]) -> Option<Vec<f64>> {
        let mut s = self.state.lock();
        let scorer = s.reference.as_ref()?.scorer.as_ref()?;
        let scores: Vec<f64> = rows
            .iter()
            .map(|r| scorer.score(r).unwrap_or(f64::NAN))
            .collect();
        if let Some(t) = self.cfg.outlier_threshold {
            s.outliers += scores.iter().filter(|&&v| v > t).count() as u64;
        }
        Some(scores)
    }

    /// Feeds the rows of one call.
    pub fn push(&self, rows: Vec<Vec<f64>>) -> Vec<Event> {
        let mut events = Vec::new();
        let mut s = self.state.lock();
        for row in rows {
            if s.reference.is_none() {
                s.collecting.push(row);
                if s.collecting.len() >= self.cfg.reference_calls {
                    let rows = std::mem::take(&mut s.collecting);
                    s.reference = Some(Reference::new(rows.clone()));
                    events.push(Event::ReferenceComplete(rows));
                }
                continue;
            }
            s.window.push(row);
            if s.window.len() >= self.cfg.window {
                let window = std::mem::take(&mut s.window);
                let result = match s.reference.as_ref() {
                    Some(r) => self.test(r, &window),
                    None => continue,
                };
                let changed = result.alerting != s.alerting;
                s.alerting = result.alerting;
                s.windows += 1;
                s.last = Some(result.clone());
                events.push(Event::Window { result, changed });
            }
        }
        events
    }

    /// Tests one full window against the reference.
    fn test(&self, reference: &Reference, window: &[Vec<f64>]) -> WindowResult {
        let d = reference.columns.len();
        let threshold = self.cfg.p_value / d.max(1) as f64;
        let features: Vec<FeatureResult> = (0..d)
            .map(|j| {
                let col: Vec<f64> = window
                    .iter()
                    .map(|r| r.get(j).copied().unwrap_or(f64::NAN))
                    .collect();
                let refc = &reference.columns[j];
                let categorical = self.cfg.categorical.contains(&j);
                let (test, r) = if categorical {
                    // Categories by their exact value.
                    let key = |v: &f64| v.to_bits();
                    let a: Vec<u64> = refc.iter().map(key).collect();
                    let b: Vec<u64> = col.iter().map(key).collect();
                    ("chi2", chi2_2samp(&a, &b))
                } else {
                    ("ks", ks_2samp(refc, &col))
                };
                let (statistic, p_value) = r.map_or((0.0, 1.0), |r| (r.statistic, r.p_value));
                let psi = psi(refc, &col).unwrap_or(0.0);
                FeatureResult {
                    feature: j,
                    test: test.to_string(),
                    statistic,
                    p_value,
                    psi,
                    drifted: p_value < threshold || psi > self.cfg.psi,
                }
            })
            .collect();
        WindowResult {
            time_ms: now_ms(),
            alerting: features.iter().any(|f| f.drifted),
            window_rows: window.len(),
            reference_rows: reference.rows.len(),
            features,
        }
    }

    /// The latest tested window, windows tested, whether alerting, outliers counted.
    pub fn status(&self) -> (Option<WindowResult>, u64, bool, u64) {
        let s = self.state.lock();
        (s.last.clone(), s.windows, s.alerting, s.outliers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DriftTests {
        DriftTests {
            input: None,
            reference: None,
            reference_calls: 100,
            window: 50,
            p_value: 0.01,
            psi: 0.25,
            categorical: vec![1],
            outlier_threshold: Some(10.0),
        }
    }

    /// A deterministic spread of values in [0, 1).
    fn rows(n: usize, shift: f64, seed: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                let u = ((i * 7919 + seed * 104_729) % 1000) as f64 / 1000.0;
                vec![u + shift, ((i + seed) % 3) as f64]
            })
            .collect()
    }

    #[test]
    fn a_shift_alerts_within_one_window_and_reference_like_data_does_not() {
        let w = DriftWatch::new(cfg());
        let ev = w.push(rows(100, 0.0, 0));
        assert!(matches!(&ev[..], [Event::ReferenceComplete(r)] if r.len() == 100));
        let ev = w.push(rows(50, 0.0, 1));
        match &ev[..] {
            [Event::Window { result, changed }] => {
                assert!(!result.alerting && !changed, "{result:?}");
                assert_eq!(result.features[1].test, "chi2");
            }
            e => panic!("{e:?}"),
        }
        let ev = w.push(rows(50, 0.5, 2));
        match &ev[..] {
            [Event::Window { result, changed }] => {
                assert!(result.alerting && *changed, "{result:?}");
                assert!(result.features[0].drifted && !result.features[1].drifted);
            }
            e => panic!("{e:?}"),
        }
        let (last, windows, alerting, _) = w.status();
        assert_eq!((windows, alerting), (2, true));
        assert!(last.unwrap().alerting);
    }

    #[test]
    fn outliers_score_above_reference_rows() {
        let w = DriftWatch::new(cfg());
        assert!(w.score(&[vec![0.5, 1.0]]).is_none(), "no reference yet");
        w.set_reference(rows(100, 0.0, 0));
        let s = w.score(&[vec![0.5, 1.0], vec![40.0, 9.0]]).unwrap();
        assert!(s[0] < 10.0 && s[1] > 10.0, "{s:?}");
        assert_eq!(w.status().3, 1);
    }
}
