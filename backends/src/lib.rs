//! Troupe's model backends behind one small trait.
//!
//! * [`torch`]: TorchScript `.pt` files through libtorch (`tch`).
//! * [`onnx`]: `.onnx` files through ONNX Runtime (`ort`, library loaded at run time).
//! * [`candle`]: `model.safetensors` + `model.json` (Troupe's mlp) or a Hugging Face
//!   `config.json` (candle-transformers architectures) through candle.
//!
//! A backend receives inputs that [`Signature::check_inputs`] has already accepted,
//! in declared order, and returns outputs in declared order. Calls are blocking:
//! the node runs them on blocking threads, never on the async runtime.

pub mod candle;
pub mod error;
pub mod onnx;
pub mod spec;
pub mod tensor;
pub mod torch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use error::BackendError;
pub use spec::{AUTO_MAX_BATCH_SIZE, FullSpec, Overrides, Signature, TensorSpec, complete};
pub use tensor::{DataType, Tensor};

/// Which framework runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Torch,
    Onnx,
    Candle,
}

impl BackendKind {
    /// The artifact file name looked for inside a version directory.
    pub fn default_artifact(self) -> &'static str {
        match self {
            BackendKind::Torch => "model.pt",
            BackendKind::Onnx => "model.onnx",
            BackendKind::Candle => "model.safetensors",
        }
    }

    /// Name used in configs and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Torch => "torch",
            BackendKind::Onnx => "onnx",
            BackendKind::Candle => "candle",
        }
    }

    /// Triton's `platform` string, for stock clients that read it.
    pub fn triton_platform(self) -> &'static str {
        match self {
            BackendKind::Torch => "pytorch_libtorch",
            BackendKind::Onnx => "onnxruntime_onnx",
            BackendKind::Candle => "candle_safetensors",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "torch" | "pytorch" | "torchscript" | "pytorch_libtorch" => Ok(BackendKind::Torch),
            "onnx" | "onnxruntime" | "onnxruntime_onnx" => Ok(BackendKind::Onnx),
            "candle" => Ok(BackendKind::Candle),
            other => Err(BackendError::Load(format!(
                "unknown backend '{other}' (expected torch, onnx or candle)"
            ))),
        }
    }
}

/// Where a backend instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// How to load one backend instance.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Intra-op threads for this instance.
    pub threads: usize,
    pub device: Device,
    /// Path of libonnxruntime (ONNX only). `None`: `ORT_DYLIB_PATH`.
    pub onnxruntime_lib: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            device: Device::Cpu,
            onnxruntime_lib: None,
        }
    }
}

/// One loaded model instance. Implementations are `Send + Sync`; a backend whose
/// framework needs exclusive access (ONNX Runtime's `Session::run`) locks inside.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn device(&self) -> Device;
    /// Runs one forward pass on validated inputs (declared order); returns outputs in declared order.
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError>;

    /// Gradients for explanations: d/d(input) of `Σ_r output[r, targets[r]]`, where
    /// `output` is the declared output at that index seen as `[rows, features]` (each row
    /// flattened) and `targets[r]` picks one element of row `r`. Rows do not interact,
    /// so each row's gradient is that row's own. One f32 tensor per input, shaped like
    /// the input (zeros for inputs that are not floating point).
    fn gradients(
        &self,
        inputs: &[Tensor],
        output: usize,
        targets: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        let _ = (inputs, output, targets);
        Err(BackendError::Unsupported(format!(
            "the {} backend has no gradients: use a perturbation method (occlusion, shapley)",
            self.kind()
        )))
    }

    /// True when [`Backend::gradients`] works.
    fn has_gradients(&self) -> bool {
        false
    }
}

/// What to say when a backend is handed BYTES: models take tokens, the node's text
/// pipeline makes them.
pub fn bytes_hint(d: DataType) -> &'static str {
    if d == DataType::Bytes {
        " (a model with text inputs declares a [text] pipeline, which turns BYTES into token ids)"
    } else {
        ""
    }
}

/// Checks `targets` against a `[rows, features]` view of an output; shared by the
/// gradient implementations.
pub fn check_targets(rows: usize, features: usize, targets: &[usize]) -> Result<(), BackendError> {
    if targets.len() != rows {
        return Err(BackendError::InvalidInput(format!(
            "{} explanation targets for {rows} rows",
            targets.len()
        )));
    }
    if let Some(t) = targets.iter().find(|&&t| t >= features) {
        return Err(BackendError::InvalidInput(format!(
            "explanation target {t} is out of range: the output has {features} values per row"
        )));
    }
    Ok(())
}

/// Finds the artifact: `path` itself if it is a file, else the backend's default file inside it.
pub fn resolve_artifact(kind: BackendKind, path: &Path) -> Result<PathBuf, BackendError> {
    let file = if path.is_dir() {
        path.join(kind.default_artifact())
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(BackendError::Load(format!(
            "artifact {} not found (a {} model needs {})",
            file.display(),
            kind,
            kind.default_artifact()
        )));
    }
    Ok(file)
}

/// The inputs and outputs an artifact declares, for configs that leave them out
/// (Triton's auto-complete). TorchScript files carry no signature.
pub fn describe(
    kind: BackendKind,
    artifact: &Path,
    opts: &LoadOptions,
) -> Result<Vec<FullSpec>, BackendError> {
    match kind {
        BackendKind::Onnx => onnx::describe(artifact, opts),
        BackendKind::Candle => candle::describe(artifact),
        BackendKind::Torch => Err(BackendError::Load(format!(
            "{}: TorchScript files carry no signature, so this model needs a config.toml \
             declaring its [[inputs]] and [[outputs]]",
            artifact.display()
        ))),
    }
}

/// Loads one backend instance from an artifact file (see [`resolve_artifact`]).
pub fn load(
    kind: BackendKind,
    artifact: &Path,
    signature: &Signature,
    opts: &LoadOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    let b: Box<dyn Backend> = match kind {
        BackendKind::Torch => Box::new(torch::TorchBackend::load(artifact, signature, opts)?),
        BackendKind::Onnx => Box::new(onnx::OnnxBackend::load(artifact, signature, opts)?),
        BackendKind::Candle => Box::new(candle::CandleBackend::load(artifact, signature, opts)?),
    };
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        assert_eq!("ONNX".parse::<BackendKind>().unwrap(), BackendKind::Onnx);
        assert_eq!(
            "pytorch_libtorch".parse::<BackendKind>().unwrap(),
            BackendKind::Torch
        );
        assert!("tensorflow".parse::<BackendKind>().is_err());
    }

    #[test]
    fn missing_artifact_is_a_load_error() {
        let e = resolve_artifact(BackendKind::Onnx, Path::new("/nonexistent/dir")).unwrap_err();
        assert!(matches!(e, BackendError::Load(_)));
    }
}
