//! One call, and the name its failure is counted under.

use std::time::{Duration, Instant};

use troupe_proto::codes::code_name;
use troupe_proto::inference::ModelInferRequest;

use crate::target::Client;

/// Error name for an open-loop request not sent because too many were outstanding.
pub const DROPPED: &str = "dropped";
/// Error name for an answer whose outputs do not match its raw buffers.
pub const BAD_RESPONSE: &str = "bad_response";

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
