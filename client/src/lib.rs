//! Rust client for Troupe nodes and routers.
//!
//! It speaks the Open Inference Protocol (`inference.GRPCInferenceService`) and Troupe's
//! `troupe.v1.Models`. The generated gRPC clients stay reachable for anything not wrapped here.
//!
//! Calls take a deadline, a W3C trace context and a retry policy through
//! [`CallOptions`]; typed helpers ([`InputTensor::from_slice`], [`InferResult::values`])
//! cover every fixed-width element type.
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
use troupe_proto::troupe::cluster_client::ClusterClient;
use troupe_proto::troupe::explainer_client::ExplainerClient;
use troupe_proto::troupe::models_client::ModelsClient;

#[cfg(feature = "ndarray")]
mod nd;

pub use troupe_proto;
pub use troupe_proto::tls::ClientTls;

mod npy;
pub use npy::read_npy;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {}", chain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("bad response: {0}")]
    Decode(String),
}

/// An error and its causes, "a: b: c" (transport errors hide the useful part in sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
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

/// Element types with a wire name, for typed tensor helpers.
pub trait Element: bytemuck::Pod {
    /// The Open Inference Protocol datatype ("FP32", ...).
    const DATATYPE: &'static str;
}

macro_rules! element {
    ($($t:ty => $n:literal),*) => { $(impl Element for $t { const DATATYPE: &'static str = $n; })* };
}
element!(f32 => "FP32", f64 => "FP64", i8 => "INT8", i16 => "INT16", i32 => "INT32", i64 => "INT64",
    u8 => "UINT8", u16 => "UINT16", u32 => "UINT32", u64 => "UINT64", half::f16 => "FP16", half::bf16 => "BF16");

impl InputTensor {
    /// An input of any element type from values in row-major order.
    pub fn from_slice<T: Element>(name: &str, shape: Vec<i64>, values: &[T]) -> Self {
        Self::raw(
            name,
            T::DATATYPE,
            shape,
            Bytes::copy_from_slice(bytemuck::cast_slice(values)),
        )
    }

    /// An FP32 input.
    pub fn f32(name: &str, shape: Vec<i64>, values: &[f32]) -> Self {
        Self::raw(
            name,
            "FP32",
            shape,
            Bytes::copy_from_slice(bytemuck::cast_slice(values)),
        )
    }

    /// A BYTES input of texts, one per row (shape `[n, 1]`, as text models take them).
    pub fn text<S: AsRef<str>>(name: &str, texts: &[S]) -> Self {
        Self::raw(
            name,
            "BYTES",
            vec![texts.len() as i64, 1],
            troupe_proto::bytes::encode_bytes(texts.iter().map(|t| t.as_ref().as_bytes())),
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

impl OutputTensor {
    /// The elements of a BYTES output (each as sent: text outputs are UTF-8).
    pub fn bytes_elements(&self) -> Result<Vec<&[u8]>, ClientError> {
        if self.datatype != "BYTES" {
            return Err(ClientError::Decode(format!(
                "output '{}' is {}, not BYTES",
                self.name, self.datatype
            )));
        }
        troupe_proto::bytes::bytes_elements(&self.data)
            .map_err(|e| ClientError::Decode(format!("output '{}': {e}", self.name)))
    }
}

/// The answer to a call.
#[derive(Debug, Clone)]
pub struct InferResult {
    pub model_name: String,
    pub model_version: String,
    pub outputs: Vec<OutputTensor>,
    /// The answer's parameters (e.g. `truncated` from text models).
    pub parameters: std::collections::HashMap<String, troupe_proto::inference::InferParameter>,
}

impl InferResult {
    /// An output by name.
    pub fn output(&self, name: &str) -> Result<&OutputTensor, ClientError> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| ClientError::Decode(format!("no output '{name}' in the response")))
    }

    /// An output's values as `T` (its datatype must be `T`'s).
    pub fn values<T: Element>(&self, name: &str) -> Result<Vec<T>, ClientError> {
        let o = self.output(name)?;
        if o.datatype != T::DATATYPE {
            return Err(ClientError::Decode(format!(
                "output '{name}' is {}, not {}",
                o.datatype,
                T::DATATYPE
            )));
        }
        if o.data.len() % std::mem::size_of::<T>() != 0 {
            return Err(ClientError::Decode(format!(
                "output '{name}' has {} bytes",
                o.data.len()
            )));
        }
        Ok(bytemuck::pod_collect_to_vec::<u8, T>(&o.data))
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
        parameters: resp.parameters,
    })
}

/// When and how often a call is tried again.
///
/// Only failures that mean "not now" are retried: UNAVAILABLE (a replica restarting, a
/// connection lost) and RESOURCE_EXHAUSTED (a full queue). Inference calls are idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff: std::time::Duration,
    pub max_backoff: std::time::Duration,
    pub retry_on: Vec<tonic::Code>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: std::time::Duration::from_millis(20),
            max_backoff: std::time::Duration::from_secs(1),
            retry_on: vec![tonic::Code::Unavailable, tonic::Code::ResourceExhausted],
        }
    }
}

impl RetryPolicy {
    /// Up to `attempts` tries with exponential backoff from 20 ms to 1 s.
    pub fn attempts(attempts: u32) -> Self {
        Self {
            max_attempts: attempts.max(1),
            ..Self::default()
        }
    }

    /// The wait before try number `attempt` (1-based; the first try does not wait).
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let exp = attempt.saturating_sub(2).min(16);
        self.initial_backoff
            .saturating_mul(1 << exp)
            .min(self.max_backoff)
    }
}

/// What to explain and how (see docs/hooks.md).
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// `saliency`, `integrated_gradients`, `occlusion` or `shapley`.
    pub method: String,
    /// The output explained ("" = the first).
    pub output: String,
    /// Element of each output row explained (None = the row's largest).
    pub target: Option<i64>,
    /// The reference input's value.
    pub baseline: f64,
    /// Integrated gradients: path steps (0 = the server's default, 32).
    pub steps: u32,
    /// Occlusion and Shapley: features per group (0 = 1).
    pub window: u32,
    /// Shapley: sampled feature orders (0 = 16).
    pub samples: u32,
    pub seed: u64,
}

impl ExplainOptions {
    pub fn method(method: &str) -> Self {
        Self {
            method: method.to_string(),
            output: String::new(),
            target: None,
            baseline: 0.0,
            steps: 0,
            window: 0,
            samples: 0,
            seed: 0,
        }
    }
}

/// The attributions of one explained call.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub result: InferResult,
}

impl Explanation {
    /// The attribution of an input (FP32, shaped like the input).
    pub fn attribution(&self, input: &str) -> Result<Vec<f32>, ClientError> {
        self.result.f32(&format!("attribution.{input}"))
    }

    /// The output element explained, per row.
    pub fn targets(&self) -> Result<Vec<i64>, ClientError> {
        self.result.values::<i64>("attribution.target")
    }

    /// f(x): the explained output element's value, per row.
    pub fn values(&self) -> Result<Vec<f32>, ClientError> {
        self.result.f32("attribution.value")
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Model version ("" = the server's choice).
    pub version: String,
    /// The call's deadline, sent as `grpc-timeout`; the server drops the call when it
    /// passes while queued.
    pub timeout: Option<std::time::Duration>,
    /// W3C trace context to continue (`traceparent`, optionally `tracestate`).
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub retry: RetryPolicy,
}

/// A connection to one node or router.
#[derive(Clone)]
pub struct Client {
    inference: GrpcInferenceServiceClient<Channel>,
    models: ModelsClient<Channel>,
    cluster: ClusterClient<Channel>,
    explainer: ExplainerClient<Channel>,
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

    /// Connects with TLS (`https://HOST:PORT`; a bare `HOST:PORT` works too), checking
    /// the server against `tls` (a CA, the expected name, a client certificate for
    /// mutual TLS).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use troupe_client::{Client, ClientTls};
    /// let tls = ClientTls::with_ca_file("ca.pem".as_ref())?;
    /// let mut c = Client::connect_tls("localhost:8001", &tls).await?;
    /// assert!(c.server_ready().await?);
    /// # Ok(()) }
    /// ```
    pub async fn connect_tls(addr: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        let uri = match addr.split_once("://") {
            Some((_, rest)) => format!("https://{rest}"),
            None => format!("https://{addr}"),
        };
        let channel = Endpoint::from_shared(uri)?
            .tls_config(tls.client_config())?
            .connect()
            .await?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            inference: GrpcInferenceServiceClient::new(channel.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            models: ModelsClient::new(channel.clone()),
            explainer: ExplainerClient::new(channel.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            cluster: ClusterClient::new(channel),
        }
    }

    /// The generated Open Inference Protocol client, for calls not wrapped here.
    pub fn inference(&mut self) -> &mut GrpcInferenceServiceClient<Channel> {
        &mut self.inference
    }

    /// The generated `troupe.v1.Cluster` client (routers only): nodes and placements.
    pub fn cluster(&mut self) -> &mut ClusterClient<Channel> {
        &mut self.cluster
    }

    /// The generated `troupe.v1.Explainer` client.
    pub fn explainer(&mut self) -> &mut ExplainerClient<Channel> {
        &mut self.explainer
    }

    /// The generated `troupe.v1.Models` client.
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
        self.infer_with(model, inputs, &CallOptions::default())
            .await
    }

    /// Runs a model with a deadline, trace context and retry policy.
    ///
    /// ```no_run
    /// # async fn demo(c: &mut troupe_client::Client) -> Result<(), troupe_client::ClientError> {
    /// use std::time::Duration;
    /// use troupe_client::{CallOptions, InputTensor, RetryPolicy};
    /// let opts = CallOptions { timeout: Some(Duration::from_millis(200)), retry: RetryPolicy::attempts(3), ..Default::default() };
    /// let out = c.infer_with("mlp_onnx", vec![InputTensor::from_slice("input", vec![1, 16], &[0f32; 16])], &opts).await?;
    /// let y: Vec<f32> = out.values("output")?;
    /// # Ok(()) }
    /// ```
    pub async fn infer_with(
        &mut self,
        model: &str,
        inputs: Vec<InputTensor>,
        opts: &CallOptions,
    ) -> Result<InferResult, ClientError> {
        let body = infer_request(model, &opts.version, inputs);
        let mut attempt = 1;
        loop {
            let req = request(body.clone(), opts)?;
            match self.inference.model_infer(req).await {
                Ok(resp) => return decode_response(resp.into_inner()),
                Err(s)
                    if attempt < opts.retry.max_attempts
                        && opts.retry.retry_on.contains(&s.code()) =>
                {
                    attempt += 1;
                    tokio::time::sleep(opts.retry.backoff(attempt)).await;
                }
                Err(s) => return Err(s.into()),
            }
        }
    }

    /// Explains one call: feature attributions of each input (the `Explain` RPC).
    ///
    /// ```no_run
    /// # async fn demo(c: &mut troupe_client::Client) -> Result<(), troupe_client::ClientError> {
    /// use troupe_client::{CallOptions, ExplainOptions, InputTensor};
    /// let x = InputTensor::from_slice("input", vec![1, 16], &[0.5f32; 16]);
    /// let e = c.explain("mlp_torch", vec![x], &ExplainOptions::method("integrated_gradients"), &CallOptions::default()).await?;
    /// let attributions = e.attribution("input")?;
    /// # Ok(()) }
    /// ```
    pub async fn explain(
        &mut self,
        model: &str,
        inputs: Vec<InputTensor>,
        how: &ExplainOptions,
        opts: &CallOptions,
    ) -> Result<Explanation, ClientError> {
        let body = troupe_proto::troupe::ExplainRequest {
            request: Some(infer_request(model, &opts.version, inputs)),
            method: how.method.clone(),
            output: how.output.clone(),
            target: how.target,
            baseline: how.baseline,
            steps: how.steps,
            window: how.window,
            samples: how.samples,
            seed: how.seed,
        };
        let resp = self.explainer.explain(request(body, opts)?).await?;
        let inner = resp.into_inner().response.unwrap_or_default();
        Ok(Explanation {
            result: decode_response(inner)?,
        })
    }
}

/// A request with the call options' deadline and trace context as metadata.
fn request<T>(body: T, opts: &CallOptions) -> Result<tonic::Request<T>, ClientError> {
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
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::attempts(10);
        assert_eq!(p.backoff(2), Duration::from_millis(20));
        assert_eq!(p.backoff(3), Duration::from_millis(40));
        assert_eq!(p.backoff(9), Duration::from_secs(1));
        assert_eq!(RetryPolicy::attempts(0).max_attempts, 1);
    }

    #[test]
    fn typed_helpers_round_trip() {
        let t = InputTensor::from_slice("x", vec![2], &[7i64, -1]);
        assert_eq!(t.datatype, "INT64");
        let r = InferResult {
            parameters: Default::default(),
            model_name: "m".into(),
            model_version: "1".into(),
            outputs: vec![OutputTensor {
                name: "y".into(),
                datatype: "INT64".into(),
                shape: vec![2],
                data: t.data,
            }],
        };
        assert_eq!(r.values::<i64>("y").unwrap(), vec![7, -1]);
        assert!(r.values::<f32>("y").is_err());
    }
}
