//! `inference.GRPCInferenceService`: the Open Inference Protocol, as Triton serves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span, instrument};
use troupe_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use troupe_proto::inference::model_metadata_response::TensorMetadata;
use troupe_proto::inference::repository_index_response::ModelIndex;
use troupe_proto::inference::{self as pb, model_instance_group};

use super::call;
use crate::model::LoadedModel;
use crate::registry::Registry;

#[derive(Clone)]
pub struct InferenceService {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

impl InferenceService {
    pub fn new(registry: Arc<Registry>, ready: Arc<AtomicBool>) -> Self {
        Self { registry, ready }
    }
}

fn tensor_meta(m: &LoadedModel, specs: &[troupe_backends::TensorSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.dtype.wire_name().to_string(),
            shape: m.def.signature.wire_dims(s),
        })
        .collect()
}

fn duration(d: &crate::model::DurationStat) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: d.count.load(Ordering::Relaxed),
        ns: d.ns.load(Ordering::Relaxed),
    })
}

fn model_state(m: &LoadedModel) -> (&'static str, String) {
    if m.is_ready() {
        ("READY", String::new())
    } else {
        let reason = m
            .replicas
            .iter()
            .find_map(|r| r.last_error())
            .unwrap_or_else(|| "restarting".into());
        ("UNAVAILABLE", reason)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.ready.load(Ordering::Acquire),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = req.into_inner();
        let ready = self
            .registry
            .get(&r.name, &r.version)
            .map(|m| m.is_ready())
            .unwrap_or(false);
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "troupe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: [
                "model_repository",
                "model_configuration",
                "statistics",
                "parameters",
            ]
            .map(String::from)
            .to_vec(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = req.into_inner();
        let m = self.registry.get(&r.name, &r.version)?;
        let versions = self
            .registry
            .list()
            .into_iter()
            .filter(|o| o.def.name == m.def.name)
            .map(|o| o.def.version.clone())
            .collect();
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.def.name.clone(),
            versions,
            platform: m.def.backend.triton_platform().into(),
            inputs: tensor_meta(&m, &m.def.signature.inputs),
            outputs: tensor_meta(&m, &m.def.signature.outputs),
            // The lineage of the weights (`troupe.lineage.*`), as model parameters.
            parameters: m
                .lineage_fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        pb::InferParameter {
                            parameter_choice: Some(
                                pb::infer_parameter::ParameterChoice::StringParam(v.clone()),
                            ),
                        },
                    )
                })
                .collect(),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        // Counted by model, version and status; unknown models under model="".
        let found = self
            .registry
            .get(&req.get_ref().model_name, &req.get_ref().model_version);
        let (model, version) = found
            .as_ref()
            .map(|m| (m.def.name.clone(), m.def.version.clone()))
            .unwrap_or_default();
        // W3C trace context: the call's span continues the caller's trace, and the trace
        // id goes back on the answer (and the error).
        let trace = troupe_telemetry::TraceContext::from_metadata(req.metadata());
        // The lineage of the weights that answer goes on the call's span.
        let lineage = found.as_ref().ok().map(|m| &m.lineage);
        let of = |f: fn(&troupe_monitor::lineage::Lineage) -> &str| lineage.map_or("", f);
        let span = troupe_telemetry::call_span(req.metadata(), || {
            info_span!(
                "node.infer",
                model = %req.get_ref().model_name,
                version = %req.get_ref().model_version,
                node = %self.registry.opts.node_id,
                troupe.lineage.digest = of(|l| &l.digest),
                troupe.lineage.signature = of(|l| l.signature.state.as_str()),
                troupe.lineage.source = of(|l| &l.provenance.source),
                troupe.lineage.training_run = of(|l| &l.provenance.training_run),
                troupe.lineage.code_commit = of(|l| &l.provenance.code_commit),
                troupe.lineage.data_digest = of(|l| &l.provenance.data_digest),
            )
        });
        let traced_id = troupe_telemetry::trace_id(&span);
        let trace_id = traced_id
            .or_else(|| trace.as_ref().map(|t| t.trace_id()))
            .unwrap_or_default();
        let trace_id = trace_id.as_str();
        let mut result = call::infer(&self.registry, req, found, trace_id)
            .instrument(span)
            .await;
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.registry.metrics.count_request(&model, &version, code);
        if !trace_id.is_empty() {
            self.registry.metrics.traces.note(&model, trace_id);
            tracing::debug!(model = %model, trace_id = %trace_id, sampled = trace.as_ref().is_some_and(|t| t.sampled()), "traced call");
        }
        troupe_proto::set_trace_id(&mut result, trace_id);
        result
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = req.into_inner();
        let m = self.registry.get(&r.name, &r.version)?;
        let sig = &m.def.signature;
        let config = pb::ModelConfig {
            name: m.def.name.clone(),
            platform: m.def.backend.triton_platform().into(),
            backend: m.def.backend.as_str().into(),
            max_batch_size: sig.max_batch_size as i32,
            input: sig
                .inputs
                .iter()
                .map(|s| pb::ModelInput {
                    name: s.name.clone(),
                    data_type: s.dtype.triton_enum(),
                    dims: s.dims.clone(),
                    ..Default::default()
                })
                .collect(),
            output: sig
                .outputs
                .iter()
                .map(|s| pb::ModelOutput {
                    name: s.name.clone(),
                    data_type: s.dtype.triton_enum(),
                    dims: s.dims.clone(),
                    ..Default::default()
                })
                .collect(),
            instance_group: vec![pb::ModelInstanceGroup {
                name: format!("{}_0", m.def.name),
                kind: model_instance_group::Kind::Cpu as i32,
                count: m.def.instances as i32,
                ..Default::default()
            }],
            dynamic_batching: m.def.batching.batching().then(|| pb::ModelDynamicBatching {
                preferred_batch_size: m
                    .def
                    .batching
                    .preferred_batch_sizes
                    .iter()
                    .map(|&p| p as i32)
                    .collect(),
                max_queue_delay_microseconds: m.def.batching.max_queue_delay.as_micros() as u64,
                ..Default::default()
            }),
            default_model_filename: m
                .def
                .artifact
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_string(),
            ..Default::default()
        };
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = req.into_inner();
        let models = if r.name.is_empty() {
            self.registry.list()
        } else {
            vec![self.registry.get(&r.name, &r.version)?]
        };
        let model_stats = models
            .iter()
            .map(|m| {
                let s = &m.stats;
                // The three compute phases from one read: every execution has each
                // (Triton's perf_analyzer checks that they count alike).
                let all = s.all_batches();
                let phase = |ns| {
                    Some(pb::StatisticDuration {
                        count: all.count,
                        ns,
                    })
                };
                pb::ModelStatistics {
                    name: m.def.name.clone(),
                    version: m.def.version.clone(),
                    last_inference: s.last_inference_ms.load(Ordering::Relaxed),
                    inference_count: s.inference_count.load(Ordering::Relaxed),
                    execution_count: s.execution_count.load(Ordering::Relaxed),
                    inference_stats: Some(pb::InferStatistics {
                        success: duration(&s.success),
                        fail: duration(&s.fail),
                        queue: duration(&s.queue),
                        compute_input: phase(all.input_ns),
                        compute_infer: phase(all.infer_ns),
                        compute_output: phase(all.output_ns),
                        ..Default::default()
                    }),
                    batch_stats: s
                        .batches
                        .lock()
                        .iter()
                        .map(|(&rows, b)| {
                            let d = |ns| Some(pb::StatisticDuration { count: b.count, ns });
                            pb::InferBatchStatistics {
                                batch_size: rows as u64,
                                compute_input: d(b.input_ns),
                                compute_infer: d(b.infer_ns),
                                compute_output: d(b.output_ns),
                            }
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        req: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let r = req.into_inner();
        let mut models: Vec<ModelIndex> = Vec::new();
        let loaded = self.registry.list();
        let failures = self.registry.failures();
        for m in &loaded {
            let (state, reason) = model_state(m);
            models.push(ModelIndex {
                name: m.def.name.clone(),
                version: m.def.version.clone(),
                state: state.into(),
                reason,
            });
        }
        for name in self.registry.repository_models() {
            if loaded.iter().any(|m| m.def.name == name) {
                continue;
            }
            let (state, reason) = match failures.get(&name) {
                Some(reason) => ("UNAVAILABLE", reason.clone()),
                None => ("UNAVAILABLE", "unloaded".to_string()),
            };
            models.push(ModelIndex {
                name,
                version: String::new(),
                state: state.into(),
                reason,
            });
        }
        for (name, reason) in &failures {
            if !models.iter().any(|m| &m.name == name) {
                models.push(ModelIndex {
                    name: name.clone(),
                    version: String::new(),
                    state: "UNAVAILABLE".into(),
                    reason: reason.clone(),
                });
            }
        }
        if r.ready {
            models.retain(|m| m.state == "READY");
        }
        models.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    #[instrument(skip_all, fields(model = %req.get_ref().model_name))]
    async fn repository_model_load(
        &self,
        req: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let r = req.into_inner();
        self.registry.load_from_repository(&r.model_name).await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    #[instrument(skip_all, fields(model = %req.get_ref().model_name))]
    async fn repository_model_unload(
        &self,
        req: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let r = req.into_inner();
        crate::config::validate_name(&r.model_name)?;
        self.registry.unload(&r.model_name, None).await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
