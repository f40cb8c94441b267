//! Wire tensors to backend tensors and back, with every check a call needs.
//!
//! Raw inputs (`raw_input_contents`, what stock clients send) reach the backend without a
//! copy: the request's `Bytes` are sliced, not copied. Typed `contents` are encoded once.

use bytes::Bytes;
use troupe_backends::{DataType, Signature, Tensor, tensor::checked_numel};
use troupe_proto::inference::model_infer_request::InferInputTensor;
use troupe_proto::inference::model_infer_response::InferOutputTensor;
use troupe_proto::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};

use crate::error::NodeError;

fn invalid(msg: String) -> NodeError {
    NodeError::InvalidArgument(msg)
}

/// Validates a wire shape: no negative dimension, no overflow, within `limit` bytes.
fn byte_size(
    name: &str,
    shape: &[i64],
    dtype: DataType,
    limit: usize,
) -> Result<Vec<usize>, NodeError> {
    let mut dims = Vec::with_capacity(shape.len());
    for &d in shape {
        if d < 0 {
            return Err(invalid(format!(
                "input '{name}' has negative dimension {d} in shape {shape:?}"
            )));
        }
        dims.push(
            usize::try_from(d)
                .map_err(|_| invalid(format!("input '{name}': dimension {d} is too large")))?,
        );
    }
    let numel = checked_numel(&dims)
        .ok_or_else(|| invalid(format!("input '{name}': shape {shape:?} overflows")))?;
    // BYTES elements vary in size: their buffer is measured once it is there.
    let Some(elem) = dtype.size() else {
        return Ok(dims);
    };
    let bytes = numel
        .checked_mul(elem)
        .ok_or_else(|| invalid(format!("input '{name}': shape {shape:?} overflows")))?;
    if bytes > limit {
        return Err(NodeError::TooLarge(format!(
            "input '{name}' is {bytes} bytes (shape {shape:?} of {dtype}), over this node's limit of {limit} bytes per tensor (--max-tensor-bytes)"
        )));
    }
    Ok(dims)
}

fn typed_to_bytes(
    name: &str,
    dtype: DataType,
    c: &InferTensorContents,
    numel: usize,
) -> Result<Bytes, NodeError> {
    fn enc<T: bytemuck::Pod, S: Copy>(v: &[S], f: impl Fn(S) -> T) -> Bytes {
        let out: Vec<T> = v.iter().map(|&x| f(x)).collect();
        Bytes::from(bytemuck::cast_slice::<T, u8>(&out).to_vec())
    }
    let (count, bytes) = match dtype {
        DataType::Bool => (
            c.bool_contents.len(),
            Bytes::from(
                c.bool_contents
                    .iter()
                    .map(|&b| b as u8)
                    .collect::<Vec<u8>>(),
            ),
        ),
        DataType::U8 => (c.uint_contents.len(), enc(&c.uint_contents, |x| x as u8)),
        DataType::U16 => (c.uint_contents.len(), enc(&c.uint_contents, |x| x as u16)),
        DataType::U32 => (c.uint_contents.len(), enc(&c.uint_contents, |x| x)),
        DataType::U64 => (c.uint64_contents.len(), enc(&c.uint64_contents, |x| x)),
        DataType::I8 => (c.int_contents.len(), enc(&c.int_contents, |x| x as i8)),
        DataType::I16 => (c.int_contents.len(), enc(&c.int_contents, |x| x as i16)),
        DataType::I32 => (c.int_contents.len(), enc(&c.int_contents, |x| x)),
        DataType::I64 => (c.int64_contents.len(), enc(&c.int64_contents, |x| x)),
        DataType::F32 => (c.fp32_contents.len(), enc(&c.fp32_contents, |x| x)),
        DataType::F64 => (c.fp64_contents.len(), enc(&c.fp64_contents, |x| x)),
        DataType::Bytes => (
            c.bytes_contents.len(),
            troupe_backends::tensor::encode_bytes(c.bytes_contents.iter().map(|b| b.as_slice())),
        ),
        DataType::F16 | DataType::BF16 => {
            return Err(invalid(format!(
                "input '{name}': {dtype} has no typed contents field; send it in raw_input_contents"
            )));
        }
    };
    if count != numel {
        return Err(invalid(format!(
            "input '{name}' has {count} values in contents but its shape holds {numel}"
        )));
    }
    Ok(bytes)
}

/// Turns a request's inputs into tensors in the model's declared order, checking names,
/// data types, shapes and sizes. `limit` is the per-tensor byte limit.
pub fn request_inputs(
    model: &str,
    req: &ModelInferRequest,
    sig: &Signature,
    limit: usize,
) -> Result<Vec<Tensor>, NodeError> {
    let raw = &req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} buffers but the request has {} inputs (one buffer per input, in order)",
            raw.len(),
            req.inputs.len()
        )));
    }
    let declared = || {
        sig.inputs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut slots: Vec<Option<Tensor>> = vec![None; sig.inputs.len()];
    for (i, input) in req.inputs.iter().enumerate() {
        let InferInputTensor {
            name,
            datatype,
            shape,
            contents,
            ..
        } = input;
        let pos = sig
            .inputs
            .iter()
            .position(|s| &s.name == name)
            .ok_or_else(|| {
                invalid(format!(
                    "model '{model}' has no input '{name}' (inputs: {})",
                    declared()
                ))
            })?;
        if slots[pos].is_some() {
            return Err(invalid(format!("input '{name}' is given twice")));
        }
        let dtype: DataType = datatype.parse().map_err(|_| {
            invalid(format!(
                "input '{name}' has unsupported datatype '{datatype}'"
            ))
        })?;
        let want = sig.inputs[pos].dtype;
        if dtype != want {
            return Err(invalid(format!(
                "input '{name}' has datatype {dtype} but model '{model}' expects {want}"
            )));
        }
        let dims = byte_size(name, shape, dtype, limit)?;
        let numel: usize = dims.iter().product();
        let data = if raw.is_empty() {
            let c = contents.as_ref().ok_or_else(|| {
                invalid(format!(
                    "input '{name}' has no data: send raw_input_contents or contents"
                ))
            })?;
            typed_to_bytes(name, dtype, c, numel)?
        } else {
            if contents
                .as_ref()
                .is_some_and(|c| c != &InferTensorContents::default())
            {
                return Err(invalid(format!(
                    "input '{name}' has both contents and raw_input_contents; send one"
                )));
            }
            let b = raw[i].clone();
            if let Some(want_len) = dtype.dense_len(&dims)
                && b.len() != want_len
            {
                return Err(invalid(format!(
                    "input '{name}' has {} raw bytes but shape {shape:?} of {dtype} needs {want_len}",
                    b.len()
                )));
            }
            b
        };
        if data.len() > limit {
            return Err(NodeError::TooLarge(format!(
                "input '{name}' is {} bytes ({dtype}), over this node's limit of {limit} bytes per tensor (--max-tensor-bytes)",
                data.len()
            )));
        }
        // BYTES: the length prefixes are checked against the buffer and the shape here.
        let tensor = Tensor::new(dtype, dims, data).map_err(|e| {
            invalid(format!(
                "input '{name}': {}",
                e.to_string().trim_start_matches("cannot load model: ")
            ))
        })?;
        slots[pos] = Some(tensor);
    }
    let mut out = Vec::with_capacity(slots.len());
    for (spec, slot) in sig.inputs.iter().zip(slots) {
        out.push(slot.ok_or_else(|| {
            invalid(format!(
                "missing input '{}' for model '{model}' (inputs: {})",
                spec.name,
                declared()
            ))
        })?);
    }
    sig.check_inputs(&out)
        .map_err(|e| NodeError::backend(model, e))?;
    Ok(out)
}

/// Builds the response: raw outputs (what stock clients decode), only those requested
/// when the request names outputs.
/// Adds named outputs (explanations) to an answer, after the model's own.
pub fn append_outputs(resp: &mut ModelInferResponse, extra: Vec<(String, Tensor)>) {
    for (name, t) in extra {
        resp.outputs.push(InferOutputTensor {
            name,
            datatype: t.dtype.wire_name().to_string(),
            shape: t.shape_i64(),
            ..Default::default()
        });
        resp.raw_output_contents.push(t.data);
    }
}

pub fn response(
    req: &ModelInferRequest,
    version: &str,
    sig: &Signature,
    outputs: Vec<Tensor>,
) -> Result<ModelInferResponse, NodeError> {
    for o in &req.outputs {
        if !sig.outputs.iter().any(|s| s.name == o.name) {
            let names = sig
                .outputs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(invalid(format!(
                "model '{}' has no output '{}' (outputs: {names})",
                req.model_name, o.name
            )));
        }
    }
    let mut resp = ModelInferResponse {
        model_name: req.model_name.clone(),
        model_version: version.to_string(),
        id: req.id.clone(),
        ..Default::default()
    };
    for (spec, t) in sig.outputs.iter().zip(outputs) {
        if !req.outputs.is_empty() && !req.outputs.iter().any(|o| o.name == spec.name) {
            continue;
        }
        resp.outputs.push(InferOutputTensor {
            name: spec.name.clone(),
            datatype: t.dtype.wire_name().to_string(),
            shape: t.shape_i64(),
            ..Default::default()
        });
        resp.raw_output_contents.push(t.data);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_backends::TensorSpec;

    fn sig() -> Signature {
        Signature {
            inputs: vec![
                TensorSpec {
                    name: "a".into(),
                    dtype: DataType::F32,
                    dims: vec![2],
                },
                TensorSpec {
                    name: "b".into(),
                    dtype: DataType::I64,
                    dims: vec![1],
                },
            ],
            outputs: vec![TensorSpec {
                name: "y".into(),
                dtype: DataType::F32,
                dims: vec![1],
            }],
            max_batch_size: 4,
        }
    }

    fn input(name: &str, dt: &str, shape: Vec<i64>) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: dt.into(),
            shape,
            ..Default::default()
        }
    }

    fn req(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            inputs,
            raw_input_contents: raw.into_iter().map(Bytes::from).collect(),
            ..Default::default()
        }
    }

    fn err(r: ModelInferRequest) -> String {
        request_inputs("m", &r, &sig(), 1 << 20)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn accepts_raw_inputs_in_any_order() {
        let r = req(
            vec![
                input("b", "INT64", vec![1, 1]),
                input("a", "FP32", vec![1, 2]),
            ],
            vec![vec![0; 8], vec![0; 8]],
        );
        let t = request_inputs("m", &r, &sig(), 1 << 20).unwrap();
        assert_eq!(t[0].dtype, DataType::F32);
        assert_eq!(t[1].dtype, DataType::I64);
    }

    #[test]
    fn accepts_typed_contents() {
        let mut a = input("a", "FP32", vec![1, 2]);
        a.contents = Some(InferTensorContents {
            fp32_contents: vec![1.0, 2.0],
            ..Default::default()
        });
        let mut b = input("b", "INT64", vec![1, 1]);
        b.contents = Some(InferTensorContents {
            int64_contents: vec![7],
            ..Default::default()
        });
        let t = request_inputs("m", &req(vec![a, b], vec![]), &sig(), 1 << 20).unwrap();
        assert_eq!(t[0].to_f32().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn rejects_each_class_of_bad_input() {
        let ok_b = || input("b", "INT64", vec![1, 1]);
        assert!(
            err(req(
                vec![input("zz", "FP32", vec![1, 2]), ok_b()],
                vec![vec![0; 8], vec![0; 8]]
            ))
            .contains("no input 'zz'")
        );
        assert!(err(req(vec![ok_b()], vec![vec![0; 8]])).contains("missing input 'a'"));
        assert!(
            err(req(
                vec![input("a", "FP64", vec![1, 2]), ok_b()],
                vec![vec![0; 16], vec![0; 8]]
            ))
            .contains("expects FP32")
        );
        assert!(
            err(req(
                vec![input("a", "FP32", vec![1, 3]), ok_b()],
                vec![vec![0; 12], vec![0; 8]]
            ))
            .contains("shape")
        );
        assert!(
            err(req(
                vec![input("a", "FP32", vec![1, 2]), ok_b()],
                vec![vec![0; 7], vec![0; 8]]
            ))
            .contains("7 raw bytes")
        );
        assert!(
            err(req(
                vec![input("a", "FP32", vec![-1, 2]), ok_b()],
                vec![vec![0; 8], vec![0; 8]]
            ))
            .contains("negative")
        );
        assert!(
            err(req(
                vec![input("a", "FP32", vec![i64::MAX, i64::MAX]), ok_b()],
                vec![vec![0; 8], vec![0; 8]]
            ))
            .contains("overflows")
        );
        assert!(
            err(req(
                vec![
                    input("a", "FP32", vec![1, 2]),
                    input("a", "FP32", vec![1, 2])
                ],
                vec![vec![0; 8], vec![0; 8]]
            ))
            .contains("twice")
        );
        assert!(
            err(req(
                vec![input("a", "STRING", vec![1, 2]), ok_b()],
                vec![vec![0; 8], vec![0; 8]]
            ))
            .contains("unsupported datatype")
        );
        let big = req(
            vec![input("a", "FP32", vec![1 << 20, 2]), ok_b()],
            vec![vec![0; 8], vec![0; 8]],
        );
        let e = request_inputs("m", &big, &sig(), 1 << 20).unwrap_err();
        assert!(matches!(e, NodeError::TooLarge(_)), "{e}");
    }
}
