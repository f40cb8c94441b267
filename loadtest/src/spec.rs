//! What to call: a model, its share of the requests, and how to make its inputs.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One model to call, with its share of the requests and its inputs.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Name in reports; unique within a run.
    pub label: String,
    pub name: String,
    /// Empty: the server's choice (usually the latest).
    pub version: String,
    /// Relative share of the requests (positive).
    pub weight: f64,
    pub inputs: InputOptions,
}

impl ModelSpec {
    /// A model with weight 1, default version, random inputs, batch 1.
    pub fn new(name: &str) -> Self {
        Self {
            label: name.to_string(),
            name: name.to_string(),
            version: String::new(),
            weight: 1.0,
            inputs: InputOptions::default(),
        }
    }
}

/// How to make one model's inputs.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// Replaces a `-1` first dimension (the batch).
    pub batch: i64,
    /// Explicit shapes by input name; they must agree with the declared fixed dims.
    pub shapes: BTreeMap<String, Vec<i64>>,
    /// Send these tensors instead of random ones (no `ModelMetadata` call is made).
    pub input_file: Option<PathBuf>,
}

impl Default for InputOptions {
    fn default() -> Self {
        Self {
            batch: 1,
            shapes: BTreeMap::new(),
            input_file: None,
        }
    }
}
