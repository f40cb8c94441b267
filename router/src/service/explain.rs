//! `troupe.v1.Explainer`: explanations, routed like inference calls.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use troupe_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use troupe_proto::troupe::{self as tpb};

use crate::error::RouterError;

use super::inference::InferenceService;
use crate::routing::Router;

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
