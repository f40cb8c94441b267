//! `troupe`: the command line for Troupe nodes and routers: its flags, and which module
//! runs each subcommand.
//!
//! Exit codes: 0 done; 1 the server refused the call (the message says why);
//! 2 bad usage or unreadable input; 3 the server cannot be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cluster;
mod connect;
mod explain;
mod failure;
mod feedback;
mod health;
mod infer;
mod inputs;
mod lineage;
mod models;
mod monitor;
mod render;
mod review;
mod sign;
mod trace;

use cluster::ClusterCmd;
use explain::ExplainArgs;
use failure::Failure;
use infer::InferArgs;
use models::ModelsCmd;

#[derive(Parser, Debug)]
#[command(
    name = "troupe",
    version,
    about = "Command line for Troupe: model management, inference, health",
    after_help = "Exit codes: 0 done, 1 the server refused the call, 2 bad usage or input, 3 server unreachable."
)]
struct Cli {
    /// Server address (a node or a router).
    #[arg(
        long,
        global = true,
        env = "TROUPE_SERVER",
        default_value = "127.0.0.1:8001"
    )]
    server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each call, in seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    timeout: f64,
    /// Connect over TLS, trusting this CA (PEM). `https://` servers without it use the
    /// public web roots.
    #[arg(long, global = true, env = "TROUPE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --server).
    #[arg(long, global = true, env = "TROUPE_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// Client certificate (PEM) for servers that require one (with --tls-key).
    #[arg(long, global = true, env = "TROUPE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "TROUPE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Bearer token sent on every call (`authorization: Bearer TOKEN`); servers with a
    /// tokens file need one for admin calls (models create/delete) and, unless
    /// anonymous inference is allowed, for everything else.
    #[arg(long, global = true, env = "TROUPE_TOKEN", hide_env_values = true)]
    token: Option<connect::Token>,
    /// W3C traceparent to continue (infer, explain): the call joins that trace.
    #[arg(long, global = true, env = "TRACEPARENT")]
    traceparent: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Is the server live and ready, and which models are ready?
    Health,
    /// Manage models (troupe.v1.Models).
    #[command(subcommand)]
    Models(ModelsCmd),
    /// The cluster behind a router: nodes and placements.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Run a model once and print its outputs.
    Infer(InferArgs),
    /// Explain one call: feature attributions of each input (troupe.v1.Explainer).
    Explain(ExplainArgs),
    /// Give ground truth for earlier calls by request id (troupe.v1.Feedback).
    Feedback(feedback::FeedbackArgs),
    /// A model's live quality over its windows, refreshing (troupe.v1.Monitor).
    Monitor(monitor::MonitorArgs),
    /// The human review queue: take a call, decide it, export for labelling tools.
    #[command(subcommand)]
    Review(review::ReviewCmd),
    /// Which model and weights, trained on what, gave an answer, and what label it got.
    Lineage {
        /// The answer's id (the client's `id`, else the one Troupe gave it).
        request_id: String,
    },
    /// Sign a model's artifact (or version folder) with an ed25519 key; no server needed.
    Sign(sign::SignArgs),
}

/// Connects as the global flags say and runs the subcommand.
async fn run(cli: Cli) -> Result<(), Failure> {
    if let Cmd::Sign(args) = cli.cmd {
        return sign::run(args);
    }
    let mut c = connect::connect(&cli).await?;
    let traceparent = cli.traceparent.as_deref();
    match cli.cmd {
        Cmd::Health => health::run(&mut c, &cli.server, cli.json).await,
        Cmd::Models(cmd) => models::run(cmd, &mut c, cli.json).await,
        Cmd::Cluster(cmd) => cluster::run(cmd, &mut c, cli.json).await,
        Cmd::Infer(args) => infer::run(args, &mut c, traceparent, cli.json).await,
        Cmd::Explain(args) => explain::run(args, &mut c, traceparent, cli.json).await,
        Cmd::Feedback(args) => feedback::run(args, &mut c, cli.json).await,
        Cmd::Monitor(args) => monitor::run(args, &mut c, cli.json).await,
        Cmd::Review(cmd) => review::run(cmd, &mut c, cli.json).await,
        Cmd::Lineage { request_id } => lineage::run(request_id, &mut c, cli.json).await,
        Cmd::Sign(_) => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One worker: the OTLP exporter's connection keeps running while main flushes.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    // Spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; logs (TROUPE_LOG) on stderr.
    let log = std::env::var("TROUPE_LOG").unwrap_or_else(|_| "warn".into());
    let mut telemetry = {
        let _rt = rt.enter();
        match troupe_telemetry::init("troupe-cli", &log) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("warning: telemetry off: {e}");
                None
            }
        }
    };
    let outcome = rt.block_on(run(cli));
    if let Some(t) = telemetry.as_mut() {
        let _rt = rt.enter();
        t.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}
