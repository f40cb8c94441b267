//! Generated wire types and service stubs.
//!
//! * [`inference`]: the Open Inference Protocol (KServe v2), wire-compatible with
//!   Triton's `inference.GRPCInferenceService`, so stock clients work unchanged.
//! * [`troupe`]: Troupe's DeepDetect-style model API (`troupe.v1.Models`).

#![allow(clippy::all, clippy::pedantic)]

/// Open Inference Protocol messages and the `GRPCInferenceService`.
pub mod inference {
    tonic::include_proto!("inference");
}

/// Troupe's own API (`troupe.v1`).
pub mod troupe {
    tonic::include_proto!("troupe.v1");
}

/// Encoded `FileDescriptorSet` of every .proto here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/troupe_descriptor.bin"));
