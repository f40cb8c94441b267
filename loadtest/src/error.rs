//! What can go wrong before or around a run, and how error chains are told.

use std::path::{Path, PathBuf};

/// What can go wrong before or around a run. Failed calls during a run are not errors:
/// they are counted in the [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A bad flag value, input file or scenario file.
    #[error("{0}")]
    Invalid(String),
    /// A file named on the command line or in a scenario cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No connection could be made to the target.
    #[error("cannot reach the target {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The target refused or failed `ModelMetadata`.
    #[error("ModelMetadata for model '{model}' at {addr} failed: {code}: {message}")]
    Metadata {
        addr: String,
        model: String,
        code: &'static str,
        message: String,
    },
}

impl LoadError {
    /// True for mistakes in what the user asked for (bad arguments or files, a model the
    /// target does not know), as opposed to a target that cannot be reached or fails.
    pub fn is_usage(&self) -> bool {
        match self {
            LoadError::Invalid(_) | LoadError::Read { .. } => true,
            LoadError::Metadata { code, .. } => *code == "NOT_FOUND",
            LoadError::Unreachable { .. } => false,
        }
    }
}

/// Reads a text file named by the user (an input file, a scenario).
pub(crate) fn read_text(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every error in a chain, joined with ": " (tonic's transport errors hide the cause in
/// `source()`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
