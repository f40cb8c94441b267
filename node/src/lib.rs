//! troupe-node: hosts model actors (one per backend instance, under a supervisor) and
//! serves them over the Open Inference Protocol and `troupe.v1.Models`.
//!
//! Read `docs/ARCHITECTURE.md` first: it follows one call from the gRPC handler to the
//! backend and back.

pub mod actors;
pub mod batcher;
pub mod config;
pub mod convert;
pub mod dashboard;
pub mod error;
pub mod follower;
pub mod gpu;
pub mod hooks;
pub mod lineage;
pub mod membership;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod server;
pub mod service;

pub use error::NodeError;
pub use registry::{NodeOptions, Registry};
pub use server::{ServeOptions, serve};
