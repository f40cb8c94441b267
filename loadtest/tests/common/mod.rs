//! A small Open Inference Protocol server to put under load: ModelMetadata and
//! ModelInfer (the other RPCs are Unimplemented), with injected latency, errors and a
//! one-shot stall. It checks every request against the declared inputs (name, type,
//! shape, raw byte length) and answers INVALID_ARGUMENT when one does not fit.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use troupe_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use troupe_proto::inference::model_infer_response::InferOutputTensor;
use troupe_proto::inference::model_metadata_response::TensorMetadata;
use troupe_proto::inference::*;

/// What the server does to each ModelInfer call.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Every call sleeps this long.
    pub latency: Duration,
    /// Every n-th call (1-based: n, 2n, ...) returns UNAVAILABLE, after the latency.
    pub error_every: Option<u64>,
    /// Call number k (1-based) freezes the whole server for this long: it and every
    /// call that arrives before the freeze ends wait until then (like a GC pause).
    pub stall: Option<(u64, Duration)>,
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub unavailable: AtomicU64,
    pub invalid: AtomicU64,
    pub not_found: AtomicU64,
    pub per_model: Mutex<BTreeMap<String, u64>>,
    /// The first INVALID_ARGUMENT message, to explain a failed test.
    pub first_invalid: Mutex<Option<String>>,
}

impl Counters {
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::SeqCst)
    }
    pub fn invalid(&self) -> u64 {
        self.invalid.load(Ordering::SeqCst)
    }
    pub fn model_calls(&self, model: &str) -> u64 {
        self.per_model
            .lock()
            .map(|m| m.get(model).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

fn tensor(name: &str, datatype: &str, shape: &[i64]) -> TensorMetadata {
    TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
    }
}

/// The models served: `mlp` and `mlp_b` (FP32 [-1, 16]), and `types`, whose inputs use
/// every data type the random generator supports.
fn models() -> BTreeMap<String, Vec<TensorMetadata>> {
    let mut m = BTreeMap::new();
    m.insert("mlp".to_string(), vec![tensor("input", "FP32", &[-1, 16])]);
    m.insert(
        "mlp_b".to_string(),
        vec![tensor("input", "FP32", &[-1, 16])],
    );
    m.insert(
        "types".to_string(),
        vec![
            tensor("f32", "FP32", &[-1, 4]),
            tensor("f64", "FP64", &[-1, 3]),
            tensor("f16", "FP16", &[-1, 2, -1]),
            tensor("i32", "INT32", &[5]),
            tensor("i64", "INT64", &[-1, 1]),
            tensor("u8", "UINT8", &[-1, 8]),
            tensor("b", "BOOL", &[-1, 2]),
        ],
    );
    m
}

fn size_of(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "UINT8" | "INT8" => 1,
        "FP16" | "BF16" | "UINT16" | "INT16" => 2,
        "FP32" | "UINT32" | "INT32" => 4,
        "FP64" | "UINT64" | "INT64" => 8,
        _ => return None,
    })
}

struct Service {
    behaviour: Behaviour,
    counters: Arc<Counters>,
    models: BTreeMap<String, Vec<TensorMetadata>>,
    frozen_until: Mutex<Option<Instant>>,
}

impl Service {
    fn check(&self, req: &ModelInferRequest) -> Result<i64, Status> {
        let declared = self
            .models
            .get(&req.model_name)
            .ok_or_else(|| Status::not_found(format!("unknown model '{}'", req.model_name)))?;
        let bad = |m: String| Err(Status::invalid_argument(m));
        if req.inputs.len() != declared.len() || req.raw_input_contents.len() != declared.len() {
            return bad(format!(
                "{} inputs and {} raw buffers, the model has {} inputs",
                req.inputs.len(),
                req.raw_input_contents.len(),
                declared.len()
            ));
        }
        let mut batch = 1;
        for (input, raw) in req.inputs.iter().zip(&req.raw_input_contents) {
            let Some(d) = declared.iter().find(|d| d.name == input.name) else {
                return bad(format!("no input '{}'", input.name));
            };
            if d.datatype != input.datatype {
                return bad(format!(
                    "'{}' is {}, not {}",
                    d.name, d.datatype, input.datatype
                ));
            }
            let fits = input.shape.len() == d.shape.len()
                && input
                    .shape
                    .iter()
                    .zip(&d.shape)
                    .all(|(&s, &e)| s >= 0 && (e < 0 || s == e));
            if !fits {
                return bad(format!(
                    "'{}' has shape {:?}, not {:?}",
                    d.name, input.shape, d.shape
                ));
            }
            let numel: i64 = input.shape.iter().product();
            let want = numel as usize * size_of(&input.datatype).unwrap_or(0);
            if raw.len() != want {
                return bad(format!("'{}' has {} bytes, not {want}", d.name, raw.len()));
            }
            if let Some(&b) = input.shape.first() {
                batch = b;
            }
        }
        Ok(batch)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }
    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }
    async fn model_ready(
        &self,
        _: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        Err(Status::unimplemented("test server"))
    }
    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Err(Status::unimplemented("test server"))
    }
    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let name = req.into_inner().name;
        let inputs = self
            .models
            .get(&name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("unknown model '{name}'")))?;
        Ok(Response::new(ModelMetadataResponse {
            name,
            versions: vec!["1".into()],
            platform: "test".into(),
            inputs,
            outputs: vec![tensor("output", "FP32", &[-1, 1])],
            ..Default::default()
        }))
    }
    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let n = self.counters.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let req = req.into_inner();
        if let Ok(mut m) = self.counters.per_model.lock() {
            *m.entry(req.model_name.clone()).or_default() += 1;
        }
        let batch = match self.check(&req) {
            Ok(b) => b,
            Err(s) => {
                if s.code() == tonic::Code::NotFound {
                    self.counters.not_found.fetch_add(1, Ordering::SeqCst);
                } else {
                    self.counters.invalid.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut f) = self.counters.first_invalid.lock() {
                        f.get_or_insert_with(|| s.message().to_string());
                    }
                }
                return Err(s);
            }
        };
        let until = {
            let mut frozen = self
                .frozen_until
                .lock()
                .map_err(|_| Status::internal("lock"))?;
            if let Some((k, d)) = self.behaviour.stall
                && k == n
            {
                *frozen = Some(Instant::now() + d);
            }
            *frozen
        };
        if let Some(t) = until
            && t > Instant::now()
        {
            tokio::time::sleep_until(t).await;
        }
        if !self.behaviour.latency.is_zero() {
            tokio::time::sleep(self.behaviour.latency).await;
        }
        if self
            .behaviour
            .error_every
            .is_some_and(|e| n.is_multiple_of(e))
        {
            self.counters.unavailable.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable("injected error"));
        }
        let out = vec![0u8; batch.max(0) as usize * 4];
        Ok(Response::new(ModelInferResponse {
            model_name: req.model_name,
            model_version: "1".into(),
            id: req.id,
            outputs: vec![InferOutputTensor {
                name: "output".into(),
                datatype: "FP32".into(),
                shape: vec![batch, 1],
                ..Default::default()
            }],
            raw_output_contents: vec![out.into()],
            ..Default::default()
        }))
    }
    async fn model_config(
        &self,
        _: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        Err(Status::unimplemented("test server"))
    }
    async fn model_statistics(
        &self,
        _: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        Err(Status::unimplemented("test server"))
    }
    async fn repository_index(
        &self,
        _: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        Err(Status::unimplemented("test server"))
    }
    async fn repository_model_load(
        &self,
        _: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        Err(Status::unimplemented("test server"))
    }
    async fn repository_model_unload(
        &self,
        _: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        Err(Status::unimplemented("test server"))
    }
}

/// A running test server on a free loopback port. It stops with the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

/// Starts a server on 127.0.0.1:0.
pub async fn start(behaviour: Behaviour) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let counters = Arc::new(Counters::default());
    let svc = Service {
        behaviour,
        counters: counters.clone(),
        models: models(),
        frozen_until: Mutex::new(None),
    };
    tokio::spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let _ = tonic::transport::Server::builder()
            .add_service(GrpcInferenceServiceServer::new(svc))
            .serve_with_incoming(incoming)
            .await;
    });
    TestServer { addr, counters }
}
