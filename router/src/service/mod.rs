//! The router's gRPC services, one file each: the Open Inference Protocol for the whole
//! cluster ([`inference`]), `troupe.v1.Models` ([`models`]), `troupe.v1.Cluster`
//! ([`cluster`]); `ModelInfer` itself is answered by [`passthrough`], which forwards a
//! request's bytes without decoding its tensors; `troupe.v1.Explainer` is `troupe_proto::explain::ExplainService` over
//! the inference service, so explanations are routed like any call; `troupe.v1.Feedback`
//! and `troupe.v1.Monitor` are `troupe_monitor::service`'s over the router's store
//! ([`monitoring`]). Routing itself (picking, forwarding, retrying) is `crate::routing`'s.

pub mod cluster;
pub mod inference;
pub mod models;
pub mod monitoring;
pub mod passthrough;

pub use crate::routing::Router;
pub use cluster::ClusterService;
pub use inference::InferenceService;
pub use models::{ModelsService, model_status};
