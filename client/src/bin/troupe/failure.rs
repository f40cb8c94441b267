//! How the command line fails: the error kinds that pick the exit code, the message and
//! hint printed for each.

use std::process::ExitCode;

use anyhow::anyhow;
use troupe_client::ClientError;

/// Errors that pick the exit code.
pub(crate) enum Failure {
    Usage(anyhow::Error),
    Server(tonic::Status),
    Unreachable(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Usage(e)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Status(s)
                if s.code() == tonic::Code::Unavailable && s.message().contains("connect") =>
            {
                Failure::Unreachable(s.message().to_string())
            }
            ClientError::Status(s) => Failure::Server(s),
            ClientError::Connect(e) => Failure::Unreachable(e.to_string()),
            ClientError::Decode(m) => Failure::Usage(anyhow!(m)),
            e @ ClientError::Token(_) => Failure::Usage(anyhow!("--token / TROUPE_TOKEN: {e}")),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::from(ClientError::Status(s))
    }
}

fn hint(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        NotFound => "`troupe models list` shows what the server serves",
        InvalidArgument => "`troupe models get MODEL` shows the inputs the model expects",
        FailedPrecondition => "fix the model files or config, then create or load the model again",
        ResourceExhausted => "the server is at its limit: retry later, or send less at once",
        Unavailable => "the model is restarting or unloading: retry shortly",
        DeadlineExceeded => "raise --timeout or reduce the load",
        AlreadyExists => "delete it first with `troupe models delete NAME`",
        Unauthenticated => "the server wants a bearer token it knows: set --token or TROUPE_TOKEN",
        PermissionDenied => {
            "set --token or TROUPE_TOKEN to a token with the scope the call needs (admin to \
             create or delete models); an artifact outside the server's --model-root \
             directories is refused whatever the token"
        }
        _ => "see the server's log for details",
    }
}

impl Failure {
    /// Prints the error (and a hint) on stderr; the exit code: 2 bad usage or input,
    /// 1 the server refused the call, 3 the server cannot be reached.
    pub(crate) fn report(self) -> ExitCode {
        match self {
            Failure::Usage(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
            Failure::Server(s) => {
                eprintln!(
                    "error: {:?}: {}\nhint: {}",
                    s.code(),
                    s.message(),
                    hint(s.code())
                );
                ExitCode::from(1)
            }
            Failure::Unreachable(m) => {
                eprintln!(
                    "error: cannot reach the server: {m}\nhint: is troupe-node running there? set --server or TROUPE_SERVER"
                );
                ExitCode::from(3)
            }
        }
    }
}
