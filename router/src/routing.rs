//! Routing a call: the router's shared state (the cluster store, etcd, one gRPC channel
//! per node), replica picking (least outstanding of two random choices), forwarding with
//! the caller's deadline and trace context, and retrying on another replica when one is
//! gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::Client;
use parking_lot::RwLock;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use rand::Rng;

use crate::ejection::Ejections;
use crate::error::RouterError;
use crate::metrics::RouterMetrics;
use crate::state::{Replica, Store};

/// Shared by the three services.
/// How a router reaches its nodes and what it accepts.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    pub node_tls: Option<troupe_proto::tls::ClientTls>,
    /// The router's bearer token for the nodes (`--node-token`).
    pub node_token: Option<String>,
    pub max_message_bytes: usize,
    pub model_roots: Vec<std::path::PathBuf>,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            node_tls: None,
            node_token: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            model_roots: Vec::new(),
        }
    }
}

/// Largest message the router takes from a caller or a node by default (256 MiB, the
/// node's default too).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 << 20;

pub struct Router {
    pub store: Arc<Store>,
    endpoints: Vec<String>,
    channels: RwLock<HashMap<String, Channel>>,
    outstanding: RwLock<HashMap<String, Arc<AtomicU64>>>,
    /// Each node's recent answer time, a moving average in µs (0: none yet).
    latency: RwLock<HashMap<String, Arc<AtomicU64>>>,
    /// Nodes left out of picking for a while after they could not be reached.
    pub(crate) ejections: Ejections,
    /// Calls, latency and retries (see `metrics.rs`).
    pub metrics: RouterMetrics,
    /// Largest message taken from callers and nodes (`--max-message-bytes`).
    pub max_message_bytes: usize,
    /// How the router reaches nodes: its own bearer token (`--node-token`).
    node_token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// Where artifacts of created models must lie (`--model-root`); empty: unchecked
    /// here (the nodes check their own).
    pub model_roots: Vec<std::path::PathBuf>,
    /// TLS towards the nodes (`--node-tls-ca`); None: plain HTTP/2.
    node_tls: Option<troupe_proto::tls::ClientTls>,
}

impl Router {
    pub fn new(store: Arc<Store>, endpoints: Vec<String>) -> Arc<Self> {
        Self::with_options(store, endpoints, RouterOptions::default())
            .expect("the default options are valid")
    }

    /// As `new`, with how to reach the nodes and what to accept.
    pub fn with_options(
        store: Arc<Store>,
        endpoints: Vec<String>,
        opts: RouterOptions,
    ) -> Result<Arc<Self>, RouterError> {
        let RouterOptions {
            node_tls,
            node_token,
            max_message_bytes,
            model_roots,
        } = opts;
        let node_token = node_token
            .map(|t| {
                format!("Bearer {t}").parse().map_err(|_| {
                    RouterError::InvalidArgument(
                        "--node-token must be printable ASCII without spaces".into(),
                    )
                })
            })
            .transpose()?;
        Ok(Arc::new(Self {
            store,
            endpoints,
            channels: RwLock::default(),
            outstanding: RwLock::default(),
            latency: RwLock::default(),
            ejections: Ejections::default(),
            metrics: RouterMetrics::default(),
            node_tls,
            max_message_bytes,
            node_token,
            model_roots,
        }))
    }

    /// Puts the router's own token, and the caller it forwards for, on a call to a node.
    pub(crate) fn authorize(&self, md: &mut tonic::metadata::MetadataMap, caller: Option<&str>) {
        if let Some(t) = &self.node_token {
            md.insert("authorization", t.clone());
        }
        if let Some(Ok(c)) = caller.map(str::parse) {
            md.insert(troupe_proto::auth::CALLER_HEADER, c);
        }
    }

    /// A pooled channel to a node (connected lazily, reused by every call).
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, Status> {
        if let Some(c) = self.channels.read().get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.node_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| Status::internal(format!("bad node address {addr}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            // A node that vanishes without closing its connections (a partition, a
            // frozen host) is found within about 3 s: its calls in flight then fail as
            // transport errors and are sent to another replica.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        if let Some(t) = &self.node_tls {
            ep = ep
                .tls_config(t.client_config())
                .map_err(|e| Status::internal(format!("TLS towards {addr}: {e}")))?;
        }
        let ch = ep.connect_lazy();
        self.channels.write().insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    pub(crate) fn counter(&self, node: &str) -> Arc<AtomicU64> {
        slot(&self.outstanding, node)
    }

    pub(crate) fn latency_of(&self, node: &str) -> Arc<AtomicU64> {
        slot(&self.latency, node)
    }

    /// Folds one answer time of `node` into its moving average (an eighth per answer).
    pub(crate) fn observe_latency(&self, node: &str, took: Duration) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u64;
        let avg = self.latency_of(node);
        let old = avg.load(Ordering::Relaxed);
        let new = if old == 0 {
            us.max(1)
        } else {
            (old * 7 + us) / 8
        };
        avg.store(new.max(1), Ordering::Relaxed);
    }

    /// How much a call would wait at `node`: its calls outstanding (and this one) times
    /// its recent answer time. A node not answered yet counts as the fastest, so it is
    /// tried.
    pub(crate) fn cost(&self, node: &str) -> u64 {
        let outstanding = self.counter(node).load(Ordering::Relaxed) + 1;
        let latency = self.latency_of(node).load(Ordering::Relaxed).max(1);
        outstanding.saturating_mul(latency)
    }

    /// Calls this router has outstanding on `node`.
    pub fn outstanding(&self, node: &str) -> u64 {
        self.outstanding
            .read()
            .get(node)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Power of two choices: of two random candidates, the one a call would wait less at
    /// (calls outstanding × recent answer time), so a slow node gets fewer calls.
    pub(crate) fn pick<'a>(&self, c: &'a [Replica]) -> &'a Replica {
        if c.len() == 1 {
            return &c[0];
        }
        let mut rng = rand::rng();
        let i = rng.random_range(0..c.len());
        let mut j = rng.random_range(0..c.len() - 1);
        if j >= i {
            j += 1;
        }
        let (a, b) = (&c[i], &c[j]);
        if self.cost(&b.node) < self.cost(&a.node) {
            b
        } else {
            a
        }
    }

    pub(crate) fn declared(&self, model: &str) -> bool {
        self.store.snapshot().models.contains_key(model)
    }

    pub(crate) fn no_replica(&self, model: &str) -> Status {
        if self.declared(model) || !self.store.routes(model).is_empty() {
            RouterError::NoReplica(model.to_string()).into()
        } else {
            RouterError::ModelNotFound(model.to_string()).into()
        }
    }

    /// After a write to etcd, waits (briefly) until this router's state shows it, so that a
    /// Get or List right after Create or Delete sees the change.
    pub(crate) async fn read_your_write(&self, rev: i64) {
        if !self.store.caught_up(rev, Duration::from_secs(3)).await {
            tracing::warn!(
                revision = rev,
                "cluster watch has not caught up with our write yet"
            );
        }
    }

    pub(crate) async fn etcd(&self) -> Result<Client, RouterError> {
        Ok(troupe_proto::cluster::connect_etcd(&self.endpoints, Duration::from_secs(5)).await?)
    }
}

/// The counter of `key` in `map`, made on first use.
fn slot(map: &RwLock<HashMap<String, Arc<AtomicU64>>>, key: &str) -> Arc<AtomicU64> {
    if let Some(c) = map.read().get(key) {
        return c.clone();
    }
    map.write().entry(key.to_string()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(nodes: &[&str]) -> Vec<Replica> {
        nodes
            .iter()
            .map(|n| Replica {
                node: n.to_string(),
                addr: format!("{n}:1"),
            })
            .collect()
    }

    #[test]
    fn picking_prefers_the_replica_with_fewer_calls_outstanding() {
        let r = Router::new(Arc::new(Store::default()), Vec::new());
        let one = replicas(&["a"]);
        assert_eq!(r.pick(&one).node, "a");
        let two = replicas(&["a", "b"]);
        r.counter("a").store(5, Ordering::Relaxed);
        for _ in 0..100 {
            assert_eq!(r.pick(&two).node, "b", "b has fewer calls outstanding");
        }
        // Of three, the idle one wins whenever it is one of the two drawn (2 in 3).
        let three = replicas(&["a", "b", "c"]);
        r.counter("a").store(0, Ordering::Relaxed);
        r.counter("b").store(9, Ordering::Relaxed);
        r.counter("c").store(9, Ordering::Relaxed);
        let mut counts = HashMap::new();
        for _ in 0..3000 {
            *counts.entry(r.pick(&three).node.clone()).or_insert(0) += 1;
        }
        let a = counts["a"];
        assert!((1800..=2200).contains(&a), "{counts:?}");
        // Equal load spreads over all of them.
        r.counter("a").store(9, Ordering::Relaxed);
        let mut seen = HashMap::new();
        for _ in 0..300 {
            *seen.entry(r.pick(&three).node.clone()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn picking_avoids_a_slow_replica() {
        let r = Router::new(Arc::new(Store::default()), Vec::new());
        let two = replicas(&["fast", "slow"]);
        for _ in 0..8 {
            r.observe_latency("fast", Duration::from_millis(1));
            r.observe_latency("slow", Duration::from_millis(40));
        }
        // Equal calls outstanding: the slow one loses every draw.
        for _ in 0..100 {
            assert_eq!(r.pick(&two).node, "fast");
        }
        // Enough calls queued at the fast one make the slow one worth it.
        r.counter("fast").store(60, Ordering::Relaxed);
        assert_eq!(r.pick(&two).node, "slow");
        // A node never answered yet is tried.
        let three = replicas(&["fast", "new"]);
        r.counter("fast").store(0, Ordering::Relaxed);
        assert_eq!(r.pick(&three).node, "new");
    }
}
