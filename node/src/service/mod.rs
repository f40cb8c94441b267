//! gRPC services of a node.
pub mod inference;
pub mod models;
