//! Random tensors in the shapes that a model's `ModelMetadata` declares.

use rand::Rng;
use troupe_client::InputTensor;
use troupe_proto::inference::ModelMetadataResponse;

use super::generate::{DataType, Generate};
use super::shape::{numel, resolve_shape};
use crate::error::LoadError;
use crate::spec::ModelSpec;

/// At most this many different random requests are made per model (fewer when they are
/// large); each call sends one of them, chosen at random.
const MAX_VARIANTS: usize = 16;
/// Memory allowed for one model's prepared requests.
const VARIANT_BYTES: usize = 64 << 20;
/// Largest request (all inputs) this tool will build.
const MAX_REQUEST_BYTES: usize = 1 << 30;

/// The tensors of each random request for `spec`, in the shapes that `md` declares:
/// at least one set, at most [`MAX_VARIANTS`], together about [`VARIANT_BYTES`].
pub(super) fn variants(
    spec: &ModelSpec,
    md: &ModelMetadataResponse,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<InputTensor>>, LoadError> {
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
    Ok((0..variants)
        .map(|_| {
            plan.iter()
                .map(|(name, dt, shape, n)| {
                    InputTensor::raw(name, dt.wire_name(), shape.clone(), dt.random(*n, rng))
                })
                .collect()
        })
        .collect())
}

/// For tests: model `m` declaring seven inputs `in0`.. of seven types, each of shape
/// `[-1, 3, -1]`, and a spec for it at batch 2 (so each input is `[2, 3, 1]`).
#[cfg(test)]
pub(super) fn seven_inputs() -> (ModelSpec, ModelMetadataResponse) {
    use troupe_proto::inference::model_metadata_response::TensorMetadata;
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
    (spec, md)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn random_inputs_have_the_right_size() {
        let (spec, md) = seven_inputs();
        let mut rng = StdRng::seed_from_u64(7);
        let sets = variants(&spec, &md, &mut rng).expect("variants");
        assert_eq!(sets.len(), MAX_VARIANTS);
        for tensors in &sets {
            assert_eq!(tensors.len(), 7);
            for t in tensors {
                assert_eq!(t.shape, vec![2, 3, 1]);
                let dt = <DataType as Generate>::parse(&t.datatype).expect("type");
                assert_eq!(t.data.len(), 6 * dt.budget(), "{}", t.datatype);
            }
        }
        // Random text for BYTES inputs: one sentence per element.
        let mut text = md.clone();
        text.inputs.truncate(1);
        text.inputs[0].datatype = "BYTES".into();
        let sets = variants(&spec, &text, &mut rng).expect("variants");
        for tensors in &sets {
            let elems = troupe_proto::bytes::bytes_elements(&tensors[0].data).unwrap();
            assert_eq!(elems.len(), 6);
            assert!(
                elems
                    .iter()
                    .all(|e| std::str::from_utf8(e).unwrap().contains(' '))
            );
        }
        let mut bad = md.clone();
        bad.inputs[0].datatype = "FP99".into();
        assert!(variants(&spec, &bad, &mut rng).is_err());
        // No request over 1 GiB is built.
        let mut big = md.clone();
        big.inputs.truncate(1);
        big.inputs[0].shape = vec![1 << 20, 1 << 20, 1];
        assert!(variants(&spec, &big, &mut rng).is_err());
    }
}
