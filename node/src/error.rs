//! The node's one error type, and its one mapping to a gRPC status.

use troupe_backends::BackendError;

/// Everything a node call or a model load can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("model '{name}'{} is not loaded on this node", version_suffix(.version))]
    ModelNotFound { name: String, version: String },
    #[error("no model '{name}' in the model repository {repository}")]
    NotInRepository { name: String, repository: String },
    /// A model name outside the rule of `troupe_proto::names` (the message says it).
    #[error("{}", troupe_proto::names::invalid_model_name(.0))]
    InvalidName(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("model '{name}' already exists (version {version}); delete it first")]
    AlreadyExists { name: String, version: String },
    #[error("invalid model config {path}: {msg}")]
    Config { path: String, msg: String },
    #[error("sha256 mismatch for {path}: expected {expected}, file has {actual}")]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("cannot load model '{model}': {source}")]
    Load {
        model: String,
        #[source]
        source: BackendError,
    },
    #[error(
        "model '{0}' has no ready replica right now (it is restarting or unloading); retry shortly"
    )]
    Unavailable(String),
    #[error("model '{model}': {source}")]
    Backend {
        model: String,
        #[source]
        source: BackendError,
    },
    #[error(
        "model '{model}' has {size} calls queued, its limit (max_queue_size); retry later or raise the limit"
    )]
    QueueFull { model: String, size: usize },
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Not allowed here (an artifact outside the model roots).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn version_suffix(v: &str) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!(" version {v}")
    }
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl NodeError {
    /// The gRPC status code this error is answered with (the one mapping).
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            NodeError::ModelNotFound { .. } | NodeError::NotInRepository { .. } => Code::NotFound,
            NodeError::InvalidName(_) | NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::TooLarge(_) | NodeError::QueueFull { .. } => Code::ResourceExhausted,
            NodeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            NodeError::AlreadyExists { .. } => Code::AlreadyExists,
            NodeError::Config { .. }
            | NodeError::Checksum { .. }
            | NodeError::Load { .. }
            | NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::Unavailable(_) => Code::Unavailable,
            NodeError::PermissionDenied(_) => Code::PermissionDenied,
            NodeError::Backend { source, .. } => match source {
                BackendError::InvalidInput(_)
                | BackendError::Shape(_)
                | BackendError::UnsupportedType(_) => Code::InvalidArgument,
                BackendError::Unsupported(_) => Code::FailedPrecondition,
                BackendError::Load(_) | BackendError::Library(_) | BackendError::Device(_) => {
                    Code::FailedPrecondition
                }
                BackendError::Runtime(_) | BackendError::OutputMismatch(_) => Code::Internal,
            },
            NodeError::Internal(_) => Code::Internal,
        }
    }

    /// Wraps a backend error raised while validating or running a call.
    pub fn backend(model: &str, source: BackendError) -> Self {
        NodeError::Backend {
            model: model.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn statuses_carry_the_right_code_and_message() {
        let s: tonic::Status = NodeError::ModelNotFound {
            name: "m".into(),
            version: "3".into(),
        }
        .into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("'m' version 3"), "{}", s.message());
        let s: tonic::Status =
            NodeError::backend("m", BackendError::InvalidInput("bad shape".into())).into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let s: tonic::Status = NodeError::Load {
            model: "m".into(),
            source: BackendError::Load("corrupt".into()),
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("corrupt"));
    }
}
