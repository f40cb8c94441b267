//! Prometheus metrics of a router, served on `--metrics-listen` (GET /metrics).
//!
//! Calls by model and gRPC status, call latency, retries on another replica, calls in
//! flight per node, and the cluster as this router sees it: desired, placed, ready and
//! pending replicas per model, each node's capacity and what placement uses of it, and
//! whether this router leads placement.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;
use troupe_telemetry::metrics::{Histogram, LATENCY_BUCKETS, esc};

use crate::state::ClusterState;

/// Counters the router updates per call.
#[derive(Default)]
pub struct RouterMetrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    retries: Mutex<BTreeMap<String, u64>>,
    ejections: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
    /// The latest traced calls (ms since the epoch, model, trace id), newest last.
    traces: Mutex<std::collections::VecDeque<(u64, String, String)>>,
}

/// Traced calls the dashboard lists.
pub const RECENT_TRACES: usize = 20;

impl RouterMetrics {
    /// Counts one call and its latency. Unknown models count under model="".
    pub fn call(&self, model: &str, known: bool, code: tonic::Code, secs: f64) {
        let model = if known { model } else { "" };
        *self
            .requests
            .lock()
            .entry((
                model.to_string(),
                troupe_proto::codes::code_name(code).to_string(),
            ))
            .or_default() += 1;
        let h = self
            .latency
            .lock()
            .entry(model.to_string())
            .or_insert_with(|| Arc::new(Histogram::new(&LATENCY_BUCKETS)))
            .clone();
        h.observe(secs);
    }

    /// Notes a traced call for the dashboard's list (the last [`RECENT_TRACES`]).
    pub fn traced(&self, model: &str, trace_id: &str) {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut t = self.traces.lock();
        if t.len() == RECENT_TRACES {
            t.pop_front();
        }
        t.push_back((ms, model.to_string(), trace_id.to_string()));
    }

    /// The latest traced calls, newest first.
    pub fn recent_traces(&self) -> Vec<(u64, String, String)> {
        self.traces.lock().iter().rev().cloned().collect()
    }

    /// Counts one retry of a call on another replica.
    pub fn retry(&self, model: &str) {
        *self.retries.lock().entry(model.to_string()).or_default() += 1;
    }

    /// Counts one ejection of a node from replica picking (it could not be reached).
    pub fn ejection(&self, node: &str) {
        *self.ejections.lock().entry(node.to_string()).or_default() += 1;
    }
}

/// What a scrape reads of the cluster and of this router's calls in flight, gathered by
/// the router ([`crate::routing::Router::metrics_text`]): the metrics render from values.
pub struct ClusterSample<'a> {
    pub state: &'a ClusterState,
    /// Calls this router has outstanding, per node.
    pub in_flight: BTreeMap<String, u64>,
    /// Ready replicas in the routing table, per model.
    pub ready: BTreeMap<String, u64>,
    pub leader: bool,
}

/// A gauge per model or per node: name, help, and how to read it for one key.
type Gauge = (&'static str, &'static str, fn(&ClusterSample, &str) -> u64);

const REPLICA_GAUGES: [Gauge; 4] = [
    (
        "troupe_replicas_desired",
        "Replicas a model asks for.",
        |c, m| {
            c.state
                .models
                .get(m)
                .map_or(0, |s| u64::from(s.replicas.max(1)))
        },
    ),
    (
        "troupe_replicas_placed",
        "Replicas placed on nodes.",
        |c, m| c.state.placed_replicas(m),
    ),
    (
        "troupe_replicas_ready",
        "Nodes that report the model ready.",
        |c, m| c.ready.get(m).copied().unwrap_or(0),
    ),
    (
        "troupe_replicas_pending",
        "Replicas that fit nowhere (the reason is in `troupe models get`).",
        |c, m| c.state.pending.get(m).map_or(0, |p| u64::from(p.missing)),
    ),
];

const NODE_GAUGES: [Gauge; 4] = [
    (
        "troupe_node_cpu_millis",
        "CPU a node offers, millicores.",
        |c, n| c.state.nodes.get(n).map_or(0, |r| r.capacity.cpu_millis),
    ),
    (
        "troupe_node_cpu_placed_millis",
        "CPU the replicas placed on a node need, millicores.",
        |c, n| c.state.placed_on(n).cpu_millis,
    ),
    (
        "troupe_node_memory_bytes",
        "Memory a node offers.",
        |c, n| c.state.nodes.get(n).map_or(0, |r| r.capacity.memory_bytes),
    ),
    (
        "troupe_node_memory_placed_bytes",
        "Memory the replicas placed on a node need.",
        |c, n| c.state.placed_on(n).memory_bytes,
    ),
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The text exposition, from the router's counters and a sample of the cluster.
pub fn render(m: &RouterMetrics, c: &ClusterSample) -> String {
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
    family(
        &mut out,
        "troupe_router_ejections_total",
        "counter",
        "Times a node was left out of replica picking because it could not be reached.",
    );
    for (node, n) in m.ejections.lock().iter() {
        let _ = writeln!(
            out,
            "troupe_router_ejections_total{{node=\"{}\"}} {n}",
            esc(node)
        );
    }
    family(
        &mut out,
        "troupe_router_in_flight",
        "gauge",
        "Calls this router has outstanding on each node.",
    );
    for id in c.state.nodes.keys() {
        let n = c.in_flight.get(id).copied().unwrap_or(0);
        let _ = writeln!(out, "troupe_router_in_flight{{node=\"{}\"}} {n}", esc(id));
    }
    for (name, help, read) in REPLICA_GAUGES {
        family(&mut out, name, "gauge", help);
        for model in c.state.models.keys() {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", esc(model), read(c, model));
        }
    }
    for (name, help, read) in NODE_GAUGES {
        family(&mut out, name, "gauge", help);
        for id in c.state.nodes.keys() {
            let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", esc(id), read(c, id));
        }
    }
    family(
        &mut out,
        "troupe_router_leader",
        "gauge",
        "1 while this router leads placement.",
    );
    let _ = writeln!(out, "troupe_router_leader {}", u8::from(c.leader));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{NodeRecord, PendingValue, PlacementValue};
    use troupe_proto::troupe::{ModelSpec, Resources};

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
    }

    #[test]
    fn renders_calls_and_the_cluster_from_the_sample() {
        let m = RouterMetrics::default();
        m.call("m", true, tonic::Code::Ok, 0.001);
        m.call("x", false, tonic::Code::NotFound, 0.001);
        m.retry("m");
        let mut state = ClusterState::default();
        let mut node = NodeRecord::default();
        node.capacity.cpu_millis = 4000;
        node.capacity.memory_bytes = 1 << 30;
        state.nodes.insert("a".into(), node);
        state.models.insert(
            "m".into(),
            ModelSpec {
                replicas: 3,
                resources: Some(Resources {
                    cpu: 0.5,
                    memory_bytes: 10,
                    gpu_memory_bytes: 0,
                }),
                ..Default::default()
            },
        );
        state.placements.insert(
            ("m".into(), "a".into()),
            PlacementValue {
                count: 2,
                gpu: None,
            },
        );
        state.pending.insert(
            "m".into(),
            PendingValue {
                missing: 1,
                reason: "no room".into(),
            },
        );
        let sample = ClusterSample {
            state: &state,
            in_flight: BTreeMap::from([("a".into(), 5)]),
            ready: BTreeMap::from([("m".into(), 1)]),
            leader: true,
        };
        let text = render(&m, &sample);
        for (series, value) in [
            (
                "troupe_router_requests_total{model=\"m\",status=\"OK\"}",
                "1",
            ),
            (
                "troupe_router_requests_total{model=\"\",status=\"NOT_FOUND\"}",
                "1",
            ),
            (
                "troupe_router_request_duration_seconds_count{model=\"m\"}",
                "1",
            ),
            ("troupe_router_retries_total{model=\"m\"}", "1"),
            ("troupe_router_in_flight{node=\"a\"}", "5"),
            ("troupe_replicas_desired{model=\"m\"}", "3"),
            ("troupe_replicas_placed{model=\"m\"}", "2"),
            ("troupe_replicas_ready{model=\"m\"}", "1"),
            ("troupe_replicas_pending{model=\"m\"}", "1"),
            ("troupe_node_cpu_millis{node=\"a\"}", "4000"),
            ("troupe_node_cpu_placed_millis{node=\"a\"}", "1000"),
            ("troupe_node_memory_bytes{node=\"a\"}", "1073741824"),
            ("troupe_node_memory_placed_bytes{node=\"a\"}", "20"),
            ("troupe_router_leader", "1"),
        ] {
            assert_eq!(line(&text, series), Some(value), "{series} in\n{text}");
        }
    }
}
