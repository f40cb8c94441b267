//! Rust client for Troupe nodes and routers.
//!
//! It speaks the Open Inference Protocol (`inference.GRPCInferenceService`) and Troupe's
//! `troupe.v1.Models`. The generated gRPC clients stay reachable for anything not wrapped here.
//!
//! Calls take a deadline, a W3C trace context and a retry policy through
//! [`CallOptions`]; typed helpers ([`InputTensor::from_slice`], [`InferResult::values`])
//! cover every fixed-width element type. [`Client::with_token`] sends a bearer token
//! (`authorization: Bearer <token>`) on every call, the generated stubs' included.
//!
//! ```no_run
//! # async fn demo() -> Result<(), troupe_client::ClientError> {
//! use troupe_client::{Client, InputTensor};
//! let mut c = Client::connect("http://127.0.0.1:8001").await?;
//! let out = c.infer("mlp_onnx", vec![InputTensor::f32("input", vec![1, 16], &[0.0; 16])]).await?;
//! println!("{:?}", out.f32("output")?);
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod error;
#[cfg(feature = "ndarray")]
mod nd;
mod npy;
mod options;
mod tensor;
mod wire;

pub use troupe_proto;
pub use troupe_proto::DataType;
pub use troupe_proto::tls::ClientTls;

pub use auth::{Bearer, Transport};
pub use client::Client;
pub use error::ClientError;
pub use npy::read_npy;
pub use options::{CallOptions, ExplainOptions, RetryPolicy};
pub use tensor::{Element, Explanation, InferResult, InputTensor, OutputTensor, wire_data_type};
pub use wire::{decode_response, explain_request, infer_request};
