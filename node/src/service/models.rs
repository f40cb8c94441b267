//! `troupe.v1.Models` on a standalone node: declare a model and its backend, then predict.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;
use troupe_proto::troupe as pb;
use troupe_proto::troupe::models_server::Models;

use crate::config::{ModelDef, validate_name};
use crate::error::NodeError;
use crate::model::LoadedModel;
use crate::registry::Registry;

#[derive(Clone)]
pub struct ModelsService {
    registry: Arc<Registry>,
    node_id: String,
}

impl ModelsService {
    pub fn new(registry: Arc<Registry>, node_id: String) -> Self {
        Self { registry, node_id }
    }

    fn status(&self, m: &LoadedModel) -> pb::ModelStatus {
        let replicas: Vec<pb::ReplicaStatus> = m
            .replicas
            .iter()
            .enumerate()
            .map(|(i, r)| pb::ReplicaStatus {
                node_id: self.node_id.clone(),
                instance: i as u32,
                state: if r.is_ready() {
                    pb::ModelState::Ready
                } else {
                    pb::ModelState::Unavailable
                } as i32,
                reason: if r.is_ready() {
                    String::new()
                } else {
                    r.last_error().unwrap_or_default()
                },
                in_flight: r.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                restarts: r.restarts.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect();
        let ready = m.is_ready();
        pb::ModelStatus {
            spec: Some(m.def.to_spec(&m.lineage.digest)),
            state: if ready {
                pb::ModelState::Ready
            } else {
                pb::ModelState::Unavailable
            } as i32,
            reason: if ready {
                String::new()
            } else {
                "no replica is running (restarting)".into()
            },
            ready_replicas: m.ready_replicas() as u32,
            desired_replicas: 1,
            replicas,
            queue_length: m.queue.len() as u32,
            lineage: Some(m.lineage.to_proto()),
        }
    }

    fn failed(name: &str, reason: &str) -> pb::ModelStatus {
        pb::ModelStatus {
            spec: Some(pb::ModelSpec {
                name: name.to_string(),
                ..Default::default()
            }),
            state: pb::ModelState::Failed as i32,
            reason: reason.to_string(),
            desired_replicas: 1,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Models for ModelsService {
    #[instrument(skip_all, fields(model = tracing::field::Empty))]
    async fn create(
        &self,
        req: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::ModelStatus>, Status> {
        let req = req.into_inner();
        let spec = req.spec.ok_or_else(|| {
            NodeError::InvalidArgument("CreateModelRequest.spec is required".into())
        })?;
        tracing::Span::current().record("model", spec.name.as_str());
        // Completing a config may open the model file: off the async runtime.
        let registry = self.registry.clone();
        let def = tokio::task::spawn_blocking(move || {
            let describe = |k, p: &std::path::Path| registry.describe(k, p);
            if req.config_toml.is_empty() {
                ModelDef::from_spec(&spec, &describe)
            } else {
                ModelDef::from_config_and_spec(&req.config_toml, &spec, &describe)
            }
        })
        .await
        .map_err(|e| NodeError::Internal(format!("config reader panicked: {e}")))??;
        let m = self.registry.load(def, false).await?;
        Ok(Response::new(self.status(&m)))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let r = req.into_inner();
        validate_name(&r.name)?;
        self.registry.unload(&r.name, Some(&r.version)).await?;
        Ok(Response::new(pb::DeleteModelResponse {}))
    }

    async fn get(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelStatus>, Status> {
        let r = req.into_inner();
        validate_name(&r.name)?;
        match self.registry.get(&r.name, &r.version) {
            Ok(m) => Ok(Response::new(self.status(&m))),
            Err(e) => match self.registry.failures().get(&r.name) {
                Some(reason) => Ok(Response::new(Self::failed(&r.name, reason))),
                None => Err(e.into()),
            },
        }
    }

    async fn list(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let loaded = self.registry.list();
        let mut models: Vec<pb::ModelStatus> = loaded.iter().map(|m| self.status(m)).collect();
        for (name, reason) in self.registry.failures() {
            if !loaded.iter().any(|m| m.def.name == name) {
                models.push(Self::failed(&name, &reason));
            }
        }
        Ok(Response::new(pb::ListModelsResponse { models }))
    }
}
