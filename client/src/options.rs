//! How a call is made: [`CallOptions`] (version, deadline, trace context, [`RetryPolicy`])
//! and what an explanation asks for ([`ExplainOptions`]).

use std::time::Duration;

/// When and how often a call is tried again.
///
/// Only failures that mean "not now" are retried: UNAVAILABLE (a replica restarting, a
/// connection lost) and RESOURCE_EXHAUSTED (a full queue). Inference calls are idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on: Vec<tonic::Code>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            retry_on: vec![tonic::Code::Unavailable, tonic::Code::ResourceExhausted],
        }
    }
}

impl RetryPolicy {
    /// Up to `attempts` tries with exponential backoff from 20 ms to 1 s.
    pub fn attempts(attempts: u32) -> Self {
        Self {
            max_attempts: attempts.max(1),
            ..Self::default()
        }
    }

    /// The wait before try number `attempt` (1-based; the first try does not wait).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(2).min(16);
        self.initial_backoff
            .saturating_mul(1 << exp)
            .min(self.max_backoff)
    }
}

/// What to explain and how (see docs/hooks.md).
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// `saliency`, `integrated_gradients`, `occlusion` or `shapley`.
    pub method: String,
    /// The output explained ("" = the first).
    pub output: String,
    /// Element of each output row explained (None = the row's largest).
    pub target: Option<i64>,
    /// The reference input's value.
    pub baseline: f64,
    /// Integrated gradients: path steps (0 = the server's default, 32).
    pub steps: u32,
    /// Occlusion and Shapley: features per group (0 = 1).
    pub window: u32,
    /// Shapley: sampled feature orders (0 = 16).
    pub samples: u32,
    pub seed: u64,
}

impl ExplainOptions {
    pub fn method(method: &str) -> Self {
        Self {
            method: method.to_string(),
            output: String::new(),
            target: None,
            baseline: 0.0,
            steps: 0,
            window: 0,
            samples: 0,
            seed: 0,
        }
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Model version ("" = the server's choice).
    pub version: String,
    /// The call's deadline, sent as `grpc-timeout`; the server drops the call when it
    /// passes while queued.
    pub timeout: Option<Duration>,
    /// W3C trace context to continue (`traceparent`, optionally `tracestate`).
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub retry: RetryPolicy,
    /// The request's `id`, to give ground truth for it later (`Client::feedback`); None:
    /// a server that records the model's calls makes one (the answer carries it).
    pub request_id: Option<String>,
}

impl CallOptions {
    /// Puts the call's request id (if any) on its request.
    pub fn set_id(&self, req: &mut troupe_proto::inference::ModelInferRequest) {
        if let Some(id) = &self.request_id {
            req.id = id.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::attempts(10);
        assert_eq!(p.backoff(2), Duration::from_millis(20));
        assert_eq!(p.backoff(3), Duration::from_millis(40));
        assert_eq!(p.backoff(9), Duration::from_secs(1));
        assert_eq!(RetryPolicy::attempts(0).max_attempts, 1);
    }
}
