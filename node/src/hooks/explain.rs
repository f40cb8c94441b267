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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use troupe_backends::{BackendKind, DataType, Tensor};
use troupe_proto::inference::InferParameter;
use troupe_proto::inference::infer_parameter::ParameterChoice;

use crate::error::NodeError;
use crate::model::LoadedModel;

/// Most model evaluations one explanation may take.
pub const MAX_EVALUATIONS: usize = 16_384;
/// Most rows in one batched call made by an explanation.
pub(crate) const CHUNK_ROWS: usize = 256;
/// Most calls an explanation has queued at once.
const MAX_CALLS_IN_FLIGHT: usize = 32;

/// An attribution method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Saliency,
    IntegratedGradients,
    Occlusion,
    Shapley,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self, NodeError> {
        Ok(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "saliency" | "gradient" => Method::Saliency,
            "integrated_gradients" | "ig" => Method::IntegratedGradients,
            "occlusion" => Method::Occlusion,
            "shapley" | "shapley_sampling" => Method::Shapley,
            _ => {
                return Err(NodeError::InvalidArgument(format!(
                    "unknown explanation method '{}' (expected saliency, integrated_gradients, occlusion or shapley)",
                    s.escape_default()
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::IntegratedGradients => "integrated_gradients",
            Method::Occlusion => "occlusion",
            Method::Shapley => "shapley",
        }
    }

    fn needs_gradients(self) -> bool {
        matches!(self, Method::Saliency | Method::IntegratedGradients)
    }
}

/// What one call asked to be explained.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainParams {
    pub method: Method,
    /// Index of the declared output explained.
    pub output: usize,
    pub target: Option<usize>,
    pub baseline: f32,
    pub steps: usize,
    pub window: usize,
    pub samples: usize,
    pub seed: u64,
}

/// Parameter names of a `ModelInfer` request.
pub const EXPLAIN: &str = "explain";

fn param_str(p: &InferParameter) -> Option<String> {
    match &p.parameter_choice {
        Some(ParameterChoice::StringParam(s)) => Some(s.clone()),
        _ => None,
    }
}

fn param_num(p: &InferParameter) -> Option<f64> {
    match &p.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) => Some(*v as f64),
        Some(ParameterChoice::Uint64Param(v)) => Some(*v as f64),
        Some(ParameterChoice::DoubleParam(v)) => Some(*v),
        Some(ParameterChoice::StringParam(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ExplainParams {
    /// Reads `explain` and its options from request parameters; None when `explain` is
    /// absent.
    pub fn from_params(
        params: &HashMap<String, InferParameter>,
        model: &LoadedModel,
    ) -> Result<Option<Self>, NodeError> {
        let Some(method) = params.get(EXPLAIN) else {
            return Ok(None);
        };
        let method = param_str(method).ok_or_else(|| {
            NodeError::InvalidArgument(
                "parameter 'explain' must be a string naming the method".into(),
            )
        })?;
        let method = Method::parse(&method)?;
        if model.pipeline.is_some() && method != Method::Occlusion {
            return Err(NodeError::FailedPrecondition(format!(
                "model '{}' is a text model: it is explained by occlusion over its tokens \
                 (explain = \"occlusion\"); {} over token embeddings is not served",
                model.def.name,
                method.as_str()
            )));
        }
        let num = |name: &str| -> Result<Option<f64>, NodeError> {
            match params.get(name) {
                None => Ok(None),
                Some(p) => param_num(p).map(Some).ok_or_else(|| {
                    NodeError::InvalidArgument(format!("parameter '{name}' must be a number"))
                }),
            }
        };
        let count = |name: &str, default: usize, max: usize| -> Result<usize, NodeError> {
            match num(name)? {
                None => Ok(default),
                Some(v) if v >= 1.0 && v <= max as f64 && v.fract() == 0.0 => Ok(v as usize),
                Some(v) => Err(NodeError::InvalidArgument(format!(
                    "parameter '{name}' = {v}: use a whole number from 1 to {max}"
                ))),
            }
        };
        let sig = &model.def.signature;
        let output = match params.get("explain_output").and_then(param_str) {
            None => 0,
            Some(n) if n.is_empty() => 0,
            Some(n) => sig
                .outputs
                .iter()
                .position(|o| o.name == n)
                .ok_or_else(|| {
                    NodeError::InvalidArgument(format!(
                        "explain_output '{}': model '{}' has no such output",
                        n.escape_default(),
                        model.def.name
                    ))
                })?,
        };
        let target = match num("explain_target")? {
            None => None,
            Some(v) if v < 0.0 => None,
            Some(v) if v.fract() == 0.0 => Some(v as usize),
            Some(v) => {
                return Err(NodeError::InvalidArgument(format!(
                    "explain_target = {v}: use the index of an output element"
                )));
            }
        };
        let baseline = num("explain_baseline")?.unwrap_or(0.0) as f32;
        if !baseline.is_finite() {
            return Err(NodeError::InvalidArgument(
                "explain_baseline must be finite".into(),
            ));
        }
        Ok(Some(Self {
            method,
            output,
            target,
            baseline,
            steps: count("explain_steps", 32, 1024)?,
            window: count("explain_window", 1, 1 << 24)?,
            samples: count("explain_samples", 16, 1024)?,
            seed: num("explain_seed")?.unwrap_or(0.0) as u64,
        }))
    }

    /// Refuses what this model cannot do before it runs.
    pub fn check(&self, model: &LoadedModel) -> Result<(), NodeError> {
        if self.method.needs_gradients() && model.def.backend == BackendKind::Onnx {
            return Err(NodeError::FailedPrecondition(format!(
                "model '{}' runs on onnx, which has no gradients: {} needs torch or candle; use occlusion or shapley",
                model.def.name,
                self.method.as_str()
            )));
        }
        Ok(())
    }
}

/// One input as f32 rows.
struct Input {
    /// `[rows * features]`, or None for an input that is not attributed (not FP32).
    values: Option<Vec<f32>>,
    features: usize,
}

/// Runs the explanation; returns the extra named outputs.
pub async fn explain(
    model: &Arc<LoadedModel>,
    p: &ExplainParams,
    inputs: &[Tensor],
    outputs: &[Tensor],
    rows: usize,
    deadline: Option<Instant>,
) -> Result<Vec<(String, Tensor)>, NodeError> {
    p.check(model)?;
    let batched = model.def.signature.max_batch_size > 0;
    let rows = if batched { rows.max(1) } else { 1 };
    let (targets, value) = targets(model, p, outputs, rows)?;
    if model.pipeline.is_some() {
        let attributions = super::explain_text::occlusion(
            model, inputs, rows, p.output, &targets, &value, deadline,
        )
        .await?;
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
            model.def.name
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
        .def
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
    model: &LoadedModel,
    p: &ExplainParams,
    outputs: &[Tensor],
    rows: usize,
) -> Result<(Vec<usize>, Vec<f32>), NodeError> {
    let out = outputs
        .get(p.output)
        .ok_or_else(|| NodeError::Internal(format!("the model returned no output {}", p.output)))?;
    let out_values = out.to_f64_lossy();
    let per_row = out_values.len() / rows;
    let name = &model.def.signature.outputs[p.output].name;
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

/// Runs perturbed copies of the call's inputs through the model.
struct Evaluator<'a> {
    model: Arc<LoadedModel>,
    inputs: &'a [Tensor],
    rows: usize,
    batched: bool,
    output: usize,
    targets: &'a [usize],
    deadline: Option<Instant>,
}

impl Evaluator<'_> {
    /// A unit (one value vector per input, all rows) as tensors shaped like the call's.
    fn tensors(&self, unit: &[Option<Vec<f32>>]) -> Result<Vec<Tensor>, NodeError> {
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
    fn stack(&self, units: &[Vec<Option<Vec<f32>>>]) -> Result<Vec<Tensor>, NodeError> {
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

    /// f of each unit: one value per row, in unit order.
    async fn values(&self, units: Vec<Vec<Option<Vec<f32>>>>) -> Result<Vec<Vec<f32>>, NodeError> {
        let per_call = if self.batched {
            (CHUNK_ROWS / self.rows).max(1)
        } else {
            1
        };
        let mut set = tokio::task::JoinSet::new();
        let mut parts: Vec<(usize, Vec<Vec<f32>>)> = Vec::new();
        let span = tracing::Span::current();
        for (ci, chunk) in units.chunks(per_call).enumerate() {
            // At most MAX_CALLS_IN_FLIGHT calls queued at once: an explanation must not
            // fill the model's queue and starve (or refuse) other callers.
            while set.len() >= MAX_CALLS_IN_FLIGHT {
                self.collect(&mut set, &mut parts).await?;
            }
            let inputs = if self.batched {
                self.stack(chunk)?
            } else {
                self.tensors(&chunk[0])?
            };
            let n = chunk.len();
            let rows = if self.batched { self.rows * n } else { 1 };
            let model = self.model.clone();
            let deadline = self.deadline;
            set.spawn(
                async move { (ci, n, model.infer(inputs, rows, deadline, false).await) }
                    .instrument(span.clone()),
            );
        }
        while !set.is_empty() {
            self.collect(&mut set, &mut parts).await?;
        }
        parts.sort_by_key(|p| p.0);
        Ok(parts.into_iter().flat_map(|p| p.1).collect())
    }

    /// Takes one finished call of `values` and keeps f of each of its units.
    #[allow(clippy::type_complexity)]
    async fn collect(
        &self,
        set: &mut tokio::task::JoinSet<(usize, usize, Result<Vec<Tensor>, NodeError>)>,
        parts: &mut Vec<(usize, Vec<Vec<f32>>)>,
    ) -> Result<(), NodeError> {
        let Some(r) = set.join_next().await else {
            return Ok(());
        };
        let (ci, n, out) = r.map_err(|e| NodeError::Internal(e.to_string()))?;
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
        Ok(())
    }

    /// ∂f/∂x for a set of inputs with `self.rows * copies` rows (copies stacked).
    async fn gradients_of(
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

    async fn gradients(&self, inputs: Vec<Tensor>) -> Result<Vec<Vec<f32>>, NodeError> {
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

async fn integrated_gradients(
    ev: &Evaluator<'_>,
    xs: &[Input],
    p: &ExplainParams,
) -> Result<Vec<Vec<f32>>, NodeError> {
    let steps = p.steps;
    let b = p.baseline;
    let mut sum: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| vec![0.0; x.values.as_ref().map_or(0, Vec::len)])
        .collect();
    let point = |alpha: f32| -> Vec<Option<Vec<f32>>> {
        xs.iter()
            .map(|x| {
                x.values
                    .as_ref()
                    .map(|v| v.iter().map(|&xi| b + alpha * (xi - b)).collect())
            })
            .collect()
    };
    let per_call = if ev.batched {
        (CHUNK_ROWS / ev.rows).max(1)
    } else {
        1
    };
    let alphas: Vec<f32> = (0..steps)
        .map(|k| (k as f32 + 0.5) / steps as f32)
        .collect();
    for chunk in alphas.chunks(per_call) {
        let units: Vec<_> = chunk.iter().map(|&a| point(a)).collect();
        let inputs = if ev.batched {
            ev.stack(&units)?
        } else {
            ev.tensors(&units[0])?
        };
        let g = ev.gradients_of(inputs, chunk.len()).await?;
        for (i, gi) in g.iter().enumerate() {
            let n = sum[i].len();
            if n == 0 {
                continue;
            }
            for (j, v) in gi.iter().enumerate() {
                sum[i][j % n] += v;
            }
        }
    }
    Ok(xs
        .iter()
        .zip(sum)
        .map(|(x, s)| match &x.values {
            Some(v) => v
                .iter()
                .zip(s)
                .map(|(&xi, si)| (xi - b) * si / steps as f32)
                .collect(),
            None => Vec::new(),
        })
        .collect())
}

/// Feature groups of `window` consecutive features, per attributed input: (input, start, end).
fn groups(xs: &[Input], window: usize) -> Vec<(usize, usize, usize)> {
    let mut g = Vec::new();
    for (i, x) in xs.iter().enumerate() {
        if x.values.is_none() {
            continue;
        }
        let mut s = 0;
        while s < x.features {
            g.push((i, s, (s + window).min(x.features)));
            s += window;
        }
    }
    g
}

/// Sets group `g` to `value` in every row of `unit`.
fn set_group(
    unit: &mut [Option<Vec<f32>>],
    xs: &[Input],
    g: (usize, usize, usize),
    src: Option<&[Option<Vec<f32>>]>,
    b: f32,
    rows: usize,
) {
    let (i, s, e) = g;
    let f = xs[i].features;
    if let Some(v) = unit[i].as_mut() {
        for r in 0..rows {
            for j in s..e {
                v[r * f + j] = match src {
                    Some(src) => src[i].as_ref().map_or(b, |x| x[r * f + j]),
                    None => b,
                };
            }
        }
    }
}

async fn occlusion(
    ev: &Evaluator<'_>,
    xs: &[Input],
    p: &ExplainParams,
    value: &[f32],
) -> Result<Vec<Vec<f32>>, NodeError> {
    let gs = groups(xs, p.window);
    budget(
        gs.len(),
        "occlusion",
        "raise explain_window to occlude larger groups",
    )?;
    let x: Vec<Option<Vec<f32>>> = xs.iter().map(|x| x.values.clone()).collect();
    let units: Vec<_> = gs
        .iter()
        .map(|&g| {
            let mut u = x.clone();
            set_group(&mut u, xs, g, None, p.baseline, ev.rows);
            u
        })
        .collect();
    let f = ev.values(units).await?;
    let mut out: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| vec![0.0; x.values.as_ref().map_or(0, Vec::len)])
        .collect();
    for (&(i, s, e), fv) in gs.iter().zip(&f) {
        let feat = xs[i].features;
        for r in 0..ev.rows {
            for j in s..e {
                out[i][r * feat + j] = value[r] - fv[r];
            }
        }
    }
    Ok(out)
}

/// splitmix64: a small seeded generator for the permutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

async fn shapley(
    ev: &Evaluator<'_>,
    xs: &[Input],
    p: &ExplainParams,
) -> Result<Vec<Vec<f32>>, NodeError> {
    let gs = groups(xs, p.window);
    budget(
        p.samples * (gs.len() + 1),
        "shapley",
        "lower explain_samples or raise explain_window",
    )?;
    let x: Vec<Option<Vec<f32>>> = xs.iter().map(|x| x.values.clone()).collect();
    let base: Vec<Option<Vec<f32>>> = xs
        .iter()
        .map(|x| x.values.as_ref().map(|v| vec![p.baseline; v.len()]))
        .collect();
    let mut rng = Rng(p.seed ^ 0x5EED);
    let mut orders = Vec::with_capacity(p.samples);
    let mut units = Vec::with_capacity(p.samples * (gs.len() + 1));
    for _ in 0..p.samples {
        let mut order: Vec<usize> = (0..gs.len()).collect();
        rng.shuffle(&mut order);
        let mut u = base.clone();
        units.push(u.clone());
        for &g in &order {
            set_group(&mut u, xs, gs[g], Some(&x), p.baseline, ev.rows);
            units.push(u.clone());
        }
        orders.push(order);
    }
    let f = ev.values(units).await?;
    let mut per_group = vec![vec![0.0f32; ev.rows]; gs.len()];
    for (k, order) in orders.iter().enumerate() {
        let chain = &f[k * (gs.len() + 1)..(k + 1) * (gs.len() + 1)];
        for (step, &g) in order.iter().enumerate() {
            for r in 0..ev.rows {
                per_group[g][r] += chain[step + 1][r] - chain[step][r];
            }
        }
    }
    let mut out: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| vec![0.0; x.values.as_ref().map_or(0, Vec::len)])
        .collect();
    for (gi, &(i, s, e)) in gs.iter().enumerate() {
        let feat = xs[i].features;
        for r in 0..ev.rows {
            for j in s..e {
                out[i][r * feat + j] = per_group[gi][r] / p.samples as f32;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_with_aliases_and_reject_unknown_names() {
        assert_eq!(Method::parse("IG").unwrap(), Method::IntegratedGradients);
        assert_eq!(
            Method::parse("integrated-gradients").unwrap(),
            Method::IntegratedGradients
        );
        assert_eq!(Method::parse("occlusion").unwrap(), Method::Occlusion);
        let e = Method::parse("lime").unwrap_err().to_string();
        assert!(e.contains("lime") && e.contains("shapley"), "{e}");
    }

    #[test]
    fn groups_cover_every_feature_once() {
        let xs = [
            Input {
                values: Some(vec![0.0; 10]),
                features: 5,
            },
            Input {
                values: None,
                features: 3,
            },
        ];
        let g = groups(&xs, 2);
        assert_eq!(g, vec![(0, 0, 2), (0, 2, 4), (0, 4, 5)]);
    }

    #[test]
    fn shuffles_are_permutations_and_depend_on_the_seed() {
        let mut a: Vec<usize> = (0..20).collect();
        Rng(1).shuffle(&mut a);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        let mut b: Vec<usize> = (0..20).collect();
        Rng(2).shuffle(&mut b);
        assert_ne!(a, b);
    }
}
