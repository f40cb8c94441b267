//! gRPC status codes by their canonical names (`INVALID_ARGUMENT`, as in the gRPC spec):
//! the one spelling the audit log, the metrics' `status` label and troupe-load use.

/// The canonical name of a gRPC status code (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_canonical_name() {
        for i in 0..=16 {
            let code = tonic::Code::from_i32(i);
            let debug = format!("{code:?}");
            // The Debug name in CamelCase is the canonical name without underscores.
            let squeezed: String = code_name(code).split('_').collect::<Vec<_>>().join("");
            assert_eq!(squeezed, debug.to_ascii_uppercase(), "{debug}");
        }
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
    }
}
