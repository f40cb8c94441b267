//! troupe-router: one Open Inference Protocol endpoint for a cluster of troupe-nodes.
//!
//! * [`state`]: the cluster as etcd describes it, kept by one prefix watch;
//! * [`leader`]: the elected router turns desired models and live nodes into placements;
//! * [`placement`]: the placement decision, a pure function;
//! * [`routing`]: the channel pool and picking a replica (latency-aware power of two
//!   choices); `forward.rs` sends a call and retries on another replica, by what
//!   `failure.rs` makes of each failure; `ejection.rs` leaves a node that cannot be
//!   reached out of picking for a while;
//! * [`service`]: the gRPC services: inference, `troupe.v1.Models`, `troupe.v1.Cluster` and
//!   `troupe.v1.Explainer`;
//! * [`metrics`]: Prometheus metrics (calls, retries, replicas, node resources).

pub mod dashboard;
mod ejection;
pub mod error;
mod failure;
mod forward;
pub mod leader;
pub mod metrics;
pub mod placement;
pub mod records;
pub mod routing;
pub mod service;
pub mod spread;
pub mod state;
