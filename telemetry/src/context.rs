//! W3C trace context in gRPC metadata (`traceparent`, `tracestate`), read and written by
//! OpenTelemetry's own propagator: the one parser of a caller's trace context.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

/// The trace context a caller sent, when its `traceparent` is well formed (tracing on or
/// off: routers pass it on, and answers carry its trace id, either way).
#[derive(Debug, Clone)]
pub struct TraceContext {
    cx: opentelemetry::Context,
}

impl TraceContext {
    /// From a request's metadata; None without a valid `traceparent`.
    pub fn from_metadata(md: &MetadataMap) -> Option<Self> {
        let cx = TraceContextPropagator::new().extract(&MetaExtractor(md));
        cx.span().span_context().is_valid().then_some(Self { cx })
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }

    /// Whether the caller sampled this trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.cx.span().span_context().is_sampled()
    }

    /// The OpenTelemetry context, to parent a span with.
    pub(crate) fn into_context(self) -> opentelemetry::Context {
        self.cx
    }

    /// Puts the context on an outgoing request, unchanged (`tracestate` included).
    pub fn inject(&self, md: &mut MetadataMap) {
        TraceContextPropagator::new().inject_context(&self.cx, &mut MetaInjector(md));
    }
}

pub(crate) struct MetaExtractor<'a>(pub(crate) &'a MetadataMap);

impl Extractor for MetaExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

pub(crate) struct MetaInjector<'a>(pub(crate) &'a mut MetadataMap);

impl Injector for MetaInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(traceparent: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert("traceparent", traceparent.parse().unwrap());
        md
    }

    #[test]
    fn a_well_formed_traceparent_is_read() {
        let t = TraceContext::from_metadata(&md(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ))
        .unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled());
        let t = TraceContext::from_metadata(&md(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ))
        .unwrap();
        assert!(!t.sampled());
        assert!(TraceContext::from_metadata(&MetadataMap::new()).is_none());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(TraceContext::from_metadata(&md(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_context_passes_on_unchanged_with_its_tracestate() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut incoming = md(tp);
        incoming.insert("tracestate", "vendor=abc".parse().unwrap());
        let t = TraceContext::from_metadata(&incoming).unwrap();
        let mut out = MetadataMap::new();
        t.inject(&mut out);
        assert_eq!(out.get("traceparent").unwrap(), tp);
        assert_eq!(out.get("tracestate").unwrap(), "vendor=abc");
    }
}
