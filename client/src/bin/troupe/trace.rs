//! W3C trace context on the command line's calls: spans, `--traceparent`, `trace-id`.

use anyhow::{Result, anyhow};

use crate::failure::Failure;

/// A request for `body` in the call's client span (made by `make`, continuing
/// `traceparent`), and that span, for the call to run in.
pub(crate) fn traced_request<T>(
    traceparent: Option<&str>,
    body: T,
    make: impl FnOnce() -> tracing::Span,
) -> Result<(tonic::Request<T>, tracing::Span), Failure> {
    let span = client_span(traceparent, make);
    let req = traced(&span, traceparent, body)?;
    Ok((req, span))
}

/// A request carrying the trace context: the client's span (continuing `traceparent`,
/// when given) when tracing is on and the call is sampled, else the given `traceparent`
/// as is.
fn traced<T>(
    span: &tracing::Span,
    traceparent: Option<&str>,
    body: T,
) -> Result<tonic::Request<T>, Failure> {
    let mut req = tonic::Request::new(body);
    if let Some(tp) = traceparent {
        let v = tp
            .parse::<tonic::metadata::MetadataValue<_>>()
            .map_err(|_| {
                Failure::Usage(anyhow!("--traceparent {tp:?} is not a valid header value"))
            })?;
        req.metadata_mut().insert("traceparent", v);
    }
    if !troupe_telemetry::inject(span, req.metadata_mut())
        && traceparent.is_none()
        && let Some(Ok(v)) = troupe_telemetry::unsampled_traceparent().map(|t| t.parse())
    {
        // Not traced here: the router and node skip the call too.
        req.metadata_mut().insert("traceparent", v);
    }
    Ok(req)
}

/// The client span of a call (see `troupe_telemetry::call_span`).
fn client_span(traceparent: Option<&str>, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let mut md = tonic::metadata::MetadataMap::new();
    if let Some(v) = traceparent.and_then(|tp| tp.parse().ok()) {
        md.insert("traceparent", v);
    }
    troupe_telemetry::call_span(&md, make)
}

/// The `trace-id` the server answered with, if any.
pub(crate) fn trace_id_of(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get("trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
