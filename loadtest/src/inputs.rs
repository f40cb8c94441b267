//! What each request carries: random tensors in the model's declared shapes, or the
//! tensors of a JSON input file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use troupe_client::{InputTensor, infer_request};
use troupe_proto::inference::{ModelInferRequest, ModelMetadataResponse};

use crate::error::{LoadError, read_text};
use crate::spec::{InputOptions, ModelSpec};
use crate::target::Target;

/// At most this many different random requests are made per model (fewer when they are
/// large); each call sends one of them, chosen at random.
const MAX_VARIANTS: usize = 16;
/// Memory allowed for one model's prepared requests.
const VARIANT_BYTES: usize = 64 << 20;
/// Largest request (all inputs) this tool will build.
const MAX_REQUEST_BYTES: usize = 1 << 30;

pub use troupe_proto::DataType;

/// The words random BYTES elements are made of (a sentence of 4 to 16 of them).
const WORDS: [&str; 16] = [
    "the", "model", "serves", "a", "quick", "answer", "to", "every", "call", "from", "any",
    "client", "on", "one", "small", "machine",
];

/// What the load generator makes of each data type: parsing, a memory budget, random
/// data and JSON values.
pub trait Generate: Sized {
    /// Parses `FP32`, `INT64`, ... (also Triton's `TYPE_FP32` spelling).
    fn parse(s: &str) -> Option<Self>;
    /// Bytes per element; for BYTES, the most a random element takes.
    fn budget(self) -> usize;
    /// `numel` random elements (see the impl).
    fn random(self, numel: usize, rng: &mut impl Rng) -> bytes::Bytes;
    /// JSON values (numbers, booleans for BOOL, strings for BYTES) as wire bytes.
    fn encode(self, values: &[&serde_json::Value], what: &str) -> Result<bytes::Bytes, LoadError>;
}

impl Generate for DataType {
    fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    fn budget(self) -> usize {
        self.size().unwrap_or(4 + 16 * 8)
    }

    /// `numel` random little-endian values: floats uniform in [-1, 1), integers
    /// uniform in [0, 100), booleans fair.
    fn random(self, numel: usize, rng: &mut impl Rng) -> bytes::Bytes {
        use DataType::*;
        if self == Bytes {
            let texts: Vec<String> = (0..numel)
                .map(|_| {
                    let n = rng.random_range(4..=16);
                    (0..n)
                        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            return troupe_proto::bytes::encode_bytes(texts.iter().map(|t| t.as_bytes()));
        }
        let mut out = Vec::with_capacity(numel * self.budget());
        for _ in 0..numel {
            let f: f64 = rng.random_range(-1.0..1.0);
            let i: u8 = rng.random_range(0..100);
            match self {
                Bool => out.push(u8::from(rng.random::<bool>())),
                U8 => out.push(i),
                I8 => out.push(i),
                U16 => out.extend_from_slice(&u16::from(i).to_le_bytes()),
                I16 => out.extend_from_slice(&i16::from(i).to_le_bytes()),
                U32 => out.extend_from_slice(&u32::from(i).to_le_bytes()),
                I32 => out.extend_from_slice(&i32::from(i).to_le_bytes()),
                U64 => out.extend_from_slice(&u64::from(i).to_le_bytes()),
                I64 => out.extend_from_slice(&i64::from(i).to_le_bytes()),
                F16 => out.extend_from_slice(&half::f16::from_f64(f).to_le_bytes()),
                BF16 => out.extend_from_slice(&half::bf16::from_f64(f).to_le_bytes()),
                F32 => out.extend_from_slice(&(f as f32).to_le_bytes()),
                F64 => out.extend_from_slice(&f.to_le_bytes()),
                Bytes => unreachable!("BYTES returned above"),
            }
        }
        bytes::Bytes::from(out)
    }

    /// Encodes JSON values (numbers, or booleans for BOOL) as little-endian bytes.
    fn encode(self, values: &[&serde_json::Value], what: &str) -> Result<bytes::Bytes, LoadError> {
        use DataType::*;
        if self == Bytes {
            let texts = values
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    v.as_str().ok_or_else(|| {
                        LoadError::Invalid(format!("{what}: element {k} ({v}) is not a string"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(troupe_proto::bytes::encode_bytes(
                texts.iter().map(|t| t.as_bytes()),
            ));
        }
        let mut out = Vec::with_capacity(values.len() * self.budget());
        for (k, v) in values.iter().enumerate() {
            let bad = || {
                LoadError::Invalid(format!(
                    "{what}: element {k} ({v}) is not a valid {}",
                    self.wire_name()
                ))
            };
            let int = |lo: i128, hi: i128| -> Result<i128, LoadError> {
                let x = v
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| v.as_u64().map(i128::from))
                    .ok_or_else(bad)?;
                if (lo..=hi).contains(&x) {
                    Ok(x)
                } else {
                    Err(bad())
                }
            };
            let float = || v.as_f64().ok_or_else(bad);
            match self {
                Bool => out.push(match (v.as_bool(), v.as_u64()) {
                    (Some(b), _) => u8::from(b),
                    (None, Some(n @ (0 | 1))) => n as u8,
                    _ => return Err(bad()),
                }),
                U8 => out.push(int(0, u8::MAX.into())? as u8),
                I8 => out
                    .extend_from_slice(&(int(i8::MIN.into(), i8::MAX.into())? as i8).to_le_bytes()),
                U16 => out.extend_from_slice(&(int(0, u16::MAX.into())? as u16).to_le_bytes()),
                I16 => out.extend_from_slice(
                    &(int(i16::MIN.into(), i16::MAX.into())? as i16).to_le_bytes(),
                ),
                U32 => out.extend_from_slice(&(int(0, u32::MAX.into())? as u32).to_le_bytes()),
                I32 => out.extend_from_slice(
                    &(int(i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes(),
                ),
                U64 => out.extend_from_slice(&(int(0, u64::MAX.into())? as u64).to_le_bytes()),
                I64 => out.extend_from_slice(
                    &(int(i64::MIN.into(), i64::MAX.into())? as i64).to_le_bytes(),
                ),
                F16 => out.extend_from_slice(&half::f16::from_f64(float()?).to_le_bytes()),
                BF16 => out.extend_from_slice(&half::bf16::from_f64(float()?).to_le_bytes()),
                F32 => out.extend_from_slice(&(float()? as f32).to_le_bytes()),
                F64 => out.extend_from_slice(&float()?.to_le_bytes()),
                Bytes => unreachable!("BYTES returned above"),
            }
        }
        Ok(bytes::Bytes::from(out))
    }
}

/// The JSON input file: `{"inputs":[{"name":..,"datatype":"FP32","shape":[..],"data":[..]}]}`.
/// `data` is flat or nested in row-major order; BOOL takes `true`/`false` (or 0/1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    pub inputs: Vec<FileTensor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: serde_json::Value,
}

impl InputFile {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = read_text(path)?;
        Self::parse(&text)
            .map_err(|e| LoadError::Invalid(format!("input file {}: {e}", path.display())))
    }

    /// Parses JSON text.
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        let f: InputFile = serde_json::from_str(text)
            .map_err(|e| LoadError::Invalid(format!("not a valid input file: {e}")))?;
        if f.inputs.is_empty() {
            return Err(LoadError::Invalid("the input file has no inputs".into()));
        }
        Ok(f)
    }

    /// The tensors, encoded and checked (element count against the shape).
    pub fn tensors(&self) -> Result<Vec<InputTensor>, LoadError> {
        self.inputs
            .iter()
            .map(|t| {
                let what = format!("input '{}'", t.name);
                let dt = <DataType as Generate>::parse(&t.datatype).ok_or_else(|| {
                    LoadError::Invalid(format!(
                        "{what}: data type '{}' is not supported (BOOL, UINT8-64, INT8-64, FP16, BF16, FP32, FP64)",
                        t.datatype
                    ))
                })?;
                let numel = numel(&t.shape, &what)?;
                let mut leaves = Vec::new();
                flatten(&t.data, &mut leaves);
                if leaves.len() != numel {
                    return Err(LoadError::Invalid(format!(
                        "{what}: shape {:?} needs {numel} values, data has {}",
                        t.shape,
                        leaves.len()
                    )));
                }
                let data = dt.encode(&leaves, &what)?;
                Ok(InputTensor::raw(&t.name, dt.wire_name(), t.shape.clone(), data))
            })
            .collect()
    }
}

fn flatten<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn numel(shape: &[i64], what: &str) -> Result<usize, LoadError> {
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d)
            .map_err(|_| LoadError::Invalid(format!("{what}: negative dimension in {shape:?}")))?;
        acc.checked_mul(d)
            .ok_or_else(|| LoadError::Invalid(format!("{what}: shape {shape:?} is too large")))
    })
}

/// The shape to send for a declared shape: `--shape` if given (checked against the fixed
/// dims), else `-1` replaced by the batch for the first dim and 1 for the others.
pub(crate) fn resolve_shape(
    model: &str,
    input: &str,
    declared: &[i64],
    opts: &InputOptions,
) -> Result<Vec<i64>, LoadError> {
    if let Some(explicit) = opts.shapes.get(input) {
        if explicit.len() != declared.len() {
            return Err(LoadError::Invalid(format!(
                "model '{model}': shape {explicit:?} for input '{input}' has {} dimensions, the model declares {declared:?}",
                explicit.len()
            )));
        }
        for (i, (&e, &d)) in explicit.iter().zip(declared).enumerate() {
            if e < 0 || (d >= 0 && e != d) {
                return Err(LoadError::Invalid(format!(
                    "model '{model}': shape {explicit:?} for input '{input}' does not fit the declared {declared:?} (dimension {i})"
                )));
            }
        }
        return Ok(explicit.clone());
    }
    Ok(declared
        .iter()
        .enumerate()
        .map(|(i, &d)| match (d >= 0, i) {
            (true, _) => d,
            (false, 0) => opts.batch,
            (false, _) => 1,
        })
        .collect())
}

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
        let inputs = describe(&tensors);
        Self {
            label: spec.label.clone(),
            name: spec.name.clone(),
            version: spec.version.clone(),
            weight: spec.weight,
            inputs,
            requests: vec![infer_request(&spec.name, &spec.version, tensors)],
        }
    }

    /// Random requests in the shapes that `ModelMetadata` declares.
    pub fn random(
        spec: &ModelSpec,
        md: &ModelMetadataResponse,
        rng: &mut impl Rng,
    ) -> Result<Self, LoadError> {
        let model = &spec.name;
        if md.inputs.is_empty() {
            return Err(LoadError::Invalid(format!(
                "model '{model}' declares no inputs; give an input file"
            )));
        }
        for name in spec.inputs.shapes.keys() {
            if !md.inputs.iter().any(|i| &i.name == name) {
                return Err(LoadError::Invalid(format!(
                    "model '{model}' has no input '{name}' (it has: {})",
                    md.inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut plan = Vec::new();
        let mut bytes = 0usize;
        for i in &md.inputs {
            let what = format!("model '{model}', input '{}'", i.name);
            let dt = <DataType as Generate>::parse(&i.datatype).ok_or_else(|| {
                LoadError::Invalid(format!(
                    "{what}: cannot make random {} data; give an input file",
                    i.datatype
                ))
            })?;
            let shape = resolve_shape(model, &i.name, &i.shape, &spec.inputs)?;
            let n = numel(&shape, &what)?;
            bytes = n
                .checked_mul(dt.budget())
                .and_then(|b| b.checked_add(bytes))
                .filter(|&b| b <= MAX_REQUEST_BYTES)
                .ok_or_else(|| {
                    LoadError::Invalid(format!("{what}: requests over 1 GiB are not supported"))
                })?;
            plan.push((i.name.clone(), dt, shape, n));
        }
        let variants = (VARIANT_BYTES / bytes.max(1)).clamp(1, MAX_VARIANTS);
        let mut requests = Vec::with_capacity(variants);
        let mut inputs = Vec::new();
        for v in 0..variants {
            let tensors: Vec<InputTensor> = plan
                .iter()
                .map(|(name, dt, shape, n)| {
                    InputTensor::raw(name, dt.wire_name(), shape.clone(), dt.random(*n, rng))
                })
                .collect();
            if v == 0 {
                inputs = describe(&tensors);
            }
            requests.push(infer_request(&spec.name, &spec.version, tensors));
        }
        Ok(Self {
            label: spec.label.clone(),
            name: spec.name.clone(),
            version: spec.version.clone(),
            weight: spec.weight,
            inputs,
            requests,
        })
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
    use troupe_proto::inference::model_metadata_response::TensorMetadata;

    #[test]
    fn shapes_resolve() {
        let mut o = InputOptions {
            batch: 8,
            ..Default::default()
        };
        assert_eq!(
            resolve_shape("m", "x", &[-1, 16], &o).ok(),
            Some(vec![8, 16])
        );
        assert_eq!(
            resolve_shape("m", "x", &[-1, -1, 3], &o).ok(),
            Some(vec![8, 1, 3])
        );
        o.shapes.insert("x".into(), vec![2, 16]);
        assert_eq!(
            resolve_shape("m", "x", &[-1, 16], &o).ok(),
            Some(vec![2, 16])
        );
        assert!(resolve_shape("m", "x", &[-1, 15], &o).is_err());
        assert!(resolve_shape("m", "x", &[-1, 16, 1], &o).is_err());
    }

    #[test]
    fn random_inputs_have_the_right_size() {
        let md = ModelMetadataResponse {
            name: "m".into(),
            inputs: ["FP32", "FP64", "FP16", "INT32", "INT64", "UINT8", "BOOL"]
                .iter()
                .enumerate()
                .map(|(i, dt)| TensorMetadata {
                    name: format!("in{i}"),
                    datatype: dt.to_string(),
                    shape: vec![-1, 3, -1],
                })
                .collect(),
            ..Default::default()
        };
        let mut spec = ModelSpec::new("m");
        spec.inputs.batch = 2;
        let mut rng = StdRng::seed_from_u64(7);
        let w = ModelWorkload::random(&spec, &md, &mut rng).expect("workload");
        let req = w.request(&mut rng);
        assert_eq!(req.inputs.len(), 7);
        for (t, raw) in req.inputs.iter().zip(&req.raw_input_contents) {
            assert_eq!(t.shape, vec![2, 3, 1]);
            let dt = <DataType as Generate>::parse(&t.datatype).expect("type");
            assert_eq!(raw.len(), 6 * dt.budget(), "{}", t.datatype);
        }
        // Random text for BYTES inputs: one sentence per element.
        let mut text = md.clone();
        text.inputs.truncate(1);
        text.inputs[0].datatype = "BYTES".into();
        let w = ModelWorkload::random(&spec, &text, &mut rng).expect("workload");
        let req = w.request(&mut rng);
        let elems = troupe_proto::bytes::bytes_elements(&req.raw_input_contents[0]).unwrap();
        assert_eq!(elems.len(), 6);
        assert!(
            elems
                .iter()
                .all(|e| std::str::from_utf8(e).unwrap().contains(' '))
        );
        let mut bad = md.clone();
        bad.inputs[0].datatype = "FP99".into();
        assert!(ModelWorkload::random(&spec, &bad, &mut rng).is_err());
    }

    #[test]
    fn input_file() {
        let f = InputFile::parse(
            r#"{"inputs":[
                {"name":"a","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4.5]]},
                {"name":"b","datatype":"BOOL","shape":[2],"data":[true,0]},
                {"name":"c","datatype":"INT64","shape":[1],"data":[-5]},
                {"name":"d","datatype":"FP16","shape":[1],"data":[0.5]}
            ]}"#,
        )
        .expect("parse");
        let t = f.tensors().expect("tensors");
        assert_eq!(t[0].data.len(), 16);
        assert_eq!(&t[0].data[12..], &4.5f32.to_le_bytes());
        assert_eq!(&t[1].data[..], &[1, 0]);
        assert_eq!(&t[2].data[..], &(-5i64).to_le_bytes());
        assert_eq!(&t[3].data[..], &half::f16::from_f32(0.5).to_le_bytes());

        let wrong_count = InputFile::parse(
            r#"{"inputs":[{"name":"a","datatype":"FP32","shape":[3],"data":[1]}]}"#,
        )
        .expect("parse");
        assert!(wrong_count.tensors().is_err());
        let out_of_range = InputFile::parse(
            r#"{"inputs":[{"name":"a","datatype":"UINT8","shape":[1],"data":[300]}]}"#,
        )
        .expect("parse");
        assert!(out_of_range.tensors().is_err());
        assert!(InputFile::parse(r#"{"inputs":[]}"#).is_err());
        assert!(InputFile::parse("not json").is_err());
    }
}
