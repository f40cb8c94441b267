//! The server under load.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use troupe_proto::codes::code_name;
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use troupe_proto::inference::{ModelMetadataRequest, ModelMetadataResponse};

use crate::error::{LoadError, error_chain};

pub(crate) type Client = GrpcInferenceServiceClient<Channel>;

/// How to connect to a [`Target`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit on establishing each TCP connection.
    pub connect_timeout: Duration,
    /// HTTP/2 connections to open; calls are spread over them round-robin.
    pub connections: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            connections: 1,
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

    /// Wraps channels that are already set up (at least one).
    pub fn from_channels(addr: impl Into<String>, channels: Vec<Channel>) -> Self {
        let clients = channels
            .into_iter()
            .map(|c| {
                GrpcInferenceServiceClient::new(c)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX)
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
        let mut client = self
            .client(0)
            .ok_or_else(|| LoadError::Invalid("a target needs at least one channel".into()))?;
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
