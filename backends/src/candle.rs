//! candle models: `model.safetensors` weights plus `model.json`, a config naming the architecture.
//!
//! Supported architecture: `mlp`, fully connected layers in torch `Linear` layout
//! (`layers.{i}.weight` is `[out, in]`, `layers.{i}.bias` is `[out]`):
//!
//! ```json
//! {"architecture": "mlp", "sizes": [16, 32, 4], "activations": ["relu", "none"]}
//! ```
//!
//! candle re-reads the CPU count on every matmul unless `RAYON_NUM_THREADS` is set:
//! the node sets it at startup (see RECIPES).

use std::path::Path;

use bytes::Bytes;
use candle_core::{DType, Device as CDevice, Tensor as CTensor};
use serde::Deserialize;

use crate::error::BackendError;
use crate::spec::Signature;
use crate::tensor::{DataType, Tensor, bytes_from_vec};
use crate::{Backend, BackendKind, Device, LoadOptions, check_targets, resolve_artifact};

/// Activation after a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
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
pub struct CandleBackend {
    layers: Vec<Layer>,
    device: CDevice,
    dtype: DType,
}

fn ctype(d: DataType) -> Result<DType, BackendError> {
    Ok(match d {
        DataType::U8 => DType::U8,
        DataType::U32 => DType::U32,
        DataType::I64 => DType::I64,
        DataType::F16 => DType::F16,
        DataType::BF16 => DType::BF16,
        DataType::F32 => DType::F32,
        DataType::F64 => DType::F64,
        other => {
            return Err(BackendError::UnsupportedType(format!(
                "{other} is not supported by the candle backend"
            )));
        }
    })
}

impl CandleBackend {
    pub fn load(path: &Path, sig: &Signature, opts: &LoadOptions) -> Result<Self, BackendError> {
        let weights = resolve_artifact(BackendKind::Candle, path)?;
        let arch_path = weights.with_file_name("model.json");
        let arch_text = std::fs::read_to_string(&arch_path).map_err(|e| {
            BackendError::Load(format!("candle models need {}: {e}", arch_path.display()))
        })?;
        let arch: ArchConfig = serde_json::from_str(&arch_text)
            .map_err(|e| BackendError::Load(format!("{}: {e}", arch_path.display())))?;
        if arch.architecture != "mlp" {
            return Err(BackendError::Load(format!(
                "{}: unknown architecture '{}' (supported: mlp)",
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
        let device = match opts.device {
            Device::Cpu => CDevice::Cpu,
            Device::Cuda(i) => CDevice::new_cuda(i).map_err(|e| {
                BackendError::Device(format!("cuda:{i} is not available to candle: {e}"))
            })?,
        };
        let tensors = candle_core::safetensors::load(&weights, &device)
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
        ctype(sig.inputs[0].dtype)?;
        ctype(sig.outputs[0].dtype)?;
        Ok(Self {
            layers,
            device,
            dtype,
        })
    }
}

fn to_bytes(t: &CTensor, dtype: DataType) -> Result<Bytes, BackendError> {
    let flat = t.flatten_all()?;
    let b = match dtype {
        DataType::F32 => bytes_from_vec(flat.to_vec1::<f32>()?),
        DataType::F64 => bytes_from_vec(flat.to_vec1::<f64>()?),
        DataType::F16 => bytes_from_vec(flat.to_vec1::<half::f16>()?),
        DataType::BF16 => bytes_from_vec(flat.to_vec1::<half::bf16>()?),
        DataType::U8 => Bytes::from(flat.to_vec1::<u8>()?),
        DataType::U32 => bytes_from_vec(flat.to_vec1::<u32>()?),
        DataType::I64 => bytes_from_vec(flat.to_vec1::<i64>()?),
        other => return Err(BackendError::UnsupportedType(other.to_string())),
    };
    Ok(b)
}

impl Backend for CandleBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Candle
    }

    fn device(&self) -> Device {
        match &self.device {
            CDevice::Cuda(_) => Device::Cuda(0),
            _ => Device::Cpu,
        }
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let input = inputs
            .first()
            .ok_or_else(|| BackendError::InvalidInput("candle mlp needs one input".into()))?;
        let out_dtype = input.dtype;
        let x =
            CTensor::from_raw_buffer(&input.data, ctype(input.dtype)?, &input.shape, &self.device)?
                .to_dtype(self.dtype)?;
        let x = self.forward(x)?.to_dtype(ctype(out_dtype)?)?;
        let shape = x.dims().to_vec();
        let data = to_bytes(&x, out_dtype)?;
        Ok(vec![Tensor::new(out_dtype, shape, data)?])
    }

    fn has_gradients(&self) -> bool {
        true
    }

    fn gradients(
        &self,
        inputs: &[Tensor],
        output: usize,
        targets: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        let input = inputs
            .first()
            .ok_or_else(|| BackendError::InvalidInput("candle mlp needs one input".into()))?;
        if output != 0 {
            return Err(BackendError::InvalidInput(format!(
                "a candle mlp has one output; output {output} does not exist"
            )));
        }
        let x =
            CTensor::from_raw_buffer(&input.data, ctype(input.dtype)?, &input.shape, &self.device)?
                .to_dtype(DType::F32)?;
        let var = candle_core::Var::from_tensor(&x)?;
        let y = self.forward(var.as_tensor().to_dtype(self.dtype)?)?;
        let rows = input.shape.first().copied().unwrap_or(1).max(1);
        let y = y.reshape((rows, ()))?.to_dtype(DType::F32)?;
        check_targets(rows, y.dims()[1], targets)?;
        let idx = CTensor::from_vec(
            targets.iter().map(|&t| t as u32).collect::<Vec<_>>(),
            (rows, 1),
            &self.device,
        )?;
        let picked = y.gather(&idx, 1)?.sum_all()?;
        let grads = picked.backward()?;
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32)?,
            None => CTensor::zeros(input.shape.as_slice(), DType::F32, &self.device)?,
        };
        let shape = g.dims().to_vec();
        Ok(vec![Tensor::new(
            DataType::F32,
            shape,
            to_bytes(&g, DataType::F32)?,
        )?])
    }
}

impl CandleBackend {
    /// The MLP's forward pass (differentiable: candle records the ops on `Var`s).
    fn forward(&self, mut x: CTensor) -> Result<CTensor, BackendError> {
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
            };
        }
        Ok(x)
    }
}
