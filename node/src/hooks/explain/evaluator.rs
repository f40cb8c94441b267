//! Runs an explanation's perturbed or interpolated inputs through the model's own queue,
//! as batched calls, at most `MAX_CALLS_IN_FLIGHT` queued at once, within the evaluation
//! budget and the memory budget (`memory.rs`): each chunk of perturbed inputs is made only
//! once its bytes are reserved, and released when its call answers.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use troupe_backends::Tensor;

use super::memory::ExplainMemory;
use super::{CHUNK_ROWS, MAX_CALLS_IN_FLIGHT, MAX_EVALUATIONS};
use crate::error::NodeError;
use crate::hooks::call::HookedModel;

/// One input as f32 rows.
pub(super) struct Input {
    /// `[rows * features]`, or None for an input that is not attributed (not FP32).
    pub(super) values: Option<Vec<f32>>,
    pub(super) features: usize,
}

/// Runs perturbed copies of the call's inputs through the model.
pub(super) struct Evaluator<'a> {
    pub(super) model: Arc<dyn HookedModel>,
    pub(super) inputs: &'a [Tensor],
    pub(super) rows: usize,
    pub(super) batched: bool,
    pub(super) output: usize,
    pub(super) targets: &'a [usize],
    pub(super) deadline: Option<Instant>,
    pub(super) memory: &'a ExplainMemory,
}

/// One perturbed copy of the call's inputs: a value vector per attributed input.
pub(super) type Unit = Vec<Option<Vec<f32>>>;

/// What one finished call of `values` gives back: its chunk index, units, bytes and outputs.
type Finished = (usize, usize, usize, Result<Vec<Tensor>, NodeError>);

impl Evaluator<'_> {
    /// A unit (one value vector per input, all rows) as tensors shaped like the call's.
    pub(super) fn tensors(&self, unit: &[Option<Vec<f32>>]) -> Result<Vec<Tensor>, NodeError> {
        self.inputs
            .iter()
            .zip(unit)
            .map(|(t, v)| match v {
                Some(v) => Tensor::from_f32(t.shape.clone(), v)
                    .map_err(|e| NodeError::Internal(e.to_string())),
                None => Ok(t.clone()),
            })
            .collect()
    }

    /// Stacks several units along dim 0 (batched models only).
    pub(super) fn stack(&self, units: &[Unit]) -> Result<Vec<Tensor>, NodeError> {
        let n = units.len();
        self.inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut shape = t.shape.clone();
                if let Some(d0) = shape.first_mut() {
                    *d0 *= n;
                }
                match &units[0][i] {
                    Some(_) => {
                        let mut all = Vec::with_capacity(t.numel() * n);
                        for u in units {
                            all.extend_from_slice(u[i].as_deref().unwrap_or_default());
                        }
                        Tensor::from_f32(shape, &all)
                    }
                    None => {
                        let mut all = Vec::with_capacity(t.data.len() * n);
                        for _ in 0..n {
                            all.extend_from_slice(&t.data);
                        }
                        Tensor::new(t.dtype, shape, bytes::Bytes::from(all))
                    }
                }
                .map_err(|e| NodeError::Internal(e.to_string()))
            })
            .collect()
    }

    /// Bytes one unit takes while its call is in flight: its values and the tensor they
    /// are stacked into (inputs that are not attributed are copied as they are).
    pub(super) fn unit_bytes(&self) -> usize {
        let one: usize = self
            .inputs
            .iter()
            .map(|t| {
                if t.dtype == troupe_backends::DataType::F32 {
                    t.numel() * 4
                } else {
                    t.data.len()
                }
            })
            .sum();
        2 * one
    }

    /// Units per model call: up to `CHUNK_ROWS` rows, and at most a quarter of the
    /// per-call memory cap, so that several calls can be in flight. Refused when one
    /// unit alone is over the cap.
    pub(super) fn units_per_call(&self) -> Result<usize, NodeError> {
        let unit = self.unit_bytes();
        self.memory.check_unit(unit)?;
        if !self.batched {
            return Ok(1);
        }
        let by_rows = (CHUNK_ROWS / self.rows).max(1);
        let by_bytes = (self.memory.call_bytes() / 4 / unit.max(1)).max(1);
        Ok(by_rows.min(by_bytes))
    }

    /// f of `count` units, made by `make` (called once per unit, in order) a chunk at a
    /// time: one value per row, in unit order.
    pub(super) async fn values(
        &self,
        count: usize,
        mut make: impl FnMut(usize) -> Unit,
    ) -> Result<Vec<Vec<f32>>, NodeError> {
        let per_call = self.units_per_call()?;
        let unit = self.unit_bytes();
        let mut set = tokio::task::JoinSet::new();
        let mut parts: Vec<(usize, Vec<Vec<f32>>)> = Vec::new();
        let mut held = 0usize;
        let span = tracing::Span::current();
        for (ci, start) in (0..count).step_by(per_call).enumerate() {
            let n = per_call.min(count - start);
            let bytes = n * unit;
            // Room first: within this call's cap and the node's budget, waiting for this
            // explanation's own calls to answer when there is none. At most
            // MAX_CALLS_IN_FLIGHT calls queued at once, so an explanation does not fill
            // the model's queue and starve (or refuse) other callers.
            let permit = loop {
                if set.len() < MAX_CALLS_IN_FLIGHT
                    && held + bytes <= self.memory.call_bytes()
                    && let Some(p) = self.memory.try_reserve(bytes)
                {
                    break p;
                }
                if set.is_empty() {
                    return Err(self.memory.exhausted(bytes));
                }
                held -= self.collect(&mut set, &mut parts).await?;
            };
            held += bytes;
            let chunk: Vec<Unit> = (start..start + n).map(&mut make).collect();
            let inputs = if self.batched {
                self.stack(&chunk)?
            } else {
                self.tensors(&chunk[0])?
            };
            drop(chunk);
            let rows = if self.batched { self.rows * n } else { 1 };
            let model = self.model.clone();
            let deadline = self.deadline;
            set.spawn(
                async move {
                    let out = model.infer(inputs, rows, deadline).await;
                    drop(permit);
                    (ci, n, bytes, out)
                }
                .instrument(span.clone()),
            );
        }
        while !set.is_empty() {
            self.collect(&mut set, &mut parts).await?;
        }
        parts.sort_by_key(|p| p.0);
        Ok(parts.into_iter().flat_map(|p| p.1).collect())
    }

    /// Takes one finished call of `values`, keeps f of each of its units, and gives back
    /// the bytes it held.
    async fn collect(
        &self,
        set: &mut tokio::task::JoinSet<Finished>,
        parts: &mut Vec<(usize, Vec<Vec<f32>>)>,
    ) -> Result<usize, NodeError> {
        let Some(r) = set.join_next().await else {
            return Ok(0);
        };
        let (ci, n, bytes, out) = r.map_err(|e| NodeError::Internal(e.to_string()))?;
        let out = out?;
        let y = out
            .get(self.output)
            .ok_or_else(|| NodeError::Internal("missing output".into()))?
            .to_f64_lossy();
        let per_row = y.len() / (n * self.rows).max(1);
        let vals = (0..n)
            .map(|u| {
                (0..self.rows)
                    .map(|r| {
                        y.get((u * self.rows + r) * per_row + self.targets[r])
                            .copied()
                            .unwrap_or(f64::NAN) as f32
                    })
                    .collect()
            })
            .collect();
        parts.push((ci, vals));
        Ok(bytes)
    }

    /// ∂f/∂x for a set of inputs with `self.rows * copies` rows (copies stacked).
    pub(super) async fn gradients_of(
        &self,
        inputs: Vec<Tensor>,
        copies: usize,
    ) -> Result<Vec<Vec<f32>>, NodeError> {
        let targets: Vec<usize> = (0..copies)
            .flat_map(|_| self.targets.iter().copied())
            .collect();
        let rows = if self.batched { self.rows * copies } else { 1 };
        let g = self
            .model
            .gradients(inputs, rows, self.output, targets, self.deadline)
            .await?;
        g.iter()
            .map(|t| t.to_f32().map_err(|e| NodeError::Internal(e.to_string())))
            .collect()
    }

    /// Reserves `bytes` for one call that runs alone (gradient calls), or refuses.
    pub(super) fn reserve(
        &self,
        bytes: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, NodeError> {
        self.memory
            .try_reserve(bytes)
            .ok_or_else(|| self.memory.exhausted(bytes))
    }

    pub(super) async fn gradients(&self, inputs: Vec<Tensor>) -> Result<Vec<Vec<f32>>, NodeError> {
        self.gradients_of(inputs, 1).await
    }
}

pub(crate) fn budget(evals: usize, what: &str, hint: &str) -> Result<(), NodeError> {
    if evals > MAX_EVALUATIONS {
        return Err(NodeError::InvalidArgument(format!(
            "{what} would take {evals} model evaluations (at most {MAX_EVALUATIONS}): {hint}"
        )));
    }
    Ok(())
}
