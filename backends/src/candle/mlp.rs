//! Troupe's own candle architecture: `mlp`, fully connected layers in torch `Linear`
//! layout (`layers.{i}.weight` is `[out, in]`, `layers.{i}.bias` is `[out]`), described by
//! `model.json`:
//!
//! ```json
//! {"architecture": "mlp", "sizes": [16, 32, 4], "activations": ["relu", "none"]}
//! ```

use std::path::Path;

use candle_core::{DType, Device as CDevice, Tensor as CTensor};
use serde::Deserialize;

use super::CandleModel;
use crate::check_targets;
use crate::error::BackendError;
use crate::spec::{FullSpec, Signature};
use crate::tensor::DataType;

/// Activation after a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    /// Over each row (a classifier's last layer: class probabilities).
    Softmax,
}

/// `model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchConfig {
    pub architecture: String,
    pub sizes: Vec<usize>,
    pub activations: Vec<Activation>,
}

struct Layer {
    /// Pre-transposed weight, `[in, out]`.
    w_t: CTensor,
    b: CTensor,
    act: Activation,
}

/// An MLP built from its architecture config.
pub struct Mlp {
    layers: Vec<Layer>,
    dtype: DType,
}

fn read(arch_path: &Path) -> Result<ArchConfig, BackendError> {
    let text = std::fs::read_to_string(arch_path)
        .map_err(|e| BackendError::Load(format!("cannot read {}: {e}", arch_path.display())))?;
    let arch: ArchConfig = serde_json::from_str(&text)
        .map_err(|e| BackendError::Load(format!("{}: {e}", arch_path.display())))?;
    if arch.architecture != "mlp" {
        return Err(BackendError::Load(format!(
            "{}: unknown architecture '{}' (model.json knows mlp; Hugging Face models bring config.json)",
            arch_path.display(),
            arch.architecture
        )));
    }
    if arch.sizes.len() < 2 || arch.activations.len() != arch.sizes.len() - 1 {
        return Err(BackendError::Load(format!(
            "{}: an mlp needs at least 2 sizes and one activation per layer",
            arch_path.display()
        )));
    }
    Ok(arch)
}

/// An MLP takes `input` `[batch, sizes[0]]` and gives `output` `[batch, sizes[last]]`.
pub fn describe(arch_path: &Path) -> Result<Vec<FullSpec>, BackendError> {
    let arch = read(arch_path)?;
    let spec = |name: &str, n: usize, input| FullSpec {
        name: name.into(),
        dtype: DataType::F32,
        dims: vec![-1, n as i64],
        symbols: vec!["batch".into(), String::new()],
        input,
    };
    Ok(vec![
        spec("input", arch.sizes[0], true),
        spec("output", arch.sizes[arch.sizes.len() - 1], false),
    ])
}

pub fn load(
    arch_path: &Path,
    weights: &Path,
    sig: &Signature,
    device: &CDevice,
) -> Result<Box<dyn CandleModel>, BackendError> {
    let arch = read(arch_path)?;
    let tensors = candle_core::safetensors::load(weights, device)
        .map_err(|e| BackendError::Load(format!("{}: {e}", weights.display())))?;
    let mut layers = Vec::new();
    let mut dtype = None;
    for (i, act) in arch.activations.iter().enumerate() {
        let (fan_in, fan_out) = (arch.sizes[i], arch.sizes[i + 1]);
        let get = |name: String, shape: &[usize]| -> Result<CTensor, BackendError> {
            let t = tensors.get(&name).ok_or_else(|| {
                BackendError::Load(format!("{}: tensor '{name}' is missing", weights.display()))
            })?;
            if t.dims() != shape {
                return Err(BackendError::Load(format!(
                    "{}: tensor '{name}' has shape {:?}, the architecture needs {shape:?}",
                    weights.display(),
                    t.dims()
                )));
            }
            Ok(t.clone())
        };
        let w = get(format!("layers.{i}.weight"), &[fan_out, fan_in])?;
        let b = get(format!("layers.{i}.bias"), &[fan_out])?;
        dtype.get_or_insert(w.dtype());
        layers.push(Layer {
            w_t: w.t()?.contiguous()?,
            b,
            act: *act,
        });
    }
    let dtype = dtype.unwrap_or(DType::F32);
    if sig.inputs.len() != 1 || sig.outputs.len() != 1 {
        return Err(BackendError::Load(
            "a candle mlp has exactly one input and one output".into(),
        ));
    }
    let last = sig.inputs[0].dims.last().copied().unwrap_or(-1);
    if last >= 0 && last as usize != arch.sizes[0] {
        return Err(BackendError::Load(format!(
            "config input '{}' has {} features but the mlp takes {}",
            sig.inputs[0].name, last, arch.sizes[0]
        )));
    }
    Ok(Box::new(Mlp { layers, dtype }))
}

impl Mlp {
    /// The forward pass (differentiable: candle records the ops on `Var`s).
    fn run(&self, mut x: CTensor) -> Result<CTensor, BackendError> {
        for layer in &self.layers {
            x = x.broadcast_matmul(&layer.w_t)?.broadcast_add(&layer.b)?;
            x = match layer.act {
                Activation::None => x,
                Activation::Relu => x.relu()?,
                Activation::Gelu => x.gelu()?,
                Activation::Tanh => x.tanh()?,
                Activation::Sigmoid => {
                    candle_core::Tensor::ones_like(&x)?.broadcast_div(&(x.neg()?.exp()? + 1.0)?)?
                }
                Activation::Softmax => candle_nn::ops::softmax_last_dim(&x)?,
            };
        }
        Ok(x)
    }

    fn one_input<'a>(&self, inputs: &'a [CTensor]) -> Result<&'a CTensor, BackendError> {
        inputs
            .first()
            .ok_or_else(|| BackendError::InvalidInput("candle mlp needs one input".into()))
    }
}

impl CandleModel for Mlp {
    fn forward(&self, inputs: &[CTensor]) -> Result<Vec<CTensor>, BackendError> {
        let x = self.one_input(inputs)?.to_dtype(self.dtype)?;
        Ok(vec![self.run(x)?])
    }

    fn has_gradients(&self) -> bool {
        true
    }

    fn gradients(
        &self,
        inputs: &[CTensor],
        output: usize,
        targets: &[usize],
    ) -> Result<Vec<CTensor>, BackendError> {
        let input = self.one_input(inputs)?;
        if output != 0 {
            return Err(BackendError::InvalidInput(format!(
                "a candle mlp has one output; output {output} does not exist"
            )));
        }
        let x = input.to_dtype(DType::F32)?;
        let var = candle_core::Var::from_tensor(&x)?;
        let y = self.run(var.as_tensor().to_dtype(self.dtype)?)?;
        let rows = input.dims().first().copied().unwrap_or(1).max(1);
        let y = y.reshape((rows, ()))?.to_dtype(DType::F32)?;
        check_targets(rows, y.dims()[1], targets)?;
        let idx = CTensor::from_vec(
            targets.iter().map(|&t| t as u32).collect::<Vec<_>>(),
            (rows, 1),
            input.device(),
        )?;
        let picked = y.gather(&idx, 1)?.sum_all()?;
        let grads = picked.backward()?;
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32)?,
            None => CTensor::zeros(input.dims(), DType::F32, input.device())?,
        };
        Ok(vec![g])
    }
}
