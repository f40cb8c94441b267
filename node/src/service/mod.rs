//! gRPC services of a node: the Open Inference Protocol ([`inference`]) and
//! `troupe.v1.Models` ([`models`]). `troupe.v1.Explainer` is
//! `troupe_proto::explain::ExplainService` over the inference service.
mod call;
pub mod inference;

pub use call::{FAULT_PARAM, TRUNCATED_PARAM};
pub mod models;
