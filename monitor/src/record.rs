//! What is stored: one [`Prediction`] per recorded call, one [`Truth`] per label given
//! later, joined by request id.

use serde::{Deserialize, Serialize};

/// How a call's outputs are kept: the class and its score for classifiers, the values
/// of small outputs, a digest of large ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Summary {
    /// A classifier's answer: the predicted class (its name, or its index), its score,
    /// and every class's score in class order (empty when the model gives only a label).
    Class {
        class: String,
        score: Option<f64>,
        scores: Vec<f64>,
    },
    /// A regression model's answer.
    Value(f64),
    /// A small output's values.
    Values(Vec<f64>),
    /// sha256 of outputs too large to keep.
    Digest(String),
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The client's request id, else one Troupe made (the answer carries it either way).
    pub request_id: String,
    pub model: String,
    pub version: String,
    /// sha256 of the artifact that answered.
    pub digest: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub node: String,
    pub trace_id: String,
    pub summary: Summary,
    /// JSON of the inputs, when this call was sampled for them (size-capped).
    pub inputs: Option<String>,
    /// Set when a review rule queued the call.
    pub review: Option<crate::review::Queued>,
}

impl Prediction {
    /// About what the row takes in the store, for retention by size.
    pub fn bytes(&self) -> i64 {
        let summary = match &self.summary {
            Summary::Class { class, scores, .. } => class.len() + 8 + scores.len() * 12,
            Summary::Value(_) => 8,
            Summary::Values(v) => v.len() * 12,
            Summary::Digest(d) => d.len(),
        };
        let fixed = self.request_id.len()
            + self.model.len()
            + self.version.len()
            + self.digest.len()
            + self.node.len()
            + self.trace_id.len()
            + 8;
        (fixed + summary + self.inputs.as_ref().map_or(0, String::len)) as i64
    }
}

/// The ground truth of one call, given later.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub request_id: String,
    pub label: TruthValue,
    /// When it was given (ms since the epoch).
    pub time_ms: i64,
    /// Who gave it (the caller's name).
    pub source: String,
}

/// A true class (classifiers) or value (regression).
#[derive(Debug, Clone, PartialEq)]
pub enum TruthValue {
    Class(String),
    Value(f64),
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
