//! A model's declared signature and the checks every call goes through before a backend sees it.

use serde::{Deserialize, Serialize};

use crate::error::BackendError;
use crate::tensor::{DataType, Tensor, check_bytes_layout, checked_numel};

/// One declared input or output. `-1` in `dims` is a variable dimension.
/// When the model batches (`max_batch_size > 0`) `dims` excludes the batch dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<i64>,
}

/// An input or output as a model file describes it (auto-complete): full dims, batch
/// dim included, `-1` where dynamic, with the exporter's symbolic dim names when it
/// wrote them (empty strings otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullSpec {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<i64>,
    pub symbols: Vec<String>,
    pub input: bool,
}

/// `max_batch_size` of an auto-completed model whose config does not give one.
pub const AUTO_MAX_BATCH_SIZE: usize = 32;

/// What a config says about a signature; anything it leaves out comes from the model.
#[derive(Debug, Clone, Default)]
pub struct Overrides<'a> {
    pub inputs: &'a [TensorSpec],
    pub outputs: &'a [TensorSpec],
    pub max_batch_size: Option<usize>,
}

/// A signature from what the model file says, with the config's overrides on top.
///
/// A leading dynamic dim on every input and output (with one symbolic name, where the
/// exporter named it) is the batch dim; the model then batches up to
/// [`AUTO_MAX_BATCH_SIZE`] unless the config says otherwise. Without one, the config
/// must say `max_batch_size = 0` (or give the whole signature).
pub fn complete(
    file: &str,
    described: &[FullSpec],
    over: Overrides<'_>,
) -> Result<Signature, BackendError> {
    let ins: Vec<&FullSpec> = described.iter().filter(|s| s.input).collect();
    let outs: Vec<&FullSpec> = described.iter().filter(|s| !s.input).collect();
    for o in over.inputs.iter().chain(over.outputs) {
        if !described.iter().any(|d| d.name == o.name) {
            return Err(BackendError::Load(format!(
                "the config names '{}' but {file} has inputs {:?} and outputs {:?}",
                o.name,
                ins.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                outs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
            )));
        }
    }
    let symbol = |s: &FullSpec| s.symbols.first().cloned().unwrap_or_default();
    let first_sym = ins.first().map(|s| symbol(s)).unwrap_or_default();
    let batchable = !ins.is_empty()
        && ins.iter().chain(&outs).all(|s| s.dims.first() == Some(&-1))
        && ins.iter().all(|s| symbol(s) == first_sym);
    let max_batch_size = match over.max_batch_size {
        Some(m) => m,
        None if batchable => AUTO_MAX_BATCH_SIZE,
        None => {
            let shapes = described
                .iter()
                .map(|s| format!("{} {:?}", s.name, s.dims))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(BackendError::Load(format!(
                "cannot auto-complete {file}: its inputs share no leading dynamic batch dim ({shapes}); \
                 write a config.toml with [[inputs]], [[outputs]] and max_batch_size"
            )));
        }
    };
    if max_batch_size > 0 && !batchable {
        return Err(BackendError::Load(format!(
            "max_batch_size = {max_batch_size}, but {file} has no leading dynamic dim shared by \
             all inputs and outputs to batch along; set max_batch_size = 0"
        )));
    }
    let take = |d: &FullSpec, declared: &[TensorSpec]| -> TensorSpec {
        declared
            .iter()
            .find(|o| o.name == d.name)
            .cloned()
            .unwrap_or_else(|| TensorSpec {
                name: d.name.clone(),
                dtype: d.dtype,
                dims: if max_batch_size > 0 {
                    d.dims[1..].to_vec()
                } else {
                    d.dims.clone()
                },
            })
    };
    Ok(Signature {
        inputs: ins.iter().map(|d| take(d, over.inputs)).collect(),
        outputs: outs.iter().map(|d| take(d, over.outputs)).collect(),
        max_batch_size,
    })
}

/// A model's declared inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// 0: no batch dimension; otherwise dim 0 is a batch of at most this many.
    pub max_batch_size: usize,
}

impl Signature {
    /// The full shape an input or output has on the wire: `[-1, dims...]` when batching.
    pub fn wire_dims(&self, spec: &TensorSpec) -> Vec<i64> {
        if self.max_batch_size > 0 {
            std::iter::once(-1)
                .chain(spec.dims.iter().copied())
                .collect()
        } else {
            spec.dims.clone()
        }
    }

    /// Checks a declared shape against a call's shape. Returns the batch size (1 when not batching).
    pub fn check_shape(&self, spec: &TensorSpec, shape: &[usize]) -> Result<usize, BackendError> {
        let want = self.wire_dims(spec);
        let shape_err = || {
            BackendError::InvalidInput(format!(
                "input '{}' has shape {:?} but the model expects {:?} (-1 = any size{})",
                spec.name,
                shape,
                want,
                if self.max_batch_size > 0 {
                    format!(", batch at most {}", self.max_batch_size)
                } else {
                    String::new()
                }
            ))
        };
        if want.len() != shape.len() {
            return Err(shape_err());
        }
        for (&w, &got) in want.iter().zip(shape) {
            if w >= 0 && w as usize != got {
                return Err(shape_err());
            }
        }
        if self.max_batch_size > 0 {
            let batch = shape[0];
            if batch == 0 || batch > self.max_batch_size {
                return Err(BackendError::InvalidInput(format!(
                    "input '{}' has batch size {} but the model accepts 1 to {}",
                    spec.name, batch, self.max_batch_size
                )));
            }
            Ok(batch)
        } else {
            Ok(1)
        }
    }

    /// Checks a call's inputs (already in declared order) against the signature:
    /// data type, shape, byte length, and one batch size shared by all inputs.
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<usize, BackendError> {
        if inputs.len() != self.inputs.len() {
            return Err(BackendError::InvalidInput(format!(
                "model expects {} inputs, got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut batch = None;
        for (spec, t) in self.inputs.iter().zip(inputs) {
            if t.dtype != spec.dtype {
                return Err(BackendError::InvalidInput(format!(
                    "input '{}' has data type {} but the model expects {}",
                    spec.name, t.dtype, spec.dtype
                )));
            }
            let b = self.check_shape(spec, &t.shape)?;
            if t.dtype == DataType::Bytes {
                let numel = checked_numel(&t.shape).ok_or_else(|| {
                    BackendError::InvalidInput(format!("input '{}' shape overflows", spec.name))
                })?;
                check_bytes_layout(&t.data, numel).map_err(|e| {
                    BackendError::InvalidInput(format!("input '{}' (BYTES): {e}", spec.name))
                })?;
            } else {
                let want = t.dtype.dense_len(&t.shape).ok_or_else(|| {
                    BackendError::InvalidInput(format!("input '{}' shape overflows", spec.name))
                })?;
                if want != t.data.len() {
                    return Err(BackendError::InvalidInput(format!(
                        "input '{}' carries {} bytes but shape {:?} of {} needs {}",
                        spec.name,
                        t.data.len(),
                        t.shape,
                        t.dtype,
                        want
                    )));
                }
            }
            match batch {
                None => batch = Some(b),
                Some(prev) if prev != b => {
                    return Err(BackendError::InvalidInput(format!(
                        "inputs disagree on the batch size ({prev} and {b} for '{}')",
                        spec.name
                    )));
                }
                _ => {}
            }
        }
        Ok(batch.unwrap_or(1))
    }

    /// Checks what a backend produced against the declared outputs.
    pub fn check_outputs(&self, outputs: &[Tensor]) -> Result<(), BackendError> {
        if outputs.len() != self.outputs.len() {
            return Err(BackendError::OutputMismatch(format!(
                "config declares {} outputs, model produced {}",
                self.outputs.len(),
                outputs.len()
            )));
        }
        for (spec, t) in self.outputs.iter().zip(outputs) {
            if t.dtype != spec.dtype {
                return Err(BackendError::OutputMismatch(format!(
                    "output '{}' is {} but the config declares {}",
                    spec.name, t.dtype, spec.dtype
                )));
            }
            let want = self.wire_dims(spec);
            let fits = want.len() == t.shape.len()
                && want
                    .iter()
                    .zip(&t.shape)
                    .all(|(&w, &g)| w < 0 || w as usize == g);
            if !fits {
                return Err(BackendError::OutputMismatch(format!(
                    "output '{}' has shape {:?} but the config declares {:?}",
                    spec.name, t.shape, want
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig() -> Signature {
        Signature {
            inputs: vec![TensorSpec {
                name: "x".into(),
                dtype: DataType::F32,
                dims: vec![4],
            }],
            outputs: vec![TensorSpec {
                name: "y".into(),
                dtype: DataType::F32,
                dims: vec![2],
            }],
            max_batch_size: 8,
        }
    }

    #[test]
    fn accepts_variable_batch() {
        let s = sig();
        let t = Tensor::from_f32(vec![3, 4], &[0.0; 12]).unwrap();
        assert_eq!(s.check_inputs(&[t]).unwrap(), 3);
    }

    #[test]
    fn rejects_bad_shapes_and_types() {
        let s = sig();
        let t = Tensor::from_f32(vec![3, 5], &[0.0; 15]).unwrap();
        assert!(
            s.check_inputs(&[t])
                .unwrap_err()
                .to_string()
                .contains("expects [-1, 4]")
        );
        let t = Tensor::from_f32(vec![9, 4], &[0.0; 36]).unwrap();
        assert!(
            s.check_inputs(&[t])
                .unwrap_err()
                .to_string()
                .contains("1 to 8")
        );
        let t = Tensor::from_f32(vec![4], &[0.0; 4]).unwrap();
        assert!(s.check_inputs(&[t]).is_err());
        let t = Tensor::new(DataType::I32, vec![1, 4], vec![0u8; 16].into()).unwrap();
        assert!(
            s.check_inputs(&[t])
                .unwrap_err()
                .to_string()
                .contains("data type INT32")
        );
    }

    fn full(name: &str, dims: &[i64], sym: &str, input: bool) -> FullSpec {
        FullSpec {
            name: name.into(),
            dtype: DataType::I64,
            dims: dims.to_vec(),
            symbols: dims
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { sym.into() } else { String::new() })
                .collect(),
            input,
        }
    }

    #[test]
    fn completes_a_transformer_signature() {
        let described = [
            full("input_ids", &[-1, -1], "batch", true),
            full("attention_mask", &[-1, -1], "batch", true),
            full("463", &[-1, -1, 384], "batch", false),
        ];
        let s = complete("m.onnx", &described, Overrides::default()).unwrap();
        assert_eq!(s.max_batch_size, AUTO_MAX_BATCH_SIZE);
        assert_eq!(s.inputs[0].dims, vec![-1]);
        assert_eq!(s.outputs[0].name, "463");
        assert_eq!(s.outputs[0].dims, vec![-1, 384]);
        // The config overrides only what it names.
        let over = [TensorSpec {
            name: "attention_mask".into(),
            dtype: DataType::I64,
            dims: vec![16],
        }];
        let s = complete(
            "m.onnx",
            &described,
            Overrides {
                inputs: &over,
                outputs: &[],
                max_batch_size: Some(4),
            },
        )
        .unwrap();
        assert_eq!((s.max_batch_size, s.inputs[1].dims.clone()), (4, vec![16]));
        assert_eq!(s.inputs[0].dims, vec![-1]);
    }

    #[test]
    fn refuses_what_it_cannot_complete() {
        let described = [
            full("a", &[-1, 3], "n", true),
            full("b", &[-1, 3], "m", true),
            full("y", &[-1], "n", false),
        ];
        let e = complete("m.onnx", &described, Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("no leading dynamic batch dim"),
            "{e}"
        );
        assert!(e.to_string().contains("config.toml"), "{e}");
        // max_batch_size = 0 serves it unbatched, dims as written.
        let s = complete(
            "m.onnx",
            &described,
            Overrides {
                max_batch_size: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.inputs[0].dims, vec![-1, 3]);
        let over = [TensorSpec {
            name: "nope".into(),
            dtype: DataType::F32,
            dims: vec![],
        }];
        let e = complete(
            "m.onnx",
            &described,
            Overrides {
                inputs: &over,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("'nope'"), "{e}");
    }

    #[test]
    fn checks_outputs() {
        let s = sig();
        assert!(
            s.check_outputs(&[Tensor::from_f32(vec![3, 2], &[0.0; 6]).unwrap()])
                .is_ok()
        );
        assert!(
            s.check_outputs(&[Tensor::from_f32(vec![3, 3], &[0.0; 9]).unwrap()])
                .is_err()
        );
    }
}
