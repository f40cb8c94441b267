//! Assembles the node's gRPC server: the inference and Models services, grpc.health.v1,
//! server reflection (v1 and v1alpha), and on the same port the Open Inference Protocol
//! over HTTP, `/metrics` and the dashboard at `/`, with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tracing::{info, warn};
use troupe_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use troupe_proto::troupe::explainer_server::ExplainerServer;
use troupe_proto::troupe::models_server::ModelsServer;

use crate::error::NodeError;
use crate::follower;
use crate::membership::{self, MembershipConfig};
use crate::registry::{NodeOptions, Registry};
use crate::service::inference::InferenceService;
use crate::service::models::ModelsService;

/// Everything `serve` needs besides the listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub node: NodeOptions,
    pub node_id: String,
    /// Largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    /// Cluster membership through etcd (`--etcd`); None for a standalone node.
    pub membership: Option<MembershipConfig>,
    /// Where to serve Prometheus metrics (GET /metrics); None: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The tracing UI's URL prefix for a trace id (the dashboard's links).
    pub trace_ui: Option<String>,
    /// Serve gRPC over TLS (optionally asking clients for certificates).
    pub tls: Option<troupe_proto::tls::ServerTls>,
    /// Who may call what (`--auth-tokens`; default: inference open, admin refused).
    pub tokens: Arc<troupe_proto::auth::Tokens>,
}

/// Serves until `shutdown` resolves, then stops accepting, finishes the calls in flight,
/// and drains every model. Models of the repository load after the listener is up;
/// ServerReady turns true when they are loaded.
pub async fn serve(
    opts: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let registry = Registry::start(opts.node.clone()).await?;
    // A store named on the command line is opened now: a bad one stops the start.
    if opts.node.store.is_some() {
        registry.monitoring().await?;
    }
    let ready = Arc::new(AtomicBool::new(false));
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<GrpcInferenceServiceServer<InferenceService>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;

    let inference =
        GrpcInferenceServiceServer::new(InferenceService::new(registry.clone(), ready.clone()))
            .max_decoding_message_size(opts.max_message_bytes)
            .max_encoding_message_size(opts.max_message_bytes);
    // The Open Inference Protocol over HTTP on the same port, answered by the same
    // service.
    let rest = troupe_proto::rest::routes(troupe_proto::rest::Rest {
        service: Arc::new(InferenceService::new(registry.clone(), ready.clone())),
        max_body_bytes: opts.max_message_bytes,
    });
    let models = ModelsServer::new(ModelsService::new(registry.clone(), opts.node_id.clone()));
    let explainer = ExplainerServer::new(troupe_proto::explain::ExplainService(
        InferenceService::new(registry.clone(), ready.clone()),
    ))
    .max_decoding_message_size(opts.max_message_bytes)
    .max_encoding_message_size(opts.max_message_bytes);
    let monitoring = Arc::new(crate::service::feedback::NodeMonitoring(registry.clone()));
    let feedback = troupe_proto::troupe::feedback_server::FeedbackServer::new(
        troupe_monitor::service::FeedbackService(monitoring.clone()),
    );
    let review = troupe_proto::troupe::review_server::ReviewServer::new(
        troupe_monitor::service::ReviewService(monitoring.clone()),
    );
    let monitor = troupe_proto::troupe::monitor_server::MonitorServer::new(
        troupe_monitor::service::MonitorService {
            stores: monitoring.clone(),
            configs: monitoring,
        },
    );
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(troupe_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(troupe_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| NodeError::Internal(format!("reflection: {e}")))?;

    // Turns true once the repository's models are loaded (the placement follower waits
    // for it, so the two never race over a name).
    let (loaded_tx, mut loaded_rx) = tokio::sync::watch::channel(false);
    let loader = {
        let registry = registry.clone();
        let ready = ready.clone();
        let health = health.clone();
        tokio::spawn(async move {
            for (name, r) in registry.load_repository().await {
                if let Err(e) = r {
                    warn!(model = %name, error = %e, "model not loaded");
                }
            }
            let _ = loaded_tx.send(true);
            ready.store(true, Ordering::Release);
            health
                .set_serving::<GrpcInferenceServiceServer<InferenceService>>()
                .await;
            health
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
            info!(models = registry.list().len(), "node ready");
        })
    };

    // GET /metrics: on the node's own port, and alone on --metrics-listen.
    let metrics = troupe_telemetry::metrics::registry(crate::metrics::Scrape(registry.clone()));
    let rest = rest
        .merge(troupe_telemetry::metrics::routes(metrics.clone()))
        .merge(crate::dashboard::routes(
            registry.clone(),
            opts.trace_ui.clone(),
        ));
    let metrics_task = match opts.metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                NodeError::Internal(format!("cannot listen for metrics on {addr}: {e}"))
            })?;
            Some(tokio::spawn(troupe_telemetry::metrics::serve(l, metrics)))
        }
        None => None,
    };

    // Membership: registered while serving; the lease is revoked as soon as shutdown
    // starts, before the calls in flight drain.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let member = opts
        .membership
        .clone()
        .map(|cfg| tokio::spawn(membership::run(cfg, registry.clone(), stop_rx.clone())));
    // Placements: load and unload what the router assigned to this node.
    let follower = opts.membership.as_ref().map(|cfg| {
        let (endpoints, id, registry) =
            (cfg.endpoints.clone(), cfg.node.id.clone(), registry.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = loaded_rx.wait_for(|l| *l) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            follower::run(endpoints, id, registry, stop).await
        })
    });
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };

    let addr = listener
        .local_addr()
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    info!(%addr, "serving");
    let mut server = troupe_proto::http2::server();
    if let Some(tls) = &opts.tls {
        server = server
            .tls_config(tls.server_config())
            .map_err(|e| NodeError::FailedPrecondition(format!("TLS: {e}")))?;
        info!(mutual = tls.client_ca_pem.is_some(), "serving over TLS");
    }
    let mut grpc = tonic::service::Routes::builder();
    grpc.add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inference)
        .add_service(models)
        .add_service(explainer)
        .add_service(feedback)
        .add_service(monitor)
        .add_service(review);
    let routes = troupe_proto::rest::with_grpc(grpc.routes(), rest);
    let result = server
        // HTTP/1.1 beside HTTP/2 (h2c or TLS): REST clients and probes.
        .accept_http1(true)
        .layer(troupe_proto::limits::status_fix())
        .layer(troupe_proto::limits::DeadlineLayer)
        .layer(troupe_proto::auth::AuthLayer(opts.tokens.clone()))
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    info!("stopped accepting; draining models");
    if let Some(t) = metrics_task {
        t.abort();
    }
    if let Some(m) = member {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), m).await;
    }
    if let Some(f) = follower {
        // A load in progress may take longer: the process is going away anyway.
        let abort = f.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(3), f)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    loader.abort();
    registry.shutdown().await;
    // Predictions still queued for the store are written before the process ends.
    if let Some(m) = registry.open_monitoring() {
        let lost = m.recorder.drain(std::time::Duration::from_secs(5)).await;
        if lost > 0 {
            warn!(
                predictions = lost,
                "predictions not written to the store at shutdown"
            );
        }
    }
    result.map_err(|e| NodeError::Internal(format!("server: {e}")))
}
