//! `inference.GRPCInferenceService` for the whole cluster: each call forwarded to a ready
//! replica (`crate::routing`); metadata from one replica, statistics from all of them.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::instrument;
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use troupe_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use troupe_proto::inference::repository_index_response::ModelIndex;
use troupe_proto::inference::{self as pb};
use troupe_proto::troupe::ModelState;

use tracing::Instrument;

use crate::error::RouterError;

use super::models::model_status;
use crate::forward::{Hop, Upstream, forward};
use crate::routing::Router;

#[derive(Clone)]
pub struct InferenceService(pub Arc<Router>);

/// A call about one model (metadata, config), forwarded to a ready replica of it with the
/// caller's deadline and trace context.
async fn routed<Req, Resp, F, Fut>(
    router: &Router,
    model: &str,
    req: Request<Req>,
    call: F,
) -> Result<Response<Resp>, Status>
where
    Req: Clone,
    F: Fn(Upstream, Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
{
    let hop = Hop::of(&req);
    forward(router, model, &hop, req.into_inner(), call).await
}

/// One inference call of `model`, typed or as its encoded bytes (`passthrough.rs`): its
/// span, forwarded with retries, its metrics and its trace, and the trace id on the
/// answer (in metadata, so an answer passed on as bytes needs no change).
pub(crate) async fn infer<Req, Resp, F, Fut>(
    router: &Router,
    model: &str,
    hop: Hop,
    req: Request<Req>,
    call: F,
) -> Result<Response<Resp>, Status>
where
    Req: Clone,
    F: Fn(Upstream, Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
{
    let span = troupe_telemetry::call_span(
        req.metadata(),
        || tracing::info_span!("router.infer", model = %model),
    );
    let trace_id =
        troupe_telemetry::trace_id(&span).or_else(|| hop.trace.as_ref().map(|t| t.trace_id()));
    let started = Instant::now();
    let mut result = forward(router, model, &hop, req.into_inner(), call)
        .instrument(span)
        .await;
    let code = result
        .as_ref()
        .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
    let known = router.declared(model) || !router.store.routes(model).is_empty();
    router
        .metrics
        .call(model, known, code, started.elapsed().as_secs_f64());
    if let Some(t) = trace_id.as_deref().filter(|t| !t.is_empty()) {
        router.metrics.traces.note(model, t);
    }
    // The trace id goes back on every answer, also when the router itself refused.
    troupe_proto::set_trace_id(&mut result, trace_id.as_deref().unwrap_or_default());
    result
}

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
        let model = req.get_ref().name.clone();
        routed(&self.0, &model, req, |u, r| async move {
            u.client().model_metadata(r).await
        })
        .await
    }

    #[instrument(skip_all, fields(model = %req.get_ref().model_name))]
    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let hop = Hop::of_infer(&req, &req.get_ref().parameters);
        let model = req.get_ref().model_name.clone();
        infer(&self.0, &model, hop, req, |u, r| async move {
            u.client().model_infer(r).await
        })
        .await
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let model = req.get_ref().name.clone();
        routed(&self.0, &model, req, |u, r| async move {
            u.client().model_config(r).await
        })
        .await
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        // One entry per replica: ask every node that serves it.
        let hop = Hop::of(&req);
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
            let mut ask = Request::new(body.clone());
            self.0.authorize(ask.metadata_mut(), hop.caller.as_deref());
            if let Ok(r) = c.model_statistics(ask).await {
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
