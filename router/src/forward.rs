//! Forwarding one call: to a replica picked by the router, with the caller's deadline,
//! trace context and identity, and again to another replica when one fails (see
//! `failure.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, info, warn};
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use troupe_proto::raw::RawCodec;

use crate::error::RouterError;
use crate::failure::{Failure, failure, unavailable, unreachable};
use crate::routing::Router;
use crate::state::Replica;

/// What a forwarded call carries on from the caller's request: its deadline, its trace
/// context, and who it is (for the node's audit trail).
#[derive(Debug, Clone, Default)]
pub(crate) struct Hop {
    pub deadline: Option<Instant>,
    pub trace: Option<troupe_telemetry::TraceContext>,
    pub caller: Option<String>,
    /// Whether a call that was in flight on a failed node may be sent again elsewhere
    /// (false when the request says `troupe.idempotent = false`).
    pub resend: bool,
}

impl Hop {
    pub(crate) fn of<T>(req: &Request<T>) -> Self {
        Self {
            deadline: troupe_proto::request_deadline(req),
            trace: troupe_telemetry::TraceContext::from_metadata(req.metadata()),
            caller: req
                .extensions()
                .get::<troupe_proto::auth::Caller>()
                .map(|c| c.0.clone()),
            resend: true,
        }
    }

    /// As `of`, for an inference call with these parameters: its `troupe.idempotent`
    /// parameter says whether it may be sent again.
    pub(crate) fn of_infer<T>(
        req: &Request<T>,
        parameters: &HashMap<String, troupe_proto::inference::InferParameter>,
    ) -> Self {
        use troupe_proto::inference::infer_parameter::ParameterChoice;
        let resend = !matches!(
            parameters
                .get(troupe_proto::IDEMPOTENT_PARAM)
                .and_then(|p| p.parameter_choice.as_ref()),
            Some(ParameterChoice::BoolParam(false))
        );
        Self {
            resend,
            ..Self::of(req)
        }
    }
}

/// The replica an attempt goes to: its cached connection, with the router's message size
/// limit.
pub(crate) struct Upstream {
    channel: Channel,
    max_message_bytes: usize,
}

impl Upstream {
    /// A typed client of the replica's `inference.GRPCInferenceService`.
    pub(crate) fn client(self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    /// Calls the unary method at `path` with a request's encoded bytes and returns the
    /// answer's, neither decoded.
    pub(crate) async fn raw(
        self,
        path: &'static str,
        req: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        // As the generated clients do (failure.rs reads their words).
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
        grpc.unary(req, PathAndQuery::from_static(path), RawCodec)
            .await
    }
}

/// Forwards a call to ready replicas of `model` until one answers (at most once each).
pub(crate) async fn forward<Req, Resp, F, Fut>(
    router: &Router,
    model: &str,
    hop: &Hop,
    body: Req,
    call: F,
) -> Result<Response<Resp>, Status>
where
    Req: Clone,
    F: Fn(Upstream, Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
{
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<Status> = None;
    for attempt in 0..8 {
        let all = router.store.routes(model);
        let mut left: Vec<Replica> = all
            .into_iter()
            .filter(|r| !tried.contains(&r.node))
            .collect();
        if left.is_empty() {
            break;
        }
        // Nodes that could not be reached lately are left out while others remain.
        let now = Instant::now();
        if left.iter().any(|r| !router.ejections.is_out(&r.node, now)) {
            left.retain(|r| !router.ejections.is_out(&r.node, now));
        }
        let r = router.pick(&left).clone();
        tried.push(r.node.clone());
        let mut req = Request::new(body.clone());
        router.authorize(req.metadata_mut(), hop.caller.as_deref());
        let span = troupe_telemetry::child_span(
            || tracing::info_span!("router.attempt", model = %model, node = %r.node, addr = %r.addr, attempt),
        );
        // Traced: the node's span is this attempt's child. Else the caller's context
        // passes through unchanged.
        if !troupe_telemetry::inject(&span, req.metadata_mut()) {
            match &hop.trace {
                Some(t) => t.inject(req.metadata_mut()),
                // Not traced here: tell the node, so it does not start a trace itself.
                None => {
                    if let Some(Ok(v)) =
                        troupe_telemetry::unsampled_traceparent().map(|t| t.parse())
                    {
                        req.metadata_mut().insert("traceparent", v);
                    }
                }
            }
        }
        if let Some(d) = hop.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RouterError::DeadlineExceeded(format!(
                    "model '{model}': the call's deadline passed in the router"
                ))
                .into());
            }
            req.set_timeout(left);
        }
        let counter = router.counter(&r.node);
        counter.fetch_add(1, Ordering::Relaxed);
        let _out = Outstanding(counter);
        let upstream = Upstream {
            channel: router.channel(&r.addr)?,
            max_message_bytes: router.max_message_bytes,
        };
        let sent = Instant::now();
        let answer = call(upstream, req).instrument(span).await;
        if answer
            .as_ref()
            .map_or_else(|s| failure(s) == Failure::Answer, |_| true)
        {
            router.observe_latency(&r.node, sent.elapsed());
            if router.ejections.restore(&r.node) {
                info!(node = %r.node, "node answers again; back in replica picking");
            }
        } else if let Err(s) = &answer
            && unreachable(s)
        {
            let out = router.ejections.eject(&r.node, Instant::now());
            warn!(node = %r.node, addr = %r.addr, out_ms = out.as_millis() as u64, error = %s.message(), "node unreachable; out of replica picking for a while");
            router.metrics.ejection(&r.node);
        }
        match answer {
            Ok(resp) => {
                debug!(model = %model, node = %r.node, attempt, "answered");
                return Ok(resp);
            }
            Err(s) => match failure(&s) {
                Failure::Answer => return Err(s),
                Failure::MidCall if !hop.resend => {
                    return Err(unavailable(model, &r.node, &s, false));
                }
                kind => {
                    warn!(model = %model, node = %r.node, attempt, failure = ?kind, error = %s.message(), "replica failed; trying another");
                    router.metrics.retry(model);
                    last = Some(match kind {
                        Failure::MidCall => unavailable(model, &r.node, &s, true),
                        _ => s,
                    });
                }
            },
        }
    }
    Err(last.unwrap_or_else(|| router.no_replica(model)))
}

/// Counts a call outstanding on a node while it is held.
struct Outstanding(Arc<AtomicU64>);
impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Store;

    #[test]
    fn a_request_may_opt_out_of_being_sent_again() {
        use troupe_proto::inference::infer_parameter::ParameterChoice;
        use troupe_proto::inference::{InferParameter, ModelInferRequest};
        let mut body = ModelInferRequest::default();
        assert!(Hop::of_infer(&Request::new(()), &body.parameters).resend);
        body.parameters.insert(
            troupe_proto::IDEMPOTENT_PARAM.into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(false)),
            },
        );
        assert!(!Hop::of_infer(&Request::new(()), &body.parameters).resend);
    }

    #[test]
    fn outstanding_calls_are_counted_while_held() {
        let r = Router::new(Arc::new(Store::default()), Vec::new());
        let c = r.counter("n");
        c.fetch_add(1, Ordering::Relaxed);
        let held = Outstanding(c);
        assert_eq!(r.outstanding("n"), 1);
        drop(held);
        assert_eq!(r.outstanding("n"), 0);
    }
}
