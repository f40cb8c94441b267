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
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampler (default `parentbased_always_on`); `parentbased_traceidratio` with `0.01` keeps 1 % of new traces and follows the caller's `sampled` flag. Applied once per call where it enters the process ([`should_trace`]), so an unsampled call makes no spans at all |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | turn tracing off |
//!
//! W3C trace context travels in gRPC metadata (`traceparent`, `tracestate`): [`set_parent`]
//! continues the caller's trace in a server span, [`inject`] passes the current span on to
//! the next hop.

mod context;
pub mod dashboard;
pub mod metrics;
pub mod process;

use context::MetaInjector;
pub use context::TraceContext;

use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::MetadataMap;
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
static SAMPLING: OnceLock<Sampling> = OnceLock::new();

/// The sampling rule of `OTEL_TRACES_SAMPLER` / `_ARG`, applied once per call where it
/// enters a Troupe process (see [`should_trace`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Follow the caller's `sampled` flag when a `traceparent` came with the call.
    pub parent_based: bool,
    /// Share of calls without a sampled parent that are traced (0.0 to 1.0).
    pub ratio: f64,
}

impl Sampling {
    /// Reads the standard variables (default `parentbased_always_on`); unknown values
    /// fall back to the default, as the OpenTelemetry SDKs do.
    pub fn from_env(env: &impl Env) -> Self {
        let arg = env
            .var("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|a| a.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(1.0);
        let name = env
            .var("OTEL_TRACES_SAMPLER")
            .unwrap_or_else(|| "parentbased_always_on".into());
        let (parent_based, ratio) = match name.trim() {
            "always_on" => (false, 1.0),
            "always_off" => (false, 0.0),
            "traceidratio" => (false, arg),
            "parentbased_always_off" => (true, 0.0),
            "parentbased_traceidratio" => (true, arg),
            _ => (true, 1.0),
        };
        Self {
            parent_based,
            ratio,
        }
    }

    /// The decision for one call; `parent` is the caller's `sampled` flag when it sent a
    /// valid `traceparent`, `draw` a uniform number in [0, 1).
    pub fn decide(&self, parent: Option<bool>, draw: f64) -> bool {
        match parent {
            Some(p) if self.parent_based => p,
            _ => draw < self.ratio,
        }
    }
}

/// A uniform draw in [0, 1), from the thread's generator.
fn draw() -> f64 {
    rand::random::<f64>()
}

/// Whether the call whose metadata is `md` is traced here: tracing is on, and the
/// sampler (`OTEL_TRACES_SAMPLER`) keeps it. Call it once where a call enters the process
/// and create the call's span only when it says yes: an unsampled call then costs no
/// span work at all.
pub fn should_trace(md: &MetadataMap) -> bool {
    if !enabled() {
        return false;
    }
    let s = SAMPLING.get().copied().unwrap_or(Sampling {
        parent_based: true,
        ratio: 1.0,
    });
    s.decide(TraceContext::from_metadata(md).map(|t| t.sampled()), draw())
}

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
    // OTEL_TRACES_SAMPLER / _ARG are applied per call by `should_trace`, where a call
    // enters the process; spans made after that decision are all kept (and children
    // follow their parent).
    let _ = SAMPLING.set(Sampling::from_env(&ProcessEnv));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            opentelemetry_sdk::trace::Sampler::AlwaysOn,
        )))
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

/// The span of a call entering this process (`make` builds it). Tracing off: `make()`,
/// for the logs. Tracing on and the sampler keeps the call: `make()` continuing the
/// caller's trace from `md`, with `service.name` set. Not kept: `Span::none()`, and no
/// span work at all for this call.
pub fn call_span(md: &MetadataMap, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if !enabled() {
        return make();
    }
    if !should_trace(md) {
        return tracing::Span::none();
    }
    let span = make();
    set_parent(&span, md);
    attribute(&span, "service.name", service());
    span
}

/// A fresh `traceparent` whose `sampled` flag is off: sent on when this process decided
/// not to trace a call that came without one, so the next hops skip it too (instead of
/// drawing again and starting traces of their own). Only when tracing is on.
pub fn unsampled_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let r = |_| (draw() * (1u64 << 53) as f64) as u64;
    let (a, b, c) = (r(0), r(1), r(2));
    Some(format!("00-{a:016x}{b:016x}-{:016x}-00", c | 1))
}

/// A span inside the current call: `make()`, unless tracing is on and the current call
/// is not traced (then `Span::none()`, so it does not start a trace of its own).
pub fn child_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if enabled() && tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    make()
}

/// Continues the caller's trace (`traceparent` in `md`) in `span`, which must not have
/// been entered yet. A no-op when tracing is off.
pub fn set_parent(span: &tracing::Span, md: &MetadataMap) {
    if !enabled() {
        return;
    }
    if let Some(t) = TraceContext::from_metadata(md) {
        let _ = span.set_parent(t.into_context());
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

/// True when `span` is recorded and exported (tracing on and the trace sampled): child
/// spans that only matter in an exported trace are made only then.
pub fn sampled(span: &tracing::Span) -> bool {
    enabled() && !span.is_none() && span.context().span().span_context().is_sampled()
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
    fn sampling_follows_the_standard_variables_and_the_parent_flag() {
        let s = Sampling::from_env(&[]);
        assert_eq!(
            s,
            Sampling {
                parent_based: true,
                ratio: 1.0
            }
        );
        assert!(s.decide(None, 0.99));
        assert!(
            !s.decide(Some(false), 0.0),
            "parent-based: not sampled upstream"
        );
        let s = Sampling::from_env(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ]);
        assert_eq!(s.ratio, 0.01);
        assert!(s.decide(None, 0.005) && !s.decide(None, 0.5));
        assert!(
            s.decide(Some(true), 0.5),
            "a sampled parent wins over the ratio"
        );
        let s = Sampling::from_env(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert!(!s.decide(Some(true), 0.0), "always_off ignores the parent");
        let s = Sampling::from_env(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "nonsense"),
        ]);
        assert_eq!(s.ratio, 1.0, "a bad argument falls back to 1.0");
    }

    #[test]
    fn an_unsampled_traceparent_is_well_formed_only_when_tracing_is_on() {
        // This test process never called `init`: tracing is off.
        assert_eq!(unsampled_traceparent(), None);
    }

    #[test]
    fn draws_are_uniform_enough() {
        let n = 100_000;
        let hits = (0..n).filter(|_| draw() < 0.01).count();
        assert!((700..1300).contains(&hits), "{hits} of {n} under 0.01");
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
