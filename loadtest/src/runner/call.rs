//! One call, and the name its failure is counted under.

use std::time::{Duration, Instant};

use troupe_proto::codes::code_name;
use troupe_proto::inference::ModelInferRequest;

use tonic::transport::Channel;
use troupe_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;

use crate::target::{Client, Rest, rest_failure};

/// Error name for an open-loop request not sent because too many were outstanding.
pub const DROPPED: &str = "dropped";
/// Error name for an answer whose outputs do not match its raw buffers.
pub const BAD_RESPONSE: &str = "bad_response";
/// Error name for a request that could not be written as a REST body.
pub const BAD_REQUEST: &str = "bad_request";

/// Why a counted call failed: the name it is counted under, and the server's message.
pub(super) struct Failure {
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub(super) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub(super) type Outcome = Result<(), Failure>;

/// One call.
pub(super) async fn call(
    client: &mut Client,
    req: ModelInferRequest,
    timeout: Duration,
) -> Outcome {
    match client {
        Client::Grpc(c) => call_grpc(c, req, timeout).await,
        Client::Rest(r) => call_rest(r, req, timeout).await,
    }
}

/// One call over REST.
async fn call_rest(rest: &Rest, req: ModelInferRequest, timeout: Duration) -> Outcome {
    use troupe_proto::rest::tensor::{HEADER_LENGTH, decode_response, encode_request};
    let (body, json_length) =
        encode_request(&req, rest.binary).map_err(|e| Failure::new(BAD_REQUEST, e))?;
    let mut post = rest
        .http
        .post(rest.model_url(&req.model_name, &req.model_version, "/infer"))
        .timeout(timeout)
        .body(body);
    if let Some(n) = json_length {
        post = post.header(HEADER_LENGTH, n);
    }
    let resp = post.send().await.map_err(|e| {
        let code = if e.is_timeout() {
            tonic::Code::DeadlineExceeded
        } else {
            tonic::Code::Unavailable
        };
        Failure::new(code_name(code), e.to_string())
    })?;
    let status = resp.status().as_u16();
    let header = resp
        .headers()
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = resp
        .bytes()
        .await
        .map_err(|e| Failure::new(code_name(tonic::Code::Unavailable), e.to_string()))?;
    if status != 200 {
        let (code, message) = rest_failure(status, &body);
        return Err(Failure::new(code, message));
    }
    decode_response(&body, header)
        .map(|_| ())
        .map_err(|e| Failure::new(BAD_RESPONSE, e))
}

/// One call over gRPC.
async fn call_grpc(
    client: &mut GrpcInferenceServiceClient<Channel>,
    req: ModelInferRequest,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let mut request = tonic::Request::new(req);
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.model_infer(request)).await {
        Err(_) => Err(Failure::new(
            code_name(tonic::Code::DeadlineExceeded),
            format!("no answer within the {timeout:?} timeout"),
        )),
        // A server that enforces the deadline itself may answer CANCELLED (tonic does)
        // just before our own timer fires: that is the deadline too.
        Ok(Err(status))
            if status.code() == tonic::Code::Cancelled && start.elapsed() >= timeout =>
        {
            Err(Failure::new(
                code_name(tonic::Code::DeadlineExceeded),
                status.message(),
            ))
        }
        Ok(Err(status)) => Err(Failure::new(code_name(status.code()), status.message())),
        Ok(Ok(resp)) => {
            let r = resp.get_ref();
            // Raw outputs (one buffer per output), or typed contents (no buffers).
            if r.raw_output_contents.is_empty() || r.raw_output_contents.len() == r.outputs.len() {
                Ok(())
            } else {
                Err(Failure::new(
                    BAD_RESPONSE,
                    format!(
                        "{} outputs but {} raw buffers",
                        r.outputs.len(),
                        r.raw_output_contents.len()
                    ),
                ))
            }
        }
    }
}
