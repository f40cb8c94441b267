//! What every Troupe server process shares: its observability flags and the signal it
//! stops on.

use std::net::SocketAddr;

use tracing::{info, warn};

/// `--log`, `--metrics-listen` and `--trace-ui-url`, flattened into the node's and the router's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ObservabilityArgs {
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long, env = "TROUPE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "TROUPE_LOG", default_value = "info")]
    pub log: String,
    /// The tracing UI's URL for a trace: the dashboard links each recent trace id as this
    /// prefix followed by the id (e.g. http://jaeger:16686/trace/).
    #[arg(long, env = "TROUPE_TRACE_UI_URL")]
    pub trace_ui_url: Option<String>,
}

/// Resolves on SIGTERM or Ctrl-C (Ctrl-C only where SIGTERM cannot be listened for).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
        _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "shutting down"),
    }
}
