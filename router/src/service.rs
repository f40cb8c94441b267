//! The router's gRPC services: the Open Inference Protocol for the whole cluster (each
//! call forwarded to a ready replica, least outstanding of two random choices, retried on
//! another replica when one is gone), `troupe.v1.Models` (desired state in etcd) and
//! `troupe.v1.Cluster`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use parking_lot::RwLock;
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tracing::{debug, instrument, warn};
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use troupe_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use troupe_proto::inference::repository_index_response::ModelIndex;
use troupe_proto::inference::{self as pb};
use troupe_proto::troupe::cluster_server::Cluster;
use troupe_proto::troupe::models_server::Models;
use troupe_proto::troupe::{self as tpb, BackendKind, ModelSpec, ModelState};

use tracing::Instrument;

use crate::error::RouterError;
use crate::metrics::RouterMetrics;
use crate::records::{MODELS, PENDING};
use crate::state::{ClusterState, Replica, Store};

/// Shared by the three services.
pub struct Router {
    pub store: Arc<Store>,
    endpoints: Vec<String>,
    channels: RwLock<HashMap<String, Channel>>,
    outstanding: RwLock<HashMap<String, Arc<AtomicU64>>>,
    seed: AtomicU64,
    /// Calls, latency and retries (see `metrics.rs`).
    pub metrics: RouterMetrics,
    /// TLS towards the nodes (`--node-tls-ca`); None: plain HTTP/2.
    node_tls: Option<troupe_proto::tls::ClientTls>,
}

impl Router {
    pub fn new(store: Arc<Store>, endpoints: Vec<String>) -> Arc<Self> {
        Self::with_node_tls(store, endpoints, None)
    }

    /// As `new`, reaching the nodes over TLS when `node_tls` is set.
    pub fn with_node_tls(
        store: Arc<Store>,
        endpoints: Vec<String>,
        node_tls: Option<troupe_proto::tls::ClientTls>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            endpoints,
            channels: RwLock::default(),
            outstanding: RwLock::default(),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            metrics: RouterMetrics::default(),
            node_tls,
        })
    }

    /// A pooled channel to a node (connected lazily, reused by every call).
    fn channel(&self, addr: &str) -> Result<Channel, Status> {
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
    pub fn outstanding(&self, node: &str) -> u64 {
        self.outstanding
            .read()
            .get(node)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn random(&self) -> u64 {
        // splitmix64 over a shared counter: cheap, good enough to pick two replicas.
        let mut z = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Power of two choices: of two random candidates, the one with fewer calls outstanding.
    fn pick<'a>(&self, c: &'a [Replica]) -> &'a Replica {
        if c.len() == 1 {
            return &c[0];
        }
        let i = (self.random() % c.len() as u64) as usize;
        let mut j = (self.random() % (c.len() as u64 - 1)) as usize;
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

    fn declared(&self, model: &str) -> bool {
        self.store.snapshot().models.contains_key(model)
    }

    fn no_replica(&self, model: &str) -> Status {
        if self.declared(model) || !self.store.routes(model).is_empty() {
            RouterError::NoReplica(model.to_string()).into()
        } else {
            RouterError::ModelNotFound(model.to_string()).into()
        }
    }

    /// After a write to etcd, waits (briefly) until this router's state shows it, so that a
    /// Get or List right after Create or Delete sees the change.
    async fn read_your_write(&self, rev: i64) {
        if !self.store.caught_up(rev, Duration::from_secs(3)).await {
            tracing::warn!(
                revision = rev,
                "cluster watch has not caught up with our write yet"
            );
        }
    }

    async fn etcd(&self) -> Result<Client, RouterError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        Ok(Client::connect(&self.endpoints, Some(opts)).await?)
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

/// Forwards a call to ready replicas of `model` until one answers (at most once each).
async fn forward<Req, Resp, F, Fut>(
    router: &Router,
    model: &str,
    deadline: Option<Instant>,
    trace: Option<&troupe_proto::TraceContext>,
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
        let span = troupe_telemetry::child_span(
            || tracing::info_span!("router.attempt", model = %model, node = %r.node, addr = %r.addr, attempt),
        );
        // Traced: the node's span is this attempt's child. Else the caller's context
        // passes through unchanged.
        if !troupe_telemetry::inject(&span, req.metadata_mut()) {
            match trace {
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
        if let Some(d) = deadline {
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
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
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

#[derive(Clone)]
pub struct InferenceService(pub Arc<Router>);

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.0.store.synced(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let ready = !self.0.store.routes(&req.get_ref().name).is_empty();
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "troupe-router".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: ["model_configuration", "statistics", "parameters"]
                .map(String::from)
                .to_vec(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let d = troupe_proto::request_deadline(&req);
        let trace = troupe_proto::TraceContext::from_metadata(req.metadata());
        let body = req.into_inner();
        let model = body.name.clone();
        forward(
            &self.0,
            &model,
            d,
            trace.as_ref(),
            body,
            |mut c, r| async move { c.model_metadata(r).await },
        )
        .await
    }

    #[instrument(skip_all, fields(model = %req.get_ref().model_name))]
    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let d = troupe_proto::request_deadline(&req);
        let trace = troupe_proto::TraceContext::from_metadata(req.metadata());
        let span = troupe_telemetry::call_span(
            req.metadata(),
            || tracing::info_span!("router.infer", model = %req.get_ref().model_name),
        );
        let trace_id = troupe_telemetry::trace_id(&span)
            .or_else(|| trace.as_ref().map(|t| t.trace_id().to_string()));
        let body = req.into_inner();
        let model = body.model_name.clone();
        let started = Instant::now();
        let mut result = forward(
            &self.0,
            &model,
            d,
            trace.as_ref(),
            body,
            |mut c, r| async move { c.model_infer(r).await },
        )
        .instrument(span)
        .await;
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        let known = self.0.declared(&model) || !self.0.store.routes(&model).is_empty();
        self.0
            .metrics
            .call(&model, known, code, started.elapsed().as_secs_f64());
        // The trace id goes back on every answer, also when the router itself refused.
        troupe_proto::set_trace_id(&mut result, trace_id.as_deref().unwrap_or_default());
        result
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let d = troupe_proto::request_deadline(&req);
        let trace = troupe_proto::TraceContext::from_metadata(req.metadata());
        let body = req.into_inner();
        let model = body.name.clone();
        forward(
            &self.0,
            &model,
            d,
            trace.as_ref(),
            body,
            |mut c, r| async move { c.model_config(r).await },
        )
        .await
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        // One entry per replica: ask every node that serves it.
        let body = req.into_inner();
        let s = self.0.store.snapshot();
        let mut out = pb::ModelStatisticsResponse::default();
        for (id, node) in &s.nodes {
            let serves = s.status.get(id).is_some_and(|st| {
                st.models
                    .iter()
                    .any(|m| body.name.is_empty() || m.name == body.name)
            });
            if !serves {
                continue;
            }
            let mut c = GrpcInferenceServiceClient::new(self.0.channel(&node.addr)?);
            if let Ok(r) = c.model_statistics(body.clone()).await {
                out.model_stats.extend(r.into_inner().model_stats);
            }
        }
        if out.model_stats.is_empty() && !body.name.is_empty() {
            return Err(self.0.no_replica(&body.name));
        }
        Ok(Response::new(out))
    }

    async fn repository_index(
        &self,
        _: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let s = self.0.store.snapshot();
        let models = s
            .models
            .iter()
            .map(|(name, spec)| {
                let st = model_status(&s, name, spec, &self.0.store.routes(name));
                ModelIndex {
                    name: name.clone(),
                    version: spec.version.clone(),
                    state: if st.state == ModelState::Ready as i32 {
                        "READY"
                    } else {
                        "UNAVAILABLE"
                    }
                    .into(),
                    reason: st.reason,
                }
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        _: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        Err(RouterError::FailedPrecondition(
            "in a cluster, declare models with troupe.v1.Models/Create (the router places them)"
                .into(),
        )
        .into())
    }

    async fn repository_model_unload(
        &self,
        _: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        Err(RouterError::FailedPrecondition(
            "in a cluster, remove models with troupe.v1.Models/Delete".into(),
        )
        .into())
    }
}

fn state_of(ready: usize, placed: usize, pending: bool) -> ModelState {
    match (ready, placed, pending) {
        (r, _, _) if r > 0 => ModelState::Ready,
        (_, 0, _) => ModelState::Pending,
        (_, _, true) => ModelState::Pending,
        _ => ModelState::Loading,
    }
}

/// A model's status as the cluster sees it.
pub fn model_status(
    s: &ClusterState,
    name: &str,
    spec: &ModelSpec,
    ready: &[Replica],
) -> tpb::ModelStatus {
    let placed: Vec<(&String, u32)> = s
        .placements
        .iter()
        .filter(|((m, _), _)| m == name)
        .map(|((_, n), v)| (n, v.count))
        .collect();
    let pending = s.pending.get(name);
    let failures: Vec<String> = s
        .status
        .iter()
        .flat_map(|(id, st)| {
            st.failed
                .iter()
                .filter(|f| f.name == name)
                .map(move |f| format!("{id}: {}", f.reason))
        })
        .collect();
    let ready_nodes: Vec<&String> = ready.iter().map(|r| &r.node).collect();
    let state = state_of(ready.len(), placed.len(), pending.is_some());
    let mut reason = Vec::new();
    if let Some(p) = pending {
        reason.push(format!("{} replica(s) pending: {}", p.missing, p.reason));
    }
    reason.extend(failures);
    tpb::ModelStatus {
        spec: Some(spec.clone()),
        state: state as i32,
        reason: reason.join("; "),
        ready_replicas: placed
            .iter()
            .filter(|(n, _)| ready_nodes.contains(n))
            .map(|(_, c)| *c)
            .sum(),
        desired_replicas: spec.replicas.max(1),
        replicas: placed
            .iter()
            .map(|(n, c)| tpb::ReplicaStatus {
                node_id: (*n).clone(),
                instance: *c,
                state: if ready_nodes.contains(n) {
                    ModelState::Ready
                } else {
                    ModelState::Loading
                } as i32,
                ..Default::default()
            })
            .collect(),
        queue_length: s
            .status
            .values()
            .flat_map(|st| {
                st.models
                    .iter()
                    .filter(|m| m.name == name)
                    .map(|m| m.queue_length)
            })
            .sum::<u64>() as u32,
    }
}

fn validate(spec: &ModelSpec) -> Result<(), RouterError> {
    let n = &spec.name;
    if !troupe_proto::names::is_valid_model_name(n) {
        return Err(RouterError::InvalidArgument(
            troupe_proto::names::invalid_model_name(n),
        ));
    }
    if BackendKind::try_from(spec.backend).unwrap_or(BackendKind::Unspecified)
        == BackendKind::Unspecified
    {
        return Err(RouterError::InvalidArgument(format!(
            "model '{n}': backend must be torch, onnx or candle"
        )));
    }
    if spec.artifact_uri.is_empty() {
        return Err(RouterError::InvalidArgument(format!(
            "model '{n}': artifact_uri is required"
        )));
    }
    if spec.inputs.is_empty() || spec.outputs.is_empty() {
        return Err(RouterError::InvalidArgument(format!(
            "model '{n}': declare its inputs and outputs"
        )));
    }
    Ok(())
}

#[derive(Clone)]
pub struct ModelsService(pub Arc<Router>);

#[tonic::async_trait]
impl Models for ModelsService {
    async fn create(
        &self,
        req: Request<tpb::CreateModelRequest>,
    ) -> Result<Response<tpb::ModelStatus>, Status> {
        let req = req.into_inner();
        if !req.config_toml.is_empty() {
            return Err(RouterError::InvalidArgument(
                "the router takes a full ModelSpec (backend, inputs, outputs, resources); config_toml is for a single node".into(),
            )
            .into());
        }
        let mut spec = req.spec.ok_or_else(|| {
            RouterError::InvalidArgument("CreateModelRequest.spec is required".into())
        })?;
        validate(&spec)?;
        if spec.version.is_empty() {
            spec.version = "1".into();
        }
        let key = format!("{MODELS}{}", spec.name);
        let mut c = self.0.etcd().await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, spec.encode_to_vec(), None)]);
        let r = c.txn(txn).await.map_err(RouterError::from)?;
        if !r.succeeded() {
            return Err(RouterError::AlreadyExists(spec.name.clone()).into());
        }
        self.0
            .read_your_write(r.header().map_or(0, |h| h.revision()))
            .await;
        tracing::info!(model = %spec.name, replicas = spec.replicas.max(1), "model declared");
        Ok(Response::new(tpb::ModelStatus {
            spec: Some(spec.clone()),
            state: ModelState::Pending as i32,
            reason: "declared; the placement leader places it".into(),
            desired_replicas: spec.replicas.max(1),
            ..Default::default()
        }))
    }

    async fn delete(
        &self,
        req: Request<tpb::DeleteModelRequest>,
    ) -> Result<Response<tpb::DeleteModelResponse>, Status> {
        let name = req.into_inner().name;
        let mut c = self.0.etcd().await?;
        let r = c
            .delete(format!("{MODELS}{name}"), None)
            .await
            .map_err(RouterError::from)?;
        if r.deleted() == 0 {
            return Err(RouterError::ModelNotFound(name).into());
        }
        let _ = c.delete(format!("{PENDING}{name}"), None).await;
        self.0
            .read_your_write(r.header().map_or(0, |h| h.revision()))
            .await;
        tracing::info!(model = %name, "model deleted");
        Ok(Response::new(tpb::DeleteModelResponse {}))
    }

    async fn get(
        &self,
        req: Request<tpb::GetModelRequest>,
    ) -> Result<Response<tpb::ModelStatus>, Status> {
        let name = req.into_inner().name;
        let s = self.0.store.snapshot();
        let spec = s
            .models
            .get(&name)
            .ok_or_else(|| RouterError::ModelNotFound(name.clone()))?;
        Ok(Response::new(model_status(
            &s,
            &name,
            spec,
            &self.0.store.routes(&name),
        )))
    }

    async fn list(
        &self,
        _: Request<tpb::ListModelsRequest>,
    ) -> Result<Response<tpb::ListModelsResponse>, Status> {
        let s = self.0.store.snapshot();
        let models = s
            .models
            .iter()
            .map(|(n, spec)| model_status(&s, n, spec, &self.0.store.routes(n)))
            .collect();
        Ok(Response::new(tpb::ListModelsResponse { models }))
    }
}

#[derive(Clone)]
pub struct ClusterService(pub Arc<Router>);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn nodes(
        &self,
        _: Request<tpb::NodesRequest>,
    ) -> Result<Response<tpb::NodesResponse>, Status> {
        let s = self.0.store.snapshot();
        let nodes = s
            .nodes
            .iter()
            .map(|(id, n)| {
                let mut used_cpu = 0u64;
                let mut used_mem = 0u64;
                let mut gpu_used: HashMap<u32, u64> = HashMap::new();
                for ((m, node), v) in &s.placements {
                    if node != id {
                        continue;
                    }
                    if let Some(spec) = s.models.get(m) {
                        let r = spec.resources.unwrap_or_default();
                        used_cpu += (r.cpu * 1000.0).round() as u64 * v.count as u64;
                        used_mem += r.memory_bytes * v.count as u64;
                        if let Some(g) = v.gpu {
                            *gpu_used.entry(g).or_default() += r.gpu_memory_bytes * v.count as u64;
                        }
                    }
                }
                let st = s.status.get(id);
                tpb::NodeInfo {
                    id: id.clone(),
                    addr: n.addr.clone(),
                    cpu_millis: n.capacity.cpu_millis,
                    memory_bytes: n.capacity.memory_bytes,
                    gpus: n
                        .capacity
                        .gpus
                        .iter()
                        .map(|g| tpb::GpuInfo {
                            index: g.index,
                            memory_bytes: g.memory_bytes,
                            used_memory_bytes: gpu_used.get(&g.index).copied().unwrap_or(0),
                        })
                        .collect(),
                    labels: n.labels.clone().into_iter().collect(),
                    used_cpu_millis: used_cpu,
                    used_memory_bytes: used_mem,
                    in_flight: st
                        .map(|st| st.models.iter().map(|m| m.in_flight).sum())
                        .unwrap_or(0),
                    queue_length: st
                        .map(|st| st.models.iter().map(|m| m.queue_length).sum())
                        .unwrap_or(0),
                    ready_models: st
                        .map(|st| {
                            st.models
                                .iter()
                                .filter(|m| m.ready)
                                .map(|m| m.name.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(tpb::NodesResponse { nodes }))
    }

    async fn placements(
        &self,
        req: Request<tpb::PlacementsRequest>,
    ) -> Result<Response<tpb::PlacementsResponse>, Status> {
        let want = req.into_inner().model;
        let s = self.0.store.snapshot();
        let placements = s
            .placements
            .iter()
            .filter(|((m, _), _)| want.is_empty() || *m == want)
            .map(|((m, n), v)| tpb::PlacementInfo {
                model: m.clone(),
                node_id: n.clone(),
                count: v.count,
                ready: self.0.store.routes(m).iter().any(|r| &r.node == n),
                gpu: v.gpu.map_or(-1, i64::from),
            })
            .collect();
        let pending = s
            .pending
            .iter()
            .filter(|(m, _)| want.is_empty() || **m == want)
            .map(|(m, p)| tpb::PendingInfo {
                model: m.clone(),
                missing: p.missing,
                reason: p.reason.clone(),
            })
            .collect();
        Ok(Response::new(tpb::PlacementsResponse {
            placements,
            pending,
        }))
    }
}

/// `troupe.v1.Explainer` for the cluster: an `Explain` call is a `ModelInfer` call with
/// the `explain` parameters, routed like any other.
#[derive(Clone)]
pub struct ExplainService(pub Arc<Router>);

#[tonic::async_trait]
impl troupe_proto::troupe::explainer_server::Explainer for ExplainService {
    async fn explain(
        &self,
        req: Request<tpb::ExplainRequest>,
    ) -> Result<Response<tpb::ExplainResponse>, Status> {
        let (meta, ext, body) = req.into_parts();
        let infer = troupe_proto::explain::to_infer_request(body)
            .map_err(|m| Status::from(RouterError::InvalidArgument(m)))?;
        let resp = InferenceService(self.0.clone())
            .model_infer(Request::from_parts(meta, ext, infer))
            .await?;
        let (meta, inner, ext) = resp.into_parts();
        Ok(Response::from_parts(
            meta,
            tpb::ExplainResponse {
                response: Some(troupe_proto::explain::only_attributions(inner)),
            },
            ext,
        ))
    }
}
