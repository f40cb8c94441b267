//! candle models, pure Rust.
//!
//! A version directory holds `model.safetensors` and one of:
//! * `model.json`, naming Troupe's own architecture (`mlp`, see [`mlp`]);
//! * `config.json`, a Hugging Face config: its `model_type` picks an architecture from
//!   candle-transformers through the table in [`hf`] (BERT-family encoders today).
//!
//! candle re-reads the CPU count on every matmul unless `RAYON_NUM_THREADS` is set:
//! the node sets it at startup (see RECIPES).

pub mod hf;
pub mod mlp;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use candle_core::{DType, Device as CDevice, Tensor as CTensor};

use crate::error::BackendError;
use crate::spec::{FullSpec, Signature};
use crate::tensor::{DataType, Tensor, bytes_from_vec};
use crate::{Backend, BackendKind, Device, LoadOptions, resolve_artifact};

/// One architecture's forward pass over candle tensors, inputs and outputs in the
/// signature's declared order.
pub trait CandleModel: Send + Sync {
    fn forward(&self, inputs: &[CTensor]) -> Result<Vec<CTensor>, BackendError>;

    /// `d Σ_r output[r, targets[r]] / d input`, per input (see [`Backend::gradients`]).
    fn gradients(
        &self,
        inputs: &[CTensor],
        output: usize,
        targets: &[usize],
    ) -> Result<Vec<CTensor>, BackendError> {
        let _ = (inputs, output, targets);
        Err(BackendError::Unsupported(
            "this candle architecture has no gradients: use occlusion or shapley".into(),
        ))
    }

    fn has_gradients(&self) -> bool {
        false
    }
}

/// A candle model on one device.
pub struct CandleBackend {
    model: Box<dyn CandleModel>,
    device: CDevice,
    /// The declared output types (the model's results are cast to them).
    outputs: Vec<DataType>,
}

pub(crate) fn ctype(d: DataType) -> Result<DType, BackendError> {
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
                "{other} is not supported by the candle backend{}",
                crate::bytes_hint(other)
            )));
        }
    })
}

/// What a version directory holds: Troupe's `model.json` or a HF `config.json`.
enum ArchFile {
    Troupe(PathBuf),
    HuggingFace(PathBuf),
}

fn arch_file(weights: &Path) -> Result<ArchFile, BackendError> {
    let troupe = weights.with_file_name("model.json");
    let hf = weights.with_file_name("config.json");
    if troupe.is_file() {
        Ok(ArchFile::Troupe(troupe))
    } else if hf.is_file() {
        Ok(ArchFile::HuggingFace(hf))
    } else {
        Err(BackendError::Load(format!(
            "candle models need {} (Troupe's mlp) or {} (a Hugging Face config) beside {}",
            troupe.display(),
            hf.display(),
            weights.display()
        )))
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, BackendError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BackendError::Load(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| BackendError::Load(format!("{}: {e}", path.display())))
}

fn candle_device(d: Device) -> Result<CDevice, BackendError> {
    match d {
        Device::Cpu => Ok(CDevice::Cpu),
        Device::Cuda(i) => CDevice::new_cuda(i)
            .map_err(|e| BackendError::Device(format!("cuda:{i} is not available to candle: {e}"))),
    }
}

/// The inputs and outputs a candle model file implies (auto-complete).
pub fn describe(path: &Path) -> Result<Vec<FullSpec>, BackendError> {
    let weights = resolve_artifact(BackendKind::Candle, path)?;
    match arch_file(&weights)? {
        ArchFile::Troupe(p) => mlp::describe(&p),
        ArchFile::HuggingFace(p) => hf::describe(&p, &read_json(&p)?),
    }
}

impl CandleBackend {
    pub fn load(path: &Path, sig: &Signature, opts: &LoadOptions) -> Result<Self, BackendError> {
        let weights = resolve_artifact(BackendKind::Candle, path)?;
        let device = candle_device(opts.device)?;
        for s in sig.inputs.iter().chain(&sig.outputs) {
            ctype(s.dtype)?;
        }
        let model = match arch_file(&weights)? {
            ArchFile::Troupe(p) => mlp::load(&p, &weights, sig, &device)?,
            ArchFile::HuggingFace(p) => hf::load(&p, &read_json(&p)?, &weights, sig, &device)?,
        };
        Ok(Self {
            model,
            device,
            outputs: sig.outputs.iter().map(|s| s.dtype).collect(),
        })
    }

    fn to_candle(&self, t: &Tensor) -> Result<CTensor, BackendError> {
        Ok(CTensor::from_raw_buffer(
            &t.data,
            ctype(t.dtype)?,
            &t.shape,
            &self.device,
        )?)
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

fn from_candle(t: &CTensor, dtype: DataType) -> Result<Tensor, BackendError> {
    let t = t.to_dtype(ctype(dtype)?)?;
    Tensor::new(dtype, t.dims().to_vec(), to_bytes(&t, dtype)?)
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
        let xs = inputs
            .iter()
            .map(|t| self.to_candle(t))
            .collect::<Result<Vec<_>, _>>()?;
        let ys = self.model.forward(&xs)?;
        ys.iter()
            .zip(&self.outputs)
            .map(|(y, &dt)| from_candle(y, dt))
            .collect()
    }

    fn has_gradients(&self) -> bool {
        self.model.has_gradients()
    }

    fn gradients(
        &self,
        inputs: &[Tensor],
        output: usize,
        targets: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        let xs = inputs
            .iter()
            .map(|t| self.to_candle(t))
            .collect::<Result<Vec<_>, _>>()?;
        let gs = self.model.gradients(&xs, output, targets)?;
        gs.iter().map(|g| from_candle(g, DataType::F32)).collect()
    }
}
