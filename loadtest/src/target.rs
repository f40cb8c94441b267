//! The server under load, over gRPC or over the Open Inference Protocol's REST API.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use troupe_proto::codes::{code_name, code_of_http};
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use troupe_proto::inference::{ModelMetadataRequest, ModelMetadataResponse};

use crate::error::{LoadError, error_chain};

/// How calls reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// `inference.GRPCInferenceService` over HTTP/2.
    #[default]
    Grpc,
    /// REST with Triton's binary tensor extension (tritonclient.http's default).
    Http,
    /// REST with tensors as JSON (what every KServe v2 REST server takes).
    HttpJson,
}

/// A REST target: its base URL and a pooled HTTP/1.1 client (a connection per call in
/// flight, kept alive).
#[derive(Debug)]
pub(crate) struct Rest {
    pub base: String,
    pub http: reqwest::Client,
    /// Binary tensors (Triton's extension) rather than JSON.
    pub binary: bool,
}

impl Rest {
    /// The URL of a model's endpoint (`tail`: "" for its metadata, "/infer", ...).
    pub fn model_url(&self, model: &str, version: &str, tail: &str) -> String {
        match version {
            "" => format!("{}/v2/models/{model}{tail}", self.base),
            v => format!("{}/v2/models/{model}/versions/{v}{tail}", self.base),
        }
    }
}

/// One connection's client.
#[derive(Clone)]
pub(crate) enum Client {
    Grpc(GrpcInferenceServiceClient<Channel>),
    Rest(Arc<Rest>),
}

/// A REST error answer as (gRPC code name, message).
pub(crate) fn rest_failure(status: u16, body: &[u8]) -> (&'static str, String) {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    (
        code_name(code_of_http(status)),
        format!("HTTP {status}: {message}"),
    )
}

/// How to connect to a [`Target`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit on establishing each TCP connection.
    pub connect_timeout: Duration,
    /// HTTP/2 connections to open; calls are spread over them round-robin (gRPC).
    pub connections: usize,
    pub protocol: Protocol,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            connections: 1,
            protocol: Protocol::Grpc,
        }
    }
}

/// One Open Inference Protocol server, reached over one or more gRPC channels.
#[derive(Clone)]
pub struct Target {
    addr: String,
    clients: Vec<Client>,
}

impl Target {
    /// Connects to `HOST:PORT` (or `http://HOST:PORT`), opening every connection now so
    /// that an unreachable address fails here, with the address in the message.
    pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Self, LoadError> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        if opts.protocol != Protocol::Grpc {
            return Self::connect_rest(addr, uri, opts).await;
        }
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| {
                LoadError::Invalid(format!(
                    "target '{addr}' is not a valid address (HOST:PORT): {}",
                    error_chain(&e)
                ))
            })?
            .connect_timeout(opts.connect_timeout)
            .tcp_nodelay(true);
        let mut channels = Vec::new();
        for _ in 0..opts.connections.max(1) {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| LoadError::Unreachable {
                    addr: addr.to_string(),
                    reason: error_chain(&e),
                })?;
            channels.push(channel);
        }
        Ok(Self::from_channels(addr, channels))
    }

    /// A REST target: checks that `GET /v2/health/live` answers, so that an unreachable
    /// address fails here.
    async fn connect_rest(
        addr: &str,
        base: String,
        opts: &ConnectOptions,
    ) -> Result<Self, LoadError> {
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .build()
            .map_err(|e| LoadError::Invalid(format!("HTTP client: {}", error_chain(&e))))?;
        let unreachable = |reason: String| LoadError::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        let live = http
            .get(format!("{base}/v2/health/live"))
            .timeout(opts.connect_timeout)
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if !live.status().is_success() {
            return Err(unreachable(format!(
                "GET /v2/health/live answered {}",
                live.status()
            )));
        }
        let rest = Arc::new(Rest {
            base: base.trim_end_matches('/').to_string(),
            http,
            binary: opts.protocol == Protocol::Http,
        });
        Ok(Self {
            addr: addr.to_string(),
            clients: vec![Client::Rest(rest)],
        })
    }

    /// Wraps channels that are already set up (at least one).
    pub fn from_channels(addr: impl Into<String>, channels: Vec<Channel>) -> Self {
        let clients = channels
            .into_iter()
            .map(|c| {
                Client::Grpc(
                    GrpcInferenceServiceClient::new(c)
                        .max_decoding_message_size(usize::MAX)
                        .max_encoding_message_size(usize::MAX),
                )
            })
            .collect();
        Self {
            addr: addr.into(),
            clients,
        }
    }

    /// The address given to [`Target::connect`].
    pub fn address(&self) -> &str {
        &self.addr
    }

    /// A client on connection `i` modulo the number of connections.
    pub(crate) fn client(&self, i: usize) -> Option<Client> {
        if self.clients.is_empty() {
            return None;
        }
        self.clients.get(i % self.clients.len()).cloned()
    }

    /// `ModelMetadata` for one model (empty version: the server's choice).
    pub async fn model_metadata(
        &self,
        model: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<ModelMetadataResponse, LoadError> {
        let fail = |code: &'static str, message: String| LoadError::Metadata {
            addr: self.addr.clone(),
            model: model.to_string(),
            code,
            message,
        };
        let client = self
            .client(0)
            .ok_or_else(|| LoadError::Invalid("a target needs at least one channel".into()))?;
        let mut client = match client {
            Client::Grpc(c) => c,
            Client::Rest(r) => {
                return rest_metadata(&r, model, version, timeout)
                    .await
                    .map_err(|(c, m)| fail(c, m));
            }
        };
        let mut req = tonic::Request::new(ModelMetadataRequest {
            name: model.to_string(),
            version: version.to_string(),
        });
        req.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.model_metadata(req)).await {
            Err(_) => Err(fail(
                "DEADLINE_EXCEEDED",
                format!("no answer in {timeout:?}"),
            )),
            Ok(Err(status)) => Err(fail(code_name(status.code()), status.message().to_string())),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }
}

/// `GET /v2/models/{model}`: the metadata over REST, as the gRPC answer.
async fn rest_metadata(
    rest: &Rest,
    model: &str,
    version: &str,
    timeout: Duration,
) -> Result<ModelMetadataResponse, (&'static str, String)> {
    let resp = rest
        .http
        .get(rest.model_url(model, version, ""))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| (code_name(tonic::Code::Unavailable), error_chain(&e)))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| (code_name(tonic::Code::Unavailable), error_chain(&e)))?;
    if status != 200 {
        return Err(rest_failure(status, &body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        (
            code_name(tonic::Code::Internal),
            format!("model metadata: {e}"),
        )
    })?;
    Ok(troupe_proto::rest::json::model_metadata_from_json(
        &v, model,
    ))
}
