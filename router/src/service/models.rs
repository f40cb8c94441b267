//! `troupe.v1.Models`: the desired state in etcd (Create, Delete), and each model's status
//! from the cluster store (Get, List).

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use prost::Message;
use tonic::{Request, Response, Status};
use troupe_proto::troupe::models_server::Models;
use troupe_proto::troupe::{self as tpb, BackendKind, ModelSpec, ModelState};

use crate::error::RouterError;
use crate::records::{MODELS, PENDING};
use crate::state::{ClusterState, Replica};

use crate::routing::Router;

fn state_of(ready: usize, placed: usize, pending: bool) -> ModelState {
    match (ready, placed, pending) {
        (r, _, _) if r > 0 => ModelState::Ready,
        (_, 0, _) => ModelState::Pending,
        (_, _, true) => ModelState::Pending,
        _ => ModelState::Loading,
    }
}

/// A model's status as the cluster sees it.
pub fn model_status(
    s: &ClusterState,
    name: &str,
    spec: &ModelSpec,
    ready: &[Replica],
) -> tpb::ModelStatus {
    let placed: Vec<(&String, u32)> = s
        .placements
        .iter()
        .filter(|((m, _), _)| m == name)
        .map(|((_, n), v)| (n, v.count))
        .collect();
    let pending = s.pending.get(name);
    let failures: Vec<String> = s
        .status
        .iter()
        .flat_map(|(id, st)| {
            st.failed
                .iter()
                .filter(|f| f.name == name)
                .map(move |f| format!("{id}: {}", f.reason))
        })
        .collect();
    let ready_nodes: Vec<&String> = ready.iter().map(|r| &r.node).collect();
    let state = state_of(ready.len(), placed.len(), pending.is_some());
    let mut reason = Vec::new();
    if let Some(p) = pending {
        reason.push(format!("{} replica(s) pending: {}", p.missing, p.reason));
    }
    reason.extend(failures);
    tpb::ModelStatus {
        spec: Some(spec.clone()),
        state: state as i32,
        reason: reason.join("; "),
        ready_replicas: placed
            .iter()
            .filter(|(n, _)| ready_nodes.contains(n))
            .map(|(_, c)| *c)
            .sum(),
        desired_replicas: spec.replicas.max(1),
        replicas: placed
            .iter()
            .map(|(n, c)| tpb::ReplicaStatus {
                node_id: (*n).clone(),
                instance: *c,
                state: if ready_nodes.contains(n) {
                    ModelState::Ready
                } else {
                    ModelState::Loading
                } as i32,
                ..Default::default()
            })
            .collect(),
        queue_length: s
            .status
            .values()
            .flat_map(|st| {
                st.models
                    .iter()
                    .filter(|m| m.name == name)
                    .map(|m| m.queue_length)
            })
            .sum::<u64>() as u32,
        // Lineage is a node's (its loaded weights): `Get` asks a replica's node.
        lineage: None,
    }
}

/// How long `Get` waits for a replica's node to say what it loaded.
const LINEAGE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The lineage of the weights a replica's node loaded for `model` (None when the node
/// does not answer in time: the status is the cluster's either way).
async fn node_lineage(router: &Router, replica: &Replica, model: &str) -> Option<tpb::Lineage> {
    use troupe_proto::troupe::models_client::ModelsClient;
    let mut req = Request::new(tpb::GetModelRequest {
        name: model.to_string(),
        ..Default::default()
    });
    router.authorize(req.metadata_mut(), None);
    req.set_timeout(LINEAGE_WITHIN);
    let channel = router.channel(&replica.addr).ok()?;
    match tokio::time::timeout(LINEAGE_WITHIN, ModelsClient::new(channel).get(req)).await {
        Ok(Ok(resp)) => resp.into_inner().lineage,
        Ok(Err(e)) => {
            tracing::debug!(model = %model, node = %replica.node, error = %e.message(), "lineage not read from the node");
            None
        }
        Err(_) => {
            tracing::debug!(model = %model, node = %replica.node, "lineage not read from the node in time");
            None
        }
    }
}

fn validate(spec: &ModelSpec) -> Result<(), RouterError> {
    let n = &spec.name;
    if !troupe_proto::names::is_valid_model_name(n) {
        return Err(RouterError::InvalidArgument(
            troupe_proto::names::invalid_model_name(n),
        ));
    }
    if BackendKind::try_from(spec.backend).unwrap_or(BackendKind::Unspecified)
        == BackendKind::Unspecified
    {
        return Err(RouterError::InvalidArgument(format!(
            "model '{n}': backend must be torch, onnx or candle"
        )));
    }
    if spec.artifact_uri.is_empty() {
        return Err(RouterError::InvalidArgument(format!(
            "model '{n}': artifact_uri is required"
        )));
    }
    if spec.inputs.is_empty() || spec.outputs.is_empty() {
        return Err(RouterError::InvalidArgument(format!(
            "model '{n}': declare its inputs and outputs"
        )));
    }
    Ok(())
}

#[derive(Clone)]
pub struct ModelsService(pub Arc<Router>);

#[tonic::async_trait]
impl Models for ModelsService {
    async fn create(
        &self,
        req: Request<tpb::CreateModelRequest>,
    ) -> Result<Response<tpb::ModelStatus>, Status> {
        let caller = req
            .extensions()
            .get::<troupe_proto::auth::Caller>()
            .map_or_else(|| "anonymous".to_string(), |c| c.0.clone());
        let req = req.into_inner();
        if !req.config_toml.is_empty() {
            return Err(RouterError::InvalidArgument(
                "the router takes a full ModelSpec (backend, inputs, outputs, resources); config_toml is for a single node".into(),
            )
            .into());
        }
        let mut spec = req.spec.ok_or_else(|| {
            RouterError::InvalidArgument("CreateModelRequest.spec is required".into())
        })?;
        validate(&spec)?;
        if !self.0.model_roots.is_empty() {
            troupe_proto::auth::check_artifact(&spec.artifact_uri, &self.0.model_roots)?;
        }
        if spec.version.is_empty() {
            spec.version = "1".into();
        }
        let key = format!("{MODELS}{}", spec.name);
        let mut c = self.0.etcd().await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, spec.encode_to_vec(), None)]);
        let r = c.txn(txn).await.map_err(RouterError::from)?;
        if !r.succeeded() {
            return Err(RouterError::AlreadyExists(spec.name.clone()).into());
        }
        self.0
            .read_your_write(r.header().map_or(0, |h| h.revision()))
            .await;
        tracing::info!(model = %spec.name, replicas = spec.replicas.max(1), caller = %caller, "model declared");
        Ok(Response::new(tpb::ModelStatus {
            spec: Some(spec.clone()),
            state: ModelState::Pending as i32,
            reason: "declared; the placement leader places it".into(),
            desired_replicas: spec.replicas.max(1),
            ..Default::default()
        }))
    }

    async fn delete(
        &self,
        req: Request<tpb::DeleteModelRequest>,
    ) -> Result<Response<tpb::DeleteModelResponse>, Status> {
        let name = req.into_inner().name;
        let mut c = self.0.etcd().await?;
        let r = c
            .delete(format!("{MODELS}{name}"), None)
            .await
            .map_err(RouterError::from)?;
        if r.deleted() == 0 {
            return Err(RouterError::ModelNotFound(name).into());
        }
        let _ = c.delete(format!("{PENDING}{name}"), None).await;
        self.0
            .read_your_write(r.header().map_or(0, |h| h.revision()))
            .await;
        tracing::info!(model = %name, "model deleted");
        Ok(Response::new(tpb::DeleteModelResponse {}))
    }

    async fn get(
        &self,
        req: Request<tpb::GetModelRequest>,
    ) -> Result<Response<tpb::ModelStatus>, Status> {
        let name = req.into_inner().name;
        let s = self.0.store.snapshot();
        let spec = s
            .models
            .get(&name)
            .ok_or_else(|| RouterError::ModelNotFound(name.clone()))?;
        let routes = self.0.store.routes(&name);
        let mut status = model_status(&s, &name, spec, &routes);
        if let Some(r) = routes.first() {
            status.lineage = node_lineage(&self.0, r, &name).await;
        }
        Ok(Response::new(status))
    }

    async fn list(
        &self,
        _: Request<tpb::ListModelsRequest>,
    ) -> Result<Response<tpb::ListModelsResponse>, Status> {
        let s = self.0.store.snapshot();
        let models = s
            .models
            .iter()
            .map(|(n, spec)| model_status(&s, n, spec, &self.0.store.routes(n)))
            .collect();
        Ok(Response::new(tpb::ListModelsResponse { models }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_ready_once_one_replica_is() {
        assert_eq!(state_of(1, 2, true), ModelState::Ready);
        assert_eq!(
            state_of(0, 0, false),
            ModelState::Pending,
            "nothing placed yet"
        );
        assert_eq!(
            state_of(0, 1, true),
            ModelState::Pending,
            "waiting for room"
        );
        assert_eq!(
            state_of(0, 2, false),
            ModelState::Loading,
            "placed, not ready"
        );
    }

    #[test]
    fn specs_are_checked_before_they_reach_etcd() {
        let good = ModelSpec {
            name: "m".into(),
            backend: BackendKind::Onnx as i32,
            artifact_uri: "/m/1".into(),
            inputs: vec![tpb::TensorSpec::default()],
            outputs: vec![tpb::TensorSpec::default()],
            ..Default::default()
        };
        assert!(validate(&good).is_ok());
        for (bad, want) in [
            (
                ModelSpec {
                    name: "../x".into(),
                    ..good.clone()
                },
                "invalid model name",
            ),
            (
                ModelSpec {
                    backend: 0,
                    ..good.clone()
                },
                "backend",
            ),
            (
                ModelSpec {
                    artifact_uri: String::new(),
                    ..good.clone()
                },
                "artifact_uri",
            ),
            (
                ModelSpec {
                    inputs: Vec::new(),
                    ..good.clone()
                },
                "inputs and outputs",
            ),
        ] {
            let e = validate(&bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
