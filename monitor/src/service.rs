//! `troupe.v1.Feedback`, `troupe.v1.Monitor` and `troupe.v1.Review`, the same on nodes
//! and routers: each
//! server says where its store is ([`StoreSource`]) and how a model is monitored
//! ([`Configs`]: a node reads its loaded model, a router the cluster's spec).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use troupe_proto::troupe as pb;

use crate::config::MonitorCfg;
use crate::error::MonitorError;
use crate::record::{Summary, Truth, TruthValue, now_ms};
use crate::review::{ExportState, ReviewItem};
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
            MonitorError::NotFound(m) => Status::not_found(m.clone()),
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

    async fn lineage(
        &self,
        req: Request<pb::LineageRequest>,
    ) -> Result<Response<pb::LineageResponse>, Status> {
        let id = req.into_inner().request_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("no request id given"));
        }
        let store = self.stores.store().await?;
        let (stored, lineage) = store.call_lineage(&id).await?.ok_or_else(|| {
            Status::not_found(format!(
                "request id '{id}' is not in the prediction store (not recorded, pruned, or still queued)"
            ))
        })?;
        let review_state = store.review_state(&id).await?;
        let p = stored.prediction;
        let (class, score, value) = match &p.summary {
            Summary::Class { class, score, .. } => (class.clone(), *score, None),
            Summary::Value(v) => (String::new(), None, Some(*v)),
            Summary::Values(_) | Summary::Digest(_) => (String::new(), None, None),
        };
        let (truth, truth_source, truth_time_ms) = match stored.truth {
            Some(t) => (Some(truth_to_proto(&id, &t.label)), t.source, t.time_ms),
            None => (None, String::new(), 0),
        };
        Ok(Response::new(pb::LineageResponse {
            request_id: p.request_id,
            model: p.model,
            version: p.version,
            digest: p.digest,
            time_ms: p.time_ms,
            node: p.node,
            trace_id: p.trace_id,
            class,
            score,
            value,
            lineage: lineage.map(|l| l.to_proto()),
            truth,
            truth_source,
            truth_time_ms,
            review_state: review_state.to_string(),
        }))
    }
}

fn truth_to_proto(id: &str, t: &TruthValue) -> pb::Truth {
    pb::Truth {
        request_id: id.to_string(),
        truth: Some(match t {
            TruthValue::Class(c) => pb::truth::Truth::Label(c.clone()),
            TruthValue::Value(v) => pb::truth::Truth::Value(*v),
        }),
    }
}

/// `troupe.v1.Review`: the human review queue in the store.
pub struct ReviewService<S>(pub Arc<S>);

fn item_to_proto(i: ReviewItem) -> pb::ReviewItem {
    pb::ReviewItem {
        decision: i
            .decision
            .as_ref()
            .map(|d| truth_to_proto(&i.request_id, d)),
        request_id: i.request_id,
        model: i.model,
        version: i.version,
        reason: i.reason,
        time_ms: i.time_ms,
        inputs_json: i.inputs.unwrap_or_else(|| "{}".into()),
        outputs_json: i.outputs,
        explanation_json: i.explanation.unwrap_or_default(),
        class: i.class.unwrap_or_default(),
        score: i.score,
        predicted_value: i.value,
        reviewer: i.reviewer.unwrap_or_default(),
        decided_ms: i.decided_ms.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl<S: StoreSource> pb::review_server::Review for ReviewService<S> {
    async fn next(
        &self,
        req: Request<pb::ReviewNextRequest>,
    ) -> Result<Response<pb::ReviewNextResponse>, Status> {
        let model = req.into_inner().model;
        if model.is_empty() {
            return Err(Status::invalid_argument("no model named"));
        }
        let store = self.0.store().await?;
        let item = store.next_review(&model, now_ms()).await?;
        let (open, _) = store.review_counts(&model).await?;
        Ok(Response::new(pb::ReviewNextResponse {
            item: item.map(item_to_proto),
            open,
        }))
    }

    async fn label(
        &self,
        req: Request<pb::ReviewLabelRequest>,
    ) -> Result<Response<pb::ReviewItem>, Status> {
        let reviewer = req
            .extensions()
            .get::<troupe_proto::auth::Caller>()
            .map_or_else(|| "anonymous".to_string(), |c| c.0.clone());
        let req = req.into_inner();
        if req.request_id.is_empty() {
            return Err(Status::invalid_argument("no request id given"));
        }
        let decision = match req.decision {
            Some(pb::review_label_request::Decision::Label(l)) if !l.is_empty() => {
                TruthValue::Class(l)
            }
            Some(pb::review_label_request::Decision::Value(v)) if v.is_finite() => {
                TruthValue::Value(v)
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "the decision on '{}' has no label and no finite value",
                    req.request_id
                )));
            }
        };
        let store = self.0.store().await?;
        let item = store
            .decide_review(&req.request_id, decision, &reviewer, now_ms())
            .await?;
        tracing::info!(request_id = %item.request_id, model = %item.model, reviewer = %reviewer, "review decided");
        Ok(Response::new(item_to_proto(item)))
    }

    async fn export(
        &self,
        req: Request<pb::ReviewExportRequest>,
    ) -> Result<Response<pb::ReviewExportResponse>, Status> {
        let req = req.into_inner();
        let state = match pb::ReviewState::try_from(req.state) {
            Ok(pb::ReviewState::All) => ExportState::All,
            Ok(pb::ReviewState::Open) => ExportState::Open,
            Ok(pb::ReviewState::Decided) => ExportState::Decided,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "review state {} is not all (0), open (1) or decided (2)",
                    req.state
                )));
            }
        };
        let limit = if req.limit == 0 {
            crate::review::MAX_EXPORT
        } else {
            i64::from(req.limit)
        };
        let store = self.0.store().await?;
        let model = (!req.model.is_empty()).then_some(req.model.as_str());
        let items = store.reviews(model, state, limit).await?;
        Ok(Response::new(pb::ReviewExportResponse {
            items: items.into_iter().map(item_to_proto).collect(),
        }))
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
