//! Writes the TorchScript example models (no Python torch needed).
//!
//! `cargo run -p troupe-backends --example export_torchscript -- MODELS_DIR [--bench]`
//!
//! * `MODELS_DIR/repository/mlp_torch/1/model.pt`: the MLP traced from
//!   `weights.safetensors` (the same weights as the ONNX and candle MLPs).
//! * `MODELS_DIR/repository/linear_torch/1/model.pt`: the linear model (explanation tests).
//! * `MODELS_DIR/repository/minilm_torch/1/model.pt`: the BERT sentence encoder
//!   all-MiniLM-L6-v2 from the Hugging Face folder `MODELS_DIR/minilm/` (`config.json`,
//!   `model.safetensors`; skipped with a note when absent). `forward(input_ids,
//!   attention_mask, token_type_ids)`, all int64 `[B, S]` with S up to
//!   `max_position_embeddings` (512), gives the last hidden state,
//!   float32 `[B, S, hidden]` (no pooling). The export checks the saved module on two
//!   shapes against the untraced forward, padded rows against the sentences run alone, and,
//!   when `MODELS_DIR/reference/minilm.json` carries `input_ids`, the Python embeddings.
//! * with `--bench`: `MODELS_DIR/bench/resnet18_torch/1/model.pt`, a ResNet-18 with random weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tch::{CModule, Kind, Tensor, nn};

/// `dir/weights.safetensors` as a lookup by tensor name.
fn weights(dir: &Path) -> Result<impl Fn(&str) -> Result<Tensor>> {
    let file = dir.join("weights.safetensors");
    let weights = Tensor::read_safetensors(&file).with_context(|| {
        format!(
            "reading {} (run scripts/make_models.py first)",
            file.display()
        )
    })?;
    Ok(move |n: &str| -> Result<Tensor> {
        weights
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("tensor {n} missing"))
    })
}

/// The linear model y = x·wᵀ + b from `linear_torch/1/weights.safetensors`.
fn export_linear(models: &Path) -> Result<()> {
    let dir = models.join("repository/linear_torch/1");
    let get = weights(&dir)?;
    let (w, b) = (get("layers.0.weight")?, get("layers.0.bias")?);
    let example = Tensor::zeros([2, w.size()[1]], (Kind::Float, tch::Device::Cpu));
    let mut f = |xs: &[Tensor]| -> Vec<Tensor> { vec![xs[0].linear(&w, Some(&b))] };
    let module = CModule::create_by_tracing("Linear", "forward", &[example], &mut f)?;
    let out = dir.join("model.pt");
    module.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn export_mlp(models: &Path) -> Result<()> {
    let dir = models.join("repository/mlp_torch/1");
    let get = weights(&dir)?;
    let (w0, b0, w1, b1) = (
        get("layers.0.weight")?,
        get("layers.0.bias")?,
        get("layers.1.weight")?,
        get("layers.1.bias")?,
    );
    let example = Tensor::zeros([2, w0.size()[1]], (Kind::Float, tch::Device::Cpu));
    let mut f = |xs: &[Tensor]| -> Vec<Tensor> {
        let h = xs[0].linear(&w0, Some(&b0)).relu();
        vec![h.linear(&w1, Some(&b1))]
    };
    let module = CModule::create_by_tracing("MLP", "forward", &[example], &mut f)?;
    let out = dir.join("model.pt");
    module.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, pad: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: pad,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

fn block(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::FuncT<'static> {
    let conv1 = conv(&p / "conv1", c_in, c_out, 3, 1, stride);
    let bn1 = nn::batch_norm2d(&p / "bn1", c_out, Default::default());
    let conv2 = conv(&p / "conv2", c_out, c_out, 3, 1, 1);
    let bn2 = nn::batch_norm2d(&p / "bn2", c_out, Default::default());
    let down = (stride != 1 || c_in != c_out).then(|| {
        (
            conv(&p / "down", c_in, c_out, 1, 0, stride),
            nn::batch_norm2d(&p / "down_bn", c_out, Default::default()),
        )
    });
    nn::func_t(move |xs, train| {
        let ys = xs
            .apply(&conv1)
            .apply_t(&bn1, train)
            .relu()
            .apply(&conv2)
            .apply_t(&bn2, train);
        let skip = match &down {
            Some((c, b)) => xs.apply(c).apply_t(b, train),
            None => xs.shallow_clone(),
        };
        (ys + skip).relu()
    })
}

/// ResNet-18 (torchvision topology). Written out here because tch's own ends with a
/// `view` whose batch size the tracer would freeze; `flatten` keeps it variable.
fn resnet18(p: &nn::Path) -> nn::FuncT<'static> {
    let conv1 = conv(p / "conv1", 3, 64, 7, 3, 2);
    let bn1 = nn::batch_norm2d(p / "bn1", 64, Default::default());
    let mut blocks = Vec::new();
    for (i, (c_in, c_out, stride)) in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        .into_iter()
        .enumerate()
    {
        blocks.push(block(p / format!("layer{}_0", i + 1), c_in, c_out, stride));
        blocks.push(block(p / format!("layer{}_1", i + 1), c_out, c_out, 1));
    }
    let fc = nn::linear(p / "fc", 512, 1000, Default::default());
    nn::func_t(move |xs, train| {
        let mut x = xs.apply(&conv1).apply_t(&bn1, train).relu().max_pool2d(
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            false,
        );
        for b in &blocks {
            x = x.apply_t(b, train);
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&fc)
    })
}

fn export_resnet(models: &Path) -> Result<()> {
    tch::manual_seed(1);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let net = resnet18(&vs.root());
    vs.freeze(); // constants in the trace, not parameters that require grad
    let example = Tensor::zeros([2, 3, 224, 224], (Kind::Float, tch::Device::Cpu));
    let mut f = |xs: &[Tensor]| -> Vec<Tensor> { vec![xs[0].apply_t(&net, false)] };
    let module =
        tch::no_grad(|| CModule::create_by_tracing("ResNet18", "forward", &[example], &mut f))?;
    let dir = models.join("bench/resnet18_torch/1");
    std::fs::create_dir_all(&dir)?;
    module.save(dir.join("model.pt"))?;
    let cfg = models.join("bench/resnet18_onnx/config.toml");
    let text = std::fs::read_to_string(&cfg)
        .context("bench/resnet18_onnx/config.toml (run make_models.py --bench)")?;
    std::fs::write(
        models.join("bench/resnet18_torch/config.toml"),
        text.replace("backend = \"onnx\"", "backend = \"torch\""),
    )?;
    println!("wrote {}", dir.join("model.pt").display());
    Ok(())
}

/// BERT hyper-parameters, from the Hugging Face `config.json`.
struct BertConfig {
    hidden: i64,
    heads: i64,
    layers: i64,
    intermediate: i64,
    eps: f64,
}

impl BertConfig {
    fn read(file: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let int = |k: &str| v[k].as_i64().with_context(|| format!("config.json: {k}"));
        let cfg = BertConfig {
            hidden: int("hidden_size")?,
            heads: int("num_attention_heads")?,
            layers: int("num_hidden_layers")?,
            intermediate: int("intermediate_size")?,
            eps: v["layer_norm_eps"]
                .as_f64()
                .context("config.json: layer_norm_eps")?,
        };
        if cfg.hidden % cfg.heads != 0 {
            bail!(
                "hidden_size {} not divisible by {} heads",
                cfg.hidden,
                cfg.heads
            );
        }
        Ok(cfg)
    }
}

/// y = x·wᵀ + b.
struct Dense(Tensor, Tensor);

impl Dense {
    fn apply(&self, x: &Tensor) -> Tensor {
        x.linear(&self.0, Some(&self.1))
    }
}

/// LayerNorm over the last dimension.
struct Norm(Tensor, Tensor, f64);

impl Norm {
    fn apply(&self, x: &Tensor) -> Tensor {
        x.layer_norm(self.0.size(), Some(&self.0), Some(&self.1), self.2, false)
    }
}

struct BertLayer {
    query: Dense,
    key: Dense,
    value: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

/// `BertModel` (absolute positions, GELU erf form, eval mode) from Hugging Face weights.
struct Bert {
    cfg: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: Norm,
    layers: Vec<BertLayer>,
}

impl Bert {
    /// Reads `dir/config.json` and `dir/model.safetensors` (names with or without `bert.`).
    fn load(dir: &Path) -> Result<Self> {
        let cfg = BertConfig::read(&dir.join("config.json"))?;
        let file = dir.join("model.safetensors");
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .into_iter()
            .map(|(k, t)| (k.strip_prefix("bert.").unwrap_or(&k).to_string(), t))
            .collect();
        let get = |n: &str, shape: &[i64]| -> Result<Tensor> {
            let t = tensors
                .get(n)
                .with_context(|| format!("tensor {n} missing"))?;
            if t.kind() != Kind::Float || t.size() != shape {
                bail!(
                    "{n}: {:?} {:?}, expected Float {shape:?}",
                    t.kind(),
                    t.size()
                );
            }
            Ok(t.shallow_clone())
        };
        let (h, i) = (cfg.hidden, cfg.intermediate);
        let dense = |p: &str, o: i64, n: i64| -> Result<Dense> {
            Ok(Dense(
                get(&format!("{p}.weight"), &[o, n])?,
                get(&format!("{p}.bias"), &[o])?,
            ))
        };
        let norm = |p: &str| -> Result<Norm> {
            Ok(Norm(
                get(&format!("{p}.weight"), &[h])?,
                get(&format!("{p}.bias"), &[h])?,
                cfg.eps,
            ))
        };
        let n_words = tensors
            .get("embeddings.word_embeddings.weight")
            .map_or(0, |t| t.size()[0]);
        let n_positions = tensors
            .get("embeddings.position_embeddings.weight")
            .map_or(0, |t| t.size()[0]);
        let n_types = tensors
            .get("embeddings.token_type_embeddings.weight")
            .map_or(0, |t| t.size()[0]);
        let layers = (0..cfg.layers)
            .map(|l| {
                let p = format!("encoder.layer.{l}");
                Ok(BertLayer {
                    query: dense(&format!("{p}.attention.self.query"), h, h)?,
                    key: dense(&format!("{p}.attention.self.key"), h, h)?,
                    value: dense(&format!("{p}.attention.self.value"), h, h)?,
                    attn_out: dense(&format!("{p}.attention.output.dense"), h, h)?,
                    attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                    up: dense(&format!("{p}.intermediate.dense"), i, h)?,
                    down: dense(&format!("{p}.output.dense"), h, i)?,
                    out_norm: norm(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Bert {
            word: get("embeddings.word_embeddings.weight", &[n_words, h])?,
            position: get("embeddings.position_embeddings.weight", &[n_positions, h])?,
            token_type: get("embeddings.token_type_embeddings.weight", &[n_types, h])?,
            emb_norm: norm("embeddings.LayerNorm")?,
            layers,
            cfg,
        })
    }

    /// The last hidden state `[B, S, hidden]`. No size is read from the inputs: the tracer
    /// would record it as a constant and the module would only take the traced shape.
    fn forward(&self, ids: &Tensor, mask: &Tensor, types: &Tensor) -> Tensor {
        let (heads, head_dim) = (self.cfg.heads, self.cfg.hidden / self.cfg.heads);
        let positions = ids.ones_like().cumsum(1, Kind::Int64) - 1;
        let x = Tensor::embedding(&self.word, ids, -1, false, false)
            + Tensor::embedding(&self.position, &positions, -1, false, false)
            + Tensor::embedding(&self.token_type, types, -1, false, false);
        let mut x = self.emb_norm.apply(&x);
        // [B, 1, 1, S]: 0 for tokens, the float minimum for padding (as Hugging Face).
        let bias =
            (1.0 - mask.unsqueeze(1).unsqueeze(2).to_kind(Kind::Float)) * f64::from(f32::MIN);
        let scale = (head_dim as f64).sqrt();
        // [B, S, hidden] -> [B, heads, S, head_dim]
        let split = |t: Tensor| t.unflatten(-1, [heads, head_dim]).permute([0, 2, 1, 3]);
        for l in &self.layers {
            let (q, k, v) = (
                split(l.query.apply(&x)),
                split(l.key.apply(&x)),
                split(l.value.apply(&x)),
            );
            let att = (q.matmul(&k.transpose(-1, -2)) / scale + &bias).softmax(-1, Kind::Float);
            let ctx = att.matmul(&v).permute([0, 2, 1, 3]).flatten(2, 3);
            x = l.attn_norm.apply(&(l.attn_out.apply(&ctx) + &x));
            let y = l.down.apply(&l.up.apply(&x).gelu("none"));
            x = l.out_norm.apply(&(y + &x));
        }
        x
    }
}

/// Largest |a - b| (NaN if any is).
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Fails when `diff` (from [`max_diff`]) is 1e-4 or more, or NaN.
fn ensure_close(diff: f64, what: &str) -> Result<()> {
    if diff.is_nan() || diff >= 1e-4 {
        bail!("minilm: {what} differ by {diff:e}");
    }
    Ok(())
}

/// Random token ids, `[CLS] … [SEP]` then padding, one row per length (types 1 from the
/// middle of each sentence, to use both type embeddings).
fn sample_batch(lengths: &[i64], seq: i64) -> [Tensor; 3] {
    let cpu = (Kind::Int64, tch::Device::Cpu);
    let lens = Tensor::from_slice(lengths).unsqueeze(1);
    let pos = Tensor::arange(seq, cpu).unsqueeze(0);
    let mask = pos.lt_tensor(&lens).to_kind(Kind::Int64);
    let ids = Tensor::randint_low(1000, 30000, [lengths.len() as i64, seq], cpu);
    let ids = ids.where_self(&pos.ne(0), &Tensor::from(101i64));
    let ids = ids.where_self(&pos.ne_tensor(&(&lens - 1)), &Tensor::from(102i64)) * &mask;
    let types = pos.ge_tensor(&lens.divide_scalar_mode(2, "floor")) * &mask;
    [ids, mask, types]
}

/// Checks the saved module on two shapes against the untraced forward, and each padded row
/// against its sentence alone. Bails out on any difference of 1e-4 or more.
fn verify_minilm(bert: &Bert, module: &CModule) -> Result<()> {
    for (lengths, seq) in [(&[5][..], 5), (&[17, 9, 4][..], 17)] {
        let inputs = sample_batch(lengths, seq);
        let traced = module.forward_ts(&inputs)?;
        let direct = tch::no_grad(|| bert.forward(&inputs[0], &inputs[1], &inputs[2]));
        let want = [lengths.len() as i64, seq, bert.cfg.hidden];
        if traced.size() != want || traced.kind() != Kind::Float {
            bail!(
                "output {:?} {:?}, expected Float {want:?}",
                traced.kind(),
                traced.size()
            );
        }
        let d = max_diff(&traced, &direct);
        println!("  minilm {want:?} lengths {lengths:?}: traced vs untraced max |diff| {d:.2e}");
        ensure_close(d, "traced module and forward")?;
        for (i, &len) in lengths.iter().enumerate() {
            let row = |t: &Tensor| t.narrow(0, i as i64, 1).narrow(1, 0, len);
            let alone = module.forward_ts(&inputs.each_ref().map(row))?;
            let d = max_diff(&row(&traced), &alone);
            println!("    row {i} (length {len}) in the batch vs alone: max |diff| {d:.2e}");
            ensure_close(d, &format!("padded row {i} and the sentence alone"))?;
        }
    }
    Ok(())
}

/// Compares with `reference/minilm.json` when it has `input_ids` (one list per sentence)
/// and `embeddings` (mean-pooled, L2-normalised, from Python).
fn compare_minilm_reference(models: &Path, module: &CModule) -> Result<()> {
    let file = models.join("reference/minilm.json");
    let Ok(text) = std::fs::read_to_string(&file) else {
        println!("  minilm: no {}, no Python comparison", file.display());
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let (Some(ids), Some(embs)) = (v["input_ids"].as_array(), v["embeddings"].as_array()) else {
        println!(
            "  minilm: {} has no input_ids/embeddings, no Python comparison",
            file.display()
        );
        return Ok(());
    };
    let floats = |x: &serde_json::Value| -> Option<Vec<f64>> {
        x.as_array()?
            .iter()
            .map(serde_json::Value::as_f64)
            .collect()
    };
    let mut worst = 0f64;
    for (n, (ids, emb)) in ids.iter().zip(embs).enumerate() {
        let ids: Vec<i64> = floats(ids)
            .with_context(|| format!("input_ids[{n}]"))?
            .into_iter()
            .map(|x| x as i64)
            .collect();
        let want = Tensor::from_slice(&floats(emb).with_context(|| format!("embeddings[{n}]"))?)
            .to_kind(Kind::Float);
        let ids = Tensor::from_slice(&ids).unsqueeze(0);
        let hidden = module.forward_ts(&[&ids, &ids.ones_like(), &ids.zeros_like()])?;
        let mean = hidden.mean_dim(1, false, Kind::Float).squeeze_dim(0);
        let got = &mean / mean.norm();
        let d = max_diff(&got, &want);
        if d.is_nan() || d > worst {
            worst = d;
        }
    }
    println!(
        "  minilm vs Python ({} sentences): max |diff| of normalised embeddings {worst:.2e}",
        ids.len().min(embs.len())
    );
    ensure_close(worst, "embeddings and the Python ones")
}

fn export_minilm(models: &Path) -> Result<()> {
    let src = models.join("minilm");
    if !src.join("model.safetensors").exists() {
        println!(
            "skipping minilm_torch: no {} (run scripts/make_minilm.py)",
            src.join("model.safetensors").display()
        );
        return Ok(());
    }
    let start = Instant::now();
    let bert = Bert::load(&src)?;
    tch::manual_seed(0);
    let [ids, mask, types] = sample_batch(&[8, 6], 8);
    let mut f = |xs: &[Tensor]| -> Vec<Tensor> { vec![bert.forward(&xs[0], &xs[1], &xs[2])] };
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("MiniLM", "forward", &[ids, mask, types], &mut f)
    })?;
    let dir = models.join("repository/minilm_torch/1");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("model.pt");
    module.save(&out)?;
    let module = CModule::load(&out)?;
    let exported = start.elapsed();
    verify_minilm(&bert, &module)?;
    compare_minilm_reference(models, &module)?;
    println!(
        "wrote {} (export {:.1} s, checks {:.1} s)",
        out.display(),
        exported.as_secs_f64(),
        (start.elapsed() - exported).as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(models) = args.next().map(PathBuf::from) else {
        bail!("usage: export_torchscript MODELS_DIR [--bench]");
    };
    tch::set_num_threads(1);
    export_mlp(&models)?;
    export_linear(&models)?;
    export_minilm(&models)?;
    if args.any(|a| a == "--bench") {
        export_resnet(&models)?;
    }
    Ok(())
}
