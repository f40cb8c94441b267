//! [`Client`]: a connection to one node or router, the calls wrapped for it (health,
//! infer with retries, explain) and the generated gRPC clients behind them, all sending
//! the bearer token when one is set ([`Client::with_token`]).

use tonic::transport::{Channel, Endpoint};
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use troupe_proto::inference::{self as pb};
use troupe_proto::troupe::cluster_client::ClusterClient;
use troupe_proto::troupe::explainer_client::ExplainerClient;
use troupe_proto::troupe::feedback_client::FeedbackClient;
use troupe_proto::troupe::models_client::ModelsClient;
use troupe_proto::troupe::monitor_client::MonitorClient;
use troupe_proto::troupe::review_client::ReviewClient;

use crate::wire::request;
use crate::{
    Bearer, CallOptions, ClientError, ClientTls, ExplainOptions, Explanation, InferResult,
    InputTensor, Transport, decode_response, explain_request, infer_request,
};

/// A connection to one node or router.
///
/// Every call, through the wrapped methods or the generated stubs, carries the bearer
/// token set with [`Client::with_token`] (none by default: anonymous).
///
/// ```no_run
/// # async fn demo() -> Result<(), troupe_client::ClientError> {
/// use troupe_client::Client;
/// let token = std::env::var("TROUPE_TOKEN").expect("an admin token in TROUPE_TOKEN");
/// let mut c = Client::connect("127.0.0.1:8001").await?.with_token(&token)?;
/// c.models().delete(troupe_client::troupe_proto::troupe::DeleteModelRequest {
///     name: "my_mlp".into(),
///     ..Default::default()
/// }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    /// The token the stubs' interceptors send (a copy, to tell whether one is set).
    bearer: Bearer,
    inference: GrpcInferenceServiceClient<Transport>,
    models: ModelsClient<Transport>,
    cluster: ClusterClient<Transport>,
    explainer: ExplainerClient<Transport>,
    feedback: FeedbackClient<Transport>,
    review: ReviewClient<Transport>,
    monitor: MonitorClient<Transport>,
}

impl std::fmt::Debug for Client {
    /// Shows whether a token is set, never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("token", &self.has_token())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `http://HOST:PORT` (a bare `HOST:PORT` works too).
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(uri)?.connect().await?;
        Ok(Self::from_channel(channel))
    }

    /// Connects with TLS (`https://HOST:PORT`; a bare `HOST:PORT` works too), checking
    /// the server against `tls` (a CA, the expected name, a client certificate for
    /// mutual TLS).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use troupe_client::{Client, ClientTls};
    /// let tls = ClientTls::with_ca_file("ca.pem".as_ref())?;
    /// let mut c = Client::connect_tls("localhost:8001", &tls).await?;
    /// assert!(c.server_ready().await?);
    /// # Ok(()) }
    /// ```
    pub async fn connect_tls(addr: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        let uri = match addr.split_once("://") {
            Some((_, rest)) => format!("https://{rest}"),
            None => format!("https://{addr}"),
        };
        let channel = Endpoint::from_shared(uri)?
            .tls_config(tls.client_config())?
            .connect()
            .await?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing channel (no token; see [`Client::with_token`]).
    pub fn from_channel(channel: Channel) -> Self {
        Self::build(channel, Bearer::none())
    }

    fn build(channel: Channel, bearer: Bearer) -> Self {
        let t = Transport::new(channel.clone(), bearer.clone());
        Self {
            inference: GrpcInferenceServiceClient::new(t.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            models: ModelsClient::new(t.clone()),
            explainer: ExplainerClient::new(t.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            feedback: FeedbackClient::new(t.clone()),
            review: ReviewClient::new(t.clone()),
            monitor: MonitorClient::new(t.clone()),
            cluster: ClusterClient::new(t),
            channel,
            bearer,
        }
    }

    /// The same connection, sending `authorization: Bearer <token>` on every call from
    /// now on (the stubs' included), in place of any token set before. A token that
    /// cannot be sent (empty, spaces, control or non-ASCII characters) is
    /// [`ClientError::Token`]; surrounding whitespace is dropped.
    pub fn with_token(self, token: &str) -> Result<Self, ClientError> {
        Ok(Self::build(self.channel, Bearer::new(token)?))
    }

    /// Whether calls carry a bearer token.
    pub fn has_token(&self) -> bool {
        self.bearer.is_set()
    }

    /// The generated Open Inference Protocol client, for calls not wrapped here.
    pub fn inference(&mut self) -> &mut GrpcInferenceServiceClient<Transport> {
        &mut self.inference
    }

    /// The generated `troupe.v1.Cluster` client (routers only): nodes and placements.
    pub fn cluster(&mut self) -> &mut ClusterClient<Transport> {
        &mut self.cluster
    }

    /// The generated `troupe.v1.Explainer` client.
    pub fn explainer(&mut self) -> &mut ExplainerClient<Transport> {
        &mut self.explainer
    }

    /// The generated `troupe.v1.Feedback` client: ground truth for earlier calls.
    pub fn feedback(&mut self) -> &mut FeedbackClient<Transport> {
        &mut self.feedback
    }

    /// The generated `troupe.v1.Review` client: the human review queue.
    pub fn review(&mut self) -> &mut ReviewClient<Transport> {
        &mut self.review
    }

    /// The generated `troupe.v1.Monitor` client: a model's live quality, and the lineage
    /// of an answer.
    pub fn monitor(&mut self) -> &mut MonitorClient<Transport> {
        &mut self.monitor
    }

    /// The generated `troupe.v1.Models` client.
    pub fn models(&mut self) -> &mut ModelsClient<Transport> {
        &mut self.models
    }

    pub async fn server_live(&mut self) -> Result<bool, ClientError> {
        Ok(self
            .inference
            .server_live(pb::ServerLiveRequest {})
            .await?
            .into_inner()
            .live)
    }

    pub async fn server_ready(&mut self) -> Result<bool, ClientError> {
        Ok(self
            .inference
            .server_ready(pb::ServerReadyRequest {})
            .await?
            .into_inner()
            .ready)
    }

    pub async fn model_ready(&mut self, name: &str) -> Result<bool, ClientError> {
        let r = pb::ModelReadyRequest {
            name: name.into(),
            version: String::new(),
        };
        Ok(self.inference.model_ready(r).await?.into_inner().ready)
    }

    /// Runs a model (latest version).
    pub async fn infer(
        &mut self,
        model: &str,
        inputs: Vec<InputTensor>,
    ) -> Result<InferResult, ClientError> {
        self.infer_with(model, inputs, &CallOptions::default())
            .await
    }

    /// Runs a model with a deadline, trace context and retry policy.
    ///
    /// ```no_run
    /// # async fn demo(c: &mut troupe_client::Client) -> Result<(), troupe_client::ClientError> {
    /// use std::time::Duration;
    /// use troupe_client::{CallOptions, InputTensor, RetryPolicy};
    /// let opts = CallOptions { timeout: Some(Duration::from_millis(200)), retry: RetryPolicy::attempts(3), ..Default::default() };
    /// let out = c.infer_with("mlp_onnx", vec![InputTensor::from_slice("input", vec![1, 16], &[0f32; 16])], &opts).await?;
    /// let y: Vec<f32> = out.values("output")?;
    /// # Ok(()) }
    /// ```
    pub async fn infer_with(
        &mut self,
        model: &str,
        inputs: Vec<InputTensor>,
        opts: &CallOptions,
    ) -> Result<InferResult, ClientError> {
        let mut body = infer_request(model, &opts.version, inputs);
        opts.set_id(&mut body);
        let mut attempt = 1;
        loop {
            let req = request(body.clone(), opts)?;
            match self.inference.model_infer(req).await {
                Ok(resp) => return decode_response(resp.into_inner()),
                Err(s)
                    if attempt < opts.retry.max_attempts
                        && opts.retry.retry_on.contains(&s.code()) =>
                {
                    attempt += 1;
                    tokio::time::sleep(opts.retry.backoff(attempt)).await;
                }
                Err(s) => return Err(s.into()),
            }
        }
    }

    /// Explains one call: feature attributions of each input (the `Explain` RPC).
    ///
    /// ```no_run
    /// # async fn demo(c: &mut troupe_client::Client) -> Result<(), troupe_client::ClientError> {
    /// use troupe_client::{CallOptions, ExplainOptions, InputTensor};
    /// let x = InputTensor::from_slice("input", vec![1, 16], &[0.5f32; 16]);
    /// let e = c.explain("mlp_torch", vec![x], &ExplainOptions::method("integrated_gradients"), &CallOptions::default()).await?;
    /// let attributions = e.attribution("input")?;
    /// # Ok(()) }
    /// ```
    pub async fn explain(
        &mut self,
        model: &str,
        inputs: Vec<InputTensor>,
        how: &ExplainOptions,
        opts: &CallOptions,
    ) -> Result<Explanation, ClientError> {
        let mut body = explain_request(model, &opts.version, inputs, how);
        if let Some(r) = body.request.as_mut() {
            opts.set_id(r);
        }
        let resp = self.explainer.explain(request(body, opts)?).await?;
        let inner = resp.into_inner().response.unwrap_or_default();
        Ok(Explanation {
            result: decode_response(inner)?,
        })
    }
}
