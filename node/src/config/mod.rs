//! Model configs: the repository's `config.toml` ([`file`]), the wire `ModelSpec`
//! ([`spec`]), and the normalized [`ModelDef`] both turn into. Plain data and its checks:
//! nothing here depends on the node's run time.
//!
//! Repository layout (as Triton's): `DIR/<model>/config.toml` and `DIR/<model>/<version>/`
//! holding the artifact. A folder without config.toml serves too when its model
//! describes itself (ONNX, a Hugging Face folder for candle): see [`Draft::finish`].
//! `docs/models.md` lists every field.

pub mod file;
pub mod hooks;
pub mod signing;
pub mod spec;
pub mod text;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use troupe_backends::{
    BackendError, BackendKind, DataType, FullSpec, Overrides, Signature, TensorSpec,
};

use crate::batcher::BatchConfig;
use crate::error::NodeError;
pub use hooks::{DriftCfg, HooksCfg};
pub use signing::{Policy, SigningCfg};
pub use text::{Pooling, TextCfg, TextDef};

/// Default bound of a model's queue.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1024;

/// Reads what a model file says about its inputs and outputs (auto-complete); the
/// registry's opens ONNX Runtime with the node's library.
pub type Describe<'a> = &'a dyn Fn(BackendKind, &Path) -> Result<Vec<FullSpec>, BackendError>;

/// For configs that must be complete: describing a file is refused.
pub fn no_describe(kind: BackendKind, path: &Path) -> Result<Vec<FullSpec>, BackendError> {
    Err(BackendError::Load(format!(
        "{}: a {kind} model without declared inputs and outputs cannot be described here",
        path.display()
    )))
}

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
    let (max_queue_delay, adaptive) = match db.max_queue_delay_us {
        QueueDelayCfg::Micros(us) => (std::time::Duration::from_micros(us), false),
        QueueDelayCfg::Adaptive(Auto::Auto) => (AUTO_MAX_QUEUE_DELAY, true),
    };
    Ok(BatchConfig {
        max_batch_size,
        max_queue_delay,
        adaptive,
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
pub struct TensorCfg {
    pub name: String,
    pub data_type: String,
    pub dims: Vec<i64>,
}

/// The longest an adaptive window may be when the config names no bound.
pub const AUTO_MAX_QUEUE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// `max_queue_delay_us`: microseconds, or `"auto"`: the window follows the measured
/// compute time and arrival rate (`batcher/adaptive.rs`), up to
/// [`AUTO_MAX_QUEUE_DELAY`].
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(untagged, expecting = "a number of microseconds, or \"auto\"")]
pub enum QueueDelayCfg {
    Micros(u64),
    Adaptive(Auto),
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Auto {
    Auto,
}

impl Default for QueueDelayCfg {
    fn default() -> Self {
        Self::Micros(0)
    }
}

/// `[dynamic_batching]` of a config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamicBatchingCfg {
    /// How long the oldest queued call may wait for others (microseconds), or "auto".
    #[serde(default)]
    pub max_queue_delay_us: QueueDelayCfg,
    /// Batch sizes that are sent at once when reachable.
    #[serde(default)]
    pub preferred_batch_sizes: Vec<usize>,
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
    /// A text pipeline around the model; `signature` is then what clients see (text in,
    /// embedding out) and the pipeline holds the model's own.
    pub text: Option<TextDef>,
    /// What each call leaves in the prediction store (None: nothing).
    pub monitoring: Option<troupe_monitor::MonitorCfg>,
    /// Where the weights came from (`[provenance]`).
    pub provenance: troupe_monitor::lineage::Provenance,
    /// The signature the artifact must carry (`[signing]`; None: not checked).
    pub signing: Option<SigningCfg>,
}

/// Model names become paths: allow only a safe alphabet (`troupe_proto::names`).
pub fn validate_name(name: &str) -> Result<(), NodeError> {
    if troupe_proto::names::is_valid_model_name(name) {
        Ok(())
    } else {
        Err(NodeError::InvalidName(name.to_string()))
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

pub fn tensor_spec(t: TensorCfg, what: &str) -> Result<TensorSpec, String> {
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

pub fn check_unique(specs: &[TensorSpec], what: &str, may_be_empty: bool) -> Result<(), String> {
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.name == s.name) {
            return Err(format!("{what} '{}' declared twice", s.name));
        }
    }
    if specs.is_empty() && !may_be_empty {
        return Err(format!("at least one {what} must be declared"));
    }
    Ok(())
}

/// A model declaration before the model file has filled in what it left out.
pub struct Draft {
    pub name: String,
    pub version: String,
    pub backend: BackendKind,
    pub artifact: PathBuf,
    pub sha256: Option<String>,
    /// The model's inputs and outputs as declared (empty: read from the model).
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// None: from the model (a shared leading dynamic dim batches).
    pub max_batch_size: Option<usize>,
    pub instances: usize,
    pub device: DevicePref,
    pub threads: Option<usize>,
    pub resources: ResourcesCfg,
    pub dynamic_batching: Option<DynamicBatchingCfg>,
    pub max_queue_size: Option<usize>,
    pub hooks: HooksCfg,
    pub text: Option<TextCfg>,
    pub monitoring: Option<troupe_monitor::MonitorCfg>,
    pub provenance: troupe_monitor::lineage::Provenance,
    pub signing: Option<SigningCfg>,
}

impl Draft {
    /// The model's signature (declared, or completed from the file), the text pipeline
    /// around it, and the batching that fits.
    pub fn finish(self, describe: Describe<'_>) -> Result<ModelDef, String> {
        check_unique(&self.inputs, "input", true)?;
        check_unique(&self.outputs, "output", true)?;
        let model = if self.inputs.is_empty() || self.outputs.is_empty() {
            let described = describe(self.backend, &self.artifact).map_err(|e| e.to_string())?;
            troupe_backends::complete(
                &self.artifact.display().to_string(),
                &described,
                Overrides {
                    inputs: &self.inputs,
                    outputs: &self.outputs,
                    max_batch_size: self.max_batch_size,
                },
            )
            .map_err(|e| e.to_string())?
        } else {
            Signature {
                inputs: self.inputs,
                outputs: self.outputs,
                max_batch_size: self.max_batch_size.unwrap_or(0),
            }
        };
        check_unique(&model.inputs, "input", false)?;
        check_unique(&model.outputs, "output", false)?;
        if let Some(s) = model
            .inputs
            .iter()
            .chain(&model.outputs)
            .find(|s| s.dtype == DataType::Bytes)
            .filter(|_| self.text.is_some())
        {
            return Err(format!(
                "'{}' is BYTES: a [text] model's own tensors are token ids and hidden states",
                s.name
            ));
        }
        let dir = self
            .artifact
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let text = self
            .text
            .map(|t| t.resolve(&dir, model.clone()))
            .transpose()?;
        let signature = text
            .as_ref()
            .map_or_else(|| model.clone(), TextDef::public_signature);
        let batching = batch_config(
            signature.max_batch_size,
            self.dynamic_batching.as_ref(),
            self.max_queue_size,
        )?;
        if self.instances == 0 || self.instances > 64 {
            return Err(format!("instances = {}: use 1 to 64", self.instances));
        }
        if let Some(sg) = &self.signing {
            sg.validate()?;
        }
        if let Some(m) = &self.monitoring {
            m.validate()?;
            if let Some(out) = &m.output
                && !signature.outputs.iter().any(|o| &o.name == out)
            {
                return Err(format!(
                    "[monitoring] output '{out}' is not an output of the model (it has {})",
                    signature
                        .outputs
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(ModelDef {
            name: self.name,
            version: self.version,
            backend: self.backend,
            artifact: self.artifact,
            sha256: self.sha256,
            signature,
            instances: self.instances,
            device: self.device,
            gpu: None,
            threads: self.threads,
            resources: self.resources,
            batching,
            hooks: self.hooks,
            text,
            monitoring: self.monitoring,
            provenance: self.provenance,
            signing: self.signing,
        })
    }
}

impl ModelDef {
    /// The signature the backend runs: the model's own (token ids in, hidden states
    /// out, for a text model), where `signature` is what clients send and get.
    pub fn model_signature(&self) -> &Signature {
        self.text.as_ref().map_or(&self.signature, |t| &t.model)
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
        let d = ModelDef::from_toml(CFG, "m", "1", Path::new("/r/m/1"), &no_describe).unwrap();
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
            &no_describe,
        )
        .unwrap_err();
        assert!(e.contains("FP99"), "{e}");
        let e = ModelDef::from_toml(
            &CFG.replace("onnx", "tensorflow"),
            "m",
            "1",
            Path::new("/"),
            &no_describe,
        )
        .unwrap_err();
        assert!(e.contains("tensorflow"), "{e}");
        assert!(
            ModelDef::from_toml(
                &format!("{CFG}\nbogus = 1\n"),
                "m",
                "1",
                Path::new("/"),
                &no_describe
            )
            .is_err()
        );
    }

    #[test]
    fn batching_config() {
        let d = ModelDef::from_toml(&format!("max_queue_size = 4\n{CFG}\n[dynamic_batching]\nmax_queue_delay_us = 500\npreferred_batch_sizes = [4]\n"), "m", "1", Path::new("/"), &no_describe).unwrap();
        assert_eq!(d.batching.max_batch_size, 8);
        assert_eq!(d.batching.max_queue_size, 4);
        assert_eq!(
            d.batching.max_queue_delay,
            std::time::Duration::from_micros(500)
        );
        assert!(!d.batching.adaptive);
        let auto = ModelDef::from_toml(
            &format!("{CFG}\n[dynamic_batching]\nmax_queue_delay_us = \"auto\"\n"),
            "m",
            "1",
            Path::new("/"),
            &no_describe,
        )
        .unwrap();
        assert!(auto.batching.adaptive);
        assert_eq!(auto.batching.max_queue_delay, AUTO_MAX_QUEUE_DELAY);
        let e = ModelDef::from_toml(
            &format!("{CFG}\n[dynamic_batching]\nmax_queue_delay_us = \"soon\"\n"),
            "m",
            "1",
            Path::new("/"),
            &no_describe,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("a number of microseconds, or \"auto\""),
            "{e}"
        );
        let e = ModelDef::from_toml(
            &format!("{CFG}\n[dynamic_batching]\npreferred_batch_sizes = [16]\n"),
            "m",
            "1",
            Path::new("/"),
            &no_describe,
        )
        .unwrap_err();
        assert!(e.contains("16"), "{e}");
        let no_batch = CFG.replace("max_batch_size = 8", "max_batch_size = 0");
        assert!(
            ModelDef::from_toml(
                &format!("{no_batch}\n[dynamic_batching]\n"),
                "m",
                "1",
                Path::new("/"),
                &no_describe,
            )
            .is_err()
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("mlp_onnx").is_ok());
        let e = validate_name("../etc").unwrap_err();
        assert!(e.to_string().contains("'../etc'"), "{e}");
    }

    #[test]
    fn spec_round_trip() {
        let d = ModelDef::from_toml(CFG, "m", "1", Path::new("/r/m/1"), &no_describe).unwrap();
        let spec = d.to_spec("abc");
        let back = ModelDef::from_spec(&spec, &no_describe).unwrap();
        assert_eq!(back.signature, d.signature);
        assert_eq!(back.backend, d.backend);
        assert_eq!(back.artifact, d.artifact);
    }
}
