//! Recording answers and errors into HDR histograms (microsecond resolution), and
//! what they sum up to: latency percentiles and time windows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::{Counter, Histogram};
use serde::Serialize;

/// Latency percentiles in microseconds (zero when there was no answer).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// One time window of a step.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    /// Seconds after warm-up.
    pub start_s: f64,
    pub answers: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
}

/// A latency histogram in microseconds, 3 significant digits, growing as needed.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid HDR histogram precision")
}

/// A smaller histogram for one time window: 2 significant digits, 32-bit counts.
fn window_histogram() -> Histogram<u32> {
    Histogram::new(2).expect("2 significant digits is a valid HDR histogram precision")
}

/// Records a value, growing the histogram to fit it.
pub(crate) fn record<T: Counter>(h: &mut Histogram<T>, us: u64) {
    if h.record(us).is_err() {
        // Only when growing would overflow usize: keep the sample, clamped.
        h.saturating_record(us);
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn summarize<T: Counter>(h: &Histogram<T>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        min_us: h.min(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: h.mean(),
    }
}

/// Answers and errors of one model, or of all of them.
pub(crate) struct Tally {
    pub hist: Histogram<u64>,
    pub answers: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            hist: new_histogram(),
            answers: 0,
            errors: BTreeMap::new(),
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct Window {
    hist: Histogram<u32>,
    answers: u64,
    errors: u64,
}

/// Everything measured in one step. Time windows are keyed by completion time.
pub(crate) struct Recorder {
    start: Instant,
    window: Duration,
    pub total: Tally,
    pub models: Vec<Tally>,
    windows: Vec<Window>,
    pub last_event: Option<Instant>,
    /// The first message seen for each error name.
    pub messages: BTreeMap<String, String>,
}

impl Recorder {
    pub fn new(start: Instant, window: Duration, models: usize) -> Self {
        Self {
            start,
            window,
            total: Tally::new(),
            models: (0..models).map(|_| Tally::new()).collect(),
            windows: Vec::new(),
            last_event: None,
            messages: BTreeMap::new(),
        }
    }

    fn window(&mut self, at: Instant) -> Option<&mut Window> {
        self.last_event = Some(self.last_event.map_or(at, |l| l.max(at)));
        let secs = at.saturating_duration_since(self.start).as_secs_f64();
        let idx = (secs / self.window.as_secs_f64().max(1e-3)) as usize;
        // A run of more than ~3 days at 1 s windows: stop keeping windows.
        if idx > 262_144 {
            return None;
        }
        while self.windows.len() <= idx {
            self.windows.push(Window {
                hist: window_histogram(),
                answers: 0,
                errors: 0,
            });
        }
        self.windows.get_mut(idx)
    }

    pub fn answer(&mut self, model: usize, latency: Duration, done: Instant) {
        let us = micros(latency);
        record(&mut self.total.hist, us);
        self.total.answers += 1;
        if let Some(m) = self.models.get_mut(model) {
            record(&mut m.hist, us);
            m.answers += 1;
        }
        if let Some(w) = self.window(done) {
            record(&mut w.hist, us);
            w.answers += 1;
        }
    }

    pub fn error(&mut self, model: usize, code: &str, message: String, done: Instant) {
        *self.total.errors.entry(code.to_string()).or_default() += 1;
        if !self.messages.contains_key(code) {
            let message: String = message.chars().take(300).collect();
            self.messages.insert(code.to_string(), message);
        }
        if let Some(m) = self.models.get_mut(model) {
            *m.errors.entry(code.to_string()).or_default() += 1;
        }
        if let Some(w) = self.window(done) {
            w.errors += 1;
        }
    }

    pub fn windows(&self) -> Vec<WindowReport> {
        let secs = self.window.as_secs_f64();
        self.windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let s = (!w.hist.is_empty()).then(|| summarize(&w.hist));
                WindowReport {
                    start_s: i as f64 * secs,
                    answers: w.answers,
                    errors: w.errors,
                    throughput: w.answers as f64 / secs,
                    p50_us: s.as_ref().map(|s| s.p50_us),
                    p99_us: s.as_ref().map(|s| s.p99_us),
                    max_us: s.as_ref().map(|s| s.max_us),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_summarizes() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, Duration::from_secs(1), 2);
        for i in 1..=100u64 {
            r.answer(
                (i % 2) as usize,
                Duration::from_millis(i),
                t0 + Duration::from_millis(i * 20),
            );
        }
        r.error(
            0,
            "UNAVAILABLE",
            "a".into(),
            t0 + Duration::from_millis(2500),
        );
        r.error(1, "dropped", "b".into(), t0 + Duration::from_millis(2500));
        r.error(1, "dropped", "c".into(), t0 + Duration::from_millis(2500));
        let s = summarize(&r.total.hist);
        assert_eq!(s.count, 100);
        assert!((49_000..=51_000).contains(&s.p50_us), "{s:?}");
        assert!((99_000..=101_000).contains(&s.max_us), "{s:?}");
        assert_eq!(r.total.error_count(), 3);
        assert_eq!(r.messages["dropped"], "b");
        assert_eq!(r.models[0].answers + r.models[1].answers, 100);
        let w = r.windows();
        assert_eq!(w.len(), 3);
        assert_eq!(w.iter().map(|w| w.answers).sum::<u64>(), 100);
        assert_eq!(w[2].errors, 3);
    }
}
