//! Rust client for Troupe nodes and routers.
//!
//! It speaks the Open Inference Protocol (`inference.GRPCInferenceService`) and Troupe's
//! `troupe.v1.Models`. The generated stubs stay reachable for anything not wrapped here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), troupe_client::ClientError> {
//! use troupe_client::{Client, InputTensor};
//! let mut c = Client::connect("http://127.0.0.1:8001").await?;
//! let out = c.infer("mlp_onnx", vec![InputTensor::f32("input", vec![1, 16], &[0.0; 16])]).await?;
//! println!("{:?}", out.f32("output")?);
//! # Ok(()) }
//! ```

use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use troupe_proto::inference::model_infer_request::InferInputTensor;
use troupe_proto::inference::{self as pb};
use troupe_proto::troupe::models_client::ModelsClient;

pub use troupe_proto;

mod npy;
pub use npy::read_npy;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("bad response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The gRPC status code, when the server answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// One input of a call: raw little-endian bytes, as stock clients send them.
#[derive(Debug, Clone)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Bytes,
}

impl InputTensor {
    /// An FP32 input.
    pub fn f32(name: &str, shape: Vec<i64>, values: &[f32]) -> Self {
        Self::raw(
            name,
            "FP32",
            shape,
            Bytes::copy_from_slice(bytemuck::cast_slice(values)),
        )
    }

    /// Any data type, from raw bytes.
    pub fn raw(name: &str, datatype: &str, shape: Vec<i64>, data: Bytes) -> Self {
        Self {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            data,
        }
    }
}

/// One output of a call.
#[derive(Debug, Clone)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Bytes,
}

/// The answer to a call.
#[derive(Debug, Clone)]
pub struct InferResult {
    pub model_name: String,
    pub model_version: String,
    pub outputs: Vec<OutputTensor>,
}

impl InferResult {
    /// An output by name.
    pub fn output(&self, name: &str) -> Result<&OutputTensor, ClientError> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| ClientError::Decode(format!("no output '{name}' in the response")))
    }

    /// An FP32 output's values.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, ClientError> {
        let o = self.output(name)?;
        if o.datatype != "FP32" {
            return Err(ClientError::Decode(format!(
                "output '{name}' is {}, not FP32",
                o.datatype
            )));
        }
        if o.data.len() % 4 != 0 {
            return Err(ClientError::Decode(format!(
                "output '{name}' has {} bytes",
                o.data.len()
            )));
        }
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&o.data))
    }
}

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
        model_name: resp.model_name,
        model_version: resp.model_version,
        outputs,
    })
}

/// A connection to one node or router.
#[derive(Clone)]
pub struct Client {
    inference: GrpcInferenceServiceClient<Channel>,
    models: ModelsClient<Channel>,
}

impl Client {
    /// Connects to `http://HOST:PORT` (a bare `HOST:PORT` works too).
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(uri)?.connect().await?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            inference: GrpcInferenceServiceClient::new(channel.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            models: ModelsClient::new(channel),
        }
    }

    /// The generated Open Inference Protocol stub.
    pub fn inference(&mut self) -> &mut GrpcInferenceServiceClient<Channel> {
        &mut self.inference
    }

    /// The generated `troupe.v1.Models` stub.
    pub fn models(&mut self) -> &mut ModelsClient<Channel> {
        &mut self.models
    }

    pub async fn server_live(&mut self) -> Result<bool, ClientError> {
        Ok(self
            .inference
            .server_live(pb::ServerLiveRequest {})
            .await?
            .into_inner()
            .live)
    }

    pub async fn server_ready(&mut self) -> Result<bool, ClientError> {
        Ok(self
            .inference
            .server_ready(pb::ServerReadyRequest {})
            .await?
            .into_inner()
            .ready)
    }

    pub async fn model_ready(&mut self, name: &str) -> Result<bool, ClientError> {
        let r = pb::ModelReadyRequest {
            name: name.into(),
            version: String::new(),
        };
        Ok(self.inference.model_ready(r).await?.into_inner().ready)
    }

    /// Runs a model (latest version).
    pub async fn infer(
        &mut self,
        model: &str,
        inputs: Vec<InputTensor>,
    ) -> Result<InferResult, ClientError> {
        let resp = self
            .inference
            .model_infer(infer_request(model, "", inputs))
            .await?
            .into_inner();
        decode_response(resp)
    }
}
