//! `troupe`: the command line for Troupe nodes (and, later, routers).
//!
//! Exit codes: 0 done; 1 the server refused the call (the message says why);
//! 2 bad usage or unreadable input; 3 the server cannot be reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand};
use serde_json::json;
use tracing::Instrument;
use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{Client, ClientError, InputTensor};

mod cluster;
mod inputs;
mod models;
mod render;
mod trace;

use cluster::ClusterCmd;
use models::ModelsCmd;

use inputs::collect_inputs;
use render::{decode_values, print_json, result_json, state_name};
use trace::{client_span, trace_id_of, traced};

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
    Infer {
        model: String,
        #[arg(long, default_value = "")]
        version: String,
        /// An input: NAME=@FILE.npy, or NAME=D1,D2:V1,V2,... (FP32 values). Repeatable.
        #[arg(long = "input", value_name = "NAME=...")]
        inputs: Vec<String>,
        /// A text for a BYTES input, one row each; repeat it for a batch.
        #[arg(long = "text", value_name = "TEXT")]
        texts: Vec<String>,
        /// The input --text fills.
        #[arg(long, default_value = "text")]
        text_input: String,
        /// Inputs from JSON: {"inputs":[{"name","datatype","shape","data":[...]}]}.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
    },
    /// Explain one call: feature attributions of each input (troupe.v1.Explainer).
    Explain {
        model: String,
        #[arg(long, default_value = "")]
        version: String,
        /// saliency, integrated_gradients (torch, candle), occlusion or shapley (all).
        #[arg(long, default_value = "integrated_gradients")]
        method: String,
        /// An input: NAME=@FILE.npy, or NAME=D1,D2:V1,V2,... (FP32 values). Repeatable.
        #[arg(long = "input", value_name = "NAME=...")]
        inputs: Vec<String>,
        /// Inputs from JSON: {"inputs":[{"name","datatype","shape","data":[...]}]}.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
        /// The output explained (default: the first).
        #[arg(long, default_value = "")]
        output: String,
        /// Element of each output row explained (default: the row's largest).
        #[arg(long)]
        target: Option<i64>,
        /// The reference input's value.
        #[arg(long, default_value_t = 0.0)]
        baseline: f64,
        /// Integrated gradients: path steps (default 32).
        #[arg(long, default_value_t = 0)]
        steps: u32,
        /// Occlusion and Shapley: features per group (default 1).
        #[arg(long, default_value_t = 0)]
        window: u32,
        /// Shapley: sampled feature orders (default 16).
        #[arg(long, default_value_t = 0)]
        samples: u32,
    },
}

/// Errors that pick the exit code.
enum Failure {
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
        _ => "see the server's log for details",
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.001));
    let tls = cli.tls_ca.is_some() || cli.tls_cert.is_some() || cli.server.starts_with("https://");
    let uri = match cli.server.split_once("://") {
        Some((_, rest)) if tls => format!("https://{rest}"),
        Some(_) => cli.server.clone(),
        None if tls => format!("https://{}", cli.server),
        None => format!("http://{}", cli.server),
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| Failure::Usage(anyhow!("--server {:?}: {e}", cli.server)))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    if tls {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| Failure::Usage(anyhow!("{what} {}: {e}", p.display())))
        };
        let mut t = troupe_client::ClientTls {
            ca_pem: cli
                .tls_ca
                .as_ref()
                .map(|p| read(p, "--tls-ca"))
                .transpose()?,
            domain: cli.tls_domain.clone(),
            identity: None,
        };
        if let (Some(c), Some(k)) = (&cli.tls_cert, &cli.tls_key) {
            t.identity = Some((read(c, "--tls-cert")?, read(k, "--tls-key")?));
        }
        endpoint = endpoint
            .tls_config(t.client_config())
            .map_err(|e| Failure::Usage(anyhow!("TLS settings: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let mut msg = format!("{}: {e}", cli.server);
        let mut cur = std::error::Error::source(&e);
        while let Some(s) = cur {
            msg.push_str(&format!(": {s}"));
            cur = s.source();
        }
        Failure::Unreachable(msg)
    })?;
    let mut c = Client::from_channel(channel);
    match cli.cmd {
        Cmd::Health => {
            let live = c.server_live().await?;
            let ready = c.server_ready().await?;
            let list = c
                .models()
                .list(tpb::ListModelsRequest {})
                .await?
                .into_inner();
            let models: Vec<(String, &str)> = list
                .models
                .iter()
                .map(|m| {
                    (
                        m.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                        state_name(m.state),
                    )
                })
                .collect();
            if cli.json {
                print_json(&json!({"server": cli.server, "live": live, "ready": ready,
                    "models": models.iter().map(|(n, s)| json!({"name": n, "state": s})).collect::<Vec<_>>()}));
            } else {
                println!("{}: live={live} ready={ready}", cli.server);
                for (n, s) in &models {
                    println!("  {n:<24} {s}");
                }
            }
            if !ready {
                return Err(Failure::Server(tonic::Status::unavailable(
                    "the server is live but not ready (models still loading)",
                )));
            }
        }
        Cmd::Models(cmd) => models::run(cmd, &mut c, cli.json).await?,
        Cmd::Cluster(cmd) => cluster::run(cmd, &mut c, cli.json).await?,
        Cmd::Infer {
            model,
            version,
            inputs,
            texts,
            text_input,
            data_file,
        } => {
            let mut tensors = if inputs.is_empty() && data_file.is_none() && !texts.is_empty() {
                Vec::new()
            } else {
                collect_inputs(&inputs, data_file.as_deref())?
            };
            if !texts.is_empty() {
                tensors.push(InputTensor::text(&text_input, &texts));
            }
            let span = client_span(
                cli.traceparent.as_deref(),
                || tracing::info_span!("client.infer", model = %model),
            );
            let req = traced(
                &span,
                cli.traceparent.as_deref(),
                troupe_client::infer_request(&model, &version, tensors),
            )?;
            let resp = c.inference().model_infer(req).instrument(span).await?;
            let trace_id = trace_id_of(resp.metadata());
            let r = troupe_client::decode_response(resp.into_inner())?;
            let mut v = result_json(&r);
            if let Some(t) = trace_id {
                v["trace_id"] = json!(t);
            }
            if cli.json {
                print_json(&v);
            } else {
                println!("{} (version {})", r.model_name, r.model_version);
                for o in v["outputs"].as_array().into_iter().flatten() {
                    println!(
                        "  {} {} {}: {}",
                        o["name"].as_str().unwrap_or(""),
                        o["datatype"].as_str().unwrap_or(""),
                        o["shape"],
                        o["data"]
                    );
                }
            }
        }
        Cmd::Explain {
            model,
            version,
            method,
            inputs,
            data_file,
            output,
            target,
            baseline,
            steps,
            window,
            samples,
        } => {
            let tensors = collect_inputs(&inputs, data_file.as_deref())?;
            let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
            let body = tpb::ExplainRequest {
                request: Some(troupe_client::infer_request(&model, &version, tensors)),
                method: method.clone(),
                output,
                target,
                baseline,
                steps,
                window,
                samples,
                seed: 0,
            };
            let span = client_span(
                cli.traceparent.as_deref(),
                || tracing::info_span!("client.explain", model = %model, method = %method),
            );
            let req = traced(&span, cli.traceparent.as_deref(), body)?;
            let resp = c.explainer().explain(req).instrument(span).await?;
            let trace_id = trace_id_of(resp.metadata());
            let r = troupe_client::decode_response(resp.into_inner().response.unwrap_or_default())?;
            let targets = r.values::<i64>("attribution.target").unwrap_or_default();
            let values = r.f32("attribution.value").unwrap_or_default();
            let mut attributions = serde_json::Map::new();
            for n in &names {
                if let Ok(o) = r.output(&format!("attribution.{n}")) {
                    attributions.insert(
                        n.clone(),
                        json!({"shape": o.shape, "data": decode_values(&o.datatype, &o.data)}),
                    );
                }
            }
            if cli.json {
                print_json(&json!({
                    "model_name": r.model_name, "model_version": r.model_version, "method": method,
                    "target": targets, "value": values, "attributions": attributions,
                    "trace_id": trace_id,
                }));
            } else {
                println!("{} (version {}): {method}", r.model_name, r.model_version);
                for (row, (t, v)) in targets.iter().zip(&values).enumerate() {
                    println!("  row {row}: output element {t} = {v}");
                }
                for (n, a) in &attributions {
                    println!("  {n} {}: {}", a["shape"], a["data"]);
                }
            }
        }
    }
    Ok(())
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
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Server(s)) => {
            eprintln!(
                "error: {:?}: {}\nhint: {}",
                s.code(),
                s.message(),
                hint(s.code())
            );
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!(
                "error: cannot reach the server: {m}\nhint: is troupe-node running there? set --server or TROUPE_SERVER"
            );
            ExitCode::from(3)
        }
    }
}
