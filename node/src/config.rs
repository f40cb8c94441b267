//! Model configs: the repository's `config.toml`, the wire `ModelSpec`, and the
//! normalized [`ModelDef`] both turn into.
//!
//! Repository layout (as Triton's): `DIR/<model>/config.toml` and `DIR/<model>/<version>/`
//! holding the artifact. See `docs/models.md` for every field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use troupe_backends::{BackendKind, DataType, Signature, TensorSpec};
use troupe_proto::troupe as pb;

use crate::batcher::BatchConfig;
use crate::error::NodeError;
use crate::hooks::{DriftCfg, HooksCfg};

/// Default bound of a model's queue.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1024;

fn batch_config(
    max_batch_size: usize,
    db: Option<&DynamicBatchingCfg>,
    max_queue_size: Option<usize>,
) -> Result<BatchConfig, String> {
    let max_queue_size = max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
    if max_queue_size == 0 {
        return Err("max_queue_size must be at least 1".into());
    }
    let Some(db) = db else {
        return Ok(BatchConfig {
            max_queue_size,
            ..Default::default()
        });
    };
    if max_batch_size < 2 {
        return Err("dynamic_batching needs max_batch_size of 2 or more".into());
    }
    if let Some(p) = db
        .preferred_batch_sizes
        .iter()
        .find(|&&p| p == 0 || p > max_batch_size)
    {
        return Err(format!(
            "preferred batch size {p} is not within 1..={max_batch_size}"
        ));
    }
    Ok(BatchConfig {
        max_batch_size,
        max_queue_delay: std::time::Duration::from_micros(db.max_queue_delay_us),
        preferred_batch_sizes: db.preferred_batch_sizes.clone(),
        max_queue_size,
    })
}

/// Device preference of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevicePref {
    #[default]
    Any,
    Cpu,
    Gpu,
}

/// What one replica needs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourcesCfg {
    #[serde(default)]
    pub cpu: f64,
    #[serde(default)]
    pub memory_mb: u64,
    #[serde(default)]
    pub gpu_memory_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorCfg {
    name: String,
    data_type: String,
    dims: Vec<i64>,
}

/// `[dynamic_batching]` of a config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamicBatchingCfg {
    /// How long the oldest queued call may wait for others (microseconds).
    #[serde(default)]
    pub max_queue_delay_us: u64,
    /// Batch sizes that are sent at once when reachable.
    #[serde(default)]
    pub preferred_batch_sizes: Vec<usize>,
}

/// `config.toml` as written in a repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    backend: String,
    #[serde(default)]
    max_batch_size: usize,
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
    inputs: Vec<TensorCfg>,
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
}

/// A model as the node handles it, whatever it was declared with.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDef {
    pub name: String,
    pub version: String,
    pub backend: BackendKind,
    /// The artifact file.
    pub artifact: PathBuf,
    pub sha256: Option<String>,
    pub signature: Signature,
    pub instances: usize,
    pub device: DevicePref,
    /// The GPU a placement chose (cluster nodes); None: the device preference decides.
    pub gpu: Option<u32>,
    pub threads: Option<usize>,
    pub resources: ResourcesCfg,
    pub batching: BatchConfig,
    pub hooks: HooksCfg,
}

/// Model names become paths: allow only a safe alphabet.
pub fn validate_name(name: &str) -> Result<(), NodeError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.contains("..")
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NodeError::InvalidName(name.escape_default().to_string()))
    }
}

/// Versions are positive integers, as in Triton repositories.
pub fn validate_version(v: &str) -> Result<u64, NodeError> {
    v.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
        NodeError::InvalidArgument(format!(
            "invalid model version '{}': versions are positive integers",
            v.escape_default()
        ))
    })
}

fn tensor_spec(t: TensorCfg, what: &str) -> Result<TensorSpec, String> {
    let dtype: DataType = t
        .data_type
        .parse()
        .map_err(|_| format!("{what} '{}': unknown data_type '{}'", t.name, t.data_type))?;
    if t.name.is_empty() {
        return Err(format!("{what} with an empty name"));
    }
    if let Some(d) = t.dims.iter().find(|&&d| d < -1) {
        return Err(format!(
            "{what} '{}': dimension {d} (use -1 for variable)",
            t.name
        ));
    }
    Ok(TensorSpec {
        name: t.name,
        dtype,
        dims: t.dims,
    })
}

fn check_unique(specs: &[TensorSpec], what: &str) -> Result<(), String> {
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.name == s.name) {
            return Err(format!("{what} '{}' declared twice", s.name));
        }
    }
    if specs.is_empty() {
        return Err(format!("at least one {what} must be declared"));
    }
    Ok(())
}

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

/// The highest numeric version directory of a model directory.
pub fn latest_version(model_dir: &Path) -> Result<String, NodeError> {
    let entries = std::fs::read_dir(model_dir).map_err(|e| NodeError::Config {
        path: model_dir.display().to_string(),
        msg: e.to_string(),
    })?;
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()))
        .filter(|&v| v > 0)
        .max()
        .map(|v| v.to_string())
        .ok_or_else(|| NodeError::Config {
            path: model_dir.display().to_string(),
            msg: "no version directory (e.g. 1/) holding the artifact".into(),
        })
}

impl ModelDef {
    /// Reads `repository/<name>/config.toml`; `version` None picks the latest version directory.
    pub fn from_repository(
        repository: &Path,
        name: &str,
        version: Option<&str>,
    ) -> Result<Self, NodeError> {
        validate_name(name)?;
        let dir = repository.join(name);
        let cfg_path = dir.join("config.toml");
        if !cfg_path.is_file() {
            return Err(NodeError::NotInRepository {
                name: name.to_string(),
                repository: repository.display().to_string(),
            });
        }
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| NodeError::Config {
            path: cfg_path.display().to_string(),
            msg: e.to_string(),
        })?;
        let version = match version {
            Some(v) => {
                validate_version(v)?;
                v.to_string()
            }
            None => latest_version(&dir)?,
        };
        Self::from_toml(&text, name, &version, &dir.join(&version)).map_err(|msg| {
            NodeError::Config {
                path: cfg_path.display().to_string(),
                msg,
            }
        })
    }

    /// Parses a config's text for the artifact in `version_dir`.
    pub fn from_toml(
        text: &str,
        name: &str,
        version: &str,
        version_dir: &Path,
    ) -> Result<Self, String> {
        let f: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let backend: BackendKind = f
            .backend
            .parse()
            .map_err(|e: troupe_backends::BackendError| e.to_string())?;
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
        check_unique(&inputs, "input")?;
        check_unique(&outputs, "output")?;
        let artifact_name = f
            .artifact
            .unwrap_or_else(|| backend.default_artifact().to_string());
        if artifact_name.contains('/') || artifact_name.contains("..") {
            return Err(format!(
                "artifact '{artifact_name}' must be a file name inside the version directory"
            ));
        }
        let batching = batch_config(
            f.max_batch_size,
            f.dynamic_batching.as_ref(),
            f.max_queue_size,
        )?;
        let instances = f.instances.unwrap_or(1);
        if instances == 0 || instances > 64 {
            return Err(format!("instances = {instances}: use 1 to 64"));
        }
        Ok(ModelDef {
            name: name.to_string(),
            version: version.to_string(),
            backend,
            artifact: version_dir.join(artifact_name),
            sha256: f.sha256.get(version).map(|s| s.to_ascii_lowercase()),
            signature: Signature {
                inputs,
                outputs,
                max_batch_size: f.max_batch_size,
            },
            instances,
            device: f.device,
            gpu: None,
            threads: f.threads,
            resources: f.resources,
            batching,
            hooks: f.hooks,
        })
    }

    /// From the wire `ModelSpec` (Models.Create).
    pub fn from_spec(spec: &pb::ModelSpec) -> Result<Self, NodeError> {
        let version = spec_name_and_version(spec)?;
        let bad = |m: String| NodeError::InvalidArgument(format!("model '{}': {m}", spec.name));
        let backend = match pb::BackendKind::try_from(spec.backend) {
            Ok(pb::BackendKind::Torch) => BackendKind::Torch,
            Ok(pb::BackendKind::Onnx) => BackendKind::Onnx,
            Ok(pb::BackendKind::Candle) => BackendKind::Candle,
            _ => return Err(bad("backend must be torch, onnx or candle".into())),
        };
        let conv = |ts: &[pb::TensorSpec], what: &str| -> Result<Vec<TensorSpec>, NodeError> {
            let v = ts
                .iter()
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
                .map_err(bad)?;
            check_unique(&v, what).map_err(bad)?;
            Ok(v)
        };
        let inputs = conv(&spec.inputs, "input")?;
        let outputs = conv(&spec.outputs, "output")?;
        let uri = spec
            .artifact_uri
            .strip_prefix("file://")
            .unwrap_or(&spec.artifact_uri);
        if uri.is_empty() {
            return Err(bad(
                "artifact_uri is required (a local path to the model file or its directory)".into(),
            ));
        }
        let path = PathBuf::from(uri);
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
        Ok(ModelDef {
            name: spec.name.clone(),
            version,
            backend,
            artifact,
            sha256: (!spec.sha256.is_empty()).then(|| spec.sha256.to_ascii_lowercase()),
            signature: Signature {
                inputs,
                outputs,
                max_batch_size: spec.max_batch_size as usize,
            },
            instances: spec.instances.clamp(1, 64) as usize,
            device,
            gpu: None,
            threads: None,
            resources: ResourcesCfg {
                cpu: res.cpu,
                memory_mb: res.memory_bytes.div_ceil(1 << 20),
                gpu_memory_mb: res.gpu_memory_bytes.div_ceil(1 << 20),
            },
            batching: batch_config(
                spec.max_batch_size as usize,
                spec.dynamic_batching
                    .as_ref()
                    .map(|d| DynamicBatchingCfg {
                        max_queue_delay_us: d.max_queue_delay_us,
                        preferred_batch_sizes: d
                            .preferred_batch_sizes
                            .iter()
                            .map(|&p| p as usize)
                            .collect(),
                    })
                    .as_ref(),
                (spec.max_queue_size > 0).then_some(spec.max_queue_size as usize),
            )
            .map_err(bad)?,
            hooks: spec.hooks.as_ref().map(hooks_from_spec).unwrap_or_default(),
        })
    }

    /// From a repository-style config.toml plus the spec's name, version, artifact and
    /// sha256 (Models.Create with `config_toml`).
    pub fn from_config_and_spec(text: &str, spec: &pb::ModelSpec) -> Result<Self, NodeError> {
        let version = spec_name_and_version(spec)?;
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
        let path = PathBuf::from(uri);
        let (dir, file) = if path.is_dir() {
            (path, None)
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                Some(path),
            )
        };
        let mut def = Self::from_toml(text, &spec.name, &version, &dir).map_err(|m| {
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

    /// To the wire `ModelSpec`.
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
            inputs: conv(&self.signature.inputs),
            outputs: conv(&self.signature.outputs),
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
            max_batch_size: self.signature.max_batch_size as u32,
            replicas: 1,
            labels: Default::default(),
            dynamic_batching: self.batching.batching().then(|| pb::DynamicBatching {
                max_queue_delay_us: self.batching.max_queue_delay.as_micros() as u64,
                preferred_batch_sizes: self
                    .batching
                    .preferred_batch_sizes
                    .iter()
                    .map(|&p| p as u32)
                    .collect(),
            }),
            max_queue_size: self.batching.max_queue_size as u32,
            hooks: Some(pb::Hooks {
                explain_disabled: !self.hooks.explain,
                audit: self.hooks.audit,
                drift: self.hooks.drift.as_ref().map(|d| pb::Drift {
                    input: d.input.clone().unwrap_or_default(),
                    reference_mean: d.reference_mean.clone(),
                    reference_std: d.reference_std.clone(),
                    threshold: d.threshold,
                    window: d.window as u32,
                    min_rows: d.min_rows as u32,
                }),
            }),
        }
    }
}

/// The wire `Hooks` as a config (zeros mean the defaults).
fn hooks_from_spec(h: &pb::Hooks) -> HooksCfg {
    HooksCfg {
        explain: !h.explain_disabled,
        audit: h.audit,
        drift: h.drift.as_ref().map(|d| DriftCfg {
            input: (!d.input.is_empty()).then(|| d.input.clone()),
            reference_mean: d.reference_mean.clone(),
            reference_std: d.reference_std.clone(),
            threshold: if d.threshold > 0.0 { d.threshold } else { 0.5 },
            window: if d.window > 0 { d.window as usize } else { 256 },
            min_rows: if d.min_rows > 0 {
                d.min_rows as usize
            } else {
                32
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
backend = "onnx"
max_batch_size = 8
[[inputs]]
name = "x"
data_type = "FP32"
dims = [4]
[[outputs]]
name = "y"
data_type = "FP32"
dims = [2]
"#;

    #[test]
    fn parses_a_config() {
        let d = ModelDef::from_toml(CFG, "m", "1", Path::new("/r/m/1")).unwrap();
        assert_eq!(d.backend, BackendKind::Onnx);
        assert_eq!(d.artifact, Path::new("/r/m/1/model.onnx"));
        assert_eq!(d.signature.max_batch_size, 8);
        assert_eq!(d.instances, 1);
    }

    #[test]
    fn rejects_bad_configs() {
        let e = ModelDef::from_toml(
            &CFG.replace("FP32\"\ndims = [4]", "FP99\"\ndims = [4]"),
            "m",
            "1",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("FP99"), "{e}");
        let e = ModelDef::from_toml(&CFG.replace("onnx", "tensorflow"), "m", "1", Path::new("/"))
            .unwrap_err();
        assert!(e.contains("tensorflow"), "{e}");
        assert!(
            ModelDef::from_toml(&format!("{CFG}\nbogus = 1\n"), "m", "1", Path::new("/")).is_err()
        );
    }

    #[test]
    fn batching_config() {
        let d = ModelDef::from_toml(&format!("max_queue_size = 4\n{CFG}\n[dynamic_batching]\nmax_queue_delay_us = 500\npreferred_batch_sizes = [4]\n"), "m", "1", Path::new("/")).unwrap();
        assert_eq!(d.batching.max_batch_size, 8);
        assert_eq!(d.batching.max_queue_size, 4);
        assert_eq!(
            d.batching.max_queue_delay,
            std::time::Duration::from_micros(500)
        );
        let e = ModelDef::from_toml(
            &format!("{CFG}\n[dynamic_batching]\npreferred_batch_sizes = [16]\n"),
            "m",
            "1",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("16"), "{e}");
        let no_batch = CFG.replace("max_batch_size = 8", "max_batch_size = 0");
        assert!(
            ModelDef::from_toml(
                &format!("{no_batch}\n[dynamic_batching]\n"),
                "m",
                "1",
                Path::new("/")
            )
            .is_err()
        );
    }

    #[test]
    fn names_with_path_characters_are_rejected() {
        for bad in ["../etc", "a/b", "..", "", ".hidden", "a\\b", "a b", "x..y"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        for good in ["mlp", "mlp_onnx", "resnet-18.v2", "A1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn spec_round_trip() {
        let d = ModelDef::from_toml(CFG, "m", "1", Path::new("/r/m/1")).unwrap();
        let spec = d.to_spec("abc");
        let back = ModelDef::from_spec(&spec).unwrap();
        assert_eq!(back.signature, d.signature);
        assert_eq!(back.backend, d.backend);
        assert_eq!(back.artifact, d.artifact);
    }
}
