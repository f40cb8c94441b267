//! gRPC services of a node.
pub mod explain;
pub mod inference;
pub mod models;
