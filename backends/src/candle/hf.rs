//! Hugging Face folders (`config.json` + `model.safetensors`) through candle-transformers.
//!
//! `config.json`'s `model_type` picks the architecture from [`ARCHITECTURES`]; adding
//! one is one entry there (what it takes and gives, and how candle-transformers loads it).

use std::path::Path;

use candle_core::{DType, Device as CDevice, Tensor as CTensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert;
use serde_json::Value;

use super::CandleModel;
use crate::error::BackendError;
use crate::spec::{FullSpec, Signature};
use crate::tensor::DataType;

/// Builds an architecture's model from its config, weights and declared signature.
pub type Loader = fn(&Value, VarBuilder, &Signature) -> Result<Box<dyn CandleModel>, String>;

/// One architecture: the tensors it takes and gives (from its config), and its loader.
pub struct Architecture {
    pub model_type: &'static str,
    pub describe: fn(&Value) -> Result<Vec<FullSpec>, String>,
    pub load: Loader,
}

/// The architectures a HF folder may name.
pub const ARCHITECTURES: &[Architecture] = &[Architecture {
    model_type: "bert",
    describe: encoder_describe,
    load: bert_load,
}];

fn architecture(config_path: &Path, config: &Value) -> Result<&'static Architecture, BackendError> {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            BackendError::Load(format!(
                "{}: no \"model_type\" naming the architecture",
                config_path.display()
            ))
        })?;
    ARCHITECTURES
        .iter()
        .find(|a| a.model_type == model_type)
        .ok_or_else(|| {
            BackendError::Load(format!(
                "{}: unknown architecture '{model_type}' (model_type); candle serves {}",
                config_path.display(),
                ARCHITECTURES
                    .iter()
                    .map(|a| a.model_type)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

pub fn describe(config_path: &Path, config: &Value) -> Result<Vec<FullSpec>, BackendError> {
    let arch = architecture(config_path, config)?;
    (arch.describe)(config)
        .map_err(|e| BackendError::Load(format!("{}: {e}", config_path.display())))
}

pub fn load(
    config_path: &Path,
    config: &Value,
    weights: &Path,
    sig: &Signature,
    device: &CDevice,
) -> Result<Box<dyn CandleModel>, BackendError> {
    let arch = architecture(config_path, config)?;
    let tensors = candle_core::safetensors::load(weights, device)
        .map_err(|e| BackendError::Load(format!("{}: {e}", weights.display())))?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    (arch.load)(config, vb, sig).map_err(|e| {
        BackendError::Load(format!(
            "{} with {}: {e}",
            weights.display(),
            config_path.display()
        ))
    })
}

/// Names an encoder's tensors go by, as HF exports them.
const INPUT_IDS: &str = "input_ids";
const ATTENTION_MASK: &str = "attention_mask";
const TOKEN_TYPE_IDS: &str = "token_type_ids";
const LAST_HIDDEN_STATE: &str = "last_hidden_state";

/// A text encoder: token ids, mask and types `[batch, sequence]` in, hidden states out.
fn encoder_describe(config: &Value) -> Result<Vec<FullSpec>, String> {
    let hidden = config
        .get("hidden_size")
        .and_then(Value::as_i64)
        .ok_or("no hidden_size")?;
    let tokens = |name: &str| FullSpec {
        name: name.into(),
        dtype: DataType::I64,
        dims: vec![-1, -1],
        symbols: vec!["batch".into(), "sequence".into()],
        input: true,
    };
    Ok(vec![
        tokens(INPUT_IDS),
        tokens(ATTENTION_MASK),
        tokens(TOKEN_TYPE_IDS),
        FullSpec {
            name: LAST_HIDDEN_STATE.into(),
            dtype: DataType::F32,
            dims: vec![-1, -1, hidden],
            symbols: vec!["batch".into(), "sequence".into(), String::new()],
            input: false,
        },
    ])
}

/// Where each encoder input sits in the declared order.
struct EncoderInputs {
    ids: usize,
    mask: Option<usize>,
    types: Option<usize>,
}

impl EncoderInputs {
    fn of(sig: &Signature) -> Result<Self, String> {
        let pos = |n: &str| sig.inputs.iter().position(|s| s.name == n);
        if let Some(s) = sig
            .inputs
            .iter()
            .find(|s| ![INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS].contains(&s.name.as_str()))
        {
            return Err(format!(
                "an encoder takes {INPUT_IDS}, {ATTENTION_MASK} and {TOKEN_TYPE_IDS}; the config declares '{}'",
                s.name
            ));
        }
        if sig.outputs.len() != 1 {
            return Err(format!(
                "an encoder gives one output ({LAST_HIDDEN_STATE}); the config declares {}",
                sig.outputs.len()
            ));
        }
        Ok(Self {
            ids: pos(INPUT_IDS).ok_or(format!("the config declares no {INPUT_IDS}"))?,
            mask: pos(ATTENTION_MASK),
            types: pos(TOKEN_TYPE_IDS),
        })
    }
}

struct Bert {
    model: bert::BertModel,
    inputs: EncoderInputs,
}

fn bert_load(
    config: &Value,
    vb: VarBuilder,
    sig: &Signature,
) -> Result<Box<dyn CandleModel>, String> {
    let cfg: bert::Config =
        serde_json::from_value(config.clone()).map_err(|e| format!("a BERT config: {e}"))?;
    let inputs = EncoderInputs::of(sig)?;
    let model = bert::BertModel::load(vb, &cfg).map_err(|e| e.to_string())?;
    Ok(Box::new(Bert { model, inputs }))
}

impl CandleModel for Bert {
    fn forward(&self, xs: &[CTensor]) -> Result<Vec<CTensor>, BackendError> {
        let ids = &xs[self.inputs.ids];
        let types = match self.inputs.types {
            Some(i) => xs[i].clone(),
            None => ids.zeros_like()?,
        };
        let mask = self.inputs.mask.map(|i| &xs[i]);
        Ok(vec![self.model.forward(ids, &types, mask)?])
    }
}
