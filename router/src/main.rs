//! `troupe-router`: routes calls to the cluster's nodes and, when elected, places models.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use troupe_proto::explain::ExplainService;
use troupe_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use troupe_proto::troupe::cluster_server::ClusterServer;
use troupe_proto::troupe::explainer_server::ExplainerServer;
use troupe_proto::troupe::models_server::ModelsServer;
use troupe_router::service::passthrough::with_passthrough;
use troupe_router::service::{ClusterService, InferenceService, ModelsService, Router};
use troupe_router::state::Store;

#[derive(Parser, Debug)]
#[command(
    name = "troupe-router",
    version,
    about = "Troupe router: one endpoint for a cluster of troupe-nodes"
)]
struct Args {
    /// etcd endpoints (comma-separated).
    #[arg(long, env = "TROUPE_ETCD", value_delimiter = ',', required = true)]
    etcd: Vec<String>,
    /// Address to serve gRPC on (port 0 picks a free port; the address is printed).
    #[arg(long, env = "TROUPE_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// This router's name in the leader election (default: its address).
    #[arg(long, env = "TROUPE_ROUTER_ID")]
    router_id: Option<String>,
    /// Reach the nodes over TLS, trusting this CA (PEM).
    #[arg(long, env = "TROUPE_NODE_TLS_CA")]
    node_tls_ca: Option<std::path::PathBuf>,
    /// Largest gRPC message taken from a caller or a node, in bytes (larger ones get
    /// RESOURCE_EXHAUSTED).
    #[arg(long, env = "TROUPE_MAX_MESSAGE_BYTES", default_value_t = troupe_router::routing::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Tokens file (TOML: hashed bearer tokens with scopes; see docs). Without one,
    /// inference is open and admin calls (create, delete) are refused.
    #[arg(long, env = "TROUPE_AUTH_TOKENS")]
    auth_tokens: Option<std::path::PathBuf>,
    /// A directory artifacts of created models must lie under (repeatable); without
    /// one, only the nodes check.
    #[arg(long = "model-root", env = "TROUPE_MODEL_ROOTS", value_delimiter = ',')]
    model_roots: Vec<std::path::PathBuf>,
    /// The router's bearer token for the nodes (they need it when they have a tokens
    /// file; give it the scopes infer and relay there).
    #[arg(long, env = "TROUPE_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
    /// The prediction store the nodes write to (postgres://USER@HOST:PORT/DB, or
    /// sqlite://PATH on one machine), for ground truth and quality (docs/monitoring.md).
    #[arg(long, env = "TROUPE_STORE")]
    store: Option<String>,
    #[command(flatten)]
    tls: troupe_proto::tls::ServerTlsArgs,
    #[command(flatten)]
    observability: troupe_telemetry::process::ObservabilityArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (flushed on exit).
    let mut telemetry =
        troupe_telemetry::init("troupe-router", &args.observability.log).context("telemetry")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("troupe-router listening on {addr}");
    std::io::stdout().flush()?;
    let id = args.router_id.unwrap_or_else(|| addr.to_string());

    let store = Arc::new(Store::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(troupe_router::state::sync(
        store.clone(),
        args.etcd.clone(),
        stop_rx.clone(),
    ));
    let is_leader = Arc::new(AtomicBool::new(false));
    let leader = tokio::spawn(troupe_router::leader::run(
        store.clone(),
        args.etcd.clone(),
        id.clone(),
        is_leader.clone(),
        stop_rx,
    ));
    let tls = args.tls.load().map_err(anyhow::Error::msg)?;
    let node_tls = args
        .node_tls_ca
        .as_deref()
        .map(troupe_proto::tls::ClientTls::with_ca_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let tokens = Arc::new(
        troupe_proto::auth::Tokens::from_option(args.auth_tokens.as_deref())
            .map_err(anyhow::Error::msg)?,
    );
    let router = Router::with_options(
        store,
        args.etcd.clone(),
        troupe_router::routing::RouterOptions {
            node_tls,
            node_token: args.node_token.clone(),
            max_message_bytes: args.max_message_bytes,
            model_roots: args.model_roots.clone(),
        },
    )
    .map_err(anyhow::Error::msg)?;
    let store = match &args.store {
        Some(url) => {
            let s = troupe_monitor::Store::open(url).await?;
            info!(store = %s.shown(), "prediction store opened");
            Some(s)
        }
        None => None,
    };
    let monitoring = std::sync::Arc::new(troupe_router::service::monitoring::RouterMonitoring {
        store,
        router: router.clone(),
    });
    // GET /metrics: on the router's own port, and alone on --metrics-listen.
    let registry = troupe_telemetry::metrics::registry(troupe_router::metrics::Scrape {
        router: router.clone(),
        leader: is_leader.clone(),
    });
    let metrics = match args.observability.metrics_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen for metrics on {a}"))?;
            Some(tokio::spawn(troupe_telemetry::metrics::serve(
                l,
                registry.clone(),
            )))
        }
        None => None,
    };

    info!(%addr, router = %id, "serving");
    let shutdown = async move {
        troupe_telemetry::process::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let mut server = troupe_proto::http2::server();
    if let Some(t) = &tls {
        server = server.tls_config(t.server_config()).context("TLS")?;
        info!(mutual = t.client_ca_pem.is_some(), "serving over TLS");
    }
    // The Open Inference Protocol over HTTP on the same port, answered by the same
    // service (so forwarded to a replica over gRPC).
    let rest = troupe_proto::rest::routes(troupe_proto::rest::Rest {
        service: Arc::new(InferenceService(router.clone())),
        max_body_bytes: args.max_message_bytes,
    })
    .merge(troupe_telemetry::metrics::routes(registry))
    .merge(troupe_router::dashboard::routes(
        troupe_router::dashboard::Dashboard {
            router: router.clone(),
            router_id: id.clone(),
            leader: is_leader.clone(),
            trace_ui: args.observability.trace_ui_url.clone(),
        },
    ));
    let mut grpc = tonic::service::Routes::builder();
    grpc.add_service(
        GrpcInferenceServiceServer::new(InferenceService(router.clone()))
            .max_decoding_message_size(args.max_message_bytes)
            .max_encoding_message_size(args.max_message_bytes),
    )
    .add_service(ModelsServer::new(ModelsService(router.clone())))
    .add_service(
        ExplainerServer::new(ExplainService(InferenceService(router.clone())))
            .max_decoding_message_size(args.max_message_bytes)
            .max_encoding_message_size(args.max_message_bytes),
    )
    .add_service(ClusterServer::new(ClusterService(router.clone())))
    .add_service(troupe_proto::troupe::feedback_server::FeedbackServer::new(
        troupe_monitor::service::FeedbackService(monitoring.clone()),
    ))
    .add_service(troupe_proto::troupe::review_server::ReviewServer::new(
        troupe_monitor::service::ReviewService(monitoring.clone()),
    ))
    .add_service(troupe_proto::troupe::monitor_server::MonitorServer::new(
        troupe_monitor::service::MonitorService {
            stores: monitoring.clone(),
            configs: monitoring,
        },
    ));
    server
        // HTTP/1.1 beside HTTP/2 (h2c or TLS): REST clients and probes.
        .accept_http1(true)
        .layer(troupe_proto::limits::status_fix())
        .layer(troupe_proto::limits::DeadlineLayer)
        .layer(troupe_proto::auth::AuthLayer(tokens))
        .add_routes(troupe_proto::rest::with_grpc(
            with_passthrough(grpc.routes(), router, args.max_message_bytes),
            rest,
        ))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), leader).await;
    sync.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    telemetry.shutdown();
    Ok(())
}
