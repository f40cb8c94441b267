//! Prometheus metrics of a router, on its own port and on `--metrics-listen` (GET /metrics).
//!
//! Calls by model and gRPC status, call latency, retries on another replica, calls in
//! flight per node, and the cluster as this router sees it: desired, placed, ready and
//! pending replicas per model, each node's capacity and what placement uses of it, and
//! whether this router leads placement. A scrape ([`Scrape`], a prometheus-client
//! collector) writes the cluster's families from one sample of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use troupe_telemetry::dashboard::RecentTraces;
use troupe_telemetry::metrics::{
    Collector, ConstGauge, Counter, DescriptorEncoder, Family, Histogram, family,
    latency_histogram, metric,
};

use crate::routing::Router;
use crate::state::ClusterState;

/// One label, owned (the key of a per-call series).
type Label = [(&'static str, String); 1];

fn label(key: &'static str, value: &str) -> Label {
    [(key, value.to_string())]
}

/// Counters the router updates per call.
pub struct RouterMetrics {
    requests: Family<[(&'static str, String); 2], Counter>,
    retries: Family<Label, Counter>,
    ejections: Family<Label, Counter>,
    latency: Family<Label, Histogram, fn() -> Histogram>,
    /// The latest traced calls, for the dashboard.
    pub traces: RecentTraces,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            retries: Family::default(),
            ejections: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            traces: RecentTraces::default(),
        }
    }
}

impl RouterMetrics {
    /// Counts one call and its latency. Unknown models count under model="".
    pub fn call(&self, model: &str, known: bool, code: tonic::Code, secs: f64) {
        let model = if known { model } else { "" }.to_string();
        let status = troupe_proto::codes::code_name(code).to_string();
        self.requests
            .get_or_create(&[("model", model.clone()), ("status", status)])
            .inc();
        self.latency
            .get_or_create(&[("model", model)])
            .observe(secs);
    }

    /// Counts one retry of a call on another replica.
    pub fn retry(&self, model: &str) {
        self.retries.get_or_create(&label("model", model)).inc();
    }

    /// Counts one ejection of a node from replica picking (it could not be reached).
    pub fn ejection(&self, node: &str) {
        self.ejections.get_or_create(&label("node", node)).inc();
    }
}

/// What a scrape reads of the cluster and of this router's calls in flight, gathered by
/// [`Scrape`]: the cluster's families are written from values.
pub struct ClusterSample<'a> {
    pub state: &'a ClusterState,
    /// Calls this router has outstanding, per node.
    pub in_flight: BTreeMap<String, u64>,
    /// Ready replicas in the routing table, per model.
    pub ready: BTreeMap<String, u64>,
    pub leader: bool,
}

/// What a scrape reads: the router, and whether it leads placement now.
pub struct Scrape {
    pub router: Arc<Router>,
    pub leader: Arc<AtomicBool>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("router metrics")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let r = &self.router;
        let state = r.store.snapshot();
        let sample = ClusterSample {
            in_flight: state
                .nodes
                .keys()
                .map(|id| (id.clone(), r.outstanding(id)))
                .collect(),
            ready: state
                .models
                .keys()
                .map(|m| (m.clone(), r.store.routes(m).len() as u64))
                .collect(),
            state: &state,
            leader: self.leader.load(Ordering::Acquire),
        };
        encode(&mut encoder, &r.metrics, &sample)
    }
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

/// Family names other parts read too (the dashboard's live figures).
pub const REQUESTS: &str = "troupe_router_requests";
pub const REQUEST_DURATION: &str = "troupe_router_request_duration_seconds";

/// Every family, from the router's counters and a sample of the cluster.
pub fn encode(e: &mut DescriptorEncoder, m: &RouterMetrics, c: &ClusterSample) -> std::fmt::Result {
    metric(
        e,
        REQUESTS,
        "Inference calls through this router by model and gRPC status.",
        &m.requests,
    )?;
    metric(
        e,
        REQUEST_DURATION,
        "Time from a call's arrival at the router to its answer (retries included).",
        &m.latency,
    )?;
    metric(
        e,
        "troupe_router_retries",
        "Calls retried on another replica after UNAVAILABLE or a broken connection.",
        &m.retries,
    )?;
    metric(
        e,
        "troupe_router_ejections",
        "Times a node was left out of replica picking because it could not be reached.",
        &m.ejections,
    )?;
    family(
        e,
        "troupe_router_in_flight",
        "Calls this router has outstanding on each node.",
        c.state.nodes.keys().map(|id| {
            let n = c.in_flight.get(id).copied().unwrap_or(0);
            ([("node", id.as_str())], gauge(n))
        }),
    )?;
    for (name, help, read) in REPLICA_GAUGES {
        family(
            e,
            name,
            help,
            c.state
                .models
                .keys()
                .map(|model| ([("model", model.as_str())], gauge(read(c, model)))),
        )?;
    }
    for (name, help, read) in NODE_GAUGES {
        family(
            e,
            name,
            help,
            c.state
                .nodes
                .keys()
                .map(|id| ([("node", id.as_str())], gauge(read(c, id)))),
        )?;
    }
    metric(
        e,
        "troupe_router_leader",
        "1 while this router leads placement.",
        &gauge(u64::from(c.leader)),
    )
}

/// A gauge of a count (byte and millicore counts fit in i64).
fn gauge(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{NodeRecord, PendingValue, PlacementValue};
    use troupe_proto::troupe::{ModelSpec, Resources};

    /// The router's counters and a fixed cluster, as a scrape reads them.
    struct Fixed {
        m: RouterMetrics,
        state: ClusterState,
    }

    impl std::fmt::Debug for Fixed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fixed")
        }
    }

    impl Collector for Fixed {
        fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
            let sample = ClusterSample {
                state: &self.state,
                in_flight: BTreeMap::from([("a".into(), 5)]),
                ready: BTreeMap::from([("m".into(), 1)]),
                leader: true,
            };
            encode(&mut e, &self.m, &sample)
        }
    }

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
        let text = troupe_telemetry::metrics::encode(&troupe_telemetry::metrics::registry(Fixed {
            m,
            state,
        }));
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
