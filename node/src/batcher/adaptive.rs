//! The adaptive batch window (`max_queue_delay_us = "auto"`): how long a batch that is
//! not full may wait for more calls, from what the queue measures.
//!
//! A batch's compute time is fit as a line in its rows, `c(n) ≈ a + b·n`, by least
//! squares over the recent batches (BentoML's adaptive batcher regresses latency on
//! batch size too). The intercept `a` is what one more batch costs whatever its size:
//! what a call saves by joining a batch instead of running in the next one. Arrivals are
//! measured as the mean gap `g` between calls. Waiting `w` for more calls lets about
//! `w / g` join, saving `a` each, while the instance idles for `w`: it raises throughput
//! exactly when `a > g`. So the window is `a` (bounded by the configured maximum) when
//! calls come faster than a batch's fixed cost, and 0 otherwise: a lone client's call
//! never waits (its gap is a whole round trip), and under load batches fill in the time
//! one batch's overhead would have cost anyway. As for a fixed delay, the queue does not
//! wait at all while no call can come (no other instance busy, nothing else queued).

use std::time::{Duration, Instant};

/// How much each new observation weighs against the past ones (1/64: about the last
/// 64 batches or arrivals count).
const WEIGHT: f64 = 1.0 / 64.0;

/// What the window is computed from.
#[derive(Debug, Default)]
pub struct Estimator {
    /// Exponentially weighted sums for the fit of compute time (ns) on rows.
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
    /// Mean gap between calls, ns (None before the second call).
    gap_ns: Option<f64>,
    last_arrival: Option<Instant>,
}

impl Estimator {
    /// Notes a call arriving at `now`.
    pub fn arrival(&mut self, now: Instant) {
        if let Some(last) = self.last_arrival {
            let gap = now.saturating_duration_since(last).as_nanos() as f64;
            self.gap_ns = Some(match self.gap_ns {
                Some(g) => g + WEIGHT * (gap - g),
                None => gap,
            });
        }
        self.last_arrival = Some(now);
    }

    /// Notes a batch of `rows` that took `compute`.
    pub fn batch(&mut self, rows: usize, compute: Duration) {
        let (x, y) = (rows as f64, compute.as_nanos() as f64);
        let keep = 1.0 - WEIGHT;
        self.n = self.n * keep + 1.0;
        self.sx = self.sx * keep + x;
        self.sy = self.sy * keep + y;
        self.sxx = self.sxx * keep + x * x;
        self.sxy = self.sxy * keep + x * y;
    }

    /// A batch's fixed cost `a`, ns: the fit's intercept, or while every batch had one
    /// size, their mean time (an upper bound of it). None before the first batch.
    pub fn fixed_cost_ns(&self) -> Option<f64> {
        if self.n <= 0.0 {
            return None;
        }
        let det = self.n * self.sxx - self.sx * self.sx;
        // Sizes vary less than a tenth of a row: the line is not determined.
        if det <= 0.01 * self.n * self.n {
            return Some(self.sy / self.n);
        }
        let a = (self.sy * self.sxx - self.sx * self.sxy) / det;
        Some(a.max(0.0))
    }

    /// The mean gap between calls, ns.
    pub fn gap_ns(&self) -> Option<f64> {
        self.gap_ns
    }

    /// How long the oldest call of a batch that is not full may wait now (at most `max`).
    pub fn window(&self, max: Duration) -> Duration {
        match (self.fixed_cost_ns(), self.gap_ns) {
            (Some(a), Some(g)) if a > g => Duration::from_nanos(a as u64).min(max),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An estimator that saw batches costing `a + b·n` µs for n in `sizes`, and calls
    /// arriving every `gap` µs.
    fn seen(a: u64, b: u64, sizes: &[usize], gap: u64) -> Estimator {
        let mut e = Estimator::default();
        for &n in sizes.iter().cycle().take(256) {
            e.batch(n, Duration::from_micros(a + b * n as u64));
        }
        let t = Instant::now();
        for i in 0..256 {
            e.arrival(t + Duration::from_micros(gap * i));
        }
        e
    }

    #[test]
    fn the_fit_finds_a_batch_fixed_cost() {
        let e = seen(40, 3, &[1, 2, 4, 8, 16], 10);
        let a = e.fixed_cost_ns().unwrap();
        assert!((a - 40_000.0).abs() < 1.0, "{a}");
        assert!((e.gap_ns().unwrap() - 10_000.0).abs() < 1.0);
    }

    #[test]
    fn calls_faster_than_the_fixed_cost_wait_for_it() {
        let e = seen(40, 3, &[1, 2, 4, 8], 10);
        assert_eq!(
            e.window(Duration::from_millis(10)),
            Duration::from_micros(40)
        );
        // Bounded by the configured maximum.
        assert_eq!(
            e.window(Duration::from_micros(25)),
            Duration::from_micros(25)
        );
    }

    #[test]
    fn calls_slower_than_the_fixed_cost_never_wait() {
        // A lone client: one call per round trip (500 µs), batches of one costing 60 µs.
        let e = seen(40, 20, &[1], 500);
        assert_eq!(e.fixed_cost_ns(), Some(60_000.0));
        assert_eq!(e.window(Duration::from_millis(10)), Duration::ZERO);
        // A model whose cost is all per row gains nothing from batching.
        let e = seen(0, 50, &[1, 2, 4, 8], 10);
        assert_eq!(e.window(Duration::from_millis(10)), Duration::ZERO);
    }

    #[test]
    fn nothing_measured_means_no_wait() {
        let e = Estimator::default();
        assert_eq!(e.window(Duration::from_millis(10)), Duration::ZERO);
    }
}
