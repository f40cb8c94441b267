//! Two of tonic's own answers, made to say what the gRPC spec and every stock client
//! expect (grpc-go and Triton do): a message over the server's size limit is
//! RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE), and a call whose `grpc-timeout` passed is
//! DEADLINE_EXCEEDED (tonic's timer says CANCELLED "Timeout expired"). [`status_fix`]
//! rewrites those two answers, and only them, on the way out of a node or a router, and
//! [`DeadlineLayer`] answers a passed deadline before tonic's timer does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;

/// The start of tonic's message for a request over `max_decoding_message_size`.
const TOO_LARGE: &str = "Error, decoded message length too large";
/// tonic's message when the server's timer for `grpc-timeout` fires.
const TIMEOUT: &str = "Timeout expired";

/// The layer that applies [`fix_status`] to every answer.
pub type StatusFixLayer = tower::util::MapResponseLayer<
    fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>,
>;

/// [`fix_status`] as a layer for a tonic server.
pub fn status_fix() -> StatusFixLayer {
    tower::util::MapResponseLayer::new(|mut resp: http::Response<tonic::body::Body>| {
        fix_status(resp.headers_mut());
        resp
    })
}

/// Sets `grpc-status` to RESOURCE_EXHAUSTED where tonic said OUT_OF_RANGE because the
/// request was too large, and to DEADLINE_EXCEEDED where its timer said CANCELLED
/// (trailers-only answers carry the status in the headers).
pub fn fix_status(headers: &mut http::HeaderMap) {
    let status = headers.get("grpc-status").map(|v| v.as_bytes().to_vec());
    let says = |what: &str| {
        headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .and_then(|m| percent_decoded_prefix(m, what.len()))
            .is_some_and(|m| m == what)
    };
    let fixed = match status.as_deref() {
        Some(b"11") if says(TOO_LARGE) => "8", // RESOURCE_EXHAUSTED
        Some(b"1") if says(TIMEOUT) => {
            headers.insert(
                "grpc-message",
                http::HeaderValue::from_static(
                    "deadline%20exceeded:%20the%20call's%20grpc-timeout%20passed%20before%20it%20was%20answered",
                ),
            );
            "4" // DEADLINE_EXCEEDED
        }
        _ => return,
    };
    headers.insert("grpc-status", http::HeaderValue::from_static(fixed));
}

/// The first `n` characters of a percent-encoded `grpc-message`, decoded.
fn percent_decoded_prefix(m: &str, n: usize) -> Option<String> {
    let mut out = String::new();
    let mut bytes = m.bytes();
    while out.len() < n {
        match bytes.next()? {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let v = u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?;
                out.push(v as char);
            }
            b => out.push(b as char),
        }
    }
    Some(out)
}

/// Answers DEADLINE_EXCEEDED when a call's `grpc-timeout` (less a little slack, as in
/// [`crate::request_deadline`]) passes before the service answered. It sits inside
/// tonic's own timer for the header, which polls it first, so this answer always comes
/// before tonic's CANCELLED "Timeout expired".
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline(inner)
    }
}

/// The service [`DeadlineLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Deadline<S>(S);

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Deadline<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::parse_grpc_timeout);
        let fut = self.0.call(req);
        let Some(t) = timeout else {
            return Box::pin(fut);
        };
        let deadline = crate::early_deadline(t);
        Box::pin(async move {
            match deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), fut).await {
                    Ok(r) => r,
                    Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                        "deadline exceeded: the call's grpc-timeout of {t:?} passed before it was answered"
                    ))
                    .into_http()),
                },
                None => fut.await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &'static str, message: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static(status));
        h.insert("grpc-message", http::HeaderValue::from_static(message));
        h
    }

    #[test]
    fn only_the_too_large_answer_is_rewritten() {
        let mut h = headers(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%2016418%20bytes",
        );
        fix_status(&mut h);
        assert_eq!(h["grpc-status"], "8");
        let mut h = headers("11", "explain_target%20out%20of%20range");
        fix_status(&mut h);
        assert_eq!(h["grpc-status"], "11");
        let mut h = headers("3", "Error,%20decoded%20message%20length%20too%20large");
        fix_status(&mut h);
        assert_eq!(h["grpc-status"], "3");
        let mut h = headers("1", "Timeout%20expired");
        fix_status(&mut h);
        assert_eq!(h["grpc-status"], "4");
        assert!(h["grpc-message"].to_str().unwrap().starts_with("deadline"));
        let mut h = headers("1", "the%20client%20went%20away");
        fix_status(&mut h);
        assert_eq!(h["grpc-status"], "1");
    }
}
