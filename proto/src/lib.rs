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
    /// The generated package (nested so its references to `inference` resolve).
    pub mod v1 {
        tonic::include_proto!("troupe.v1");
    }
    pub use v1::*;
}

#[cfg(feature = "auth")]
pub mod auth;
pub mod backoff;
pub mod bytes;
pub mod cluster;
pub mod codes;
pub mod datatype;
pub mod digest;
pub mod explain;
pub mod http2;
pub mod labels;
pub mod limits;
pub mod names;
pub mod raw;
#[cfg(feature = "rest")]
pub mod rest;
#[cfg(feature = "signing")]
pub mod signing;
pub mod tls;

pub use datatype::DataType;

/// Request parameter: `false` asks the router not to resend a call that was in flight on
/// a node that failed (inference is idempotent, so by default it is resent elsewhere).
pub const IDEMPOTENT_PARAM: &str = "troupe.idempotent";

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

/// The deadline a caller set on a request (its `grpc-timeout` header), as an instant, a
/// little early: a twentieth of the time, 2 to 50 ms (tokio's timers tick in ms). So the server's own
/// DEADLINE_EXCEEDED, naming where the time went, is answered before tonic's timer for
/// the same header fires (which would answer CANCELLED "Timeout expired").
pub fn request_deadline<T>(req: &tonic::Request<T>) -> Option<std::time::Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    early_deadline(parse_grpc_timeout(v)?)
}

/// Now plus `t`, less the slack of [`request_deadline`].
pub fn early_deadline(t: std::time::Duration) -> Option<std::time::Instant> {
    let slack = (t / 20).clamp(
        std::time::Duration::from_millis(2),
        std::time::Duration::from_millis(50),
    );
    std::time::Instant::now().checked_add(t.saturating_sub(slack))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_trace_id_goes_on_answers_and_errors_once() {
        let mut ok: Result<tonic::Response<()>, tonic::Status> = Ok(tonic::Response::new(()));
        super::set_trace_id(&mut ok, "4bf92f3577b34da6a3ce929d0e0e4736");
        super::set_trace_id(&mut ok, "ffffffffffffffffffffffffffffffff");
        let md = ok.as_ref().unwrap().metadata();
        assert_eq!(
            md.get("trace-id").unwrap(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut err: Result<tonic::Response<()>, tonic::Status> =
            Err(tonic::Status::not_found("x"));
        super::set_trace_id(&mut err, "");
        assert!(
            err.as_ref()
                .unwrap_err()
                .metadata()
                .get("trace-id")
                .is_none()
        );
        super::set_trace_id(&mut err, "abc");
        assert_eq!(err.unwrap_err().metadata().get("trace-id").unwrap(), "abc");
    }

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

/// Puts `trace_id` on an answer or error as `trace-id` metadata, unless a `trace-id` is
/// already there (the node's, passed back through the router). Empty or invalid ids are
/// skipped.
pub fn set_trace_id<T>(result: &mut Result<tonic::Response<T>, tonic::Status>, trace_id: &str) {
    if trace_id.is_empty() {
        return;
    }
    let Ok(id) = trace_id.parse::<tonic::metadata::MetadataValue<_>>() else {
        return;
    };
    let md = match result {
        Ok(r) => r.metadata_mut(),
        Err(s) => s.metadata_mut(),
    };
    if !md.contains_key("trace-id") {
        md.insert("trace-id", id);
    }
}
