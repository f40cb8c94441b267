//! gRPC services of a node: the Open Inference Protocol ([`inference`]) and
//! `troupe.v1.Models` ([`models`]). `troupe.v1.Explainer` is
//! `troupe_proto::explain::ExplainService` over the inference service;
//! `troupe.v1.Feedback` and `troupe.v1.Monitor` are `troupe_monitor::service`'s over the
//! node's store and models ([`feedback`]).
mod call;
pub mod feedback;
pub mod inference;

pub use call::{FAULT_PARAM, TRUNCATED_PARAM};
pub mod models;
