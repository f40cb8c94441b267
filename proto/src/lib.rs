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

pub mod cluster;

/// Encoded `FileDescriptorSet` of every .proto here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/troupe_descriptor.bin"));

/// Parses a `grpc-timeout` header value ("100m", "5S", "250u", ...), as clients send the
/// call's deadline.
pub fn parse_grpc_timeout(v: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline a caller set on a request (its `grpc-timeout` header), as an instant.
pub fn request_deadline<T>(req: &tonic::Request<T>) -> Option<std::time::Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    std::time::Instant::now().checked_add(parse_grpc_timeout(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
    }
}
