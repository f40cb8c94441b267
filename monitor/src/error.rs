//! `MonitorError`: what can go wrong with the prediction store. The servers map it to
//! their own errors (and so to the wire status) in one place each.

/// An error of the prediction store.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The `--store` URL names no database Troupe knows.
    #[error("--store {url}: {why} (use sqlite://PATH or postgres://USER@HOST:PORT/DB)")]
    BadUrl { url: String, why: String },
    /// The store could not be opened (an unwritable path, a server that is down).
    #[error("the prediction store {url} could not be opened: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the prediction store's schema could not be brought up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed (the database went away, a constraint).
    #[error("the prediction store failed: {0}")]
    Query(#[from] sqlx::Error),
    /// Bad input to a store operation (an empty request id, an unknown model).
    #[error("{0}")]
    InvalidArgument(String),
    /// What was asked for is not in the store (a request id never queued for review).
    #[error("{0}")]
    NotFound(String),
}

impl MonitorError {
    /// Whether the database could not be reached (as against a bad request).
    pub fn unavailable(&self) -> bool {
        match self {
            MonitorError::Open { .. } => true,
            MonitorError::Query(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
            ),
            _ => false,
        }
    }
}
