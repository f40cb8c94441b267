//! `troupe-node`: serves a model repository over the Open Inference Protocol.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use troupe_node::{NodeOptions, ServeOptions, membership};

#[derive(Parser, Debug)]
#[command(
    name = "troupe-node",
    version,
    about = "Troupe node: serves TorchScript, ONNX and candle models over the Open Inference Protocol"
)]
struct Args {
    /// Model repository: DIR/<model>/config.toml and DIR/<model>/<version>/<artifact>.
    #[arg(long, env = "TROUPE_MODEL_REPOSITORY")]
    model_repository: Option<PathBuf>,
    /// Address to serve gRPC on (port 0 picks a free port; the address is printed).
    #[arg(long, env = "TROUPE_LISTEN", default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Intra-op threads of each backend instance (torch, ONNX Runtime, candle).
    #[arg(long, env = "TROUPE_BACKEND_THREADS", default_value_t = 1)]
    backend_threads: usize,
    /// Path of libonnxruntime.so (falls back to ORT_DYLIB_PATH).
    #[arg(long, env = "TROUPE_ONNXRUNTIME_LIB")]
    onnxruntime_lib: Option<PathBuf>,
    /// Largest input tensor accepted, in bytes (larger ones get RESOURCE_EXHAUSTED).
    #[arg(long, env = "TROUPE_MAX_TENSOR_BYTES", default_value_t = 64 << 20)]
    max_tensor_bytes: usize,
    /// MiB all explanations of this node may hold at once (perturbed inputs in flight);
    /// past it, an explanation gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "TROUPE_EXPLAIN_MEMORY_MB", default_value_t = 1024)]
    explain_memory_mb: usize,
    /// MiB one explanation may hold at once.
    #[arg(long, env = "TROUPE_EXPLAIN_CALL_MEMORY_MB", default_value_t = 256)]
    explain_call_memory_mb: usize,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "TROUPE_MAX_MESSAGE_BYTES", default_value_t = 256 << 20)]
    max_message_bytes: usize,
    /// Node id reported in model status (default: the listen address).
    #[arg(long, env = "TROUPE_NODE_ID")]
    node_id: Option<String>,
    /// Allow the request parameter `troupe.fault = "crash"` (for tests of supervision).
    #[arg(long, env = "TROUPE_ENABLE_FAULT_INJECTION")]
    enable_fault_injection: bool,
    /// etcd endpoints (comma-separated) to join a cluster; standalone without.
    #[arg(long, env = "TROUPE_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// Address routers use to reach this node (default: the listen address).
    #[arg(long, env = "TROUPE_ADVERTISE")]
    advertise: Option<String>,
    /// Seconds the node's etcd keys outlive its last renewal.
    #[arg(long, env = "TROUPE_LEASE_TTL", default_value_t = 5)]
    lease_ttl: u64,
    /// CPU this node offers, in millicores (default: all cores).
    #[arg(long, env = "TROUPE_CPU_MILLIS")]
    cpu_millis: Option<u64>,
    /// Memory this node offers, in MiB (default: all of it).
    #[arg(long, env = "TROUPE_MEMORY_MB")]
    memory_mb: Option<u64>,
    /// Memory of each GPU this node offers, in MiB (one value per GPU); declared instead
    /// of measured. Default: the GPUs NVML finds, none without the NVIDIA driver.
    #[arg(
        long = "gpu-memory-mb",
        env = "TROUPE_GPU_MEMORY_MB",
        value_delimiter = ','
    )]
    gpu_memory_mb: Vec<u64>,
    /// A label for placement, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Audit file (JSON lines, appended) for models whose config has `[hooks] audit = true`.
    #[arg(long, env = "TROUPE_AUDIT_LOG", default_value = "troupe-audit.jsonl")]
    audit_log: PathBuf,
    /// The prediction store of models with `[monitoring]` (docs/monitoring.md):
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB. Given, it is opened at start;
    /// else sqlite://troupe-store.db (in the working directory) is opened at the first
    /// such model.
    #[arg(long, env = "TROUPE_STORE")]
    store: Option<String>,
    /// Predictions that may wait for the store's writer; past it they are dropped (and
    /// counted in troupe_predictions_dropped_total).
    #[arg(long, env = "TROUPE_STORE_QUEUE", default_value_t = troupe_monitor::RECORD_QUEUE)]
    store_queue: usize,
    /// Predictions older than this leave the store (e.g. 7d, 12h; checked every minute).
    #[arg(long, env = "TROUPE_STORE_MAX_AGE", value_parser = humantime::parse_duration, default_value = "7d")]
    store_max_age: std::time::Duration,
    /// The oldest predictions leave the store while it holds more than this many MiB of
    /// them (0: no limit).
    #[arg(long, env = "TROUPE_STORE_MAX_MB", default_value_t = 1024)]
    store_max_mb: u64,
    /// Tokens file (TOML: hashed bearer tokens with scopes; see docs). Without one,
    /// inference is open and admin calls (create, delete, load, unload) are refused.
    #[arg(long, env = "TROUPE_AUTH_TOKENS")]
    auth_tokens: Option<PathBuf>,
    /// A directory artifacts of models created by RPC may be loaded from (repeatable;
    /// the model repository always is one).
    #[arg(long = "model-root", env = "TROUPE_MODEL_ROOTS", value_delimiter = ',')]
    model_roots: Vec<PathBuf>,
    /// Named public keys that model signatures are checked with (TOML: `[keys]` then
    /// NAME = "PEM, or hex"); a config's `[signing] key = "NAME"` picks one.
    #[arg(long, env = "TROUPE_TRUST_FILE")]
    trust_file: Option<PathBuf>,
    #[command(flatten)]
    tls: troupe_proto::tls::ServerTlsArgs,
    #[command(flatten)]
    observability: troupe_telemetry::process::ObservabilityArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // candle re-reads /proc/cpuinfo on every matmul unless this is set (see RECIPES).
    // Set before any thread exists.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread has started yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", args.backend_threads.max(1).to_string()) };
    }
    tch::set_num_threads(args.backend_threads.max(1) as i32);
    tch::set_num_interop_threads(1);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Logs, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (flushed on exit).
    let mut telemetry = {
        let _rt = runtime.enter();
        troupe_telemetry::init("troupe-node", &args.observability.log).context("telemetry")?
    };
    let tls = args.tls.load().map_err(anyhow::Error::msg)?;
    let tokens = std::sync::Arc::new(
        troupe_proto::auth::Tokens::from_option(args.auth_tokens.as_deref())
            .map_err(anyhow::Error::msg)?,
    );
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("troupe-node listening on {addr}");
        std::io::stdout().flush()?;
        let node_id = args.node_id.clone().unwrap_or_else(|| addr.to_string());
        let gpus = if args.gpu_memory_mb.is_empty() {
            troupe_node::gpu::Gpus::detect()
        } else {
            troupe_node::gpu::Gpus::declared(&args.gpu_memory_mb)
        };
        let membership = if args.etcd.is_empty() {
            None
        } else {
            let gpus = gpus
                .read()
                .into_iter()
                .map(|g| membership::GpuRecord {
                    index: g.index,
                    memory_bytes: g.total_bytes,
                })
                .collect();
            let mut capacity = membership::detect_capacity(gpus);
            if let Some(c) = args.cpu_millis {
                capacity.cpu_millis = c;
            }
            if let Some(m) = args.memory_mb {
                capacity.memory_bytes = m << 20;
            }
            let labels = args
                .labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--label {l:?}: expected KEY=VALUE"))
                })
                .collect::<anyhow::Result<_>>()?;
            let ttl = std::time::Duration::from_secs(args.lease_ttl.max(1));
            Some(membership::MembershipConfig {
                endpoints: args.etcd.clone(),
                node: membership::NodeRecord {
                    id: node_id.clone(),
                    addr: args.advertise.clone().unwrap_or_else(|| addr.to_string()),
                    capacity,
                    labels,
                    started_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                },
                lease_ttl: ttl,
                interval: (ttl / 3).clamp(
                    std::time::Duration::from_millis(300),
                    std::time::Duration::from_secs(1),
                ),
            })
        };
        let trust = match &args.trust_file {
            Some(p) => troupe_node::lineage::TrustFile::read(p).map_err(anyhow::Error::msg)?,
            None => Default::default(),
        };
        let opts = ServeOptions {
            node: NodeOptions {
                repository: args.model_repository,
                backend_threads: args.backend_threads.max(1),
                onnxruntime_lib: args.onnxruntime_lib,
                max_tensor_bytes: args.max_tensor_bytes,
                fault_injection: args.enable_fault_injection,
                audit_log: Some(args.audit_log),
                node_id: node_id.clone(),
                explain_memory_bytes: args.explain_memory_mb << 20,
                explain_call_bytes: args.explain_call_memory_mb << 20,
                model_roots: args.model_roots,
                store: args.store,
                store_queue: args.store_queue.max(1),
                retention: troupe_monitor::Retention {
                    max_age: Some(args.store_max_age),
                    max_bytes: (args.store_max_mb > 0).then_some(args.store_max_mb << 20),
                },
                trust,
                gpus,
            },
            node_id,
            max_message_bytes: args.max_message_bytes,
            membership,
            metrics_listen: args.observability.metrics_listen,
            trace_ui: args.observability.trace_ui_url,
            tls,
            tokens,
        };
        troupe_node::serve(opts, listener, troupe_telemetry::process::shutdown_signal()).await?;
        anyhow::Ok(())
    });
    {
        let _rt = runtime.enter();
        telemetry.shutdown();
    }
    result
}
