//! A batch's tensors: the calls' inputs joined along dim 0, and the outputs split back
//! per call (zero-copy slices).

use bytes::{Bytes, BytesMut};
use troupe_backends::{BackendError, Tensor};

use super::queue::Entry;

/// Joins the calls' inputs along dim 0. One call passes through untouched (no copy).
pub fn concat(batch: &mut [Entry]) -> Result<Vec<Tensor>, BackendError> {
    if batch.len() == 1 {
        return Ok(std::mem::take(&mut batch[0].inputs));
    }
    let n_inputs = batch[0].inputs.len();
    let mut out = Vec::with_capacity(n_inputs);
    for i in 0..n_inputs {
        let first = &batch[0].inputs[i];
        let rows: usize = batch.iter().map(|e| e.inputs[i].shape[0]).sum();
        let total: usize = batch.iter().map(|e| e.inputs[i].data.len()).sum();
        let mut buf = BytesMut::with_capacity(total);
        for e in batch.iter() {
            let t = &e.inputs[i];
            if t.shape[1..] != first.shape[1..] || t.dtype != first.dtype {
                return Err(BackendError::InvalidInput(
                    "calls in one batch disagree on shapes".into(),
                ));
            }
            buf.extend_from_slice(&t.data);
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        out.push(Tensor::new(first.dtype, shape, buf.freeze())?);
    }
    Ok(out)
}

/// Splits a batch's outputs back into one output list per call (zero-copy slices).
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, BackendError> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let total: usize = rows.iter().sum();
    let mut per_call: Vec<Vec<Tensor>> = (0..rows.len())
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for t in outputs {
        if t.shape.first() != Some(&total) {
            return Err(BackendError::OutputMismatch(format!(
                "a batch of {total} rows produced an output of shape {:?}",
                t.shape
            )));
        }
        let row_bytes = t.data.len() / total.max(1);
        let mut offset = 0;
        for (call, &r) in rows.iter().enumerate() {
            let data: Bytes = t.data.slice(offset..offset + r * row_bytes);
            offset += r * row_bytes;
            let mut shape = t.shape.clone();
            shape[0] = r;
            per_call[call].push(Tensor {
                dtype: t.dtype,
                shape,
                data,
            });
        }
    }
    Ok(per_call)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, v: f32) -> Tensor {
        Tensor::from_f32(vec![n, 2], &vec![v; n * 2]).unwrap()
    }

    #[test]
    fn split_gives_each_call_its_rows() {
        let joined = Tensor::from_f32(vec![3, 2], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]).unwrap();
        let parts = split(vec![joined], &[1, 2]).unwrap();
        assert_eq!(parts[0][0].shape, vec![1, 2]);
        assert_eq!(parts[1][0].to_f32().unwrap(), vec![2.0, 2.0, 3.0, 3.0]);
        let single = split(vec![rows(2, 0.0)], &[2]).unwrap();
        assert_eq!(single[0][0].shape, vec![2, 2]);
    }

    #[test]
    fn split_refuses_outputs_that_lost_the_batch_rows() {
        let e = split(vec![rows(2, 0.0)], &[1, 2]).unwrap_err();
        assert!(e.to_string().contains("3 rows"), "{e}");
    }
}
