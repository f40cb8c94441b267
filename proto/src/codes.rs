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

/// The HTTP status an answer with this gRPC code gets (the mapping of grpc-gateway and
/// KServe's REST servers): the one place REST answers take their status from.
pub fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        InvalidArgument | FailedPrecondition | OutOfRange => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        ResourceExhausted => 429,
        Cancelled => 499,
        Unimplemented => 501,
        Unavailable => 503,
        DeadlineExceeded => 504,
        Unknown | Internal | DataLoss => 500,
    }
}

/// The gRPC code a REST answer's HTTP status stands for (the inverse of
/// [`http_status`] on the statuses it gives; other 4xx are INVALID_ARGUMENT, other 5xx
/// INTERNAL), as a REST client counts its failures.
pub fn code_of_http(status: u16) -> tonic::Code {
    use tonic::Code::*;
    match status {
        200..=299 => Ok,
        401 => Unauthenticated,
        403 => PermissionDenied,
        404 => NotFound,
        409 => Aborted,
        413 | 429 => ResourceExhausted,
        499 => Cancelled,
        501 => Unimplemented,
        502 | 503 => Unavailable,
        504 => DeadlineExceeded,
        400..=499 => InvalidArgument,
        _ => Internal,
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

    #[test]
    fn the_classes_of_bad_input_get_their_http_status() {
        use tonic::Code::*;
        let got: Vec<u16> = [
            InvalidArgument,
            NotFound,
            FailedPrecondition,
            ResourceExhausted,
            Unavailable,
            DeadlineExceeded,
            Unauthenticated,
            PermissionDenied,
        ]
        .into_iter()
        .map(http_status)
        .collect();
        assert_eq!(got, [400, 404, 400, 429, 503, 504, 401, 403]);
        for code in [
            NotFound,
            ResourceExhausted,
            Unavailable,
            DeadlineExceeded,
            Unauthenticated,
        ] {
            assert_eq!(code_of_http(http_status(code)), code);
        }
    }
}
