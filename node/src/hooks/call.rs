//! What a hook sees: the call ([`CallCtx`]), the model it runs around ([`HookedModel`]),
//! and the hook trait itself. The runtime's model implements [`HookedModel`], so the
//! hooks depend on this face of it, not on the runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use troupe_backends::Tensor;
use troupe_proto::inference::{InferParameter, ModelInferRequest};

use crate::config::ModelDef;
use crate::error::NodeError;
use crate::metrics::ModelMetrics;
use crate::pipeline::TextPipeline;

/// The model a hook runs around: its definition, and its own queue to run more calls
/// through (explanations).
#[tonic::async_trait]
pub trait HookedModel: Send + Sync {
    fn def(&self) -> &ModelDef;
    /// What the loaded weights are: their sha256 (`digest`), provenance and signature.
    fn lineage(&self) -> &troupe_monitor::lineage::Lineage;
    /// The text pipeline of a `[text]` model.
    fn pipeline(&self) -> Option<&TextPipeline>;
    fn metrics(&self) -> &ModelMetrics;
    /// Runs one call of already tokenized, validated inputs through the model's queue.
    async fn infer(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>, NodeError>;
    /// The gradients of output `output`'s `targets` (one per row) by every input.
    async fn gradients(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        output: usize,
        targets: Vec<usize>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>, NodeError>;
}

/// One call as the hooks see it.
pub struct CallCtx<'a> {
    pub model: &'a Arc<dyn HookedModel>,
    pub request: &'a ModelInferRequest,
    /// The validated inputs (empty when the request was refused before validation).
    pub inputs: &'a [Tensor],
    pub rows: usize,
    pub trace_id: &'a str,
    /// Who called (the token's name, or what a relaying router named; "anonymous").
    pub caller: &'a str,
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

    /// On an answer about to be sent: may add response parameters (an outlier score).
    fn annotate(
        &self,
        _ctx: &CallCtx<'_>,
        _resp: &mut troupe_proto::inference::ModelInferResponse,
    ) {
    }

    /// Once the call's outcome is final, failed calls included.
    fn finished(&self, _ctx: &CallCtx<'_>, _outcome: Outcome<'_>) {}
}
