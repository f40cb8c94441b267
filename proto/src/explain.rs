//! The `Explain` RPC as a `ModelInfer` call: nodes and the router both turn an
//! `ExplainRequest` into a `ModelInfer` request with the `explain` parameters, and keep
//! only the attribution outputs of the answer.

use crate::inference::infer_parameter::ParameterChoice;
use crate::inference::{InferParameter, ModelInferRequest, ModelInferResponse};
use crate::troupe::ExplainRequest;

/// The request parameters that ask for an explanation and tune it: the one list of
/// their names, read by the node and written by the `Explain` RPC.
pub mod param {
    /// The method: saliency, integrated_gradients, occlusion or shapley.
    pub const METHOD: &str = "explain";
    pub const OUTPUT: &str = "explain_output";
    pub const TARGET: &str = "explain_target";
    pub const BASELINE: &str = "explain_baseline";
    pub const STEPS: &str = "explain_steps";
    pub const WINDOW: &str = "explain_window";
    pub const SAMPLES: &str = "explain_samples";
    pub const SEED: &str = "explain_seed";
}

/// Output names an explanation adds start with this.
pub const ATTRIBUTION_PREFIX: &str = "attribution.";

fn string(s: &str) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam(s.to_string())),
    }
}

fn int(v: i64) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::Int64Param(v)),
    }
}

/// The `ModelInfer` request an `Explain` call stands for. Err names what is missing.
pub fn to_infer_request(req: ExplainRequest) -> Result<ModelInferRequest, String> {
    let mut r = req
        .request
        .ok_or("ExplainRequest.request (the model and its inputs) is required")?;
    if req.method.is_empty() {
        return Err(
            "ExplainRequest.method is required: saliency, integrated_gradients, occlusion or shapley"
                .into(),
        );
    }
    let p = &mut r.parameters;
    p.insert(param::METHOD.into(), string(&req.method));
    if !req.output.is_empty() {
        p.insert(param::OUTPUT.into(), string(&req.output));
    }
    if let Some(t) = req.target {
        p.insert(param::TARGET.into(), int(t));
    }
    if req.baseline != 0.0 {
        p.insert(
            param::BASELINE.into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::DoubleParam(req.baseline)),
            },
        );
    }
    for (name, v) in [
        (param::STEPS, req.steps),
        (param::WINDOW, req.window),
        (param::SAMPLES, req.samples),
    ] {
        if v > 0 {
            p.insert(name.into(), int(v as i64));
        }
    }
    if req.seed > 0 {
        p.insert(param::SEED.into(), int(req.seed as i64));
    }
    Ok(r)
}

/// `troupe.v1.Explainer` over any server's own `ModelInfer` (node or router): the one
/// body of both.
#[derive(Clone)]
pub struct ExplainService<S>(pub S);

#[tonic::async_trait]
impl<S> crate::troupe::explainer_server::Explainer for ExplainService<S>
where
    S: crate::inference::grpc_inference_service_server::GrpcInferenceService,
{
    async fn explain(
        &self,
        req: tonic::Request<ExplainRequest>,
    ) -> Result<tonic::Response<crate::troupe::ExplainResponse>, tonic::Status> {
        let (meta, ext, body) = req.into_parts();
        let infer = to_infer_request(body).map_err(tonic::Status::invalid_argument)?;
        let resp = self
            .0
            .model_infer(tonic::Request::from_parts(meta, ext, infer))
            .await?;
        let (meta, inner, ext) = resp.into_parts();
        Ok(tonic::Response::from_parts(
            meta,
            crate::troupe::ExplainResponse {
                response: Some(only_attributions(inner)),
            },
            ext,
        ))
    }
}

/// Keeps only the attribution outputs of an answer.
pub fn only_attributions(mut resp: ModelInferResponse) -> ModelInferResponse {
    let raw = std::mem::take(&mut resp.raw_output_contents);
    let outs = std::mem::take(&mut resp.outputs);
    for (o, r) in outs.into_iter().zip(raw) {
        if o.name.starts_with(ATTRIBUTION_PREFIX) {
            resp.outputs.push(o);
            resp.raw_output_contents.push(r);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::model_infer_response::InferOutputTensor;

    #[test]
    fn an_explain_request_becomes_parameters() {
        let r = to_infer_request(ExplainRequest {
            request: Some(ModelInferRequest {
                model_name: "m".into(),
                ..Default::default()
            }),
            method: "occlusion".into(),
            target: Some(2),
            window: 4,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.parameters.len(), 3);
        assert!(matches!(
            r.parameters["explain_target"].parameter_choice,
            Some(ParameterChoice::Int64Param(2))
        ));
        let e = to_infer_request(ExplainRequest::default()).unwrap_err();
        assert!(e.contains("request"), "{e}");
    }

    #[test]
    fn only_attributions_are_kept() {
        let out = |n: &str| InferOutputTensor {
            name: n.into(),
            ..Default::default()
        };
        let r = only_attributions(ModelInferResponse {
            outputs: vec![out("y"), out("attribution.x")],
            raw_output_contents: vec![vec![1u8].into(), vec![2u8].into()],
            ..Default::default()
        });
        assert_eq!(r.outputs.len(), 1);
        assert_eq!(r.outputs[0].name, "attribution.x");
        assert_eq!(&r.raw_output_contents[0][..], &[2u8]);
    }
}
