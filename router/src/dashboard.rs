//! The router's web dashboard at `/` on its port: the cluster as tables built at each
//! load (models with state and replicas, nodes with capacity and placed use, placements,
//! pending replicas, recent traces linked to `--trace-ui-url`), on the shared page of
//! [`troupe_telemetry::dashboard`], whose live part charts calls/s, latency and errors
//! per model from this router's own `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use troupe_proto::labels::{backend_name, state_name};
use troupe_telemetry::dashboard::{Cell, Live, Page, Row, Table};

use crate::routing::Router;
use crate::service::models::model_status;

/// What the dashboard reads besides the router: whether it leads placement, and the
/// tracing UI's URL prefix for a trace id (`--trace-ui-url`).
#[derive(Clone)]
pub struct Dashboard {
    pub router: Arc<Router>,
    pub router_id: String,
    pub leader: Arc<AtomicBool>,
    pub trace_ui: Option<String>,
}

/// The live part's metrics: the router's calls and latency per model.
const LIVE: Live = Live {
    requests: crate::metrics::REQUESTS,
    duration: crate::metrics::REQUEST_DURATION,
    key_labels: &["model"],
};

/// The routes of the page and its assets.
pub fn routes(d: Dashboard) -> axum::Router {
    troupe_telemetry::dashboard::routes(move || page(&d))
}

/// The page as of now.
pub fn page(d: &Dashboard) -> Page {
    let s = d.router.store.snapshot();
    let models = Table::new(
        "models",
        "Models",
        vec!["model", "version", "backend", "state", "ready / desired"],
    )
    .live()
    .or_empty("no model declared")
    .rows(s.models.iter().map(|(name, spec)| {
        let st = model_status(&s, name, spec, &d.router.store.routes(name));
        let state = state_name(st.state);
        Row::keyed(
            name.clone(),
            [
                Cell::text(name),
                Cell::text(if spec.version.is_empty() {
                    "1"
                } else {
                    &spec.version
                }),
                Cell::text(backend_name(spec.backend)),
                Cell::text(state).class(state),
                Cell::number(format!("{} / {}", st.ready_replicas, spec.replicas.max(1))),
            ],
        )
    }));
    let nodes = Table::new(
        "nodes",
        "Nodes",
        vec![
            "node",
            "address",
            "CPU placed / offered (millicores)",
            "memory placed / offered (MiB)",
            "models ready",
        ],
    )
    .or_empty("no node registered")
    .rows(s.nodes.iter().map(|(id, n)| {
        let used = s.placed_on(id);
        let ready = s
            .status
            .get(id)
            .map(|st| st.ready_models())
            .unwrap_or_default();
        Row::new([
            Cell::text(id),
            Cell::text(&n.addr),
            Cell::number(format!("{} / {}", used.cpu_millis, n.capacity.cpu_millis)),
            Cell::number(format!(
                "{} / {}",
                used.memory_bytes >> 20,
                n.capacity.memory_bytes >> 20
            )),
            Cell::text(ready.join(", ")),
        ])
    }));
    let placements = Table::new(
        "placements",
        "Placements",
        vec!["model", "node", "replicas"],
    )
    .or_empty("nothing placed")
    .rows(s.placements.iter().map(|((model, node), p)| {
        Row::new([Cell::text(model), Cell::text(node), Cell::number(p.count)])
    }));
    let pending = Table::new("pending", "Pending", vec!["model", "missing", "why"]).rows(
        s.pending.iter().map(|(model, p)| {
            Row::new([
                Cell::text(model),
                Cell::number(p.missing),
                Cell::text(&p.reason),
            ])
        }),
    );
    let leader = if d.leader.load(Ordering::Acquire) {
        " (placement leader)"
    } else {
        ""
    };
    Page {
        title: format!("Troupe router {}{leader}", d.router_id),
        live: LIVE,
        tables: vec![
            models,
            nodes,
            placements,
            pending,
            d.router.metrics.traces.table(d.trace_ui.as_deref()),
        ],
        note: "Tables as of the page's load.".into(),
    }
}
