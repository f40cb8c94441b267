//! Prometheus text exposition: lock-free histograms, and the `GET /metrics` route (axum,
//! the HTTP stack of the servers' own port, also served alone on `--metrics-listen`),
//! shared by the node and the router.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

/// Latency bucket bounds, seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Batch size bucket bounds, rows.
pub const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A lock-free cumulative histogram.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in micro-units (µs for latencies, rows for sizes).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Writes the `_bucket`, `_sum` and `_count` series.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {n}");
    }
}

/// Escapes a label value.
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What a scrape answers: the metrics as Prometheus text, rendered at each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The `GET /metrics` route (merged into a server's own routes, or served alone).
pub fn routes(render: Render) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(),
                )
            }
        }),
    )
}

/// Serves [`routes`] on `listener` (`--metrics-listen`) until the process ends.
pub async fn serve(listener: TcpListener, render: Render) {
    info!(addr = ?listener.local_addr().ok(), "metrics endpoint");
    if let Err(e) = axum::serve(listener, routes(render)).await {
        warn!(error = %e, "metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(h: &Histogram) -> String {
        let mut out = String::new();
        h.render(&mut out, "x", "model=\"m\"");
        out
    }

    #[test]
    fn buckets_are_cumulative_with_sum_and_count() {
        static BOUNDS: [f64; 3] = [1.0, 2.0, 4.0];
        let h = Histogram::new(&BOUNDS);
        for v in [0.5, 1.0, 1.5, 3.0, 10.0] {
            h.observe(v);
        }
        let text = render(&h);
        let expected = "x_bucket{model=\"m\",le=\"1\"} 2\n\
                        x_bucket{model=\"m\",le=\"2\"} 3\n\
                        x_bucket{model=\"m\",le=\"4\"} 4\n\
                        x_bucket{model=\"m\",le=\"+Inf\"} 5\n\
                        x_sum{model=\"m\"} 16\n\
                        x_count{model=\"m\"} 5\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn durations_are_observed_in_seconds_and_an_empty_histogram_renders_zeros() {
        let h = Histogram::new(&LATENCY_BUCKETS);
        let empty = render(&h);
        assert!(empty.contains("x_count{model=\"m\"} 0"), "{empty}");
        assert!(empty.contains("x_sum{model=\"m\"} 0"), "{empty}");
        h.observe_duration(Duration::from_micros(300));
        let text = render(&h);
        assert!(
            text.contains("x_bucket{model=\"m\",le=\"0.00025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{model=\"m\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(text.contains("x_sum{model=\"m\"} 0.0003"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
