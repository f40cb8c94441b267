//! `Client::with_token`: the bearer token reaches the server on the wrapped calls and on
//! the generated stubs alike, against a small in-process tonic server that answers each
//! call with the `authorization` metadata it saw.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};
use troupe_client::troupe_proto::troupe::explainer_server::{Explainer, ExplainerServer};
use troupe_client::troupe_proto::troupe::models_server::{Models, ModelsServer};
use troupe_client::troupe_proto::troupe::{self as tpb};
use troupe_client::{CallOptions, Client, ClientError, ExplainOptions, InputTensor};

/// Every call fails with the `authorization` it carried ("none" without one).
fn seen<T>(req: &Request<T>) -> Status {
    let auth = req
        .metadata()
        .get("authorization")
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .unwrap_or_else(|| "none".into());
    Status::unknown(format!("authorization={auth}"))
}

struct Echo;

#[tonic::async_trait]
impl Models for Echo {
    async fn create(
        &self,
        r: Request<tpb::CreateModelRequest>,
    ) -> Result<Response<tpb::ModelStatus>, Status> {
        Err(seen(&r))
    }
    async fn delete(
        &self,
        r: Request<tpb::DeleteModelRequest>,
    ) -> Result<Response<tpb::DeleteModelResponse>, Status> {
        Err(seen(&r))
    }
    async fn get(
        &self,
        r: Request<tpb::GetModelRequest>,
    ) -> Result<Response<tpb::ModelStatus>, Status> {
        Err(seen(&r))
    }
    async fn list(
        &self,
        r: Request<tpb::ListModelsRequest>,
    ) -> Result<Response<tpb::ListModelsResponse>, Status> {
        Err(seen(&r))
    }
}

#[tonic::async_trait]
impl Explainer for Echo {
    async fn explain(
        &self,
        r: Request<tpb::ExplainRequest>,
    ) -> Result<Response<tpb::ExplainResponse>, Status> {
        Err(seen(&r))
    }
}

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ModelsServer::new(Echo))
            .add_service(ExplainerServer::new(Echo))
            .serve_with_incoming(incoming),
    );
    addr
}

fn message(e: ClientError) -> String {
    match e {
        ClientError::Status(s) => s.message().to_string(),
        other => panic!("expected a status, got {other}"),
    }
}

async fn list(c: &mut Client) -> String {
    message(
        c.models()
            .list(tpb::ListModelsRequest::default())
            .await
            .unwrap_err()
            .into(),
    )
}

async fn explain(c: &mut Client) -> String {
    let x = InputTensor::f32("input", vec![1, 2], &[0.0, 1.0]);
    message(
        c.explain(
            "m",
            vec![x],
            &ExplainOptions::method("occlusion"),
            &CallOptions::default(),
        )
        .await
        .unwrap_err(),
    )
}

#[tokio::test]
async fn the_token_goes_with_every_call() {
    let addr = serve().await;
    let mut anon = Client::connect(&addr.to_string()).await.unwrap();
    assert!(!anon.has_token());
    assert_eq!(list(&mut anon).await, "authorization=none");
    assert_eq!(explain(&mut anon).await, "authorization=none");

    let mut c = anon.clone().with_token("s3cret-token").unwrap();
    assert!(c.has_token());
    // A generated stub, a wrapped call, and a stub of a clone.
    assert_eq!(list(&mut c).await, "authorization=Bearer s3cret-token");
    assert_eq!(explain(&mut c).await, "authorization=Bearer s3cret-token");
    let mut copy = c.clone();
    let r = copy
        .models()
        .delete(tpb::DeleteModelRequest {
            name: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(r.message(), "authorization=Bearer s3cret-token");
    // The client it was made from is unchanged, and a new token replaces the old one.
    assert_eq!(list(&mut anon).await, "authorization=none");
    let mut other = c.with_token("other").unwrap();
    assert_eq!(list(&mut other).await, "authorization=Bearer other");

    // Debug shows whether a token is set, not the token.
    let shown = format!("{other:?}");
    assert!(!shown.contains("other\""), "{shown}");
    assert!(shown.contains("token: true"), "{shown}");
}

#[tokio::test]
async fn a_bad_token_is_a_clear_error() {
    let addr = serve().await;
    let c = Client::connect(&addr.to_string()).await.unwrap();
    let e = c.with_token("two words").unwrap_err();
    assert!(matches!(e, ClientError::Token(_)), "{e}");
    assert!(e.to_string().starts_with("invalid bearer token"), "{e}");
    assert!(!e.to_string().contains("two words"), "{e}");
}
