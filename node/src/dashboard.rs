//! A node's web dashboard at `/` on its port (what a standalone node shows a person): its
//! models with state, replicas, queue and weights, models that failed to load, the drift
//! and quality gauges of monitored models, and recent traces linked to `--trace-ui-url`,
//! on the shared page of [`troupe_telemetry::dashboard`], whose live part charts calls/s,
//! latency and errors per model version from this node's own `/metrics`.

use std::sync::Arc;

use troupe_telemetry::dashboard::{Cell, Gauge, Live, Page, Row, Table};

use crate::metrics::{self, ModelSample, QUALITY_GAUGES, Unit, model_labels, window_label};
use crate::registry::Registry;

/// The live part's metrics: the node's calls and latency per model version.
const LIVE: Live = Live {
    requests: metrics::REQUESTS,
    duration: metrics::REQUEST_DURATION,
    key_labels: &["model", "version"],
};

/// The routes of the page and its assets.
pub fn routes(registry: Arc<Registry>, trace_ui: Option<String>) -> axum::Router {
    troupe_telemetry::dashboard::routes(move || page(&registry, trace_ui.as_deref()))
}

/// The page as of now.
pub fn page(registry: &Registry, trace_ui: Option<&str>) -> Page {
    let mut loaded = registry.list();
    loaded.sort_by(|a, b| (&a.def.name, &a.def.version).cmp(&(&b.def.name, &b.def.version)));
    let samples: Vec<_> = loaded.iter().map(|m| m.sample()).collect();
    let models = Table::new(
        "models",
        "Models",
        vec![
            "model",
            "version",
            "backend",
            "state",
            "replicas ready",
            "queued",
            "in flight",
            "weights (sha256)",
        ],
    )
    .live()
    .or_empty("no model loaded")
    .rows(loaded.iter().zip(&samples).map(|(m, s)| {
        let state = troupe_proto::labels::state_name(if s.ready {
            troupe_proto::troupe::ModelState::Ready
        } else {
            troupe_proto::troupe::ModelState::Unavailable
        } as i32);
        Row::keyed(
            format!("{}/{}", s.name, s.version),
            [
                Cell::text(s.name),
                Cell::text(s.version),
                Cell::text(m.def.backend),
                Cell::text(state).class(state),
                Cell::number(format!("{} / {}", m.ready_replicas(), m.replicas.len())),
                Cell::gauge(
                    Gauge::new(metrics::QUEUE_LENGTH, &model_labels(s)).digits(0),
                    Some(s.queued as f64),
                ),
                Cell::gauge(
                    Gauge::new(metrics::IN_FLIGHT, &model_labels(s)).digits(0),
                    Some(s.in_flight as f64),
                ),
                Cell::text(m.lineage.digest.get(..12).unwrap_or(&m.lineage.digest)),
            ],
        )
    }));
    let failed = Table::new("failed", "Not loaded", vec!["model", "why"]).rows(
        registry
            .failures()
            .into_iter()
            .map(|(name, why)| Row::new([Cell::text(name), Cell::text(why).class("FAILED")])),
    );
    Page {
        title: format!("Troupe node {}", registry.opts.node_id),
        live: LIVE,
        tables: vec![
            models,
            failed,
            drift(&samples),
            quality(&samples),
            registry.metrics.traces.table(trace_ui),
        ],
        note: "Tables as of the page's load.".into(),
    }
}

/// Input drift of the models with a drift hook or a `[monitoring.drift]` watch.
fn drift(samples: &[ModelSample]) -> Table {
    let alert = |on: Option<bool>| match on {
        Some(true) => Cell::text("ALERT").class("alert"),
        Some(false) => Cell::text("ok").class("ok"),
        None => Cell::text("–"),
    };
    Table::new(
        "drift",
        "Drift",
        vec![
            "model",
            "version",
            "drift score",
            "score alert",
            "windows tested",
            "features drifted (last window)",
            "window alert",
            "outliers",
        ],
    )
    .rows(
        samples
            .iter()
            .filter(|s| s.drift.is_some() || s.feature_drift.is_some())
            .map(|s| {
                let l = model_labels(s);
                let watch = s.feature_drift.as_ref();
                let drifted = watch.and_then(|w| w.last.as_ref()).map(|w| {
                    let d = w.features.iter().filter(|f| f.drifted).count();
                    format!("{d} of {}", w.features.len())
                });
                Row::new([
                    Cell::text(s.name),
                    Cell::text(s.version),
                    match &s.drift {
                        Some(d) => Cell::gauge(Gauge::new(metrics::DRIFT_SCORE, &l), Some(d.score)),
                        None => Cell::text("–"),
                    },
                    alert(s.drift.as_ref().map(|d| d.alerting)),
                    match watch {
                        Some(w) => Cell::gauge(
                            Gauge::counter(metrics::FEATURE_DRIFT_WINDOWS, &l),
                            Some(w.windows as f64),
                        ),
                        None => Cell::text("–"),
                    },
                    Cell::number(drifted.unwrap_or_else(|| "–".into())),
                    alert(watch.map(|w| w.alerting)),
                    match watch {
                        Some(w) => Cell::gauge(
                            Gauge::counter(metrics::OUTLIERS, &l),
                            Some(w.outliers as f64),
                        ),
                        None => Cell::text("–"),
                    },
                ])
            }),
    )
}

/// Live quality of the models with `[monitoring]`, per window: every quality gauge of
/// the metrics, the shares as meters.
fn quality(samples: &[ModelSample]) -> Table {
    let mut columns = vec!["model", "version", "window"];
    columns.extend(
        QUALITY_GAUGES
            .iter()
            .map(|(name, ..)| name.trim_start_matches("troupe_quality_")),
    );
    Table::new("quality", "Quality", columns).rows(samples.iter().flat_map(|s| {
        let windows = s.quality.iter().flat_map(|q| q.windows.iter().enumerate());
        windows.map(move |(i, w)| {
            let window = window_label(i);
            let l = [
                ("model", s.name),
                ("version", s.version),
                ("window", window),
            ];
            let mut cells = vec![
                Cell::text(s.name),
                Cell::text(s.version),
                Cell::text(&w.window),
            ];
            cells.extend(QUALITY_GAUGES.iter().map(|(name, _, read, unit)| {
                let g = Gauge::new(name, &l);
                let g = match unit {
                    Unit::Share => g.meter(1.0),
                    Unit::Count => g.digits(0),
                    Unit::Value => g,
                };
                Cell::gauge(g, read(w))
            }));
            Row::new(cells)
        })
    }))
}
