//! Call hooks: code that runs around every call of a model, configured per model in its
//! `[hooks]` config (or `ModelSpec.hooks`). Three are built in:
//!
//! * [`ExplainHook`]: feature attributions when the call asks with `explain`;
//! * [`AuditHook`]: one JSON line per call (the provenance trail);
//! * [`DriftHook`]: running input statistics against a reference;
//! * [`MonitorHook`]: each answer recorded in the prediction store (`[monitoring]`).
//!
//! A model with no hook configured pays one empty-slice check per call.

pub mod audit;
pub mod call;
pub mod drift;
pub mod explain;
pub mod monitor;

use std::sync::Arc;

use tracing::{Instrument, info_span};
use troupe_backends::Tensor;

pub use crate::config::{DriftCfg, HooksCfg};
pub use audit::{AuditHook, AuditLog};
pub use call::{CallCtx, CallHook, HookedModel, Outcome};
pub use drift::DriftHook;
pub use explain::{ExplainHook, ExplainMemory, ExplainParams, Method};
pub use monitor::{MonitorHook, Monitoring};

use crate::error::NodeError;

/// The hooks of one loaded model, in the order they run.
#[derive(Clone, Default)]
pub struct HookSet {
    hooks: Arc<[Arc<dyn CallHook>]>,
    /// The drift watch, for its metrics.
    pub drift: Option<Arc<DriftHook>>,
    /// The recording of answers, for its quality metrics.
    pub monitor: Option<Arc<MonitorHook>>,
    observes: bool,
}

impl HookSet {
    /// Builds a model's hooks from its config.
    pub fn build(
        cfg: &HooksCfg,
        model: &str,
        version: &str,
        audit: Option<&Arc<AuditLog>>,
        explain_memory: &Arc<ExplainMemory>,
        monitor: Option<Arc<MonitorHook>>,
    ) -> Result<Self, NodeError> {
        let mut v: Vec<Arc<dyn CallHook>> = Vec::new();
        v.push(Arc::new(ExplainHook::new(
            cfg.explain,
            explain_memory.clone(),
        )));
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
        if let Some(m) = &monitor {
            v.push(m.clone());
        }
        // Audit, drift and monitoring look at every call's outcome (`finished`).
        let observes = cfg.audit || drift.is_some() || monitor.is_some();
        Ok(Self {
            observes,
            hooks: v.into(),
            drift,
            monitor,
        })
    }

    /// True when a hook looks at every call (audit, drift): the call's inputs are kept
    /// for it. Explanations alone cost nothing on calls that do not ask for one.
    pub fn observes(&self) -> bool {
        self.observes
    }

    /// True when the model's answers are recorded: a call without an id gets one.
    pub fn records(&self) -> bool {
        self.monitor.is_some()
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

    pub fn annotate(
        &self,
        ctx: &CallCtx<'_>,
        resp: &mut troupe_proto::inference::ModelInferResponse,
    ) {
        for h in self.hooks.iter() {
            h.annotate(ctx, resp);
        }
    }

    pub fn finished(&self, ctx: &CallCtx<'_>, outcome: Outcome<'_>) {
        for h in self.hooks.iter() {
            h.finished(ctx, outcome);
        }
    }
}
