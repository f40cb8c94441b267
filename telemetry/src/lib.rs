//! Logs and traces for every Troupe process (node, router, `troupe` CLI).
//!
//! [`init`] installs a `tracing` subscriber: human logs on stderr (filtered by `--log`)
//! and, when an OTLP endpoint is configured, an OpenTelemetry layer exporting spans over
//! OTLP/gRPC. Configuration is the standard OpenTelemetry environment:
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | where spans go (`http://127.0.0.1:4317`); unset: no exporter, no OpenTelemetry layer at all |
//! | `OTEL_SERVICE_NAME` | `service.name` (default: the process, e.g. `troupe-node`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | extra resource attributes (`k=v,k2=v2`) |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampler (default `parentbased_always_on`); `parentbased_traceidratio` with `0.01` keeps 1 % of new traces and follows the caller's `sampled` flag |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | turn tracing off |
//!
//! W3C trace context travels in gRPC metadata (`traceparent`, `tracestate`): [`set_parent`]
//! continues the caller's trace in a server span, [`inject`] passes the current span on to
//! the next hop.

pub mod metrics;

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What can go wrong setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter '{filter}': {reason}")]
    Filter { filter: String, reason: String },
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Reads the environment (a trait so tests can inject a map).
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, key: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }
}

/// The OTLP endpoint spans go to, or None when tracing export is off.
pub fn otlp_endpoint(env: &impl Env) -> Option<String> {
    if env
        .var("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env
            .var("OTEL_TRACES_EXPORTER")
            .is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    env.var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env.var("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// The service name: `OTEL_SERVICE_NAME`, else `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`, else `default`.
pub fn service_name(env: &impl Env, default: &str) -> String {
    if let Some(s) = env.var("OTEL_SERVICE_NAME") {
        return s;
    }
    env.var("OTEL_RESOURCE_ATTRIBUTES")
        .and_then(|attrs| {
            attrs.split(',').find_map(|kv| {
                kv.split_once('=')
                    .filter(|(k, _)| k.trim() == "service.name")
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| default.to_string())
}

static SERVICE: OnceLock<String> = OnceLock::new();
static ENABLED: OnceLock<bool> = OnceLock::new();

/// This process's service name (after [`init`]).
pub fn service() -> &'static str {
    SERVICE.get().map(String::as_str).unwrap_or("troupe")
}

/// True when spans are exported (an OTLP endpoint is set).
pub fn enabled() -> bool {
    ENABLED.get().copied().unwrap_or(false)
}

/// Holds the tracer provider; dropping it flushes the spans not yet exported.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (also done on drop).
    pub fn shutdown(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.force_flush() {
                eprintln!("telemetry: flushing spans failed: {e}");
            }
            if let Err(e) = p.shutdown() {
                eprintln!("telemetry: exporter shutdown failed: {e}");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Installs logging (stderr, `log_filter`) and, when an OTLP endpoint is configured,
/// span export. Call it inside a Tokio runtime (the OTLP client is a tonic channel).
pub fn init(default_service: &str, log_filter: &str) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(log_filter).map_err(|e| TelemetryError::Filter {
        filter: log_filter.to_string(),
        reason: e.to_string(),
    })?;
    let service = service_name(&ProcessEnv, default_service);
    let _ = SERVICE.set(service.clone());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let Some(endpoint) = otlp_endpoint(&ProcessEnv) else {
        let _ = ENABLED.set(false);
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .try_init()
            .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if ProcessEnv.var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.clone());
    }
    // The sampler comes from OTEL_TRACES_SAMPLER / _ARG (the SDK reads them).
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("troupe");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let _ = ENABLED.set(true);
    // Logs keep their own filter (a quiet CLI still exports its spans); spans go out at
    // INFO and above, without the transport's own.
    let spans_filter = EnvFilter::try_new(
        "info,h2=off,hyper=off,hyper_util=off,tower=off,tonic=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off",
    )
    .map_err(|e| TelemetryError::Filter {
        filter: "spans".into(),
        reason: e.to_string(),
    })?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_filter(filter),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(spans_filter),
        )
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    tracing::info!(endpoint = %endpoint, service = %service, "exporting traces over OTLP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

struct MetaExtractor<'a>(&'a MetadataMap);

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

struct MetaInjector<'a>(&'a mut MetadataMap);

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

/// Continues the caller's trace (`traceparent` in `md`) in `span`, which must not have
/// been entered yet. A no-op when tracing is off.
pub fn set_parent(span: &tracing::Span, md: &MetadataMap) {
    if !enabled() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&MetaExtractor(md));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Writes `span`'s context as `traceparent`/`tracestate` into `md`, replacing what was
/// there. Returns false (and leaves `md` alone) when tracing is off.
pub fn inject(span: &tracing::Span, md: &mut MetadataMap) -> bool {
    if !enabled() {
        return false;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return false;
    }
    TraceContextPropagator::new().inject_context(&cx, &mut MetaInjector(md));
    true
}

/// The trace id of `span` (32 hex digits), when tracing is on.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let sc = span.context().span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Records `key = value` on `span` as an OpenTelemetry attribute (no-op when off).
pub fn attribute(span: &tracing::Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    if enabled() {
        span.set_attribute(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_comes_from_the_standard_variables() {
        assert_eq!(otlp_endpoint(&[]), None);
        assert_eq!(
            otlp_endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]).as_deref(),
            Some("http://127.0.0.1:4317")
        );
        assert_eq!(
            otlp_endpoint(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2"),
            ])
            .as_deref(),
            Some("http://b:2")
        );
        assert_eq!(
            otlp_endpoint(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
            None
        );
        assert_eq!(
            otlp_endpoint(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ]),
            None
        );
    }

    #[test]
    fn the_service_name_prefers_otel_service_name_then_resource_attributes() {
        assert_eq!(service_name(&[], "troupe-node"), "troupe-node");
        assert_eq!(
            service_name(
                &[("OTEL_RESOURCE_ATTRIBUTES", "a=b, service.name=edge ,c=d")],
                "x"
            ),
            "edge"
        );
        assert_eq!(
            service_name(
                &[
                    ("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge"),
                    ("OTEL_SERVICE_NAME", "svc")
                ],
                "x"
            ),
            "svc"
        );
    }
}
