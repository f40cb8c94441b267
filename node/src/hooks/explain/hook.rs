//! The explain hook: checks a call's `explain` parameters before the model runs, and
//! adds the attributions to its answer after.

use std::sync::Arc;
use std::time::Instant;

use tracing::{Instrument, info_span};
use troupe_backends::Tensor;
use troupe_proto::explain::param;

use super::{ExplainMemory, ExplainParams, explain};
use crate::error::NodeError;
use crate::hooks::call::{CallCtx, CallHook};

/// Explanations on request (see the module doc).
pub struct ExplainHook {
    enabled: bool,
    memory: Arc<ExplainMemory>,
}

impl ExplainHook {
    /// `enabled` is the model's `[hooks] explain`: when off, calls that ask are refused.
    /// `memory` is the node's explanation budget, shared by every model.
    pub fn new(enabled: bool, memory: Arc<ExplainMemory>) -> Self {
        Self { enabled, memory }
    }
}

#[tonic::async_trait]
impl CallHook for ExplainHook {
    fn name(&self) -> &'static str {
        "explain"
    }

    /// Only calls that ask for an explanation.
    fn wants(&self, ctx: &CallCtx<'_>) -> bool {
        ctx.params().contains_key(param::METHOD)
    }

    async fn before(&self, ctx: &CallCtx<'_>) -> Result<(), NodeError> {
        if !self.enabled {
            return Err(NodeError::FailedPrecondition(format!(
                "model '{}' has explanations turned off ([hooks] explain = false)",
                ctx.model.def().name
            )));
        }
        if let Some(p) = ExplainParams::from_params(ctx.params(), ctx.model.as_ref())? {
            p.check(ctx.model.as_ref())?;
        }
        Ok(())
    }

    async fn after(
        &self,
        ctx: &CallCtx<'_>,
        outputs: &[Tensor],
    ) -> Result<Vec<(String, Tensor)>, NodeError> {
        let Some(p) = ExplainParams::from_params(ctx.params(), ctx.model.as_ref())? else {
            return Ok(Vec::new());
        };
        let span = troupe_telemetry::child_span(|| {
            info_span!(
                "explanation",
                method = p.method.as_str(),
                backend = %ctx.model.def().backend,
                rows = ctx.rows as i64
            )
        });
        let started = Instant::now();
        let r = explain(
            ctx.model,
            &p,
            ctx.inputs,
            outputs,
            ctx.rows,
            ctx.deadline,
            &self.memory,
        )
        .instrument(span)
        .await;
        ctx.model
            .metrics()
            .explain
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(model = %ctx.model.def().name, method = p.method.as_str(), ok = r.is_ok(), "explained");
        r
    }
}
