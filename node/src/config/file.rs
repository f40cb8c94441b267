//! `config.toml` of a repository model, and models whose folder has none.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use troupe_backends::BackendKind;

use super::{
    Describe, DevicePref, Draft, DynamicBatchingCfg, HooksCfg, ModelDef, ResourcesCfg, TensorCfg,
    TextCfg, latest_version, tensor_spec, validate_name, validate_version,
};
use crate::error::NodeError;

/// `config.toml` as written in a repository. Every field may be left out when the
/// model file describes itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// torch | onnx | candle; default: from the artifact in the version directory.
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    max_batch_size: Option<usize>,
    #[serde(default)]
    instances: Option<usize>,
    #[serde(default)]
    device: DevicePref,
    /// Artifact file name inside the version directory (default per backend).
    #[serde(default)]
    artifact: Option<String>,
    /// Expected sha256 of the artifact, per version: `{ "1" = "ab12..." }`.
    #[serde(default)]
    sha256: BTreeMap<String, String>,
    /// Intra-op threads per instance (default: the node's --backend-threads).
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    inputs: Vec<TensorCfg>,
    #[serde(default)]
    outputs: Vec<TensorCfg>,
    #[serde(default)]
    resources: ResourcesCfg,
    /// Join calls into batches (needs max_batch_size > 1).
    #[serde(default)]
    dynamic_batching: Option<DynamicBatchingCfg>,
    /// Calls that may wait in the model's queue; more get RESOURCE_EXHAUSTED.
    #[serde(default)]
    max_queue_size: Option<usize>,
    /// Call hooks: explanation, audit, drift.
    #[serde(default)]
    hooks: HooksCfg,
    /// A text pipeline: BYTES text in, an embedding out.
    #[serde(default)]
    text: Option<TextCfg>,
    /// Record every call in the prediction store (docs/monitoring.md).
    #[serde(default)]
    monitoring: Option<troupe_monitor::MonitorCfg>,
    /// Where the weights came from.
    #[serde(default)]
    provenance: troupe_monitor::lineage::Provenance,
    /// The signature the artifact must carry.
    #[serde(default)]
    signing: Option<super::SigningCfg>,
}

/// The backend whose default artifact is in `dir` (a folder without config.toml).
fn backend_in(dir: &Path) -> Result<BackendKind, String> {
    let found: Vec<BackendKind> = [BackendKind::Onnx, BackendKind::Candle, BackendKind::Torch]
        .into_iter()
        .filter(|k| dir.join(k.default_artifact()).is_file())
        .collect();
    match found.as_slice() {
        [k] => Ok(*k),
        [] => Err(format!(
            "{} holds none of model.onnx, model.safetensors, model.pt: name the backend and artifact in config.toml",
            dir.display()
        )),
        _ => Err(format!(
            "{} holds artifacts for several backends: say `backend = ...` in config.toml",
            dir.display()
        )),
    }
}

/// True when `dir` is a model folder: a config.toml, or a version directory with an artifact.
pub fn is_model_dir(dir: &Path) -> bool {
    dir.join("config.toml").is_file()
        || latest_version(dir).is_ok_and(|v| backend_in(&dir.join(v)).is_ok())
}

impl ModelDef {
    /// Reads `repository/<name>/config.toml` (or none, for self-describing models);
    /// `version` None picks the latest version directory.
    pub fn from_repository(
        repository: &Path,
        name: &str,
        version: Option<&str>,
        describe: Describe<'_>,
    ) -> Result<Self, NodeError> {
        validate_name(name)?;
        let dir = repository.join(name);
        if !is_model_dir(&dir) {
            return Err(NodeError::NotInRepository {
                name: name.to_string(),
                repository: repository.display().to_string(),
            });
        }
        let cfg_path = dir.join("config.toml");
        let text = if cfg_path.is_file() {
            std::fs::read_to_string(&cfg_path).map_err(|e| NodeError::Config {
                path: cfg_path.display().to_string(),
                msg: e.to_string(),
            })?
        } else {
            String::new()
        };
        let version = match version {
            Some(v) => {
                validate_version(v)?;
                v.to_string()
            }
            None => latest_version(&dir)?,
        };
        Self::from_toml(&text, name, &version, &dir.join(&version), describe).map_err(|msg| {
            NodeError::Config {
                path: if cfg_path.is_file() {
                    cfg_path.display().to_string()
                } else {
                    dir.display().to_string()
                },
                msg,
            }
        })
    }

    /// Parses a config's text (empty: all defaults) for the artifact in `version_dir`.
    pub fn from_toml(
        text: &str,
        name: &str,
        version: &str,
        version_dir: &Path,
        describe: Describe<'_>,
    ) -> Result<Self, String> {
        let f: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let backend: BackendKind = match &f.backend {
            Some(b) => b
                .parse()
                .map_err(|e: troupe_backends::BackendError| e.to_string())?,
            None => backend_in(version_dir)?,
        };
        let inputs = f
            .inputs
            .into_iter()
            .map(|t| tensor_spec(t, "input"))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = f
            .outputs
            .into_iter()
            .map(|t| tensor_spec(t, "output"))
            .collect::<Result<Vec<_>, _>>()?;
        let artifact_name = f
            .artifact
            .unwrap_or_else(|| backend.default_artifact().to_string());
        if artifact_name.contains('/') || artifact_name.contains("..") {
            return Err(format!(
                "artifact '{artifact_name}' must be a file name inside the version directory"
            ));
        }
        Draft {
            name: name.to_string(),
            version: version.to_string(),
            backend,
            artifact: version_dir.join(artifact_name),
            sha256: f.sha256.get(version).map(|s| s.to_ascii_lowercase()),
            inputs,
            outputs,
            max_batch_size: f.max_batch_size,
            instances: f.instances.unwrap_or(1),
            device: f.device,
            threads: f.threads,
            resources: f.resources,
            dynamic_batching: f.dynamic_batching,
            max_queue_size: f.max_queue_size,
            hooks: f.hooks,
            text: f.text,
            monitoring: f.monitoring,
            provenance: f.provenance,
            signing: f.signing,
        }
        .finish(describe)
    }
}
