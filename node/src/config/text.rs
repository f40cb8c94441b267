//! `[text]` of a model config: a text pipeline around the model. Clients send BYTES text
//! (one UTF-8 string per row); the node tokenizes it into the model's token inputs,
//! runs the model, and pools its hidden states into one embedding per row.
//!
//! What the config leaves out comes from the sentence-transformers files beside the
//! artifact: `sentence_bert_config.json` (`max_seq_length`) and `1_Pooling/config.json`
//! (`pooling_mode_cls_token` / `pooling_mode_mean_tokens`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use troupe_backends::{DataType, Signature, TensorSpec};
use troupe_proto::troupe as pb;

/// Tokens per text when neither the config nor the model folder says.
pub const DEFAULT_MAX_LENGTH: usize = 512;
pub const DEFAULT_INPUT: &str = "text";
pub const DEFAULT_OUTPUT: &str = "embedding";
pub const DEFAULT_TOKENIZER: &str = "tokenizer.json";

/// How hidden states become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the token states under the attention mask.
    Mean,
    /// The first token's state.
    Cls,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }
}

/// `[text]` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextCfg {
    /// The tokenizer file (HF `tokenizer.json` format) in the version directory.
    pub tokenizer: Option<String>,
    pub max_length: Option<usize>,
    pub pooling: Option<Pooling>,
    /// L2-normalise the embeddings (default true).
    pub normalize: Option<bool>,
    /// Texts over `max_length` tokens are truncated (default); false: refused.
    pub truncate: Option<bool>,
    pub input: Option<String>,
    pub output: Option<String>,
}

/// A resolved text pipeline: every choice made, files located.
#[derive(Debug, Clone, PartialEq)]
pub struct TextDef {
    pub tokenizer: PathBuf,
    pub max_length: usize,
    pub pooling: Pooling,
    pub normalize: bool,
    pub truncate: bool,
    pub input: String,
    pub output: String,
    /// The model's own signature (token ids in, hidden states out).
    pub model: Signature,
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

impl TextCfg {
    /// Resolves the pipeline for the artifact in `dir`, around a model of signature `model`.
    pub fn resolve(&self, dir: &Path, model: Signature) -> Result<TextDef, String> {
        let tokenizer = self.tokenizer.as_deref().unwrap_or(DEFAULT_TOKENIZER);
        if tokenizer.contains('/') || tokenizer.contains("..") {
            return Err(format!(
                "[text] tokenizer '{tokenizer}' must be a file name beside the artifact"
            ));
        }
        let max_length = match self.max_length {
            Some(0) => return Err("[text] max_length must be at least 1".into()),
            Some(n) => n,
            None => read_json(&dir.join("sentence_bert_config.json"))
                .and_then(|v| v.get("max_seq_length")?.as_u64())
                .map_or(DEFAULT_MAX_LENGTH, |n| n as usize),
        };
        let pooling =
            self.pooling
                .unwrap_or_else(|| match read_json(&dir.join("1_Pooling/config.json")) {
                    Some(v) if v.get("pooling_mode_cls_token") == Some(&true.into()) => {
                        Pooling::Cls
                    }
                    _ => Pooling::Mean,
                });
        if model.max_batch_size == 0 {
            return Err(
                "a [text] model batches its token inputs: max_batch_size must be > 0".into(),
            );
        }
        if model.outputs.len() != 1 {
            return Err(format!(
                "a [text] model gives one output (its hidden states), not {}",
                model.outputs.len()
            ));
        }
        let hidden = &model.outputs[0];
        if hidden.dtype != DataType::F32 || hidden.dims.len() != 2 {
            return Err(format!(
                "a [text] model's output '{}' must be FP32 [sequence, hidden] per row; it is {} {:?}",
                hidden.name, hidden.dtype, hidden.dims
            ));
        }
        Ok(TextDef {
            tokenizer: dir.join(tokenizer),
            max_length,
            pooling,
            normalize: self.normalize.unwrap_or(true),
            truncate: self.truncate.unwrap_or(true),
            input: self.input.clone().unwrap_or_else(|| DEFAULT_INPUT.into()),
            output: self.output.clone().unwrap_or_else(|| DEFAULT_OUTPUT.into()),
            model,
        })
    }

    /// From the wire `TextPipeline`.
    pub fn from_spec(t: &pb::TextPipeline) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        TextCfg {
            tokenizer: some(&t.tokenizer),
            max_length: (t.max_length > 0).then_some(t.max_length as usize),
            pooling: match pb::Pooling::try_from(t.pooling) {
                Ok(pb::Pooling::Mean) => Some(Pooling::Mean),
                Ok(pb::Pooling::Cls) => Some(Pooling::Cls),
                _ => None,
            },
            normalize: Some(!t.no_normalize),
            truncate: Some(!t.refuse_long),
            input: some(&t.input),
            output: some(&t.output),
        }
    }
}

impl TextDef {
    /// What clients see: one BYTES text per row in, one FP32 embedding per row out.
    pub fn public_signature(&self) -> Signature {
        let hidden = self.model.outputs[0].dims[1];
        Signature {
            inputs: vec![TensorSpec {
                name: self.input.clone(),
                dtype: DataType::Bytes,
                dims: vec![1],
            }],
            outputs: vec![TensorSpec {
                name: self.output.clone(),
                dtype: DataType::F32,
                dims: vec![hidden],
            }],
            max_batch_size: self.model.max_batch_size,
        }
    }

    /// To the wire `TextPipeline` (every choice explicit).
    pub fn to_spec(&self) -> pb::TextPipeline {
        pb::TextPipeline {
            tokenizer: self
                .tokenizer
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            max_length: self.max_length as u32,
            pooling: match self.pooling {
                Pooling::Mean => pb::Pooling::Mean,
                Pooling::Cls => pb::Pooling::Cls,
            } as i32,
            no_normalize: !self.normalize,
            refuse_long: !self.truncate,
            input: self.input.clone(),
            output: self.output.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder() -> Signature {
        let ids = |n: &str| TensorSpec {
            name: n.into(),
            dtype: DataType::I64,
            dims: vec![-1],
        };
        Signature {
            inputs: vec![ids("input_ids"), ids("attention_mask")],
            outputs: vec![TensorSpec {
                name: "last_hidden_state".into(),
                dtype: DataType::F32,
                dims: vec![-1, 384],
            }],
            max_batch_size: 8,
        }
    }

    #[test]
    fn resolves_from_the_sentence_transformers_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sentence_bert_config.json"),
            r#"{"max_seq_length": 256}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        let t = TextCfg::default().resolve(dir.path(), encoder()).unwrap();
        assert_eq!((t.max_length, t.pooling), (256, Pooling::Cls));
        assert!(t.normalize && t.truncate);
        let p = t.public_signature();
        assert_eq!(p.inputs[0].dtype, DataType::Bytes);
        assert_eq!(p.outputs[0].dims, vec![384]);
        // The wire form round-trips.
        let back = TextCfg::from_spec(&t.to_spec())
            .resolve(dir.path(), encoder())
            .unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn refuses_what_cannot_be_a_text_model() {
        let dir = Path::new("/nonexistent");
        let mut s = encoder();
        s.max_batch_size = 0;
        assert!(
            TextCfg::default()
                .resolve(dir, s)
                .unwrap_err()
                .contains("max_batch_size")
        );
        let mut s = encoder();
        s.outputs[0].dims = vec![384];
        assert!(
            TextCfg::default()
                .resolve(dir, s)
                .unwrap_err()
                .contains("[sequence, hidden]")
        );
        let cfg = TextCfg {
            tokenizer: Some("../t.json".into()),
            ..Default::default()
        };
        assert!(
            cfg.resolve(dir, encoder())
                .unwrap_err()
                .contains("file name")
        );
        let t = TextCfg::default().resolve(dir, encoder()).unwrap();
        assert_eq!(
            (t.max_length, t.pooling),
            (DEFAULT_MAX_LENGTH, Pooling::Mean)
        );
    }
}
