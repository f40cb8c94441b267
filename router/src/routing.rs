//! Routing a call: the router's shared state (the cluster store, etcd, one gRPC channel
//! per node), replica picking (least outstanding of two random choices), forwarding with
//! the caller's deadline and trace context, and retrying on another replica when one is
//! gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::Client;
use parking_lot::RwLock;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tracing::{debug, warn};
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;

use tracing::Instrument;

use rand::Rng;

use crate::error::RouterError;
use crate::metrics::{self, ClusterSample, RouterMetrics};
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
            .tcp_nodelay(true);
        if let Some(t) = &self.node_tls {
            ep = ep
                .tls_config(t.client_config())
                .map_err(|e| Status::internal(format!("TLS towards {addr}: {e}")))?;
        }
        let ch = ep.connect_lazy();
        self.channels.write().insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    fn counter(&self, node: &str) -> Arc<AtomicU64> {
        if let Some(c) = self.outstanding.read().get(node) {
            return c.clone();
        }
        self.outstanding
            .write()
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    /// Calls this router has outstanding on `node`.
    /// The Prometheus text of this router: its counters and the cluster as it sees it.
    pub fn metrics_text(&self, leader: bool) -> String {
        let state = self.store.snapshot();
        let sample = ClusterSample {
            in_flight: state
                .nodes
                .keys()
                .map(|id| (id.clone(), self.outstanding(id)))
                .collect(),
            ready: state
                .models
                .keys()
                .map(|m| (m.clone(), self.store.routes(m).len() as u64))
                .collect(),
            state: &state,
            leader,
        };
        metrics::render(&self.metrics, &sample)
    }

    pub fn outstanding(&self, node: &str) -> u64 {
        self.outstanding
            .read()
            .get(node)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Power of two choices: of two random candidates, the one with fewer calls outstanding.
    fn pick<'a>(&self, c: &'a [Replica]) -> &'a Replica {
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
        if self.counter(&b.node).load(Ordering::Relaxed)
            < self.counter(&a.node).load(Ordering::Relaxed)
        {
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

/// Failures after which another replica is tried: the replica is gone or restarting.
/// CANCELLED counts too: when the caller cancels, this handler is dropped and never gets
/// here, so a CANCELLED seen here means the node's connection went away mid-call.
fn retryable(s: &Status) -> bool {
    match s.code() {
        Code::Unavailable | Code::Cancelled => true,
        Code::Unknown | Code::Internal => {
            let m = s.message().to_ascii_lowercase();
            [
                "transport",
                "connection",
                "connect",
                "broken pipe",
                "reset",
                "h2 protocol",
                "stream closed",
                "eof",
            ]
            .iter()
            .any(|w| m.contains(w))
        }
        _ => false,
    }
}

struct Outstanding(Arc<AtomicU64>);
impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a forwarded call carries on from the caller's request: its deadline, its trace
/// context, and who it is (for the node's audit trail).
#[derive(Debug, Clone, Default)]
pub(crate) struct Hop {
    pub deadline: Option<Instant>,
    pub trace: Option<troupe_telemetry::TraceContext>,
    pub caller: Option<String>,
}

impl Hop {
    pub(crate) fn of<T>(req: &Request<T>) -> Self {
        Self {
            deadline: troupe_proto::request_deadline(req),
            trace: troupe_telemetry::TraceContext::from_metadata(req.metadata()),
            caller: req
                .extensions()
                .get::<troupe_proto::auth::Caller>()
                .map(|c| c.0.clone()),
        }
    }
}

/// Forwards a call to ready replicas of `model` until one answers (at most once each).
pub(crate) async fn forward<Req, Resp, F, Fut>(
    router: &Router,
    model: &str,
    hop: &Hop,
    body: Req,
    call: F,
) -> Result<Response<Resp>, Status>
where
    Req: Clone,
    F: Fn(GrpcInferenceServiceClient<Channel>, Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
{
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<Status> = None;
    for attempt in 0..8 {
        let all = router.store.routes(model);
        let left: Vec<Replica> = all
            .into_iter()
            .filter(|r| !tried.contains(&r.node))
            .collect();
        if left.is_empty() {
            break;
        }
        let r = router.pick(&left).clone();
        tried.push(r.node.clone());
        let mut req = Request::new(body.clone());
        router.authorize(req.metadata_mut(), hop.caller.as_deref());
        let span = troupe_telemetry::child_span(
            || tracing::info_span!("router.attempt", model = %model, node = %r.node, addr = %r.addr, attempt),
        );
        // Traced: the node's span is this attempt's child. Else the caller's context
        // passes through unchanged.
        if !troupe_telemetry::inject(&span, req.metadata_mut()) {
            match &hop.trace {
                Some(t) => t.inject(req.metadata_mut()),
                // Not traced here: tell the node, so it does not start a trace itself.
                None => {
                    if let Some(Ok(v)) =
                        troupe_telemetry::unsampled_traceparent().map(|t| t.parse())
                    {
                        req.metadata_mut().insert("traceparent", v);
                    }
                }
            }
        }
        if let Some(d) = hop.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RouterError::DeadlineExceeded(format!(
                    "model '{model}': the call's deadline passed in the router"
                ))
                .into());
            }
            req.set_timeout(left);
        }
        let counter = router.counter(&r.node);
        counter.fetch_add(1, Ordering::Relaxed);
        let _out = Outstanding(counter);
        let client = GrpcInferenceServiceClient::new(router.channel(&r.addr)?)
            .max_decoding_message_size(router.max_message_bytes)
            .max_encoding_message_size(router.max_message_bytes);
        match call(client, req).instrument(span).await {
            Ok(resp) => {
                debug!(model = %model, node = %r.node, attempt, "answered");
                return Ok(resp);
            }
            Err(s) if retryable(&s) => {
                warn!(model = %model, node = %r.node, attempt, error = %s.message(), "replica failed; trying another");
                router.metrics.retry(model);
                last = Some(s);
            }
            Err(s) => return Err(s),
        }
    }
    Err(last.unwrap_or_else(|| router.no_replica(model)))
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
    fn gone_replicas_are_retried_and_answers_are_not() {
        for s in [
            Status::unavailable("node restarting"),
            Status::cancelled("connection went away"),
            Status::unknown("transport error"),
            Status::internal("h2 protocol error: stream closed"),
            Status::unknown("Connection reset by peer"),
        ] {
            assert!(retryable(&s), "{s:?}");
        }
        for s in [
            Status::invalid_argument("bad input"),
            Status::resource_exhausted("queue full"),
            Status::deadline_exceeded("late"),
            Status::not_found("no model"),
            Status::internal("model output does not match its config"),
            Status::unknown("the model raised"),
        ] {
            assert!(!retryable(&s), "{s:?}");
        }
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
    fn outstanding_calls_are_counted_while_held() {
        let r = Router::new(Arc::new(Store::default()), Vec::new());
        let c = r.counter("n");
        c.fetch_add(1, Ordering::Relaxed);
        let held = Outstanding(c);
        assert_eq!(r.outstanding("n"), 1);
        drop(held);
        assert_eq!(r.outstanding("n"), 0);
    }
}
