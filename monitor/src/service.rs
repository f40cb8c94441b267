//! `troupe.v1.Feedback` and `troupe.v1.Monitor`, the same on nodes and routers: each
//! server says where its store is ([`StoreSource`]) and how a model is monitored
//! ([`Configs`]: a node reads its loaded model, a router the cluster's spec).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use troupe_proto::troupe as pb;

use crate::config::MonitorCfg;
use crate::error::MonitorError;
use crate::record::{Truth, TruthValue, now_ms};
use crate::store::Store;

/// Truths one Submit may carry.
pub const MAX_TRUTHS: usize = 100_000;

/// Where a server's prediction store is.
#[tonic::async_trait]
pub trait StoreSource: Send + Sync + 'static {
    /// The store, opened on first use where the server allows that.
    async fn store(&self) -> Result<Store, Status>;
}

/// How the models a server knows are monitored.
pub trait Configs: Send + Sync + 'static {
    /// The version to report ("" picks the one served) and its `[monitoring]`.
    fn monitoring(&self, model: &str, version: &str) -> Result<(String, MonitorCfg), Status>;
}

impl From<MonitorError> for Status {
    fn from(e: MonitorError) -> Self {
        match &e {
            MonitorError::InvalidArgument(m) => Status::invalid_argument(m.clone()),
            MonitorError::BadUrl { .. } => Status::failed_precondition(e.to_string()),
            _ if e.unavailable() => Status::unavailable(e.to_string()),
            _ => Status::internal(e.to_string()),
        }
    }
}

/// `troupe.v1.Feedback`: ground truth into the store.
pub struct FeedbackService<S>(pub Arc<S>);

#[tonic::async_trait]
impl<S: StoreSource> pb::feedback_server::Feedback for FeedbackService<S> {
    async fn submit(
        &self,
        req: Request<pb::FeedbackRequest>,
    ) -> Result<Response<pb::FeedbackResponse>, Status> {
        let source = req
            .extensions()
            .get::<troupe_proto::auth::Caller>()
            .map_or_else(|| "anonymous".to_string(), |c| c.0.clone());
        let req = req.into_inner();
        if req.truths.is_empty() {
            return Err(Status::invalid_argument("no truths given"));
        }
        if req.truths.len() > MAX_TRUTHS {
            return Err(Status::invalid_argument(format!(
                "{} truths in one call; at most {MAX_TRUTHS}",
                req.truths.len()
            )));
        }
        let time_ms = now_ms();
        let truths = req
            .truths
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let label = match t.truth {
                    Some(pb::truth::Truth::Label(l)) if !l.is_empty() => TruthValue::Class(l),
                    Some(pb::truth::Truth::Value(v)) if v.is_finite() => TruthValue::Value(v),
                    _ => {
                        return Err(Status::invalid_argument(format!(
                            "truth {i} (request id '{}') has no label and no finite value",
                            t.request_id
                        )));
                    }
                };
                if t.request_id.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "truth {i} has no request id"
                    )));
                }
                Ok(Truth {
                    request_id: t.request_id,
                    label,
                    time_ms,
                    source: source.clone(),
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let store = self.0.store().await?;
        let matched = store.submit(&truths).await?;
        tracing::info!(truths = truths.len(), matched, source = %source, "feedback stored");
        Ok(Response::new(pb::FeedbackResponse {
            accepted: truths.len() as u64,
            matched,
        }))
    }
}

/// `troupe.v1.Monitor`: a model's live quality from the store.
pub struct MonitorService<S, C> {
    pub stores: Arc<S>,
    pub configs: Arc<C>,
}

#[tonic::async_trait]
impl<S: StoreSource, C: Configs> pb::monitor_server::Monitor for MonitorService<S, C> {
    async fn quality(
        &self,
        req: Request<pb::QualityRequest>,
    ) -> Result<Response<pb::QualityResponse>, Status> {
        let req = req.into_inner();
        let (version, cfg) = self.configs.monitoring(&req.model, &req.version)?;
        let store = self.stores.store().await?;
        let q = crate::report::quality(&store, &cfg, &req.model, &version, now_ms()).await?;
        Ok(Response::new(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::feedback_server::Feedback;

    struct File(Store);
    #[tonic::async_trait]
    impl StoreSource for File {
        async fn store(&self) -> Result<Store, Status> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn bad_truths_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let svc = FeedbackService(Arc::new(File(Store::open(&url).await.unwrap())));
        let submit =
            |truths: Vec<pb::Truth>| svc.submit(Request::new(pb::FeedbackRequest { truths }));
        let e = submit(vec![]).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = submit(vec![pb::Truth {
            request_id: "r1".into(),
            truth: None,
        }])
        .await
        .unwrap_err();
        assert!(e.message().contains("'r1'"), "{}", e.message());
        let e = submit(vec![pb::Truth {
            request_id: String::new(),
            truth: Some(pb::truth::Truth::Label("cat".into())),
        }])
        .await
        .unwrap_err();
        assert!(e.message().contains("no request id"), "{}", e.message());
        let ok = submit(vec![pb::Truth {
            request_id: "r1".into(),
            truth: Some(pb::truth::Truth::Value(2.5)),
        }])
        .await
        .unwrap()
        .into_inner();
        assert_eq!((ok.accepted, ok.matched), (1, 0));
    }
}
