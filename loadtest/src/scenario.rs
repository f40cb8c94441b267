//! A weighted mix of models to call, read from a TOML scenario file.
//!
//! ```toml
//! [[model]]
//! name = "mlp_onnx"
//! weight = 3
//!
//! [[model]]
//! name = "mlp_torch"
//! weight = 1
//! batch = 8                      # optional: replaces a -1 first dimension
//! shape = { input = [8, 16] }    # optional: explicit shapes by input name
//! # input_file = "inputs.json"   # optional: fixed tensors (relative to this file)
//! # version = "1"                # optional: default is the server's choice
//! # label = "torch-b8"           # optional: name in reports (default: the model name)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{LoadError, read_text};
use crate::spec::{InputOptions, ModelSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    model: Vec<ScenarioModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioModel {
    name: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    batch: Option<i64>,
    #[serde(default)]
    shape: BTreeMap<String, Vec<i64>>,
    #[serde(default)]
    input_file: Option<PathBuf>,
}

/// Reads a scenario file. `defaults` gives the batch (and anything else) a model entry
/// does not set; relative `input_file`s are relative to the scenario file.
pub fn load_scenario(path: &Path, defaults: &InputOptions) -> Result<Vec<ModelSpec>, LoadError> {
    let text = read_text(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_scenario(&text, base, defaults)
        .map_err(|e| LoadError::Invalid(format!("scenario {}: {e}", path.display())))
}

/// Parses scenario text (see the module docs).
pub fn parse_scenario(
    text: &str,
    base_dir: &Path,
    defaults: &InputOptions,
) -> Result<Vec<ModelSpec>, LoadError> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| LoadError::Invalid(e.to_string()))?;
    if file.model.is_empty() {
        return Err(LoadError::Invalid(
            "no [[model]] entries (each needs at least name = \"...\")".into(),
        ));
    }
    let mut labels = BTreeSet::new();
    let mut specs = Vec::new();
    for m in file.model {
        if m.name.trim().is_empty() {
            return Err(LoadError::Invalid("a [[model]] has an empty name".into()));
        }
        let label = m.label.unwrap_or_else(|| m.name.clone());
        if !labels.insert(label.clone()) {
            return Err(LoadError::Invalid(format!(
                "model '{label}' appears twice; give each entry a distinct label = \"...\""
            )));
        }
        let weight = m.weight.unwrap_or(1.0);
        if !(weight.is_finite() && weight > 0.0) {
            return Err(LoadError::Invalid(format!(
                "model '{label}': weight must be a positive number, not {weight}"
            )));
        }
        let batch = m.batch.unwrap_or(defaults.batch);
        if batch < 1 {
            return Err(LoadError::Invalid(format!(
                "model '{label}': batch must be at least 1"
            )));
        }
        for (input, dims) in &m.shape {
            if dims.iter().any(|&d| d < 0) {
                return Err(LoadError::Invalid(format!(
                    "model '{label}': shape of '{input}' has a negative dimension"
                )));
            }
        }
        let shapes = if m.shape.is_empty() {
            defaults.shapes.clone()
        } else {
            m.shape
        };
        let input_file = m
            .input_file
            .map(|p| if p.is_absolute() { p } else { base_dir.join(p) })
            .or_else(|| defaults.input_file.clone());
        specs.push(ModelSpec {
            label,
            name: m.name,
            version: m.version.unwrap_or_default(),
            weight,
            inputs: InputOptions {
                batch,
                shapes,
                input_file,
            },
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mix() {
        let specs = parse_scenario(
            r#"
            [[model]]
            name = "a"
            weight = 3
            [[model]]
            name = "b"
            batch = 4
            shape = { input = [4, 16] }
            input_file = "x.json"
            "#,
            Path::new("/s"),
            &InputOptions::default(),
        )
        .expect("scenario");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].weight, 3.0);
        assert_eq!(specs[0].inputs.batch, 1);
        assert_eq!(specs[1].weight, 1.0);
        assert_eq!(specs[1].inputs.batch, 4);
        assert_eq!(specs[1].inputs.shapes["input"], vec![4, 16]);
        assert_eq!(
            specs[1].inputs.input_file.as_deref(),
            Some(Path::new("/s/x.json"))
        );
    }

    #[test]
    fn refuses_bad_scenarios() {
        let d = InputOptions::default();
        let p = Path::new(".");
        assert!(parse_scenario("", p, &d).is_err());
        assert!(parse_scenario("[[model]]\nname = \"a\"\nweight = 0", p, &d).is_err());
        assert!(parse_scenario("[[model]]\nname = \"a\"\n[[model]]\nname = \"a\"", p, &d).is_err());
        assert!(parse_scenario("[[model]]\nname = \"a\"\ncolour = 1", p, &d).is_err());
        assert!(
            parse_scenario(
                "[[model]]\nname = \"a\"\n[[model]]\nname = \"a\"\nlabel = \"a2\"",
                p,
                &d
            )
            .is_ok()
        );
    }
}
