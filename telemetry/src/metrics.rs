//! Prometheus metrics shared by the node and the router, on prometheus-client: the
//! histogram buckets, [`family`] (one family a scrape-time [`Collector`] writes; label
//! values are escaped by prometheus-client), and the `GET /metrics` route (axum, the HTTP stack
//! of the servers' own port, also served alone on `--metrics-listen`), which answers
//! prometheus-client's OpenMetrics text encoding of the server's registry.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;
pub use prometheus_client::metrics::counter::{ConstCounter, Counter};
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// Latency bucket bounds, seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Batch size bucket bounds, rows.
pub const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A histogram of latencies in seconds ([`LATENCY_BUCKETS`]).
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A histogram of batch sizes in rows ([`BATCH_BUCKETS`]).
pub fn batch_histogram() -> Histogram {
    Histogram::new(BATCH_BUCKETS)
}

/// Writes one family at a scrape: its descriptor, then each series with its labels. A
/// family without series is left out (as Prometheus' Go client does).
pub fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result
where
    L: EncodeLabelSet,
    M: EncodeMetric,
{
    let mut series = series.into_iter().peekable();
    let Some((_, first)) = series.peek() else {
        return Ok(());
    };
    let mut family = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one metric at a scrape with no labels of its own (a [`Family`] writes its
/// series' labels itself).
pub fn metric(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> std::fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A registry of one collector: what a server's scrape encodes.
pub fn registry(collector: impl Collector) -> Arc<Registry> {
    let mut r = Registry::default();
    r.register_collector(Box::new(collector));
    Arc::new(r)
}

/// The OpenMetrics text of a registry.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        warn!(error = %e, "metrics not encoded");
    }
    out
}

/// The OpenMetrics text format's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `GET /metrics` route (merged into a server's own routes, or served alone).
pub fn routes(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    encode(&registry),
                )
            }
        }),
    )
}

/// Serves [`routes`] on `listener` (`--metrics-listen`) until the process ends.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    info!(addr = ?listener.local_addr().ok(), "metrics endpoint");
    if let Err(e) = axum::serve(listener, routes(registry)).await {
        warn!(error = %e, "metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector of fixed series, as the servers' are.
    #[derive(Debug)]
    struct Fixed(Histogram);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            family(
                &mut encoder,
                "x_seconds",
                "A histogram.",
                [([("model", "m")], self.0.clone())],
            )?;
            family(
                &mut encoder,
                "calls",
                "A counter.",
                [([("model", "a\"b\\c\nd")], ConstCounter::new(3u64))],
            )?;
            family(
                &mut encoder,
                "empty",
                "No series.",
                std::iter::empty::<([(&str, &str); 0], ConstGauge)>(),
            )
        }
    }

    #[test]
    fn a_collector_encodes_histograms_counters_and_escaped_labels_as_openmetrics() {
        static BOUNDS: [f64; 3] = [1.0, 2.0, 4.0];
        let h = Histogram::new(BOUNDS);
        for v in [0.5, 1.0, 1.5, 3.0, 10.0] {
            h.observe(v);
        }
        let text = encode(&registry(Fixed(h)));
        let expected = "# HELP x_seconds A histogram.\n\
                        # TYPE x_seconds histogram\n\
                        x_seconds_sum{model=\"m\"} 16.0\n\
                        x_seconds_count{model=\"m\"} 5\n\
                        x_seconds_bucket{le=\"1.0\",model=\"m\"} 2\n\
                        x_seconds_bucket{le=\"2.0\",model=\"m\"} 3\n\
                        x_seconds_bucket{le=\"4.0\",model=\"m\"} 4\n\
                        x_seconds_bucket{le=\"+Inf\",model=\"m\"} 5\n\
                        # HELP calls A counter.\n\
                        # TYPE calls counter\n\
                        calls_total{model=\"a\\\"b\\\\c\\nd\"} 3\n\
                        # EOF\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn latencies_land_in_their_bucket() {
        let h = latency_histogram();
        h.observe(300e-6);
        let text = encode(&registry(Fixed(h)));
        assert!(
            text.contains("x_seconds_bucket{le=\"0.00025\",model=\"m\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0005\",model=\"m\"} 1"),
            "{text}"
        );
        assert!(text.contains("x_seconds_sum{model=\"m\"} 0.0003"), "{text}");
    }
}
