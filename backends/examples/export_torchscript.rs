//! Writes the TorchScript example models (no Python torch needed).
//!
//! `cargo run -p troupe-backends --example export_torchscript -- MODELS_DIR [--bench]`
//!
//! * `MODELS_DIR/repository/mlp_torch/1/model.pt`: the MLP traced from
//!   `weights.safetensors` (the same weights as the ONNX and candle MLPs).
//! * `MODELS_DIR/repository/linear_torch/1/model.pt`: the linear model (explanation tests).
//! * with `--bench`: `MODELS_DIR/bench/resnet18_torch/1/model.pt`, a ResNet-18 with random weights.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tch::{CModule, Kind, Tensor, nn};

/// `dir/weights.safetensors` as a lookup by tensor name.
fn weights(dir: &std::path::Path) -> Result<impl Fn(&str) -> Result<Tensor>> {
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
fn export_linear(models: &std::path::Path) -> Result<()> {
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

fn export_mlp(models: &std::path::Path) -> Result<()> {
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

fn export_resnet(models: &std::path::Path) -> Result<()> {
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

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(models) = args.next().map(PathBuf::from) else {
        bail!("usage: export_torchscript MODELS_DIR [--bench]");
    };
    tch::set_num_threads(1);
    export_mlp(&models)?;
    export_linear(&models)?;
    if args.any(|a| a == "--bench") {
        export_resnet(&models)?;
    }
    Ok(())
}
