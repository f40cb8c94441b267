//! The router's one error type, mapped to a gRPC status in one place.

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("model '{0}' is not declared in this cluster")]
    ModelNotFound(String),
    #[error(
        "model '{0}' has no ready replica right now (pending, loading or its nodes are gone); retry shortly"
    )]
    NoReplica(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("model '{0}' already exists; delete it first")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the cluster store (etcd) is unreachable: {0}")]
    Store(String),
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A node failed under a call (the message names the node).
    #[error("{0}")]
    NodeFailed(String),
}

impl From<RouterError> for tonic::Status {
    fn from(e: RouterError) -> Self {
        use tonic::Code;
        let code = match &e {
            RouterError::ModelNotFound(_) => Code::NotFound,
            RouterError::NoReplica(_) | RouterError::Store(_) | RouterError::NodeFailed(_) => {
                Code::Unavailable
            }
            RouterError::InvalidArgument(_) => Code::InvalidArgument,
            RouterError::AlreadyExists(_) => Code::AlreadyExists,
            RouterError::FailedPrecondition(_) => Code::FailedPrecondition,
            RouterError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        };
        tonic::Status::new(code, e.to_string())
    }
}

impl From<etcd_client::Error> for RouterError {
    fn from(e: etcd_client::Error) -> Self {
        RouterError::Store(e.to_string())
    }
}
