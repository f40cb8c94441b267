//! Explanations: feature attributions for one call, as extra outputs.
//!
//! Asked for with the request parameter `explain` (the method name) or the `Explain`
//! RPC. Methods:
//!
//! * `saliency`: |∂f/∂x| (torch and candle, through autograd);
//! * `integrated_gradients`: (x − b) · mean over the path b → x of ∂f/∂x, midpoint rule
//!   with `explain_steps` steps (torch and candle);
//! * `occlusion`: f(x) − f(x with a group of `explain_window` features set to b), given to
//!   every feature of the group (every backend);
//! * `shapley`: a sampling Shapley estimate over `explain_samples` random orders of the
//!   feature groups (every backend).
//!
//! f is one element of each row of one output: `explain_target`, or the row's largest
//! value (the predicted class). Every perturbed or interpolated input is run through the
//! model's own queue as batched calls. The answer gains `attribution.<input>` (FP32,
//! shaped like the input), `attribution.target` (INT64 `[rows]`) and `attribution.value`
//! (FP32 `[rows]`, f(x)).

mod evaluator;
mod hook;
pub mod memory;
mod methods;
mod params;
pub mod text;

pub use hook::ExplainHook;
pub use memory::ExplainMemory;
pub use params::{ExplainParams, Method};

use std::sync::Arc;
use std::time::Instant;

use troupe_backends::{DataType, Tensor};

use crate::error::NodeError;
use crate::hooks::call::HookedModel;
use evaluator::{Evaluator, Input};
use methods::{integrated_gradients, occlusion, shapley};

/// Most model evaluations one explanation may take.
pub const MAX_EVALUATIONS: usize = 16_384;
/// Most rows in one batched call made by an explanation.
pub(crate) const CHUNK_ROWS: usize = 256;
/// Most calls an explanation has queued at once.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = 32;

/// Runs the explanation; returns the extra named outputs.
pub async fn explain(
    model: &Arc<dyn HookedModel>,
    p: &ExplainParams,
    inputs: &[Tensor],
    outputs: &[Tensor],
    rows: usize,
    deadline: Option<Instant>,
    memory: &ExplainMemory,
) -> Result<Vec<(String, Tensor)>, NodeError> {
    p.check(model.as_ref())?;
    let batched = model.def().signature.max_batch_size > 0;
    let rows = if batched { rows.max(1) } else { 1 };
    let (targets, value) = targets(model.as_ref(), p, outputs, rows)?;
    if model.pipeline().is_some() {
        let attributions =
            text::occlusion(model, inputs, rows, p.output, &targets, &value, deadline).await?;
        return with_target(attributions, &targets, &value, batched, rows);
    }
    let xs: Vec<Input> = inputs
        .iter()
        .map(|t| Input {
            values: (t.dtype == DataType::F32).then(|| t.to_f32().unwrap_or_default()),
            features: t.numel() / rows,
        })
        .collect();
    if xs.iter().all(|x| x.values.is_none()) {
        return Err(NodeError::FailedPrecondition(format!(
            "model '{}' has no FP32 input to attribute",
            model.def().name
        )));
    }
    let ev = Evaluator {
        model: model.clone(),
        inputs,
        rows,
        batched,
        output: p.output,
        targets: &targets,
        deadline,
        memory,
    };
    let attributions = match p.method {
        Method::Saliency => {
            let g = ev.gradients(inputs.to_vec()).await?;
            g.into_iter()
                .map(|v| v.into_iter().map(f32::abs).collect())
                .collect()
        }
        Method::IntegratedGradients => integrated_gradients(&ev, &xs, p).await?,
        Method::Occlusion => occlusion(&ev, &xs, p, &value).await?,
        Method::Shapley => shapley(&ev, &xs, p).await?,
    };
    let mut extra = Vec::new();
    for ((spec, t), a) in model
        .def()
        .signature
        .inputs
        .iter()
        .zip(inputs)
        .zip(attributions)
    {
        let a = if a.len() == t.numel() {
            a
        } else {
            vec![0.0; t.numel()]
        };
        extra.push((
            format!("attribution.{}", spec.name),
            Tensor::from_f32(t.shape.clone(), &a)
                .map_err(|e| NodeError::Internal(e.to_string()))?,
        ));
    }
    with_target(extra, &targets, &value, batched, rows)
}

/// The element explained in each row (`explain_target`, else the row's largest) and its
/// value f(x).
fn targets(
    model: &dyn HookedModel,
    p: &ExplainParams,
    outputs: &[Tensor],
    rows: usize,
) -> Result<(Vec<usize>, Vec<f32>), NodeError> {
    let out = outputs
        .get(p.output)
        .ok_or_else(|| NodeError::Internal(format!("the model returned no output {}", p.output)))?;
    let out_values = out.to_f64_lossy();
    let per_row = out_values.len() / rows;
    let name = &model.def().signature.outputs[p.output].name;
    if per_row == 0 {
        return Err(NodeError::FailedPrecondition(format!(
            "output '{name}' is empty: nothing to explain"
        )));
    }
    let targets: Vec<usize> = (0..rows)
        .map(|r| {
            let row = &out_values[r * per_row..(r + 1) * per_row];
            p.target.unwrap_or_else(|| {
                row.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                        if v > bv { (i, v) } else { (bi, bv) }
                    })
                    .0
            })
        })
        .collect();
    if let Some(&t) = targets.iter().find(|&&t| t >= per_row) {
        return Err(NodeError::InvalidArgument(format!(
            "explain_target {t} is out of range: output '{name}' has {per_row} values per row"
        )));
    }
    let value: Vec<f32> = (0..rows)
        .map(|r| out_values[r * per_row + targets[r]] as f32)
        .collect();
    Ok((targets, value))
}

/// The explanation's outputs: the attributions, then `attribution.target` (INT64) and
/// `attribution.value` (FP32), one per row.
fn with_target(
    mut extra: Vec<(String, Tensor)>,
    targets: &[usize],
    value: &[f32],
    batched: bool,
    rows: usize,
) -> Result<Vec<(String, Tensor)>, NodeError> {
    let tshape = if batched { vec![rows] } else { vec![1] };
    extra.push((
        "attribution.target".into(),
        Tensor::new(
            DataType::I64,
            tshape.clone(),
            troupe_backends::tensor::bytes_from_vec(
                targets.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            ),
        )
        .map_err(|e| NodeError::Internal(e.to_string()))?,
    ));
    extra.push((
        "attribution.value".into(),
        Tensor::from_f32(tshape, value).map_err(|e| NodeError::Internal(e.to_string()))?,
    ));
    Ok(extra)
}
