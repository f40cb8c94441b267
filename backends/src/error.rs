//! The one error type of this crate. The node maps it to a gRPC status (in one place).

/// What can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The artifact is missing, corrupt, or does not match its declared digest.
    #[error("cannot load model: {0}")]
    Load(String),
    /// A native library (libonnxruntime, libtorch) could not be found or opened.
    #[error("native library unavailable: {0}")]
    Library(String),
    /// An input does not match the model's declared signature.
    #[error("{0}")]
    InvalidInput(String),
    /// Bytes and shape disagree, or a shape overflows.
    #[error("{0}")]
    Shape(String),
    /// A data type the backend (or Troupe) cannot handle.
    #[error("unsupported data type: {0}")]
    UnsupportedType(String),
    /// The framework failed while running the model.
    #[error("backend failed while running the model: {0}")]
    Runtime(String),
    /// The model produced something its declared outputs do not allow.
    #[error("model output does not match its config: {0}")]
    OutputMismatch(String),
    /// The backend cannot do what was asked (e.g. gradients through ONNX Runtime).
    #[error("{0}")]
    Unsupported(String),
    /// The requested device is not available in this process.
    #[error("device unavailable: {0}")]
    Device(String),
}

impl From<tch::TchError> for BackendError {
    fn from(e: tch::TchError) -> Self {
        BackendError::Runtime(format!("torch: {e}"))
    }
}

impl From<candle_core::Error> for BackendError {
    fn from(e: candle_core::Error) -> Self {
        BackendError::Runtime(format!("candle: {e}"))
    }
}

impl From<ort::Error> for BackendError {
    fn from(e: ort::Error) -> Self {
        BackendError::Runtime(format!("onnxruntime: {e}"))
    }
}
