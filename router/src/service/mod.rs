//! The router's gRPC services, one file each: the Open Inference Protocol for the whole
//! cluster ([`inference`]), `troupe.v1.Models` ([`models`]), `troupe.v1.Cluster`
//! ([`cluster`]) and `troupe.v1.Explainer` ([`explain`]). Routing itself (picking,
//! forwarding, retrying) is `crate::routing`'s.

pub mod cluster;
pub mod explain;
pub mod inference;
pub mod models;

pub use crate::routing::Router;
pub use cluster::ClusterService;
pub use explain::ExplainService;
pub use inference::InferenceService;
pub use models::{ModelsService, model_status};
