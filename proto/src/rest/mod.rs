//! The Open Inference Protocol over HTTP (KServe v2 REST, with Triton's additions), on
//! the same port as gRPC: [`with_grpc`] merges these routes with a server's gRPC services
//! (tonic's `Routes` are an axum router), and the server accepts HTTP/1.1 and h2c alike.
//!
//! Each REST call is answered by the server's own `GRPCInferenceService`, in process: the
//! body becomes the gRPC request (headers as its metadata, so `traceparent` and the
//! caller's identity carry on), and the gRPC answer becomes JSON. The two protocols so
//! cannot say different things. An error is `{"error": "..."}` with the HTTP status of
//! its gRPC code ([`crate::codes::http_status`], the one mapping).
//!
//! Bodies may be gzip or deflate (`Content-Encoding`), and answers are compressed when
//! the client accepts it (`Accept-Encoding`); a body is read up to the server's message
//! limit after decompression.

pub mod json;
pub mod tensor;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tonic::Status;

use crate::auth::Refused;
use crate::inference as pb;
use crate::inference::grpc_inference_service_server::GrpcInferenceService;

/// What the REST routes serve from: the server's gRPC service, and its message limit.
pub struct Rest<S> {
    pub service: Arc<S>,
    /// The largest body taken (after decompression), as gRPC's message limit.
    pub max_body_bytes: usize,
}

impl<S> Clone for Rest<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// A refused REST call: the gRPC status, answered as HTTP.
#[derive(Debug)]
pub struct RestError(pub Status);

impl From<Status> for RestError {
    fn from(s: Status) -> Self {
        Self(s)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(crate::codes::http_status(self.0.code()))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "error": self.0.message() });
        (code, axum::Json(body)).into_response()
    }
}

type Answer = Result<Response, RestError>;

/// The most JSON an inference request may carry (its binary tensors aside): parsed, each
/// number takes some 20 times its text, so this bounds the memory a request can take.
pub const MAX_JSON_BYTES: usize = 16 << 20;

/// The REST routes of the Open Inference Protocol, answered by `rest.service`.
pub fn routes<S: GrpcInferenceService>(rest: Rest<S>) -> Router {
    let model = |tail: &str| {
        [
            format!("/v2/models/{{model}}{tail}"),
            format!("/v2/models/{{model}}/versions/{{version}}{tail}"),
        ]
    };
    let mut r = Router::new()
        .route("/v2/health/live", get(live::<S>))
        .route("/v2/health/ready", get(ready::<S>))
        .route("/v2", get(server_metadata::<S>))
        .route("/v2/models/stats", get(statistics::<S>))
        .route("/v2/repository/index", post(repository_index::<S>))
        .route(
            "/v2/repository/models/{model}/load",
            post(|State(s), Path(p), req| repository_model::<S>(s, p, req, true)),
        )
        .route(
            "/v2/repository/models/{model}/unload",
            post(|State(s), Path(p), req| repository_model::<S>(s, p, req, false)),
        );
    for p in model("") {
        r = r.route(&p, get(model_metadata::<S>));
    }
    for p in model("/ready") {
        r = r.route(&p, get(model_ready::<S>));
    }
    for p in model("/infer") {
        r = r.route(&p, post(infer::<S>));
    }
    for p in model("/config") {
        r = r.route(&p, get(model_config::<S>));
    }
    for p in model("/stats") {
        r = r.route(&p, get(statistics::<S>));
    }
    r.layer(axum::middleware::from_fn(refuse))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(rest)
}

/// The server's gRPC services and the REST routes on one router: a path neither knows
/// gets gRPC's UNIMPLEMENTED when the call is gRPC, else a JSON 404.
pub fn with_grpc(grpc: tonic::service::Routes, rest: Router) -> tonic::service::Routes {
    tonic::service::Routes::from(grpc.into_axum_router().merge(rest).fallback(unknown))
}

async fn unknown(req: Request) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return Status::unimplemented(format!("no method {}", req.uri().path())).into_http();
    }
    RestError(Status::not_found(format!(
        "no such endpoint: {} {} (the Open Inference Protocol's are under /v2)",
        req.method(),
        req.uri().path()
    )))
    .into_response()
}

/// Answers a call the auth layer refused (it passes REST calls on, marked, so that the
/// refusal is answered in HTTP rather than in gRPC's framing).
async fn refuse(req: Request, next: Next) -> Response {
    if let Some(Refused(status)) = req.extensions().get::<Refused>() {
        return RestError(status.clone()).into_response();
    }
    next.run(req).await
}

/// The gRPC request a REST call makes: its headers as metadata, its extensions (the
/// caller) kept.
fn grpc<T>(parts: axum::http::request::Parts, message: T) -> tonic::Request<T> {
    tonic::Request::from_http(axum::http::Request::from_parts(parts, message))
}

/// A gRPC answer's metadata (e.g. the trace id) as headers of `resp`.
fn with_metadata(mut resp: Response, metadata: tonic::metadata::MetadataMap) -> Response {
    for (k, v) in metadata.into_headers().iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// The answer of a gRPC call, as JSON made by `render`.
async fn json_answer<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    render: impl FnOnce(&T) -> Value,
) -> Answer {
    let (md, m, _) = call.await?.into_parts();
    Ok(with_metadata(axum::Json(render(&m)).into_response(), md))
}

/// The answer of a gRPC health call: 200 when true, 400 when false, an empty body
/// either way (the protocol's health).
async fn health_answer<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ok: impl FnOnce(&T) -> bool,
) -> Answer {
    Ok(if ok(call.await?.get_ref()) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::BAD_REQUEST.into_response()
    })
}

/// The model and version of a `/v2/models/{model}[/versions/{version}]` path.
fn path_model(p: &HashMap<String, String>) -> (String, String) {
    (
        p.get("model").cloned().unwrap_or_default(),
        p.get("version").cloned().unwrap_or_default(),
    )
}

type ModelPath = Path<HashMap<String, String>>;

async fn live<S: GrpcInferenceService>(State(s): State<Rest<S>>, req: Request) -> Answer {
    let (parts, _) = req.into_parts();
    let r = grpc(parts, pb::ServerLiveRequest {});
    health_answer(s.service.server_live(r), |r| r.live).await
}

async fn ready<S: GrpcInferenceService>(State(s): State<Rest<S>>, req: Request) -> Answer {
    let (parts, _) = req.into_parts();
    let r = grpc(parts, pb::ServerReadyRequest {});
    health_answer(s.service.server_ready(r), |r| r.ready).await
}

async fn model_ready<S: GrpcInferenceService>(
    State(s): State<Rest<S>>,
    Path(p): ModelPath,
    req: Request,
) -> Answer {
    let (name, version) = path_model(&p);
    let r = grpc(req.into_parts().0, pb::ModelReadyRequest { name, version });
    health_answer(s.service.model_ready(r), |r| r.ready).await
}

async fn server_metadata<S: GrpcInferenceService>(
    State(s): State<Rest<S>>,
    req: Request,
) -> Answer {
    let r = grpc(req.into_parts().0, pb::ServerMetadataRequest {});
    json_answer(s.service.server_metadata(r), json::server_metadata).await
}

async fn model_metadata<S: GrpcInferenceService>(
    State(s): State<Rest<S>>,
    Path(p): ModelPath,
    req: Request,
) -> Answer {
    let (name, version) = path_model(&p);
    let r = grpc(
        req.into_parts().0,
        pb::ModelMetadataRequest { name, version },
    );
    json_answer(s.service.model_metadata(r), json::model_metadata).await
}

async fn model_config<S: GrpcInferenceService>(
    State(s): State<Rest<S>>,
    Path(p): ModelPath,
    req: Request,
) -> Answer {
    let (name, version) = path_model(&p);
    let r = grpc(req.into_parts().0, pb::ModelConfigRequest { name, version });
    json_answer(s.service.model_config(r), |m| {
        json::model_config(&m.config.clone().unwrap_or_default())
    })
    .await
}

async fn statistics<S: GrpcInferenceService>(
    State(s): State<Rest<S>>,
    p: Option<ModelPath>,
    req: Request,
) -> Answer {
    let (name, version) = p.map(|Path(p)| path_model(&p)).unwrap_or_default();
    let r = grpc(
        req.into_parts().0,
        pb::ModelStatisticsRequest { name, version },
    );
    json_answer(s.service.model_statistics(r), json::model_statistics).await
}

/// A body's JSON object (an empty body is `{}`), or INVALID_ARGUMENT naming the fault.
async fn json_body(body: Body, limit: usize) -> Result<serde_json::Map<String, Value>, RestError> {
    let bytes = read_body(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        RestError(Status::invalid_argument(format!(
            "the body is not a JSON object: {e}"
        )))
    })
}

async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, RestError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        RestError(if too_large {
            Status::resource_exhausted(format!(
                "the request body is over the server's limit of {limit} bytes"
            ))
        } else {
            Status::invalid_argument(format!("the request body could not be read: {e}"))
        })
    })
}

async fn repository_index<S: GrpcInferenceService>(
    State(s): State<Rest<S>>,
    req: Request,
) -> Answer {
    let (parts, body) = req.into_parts();
    let b = json_body(body, s.max_body_bytes).await?;
    let msg = pb::RepositoryIndexRequest {
        repository_name: String::new(),
        ready: b.get("ready").and_then(Value::as_bool).unwrap_or(false),
    };
    json_answer(
        s.service.repository_index(grpc(parts, msg)),
        json::repository_index,
    )
    .await
}

/// The `{}` of an answer without content.
fn empty<T>(_: &T) -> Value {
    Value::Object(Default::default())
}

/// `/v2/repository/models/{model}/load` (`load`) or `.../unload`.
async fn repository_model<S: GrpcInferenceService>(
    s: Rest<S>,
    p: HashMap<String, String>,
    req: Request,
    load: bool,
) -> Answer {
    let (parts, body) = req.into_parts();
    json_body(body, s.max_body_bytes).await?;
    let model_name = path_model(&p).0;
    if load {
        let msg = pb::RepositoryModelLoadRequest {
            model_name,
            ..Default::default()
        };
        json_answer(s.service.repository_model_load(grpc(parts, msg)), empty).await
    } else {
        let msg = pb::RepositoryModelUnloadRequest {
            model_name,
            ..Default::default()
        };
        json_answer(s.service.repository_model_unload(grpc(parts, msg)), empty).await
    }
}

async fn infer<S: GrpcInferenceService>(
    State(s): State<Rest<S>>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
) -> Answer {
    let (name, version) = path_model(&p);
    let (parts, body) = req.into_parts();
    let header_length = match parts.headers.get(tensor::HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "{} must be a byte count",
                        tensor::HEADER_LENGTH
                    ))
                })?,
        ),
    };
    let bytes = read_body(body, s.max_body_bytes).await?;
    let json = header_length.unwrap_or(bytes.len());
    if json > MAX_JSON_BYTES {
        return Err(RestError(Status::resource_exhausted(format!(
            "the request's JSON is {json} bytes, over the {MAX_JSON_BYTES} a server parses \
             (a parsed JSON number takes ~20 times its text): send large tensors in binary \
             (binary_data_size, as tritonclient.http does by default)"
        ))));
    }
    let (msg, form) = tensor::decode_request(&name, &version, &bytes, header_length)
        .map_err(Status::invalid_argument)?;
    drop(bytes);
    let r = s.service.model_infer(grpc(parts, msg)).await?;
    let (md, m, _) = r.into_parts();
    let (body, json_length) = tensor::encode_response(m, &form).map_err(Status::internal)?;
    let mut resp = with_metadata(Response::new(Body::from(body)), md);
    let h = resp.headers_mut();
    match json_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(tensor::HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(resp)
}
