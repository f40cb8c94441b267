//! `troupe.v1.Explainer`: an explanation alone, as a `ModelInfer` call with `explain`.

use tonic::{Request, Response, Status};
use troupe_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use troupe_proto::troupe::explainer_server::Explainer;
use troupe_proto::troupe::{ExplainRequest, ExplainResponse};

use super::inference::InferenceService;

#[derive(Clone)]
pub struct ExplainService(pub InferenceService);

#[tonic::async_trait]
impl Explainer for ExplainService {
    async fn explain(
        &self,
        req: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let (meta, ext, body) = req.into_parts();
        let infer =
            troupe_proto::explain::to_infer_request(body).map_err(Status::invalid_argument)?;
        let resp = self
            .0
            .model_infer(Request::from_parts(meta, ext, infer))
            .await?;
        let (meta, inner, ext) = resp.into_parts();
        Ok(Response::from_parts(
            meta,
            ExplainResponse {
                response: Some(troupe_proto::explain::only_attributions(inner)),
            },
            ext,
        ))
    }
}
