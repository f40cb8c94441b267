//! The text pipeline of a model with `[text]`: tokenize before the queue, pool after the
//! backend. A small, typed stage list, not a scripting layer:
//!
//! ```text
//! BYTES text ─▶ tokenize (handler, per call) ─▶ queue ─▶ pad to the batch's longest row
//!            ─▶ backend (token ids → hidden states) ─▶ pool (+ L2) ─▶ FP32 embedding
//! ```
//!
//! Tokenizing runs where the call arrives, so a call's truncation is known to its answer
//! and bad text is refused before it queues. Each call's tokens are padded to its own
//! longest row; the batch is padded again to its longest call ([`TextPipeline::concat`]).

use std::time::Instant;

use bytes::Bytes;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use troupe_backends::tensor::bytes_from_vec;
use troupe_backends::{BackendError, DataType, Tensor};

use crate::batcher::Entry;
use crate::config::{Pooling, TextDef};
use crate::error::NodeError;
use crate::metrics::ModelMetrics;

/// Which token tensor feeds a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Ids,
    Mask,
    Types,
}

impl Feed {
    fn of(name: &str) -> Option<Self> {
        match name {
            "input_ids" => Some(Feed::Ids),
            "attention_mask" => Some(Feed::Mask),
            "token_type_ids" => Some(Feed::Types),
            _ => None,
        }
    }
}

/// A loaded text pipeline.
pub struct TextPipeline {
    pub def: TextDef,
    tokenizer: Tokenizer,
    /// One per model input, in its declared order, with its integer type.
    feeds: Vec<(Feed, DataType)>,
    pad_id: i64,
}

/// What tokenizing one call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    pub rows: usize,
    /// Rows cut to `max_length` tokens.
    pub truncated: usize,
    /// The call's longest row, in tokens.
    pub tokens: usize,
}

impl TextPipeline {
    /// Reads the tokenizer and matches the model's inputs to token tensors.
    pub fn load(def: &TextDef) -> Result<Self, String> {
        let path = &def.tokenizer;
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| format!("cannot read the tokenizer {}: {e}", path.display()))?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| i64::from(p.pad_id))
            .or_else(|| tokenizer.token_to_id("[PAD]").map(i64::from))
            .unwrap_or(0);
        // Troupe pads per batch and truncates to the pipeline's max_length, whatever the
        // file says (all-MiniLM-L6-v2's pads everything to 128 tokens).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: def.max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| format!("tokenizer {}: {e}", path.display()))?;
        let mut feeds = Vec::new();
        for s in &def.model.inputs {
            let feed = Feed::of(&s.name).ok_or_else(|| {
                format!(
                    "a [text] model takes input_ids, attention_mask and token_type_ids; its input '{}' is none of them",
                    s.name
                )
            })?;
            if !matches!(s.dtype, DataType::I64 | DataType::I32) {
                return Err(format!(
                    "a [text] model's '{}' must be INT64 or INT32, not {}",
                    s.name, s.dtype
                ));
            }
            feeds.push((feed, s.dtype));
        }
        if !feeds.iter().any(|(f, _)| *f == Feed::Ids) {
            return Err("a [text] model needs an input_ids input".into());
        }
        Ok(Self {
            def: def.clone(),
            tokenizer,
            feeds,
            pad_id,
        })
    }

    /// Tokenizes one call's text (`[rows, 1]` BYTES) into the model's inputs, padded to
    /// the call's longest row. Text that is not UTF-8, is empty, or is too long when
    /// the model refuses long text, gets INVALID_ARGUMENT naming the row.
    pub fn encode(&self, text: &Tensor) -> Result<(Vec<Tensor>, Encoded), NodeError> {
        let name = &self.def.input;
        let bad = |m: String| NodeError::InvalidArgument(format!("input '{name}': {m}"));
        let elements = text.bytes_elements().map_err(|e| bad(e.to_string()))?;
        let mut encodings = Vec::with_capacity(elements.len());
        let mut truncated = 0;
        for (row, e) in elements.iter().enumerate() {
            let s = std::str::from_utf8(e).map_err(|err| {
                bad(format!(
                    "row {row} is not UTF-8 text (invalid byte at {})",
                    err.valid_up_to()
                ))
            })?;
            if s.is_empty() {
                return Err(bad(format!("row {row} is an empty string")));
            }
            let enc = self
                .tokenizer
                .encode_fast(s, true)
                .map_err(|err| bad(format!("row {row} cannot be tokenized: {err}")))?;
            if !enc.get_overflowing().is_empty() {
                if !self.def.truncate {
                    return Err(bad(format!(
                        "row {row} is longer than this model's {} tokens, and the model refuses long text ([text] truncate = false)",
                        self.def.max_length
                    )));
                }
                truncated += 1;
            }
            encodings.push(enc);
        }
        let rows = encodings.len();
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut out = Vec::with_capacity(self.feeds.len());
        for &(feed, dtype) in &self.feeds {
            let mut v: Vec<i64> = Vec::with_capacity(rows * len);
            for enc in &encodings {
                let (vals, pad): (&[u32], i64) = match feed {
                    Feed::Ids => (enc.get_ids(), self.pad_id),
                    Feed::Mask => (enc.get_attention_mask(), 0),
                    Feed::Types => (enc.get_type_ids(), 0),
                };
                v.extend(vals.iter().map(|&x| i64::from(x)));
                v.extend(std::iter::repeat_n(pad, len - vals.len()));
            }
            out.push(int_tensor(dtype, vec![rows, len], v));
        }
        Ok((
            out,
            Encoded {
                rows,
                truncated,
                tokens: len,
            },
        ))
    }

    /// The token each id stands for (explanations name them); "" for unknown ids.
    pub fn token_names(&self, ids: &[i64]) -> Vec<String> {
        ids.iter()
            .map(|&id| {
                u32::try_from(id)
                    .ok()
                    .and_then(|id| self.tokenizer.id_to_token(id))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Where the token ids and the attention mask sit among the model's inputs.
    pub fn ids_index(&self) -> usize {
        self.feeds
            .iter()
            .position(|(f, _)| *f == Feed::Ids)
            .unwrap_or(0)
    }

    pub fn mask_index(&self) -> Option<usize> {
        self.feeds.iter().position(|(f, _)| *f == Feed::Mask)
    }

    /// The id that pads (and, without an attention mask input, removes) a token.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Joins a batch's token tensors, padding each call to the batch's longest row.
    pub fn concat(&self, batch: &mut [Entry]) -> Result<Vec<Tensor>, BackendError> {
        if batch.len() == 1 {
            return Ok(std::mem::take(&mut batch[0].inputs));
        }
        let calls: Vec<&[Tensor]> = batch.iter().map(|e| e.inputs.as_slice()).collect();
        self.pad_join(&calls)
    }

    /// Joins calls' token tensors along the rows, padded to the longest.
    fn pad_join(&self, calls: &[&[Tensor]]) -> Result<Vec<Tensor>, BackendError> {
        let len = calls
            .iter()
            .filter_map(|c| c.first().and_then(|t| t.shape.get(1)).copied())
            .max()
            .unwrap_or(0);
        let rows: usize = calls
            .iter()
            .filter_map(|c| c.first().and_then(|t| t.shape.first()).copied())
            .sum();
        let mut out = Vec::with_capacity(self.feeds.len());
        for (i, &(feed, dtype)) in self.feeds.iter().enumerate() {
            let pad = if feed == Feed::Ids { self.pad_id } else { 0 };
            let mut v: Vec<i64> = Vec::with_capacity(rows * len);
            for c in calls {
                let t = c.get(i).ok_or_else(|| {
                    BackendError::InvalidInput("a call lacks its token inputs".into())
                })?;
                let [r, l] = t.shape[..] else {
                    return Err(BackendError::InvalidInput(format!(
                        "token tensors are [rows, tokens], not {:?}",
                        t.shape
                    )));
                };
                let vals = t.to_f64_lossy();
                for row in vals.chunks(l.max(1)).take(r) {
                    v.extend(row.iter().map(|&x| x as i64));
                    v.extend(std::iter::repeat_n(pad, len - l));
                }
            }
            out.push(int_tensor(dtype, vec![rows, len], v));
        }
        Ok(out)
    }

    /// Pools the backend's hidden states `[rows, tokens, hidden]` into one embedding per
    /// row, over the batch's attention mask; L2-normalised unless the config says not.
    pub fn pool(
        &self,
        outputs: Vec<Tensor>,
        inputs: &[Tensor],
        metrics: &ModelMetrics,
    ) -> Result<Vec<Tensor>, BackendError> {
        let started = Instant::now();
        let hidden = outputs.into_iter().next().ok_or_else(|| {
            BackendError::OutputMismatch("the model gave no hidden states".into())
        })?;
        let [rows, len, width] = hidden.shape[..] else {
            return Err(BackendError::OutputMismatch(format!(
                "hidden states should be [rows, tokens, hidden], not {:?}",
                hidden.shape
            )));
        };
        let h = hidden.to_f32()?;
        let mask = self.mask(inputs, rows, len)?;
        let mut out = vec![0f32; rows * width];
        for r in 0..rows {
            let dst = &mut out[r * width..(r + 1) * width];
            let row = &h[r * len * width..(r + 1) * len * width];
            match self.def.pooling {
                Pooling::Cls => dst.copy_from_slice(&row[..width]),
                Pooling::Mean => {
                    let m = &mask[r * len..(r + 1) * len];
                    let mut n = 0f32;
                    for (t, &keep) in m.iter().enumerate() {
                        if keep {
                            n += 1.0;
                            for (d, &x) in dst.iter_mut().zip(&row[t * width..(t + 1) * width]) {
                                *d += x;
                            }
                        }
                    }
                    let n = n.max(1e-9);
                    dst.iter_mut().for_each(|d| *d /= n);
                }
            }
            if self.def.normalize {
                let norm = dst.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                dst.iter_mut().for_each(|d| *d /= norm);
            }
        }
        metrics.pool.observe(started.elapsed().as_secs_f64());
        metrics.pooled_rows.inc_by(rows as u64);
        Ok(vec![Tensor::new(
            DataType::F32,
            vec![rows, width],
            bytes_from_vec(out),
        )?])
    }

    /// Which token positions count: the attention mask the model got, else the non-pad ids.
    fn mask(&self, inputs: &[Tensor], rows: usize, len: usize) -> Result<Vec<bool>, BackendError> {
        let pick = |feed| self.feeds.iter().position(|(f, _)| *f == feed);
        let (t, pad) = match pick(Feed::Mask) {
            Some(i) => (&inputs[i], None),
            None => (&inputs[pick(Feed::Ids).unwrap_or(0)], Some(self.pad_id)),
        };
        if t.shape != [rows, len] {
            return Err(BackendError::OutputMismatch(format!(
                "hidden states are for [{rows}, {len}] tokens but the batch had {:?}",
                t.shape
            )));
        }
        Ok(t.to_f64_lossy()
            .into_iter()
            .map(|v| match pad {
                None => v != 0.0,
                Some(p) => v as i64 != p,
            })
            .collect())
    }
}

/// Token values as an INT32 tensor when `dtype` says so, else INT64.
pub(crate) fn int_tensor(dtype: DataType, shape: Vec<usize>, v: Vec<i64>) -> Tensor {
    let data: Bytes = match dtype {
        DataType::I32 => bytes_from_vec(v.into_iter().map(|x| x as i32).collect::<Vec<_>>()),
        _ => bytes_from_vec(v),
    };
    Tensor {
        dtype: if dtype == DataType::I32 {
            DataType::I32
        } else {
            DataType::I64
        },
        shape,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_backends::{Signature, TensorSpec};

    /// A word-level tokenizer: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 hello=4 world=5.
    const TOKENIZER: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "decoder": null,
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
      "model": {"type": "WordLevel", "unk_token": "[UNK]",
        "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5}}
    }"#;

    fn pipeline(
        max_length: usize,
        pooling: Pooling,
        truncate: bool,
    ) -> (tempfile::TempDir, TextPipeline) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, TOKENIZER).unwrap();
        let ids = |n: &str| TensorSpec {
            name: n.into(),
            dtype: DataType::I64,
            dims: vec![-1],
        };
        let def = TextDef {
            tokenizer: path,
            max_length,
            pooling,
            normalize: false,
            truncate,
            input: "text".into(),
            output: "embedding".into(),
            model: Signature {
                inputs: vec![ids("input_ids"), ids("attention_mask")],
                outputs: vec![TensorSpec {
                    name: "h".into(),
                    dtype: DataType::F32,
                    dims: vec![-1, 2],
                }],
                max_batch_size: 8,
            },
        };
        let p = TextPipeline::load(&def).unwrap();
        (dir, p)
    }

    fn text(rows: &[&str]) -> Tensor {
        Tensor::from_bytes_elements(vec![rows.len(), 1], rows.iter().map(|s| s.as_bytes())).unwrap()
    }

    fn ints(t: &Tensor) -> Vec<i64> {
        t.to_f64_lossy().into_iter().map(|v| v as i64).collect()
    }

    #[test]
    fn encodes_and_pads_to_the_longest_row() {
        let (_d, p) = pipeline(16, Pooling::Mean, true);
        let (t, e) = p.encode(&text(&["hello world", "hello"])).unwrap();
        assert_eq!(
            e,
            Encoded {
                rows: 2,
                truncated: 0,
                tokens: 4
            }
        );
        assert_eq!(t[0].shape, vec![2, 4]);
        assert_eq!(ints(&t[0]), vec![2, 4, 5, 3, 2, 4, 3, 0]);
        assert_eq!(ints(&t[1]), vec![1, 1, 1, 1, 1, 1, 1, 0]);
        // A batch of calls is padded again to its longest call.
        let (short, _) = p.encode(&text(&["world"])).unwrap();
        let joined = p.pad_join(&[&short, &t]).unwrap();
        assert_eq!(joined[0].shape, vec![3, 4]);
        assert_eq!(ints(&joined[0])[..4], [2, 5, 3, 0]);
        assert_eq!(ints(&joined[1])[..4], [1, 1, 1, 0]);
    }

    #[test]
    fn truncates_or_refuses_long_text_and_refuses_bad_text() {
        let (_d, p) = pipeline(3, Pooling::Mean, true);
        let (t, e) = p.encode(&text(&["hello world hello", "hello"])).unwrap();
        assert_eq!((e.truncated, t[0].shape.clone()), (1, vec![2, 3]));
        assert_eq!(ints(&t[0])[..3], [2, 4, 3], "[SEP] survives truncation");
        let (_d, strict) = pipeline(3, Pooling::Mean, false);
        let err = strict.encode(&text(&["hello world hello"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("longer than this model's 3 tokens"),
            "{err}"
        );
        let bad = Tensor::from_bytes_elements(vec![1, 1], [&b"\xff"[..]]).unwrap();
        assert!(
            p.encode(&bad)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
        assert!(
            p.encode(&text(&[""]))
                .unwrap_err()
                .to_string()
                .contains("empty string")
        );
    }

    #[test]
    fn pools_over_the_mask() {
        let metrics = ModelMetrics::default();
        let (_d, p) = pipeline(16, Pooling::Mean, true);
        let (t, _) = p.encode(&text(&["hello world", "hello"])).unwrap();
        // Hidden states [2 rows, 4 tokens, 2]: row 1's last token is padding.
        let h: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let hidden = Tensor::from_f32(vec![2, 4, 2], &h).unwrap();
        let out = p.pool(vec![hidden.clone()], &t, &metrics).unwrap();
        assert_eq!(
            out[0].to_f32().unwrap(),
            vec![3.0, 4.0, 10.0, 11.0],
            "mean of tokens 0..4, then of tokens 0..3"
        );
        assert_eq!(metrics.pooled_rows.get(), 2);
        let (_d, cls) = pipeline(16, Pooling::Cls, true);
        let out = cls.pool(vec![hidden], &t, &metrics).unwrap();
        assert_eq!(out[0].to_f32().unwrap(), vec![0.0, 1.0, 8.0, 9.0]);
    }
}
