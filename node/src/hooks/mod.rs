//! Call hooks: code that runs around every call of a model, configured per model in its
//! `[hooks]` config (or `ModelSpec.hooks`). Three are built in:
//!
//! * [`ExplainHook`]: feature attributions when the call asks with `explain`;
//! * [`AuditHook`]: one JSON line per call (the provenance trail);
//! * [`DriftHook`]: running input statistics against a reference.
//!
//! A model with no hook configured pays one empty-slice check per call.

pub mod audit;
pub mod drift;
pub mod explain;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::{Instrument, info_span};
use troupe_backends::Tensor;
use troupe_proto::inference::{InferParameter, ModelInferRequest};

pub use crate::config::{DriftCfg, HooksCfg};
pub use audit::{AuditHook, AuditLog};
pub use drift::DriftHook;
pub use explain::{ExplainParams, Method};

use crate::error::NodeError;
use crate::model::LoadedModel;

/// One call as the hooks see it.
pub struct CallCtx<'a> {
    pub model: &'a Arc<LoadedModel>,
    pub request: &'a ModelInferRequest,
    /// The validated inputs (empty when the request was refused before validation).
    pub inputs: &'a [Tensor],
    pub rows: usize,
    pub trace_id: &'a str,
    pub deadline: Option<Instant>,
    pub started: Instant,
}

impl CallCtx<'_> {
    pub fn params(&self) -> &HashMap<String, InferParameter> {
        &self.request.parameters
    }
}

/// The answer the hooks see at the end.
pub type Outcome<'a> = Result<&'a troupe_proto::inference::ModelInferResponse, &'a NodeError>;

/// Runs around every call of a model.
#[tonic::async_trait]
pub trait CallHook: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether `before` and `after` run for this call (default: every call). A hook that
    /// acts only on some calls says so here, and costs nothing on the others.
    fn wants(&self, _ctx: &CallCtx<'_>) -> bool {
        true
    }

    /// Before the model runs; an error refuses the call.
    async fn before(&self, _ctx: &CallCtx<'_>) -> Result<(), NodeError> {
        Ok(())
    }

    /// After the model answered; may add named outputs to the answer.
    async fn after(
        &self,
        _ctx: &CallCtx<'_>,
        _outputs: &[Tensor],
    ) -> Result<Vec<(String, Tensor)>, NodeError> {
        Ok(Vec::new())
    }

    /// Once the call's outcome is final, failed calls included.
    fn finished(&self, _ctx: &CallCtx<'_>, _outcome: Outcome<'_>) {}
}

/// The hooks of one loaded model, in the order they run.
#[derive(Clone, Default)]
pub struct HookSet {
    hooks: Arc<[Arc<dyn CallHook>]>,
    /// The drift watch, for its metrics.
    pub drift: Option<Arc<DriftHook>>,
    observes: bool,
}

impl HookSet {
    /// Builds a model's hooks from its config.
    pub fn build(
        cfg: &HooksCfg,
        model: &str,
        version: &str,
        audit: Option<&Arc<AuditLog>>,
    ) -> Result<Self, NodeError> {
        let mut v: Vec<Arc<dyn CallHook>> = Vec::new();
        v.push(Arc::new(ExplainHook {
            enabled: cfg.explain,
        }));
        let mut drift = None;
        if let Some(d) = &cfg.drift {
            let h = Arc::new(DriftHook::new(model, version, d.clone())?);
            drift = Some(h.clone());
            v.push(h);
        }
        if cfg.audit {
            let log = audit.ok_or_else(|| {
                NodeError::FailedPrecondition(format!(
                    "model '{model}' asks for audit but this node has no --audit-log"
                ))
            })?;
            v.push(Arc::new(AuditHook::new(log.clone())));
        }
        // Audit and drift look at every call's outcome (`finished`).
        let observes = cfg.audit || drift.is_some();
        Ok(Self {
            observes,
            hooks: v.into(),
            drift,
        })
    }

    /// True when a hook looks at every call (audit, drift): the call's inputs are kept
    /// for it. Explanations alone cost nothing on calls that do not ask for one.
    pub fn observes(&self) -> bool {
        self.observes
    }

    /// True when some hook runs `before`/`after` for this call (then the call's inputs are
    /// kept for it).
    pub fn wanted(&self, ctx: &CallCtx<'_>) -> bool {
        self.hooks.iter().any(|h| h.wants(ctx))
    }

    pub async fn before(&self, ctx: &CallCtx<'_>) -> Result<(), NodeError> {
        for h in self.hooks.iter().filter(|h| h.wants(ctx)) {
            h.before(ctx)
                .instrument(troupe_telemetry::child_span(|| {
                    info_span!("hook", hook = h.name())
                }))
                .await?;
        }
        Ok(())
    }

    pub async fn after(
        &self,
        ctx: &CallCtx<'_>,
        outputs: &[Tensor],
    ) -> Result<Vec<(String, Tensor)>, NodeError> {
        let mut extra = Vec::new();
        for h in self.hooks.iter().filter(|h| h.wants(ctx)) {
            extra.extend(h.after(ctx, outputs).await?);
        }
        Ok(extra)
    }

    pub fn finished(&self, ctx: &CallCtx<'_>, outcome: Outcome<'_>) {
        for h in self.hooks.iter() {
            h.finished(ctx, outcome);
        }
    }
}

/// Explanations on request (see [`explain`]).
pub struct ExplainHook {
    enabled: bool,
}

#[tonic::async_trait]
impl CallHook for ExplainHook {
    fn name(&self) -> &'static str {
        "explain"
    }

    /// Only calls that ask for an explanation.
    fn wants(&self, ctx: &CallCtx<'_>) -> bool {
        ctx.params().contains_key(explain::EXPLAIN)
    }

    async fn before(&self, ctx: &CallCtx<'_>) -> Result<(), NodeError> {
        if !self.enabled {
            return Err(NodeError::FailedPrecondition(format!(
                "model '{}' has explanations turned off ([hooks] explain = false)",
                ctx.model.def.name
            )));
        }
        if let Some(p) = ExplainParams::from_params(ctx.params(), ctx.model)? {
            p.check(ctx.model)?;
        }
        Ok(())
    }

    async fn after(
        &self,
        ctx: &CallCtx<'_>,
        outputs: &[Tensor],
    ) -> Result<Vec<(String, Tensor)>, NodeError> {
        let Some(p) = ExplainParams::from_params(ctx.params(), ctx.model)? else {
            return Ok(Vec::new());
        };
        let span = troupe_telemetry::child_span(|| {
            info_span!(
                "explanation",
                method = p.method.as_str(),
                backend = %ctx.model.def.backend,
                rows = ctx.rows as i64
            )
        });
        let started = Instant::now();
        let r = explain::explain(ctx.model, &p, ctx.inputs, outputs, ctx.rows, ctx.deadline)
            .instrument(span)
            .await;
        ctx.model
            .metrics
            .explain
            .observe_duration(started.elapsed());
        tracing::debug!(model = %ctx.model.def.name, method = p.method.as_str(), ok = r.is_ok(), "explained");
        r
    }
}
