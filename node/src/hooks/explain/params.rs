//! What a call asks to be explained: the `explain` request parameters, parsed and
//! checked against the model before anything runs.

use std::collections::HashMap;

use troupe_backends::BackendKind;
use troupe_proto::explain::param;
use troupe_proto::inference::InferParameter;
use troupe_proto::inference::infer_parameter::ParameterChoice;

use crate::error::NodeError;
use crate::hooks::call::HookedModel;

/// An attribution method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Saliency,
    IntegratedGradients,
    Occlusion,
    Shapley,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self, NodeError> {
        Ok(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "saliency" | "gradient" => Method::Saliency,
            "integrated_gradients" | "ig" => Method::IntegratedGradients,
            "occlusion" => Method::Occlusion,
            "shapley" | "shapley_sampling" => Method::Shapley,
            _ => {
                return Err(NodeError::InvalidArgument(format!(
                    "unknown explanation method '{}' (expected saliency, integrated_gradients, occlusion or shapley)",
                    s.escape_default()
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::IntegratedGradients => "integrated_gradients",
            Method::Occlusion => "occlusion",
            Method::Shapley => "shapley",
        }
    }

    fn needs_gradients(self) -> bool {
        matches!(self, Method::Saliency | Method::IntegratedGradients)
    }
}

/// What one call asked to be explained.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainParams {
    pub method: Method,
    /// Index of the declared output explained.
    pub output: usize,
    pub target: Option<usize>,
    pub baseline: f32,
    pub steps: usize,
    pub window: usize,
    pub samples: usize,
    pub seed: u64,
}

fn param_str(p: &InferParameter) -> Option<String> {
    match &p.parameter_choice {
        Some(ParameterChoice::StringParam(s)) => Some(s.clone()),
        _ => None,
    }
}

fn param_num(p: &InferParameter) -> Option<f64> {
    match &p.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) => Some(*v as f64),
        Some(ParameterChoice::Uint64Param(v)) => Some(*v as f64),
        Some(ParameterChoice::DoubleParam(v)) => Some(*v),
        Some(ParameterChoice::StringParam(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ExplainParams {
    /// Reads `explain` and its options from request parameters; None when `explain` is
    /// absent.
    pub fn from_params(
        params: &HashMap<String, InferParameter>,
        model: &dyn HookedModel,
    ) -> Result<Option<Self>, NodeError> {
        let Some(method) = params.get(param::METHOD) else {
            return Ok(None);
        };
        let method = param_str(method).ok_or_else(|| {
            NodeError::InvalidArgument(
                "parameter 'explain' must be a string naming the method".into(),
            )
        })?;
        let method = Method::parse(&method)?;
        if model.pipeline().is_some() && method != Method::Occlusion {
            return Err(NodeError::FailedPrecondition(format!(
                "model '{}' is a text model: it is explained by occlusion over its tokens \
                 (explain = \"occlusion\"); {} over token embeddings is not served",
                model.def().name,
                method.as_str()
            )));
        }
        let num = |name: &str| -> Result<Option<f64>, NodeError> {
            match params.get(name) {
                None => Ok(None),
                Some(p) => param_num(p).map(Some).ok_or_else(|| {
                    NodeError::InvalidArgument(format!("parameter '{name}' must be a number"))
                }),
            }
        };
        let count = |name: &str, default: usize, max: usize| -> Result<usize, NodeError> {
            match num(name)? {
                None => Ok(default),
                Some(v) if v >= 1.0 && v <= max as f64 && v.fract() == 0.0 => Ok(v as usize),
                Some(v) => Err(NodeError::InvalidArgument(format!(
                    "parameter '{name}' = {v}: use a whole number from 1 to {max}"
                ))),
            }
        };
        let sig = &model.def().signature;
        let output = match params.get(param::OUTPUT).and_then(param_str) {
            None => 0,
            Some(n) if n.is_empty() => 0,
            Some(n) => sig
                .outputs
                .iter()
                .position(|o| o.name == n)
                .ok_or_else(|| {
                    NodeError::InvalidArgument(format!(
                        "explain_output '{}': model '{}' has no such output",
                        n.escape_default(),
                        model.def().name
                    ))
                })?,
        };
        let target = match num(param::TARGET)? {
            None => None,
            Some(v) if v < 0.0 => None,
            Some(v) if v.fract() == 0.0 => Some(v as usize),
            Some(v) => {
                return Err(NodeError::InvalidArgument(format!(
                    "explain_target = {v}: use the index of an output element"
                )));
            }
        };
        let baseline = num(param::BASELINE)?.unwrap_or(0.0) as f32;
        if !baseline.is_finite() {
            return Err(NodeError::InvalidArgument(
                "explain_baseline must be finite".into(),
            ));
        }
        Ok(Some(Self {
            method,
            output,
            target,
            baseline,
            steps: count(param::STEPS, 32, 1024)?,
            window: count(param::WINDOW, 1, 1 << 24)?,
            samples: count(param::SAMPLES, 16, 1024)?,
            seed: num(param::SEED)?.unwrap_or(0.0) as u64,
        }))
    }

    /// Refuses what this model cannot do before it runs.
    pub fn check(&self, model: &dyn HookedModel) -> Result<(), NodeError> {
        if self.method.needs_gradients() && model.def().backend == BackendKind::Onnx {
            return Err(NodeError::FailedPrecondition(format!(
                "model '{}' runs on onnx, which has no gradients: {} needs torch or candle; use occlusion or shapley",
                model.def().name,
                self.method.as_str()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_with_aliases_and_reject_unknown_names() {
        assert_eq!(Method::parse("IG").unwrap(), Method::IntegratedGradients);
        assert_eq!(
            Method::parse("integrated-gradients").unwrap(),
            Method::IntegratedGradients
        );
        assert_eq!(Method::parse("occlusion").unwrap(), Method::Occlusion);
        let e = Method::parse("lime").unwrap_err().to_string();
        assert!(e.contains("lime") && e.contains("shapley"), "{e}");
    }
}
