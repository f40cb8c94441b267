//! gRPC messages passed on as their encoded bytes: the router forwards `ModelInfer`
//! without decoding its tensors. [`RawCodec`] carries a message's bytes through tonic
//! unchanged; [`InferHead`] reads only a `ModelInferRequest`'s routing fields from them
//! (prost skips the tensors' fields without looking inside).

use std::collections::HashMap;

use ::bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::inference::InferParameter;

/// The gRPC path of `ModelInfer`.
pub const MODEL_INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A codec whose messages are their encoded bytes, both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The fields of a `ModelInferRequest` that routing needs (tags as in inference.proto);
/// decoding it from a whole request skips the id, `inputs`, `outputs` and `raw_input_contents`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferHead {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(map = "string, message", tag = "4")]
    pub parameters: HashMap<String, InferParameter>,
}

impl InferHead {
    /// Reads the routing fields of an encoded `ModelInferRequest`.
    pub fn read(encoded: &[u8]) -> Result<Self, Status> {
        <Self as prost::Message>::decode(encoded).map_err(|e| {
            Status::invalid_argument(format!("the ModelInferRequest could not be decoded: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::ModelInferRequest;
    use crate::inference::infer_parameter::ParameterChoice;
    use crate::inference::model_infer_request::InferInputTensor;
    use prost::Message;

    #[test]
    fn the_head_of_a_whole_request_holds_its_routing_fields() {
        let mut req = ModelInferRequest {
            model_name: "mlp".into(),
            model_version: "2".into(),
            id: "call-7".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                ..Default::default()
            }],
            raw_input_contents: vec![vec![0u8; 16].into()],
            ..Default::default()
        };
        req.parameters.insert(
            crate::IDEMPOTENT_PARAM.into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(false)),
            },
        );
        let head = InferHead::read(&req.encode_to_vec()).unwrap();
        assert_eq!(head.model_name, "mlp");
        assert_eq!(head.model_version, "2");
        assert_eq!(
            head.parameters[crate::IDEMPOTENT_PARAM].parameter_choice,
            Some(ParameterChoice::BoolParam(false))
        );
    }

    #[test]
    fn bytes_that_are_no_request_are_refused_as_invalid() {
        // Field 1, length-delimited, claiming 100 bytes that are not there.
        let err = InferHead::read(&[0x0a, 100, b'x']).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("ModelInferRequest"),
            "{}",
            err.message()
        );
    }
}
