//! Each model's prepared requests, and the weighted choice of the next one to send.

use std::sync::Arc;
use std::time::Duration;

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use troupe_client::{InputTensor, infer_request};
use troupe_proto::inference::{ModelInferRequest, ModelMetadataResponse};

use super::file::InputFile;
use super::random;
use crate::error::LoadError;
use crate::spec::ModelSpec;
use crate::target::Target;

/// One model's prepared requests.
#[derive(Debug, Clone)]
pub struct ModelWorkload {
    /// Name used in reports (the model name unless a scenario gives a label).
    pub label: String,
    pub name: String,
    pub version: String,
    pub weight: f64,
    /// `name DATATYPE [shape]` of each input sent.
    pub inputs: Vec<String>,
    requests: Vec<ModelInferRequest>,
}

impl ModelWorkload {
    /// From fixed tensors (an input file).
    pub fn fixed(spec: &ModelSpec, tensors: Vec<InputTensor>) -> Self {
        Self::from_sets(spec, vec![tensors])
    }

    /// Random requests in the shapes that `ModelMetadata` declares.
    pub fn random(
        spec: &ModelSpec,
        md: &ModelMetadataResponse,
        rng: &mut impl Rng,
    ) -> Result<Self, LoadError> {
        Ok(Self::from_sets(spec, random::variants(spec, md, rng)?))
    }

    /// One request per set of tensors, described by the first set.
    fn from_sets(spec: &ModelSpec, sets: Vec<Vec<InputTensor>>) -> Self {
        let inputs = sets.first().map(|t| describe(t)).unwrap_or_default();
        let requests = sets
            .into_iter()
            .map(|tensors| infer_request(&spec.name, &spec.version, tensors))
            .collect();
        Self {
            label: spec.label.clone(),
            name: spec.name.clone(),
            version: spec.version.clone(),
            weight: spec.weight,
            inputs,
            requests,
        }
    }

    /// A request to send (a clone of one of the prepared ones).
    pub(crate) fn request(&self, rng: &mut impl Rng) -> ModelInferRequest {
        let i = if self.requests.len() > 1 {
            rng.random_range(0..self.requests.len())
        } else {
            0
        };
        self.requests.get(i).cloned().unwrap_or_default()
    }
}

fn describe(tensors: &[InputTensor]) -> Vec<String> {
    tensors
        .iter()
        .map(|t| format!("{} {} {:?}", t.name, t.datatype, t.shape))
        .collect()
}

/// The models to call, with their requests and weights.
#[derive(Debug, Clone)]
pub struct Workload {
    models: Arc<[ModelWorkload]>,
    chooser: Option<WeightedIndex<f64>>,
}

impl Workload {
    /// Builds each model's requests: from its input file, or random in the shapes that
    /// the target's `ModelMetadata` declares.
    pub async fn prepare(
        target: &Target,
        specs: &[ModelSpec],
        seed: u64,
        timeout: Duration,
    ) -> Result<Self, LoadError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut models = Vec::new();
        for spec in specs {
            let m = match &spec.inputs.input_file {
                Some(path) => ModelWorkload::fixed(spec, InputFile::load(path)?.tensors()?),
                None => {
                    let md = target
                        .model_metadata(&spec.name, &spec.version, timeout)
                        .await?;
                    ModelWorkload::random(spec, &md, &mut rng)?
                }
            };
            models.push(m);
        }
        Self::new(models)
    }

    /// From prepared models (at least one, weights positive).
    pub fn new(models: Vec<ModelWorkload>) -> Result<Self, LoadError> {
        if models.is_empty() {
            return Err(LoadError::Invalid("no model to call".into()));
        }
        let chooser = if models.len() > 1 {
            let w = WeightedIndex::new(models.iter().map(|m| m.weight))
                .map_err(|e| LoadError::Invalid(format!("bad model weights: {e}")))?;
            Some(w)
        } else {
            None
        };
        Ok(Self {
            models: models.into(),
            chooser,
        })
    }

    pub fn models(&self) -> &[ModelWorkload] {
        &self.models
    }

    /// Picks a model by weight; returns its index and a request for it.
    pub(crate) fn next(&self, rng: &mut impl Rng) -> (usize, ModelInferRequest) {
        let m = self.chooser.as_ref().map_or(0, |c| c.sample(rng));
        let req = self
            .models
            .get(m)
            .map(|w| w.request(rng))
            .unwrap_or_default();
        (m, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::generate::{DataType, Generate};

    #[test]
    fn random_requests_carry_every_input() {
        let (spec, md) = random::seven_inputs();
        let mut rng = StdRng::seed_from_u64(7);
        let w = ModelWorkload::random(&spec, &md, &mut rng).expect("workload");
        assert_eq!(w.inputs.len(), 7);
        assert_eq!(w.inputs[0], "in0 FP32 [2, 3, 1]");
        let req = w.request(&mut rng);
        assert_eq!(req.model_name, "m");
        assert_eq!(req.inputs.len(), 7);
        assert_eq!(req.raw_input_contents.len(), 7);
        for (t, raw) in req.inputs.iter().zip(&req.raw_input_contents) {
            assert_eq!(t.shape, vec![2, 3, 1]);
            let dt = <DataType as Generate>::parse(&t.datatype).expect("type");
            assert_eq!(raw.len(), 6 * dt.budget(), "{}", t.datatype);
        }
        let mut bad = md.clone();
        bad.inputs[0].datatype = "FP99".into();
        assert!(ModelWorkload::random(&spec, &bad, &mut rng).is_err());
    }
}
