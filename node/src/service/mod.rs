//! gRPC services of a node: the Open Inference Protocol ([`inference`]) and
//! `troupe.v1.Models` ([`models`]). `troupe.v1.Explainer` is
//! `troupe_proto::explain::ExplainService` over the inference service.
pub mod inference;
pub mod models;
