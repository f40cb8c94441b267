//! Explanations of text models: occlusion over tokens.
//!
//! The call's texts arrive here as their tokens (the pipeline tokenized them). For each
//! row and each of its tokens, one copy of the row is run without that token: its
//! attention-mask entry is 0 (the model neither attends to it nor pools it), or, for a
//! model without an attention mask input, its id is the pad id. The token's attribution
//! is f(x) − f(x without the token), f being the explained element of the row's
//! embedding. Copies go through the model's own queue as batched calls of at most
//! `max_batch_size` rows. The answer gains `attribution.<text input>` (FP32 `[rows, tokens]`)
//! and `attribution.tokens` (BYTES `[rows, tokens]`, "" on padding).

use std::sync::Arc;
use std::time::Instant;

use troupe_backends::Tensor;

use super::CHUNK_ROWS;
use super::evaluator::budget;
use crate::error::NodeError;
use crate::hooks::call::HookedModel;
use crate::pipeline::int_tensor;

fn ints(t: &Tensor) -> Vec<i64> {
    t.to_f64_lossy().into_iter().map(|v| v as i64).collect()
}

/// Token attributions of every row (see the module doc), with the tokens' names.
pub async fn occlusion(
    model: &Arc<dyn HookedModel>,
    inputs: &[Tensor],
    rows: usize,
    output: usize,
    targets: &[usize],
    value: &[f32],
    deadline: Option<Instant>,
) -> Result<Vec<(String, Tensor)>, NodeError> {
    let pipeline = model
        .pipeline()
        .ok_or_else(|| NodeError::Internal("not a text model".into()))?;
    let ids_t = &inputs[pipeline.ids_index()];
    let [r, len] = ids_t.shape[..] else {
        return Err(NodeError::Internal(format!(
            "token ids of shape {:?}",
            ids_t.shape
        )));
    };
    if r != rows {
        return Err(NodeError::Internal(format!(
            "{r} token rows for {rows} texts"
        )));
    }
    let ids = ints(ids_t);
    let mask: Vec<i64> = match pipeline.mask_index() {
        Some(i) => ints(&inputs[i]),
        None => ids
            .iter()
            .map(|&id| i64::from(id != pipeline.pad_id()))
            .collect(),
    };
    // One unit per (row, token) the model sees.
    let units: Vec<(usize, usize)> = (0..rows)
        .flat_map(|row| (0..len).map(move |t| (row, t)))
        .filter(|&(row, t)| mask[row * len + t] != 0)
        .collect();
    budget(
        units.len(),
        "occlusion over tokens",
        "send fewer or shorter texts",
    )?;
    let columns: Vec<Vec<i64>> = inputs.iter().map(ints).collect();
    let mut attribution = vec![0f32; rows * len];
    // Calls no larger than the model's own batches (a transformer's memory grows with them).
    let per_call = model.def().signature.max_batch_size.clamp(1, CHUNK_ROWS);
    for chunk in units.chunks(per_call) {
        let n = chunk.len();
        let mut call = Vec::with_capacity(inputs.len());
        for (i, t) in inputs.iter().enumerate() {
            let mut v = Vec::with_capacity(n * len);
            for &(row, tok) in chunk {
                let start = v.len();
                v.extend_from_slice(&columns[i][row * len..(row + 1) * len]);
                let removed = match pipeline.mask_index() {
                    Some(m) => (i == m).then_some(0),
                    None => (i == pipeline.ids_index()).then_some(pipeline.pad_id()),
                };
                if let Some(x) = removed {
                    v[start + tok] = x;
                }
            }
            call.push(int_tensor(t.dtype, vec![n, len], v));
        }
        let out = model.infer(call, n, deadline).await?;
        let y = out
            .get(output)
            .ok_or_else(|| NodeError::Internal(format!("the model returned no output {output}")))?
            .to_f64_lossy();
        let per_row = y.len() / n.max(1);
        for (k, &(row, tok)) in chunk.iter().enumerate() {
            let without = y[k * per_row + targets[row]] as f32;
            attribution[row * len + tok] = value[row] - without;
        }
    }
    let names: Vec<String> = ids
        .iter()
        .zip(&mask)
        .map(|(&id, &m)| {
            if m != 0 {
                pipeline.token_names(&[id]).remove(0)
            } else {
                String::new()
            }
        })
        .collect();
    let shape = vec![rows, len];
    Ok(vec![
        (
            format!("attribution.{}", pipeline.def.input),
            Tensor::from_f32(shape.clone(), &attribution)
                .map_err(|e| NodeError::Internal(e.to_string()))?,
        ),
        (
            "attribution.tokens".into(),
            Tensor::from_bytes_elements(shape, names.iter().map(|n| n.as_bytes()))
                .map_err(|e| NodeError::Internal(e.to_string()))?,
        ),
    ])
}
