//! `ModelInfer` passed on as bytes: the router reads only a request's routing fields
//! (`troupe_proto::raw::InferHead`: model name and version, parameters) and forwards
//! the request's encoded bytes to a replica as they came; the answer comes back the same
//! way. Neither side's tensors are decoded or encoded here. Served at the method's path
//! in front of the typed `inference.GRPCInferenceService` (which still answers every other
//! method, and REST's infer), with the same limits, auth and metrics (`inference::infer`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};
use troupe_proto::raw::{InferHead, MODEL_INFER_PATH, RawCodec};

use super::inference::infer;
use crate::forward::Hop;
use crate::routing::Router;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Adds the pass-through `ModelInfer` to a server's gRPC routes (it takes the method's
/// path; the generated service keeps the others).
pub fn with_passthrough(
    grpc: tonic::service::Routes,
    router: Arc<Router>,
    max_message_bytes: usize,
) -> tonic::service::Routes {
    tonic::service::Routes::from(grpc.into_axum_router().route_service(
        MODEL_INFER_PATH,
        Passthrough {
            router,
            max_message_bytes,
        },
    ))
}

/// The HTTP service of the pass-through `ModelInfer`.
#[derive(Clone)]
pub struct Passthrough {
    router: Arc<Router>,
    max_message_bytes: usize,
}

impl tower::Service<http::Request<axum::body::Body>> for Passthrough {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let method = Infer(self.router.clone());
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(max), Some(max));
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// `ModelInfer` on a request's bytes.
struct Infer(Arc<Router>);

impl tonic::server::UnaryService<Bytes> for Infer {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let router = self.0.clone();
        Box::pin(async move {
            let head = InferHead::read(req.get_ref())?;
            let span = info_span!("model_infer", model = %head.model_name);
            let hop = Hop::of_infer(&req, &head.parameters);
            infer(&router, &head.model_name, hop, req, |u, r| {
                u.raw(MODEL_INFER_PATH, r)
            })
            .instrument(span)
            .await
        })
    }
}
