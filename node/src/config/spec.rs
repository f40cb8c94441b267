//! The wire `ModelSpec` (Models.Create, the cluster's etcd records) to a [`ModelDef`] and back.

use std::path::{Path, PathBuf};

use troupe_backends::{BackendKind, TensorSpec};
use troupe_proto::troupe as pb;

use super::{
    Auto, Describe, DevicePref, Draft, DynamicBatchingCfg, HooksCfg, ModelDef, QueueDelayCfg,
    ResourcesCfg, TensorCfg, TextCfg, tensor_spec, validate_name, validate_version,
};
use crate::error::NodeError;

/// Checks a spec's name and version; an empty version means "1".
fn spec_name_and_version(spec: &pb::ModelSpec) -> Result<String, NodeError> {
    validate_name(&spec.name)?;
    let version = if spec.version.is_empty() {
        "1".to_string()
    } else {
        spec.version.clone()
    };
    validate_version(&version)?;
    Ok(version)
}

/// The local path of a spec's artifact (`file://` URLs as paths).
fn artifact_path(spec: &pb::ModelSpec) -> Result<PathBuf, NodeError> {
    let uri = spec
        .artifact_uri
        .strip_prefix("file://")
        .unwrap_or(&spec.artifact_uri);
    if uri.is_empty() {
        return Err(NodeError::InvalidArgument(format!(
            "model '{}': artifact_uri is required (a local path to the model file or its directory)",
            spec.name
        )));
    }
    Ok(PathBuf::from(uri))
}

impl ModelDef {
    /// From the wire `ModelSpec` (Models.Create). Inputs and outputs left empty are read
    /// from the model file, as for a repository folder without config.toml.
    pub fn from_spec(spec: &pb::ModelSpec, describe: Describe<'_>) -> Result<Self, NodeError> {
        let version = spec_name_and_version(spec)?;
        let bad = |m: String| NodeError::InvalidArgument(format!("model '{}': {m}", spec.name));
        let backend = match pb::BackendKind::try_from(spec.backend) {
            Ok(pb::BackendKind::Torch) => BackendKind::Torch,
            Ok(pb::BackendKind::Onnx) => BackendKind::Onnx,
            Ok(pb::BackendKind::Candle) => BackendKind::Candle,
            _ => return Err(bad("backend must be torch, onnx or candle".into())),
        };
        let conv = |ts: &[pb::TensorSpec], what: &str| -> Result<Vec<TensorSpec>, NodeError> {
            ts.iter()
                .map(|t| {
                    tensor_spec(
                        TensorCfg {
                            name: t.name.clone(),
                            data_type: t.data_type.clone(),
                            dims: t.dims.clone(),
                        },
                        what,
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)
        };
        let inputs = conv(&spec.inputs, "input")?;
        let outputs = conv(&spec.outputs, "output")?;
        let path = artifact_path(spec)?;
        let artifact = if path.is_dir() {
            path.join(backend.default_artifact())
        } else {
            path
        };
        let device = match pb::DevicePreference::try_from(spec.device) {
            Ok(pb::DevicePreference::Cpu) => DevicePref::Cpu,
            Ok(pb::DevicePreference::Gpu) => DevicePref::Gpu,
            _ => DevicePref::Any,
        };
        let res = spec.resources.unwrap_or_default();
        // A spec that declares its tensors says max_batch_size too (0: no batch dim);
        // one that leaves them to the model leaves it too unless it is set.
        let declared = !inputs.is_empty() && !outputs.is_empty();
        let max_batch_size =
            (declared || spec.max_batch_size > 0).then_some(spec.max_batch_size as usize);
        Draft {
            name: spec.name.clone(),
            version,
            backend,
            artifact,
            sha256: (!spec.sha256.is_empty()).then(|| spec.sha256.to_ascii_lowercase()),
            inputs,
            outputs,
            max_batch_size,
            instances: spec.instances.clamp(1, 64) as usize,
            device,
            threads: None,
            resources: ResourcesCfg {
                cpu: res.cpu,
                memory_mb: res.memory_bytes.div_ceil(1 << 20),
                gpu_memory_mb: res.gpu_memory_bytes.div_ceil(1 << 20),
            },
            dynamic_batching: spec.dynamic_batching.as_ref().map(|d| DynamicBatchingCfg {
                max_queue_delay_us: if d.adaptive {
                    QueueDelayCfg::Adaptive(Auto::Auto)
                } else {
                    QueueDelayCfg::Micros(d.max_queue_delay_us)
                },
                preferred_batch_sizes: d
                    .preferred_batch_sizes
                    .iter()
                    .map(|&p| p as usize)
                    .collect(),
            }),
            max_queue_size: (spec.max_queue_size > 0).then_some(spec.max_queue_size as usize),
            hooks: spec
                .hooks
                .as_ref()
                .map(HooksCfg::from_spec)
                .unwrap_or_default(),
            text: spec.text.as_ref().map(TextCfg::from_spec),
            monitoring: spec
                .monitoring
                .as_ref()
                .and_then(troupe_monitor::MonitorCfg::from_spec),
            provenance: spec
                .provenance
                .as_ref()
                .map(troupe_monitor::lineage::Provenance::from_spec)
                .unwrap_or_default(),
            signing: spec.signing.as_ref().and_then(super::SigningCfg::from_spec),
        }
        .finish(describe)
        .map_err(bad)
    }

    /// From a repository-style config.toml plus the spec's name, version, artifact and
    /// sha256 (Models.Create with `config_toml`).
    pub fn from_config_and_spec(
        text: &str,
        spec: &pb::ModelSpec,
        describe: Describe<'_>,
    ) -> Result<Self, NodeError> {
        let version = spec_name_and_version(spec)?;
        let path = artifact_path(spec)?;
        let (dir, file) = if path.is_dir() {
            (path, None)
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                Some(path),
            )
        };
        let mut def = Self::from_toml(text, &spec.name, &version, &dir, describe).map_err(|m| {
            NodeError::InvalidArgument(format!("model '{}': config: {m}", spec.name))
        })?;
        if let Some(f) = file {
            def.artifact = f;
        }
        if !spec.sha256.is_empty() {
            def.sha256 = Some(spec.sha256.to_ascii_lowercase());
        }
        Ok(def)
    }

    /// To the wire `ModelSpec`: the model's own tensors, and the text pipeline if any.
    pub fn to_spec(&self, sha256: &str) -> pb::ModelSpec {
        let conv = |ts: &[TensorSpec]| {
            ts.iter()
                .map(|t| pb::TensorSpec {
                    name: t.name.clone(),
                    data_type: t.dtype.wire_name().into(),
                    dims: t.dims.clone(),
                })
                .collect()
        };
        let model = self.model_signature();
        pb::ModelSpec {
            name: self.name.clone(),
            version: self.version.clone(),
            backend: match self.backend {
                BackendKind::Torch => pb::BackendKind::Torch,
                BackendKind::Onnx => pb::BackendKind::Onnx,
                BackendKind::Candle => pb::BackendKind::Candle,
            } as i32,
            artifact_uri: self.artifact.display().to_string(),
            sha256: sha256.to_string(),
            inputs: conv(&model.inputs),
            outputs: conv(&model.outputs),
            instances: self.instances as u32,
            resources: Some(pb::Resources {
                cpu: self.resources.cpu,
                memory_bytes: self.resources.memory_mb << 20,
                gpu_memory_bytes: self.resources.gpu_memory_mb << 20,
            }),
            device: match self.device {
                DevicePref::Any => pb::DevicePreference::Any,
                DevicePref::Cpu => pb::DevicePreference::Cpu,
                DevicePref::Gpu => pb::DevicePreference::Gpu,
            } as i32,
            max_batch_size: model.max_batch_size as u32,
            replicas: 1,
            labels: Default::default(),
            dynamic_batching: self.batching.batching().then(|| pb::DynamicBatching {
                max_queue_delay_us: self.batching.max_queue_delay.as_micros() as u64,
                adaptive: self.batching.adaptive,
                preferred_batch_sizes: self
                    .batching
                    .preferred_batch_sizes
                    .iter()
                    .map(|&p| p as u32)
                    .collect(),
            }),
            max_queue_size: self.batching.max_queue_size as u32,
            hooks: Some(self.hooks.to_spec()),
            text: self.text.as_ref().map(|t| t.to_spec()),
            monitoring: self.monitoring.as_ref().map(|m| m.to_spec()),
            provenance: (!self.provenance.is_empty()).then(|| self.provenance.to_spec()),
            signing: self.signing.as_ref().map(super::SigningCfg::to_spec),
        }
    }
}
