//! Between the crate's types and the wire: infer and explain requests from inputs, results
//! from responses, and the call options' metadata on a request.

use troupe_proto::inference::model_infer_request::InferInputTensor;
use troupe_proto::inference::{self as pb};
use troupe_proto::troupe::ExplainRequest;

use crate::{CallOptions, ClientError, ExplainOptions, InferResult, InputTensor, OutputTensor};

/// Builds an infer request from inputs (raw contents).
pub fn infer_request(
    model: &str,
    version: &str,
    inputs: Vec<InputTensor>,
) -> pb::ModelInferRequest {
    let mut req = pb::ModelInferRequest {
        model_name: model.into(),
        model_version: version.into(),
        ..Default::default()
    };
    for i in inputs {
        req.inputs.push(InferInputTensor {
            name: i.name,
            datatype: i.datatype,
            shape: i.shape,
            ..Default::default()
        });
        req.raw_input_contents.push(i.data);
    }
    req
}

/// Builds an explain request: the infer request and what to explain and how.
pub fn explain_request(
    model: &str,
    version: &str,
    inputs: Vec<InputTensor>,
    how: &ExplainOptions,
) -> ExplainRequest {
    ExplainRequest {
        request: Some(infer_request(model, version, inputs)),
        method: how.method.clone(),
        output: how.output.clone(),
        target: how.target,
        baseline: how.baseline,
        steps: how.steps,
        window: how.window,
        samples: how.samples,
        seed: how.seed,
    }
}

/// Decodes a response (raw outputs).
pub fn decode_response(resp: pb::ModelInferResponse) -> Result<InferResult, ClientError> {
    if resp.raw_output_contents.len() != resp.outputs.len() {
        return Err(ClientError::Decode(format!(
            "{} outputs but {} raw buffers",
            resp.outputs.len(),
            resp.raw_output_contents.len()
        )));
    }
    let outputs = resp
        .outputs
        .into_iter()
        .zip(resp.raw_output_contents)
        .map(|(o, data)| OutputTensor {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            data,
        })
        .collect();
    Ok(InferResult {
        id: resp.id,
        model_name: resp.model_name,
        model_version: resp.model_version,
        outputs,
        parameters: resp.parameters,
    })
}

/// A request with the call options' deadline and trace context as metadata.
pub(crate) fn request<T>(body: T, opts: &CallOptions) -> Result<tonic::Request<T>, ClientError> {
    let mut req = tonic::Request::new(body);
    if let Some(t) = opts.timeout {
        req.set_timeout(t);
    }
    for (key, value) in [
        ("traceparent", &opts.traceparent),
        ("tracestate", &opts.tracestate),
    ] {
        if let Some(v) = value {
            let v = v
                .parse()
                .map_err(|_| ClientError::Decode(format!("invalid {key} value {v:?}")))?;
            req.metadata_mut().insert(key, v);
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_carry_inputs_and_options() {
        let x = InputTensor::from_slice("x", vec![2], &[1f32, 2.0]);
        let how = ExplainOptions {
            target: Some(3),
            steps: 8,
            ..ExplainOptions::method("saliency")
        };
        let e = explain_request("m", "2", vec![x], &how);
        let r = e.request.as_ref().unwrap();
        assert_eq!(
            (r.model_name.as_str(), r.model_version.as_str()),
            ("m", "2")
        );
        assert_eq!(
            (r.inputs[0].datatype.as_str(), r.raw_input_contents[0].len()),
            ("FP32", 8)
        );
        assert_eq!(
            (e.method.as_str(), e.target, e.steps),
            ("saliency", Some(3), 8)
        );

        let opts = CallOptions {
            timeout: Some(Duration::from_millis(5)),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ..Default::default()
        };
        let req = request((), &opts).unwrap();
        assert!(req.metadata().get("grpc-timeout").is_some());
        assert!(req.metadata().get("traceparent").is_some());
        let bad = CallOptions {
            tracestate: Some("a\nb".into()),
            ..Default::default()
        };
        assert!(request((), &bad).is_err());
    }

    #[test]
    fn responses_need_one_buffer_per_output() {
        let resp = pb::ModelInferResponse {
            outputs: vec![Default::default()],
            ..Default::default()
        };
        assert!(decode_response(resp).is_err());
    }
}
