//! Prometheus metrics of a router, served on `--metrics-listen` (GET /metrics).
//!
//! Calls by model and gRPC status, call latency, retries on another replica, calls in
//! flight per node, and the cluster as this router sees it: desired, placed, ready and
//! pending replicas per model, each node's capacity and what placement uses of it, and
//! whether this router leads placement.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use troupe_telemetry::metrics::{Histogram, LATENCY_BUCKETS, esc};

use crate::routing::Router;

/// Counters the router updates per call.
#[derive(Default)]
pub struct RouterMetrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    retries: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl RouterMetrics {
    /// Counts one call and its latency. Unknown models count under model="".
    pub fn call(&self, model: &str, known: bool, code: tonic::Code, secs: f64) {
        let model = if known { model } else { "" };
        *self
            .requests
            .lock()
            .entry((model.to_string(), troupe_proto::codes::code_name(code).to_string()))
            .or_default() += 1;
        let h = self
            .latency
            .lock()
            .entry(model.to_string())
            .or_insert_with(|| Arc::new(Histogram::new(&LATENCY_BUCKETS)))
            .clone();
        h.observe(secs);
    }

    /// Counts one retry of a call on another replica.
    pub fn retry(&self, model: &str) {
        *self.retries.lock().entry(model.to_string()).or_default() += 1;
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The text exposition.
pub fn render(router: &Router, leader: &AtomicBool) -> String {
    let m = &router.metrics;
    let mut out = String::new();
    family(
        &mut out,
        "troupe_router_requests_total",
        "counter",
        "Inference calls through this router by model and gRPC status.",
    );
    for ((model, status), n) in m.requests.lock().iter() {
        let _ = writeln!(
            out,
            "troupe_router_requests_total{{model=\"{}\",status=\"{status}\"}} {n}",
            esc(model)
        );
    }
    family(
        &mut out,
        "troupe_router_request_duration_seconds",
        "histogram",
        "Time from a call's arrival at the router to its answer (retries included).",
    );
    for (model, h) in m.latency.lock().iter() {
        h.render(
            &mut out,
            "troupe_router_request_duration_seconds",
            &format!("model=\"{}\"", esc(model)),
        );
    }
    family(
        &mut out,
        "troupe_router_retries_total",
        "counter",
        "Calls retried on another replica after UNAVAILABLE or a broken connection.",
    );
    for (model, n) in m.retries.lock().iter() {
        let _ = writeln!(
            out,
            "troupe_router_retries_total{{model=\"{}\"}} {n}",
            esc(model)
        );
    }
    let s = router.store.snapshot();
    family(
        &mut out,
        "troupe_router_in_flight",
        "gauge",
        "Calls this router has outstanding on each node.",
    );
    for id in s.nodes.keys() {
        let _ = writeln!(
            out,
            "troupe_router_in_flight{{node=\"{}\"}} {}",
            esc(id),
            router.outstanding(id)
        );
    }
    let replicas: [(&str, &str); 4] = [
        ("troupe_replicas_desired", "Replicas a model asks for."),
        ("troupe_replicas_placed", "Replicas placed on nodes."),
        (
            "troupe_replicas_ready",
            "Nodes that report the model ready.",
        ),
        (
            "troupe_replicas_pending",
            "Replicas that fit nowhere (the reason is in `troupe models get`).",
        ),
    ];
    for (i, (name, help)) in replicas.iter().enumerate() {
        family(&mut out, name, "gauge", help);
        for (model, spec) in &s.models {
            let v = match i {
                0 => spec.replicas.max(1) as u64,
                1 => s
                    .placements
                    .iter()
                    .filter(|((m, _), _)| m == model)
                    .map(|(_, p)| p.count as u64)
                    .sum(),
                2 => router.store.routes(model).len() as u64,
                _ => s.pending.get(model).map_or(0, |p| p.missing as u64),
            };
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {v}", esc(model));
        }
    }
    let resources: [(&str, &str); 4] = [
        ("troupe_node_cpu_millis", "CPU a node offers, millicores."),
        (
            "troupe_node_cpu_placed_millis",
            "CPU the replicas placed on a node need, millicores.",
        ),
        ("troupe_node_memory_bytes", "Memory a node offers."),
        (
            "troupe_node_memory_placed_bytes",
            "Memory the replicas placed on a node need.",
        ),
    ];
    for (i, (name, help)) in resources.iter().enumerate() {
        family(&mut out, name, "gauge", help);
        for (id, n) in &s.nodes {
            let placed = |f: &dyn Fn(&troupe_proto::troupe::Resources) -> u64| -> u64 {
                s.placements
                    .iter()
                    .filter(|((_, node), _)| node == id)
                    .filter_map(|((m, _), p)| {
                        s.models
                            .get(m)
                            .map(|spec| f(&spec.resources.unwrap_or_default()) * p.count as u64)
                    })
                    .sum()
            };
            let v = match i {
                0 => n.capacity.cpu_millis,
                1 => placed(&|r| (r.cpu * 1000.0).round() as u64),
                2 => n.capacity.memory_bytes,
                _ => placed(&|r| r.memory_bytes),
            };
            let _ = writeln!(out, "{name}{{node=\"{}\"}} {v}", esc(id));
        }
    }
    family(
        &mut out,
        "troupe_router_leader",
        "gauge",
        "1 while this router leads placement.",
    );
    let _ = writeln!(
        out,
        "troupe_router_leader {}",
        u8::from(leader.load(Ordering::Acquire))
    );
    out
}
