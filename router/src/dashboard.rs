//! The web dashboard at `/` on the router's port: the cluster as tables rendered on the
//! server (minijinja: nodes with capacity and placed use, models with state and
//! replicas, placements, pending replicas, recent traces linked to `--trace-ui-url`), and
//! live charts of calls/s, latency and errors per model, which the page's script computes
//! from this router's own `/metrics` and draws with the vendored uPlot (`router/ui/`).
//! Everything it loads comes from the router: it works with no other network.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::routing::Router;
use crate::service::models::model_status;

const PAGE: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/dashboard.js");
const UPLOT_JS: &str = include_str!("../ui/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../ui/vendor/uplot/uPlot.min.css");

/// What the dashboard reads besides the router: whether it leads placement, and the
/// tracing UI's URL prefix for a trace id (`--trace-ui-url`).
#[derive(Clone)]
pub struct Dashboard {
    pub router: Arc<Router>,
    pub router_id: String,
    pub leader: Arc<AtomicBool>,
    pub trace_ui: Option<String>,
}

#[derive(Serialize)]
struct ModelRow {
    name: String,
    version: String,
    backend: String,
    state: String,
    ready: u32,
    desired: u32,
}

#[derive(Serialize)]
struct NodeRow {
    id: String,
    addr: String,
    cpu: u64,
    cpu_placed: u64,
    memory_mb: u64,
    memory_placed_mb: u64,
    ready_models: String,
}

#[derive(Serialize)]
struct PlacementRow {
    model: String,
    node: String,
    count: u32,
}

#[derive(Serialize)]
struct PendingRow {
    model: String,
    missing: u32,
    reason: String,
}

#[derive(Serialize)]
struct TraceRow {
    time: String,
    model: String,
    trace_id: String,
}

/// The routes: `/` (the page), `/ui/dashboard.js`, `/ui/uPlot.iife.min.js`, `/ui/uPlot.min.css`.
pub fn routes(d: Dashboard) -> axum::Router {
    let asset = |body: &'static str, kind: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, kind)], body) })
    };
    axum::Router::new()
        .route("/", get(move || page(d.clone())))
        .route("/ui/dashboard.js", asset(SCRIPT, "text/javascript"))
        .route("/ui/uPlot.iife.min.js", asset(UPLOT_JS, "text/javascript"))
        .route("/ui/uPlot.min.css", asset(UPLOT_CSS, "text/css"))
}

async fn page(d: Dashboard) -> Response {
    match render(&d) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard not rendered");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("dashboard: {e}"),
            )
                .into_response()
        }
    }
}

fn render(d: &Dashboard) -> Result<String, minijinja::Error> {
    let s = d.router.store.snapshot();
    let models: Vec<ModelRow> = s
        .models
        .iter()
        .map(|(name, spec)| {
            let st = model_status(&s, name, spec, &d.router.store.routes(name));
            ModelRow {
                name: name.clone(),
                version: if spec.version.is_empty() {
                    "1".into()
                } else {
                    spec.version.clone()
                },
                backend: troupe_proto::troupe::BackendKind::try_from(spec.backend)
                    .map_or("?", |b| b.as_str_name())
                    .trim_start_matches("BACKEND_KIND_")
                    .to_ascii_lowercase(),
                state: troupe_proto::troupe::ModelState::try_from(st.state)
                    .map_or("?", |s| s.as_str_name())
                    .trim_start_matches("MODEL_STATE_")
                    .to_string(),
                ready: st.ready_replicas,
                desired: spec.replicas.max(1),
            }
        })
        .collect();
    let nodes: Vec<NodeRow> = s
        .nodes
        .iter()
        .map(|(id, n)| {
            let used = s.placed_on(id);
            let ready = s
                .status
                .get(id)
                .map(|st| st.ready_models())
                .unwrap_or_default();
            NodeRow {
                id: id.clone(),
                addr: n.addr.clone(),
                cpu: n.capacity.cpu_millis,
                cpu_placed: used.cpu_millis,
                memory_mb: n.capacity.memory_bytes >> 20,
                memory_placed_mb: used.memory_bytes >> 20,
                ready_models: ready.join(", "),
            }
        })
        .collect();
    let placements: Vec<PlacementRow> = s
        .placements
        .iter()
        .map(|((model, node), p)| PlacementRow {
            model: model.clone(),
            node: node.clone(),
            count: p.count,
        })
        .collect();
    let pending: Vec<PendingRow> = s
        .pending
        .iter()
        .map(|(model, p)| PendingRow {
            model: model.clone(),
            missing: p.missing,
            reason: p.reason.clone(),
        })
        .collect();
    let traces: Vec<TraceRow> = d
        .router
        .metrics
        .recent_traces()
        .into_iter()
        .map(|(ms, model, trace_id)| TraceRow {
            time: format!("{}.{:03}", ms / 1000, ms % 1000),
            model,
            trace_id,
        })
        .collect();
    let mut env = minijinja::Environment::new();
    env.add_template("index.html", PAGE)?;
    env.get_template("index.html")?.render(minijinja::context! {
        router => d.router_id,
        leader => d.leader.load(Ordering::Acquire),
        models,
        nodes,
        placements,
        pending,
        traces,
        trace_ui => d.trace_ui,
    })
}
